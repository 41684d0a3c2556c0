// ZeRO stage 1 with ranks as threads over the in-process transport: over 2–4 ranks, with
// segments of uneven size and a block smaller than the world, the sharded optimizer takes the
// steps the unsharded one takes on the summed gradients (with and without clipping, with a
// learning rate that changes every step); each rank holds about 1/N of the state; the whole
// state gathers and loads back under another world size, or into the unsharded optimizer.
import ForgeCollectives
import ForgeNN
import ForgeTensor
import ForgeTraining
import Foundation
import Testing

@Suite struct ZeroRedundancyOptimizerTests {
    enum Kind: String, CaseIterable, Sendable {
        case adam, adamw, sgdMomentum

        func make(values: Tensor, gradients: Tensor) -> any Optimizer {
            switch self {
            case .adam: Adam(values: values, gradients: gradients, learningRate: 0.01, weightDecay: 0.01)
            case .adamw: Adam(values: values, gradients: gradients, learningRate: 0.01, weightDecay: 0.05, decoupled: true)
            case .sgdMomentum: SGD(values: values, gradients: gradients, learningRate: 0.05, momentum: 0.9, weightDecay: 0.001)
            }
        }
    }

    /// A block of `count` elements: a 7×5 weight and a bias of the rest (38 elements), or one
    /// tensor of `count`.
    static func block(count: Int, valueMemory: UnsafeMutableBufferPointer<Float>? = nil,
                      gradientMemory: UnsafeMutableBufferPointer<Float>? = nil) -> ParameterBlock {
        let specs: [(name: String, spec: ParameterSpec)] = count == 38
            ? [("w", ParameterSpec(name: "w", shape: [7, 5], initializer: .heNormal(fanIn: 5))),
               ("b", ParameterSpec(name: "b", shape: [3], initializer: .normal(standardDeviation: 0.1)))]
            : [("p", ParameterSpec(name: "p", shape: [count], initializer: .normal(standardDeviation: 0.5)))]
        return ParameterBlock(specs: specs, seed: 5, device: CPUDevice(threadCount: 1), valueMemory: valueMemory, gradientMemory: gradientMemory)
    }

    /// Rank `rank`'s gradient at step `step`: multiples of 1/64 below 1, so every sum is exact
    /// in any order and the sharded and unsharded runs see the same reduced gradients.
    static func gradient(rank: Int, step: Int, count: Int) -> [Float] {
        (0..<count).map { Float((rank * 31 + $0 * 7 + step * 13) % 17 - 8) / 64 }
    }

    static func learningRate(_ kind: Kind, step: Int) -> Float {
        (kind == .sgdMomentum ? 0.05 : 0.01) * (1 - Float(step) / 100)
    }

    /// The unsharded optimizer on the summed gradients of `worldSize` ranks, steps `steps`;
    /// returns the values and the norms before clipping.
    /// With `feedback`, each rank's gradient also adds `feedback` times the values it reads
    /// before the step (as a model's gradients depend on its parameters).
    static func reference(_ kind: Kind, count: Int, worldSize: Int, steps: Range<Int>, maxNorm: Float?,
                          block: ParameterBlock? = nil, optimizer: (any Optimizer)? = nil,
                          feedback: Float = 0) -> (values: [Float], norms: [Double]) {
        let block = block ?? Self.block(count: count)
        let optimizer = optimizer ?? kind.make(values: block.values, gradients: block.gradients)
        var norms: [Double] = []
        for step in steps {
            let values = block.values.toArray()
            let sums = (0..<worldSize).map { zip(gradient(rank: $0, step: step, count: count), values).map { $0 + feedback * $1 } }
                .reduce([Float](repeating: 0, count: count)) { zip($0, $1).map(+) }
            sums.withUnsafeBufferPointer { block.device.copy(from: $0, to: block.gradients) }
            if let maxNorm {
                let norm = block.device.sumOfSquares(block.gradients).squareRoot()
                norms.append(norm)
                if let scale = ZeroRedundancyOptimizer.clipScale(norm: norm, maxNorm: maxNorm) {
                    block.device.axpby(alpha: scale, block.gradients, beta: 0, block.gradients)
                }
            }
            optimizer.learningRate = learningRate(kind, step: step)
            optimizer.step()
        }
        return (block.values.toArray(), norms)
    }

    /// What one rank of a ZeRO run reports.
    struct RankOutcome: Sendable {
        var values: [Float]
        var norms: [Double]
        var stateBytes: Int
        var fullState: [String: [Float]]
    }

    /// Runs steps `steps` of ZeRO over `worldSize` rank threads, each first loading `initial`
    /// (values and full optimizer state, with its step count) when given. With `sharedValues`
    /// the ranks share memory: each has its gradients in a shared region, and all of them have
    /// their values in one copy, rank 0's.
    static func sharded(_ kind: Kind, count: Int, worldSize: Int, steps: Range<Int>, maxNorm: Float?,
                        initial: (values: [Float], state: [String: [Float]])? = nil, sharedValues: Bool = false,
                        feedback: Float = 0) throws -> [RankOutcome] {
        try onRankThreads(worldSize, chunkElements: 3, sharedMemory: sharedValues) { group in
            let rank = group.rank
            var block = Self.block(count: count)
            if sharedValues {
                let region = try #require(try group.sharedBuffer(count: 2 * count))
                let values = try #require(group.sharedCounterpart(of: UnsafeMutableBufferPointer(rebasing: region[..<count]), on: 0))
                block = Self.block(count: count, valueMemory: values, gradientMemory: UnsafeMutableBufferPointer(rebasing: region[count...]))
                try group.barrier()  // every rank has written the initial values (the same bytes)
            }
            let zero = ZeroRedundancyOptimizer(block: block, group: group, sharedValues: sharedValues) { kind.make(values: $0, gradients: $1) }
            if let initial {
                initial.values.withUnsafeBufferPointer { block.device.copy(from: $0, to: block.values) }
                try zero.loadFullState(initial.state.map { ($0.key, $0.value) })
                zero.restore(stepCount: steps.lowerBound)
            }
            var norms: [Double] = []
            for step in steps {
                let values = block.values.toArray()
                zip(Self.gradient(rank: rank, step: step, count: count), values).map { $0 + feedback * $1 }
                    .withUnsafeBufferPointer { block.device.copy(from: $0, to: block.gradients) }
                zero.learningRate = Self.learningRate(kind, step: step)
                let norm = try zero.step(maxGradientNorm: maxNorm)
                if maxNorm != nil { norms.append(norm) }
            }
            let full = try zero.fullStateTensors()
            return RankOutcome(values: block.values.toArray(), norms: norms, stateBytes: zero.optimizerStateBytes,
                               fullState: Dictionary(uniqueKeysWithValues: full.map { ($0.name, $0.values) }))
        }
    }

    static func relativeDifference(_ a: [Float], _ b: [Float]) -> Float {
        let scale = max(b.map(abs).max() ?? 1, Float.leastNormalMagnitude)
        return (zip(a, b).map { abs($0 - $1) }.max() ?? .infinity) / scale
    }

    /// 38 elements split 13/13/12 over 3 ranks and 10/10/9/9 over 4; 2 elements over 3 and 4
    /// ranks leave a rank without a segment.
    @Test(arguments: Kind.allCases, [(2, 38), (3, 38), (4, 38), (3, 2), (4, 2)])
    func takesTheUnshardedSteps(kind: Kind, layout: (worldSize: Int, count: Int)) throws {
        for maxNorm in [nil, Float(0.5)] as [Float?] {
            let reference = Self.reference(kind, count: layout.count, worldSize: layout.worldSize, steps: 0..<60, maxNorm: maxNorm)
            let ranks = try Self.sharded(kind, count: layout.count, worldSize: layout.worldSize, steps: 0..<60, maxNorm: maxNorm)
            for (rank, outcome) in ranks.enumerated() {
                #expect(outcome.values.map(\.bitPattern) == ranks[0].values.map(\.bitPattern), "rank \(rank) differs from rank 0")
                let difference = Self.relativeDifference(outcome.values, reference.values)
                #expect(difference <= 1e-6, "\(kind) on \(layout), clip \(String(describing: maxNorm)): max|Δ|/max|ref| = \(difference)")
                if maxNorm != nil {
                    let norms = zip(outcome.norms, reference.norms).map { abs($0 - $1) / max($1, 1e-12) }.max() ?? 1
                    #expect(outcome.norms.count == 60 && norms <= 1e-6, "norms differ by \(norms) relative")
                }
            }
            if maxNorm != nil {
                // The clip bites: most steps' gradients are longer than 0.5.
                #expect(reference.norms.filter { $0 > 0.5 }.count > 30 || layout.count == 2, "\(reference.norms)")
            }
        }
    }

    @Test(arguments: [2, 3, 4])
    func ranksSharingOneCopyOfTheValuesTakeTheUnshardedSteps(worldSize: Int) throws {
        // One copy of the values for all ranks: each step writes every segment in place, in one
        // pass of two handshakes (no clipping), or with clipping as reduce-scatter, norm, update
        // and a barrier. The gradients depend on the values each rank reads before the step: a
        // rank that read them before every segment was written would leave the unsharded
        // optimizer's steps.
        for maxNorm in [nil, Float(0.5)] as [Float?] {
            let reference = Self.reference(.adam, count: 38, worldSize: worldSize, steps: 0..<60, maxNorm: maxNorm, feedback: 0.5)
            let ranks = try Self.sharded(.adam, count: 38, worldSize: worldSize, steps: 0..<60, maxNorm: maxNorm, sharedValues: true,
                                         feedback: 0.5)
            for outcome in ranks {
                let difference = Self.relativeDifference(outcome.values, reference.values)
                #expect(difference <= 1e-6, "\(worldSize) ranks, clip \(String(describing: maxNorm)): max|Δ|/max|ref| = \(difference)")
                #expect(outcome.fullState == ranks[0].fullState)
            }
        }
    }

    @Test(arguments: [2, 3, 4])
    func eachRankHoldsItsShareOfTheState(worldSize: Int) throws {
        let count = 38
        let ranks = try Self.sharded(.adam, count: count, worldSize: worldSize, steps: 0..<2, maxNorm: nil)
        let unsharded = 2 * count * 4
        #expect(ranks.map(\.stateBytes).reduce(0, +) == unsharded)
        let share = 2 * 4 * ((count + worldSize - 1) / worldSize)
        #expect(ranks.allSatisfy { $0.stateBytes <= share }, "\(ranks.map(\.stateBytes)) against at most \(share) each")
    }

    @Test(arguments: Kind.allCases)
    func theWholeStateGathersAndLoadsUnderAnyWorldSize(kind: Kind) throws {
        // 30 steps on 3 ranks; the gathered state equals the unsharded optimizer's after the
        // same steps; resumed on 2 or 4 ranks, or unsharded, it takes the unsharded steps.
        let count = 38
        let block = Self.block(count: count)
        let optimizer = kind.make(values: block.values, gradients: block.gradients)
        _ = Self.reference(kind, count: count, worldSize: 3, steps: 0..<30, maxNorm: nil, block: block, optimizer: optimizer)
        let first = try Self.sharded(kind, count: count, worldSize: 3, steps: 0..<30, maxNorm: nil)
        let names = optimizer.stateTensors.map(\.name)
        #expect(first[0].fullState.keys.sorted() == names.sorted())
        for (name, tensor) in optimizer.stateTensors {
            for (rank, outcome) in first.enumerated() {
                let gathered = try #require(outcome.fullState[name])
                let difference = Self.relativeDifference(gathered, tensor.toArray())
                #expect(difference <= 1e-6, "rank \(rank), \(name): max|Δ|/max|ref| = \(difference)")
            }
        }
        let final = Self.reference(kind, count: count, worldSize: 3, steps: 30..<60, maxNorm: nil, block: block, optimizer: optimizer)
        let saved = (values: first[0].values, state: first[0].fullState)
        for worldSize in [2, 4] {
            // Another world sums other ranks' gradients: its reference is the unsharded
            // optimizer resumed from the same state on that world's sums.
            let resumed = try Self.sharded(kind, count: count, worldSize: worldSize, steps: 30..<60, maxNorm: nil, initial: saved)
            let expected = Self.continued(kind, count: count, from: saved, worldSize: worldSize)
            let difference = Self.relativeDifference(resumed[0].values, expected)
            #expect(difference <= 1e-6, "resumed on \(worldSize) ranks: max|Δ|/max|ref| = \(difference)")
        }
        // Unsharded: a ZeRO optimizer without a group is the plain optimizer plus clipping.
        let plain = Self.block(count: count)
        saved.values.withUnsafeBufferPointer { plain.device.copy(from: $0, to: plain.values) }
        let alone = ZeroRedundancyOptimizer(block: plain, group: nil) { kind.make(values: $0, gradients: $1) }
        try alone.loadFullState(saved.state.map { ($0.key, $0.value) })
        alone.restore(stepCount: 30)
        for step in 30..<60 {
            let sums = (0..<3).map { Self.gradient(rank: $0, step: step, count: count) }
                .reduce([Float](repeating: 0, count: count)) { zip($0, $1).map(+) }
            sums.withUnsafeBufferPointer { plain.device.copy(from: $0, to: plain.gradients) }
            alone.learningRate = Self.learningRate(kind, step: step)
            try alone.step()
        }
        let difference = Self.relativeDifference(plain.values.toArray(), final.values)
        #expect(difference <= 1e-6, "resumed unsharded: max|Δ|/max|ref| = \(difference)")
    }

    /// The unsharded optimizer resumed from `saved` and run for steps 30..<60 on the summed
    /// gradients of `worldSize` ranks.
    static func continued(_ kind: Kind, count: Int, from saved: (values: [Float], state: [String: [Float]]), worldSize: Int) -> [Float] {
        let block = Self.block(count: count)
        saved.values.withUnsafeBufferPointer { block.device.copy(from: $0, to: block.values) }
        let optimizer = kind.make(values: block.values, gradients: block.gradients)
        for (name, tensor) in optimizer.stateTensors {
            saved.state[name]?.withUnsafeBufferPointer { block.device.copy(from: $0, to: tensor) }
        }
        optimizer.restore(stepCount: 30)
        return reference(kind, count: count, worldSize: worldSize, steps: 30..<60, maxNorm: nil, block: block, optimizer: optimizer).values
    }

    @Test func aStateOfTheWrongSizeIsRefused() throws {
        let block = Self.block(count: 38)
        let zero = ZeroRedundancyOptimizer(block: block, group: nil) { Kind.adam.make(values: $0, gradients: $1) }
        #expect(throws: ZeroStateError.missing("exp_avg_sq")) {
            try zero.loadFullState([("exp_avg", [Float](repeating: 0, count: 38))])
        }
        #expect(throws: ZeroStateError.wrongCount(name: "exp_avg", expected: 38, found: 37)) {
            try zero.loadFullState([("exp_avg", [Float](repeating: 0, count: 37)), ("exp_avg_sq", [Float](repeating: 0, count: 38))])
        }
    }
}
