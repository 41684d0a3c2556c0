// The training loop of the built-in algorithms: seeded epochs of shuffled mini-batches,
// forward, loss, backward, optimizer step; validation each epoch; early stopping; checkpoints
// every N steps and at each epoch's end; resume from the newest checkpoint to the same result
// as an uninterrupted run.
import ForgeArchive
import ForgeCollectives
import ForgeData
import ForgeNN
import ForgeRandom
import ForgeTensor

/// The outcome of a run.
public struct TrainingResult {
    public var model: TrainedModel
    /// Final metrics in report order (train first).
    public var metrics: [MetricValue]
    public var state: TrainerState
}

/// Trains one built-in model on one device.
///
/// Concurrency: not Sendable; it owns tensors. Run it on one thread that has FTZ/DAZ set.
public final class Trainer {
    public let plan: TrainingPlan
    public let data: PreparedData
    public let spec: ModelSpec
    public let model: Sequential
    public let device: any Device
    /// The optimizer; with ZeRO, the sharded optimizer's wrapped one over this rank's segment.
    private let optimizer: any Optimizer
    /// With `forge_zero_stage` 1 and more than one rank: the optimizer state is sharded, and
    /// a step is reduce-scatter, update of this rank's segment, all-gather (no buckets).
    private let zero: ZeroRedundancyOptimizer?
    private let loss: any Loss
    private let batchSize: Int
    private let inputs: Tensor
    private let targets: Tensor
    private let outputGradient: Tensor
    private var stagingFeatures: [Float]
    private var stagingLabels: [Float]
    private var best: ParameterBlock?
    private var state = TrainerState()
    /// Batch splitting across a multi-threaded CPU device: `replicas[0]` is `model`, the others
    /// share its parameter values and write gradients of their own; `replicaGradients[p]` is
    /// replica p's output-gradient buffer.
    private let replicas: [Sequential]
    private let replicaGradients: [Tensor]
    private let pool: ComputePool?
    /// Data parallelism across processes (nil: one process). Every rank walks the same seeded
    /// order, takes its contiguous slice of each global batch, and the summed gradients are
    /// all-reduced before an identical optimizer step, so any world size takes the same steps
    /// as one process (up to float summation order).
    public let group: ProcessGroup?
    /// The step's loss and whether any rank was asked to stop, all-reduced together.
    private let lossBuffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: 2)
    /// Set when the ranks agreed, in the last step's reduction, to stop after it.
    private var stopAgreed = false
    /// Asked before each step whether a stop was requested.
    private var shouldStop: @Sendable () -> Bool = { false }
    /// With a group: what all-reduces the gradient buckets (on its own thread while backward
    /// goes on, or inline), and the buckets.
    private let reducer: BucketReducer?
    private let buckets: GradientBuckets?
    /// By default a bucket closes once it holds at least this many bytes of gradients.
    public static let defaultBucketBytes = 256 << 10

    /// With a `group`, gradients are all-reduced in buckets of at least `bucketBytes` (a layer is
    /// never split), each as soon as backward has produced it: on a thread of its own with
    /// `overlapReduction` (worth it when a core is free for it), else inline.
    public init(plan: TrainingPlan, data: PreparedData, device: any Device, group: ProcessGroup? = nil,
                bucketBytes: Int = Trainer.defaultBucketBytes, overlapReduction: Bool = true) {
        precondition(group == nil || device.capabilities.hostVisibleMemory, "data parallelism needs host-visible device memory")
        self.group = group
        self.plan = plan
        self.data = data
        self.device = device
        spec = ModelSpec(plan: plan, inputWidth: data.train.width, numClasses: data.numClasses)
        batchSize = min(plan.miniBatchSize, data.totalTrainCount)
        let evaluationRows = max(batchSize, min(1024, max(data.validation?.count ?? 0, data.train.count)))
        model = spec.build(maxBatch: evaluationRows, seed: plan.seed, device: device)
        loss = spec.loss
        if let group, group.worldSize > 1, plan.zeroStage == 1 {
            zero = ZeroRedundancyOptimizer(block: model.parameters, group: group) { values, gradients in
                Trainer.makeOptimizer(plan, values: values, gradients: gradients)
            }
        } else {
            zero = nil
        }
        optimizer = zero?.inner ?? Trainer.makeOptimizer(plan, values: model.parameters.values, gradients: model.parameters.gradients)
        inputs = Tensor(zeros: [evaluationRows, data.train.width], on: device)
        targets = Tensor(zeros: [evaluationRows], on: device)
        outputGradient = Tensor(zeros: [evaluationRows, model.outputWidth], on: device)
        // Host staging only for devices whose memory the trainer cannot write directly.
        let staged = device.capabilities.hostVisibleMemory ? 0 : evaluationRows
        stagingFeatures = [Float](repeating: 0, count: staged * data.train.width)
        stagingLabels = [Float](repeating: 0, count: staged)
        state.seed = plan.seed
        state.hyperparameters = plan.resolved
        state.trainRecords = data.totalTrainCount
        state.features = data.train.width
        // OpenBLAS's own threads scale poorly on the small GEMMs of one step (and spin while they
        // wait); splitting the batch across the device's threads, each running single-threaded
        // BLAS on its rows, scales nearly linearly. The sum of the replicas' gradients differs
        // from one thread's only in float rounding; a run is still bit-reproducible for a given
        // thread count.
        if let cpu = device as? CPUDevice, cpu.pool.threadCount > 1, batchSize >= 16 * cpu.pool.threadCount {
            let parts = cpu.pool.threadCount
            let rowsPerPart = (batchSize + parts - 1) / parts
            BLASRuntime.setThreadCount(1)
            pool = cpu.pool
            let (main, spec, outputs) = (model, spec, model.outputWidth)
            replicas = [main] + (1..<parts).map { _ in
                Sequential(replicaOf: main, layers: spec.makeLayers(), maxBatch: rowsPerPart)
            }
            replicaGradients = [outputGradient] + (1..<parts).map { _ in
                Tensor(zeros: [rowsPerPart, outputs], on: device)
            }
        } else {
            pool = nil
            replicas = [model]
            replicaGradients = [outputGradient]
        }
        if let group, zero == nil {
            reducer = BucketReducer(group: group, threaded: overlapReduction, prepare: { FloatEnvironment.enableFlushToZero() })
            buckets = GradientBuckets(model: model, bucketBytes: bucketBytes)
        } else {
            reducer = nil
            buckets = nil
        }
        if plan.earlyStoppingPatience > 0, data.validation != nil {
            // A block of its own for the best epoch's values (no network buffers needed).
            best = ParameterBlock(specs: Sequential.parameterSpecs(of: spec.makeLayers()), seed: plan.seed, device: device)
        }
    }

    deinit {
        reducer?.stop()
        lossBuffer.deallocate()
    }

    /// The plan's optimizer over flat `values` and `gradients` (the block, or a ZeRO segment).
    private static func makeOptimizer(_ plan: TrainingPlan, values: Tensor, gradients: Tensor) -> any Optimizer {
        switch plan.optimizer {
        case .sgd:
            SGD(values: values, gradients: gradients, learningRate: plan.learningRate, momentum: plan.momentum,
                weightDecay: plan.weightDecay)
        case .adam, .adamw:
            Adam(values: values, gradients: gradients, learningRate: plan.learningRate, beta1: plan.beta1, beta2: plan.beta2,
                 weightDecay: plan.weightDecay, decoupled: plan.optimizer == .adamw)
        }
    }

    private var earlyStopping: Bool { best != nil }

    /// Bytes of optimizer state this rank holds (with ZeRO, its segment's).
    public var optimizerStateBytes: Int {
        optimizer.stateTensors.reduce(0) { $0 + $1.tensor.count * MemoryLayout<Float>.stride }
    }

    /// Only one rank writes checkpoints (the state is the same on every rank).
    private var writesCheckpoints: Bool { (group?.rank ?? 0) == 0 }
    /// With ZeRO every rank takes part in a checkpoint (the optimizer state is gathered).
    private var makesCheckpoints: Bool { writesCheckpoints || zero != nil }

    /// Trains to the end (or to an early stop), resuming from `checkpoints` when it holds one.
    /// Every rank passes a store, or none.
    ///
    /// `shouldStop` is asked before each step; once it says yes on any rank, every rank stops
    /// after the same step (the answer travels with the step's loss), rank 0 writes a
    /// checkpoint, and `run` throws `TrainingError.stopped`.
    public func run(checkpoints: CheckpointStore? = nil, observer: any TrainingObserver = SilentObserver(),
                    shouldStop: @escaping @Sendable () -> Bool = { false }) throws(TrainingError) -> TrainingResult {
        self.shouldStop = shouldStop
        if let group {
            // All ranks resume from the same checkpoint: none may read while rank 0 writes.
            do {
                try group.barrier()
            } catch {
                throw .collective(error.description)
            }
        }
        if let checkpoints, let (checkpoint, path) = try checkpoints.loadLatest() {
            try restore(checkpoint, path: path)
            observer.resumed(fromStep: state.step, epoch: state.epoch + 1, path: path)
        }
        let batches = BatchSchedule(data: data, batchSize: batchSize, seed: plan.seed,
                                    rank: group?.rank ?? 0, worldSize: group?.worldSize ?? 1)
        observer.trainingStarted(RunSummary(trainRecords: data.totalTrainCount, validationRecords: data.validation?.count ?? 0,
                                            features: data.train.width, classes: spec.numClasses,
                                            parameterCount: model.parameters.count, stepsPerEpoch: batches.steps, epochs: plan.epochs))
        while !state.finished && state.epoch < plan.epochs {
            let permutation = batches.permutation(epoch: state.epoch)
            observer.epochStarted(epoch: state.epoch + 1, batches: batches.steps)
            while state.batchInEpoch < batches.steps {
                let batch = batches.batch(state.batchInEpoch, of: permutation)
                let batchLoss = try trainStep(local: batch.local, globalRows: batch.globalRows, firstSample: batch.firstSample)
                state.epochLossSum += batchLoss
                state.epochSamples += batch.globalRows
                state.batchInEpoch += 1
                state.step += 1
                observer.stepCompleted(epoch: state.epoch + 1, batch: state.batchInEpoch, batches: batches.steps,
                                       step: state.step, loss: batchLoss / Double(batch.globalRows))
                var saved: String?
                var checkpointed = false
                if let checkpoints, makesCheckpoints, plan.checkpointSteps > 0, state.step % plan.checkpointSteps == 0 {
                    saved = try saveCheckpoint(to: checkpoints)
                    checkpointed = true
                    if let saved { observer.checkpointSaved(path: saved, step: state.step) }
                }
                if stopAgreed {
                    if !checkpointed, let checkpoints, makesCheckpoints {
                        saved = try saveCheckpoint(to: checkpoints)
                        if let saved { observer.checkpointSaved(path: saved, step: state.step) }
                    }
                    throw .stopped(step: state.step, checkpoint: saved)
                }
            }
            let report = finishEpoch()
            observer.epochCompleted(report)
            if state.finished { observer.stoppedEarly(epoch: state.epoch, bestEpoch: state.bestEpoch) }
            if let checkpoints, makesCheckpoints, plan.checkpointSteps == 0 || state.step % plan.checkpointSteps != 0,
               let saved = try saveCheckpoint(to: checkpoints) {
                observer.checkpointSaved(path: saved, step: state.step)
            }
        }
        state.finished = true
        if let best { model.parameters.copyValues(from: best) }
        let metrics = finalMetrics()
        return TrainingResult(model: trainedModel(), metrics: metrics, state: state)
    }

    // MARK: Steps

    /// One optimizer step on a global batch of `globalRows` rows of which this rank holds the
    /// records `local`, the first being row `firstSample` of the global batch; returns the
    /// batch's summed loss.
    private func trainStep(local: ArraySlice<Int>, globalRows: Int, firstSample: Int) throws(TrainingError) -> Double {
        var lossSum = 0.0
        // Every rank submits the same all-reduces in the same order: the loss, then the
        // gradient buckets from the last layer back.
        let gradients = model.parameters.gradients
        let wantsStop: Float = shouldStop() ? 1 : 0
        stopAgreed = wantsStop > 0
        let submitLoss = { [lossBuffer, reducer] (sum: Double) in
            lossBuffer[0] = Float(sum)
            lossBuffer[1] = wantsStop
            reducer?.submit(lossBuffer)
        }
        let submitBucket = { [reducer, buckets] (bucket: Int) in
            guard let reducer, let buckets else { return }
            let range = buckets.ranges[bucket]
            reducer.submit(UnsafeMutableBufferPointer(start: gradients.hostPointer + range.lowerBound, count: range.count))
        }
        var submittedDuringBackward = false
        if local.isEmpty {
            // A batch smaller than the world leaves this rank nothing: it adds zero.
            device.fill(gradients, value: 0)
        } else {
            let x = load(data.train, indices: local)
            let job = StepJob(replicas: replicas, gradients: replicaGradients, inputs: x, targets: targets.rows(0..<local.count),
                              loss: loss, rows: local.count, globalRows: globalRows, firstSample: firstSample,
                              step: state.step, seed: plan.seed)
            if pool == nil, let buckets, reducer != nil {
                // One compute thread: each bucket goes to the reducer the moment backward has
                // finished its first layer, while the layers below it are still computing
                // (inline, it is reduced right there, between two layers' backward passes).
                lossSum = job.run(part: 0, lossComputed: submitLoss) { layer in
                    for bucket in buckets.completed(byLayer: layer) { submitBucket(bucket) }
                }
                submittedDuringBackward = true
            } else {
                var losses = [Double](repeating: 0, count: replicas.count)
                losses.withUnsafeMutableBufferPointer { buffer in
                    guard let base = buffer.baseAddress else { return }
                    let results = SendablePointer(base)
                    if let pool {
                        pool.run { part in results.pointer[part] = job.run(part: part) }
                    } else {
                        results.pointer[0] = job.run(part: 0)
                    }
                }
                for part in 1..<replicas.count where !job.slice(part).isEmpty {
                    device.axpby(alpha: 1, replicas[part].parameters.gradients, beta: 1, gradients)
                }
                lossSum = losses.reduce(0, +)
            }
        }
        if let reducer, let buckets {
            if !submittedDuringBackward {
                submitLoss(lossSum)
                for bucket in buckets.ranges.indices { submitBucket(bucket) }
            }
            do {
                try reducer.wait()
            } catch {
                throw .collective(error.description)
            }
            lossSum = Double(lossBuffer[0])
            stopAgreed = lossBuffer[1] > 0
        }
        if let zero, let group {
            lossBuffer[0] = Float(lossSum)
            lossBuffer[1] = wantsStop
            do {
                try group.allReduce(lossBuffer, op: .sum)
                try zero.step()
            } catch {
                throw .collective(error.description)
            }
            lossSum = Double(lossBuffer[0])
            stopAgreed = lossBuffer[1] > 0
        } else {
            optimizer.step()
        }
        return lossSum
    }

    /// Gathers rows of `dataset` into the input and target tensors; returns the input view.
    /// Host-visible devices receive the rows directly; others through one staging copy.
    private func load(_ dataset: Dataset, indices: some Collection<Int>) -> Tensor {
        let width = dataset.width
        let rows = indices.count
        let x = inputs.rows(0..<rows)
        let y = targets.rows(0..<rows)
        if device.capabilities.hostVisibleMemory {
            Trainer.gather(dataset, indices: indices, features: x.hostPointer, labels: y.hostPointer)
            return x
        }
        stagingFeatures.withUnsafeMutableBufferPointer { features in
            stagingLabels.withUnsafeMutableBufferPointer { labels in
                guard let f = features.baseAddress, let l = labels.baseAddress else { return }
                Trainer.gather(dataset, indices: indices, features: f, labels: l)
            }
        }
        stagingFeatures.withUnsafeBufferPointer { device.copy(from: UnsafeBufferPointer(rebasing: $0[0..<rows * width]), to: x) }
        stagingLabels.withUnsafeBufferPointer { device.copy(from: UnsafeBufferPointer(rebasing: $0[0..<rows]), to: y) }
        return x
    }

    private static func gather(_ dataset: Dataset, indices: some Collection<Int>,
                               features: UnsafeMutablePointer<Float>, labels: UnsafeMutablePointer<Float>) {
        let width = dataset.width
        dataset.features.withUnsafeBufferPointer { source in
            guard let base = source.baseAddress else { return }
            for (row, index) in indices.enumerated() {
                (features + row * width).update(from: base + index * width, count: width)
                labels[row] = dataset.labels[index]
            }
        }
    }

    // MARK: Epochs and evaluation

    private func finishEpoch() -> EpochReport {
        let trainLoss = reportedLoss(sum: state.epochLossSum, count: state.epochSamples)
        var metrics = [MetricValue("train:loss", trainLoss)]
        if let validation = data.validation {
            let evaluation = evaluate(validation)
            metrics += evaluation
            if earlyStopping, let validationLoss = evaluation.first(where: { $0.name == "validation:loss" })?.value {
                let threshold = (state.bestValidationLoss ?? .infinity) * (1 - plan.earlyStoppingTolerance)
                if state.bestValidationLoss == nil || validationLoss < threshold {
                    state.bestValidationLoss = validationLoss
                    state.bestEpoch = state.epoch + 1
                    state.epochsWithoutImprovement = 0
                    best?.copyValues(from: model.parameters)
                } else {
                    state.epochsWithoutImprovement += 1
                    if state.epochsWithoutImprovement >= plan.earlyStoppingPatience { state.finished = true }
                }
            }
        }
        state.lastReport = Dictionary(uniqueKeysWithValues: metrics.map { ($0.name, $0.value) })
        let report = EpochReport(epoch: state.epoch + 1, step: state.step, metrics: metrics)
        state.epoch += 1
        state.batchInEpoch = 0
        state.epochLossSum = 0
        state.epochSamples = 0
        return report
    }

    /// Mean loss in the units users expect: cross-entropy for classifiers, the mean squared
    /// error in label units for regressors.
    private func reportedLoss(sum: Double, count: Int) -> Double {
        let mean = sum / Double(max(count, 1))
        guard plan.predictorType == .regressor else { return mean }
        let scale = Double(data.labelScaling.scale)
        return 2 * mean / (scale * scale)
    }

    /// Loss and the algorithm's metric on `dataset` with the current parameters.
    public func evaluate(_ dataset: Dataset) -> [MetricValue] {
        var lossSum = 0.0, correct = 0
        let rows = model.maxBatch
        var start = 0
        while start < dataset.count {
            let end = min(start + rows, dataset.count)
            let x = load(dataset, indices: start..<end)
            let output = model.forward(x, context: ForwardContext(training: false))
            lossSum += loss.evaluate(output: output, targets: targets.rows(0..<(end - start)), gradient: nil, gradScale: 1)
            switch plan.predictorType {
            case .multiclassClassifier:
                for (row, predicted) in device.argmaxRows(output).enumerated() where Float(predicted) == dataset.labels[start + row] {
                    correct += 1
                }
            case .binaryClassifier:
                for (row, logit) in output.toArray().enumerated() where (logit > 0 ? 1 : 0) == dataset.labels[start + row] {
                    correct += 1
                }
            case .regressor:
                break
            }
            start = end
        }
        let validationLoss = reportedLoss(sum: lossSum, count: dataset.count)
        if plan.predictorType == .regressor {
            return [MetricValue("validation:loss", validationLoss), MetricValue("validation:mse", validationLoss)]
        }
        return [MetricValue("validation:loss", validationLoss),
                MetricValue(plan.validationMetricName, Double(correct) / Double(dataset.count))]
    }

    private func finalMetrics() -> [MetricValue] {
        var metrics = [MetricValue("train:loss", state.lastReport["train:loss"] ?? .nan)]
        if let validation = data.validation { metrics += evaluate(validation) }
        return metrics
    }

    // MARK: Checkpoints

    /// Writes a checkpoint on the writing rank and returns its path (nil on the others). With
    /// ZeRO every rank calls it, to gather the optimizer state.
    private func saveCheckpoint(to checkpoints: CheckpointStore) throws(TrainingError) -> String? {
        let optimizerState: [(name: String, values: [Float])]
        if let zero {
            do {
                optimizerState = try zero.fullStateTensors()
            } catch {
                throw .collective(error.description)
            }
        } else {
            optimizerState = optimizer.stateTensors.map { ($0.name, $0.tensor.toArray()) }
        }
        guard writesCheckpoints else { return nil }
        return try checkpoints.save(makeCheckpoint(optimizerState: optimizerState))
    }

    /// The state as a checkpoint; the optimizer's is whole (`fullStateTensors` with ZeRO), so a
    /// checkpoint does not depend on the layout that wrote it.
    private func makeCheckpoint(optimizerState: [(name: String, values: [Float])]) -> Checkpoint {
        var tensors = model.parameters.namedValues().map { SafeTensor(name: "model.\($0.name)", shape: $0.shape, floats: $0.values) }
        for (name, values) in optimizerState {
            tensors.append(SafeTensor(name: "optimizer.\(name)", shape: [values.count], floats: values))
        }
        if let best {
            tensors += best.namedValues().map { SafeTensor(name: "best.\($0.name)", shape: $0.shape, floats: $0.values) }
        }
        return Checkpoint(state: state, tensors: tensors)
    }

    private func restore(_ checkpoint: Checkpoint, path: String) throws(TrainingError) {
        let saved = checkpoint.state
        guard saved.hyperparameters == plan.resolved else {
            let changed = Set(saved.hyperparameters.keys).union(plan.resolved.keys)
                .filter { saved.hyperparameters[$0] != plan.resolved[$0] }.sorted()
            throw .badCheckpoint(path: path, reason: "it was written with other hyperparameters (\(changed.joined(separator: ", ")))")
        }
        guard saved.trainRecords == data.totalTrainCount, saved.features == data.train.width else {
            throw .badCheckpoint(path: path, reason: "it was written for \(saved.trainRecords) records × \(saved.features) features, "
                + "this data has \(data.totalTrainCount) × \(data.train.width)")
        }
        var byName = [String: SafeTensor]()
        for tensor in checkpoint.tensors { byName[tensor.name] = tensor }
        func values(_ name: String, count: Int) throws(TrainingError) -> [Float] {
            guard let tensor = byName[name], let floats = tensor.floats, floats.count == count else {
                throw .badCheckpoint(path: path, reason: "tensor '\(name)' is missing or has the wrong size")
            }
            return floats
        }
        func fill(_ block: ParameterBlock, prefix: String) throws(TrainingError) {
            for parameter in block.parameters {
                let floats = try values(prefix + parameter.name, count: parameter.value.count)
                floats.withUnsafeBufferPointer { device.copy(from: $0, to: parameter.value) }
            }
        }
        try fill(model.parameters, prefix: "model.")
        if let zero {
            var full: [(name: String, values: [Float])] = []
            for (name, _) in optimizer.stateTensors {
                full.append((name, try values("optimizer.\(name)", count: model.parameters.count)))
            }
            do {
                try zero.loadFullState(full)
            } catch {
                throw .badCheckpoint(path: path, reason: error.description)
            }
        } else {
            for (name, tensor) in optimizer.stateTensors {
                let floats = try values("optimizer.\(name)", count: tensor.count)
                floats.withUnsafeBufferPointer { device.copy(from: $0, to: tensor) }
            }
        }
        if let best { try fill(best, prefix: "best.") }
        optimizer.restore(stepCount: saved.step)
        state = saved
    }

    // MARK: Result

    private func trainedModel() -> TrainedModel {
        TrainedModel(plan: plan, spec: spec, parameters: model.parameters.namedValues(),
                     featureScaling: data.featureScaling, labelScaling: data.labelScaling)
    }
}

/// One step's forward and backward for each replica on its contiguous slice of the batch.
///
/// Concurrency: `@unchecked Sendable` because it carries tensors and models into pool jobs.
/// Part p touches only replica p, rows `slice(p)` of the inputs and targets, and its own
/// gradient buffers; the shared parameter values are only read until every part returns.
private struct StepJob: @unchecked Sendable {
    let replicas: [Sequential]
    let gradients: [Tensor]
    let inputs: Tensor
    let targets: Tensor
    let loss: any Loss
    /// This process's rows, the whole step's rows (all ranks), and the global index of the first.
    let rows: Int
    let globalRows: Int
    let firstSample: Int
    let step: Int
    let seed: UInt64

    /// Rows of part `part`: contiguous, sizes differing by at most one, as ranks split a batch.
    func slice(_ part: Int) -> Range<Int> {
        (try? Shard(rank: part, worldSize: replicas.count))?.slice(ofBatch: 0..<rows) ?? 0..<0
    }

    /// Runs part `part`; returns its summed loss (0 for an empty slice). `lossComputed` gets the
    /// loss as soon as it is known, `layerFinished` each layer whose gradients are final.
    func run(part: Int, lossComputed: ((Double) -> Void)? = nil, layerFinished: ((Int) -> Void)? = nil) -> Double {
        let rows = slice(part)
        guard !rows.isEmpty else { return 0 }
        let model = replicas[part]
        // Dropout masks are keyed by the sample's index in the global batch, so any split
        // draws the masks one thread would.
        let context = ForwardContext(training: true, step: step, firstSample: firstSample + rows.lowerBound, seed: seed)
        let output = model.forward(inputs.rows(rows), context: context)
        let gradient = gradients[part].rows(0..<rows.count)
        let lossSum = loss.evaluate(output: output, targets: targets.rows(rows), gradient: gradient, gradScale: 1 / Float(globalRows))
        lossComputed?(lossSum)
        model.backward(gradient, layerFinished: layerFinished)
        return lossSum
    }
}

/// The gradient buckets of data-parallel training: contiguous ranges of the flat parameter
/// block, formed from the last layer back until each holds at least `bucketBytes`, in the order
/// backward completes them. A bucket is complete once its first (lowest) layer has finished.
struct GradientBuckets {
    /// Ranges of the flat block, last layers first.
    let ranges: [Range<Int>]
    /// The layer whose completion completes each bucket.
    let firstLayers: [Int]

    init(model: Sequential, bucketBytes: Int) {
        var ranges: [Range<Int>] = [], firstLayers: [Int] = []
        var open: Range<Int>?
        var openLayer = 0
        for layer in model.layers.indices.reversed() {
            let range = model.parameterRange(ofLayer: layer)
            guard !range.isEmpty else { continue }
            open = range.lowerBound..<(open?.upperBound ?? range.upperBound)
            openLayer = layer
            if let bucket = open, bucket.count * 4 >= bucketBytes {
                ranges.append(bucket)
                firstLayers.append(layer)
                open = nil
            }
        }
        if let open {
            ranges.append(open)
            firstLayers.append(openLayer)
        }
        self.ranges = ranges
        self.firstLayers = firstLayers
    }

    /// The buckets that layer `layer` completes.
    func completed(byLayer layer: Int) -> [Int] {
        firstLayers.indices.filter { firstLayers[$0] == layer }
    }
}

/// Which records each step of an epoch trains on, on this rank.
///
/// A replicated channel (or one process): one seeded shuffle of all records per epoch, cut into
/// global batches, each split into contiguous per-rank slices (CONVENTIONS.md), so any world
/// size takes the steps one process takes. A sharded channel (ShardedByS3Key): each rank
/// shuffles its own records (seeded by rank) and takes its slice's worth of them per step,
/// wrapping around its shard; every rank takes ⌈total records / global batch⌉ steps per epoch,
/// so the ranks stay in step however unevenly the files split.
struct BatchSchedule {
    let steps: Int
    private let order: EpochOrder
    private let ranges: [Range<Int>]
    private let sharded: Bool
    /// Nil for one process (the whole batch is this rank's).
    private let shard: Shard?
    private let batchSize: Int
    private let localCount: Int

    init(data: PreparedData, batchSize: Int, seed: UInt64, rank: Int, worldSize: Int) {
        sharded = data.trainIsSharded && worldSize > 1
        shard = try? Shard(rank: rank, worldSize: worldSize)
        self.batchSize = batchSize
        localCount = data.train.count
        if sharded {
            order = EpochOrder(count: data.train.count, seed: mix64(seed ^ 0x5348_4152_4400_0000 &+ UInt64(rank)))
            ranges = []
            steps = (data.totalTrainCount + batchSize - 1) / batchSize
        } else {
            order = EpochOrder(count: data.train.count, seed: seed)
            ranges = order.batchRanges(batchSize: batchSize)
            steps = ranges.count
        }
    }

    func permutation(epoch: Int) -> [Int] { order.permutation(epoch: epoch) }

    /// Step `step`'s records on this rank, the global batch's size, and the place of this
    /// rank's first row in it (dropout is keyed by it).
    func batch(_ step: Int, of permutation: [Int]) -> (local: ArraySlice<Int>, globalRows: Int, firstSample: Int) {
        if sharded {
            let mine = shard?.slice(ofBatch: 0..<batchSize) ?? 0..<batchSize
            let records = (0..<mine.count).map { permutation[(step * mine.count + $0) % localCount] }
            return (records[...], batchSize, mine.lowerBound)
        }
        let global = permutation[ranges[step]]
        let mine = shard?.slice(ofBatch: 0..<global.count) ?? 0..<global.count
        return (global[(global.startIndex + mine.lowerBound)..<(global.startIndex + mine.upperBound)], global.count, mine.lowerBound)
    }
}
