// One rank's stage of a pipeline-parallel model: its contiguous slice of the layers, and the
// forward/backward of one optimizer step over M micro-batches in a schedule's order, with
// activations and gradients travelling to the neighbouring stages point to point.
import ForgeCollectives
import ForgeNN
import ForgeTensor

/// One micro-batch of a step, as every stage sees it.
///
/// Concurrency: a Sendable value.
public struct PipelineMicroBatch: Sendable, Hashable {
    /// Its rows of the step's local batch (the rows of the first stage's `inputs` and the last
    /// stage's `targets`).
    public var rows: Range<Int>
    /// Global index of its first row in the step's global batch (keys dropout masks).
    public var firstSample: Int

    public init(rows: Range<Int>, firstSample: Int) {
        self.rows = rows
        self.firstSample = firstSample
    }

    /// `rows` rows cut into `count` contiguous micro-batches whose sizes differ by at most one
    /// (the larger first, as ranks split a batch), the first row being global sample
    /// `firstSample`. Empty micro-batches are dropped, so fewer come back when rows < count.
    public static func split(rows: Int, into count: Int, firstSample: Int = 0) -> [PipelineMicroBatch] {
        precondition(rows >= 0 && count >= 1, "cannot split \(rows) rows into \(count) micro-batches")
        let base = rows / count, extra = rows % count
        var start = 0
        var batches = [PipelineMicroBatch]()
        for index in 0..<count {
            let size = base + (index < extra ? 1 : 0)
            guard size > 0 else { break }
            batches.append(PipelineMicroBatch(rows: start..<(start + size), firstSample: firstSample + start))
            start += size
        }
        return batches
    }
}

/// What one stage measured during one step.
///
/// Concurrency: a Sendable value.
public struct PipelineStepStats: Sendable, Hashable {
    /// Time blocked in receives (activations from the previous stage, gradients from the next):
    /// the stage's share of the pipeline bubble, whatever else shares its cores.
    public var receiveWait: Duration = .zero
    /// Time from the step's first action to its last.
    public var stepTime: Duration = .zero
    /// The most micro-batches forwarded but not yet backwarded at once.
    public var peakStashedMicroBatches = 0
    /// The most activation bytes held for those micro-batches at once (see
    /// `PipelineStage.activationBytesPerRow`).
    public var peakStashedBytes = 0

    public init() {}

    /// receiveWait / stepTime.
    public var bubbleFraction: Double {
        let total = stepTime / .nanoseconds(1)
        return total > 0 ? (receiveWait / .nanoseconds(1)) / total : 0
    }
}

/// One rank's stage of a pipeline: layers `partition.ranges[stage]` of a model, run as one
/// optimizer step's forwards and backwards over M micro-batches in a GPipe or 1F1B order.
///
/// Parameters. The stage's block holds exactly the values the whole model built from `seed`
/// would have for its layers (every spec is drawn in model order, the stage keeps its own),
/// named by global layer index (`layers.<global index>.<name>`), so stage checkpoints map onto
/// the full model. After `forwardBackward` the block's gradients hold the sum over all
/// micro-batches of gradScale · ∂loss with gradScale = 1/globalRows: the same gradient one
/// process computes for the whole global batch, up to the order of summing. The caller then
/// steps an optimizer over `parameters` (and may all-reduce its gradients across
/// data-parallel replicas of the stage first).
///
/// Activation slots. Every micro-batch in flight (forwarded, not yet backwarded) needs its own
/// activations until its backward, so the stage builds one replica of its layers per slot
/// (`schedule.maxInFlight` of them: M for GPipe, min(P − s, M) for 1F1B). Each replica reads
/// the stage's parameter values and writes gradients of its own, which are added into the
/// block's after its backward. Micro-batch m uses slot m mod slots: both schedules backward
/// in forward order, so that slot's previous micro-batch has always finished.
///
/// Messages. Activations go to the next stage's rank and gradients to the previous one with
/// `ProcessGroup.send`, tagged with the micro-batch and direction; both directions carry
/// micro-batches in increasing order on every stage, so a neighbour's messages arrive in the
/// order they are awaited. Sends queue without waiting for the receiver, which is what keeps
/// both schedules deadlock-free. A dead or silent neighbour makes a receive fail with
/// `CollectiveError.timedOut` after the transport's timeout; the group is then broken.
///
/// Memory must be host-visible (the CPU device): messages are sent from, and received into,
/// tensor storage directly.
///
/// Concurrency: not Sendable; confined to the thread that runs this rank, like its
/// `ProcessGroup`.
public final class PipelineStage {
    public let stage: Int
    public let partition: StagePartition
    public let schedule: PipelineScheduleKind
    /// The most micro-batches a step may have (sizes the slots).
    public let microBatches: Int
    /// The most rows one micro-batch may have.
    public let maxMicroBatchRows: Int
    /// This stage's parameters (global names) and their summed gradients.
    public let parameters: ParameterBlock
    /// Global indices of this stage's layers.
    public var layerRange: Range<Int> { partition.ranges[stage] }
    public var isFirst: Bool { stage == 0 }
    public var isLast: Bool { stage == partition.stages - 1 }
    public var inputWidth: Int { slots[0].inputWidth }
    public var outputWidth: Int { slots[0].outputWidth }
    /// Bytes of activations one live micro-batch row holds on this stage: each layer's output
    /// row, plus the received input row on a stage other than the first (the first stage reads
    /// the caller's inputs in place). Layer-private scratch (GELU pre-activations, dropout
    /// masks) and the gradient buffers are not counted: the figure is the activations a
    /// schedule keeps alive, the same for every layer type, not the bytes a slot reserves.
    public let activationBytesPerRow: Int

    private let group: ProcessGroup
    private let stageRanks: [Int]
    private let loss: (any Loss)?
    private let seed: UInt64
    private let device: any Device
    /// Rows per sequence (a language model's micro-batches are whole sequences of tokens).
    private let sequenceLength: Int
    private let slots: [Sequential]
    /// Received activations, one buffer per slot (nil on the first stage).
    private let slotInputs: [Tensor]
    /// The gradient of this stage's output: received (from the next stage) or computed by the
    /// loss (last stage). One suffices: each is consumed by the backward that follows it.
    private let outputGradient: Tensor
    /// The micro-batch each slot holds, and on the last stage its output (kept for the loss).
    private var slotOwner: [Int?]
    private var slotOutput: [Tensor?]

    /// Builds stage `stage` of the model `makeLayers` describes.
    ///
    /// - Parameters:
    ///   - makeLayers: fresh layers of the whole model, in order (called once per slot; only
    ///     this stage's layers are bound and prepared). For a model whose first layer takes
    ///     token ids, the first stage's inputs are those ids as a [rows, 1] matrix.
    ///   - partition: every stage's layers; `stage` is this rank's.
    ///   - stageRanks: the group rank of each stage (default: stage s on rank s).
    ///   - loss: the loss the last stage applies to its output; ignored on the others.
    ///   - microBatches: the most micro-batches a step will have (M).
    ///   - maxMicroBatchRows: the most rows a micro-batch will have.
    ///   - seed: the model's seed, as `Sequential(_:maxBatch:seed:device:)` takes it.
    public init(makeLayers: () -> [any Layer], partition: StagePartition, stage: Int, stageRanks: [Int]? = nil,
                group: ProcessGroup, schedule: PipelineScheduleKind, microBatches: Int, maxMicroBatchRows: Int,
                loss: (any Loss)?, seed: UInt64, device: any Device, sequenceLength: Int = 1,
                tensorRank: Int = 0, tensorDegree: Int = 1) {
        let stageRanks = stageRanks ?? Array(0..<partition.stages)
        precondition(stage >= 0 && stage < partition.stages, "stage \(stage) outside 0..<\(partition.stages)")
        precondition(stageRanks.count == partition.stages, "\(stageRanks.count) stage ranks for \(partition.stages) stages")
        precondition(stageRanks[stage] == group.rank, "stage \(stage) runs on rank \(stageRanks[stage]), this is rank \(group.rank)")
        precondition(stage < partition.stages - 1 || loss != nil, "the last stage needs a loss")
        precondition(microBatches >= 1 && maxMicroBatchRows >= 1, "a stage needs room for at least one row")
        self.stage = stage
        self.partition = partition
        self.schedule = schedule
        self.microBatches = microBatches
        self.maxMicroBatchRows = maxMicroBatchRows
        self.group = group
        self.stageRanks = stageRanks
        self.loss = loss
        self.seed = seed
        self.device = device
        self.sequenceLength = sequenceLength

        let model = makeLayers()
        precondition(model.count == partition.layerCount, "the partition covers \(partition.layerCount) layers, the model has \(model.count)")
        let range = partition.ranges[stage]
        let specs = Sequential.parameterSpecs(of: model)
        parameters = ParameterBlock(specs: specs, seed: seed, device: device, keeping: Sequential.parameterSpecRange(of: model, layerRange: range),
                                    tensorRank: tensorRank, tensorDegree: tensorDegree)

        let slotCount = PipelineSchedule(kind: schedule, stage: stage, stages: partition.stages, microBatches: microBatches).maxInFlight
        var slots = [Sequential]()
        for slot in 0..<slotCount {
            let layers = Array((slot == 0 ? model : makeLayers())[range])
            slots.append(Sequential(layers, parameters: ParameterBlock(sharingValuesOf: parameters), maxBatch: maxMicroBatchRows))
        }
        self.slots = slots
        let inputWidth = slots[0].inputWidth, outputWidth = slots[0].outputWidth
        slotInputs = stage == 0 ? [] : (0..<slotCount).map { _ in Tensor(zeros: [maxMicroBatchRows, inputWidth], on: device) }
        outputGradient = Tensor(zeros: [maxMicroBatchRows, outputWidth], on: device)
        slotOwner = Array(repeating: nil, count: slotCount)
        slotOutput = Array(repeating: nil, count: slotCount)
        activationBytesPerRow = 4 * ((stage == 0 ? 0 : inputWidth) + model[range].reduce(0) { $0 + $1.outputWidth })
    }

    /// Activation slots (replicas of the stage's layers).
    public var slotCount: Int { slots.count }

    /// Runs one step's forwards and backwards over `microBatches` in this stage's schedule
    /// order, leaving the summed parameter gradients in `parameters.gradients`.
    ///
    /// Every stage passes the same `microBatches`, `globalRows` and `step`. The first stage
    /// passes `inputs` (rows `microBatch.rows` are micro-batch m's inputs), the last stage
    /// `targets` (the loss's targets, same rows); both are read until the call returns.
    /// - Parameters:
    ///   - globalRows: rows in the whole step's global batch (every micro-batch, every
    ///     data-parallel replica): the loss's gradient is scaled by 1/globalRows.
    ///   - step: the optimizer step (keys dropout masks with each micro-batch's `firstSample`).
    /// - Returns: the summed loss over this step's rows (0 except on the last stage), and
    ///   what the stage measured.
    public func forwardBackward(_ microBatches: [PipelineMicroBatch], inputs: Tensor?, targets: Tensor?,
                                globalRows: Int, step: Int) throws(CollectiveError) -> (lossSum: Double, stats: PipelineStepStats) {
        precondition(!microBatches.isEmpty && microBatches.count <= self.microBatches,
                     "\(microBatches.count) micro-batches; this stage was built for 1...\(self.microBatches)")
        precondition(microBatches.allSatisfy { $0.rows.count <= maxMicroBatchRows && !$0.rows.isEmpty },
                     "a micro-batch is empty or exceeds \(maxMicroBatchRows) rows")
        precondition(!isFirst || inputs != nil, "the first stage needs the inputs")
        precondition(!isLast || targets != nil, "the last stage needs the targets")
        let order = PipelineSchedule(kind: schedule, stage: stage, stages: partition.stages, microBatches: microBatches.count)
        let clock = ContinuousClock()
        let start = clock.now
        var stats = PipelineStepStats()
        var lossSum = 0.0
        var live = 0
        var gradientsStarted = false
        // A step that failed part-way (its group is broken anyway) leaves no stale owners behind.
        clearSlots()
        defer { clearSlots() }

        for action in order.actions {
            switch action {
            case .forward(let m):
                let batch = microBatches[m], slot = m % slots.count
                precondition(slotOwner[slot] == nil, "slot \(slot) still holds micro-batch \(slotOwner[slot] ?? -1)")
                slotOwner[slot] = m
                let input: Tensor
                if let inputs, isFirst {
                    input = inputs.rows(batch.rows)
                } else {
                    input = slotInputs[slot].rows(0..<batch.rows.count)
                    let waited = clock.now
                    try receive(into: input, fromStage: stage - 1, tag: Self.activationTag(m))
                    stats.receiveWait += clock.now - waited
                }
                let context = ForwardContext(training: true, step: step, firstSample: batch.firstSample, seed: seed,
                                             sequenceLength: sequenceLength)
                let output = slots[slot].forward(input, context: context)
                if isLast {
                    slotOutput[slot] = output
                } else {
                    try send(output, toStage: stage + 1, tag: Self.activationTag(m))
                }
                live += 1
                stats.peakStashedMicroBatches = max(stats.peakStashedMicroBatches, live)
                stats.peakStashedBytes = max(stats.peakStashedBytes, liveBytes(microBatches))

            case .backward(let m):
                let batch = microBatches[m], slot = m % slots.count
                precondition(slotOwner[slot] == m, "micro-batch \(m) is not in slot \(slot)")
                let gradient = outputGradient.rows(0..<batch.rows.count)
                if let loss, let targets, let output = slotOutput[slot], isLast {
                    lossSum += loss.evaluate(output: output, targets: targets.rows(batch.rows), gradient: gradient,
                                             gradScale: 1 / Float(globalRows))
                } else {
                    let waited = clock.now
                    try receive(into: gradient, fromStage: stage + 1, tag: Self.gradientTag(m))
                    stats.receiveWait += clock.now - waited
                }
                let inputGradient = slots[slot].backward(gradient, needInputGradient: !isFirst)
                if let inputGradient {
                    try send(inputGradient, toStage: stage - 1, tag: Self.gradientTag(m))
                }
                if parameters.count > 0 {
                    let own = slots[slot].parameters.gradients
                    if gradientsStarted {
                        device.axpby(alpha: 1, own, beta: 1, parameters.gradients)
                    } else {
                        device.copy(from: own, to: parameters.gradients)
                        gradientsStarted = true
                    }
                }
                slotOwner[slot] = nil
                slotOutput[slot] = nil
                live -= 1
            }
        }
        stats.stepTime = clock.now - start
        return (lossSum, stats)
    }

    /// Runs `microBatches` forward only (inference: dropout off, nothing stashed, no gradients),
    /// one after another through slot 0, as for a validation pass. Every stage passes the same
    /// micro-batches; the first passes `inputs`. On the last stage `output` gets each
    /// micro-batch with its output [rows, outputWidth] (a view valid during the call), to
    /// compute losses or predictions; the other stages never call it.
    public func forward(_ microBatches: [PipelineMicroBatch], inputs: Tensor?,
                        output: (PipelineMicroBatch, Tensor) -> Void) throws(CollectiveError) {
        precondition(microBatches.allSatisfy { $0.rows.count <= maxMicroBatchRows && !$0.rows.isEmpty },
                     "a micro-batch is empty or exceeds \(maxMicroBatchRows) rows")
        precondition(!isFirst || inputs != nil, "the first stage needs the inputs")
        for (m, batch) in microBatches.enumerated() {
            let input: Tensor
            if let inputs, isFirst {
                input = inputs.rows(batch.rows)
            } else {
                input = slotInputs[0].rows(0..<batch.rows.count)
                try receive(into: input, fromStage: stage - 1, tag: Self.activationTag(m))
            }
            let result = slots[0].forward(input, context: ForwardContext(training: false, firstSample: batch.firstSample, seed: seed,
                                                                         sequenceLength: sequenceLength))
            if isLast {
                output(batch, result)
            } else {
                try send(result, toStage: stage + 1, tag: Self.activationTag(m))
            }
        }
    }

    private func clearSlots() {
        for slot in slots.indices {
            slotOwner[slot] = nil
            slotOutput[slot] = nil
        }
    }

    /// Bytes of activations held now: every slot that holds a micro-batch, at its rows.
    private func liveBytes(_ microBatches: [PipelineMicroBatch]) -> Int {
        slotOwner.reduce(0) { sum, owner in sum + (owner.map { microBatches[$0].rows.count * activationBytesPerRow } ?? 0) }
    }

    /// Activations of micro-batch m (forward direction).
    static func activationTag(_ m: Int) -> UInt32 { 0x0100_0000 | UInt32(truncatingIfNeeded: m & 0xFF_FFFF) }
    /// Gradients of micro-batch m (backward direction).
    static func gradientTag(_ m: Int) -> UInt32 { 0x0200_0000 | UInt32(truncatingIfNeeded: m & 0xFF_FFFF) }

    private func send(_ tensor: Tensor, toStage target: Int, tag: UInt32) throws(CollectiveError) {
        precondition(tensor.isContiguous, "pipeline messages are sent from contiguous rows")
        try group.send(UnsafeBufferPointer(start: tensor.hostPointer, count: tensor.count), to: stageRanks[target], tag: tag)
    }

    private func receive(into tensor: Tensor, fromStage source: Int, tag: UInt32) throws(CollectiveError) {
        try group.receive(UnsafeMutableBufferPointer(start: tensor.hostPointer, count: tensor.count), from: stageRanks[source], tag: tag)
    }
}
