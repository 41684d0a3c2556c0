// ZeRO stage 1: the optimizer state split across the data-parallel ranks. Each rank keeps the
// moments of its segment of the flat parameter block only, updates only that segment, and the
// ranks then share the updated values.
//
// One step over P ranks and a block of S bytes:
//   1. reduce-scatter the summed gradients: rank r ends with the reduced gradient of its
//      segment (`group.segment(of:)`), (P − 1)/P · S bytes sent per rank;
//   2. optionally clip: each rank's sum of squares of its segment, all-reduced (4 bytes), gives
//      the global norm, and each rank scales its segment;
//   3. the wrapped optimizer's update on the segment only;
//   4. all-gather the values, (P − 1)/P · S bytes per rank.
// The bytes on the wire equal one ring all-reduce's; the optimizer state per rank is 1/P.
import ForgeCollectives
import ForgeNN
import ForgeTensor

/// An optimizer whose state is sharded across a data-parallel group (ZeRO stage 1).
///
/// Every rank of `group` holds the whole `block` and calls `step` after writing its summed
/// gradients (its share of the global batch) into `block.gradients`; after `step` every rank
/// holds the same updated values. Without a group (or a group of one) nothing is sharded: the
/// gradients must already be complete, and `step` is the wrapped optimizer's step plus clipping.
///
/// The logical state does not depend on the world size: `fullStateTensors()` gathers it into
/// whole-block buffers named as the unsharded optimizer names its state, and
/// `loadFullState(_:)` takes such buffers under any world size, so a checkpoint moves between
/// layouts and between ZeRO and the unsharded optimizer.
///
/// Concurrency: not Sendable; it holds tensors and a process group, and belongs to the thread
/// that runs this rank. `step` and `fullStateTensors` are collectives: every rank calls them in
/// the same order.
public final class ZeroRedundancyOptimizer {
    public let block: ParameterBlock
    public let group: ProcessGroup?
    /// This rank's elements of the flat block (all of them without sharding; empty on a rank
    /// beyond the block's count).
    public let segment: Range<Int>
    /// The wrapped optimizer, over `segment` of the values and gradients only.
    public let inner: any Optimizer
    /// Whether every rank's block has its values in the same memory (one copy in a shared
    /// region, `ProcessGroup.sharedCounterpart`): each rank's update then writes its segment
    /// where every rank reads it, and nothing is gathered.
    public let sharedValues: Bool
    /// One Float for the all-reduced sum of squares.
    private let normBuffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: 1)

    /// Shards the optimizer that `makeOptimizer(values, gradients)` builds over one segment of
    /// `block` (flat, contiguous views into the block) across `group`. The block's memory must
    /// be host-visible when there is a group.
    ///
    /// With `sharedValues`, the ranks' blocks share one copy of the values (and each has its
    /// gradients in its own `sharedBuffer`): a step writes each segment once, in place, and ends
    /// with every rank's update done (a barrier, or the one-pass step's second handshake).
    public init(block: ParameterBlock, group: ProcessGroup?, sharedValues: Bool = false,
                makeOptimizer: (_ values: Tensor, _ gradients: Tensor) -> any Optimizer) {
        let sharded = (group?.worldSize ?? 1) > 1
        precondition(!sharded || block.device.capabilities.hostVisibleMemory, "ZeRO needs host-visible device memory")
        self.block = block
        self.group = group
        self.sharedValues = sharded && sharedValues
        segment = sharded ? group?.segment(of: block.count) ?? 0..<block.count : 0..<block.count
        let values = Tensor(storage: block.values.storage, offset: block.values.offset + segment.lowerBound, shape: [segment.count])
        let gradients = Tensor(storage: block.gradients.storage, offset: block.gradients.offset + segment.lowerBound,
                               shape: [segment.count])
        inner = makeOptimizer(values, gradients)
    }

    deinit { normBuffer.deallocate() }

    /// Settable before each step (schedules).
    public var learningRate: Float {
        get { inner.learningRate }
        set { inner.learningRate = newValue }
    }

    public var stepCount: Int { inner.stepCount }

    /// Restores the step counter after `loadFullState`.
    public func restore(stepCount: Int) { inner.restore(stepCount: stepCount) }

    /// Bytes of optimizer state this rank holds (about 1/P of the unsharded optimizer's).
    public var optimizerStateBytes: Int {
        inner.stateTensors.reduce(0) { $0 + $1.tensor.count * MemoryLayout<Float>.stride }
    }

    /// One update. With `maxGradientNorm`, the reduced gradients are first scaled so that their
    /// global L2 norm is at most that (`clipScale`); returns the norm before clipping, or NaN
    /// without `maxGradientNorm` (pass `.infinity` to measure without clipping).
    ///
    /// Afterwards `block.gradients` holds the reduced (and clipped) gradients only in `segment`;
    /// the rest holds partial sums.
    ///
    /// A block that is a piece of a larger model (a pipeline stage, a tensor-parallel part)
    /// passes `counted` (which of its parameters count toward the model's norm: a replicated
    /// one on one part only) and `sumAcrossPieces` (sums this rank's squares over every rank
    /// of the job), so the norm is the whole model's.
    ///
    /// `scalars` (a step's loss and stop flag) are summed across the ranks with the step. Without
    /// clipping, a block whose values, gradients and scalars lie in one shared region
    /// (`ProcessGroup.sharedBuffer`) steps in one pass (`reduceScatterUpdateGather`; with
    /// `sharedValues`, `reduceScatterUpdate`, which gathers nothing).
    @discardableResult
    public func step(maxGradientNorm: Float? = nil, counted: ((Parameter) -> Bool)? = nil,
                     sumAcrossPieces: ((Double) throws(CollectiveError) -> Double)? = nil,
                     scalars: UnsafeMutableBufferPointer<Float> = UnsafeMutableBufferPointer(start: nil, count: 0)) throws(CollectiveError) -> Double {
        let shardedGroup = (group?.worldSize ?? 1) > 1 ? group : nil
        let gradients = UnsafeMutableBufferPointer(start: block.gradients.hostPointer, count: block.count)
        if let shardedGroup, maxGradientNorm == nil, sharedValues {
            try shardedGroup.reduceScatterUpdate(gradients: gradients, scalars: scalars) { inner.step() }
            return .nan
        }
        if let shardedGroup, maxGradientNorm == nil {
            let values = UnsafeMutableBufferPointer(start: block.values.hostPointer, count: block.count)
            try shardedGroup.reduceScatterUpdateGather(gradients: gradients, values: values, scalars: scalars) { inner.step() }
            return .nan
        }
        if let shardedGroup {
            if !scalars.isEmpty { try shardedGroup.allReduce(scalars, op: .sum) }
            try shardedGroup.reduceScatter(gradients, op: .sum)
        }
        var norm = Double.nan
        if let maxGradientNorm {
            let mine = Tensor(storage: block.gradients.storage, offset: block.gradients.offset + segment.lowerBound,
                              shape: [segment.count])
            if let sumAcrossPieces {
                // This rank's segment, parameter by parameter, of the parameters that count.
                var squares = 0.0
                for parameter in block.parameters where counted?(parameter) ?? true {
                    let lower = max(parameter.offset, segment.lowerBound)
                    let upper = min(parameter.offset + parameter.value.count, segment.upperBound)
                    guard lower < upper else { continue }
                    squares += block.device.sumOfSquares(Tensor(storage: block.gradients.storage,
                                                                offset: block.gradients.offset + lower, shape: [upper - lower]))
                }
                norm = try sumAcrossPieces(squares).squareRoot()
            } else {
                let squares = segment.isEmpty ? 0 : block.device.sumOfSquares(mine)
                if let shardedGroup {
                    normBuffer[0] = Float(squares)
                    try shardedGroup.allReduce(normBuffer, op: .sum)
                    norm = Double(normBuffer[0]).squareRoot()
                } else {
                    norm = squares.squareRoot()
                }
            }
            if let scale = ZeroRedundancyOptimizer.clipScale(norm: norm, maxNorm: maxGradientNorm), !segment.isEmpty {
                block.device.axpby(alpha: scale, mine, beta: 0, mine)
            }
        }
        inner.step()
        if let shardedGroup {
            if sharedValues {
                // Each segment was written in place: wait until every rank has written its own.
                try shardedGroup.barrier()
            } else {
                try shardedGroup.allGather(UnsafeMutableBufferPointer(start: block.values.hostPointer, count: block.count))
            }
        }
        return norm
    }

    /// The factor that brings gradients of global norm `norm` down to `maxNorm`, or nil when they
    /// are within it: `maxNorm / (norm + 1e-6)`, PyTorch's `clip_grad_norm_`. An unsharded
    /// trainer that clips uses the same factor.
    public static func clipScale(norm: Double, maxNorm: Float) -> Float? {
        guard norm.isFinite, norm > Double(maxNorm) else { return nil }
        return Float(Double(maxNorm) / (norm + 1e-6))
    }

    /// The whole optimizer state, as the unsharded optimizer names it, each a buffer of the
    /// block's count: every rank's segment all-gathered. A collective: every rank calls it.
    public func fullStateTensors() throws(CollectiveError) -> [(name: String, values: [Float])] {
        var result: [(name: String, values: [Float])] = []
        for (name, tensor) in inner.stateTensors {
            var full = [Float](repeating: 0, count: block.count)
            full.withUnsafeMutableBufferPointer { buffer in
                block.device.copy(from: tensor, to: UnsafeMutableBufferPointer(rebasing: buffer[segment]))
            }
            if let group, group.worldSize > 1 {
                try full.withUnsafeMutableBufferPointer { buffer throws(CollectiveError) in try group.allGather(buffer) }
            }
            result.append((name, full))
        }
        return result
    }

    /// Loads a whole optimizer state (as `fullStateTensors` returns it, under any world size, or
    /// the unsharded optimizer's `stateTensors`): this rank keeps its segment of each buffer.
    /// Then `restore(stepCount:)`.
    public func loadFullState(_ tensors: [(name: String, values: [Float])]) throws(ZeroStateError) {
        for (name, tensor) in inner.stateTensors {
            guard let values = tensors.first(where: { $0.name == name })?.values else { throw .missing(name) }
            guard values.count == block.count else { throw .wrongCount(name: name, expected: block.count, found: values.count) }
            values.withUnsafeBufferPointer { block.device.copy(from: UnsafeBufferPointer(rebasing: $0[segment]), to: tensor) }
        }
    }
}

/// Why a full optimizer state could not be loaded.
public enum ZeroStateError: Error, Equatable, CustomStringConvertible {
    case missing(String)
    case wrongCount(name: String, expected: Int, found: Int)

    public var description: String {
        switch self {
        case .missing(let name): return "optimizer state '\(name)' is missing"
        case .wrongCount(let name, let expected, let found):
            return "optimizer state '\(name)' has \(found) elements, the parameter block \(expected)"
        }
    }
}
