// Pipeline parallelism with stages as threads over the in-process transport: an mlp-like stack
// split over 2 and 4 stages, GPipe and 1F1B, 1, 3 and 4 micro-batches of a batch they do not
// divide, dropout on, trained with SGD and Adam, must take the steps one process takes, up to
// the order of summing micro-batch gradients; a peer that goes silent mid-step is an error on
// the others within the transport timeout.
import ForgeCollectives
import ForgeNN
import ForgeTensor
import ForgeTraining
import Foundation
import Testing

@Suite struct PipelineStageTests {
    static let seed: UInt64 = 7
    static let globalRows = 10
    static let width = 6
    static let steps = 60

    /// Linear(relu), Dropout, Linear(relu), Dropout, Linear, tanh, Linear: four layers with
    /// parameters, three without.
    static func makeLayers() -> [any Layer] {
        [Linear(width, 16, activation: .relu), Dropout(rate: 0.25, width: 16, salt: 1),
         Linear(16, 16, activation: .relu), Dropout(rate: 0.25, width: 16, salt: 2),
         Linear(16, 12), ActivationLayer.tanh(12), Linear(12, 3)]
    }

    /// Step `step`'s global batch: features [rows, width] and class labels [rows].
    static func batch(_ step: Int) -> (features: [Float], labels: [Float]) {
        var state = UInt64(step) &* 0x9E37_79B9_7F4A_7C15 &+ 1
        func next() -> Float {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Float(state >> 40) / Float(1 << 24)
        }
        let features = (0..<(globalRows * width)).map { _ in 2 * next() - 1 }
        let labels = (0..<globalRows).map { row in Float((0..<3).first { features[row * width] < Float($0 + 1) * 2 / 3 - 1 } ?? 2) }
        return (features, labels)
    }

    enum OptimizerKind: String, CaseIterable, Sendable {
        case sgd, adam
        func make(_ block: ParameterBlock) -> any Optimizer {
            switch self {
            case .sgd: SGD(block, learningRate: 0.1, momentum: 0.9)
            case .adam: Adam(block, learningRate: 0.01)
            }
        }
    }

    /// One process: parameters by name, and each step's summed loss followed by a forward-only
    /// pass's loss.
    static func trainSingle(_ optimizerKind: OptimizerKind) -> (parameters: [String: [Float]], losses: [Double]) {
        let device = CPUDevice(threadCount: 1)
        let model = Sequential(makeLayers(), maxBatch: globalRows, seed: seed, device: device)
        let optimizer = optimizerKind.make(model.parameters)
        let gradient = Tensor(zeros: [globalRows, 3], on: device)
        var losses = [Double]()
        for step in 0..<steps {
            let (features, labels) = batch(step)
            let x = Tensor(features, shape: [globalRows, width], on: device), y = Tensor(labels, shape: [globalRows], on: device)
            let output = model.forward(x, context: ForwardContext(training: true, step: step, firstSample: 0, seed: seed))
            losses.append(SoftmaxCrossEntropy().evaluate(output: output, targets: y, gradient: gradient, gradScale: 1 / Float(globalRows)))
            model.backward(gradient)
            optimizer.step()
        }
        // A forward-only pass over a fresh batch (dropout off), as validation runs.
        let (features, labels) = batch(steps)
        let x = Tensor(features, shape: [globalRows, width], on: device), y = Tensor(labels, shape: [globalRows], on: device)
        let output = model.forward(x, context: ForwardContext(training: false, seed: seed))
        losses.append(SoftmaxCrossEntropy().evaluate(output: output, targets: y, gradient: nil, gradScale: 1))
        return (Dictionary(uniqueKeysWithValues: model.parameters.namedValues().map { ($0.name, $0.values) }), losses)
    }

    /// Every stage on a thread of its own; each stage's parameters by name, each step's loss
    /// (the last stage's) and a forward-only pass's, and each stage's last step statistics.
    static func trainPipeline(stages: Int, schedule: PipelineScheduleKind, microBatches: Int, optimizerKind: OptimizerKind,
                              transport: ((Int, InProcessHub) -> any CollectiveTransport)? = nil, timeoutMilliseconds: Int = 30_000)
        -> [Result<StageOutcome, CollectiveError>] {
        let hub = InProcessHub(worldSize: stages, timeoutMilliseconds: timeoutMilliseconds)
        let outcomes = Outcomes(count: stages)
        let done = DispatchGroup()
        for rank in 0..<stages {
            done.enter()
            let handed = Handed(value: transport?(rank, hub) ?? hub.transport(rank: rank))
            Thread {
                defer { done.leave() }
                outcomes.set(rank, Result { () throws(CollectiveError) in
                    try runStage(rank: rank, group: ProcessGroup(transport: handed.value), schedule: schedule,
                                 microBatches: microBatches, optimizerKind: optimizerKind)
                })
            }.start()
        }
        done.wait()
        return outcomes.values()
    }

    struct StageOutcome: Sendable {
        var parameters: [String: [Float]]
        var losses: [Double]
        var stats: PipelineStepStats
        var slots: Int
    }

    static func runStage(rank: Int, group: ProcessGroup, schedule: PipelineScheduleKind, microBatches: Int,
                         optimizerKind: OptimizerKind) throws(CollectiveError) -> StageOutcome {
        let device = CPUDevice(threadCount: 1)
        let counts = makeLayers().map { $0.parameterSpecs.reduce(0) { $0 + $1.shape.reduce(1, *) } }
        guard let partition = try? StagePartition(balancing: counts, stages: group.worldSize) else {
            throw .invalidArgument("cannot partition")
        }
        let stage = PipelineStage(makeLayers: makeLayers, partition: partition, stage: rank, group: group, schedule: schedule,
                                  microBatches: microBatches, maxMicroBatchRows: (globalRows + microBatches - 1) / microBatches,
                                  loss: SoftmaxCrossEntropy(), seed: seed, device: device)
        let optimizer = optimizerKind.make(stage.parameters)
        let split = PipelineMicroBatch.split(rows: globalRows, into: microBatches)
        var losses = [Double](), stats = PipelineStepStats()
        for step in 0..<steps {
            let (features, labels) = batch(step)
            let x = stage.isFirst ? Tensor(features, shape: [globalRows, width], on: device) : nil
            let y = stage.isLast ? Tensor(labels, shape: [globalRows], on: device) : nil
            let result = try stage.forwardBackward(split, inputs: x, targets: y, globalRows: globalRows, step: step)
            optimizer.step()
            losses.append(result.lossSum)
            stats = result.stats
        }
        let (features, labels) = batch(steps)
        let x = stage.isFirst ? Tensor(features, shape: [globalRows, width], on: device) : nil
        let y = Tensor(labels, shape: [globalRows], on: device)
        var validationLoss = 0.0
        try stage.forward(split, inputs: x) { microBatch, output in
            validationLoss += SoftmaxCrossEntropy().evaluate(output: output, targets: y.rows(microBatch.rows), gradient: nil, gradScale: 1)
        }
        losses.append(validationLoss)
        return StageOutcome(parameters: Dictionary(uniqueKeysWithValues: stage.parameters.namedValues().map { ($0.name, $0.values) }),
                            losses: losses, stats: stats, slots: stage.slotCount)
    }

    static let configurations: [(Int, PipelineScheduleKind, Int)] = [2, 4].flatMap { stages in
        PipelineScheduleKind.allCases.flatMap { schedule in [1, 3, 4].map { (stages, schedule, $0) } }
    }

    @Test(arguments: configurations, OptimizerKind.allCases)
    func stagesTakeTheSingleProcessSteps(configuration: (Int, PipelineScheduleKind, Int), optimizerKind: OptimizerKind) throws {
        let (stages, schedule, microBatches) = configuration
        let reference = Self.trainSingle(optimizerKind)
        let outcomes = try Self.trainPipeline(stages: stages, schedule: schedule, microBatches: microBatches,
                                              optimizerKind: optimizerKind).map { try $0.get() }
        let label = "P=\(stages) \(schedule) M=\(microBatches) \(optimizerKind)"
        // Every parameter of the model lives on exactly one stage, under its global name.
        let names = outcomes.flatMap(\.parameters.keys)
        #expect(names.sorted() == reference.parameters.keys.sorted(), "\(label): \(names)")
        var differences = [String]()
        for (rank, outcome) in outcomes.enumerated() {
            for (name, values) in outcome.parameters {
                let expected = try #require(reference.parameters[name])
                let scale = expected.map(abs).max() ?? 1
                let difference = zip(expected, values).map { abs($0 - $1) }.max() ?? .infinity
                if difference / max(scale, .leastNormalMagnitude) > 1e-5 {
                    differences.append("stage \(rank) \(name): max|Δ|/max|ref| = \(difference / scale)")
                }
            }
            #expect(outcome.slots == (schedule == .gpipe ? microBatches : min(stages - rank, microBatches)), "\(label) stage \(rank)")
            #expect(outcome.stats.peakStashedMicroBatches == outcome.slots, "\(label) stage \(rank)")
        }
        #expect(differences.isEmpty, "\(label): \(differences.joined(separator: "; "))")
        let losses = try #require(outcomes.last?.losses)
        for (step, (expected, found)) in zip(reference.losses, losses).enumerated() {
            #expect(abs(expected - found) <= 1e-5 * max(1, abs(expected)), "\(label) step \(step): loss \(found) vs \(expected)")
        }
    }

    @Test(arguments: PipelineScheduleKind.allCases)
    func aSilentPeerFailsTheOthersWithinTheTimeout(schedule: PipelineScheduleKind) {
        // Stage 1 of 3 stops sending after its fifth message (mid-way through the first step): its
        // neighbours wait for it, give up after the timeout, and say which rank went silent.
        let outcomes = Self.trainPipeline(stages: 3, schedule: schedule, microBatches: 4, optimizerKind: .sgd,
                                          transport: { rank, hub in
                                              rank == 1 ? SilencingTransport(hub.transport(rank: rank), sends: 5) as any CollectiveTransport : hub.transport(rank: rank)
                                          },
                                          timeoutMilliseconds: 300)
        for rank in [0, 2] {
            switch outcomes[rank] {
            case .success: Issue.record("stage \(rank) finished although stage 1 went silent")
            case .failure(let error): #expect(error == .timedOut(peer: 1, milliseconds: 300), "stage \(rank): \(error)")
            }
        }
        if case .success = outcomes[1] { Issue.record("the silent stage finished") }
    }

    @Test func microBatchesSplitLikeRanks() {
        let split = PipelineMicroBatch.split(rows: 10, into: 4, firstSample: 20)
        #expect(split.map(\.rows) == [0..<3, 3..<6, 6..<8, 8..<10])
        #expect(split.map(\.firstSample) == [20, 23, 26, 28])
        #expect(PipelineMicroBatch.split(rows: 2, into: 4).map(\.rows) == [0..<1, 1..<2])
    }

    @Test func stashedBytesCountLiveMicroBatches() throws {
        // GPipe holds all M micro-batches at once, 1F1B at most P − s: on the first of two
        // stages with M = 4, 10 rows (3, 3, 2, 2), GPipe peaks at 10 rows' activations and 1F1B
        // at 6 rows' (two micro-batches of 3).
        for (schedule, rows) in [(PipelineScheduleKind.gpipe, 10), (.oneForwardOneBackward, 6)] {
            let outcomes = try Self.trainPipeline(stages: 2, schedule: schedule, microBatches: 4, optimizerKind: .sgd).map { try $0.get() }
            // Stage 0 holds layers 0-3: outputs of widths 16, 16, 16, 16 and no received input.
            #expect(outcomes[0].stats.peakStashedBytes == rows * 4 * 64, "\(schedule)")
        }
    }
}

/// Stops sending (silently drops every message) after `sends` messages: a rank that hangs or
/// died mid-step, as its peers see it.
private final class SilencingTransport: CollectiveTransport {
    private let inner: any CollectiveTransport
    private var remaining: Int

    init(_ inner: any CollectiveTransport, sends: Int) {
        self.inner = inner
        remaining = sends
    }

    var rank: Int { inner.rank }
    var worldSize: Int { inner.worldSize }

    func send(_ bytes: UnsafeRawBufferPointer, to peer: Int, tag: UInt64) throws(CollectiveError) {
        guard remaining > 0 else { return }
        remaining -= 1
        try inner.send(bytes, to: peer, tag: tag)
    }

    func receive(from peer: Int, tag: UInt64, byteCount: Int, _ consume: (UnsafeRawBufferPointer) -> Void) throws(CollectiveError) {
        try inner.receive(from: peer, tag: tag, byteCount: byteCount, consume)
    }
}

/// Hands a rank's transport to its thread.
private struct Handed<T>: @unchecked Sendable {
    let value: T
}

/// Per-stage outcomes written from the stage threads.
private final class Outcomes: @unchecked Sendable {
    private let lock = NSLock()
    private var slots: [Result<PipelineStageTests.StageOutcome, CollectiveError>?]
    init(count: Int) { slots = Array(repeating: nil, count: count) }
    func set(_ index: Int, _ value: Result<PipelineStageTests.StageOutcome, CollectiveError>) {
        lock.lock()
        slots[index] = value
        lock.unlock()
    }
    func values() -> [Result<PipelineStageTests.StageOutcome, CollectiveError>] {
        lock.lock()
        defer { lock.unlock() }
        return slots.compactMap { $0 }
    }
}
