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
    /// A language model's train corpus: the entropy of its byte frequencies (nats per byte), the
    /// loss to beat.
    public var unigramEntropy: Double?
}

/// Trains one built-in model on one device.
///
/// Concurrency: not Sendable; it owns tensors. Run it on one thread that has FTZ/DAZ set.
public final class Trainer {
    public let plan: TrainingPlan
    public let data: PreparedData
    public let spec: ModelSpec
    /// The whole model (its tensor-parallel part under tensor parallelism); nil when this rank
    /// runs a pipeline stage.
    let model: Sequential?
    /// This rank's pipeline stage, when the model is split into stages.
    let stage: PipelineStage?
    /// This rank's parameters: the whole model's, or its stage's and tensor part's.
    public let parameters: ParameterBlock
    /// The logical tensor each parameter is part of (its split).
    let parameterSplits: [TensorSplit]
    public let device: any Device
    /// The optimizer; with ZeRO, the sharded optimizer's wrapped one over this rank's segment.
    let optimizer: any Optimizer
    /// With `forge_zero_stage` 1 and more than one rank: the optimizer state is sharded, and
    /// a step is reduce-scatter, update of this rank's segment, all-gather (no buckets); or,
    /// co-located, reduce and update in place in one shared copy of the values (`valuesShared`).
    let zero: ZeroRedundancyOptimizer?
    let loss: any Loss
    let batchSize: Int
    /// Model rows per sample: the context length for a language model (a sample is a window of
    /// text, its rows the window's tokens), else 1.
    let sequenceLength: Int
    /// Optimizer steps the whole run takes (for the learning-rate schedule).
    var totalSteps = 0
    let inputs: Tensor
    let targets: Tensor
    let outputGradient: Tensor
    var stagingFeatures: [Float]
    var stagingLabels: [Float]
    var best: ParameterBlock?
    var state = TrainerState()
    /// Batch splitting across a multi-threaded CPU device: `replicas[0]` is `model`, the others
    /// share its parameter values and write gradients of their own; `replicaGradients[p]` is
    /// replica p's output-gradient buffer.
    let replicas: [Sequential]
    let replicaGradients: [Tensor]
    let pool: ComputePool?
    /// All the job's ranks (nil: one process).
    public let group: ProcessGroup?
    /// Data parallelism: every replica walks the same seeded order, takes its contiguous slice
    /// of each global batch, and the summed gradients are all-reduced over this group before an
    /// identical optimizer step, so any world size takes the same steps as one process (up to
    /// float summation order). The whole group unless the model is split across ranks.
    let dataGroup: ProcessGroup?
    /// With pipeline or tensor parallelism: where this rank sits, and its groups.
    let parallel: ParallelGroups?
    let tensorParallel: TensorParallelAdapter?
    /// Micro-batches per step under pipeline parallelism.
    let microBatches: Int
    /// A tied output head on another stage than the embedding: this rank's side of the pair
    /// (its parameter and the partner's rank). Both keep a copy of the table and add each
    /// other's gradient before every update, so the copies stay equal.
    let tiedTable: TiedTable?
    /// The last step's pipeline measurements (nil without a pipeline).
    public internal(set) var lastPipelineStats: PipelineStepStats?
    /// The step's loss and whether any rank was asked to stop, all-reduced together.
    let lossBuffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: 2)
    /// Set when the ranks agreed, in the last step's reduction, to stop after it.
    var stopAgreed = false
    /// Asked before each step whether a stop was requested.
    var shouldStop: @Sendable () -> Bool = { false }
    /// With a group: what all-reduces the gradient buckets (on its own thread while backward
    /// goes on, or inline), and the buckets.
    let reducer: BucketReducer?
    let buckets: GradientBuckets?
    /// Co-located ranks reducing inline: the shared region holding the loss and stop flag (its
    /// first two floats) and then the gradients, all-reduced in place once per step.
    let fusedReduction: UnsafeMutableBufferPointer<Float>?
    /// The loss and stop flag's place in the shared region's header (co-located ranks only).
    let sharedHeader: UnsafeMutableBufferPointer<Float>?
    /// Co-located ranks sharding the update: every rank's parameter values are one copy, in
    /// rank 0's shared region, which each rank reads where it lies and updates in its own
    /// segment. Anything else that writes the values (a checkpoint, the best epoch's values)
    /// writes the same bytes on every rank, and behind a barrier.
    let valuesShared: Bool
    static let fusedHeader = 16
    /// By default a bucket closes once it holds at least this many bytes of gradients.
    public static let defaultBucketBytes = 256 << 10

    /// With a `group`, gradients are all-reduced in buckets of at least `bucketBytes` (a layer is
    /// never split), each as soon as backward has produced it: on a thread of its own with
    /// `overlapReduction` (worth it when a core is free for it), else inline.
    ///
    /// With pipeline or tensor degrees above 1 (`plan.layout`), `group` is every rank of the job
    /// and is split as `ParallelLayout` says: each rank builds its stage's layers, or its part of
    /// each layer, and the data-parallel replicas of each piece reduce their gradients together.
    /// Throws when the layout does not fit the group or the model.
    public init(plan: TrainingPlan, data: PreparedData, device: any Device, group: ProcessGroup? = nil,
                bucketBytes: Int = Trainer.defaultBucketBytes, overlapReduction: Bool = true) throws(TrainingError) {
        precondition(group == nil || device.capabilities.hostVisibleMemory, "data parallelism needs host-visible device memory")
        // Each rank picks from the CPUs it was given, and a binding may give ranks different
        // counts: they agree (any rank with a CPU to spare makes it threaded everywhere), as
        // the memory layout and the collectives below must be the same on every rank.
        var overlapReduction = overlapReduction
        if let group, group.worldSize > 1 {
            let vote = UnsafeMutableBufferPointer<Float>.allocate(capacity: 1)
            defer { vote.deallocate() }
            vote[0] = overlapReduction ? 1 : 0
            do {
                try group.allReduce(vote, op: .max)
            } catch {
                throw .group(error)
            }
            overlapReduction = vote[0] > 0
        }
        self.group = group
        self.plan = plan
        self.data = data
        self.device = device
        spec = ModelSpec(plan: plan, inputWidth: data.train.width, numClasses: data.numClasses)
        batchSize = min(plan.miniBatchSize, data.totalTrainCount)
        sequenceLength = spec.sequenceLength
        loss = spec.loss
        // The layout: which ranks split the model, which replicate it.
        let pipelineDegree = plan.layout.pipelineDegree, tensorDegree = plan.layout.tensorDegree
        if pipelineDegree * tensorDegree > 1 {
            guard let group else {
                throw .layout("pipeline degree \(pipelineDegree) × tensor degree \(tensorDegree) needs that many ranks; run under forge launch or --instance-count")
            }
            do {
                let layout = try ParallelLayout(worldSize: group.worldSize, pipelineDegree: pipelineDegree, tensorDegree: tensorDegree)
                parallel = try group.parallelGroups(layout)
            } catch let error as ParallelLayoutError {
                throw .layout(error.description)
            } catch {
                throw .collective("\(error)")
            }
        } else {
            parallel = nil
        }
        dataGroup = parallel?.dataParallel ?? group
        var shardedInRegion = false
        let tensorGroup = (parallel?.tensorParallel).flatMap { $0.worldSize > 1 ? TensorParallelAdapter(group: $0) : nil }
        tensorParallel = tensorGroup
        let tensorRank = parallel?.coordinates.tensorIndex ?? 0
        let dataDegree = dataGroup?.worldSize ?? 1
        microBatches = pipelineDegree > 1 ? (plan.layout.microBatches ?? pipelineDegree) : 1
        let modelRows: Int
        let separateTiedHead = pipelineDegree > 1 && (plan.transformer?.tieEmbeddings ?? false)
        let layers = spec.makeLayers(tensorGroup: tensorGroup, separateTiedHead: separateTiedHead)
        let fullInput = layers.first?.inputWidth ?? 0, fullOutput = layers.last?.outputWidth ?? 0
        if let parallel, pipelineDegree > 1 {
            let counts = layers.map { $0.parameterSpecs.reduce(0) { $0 + $1.shape.reduce(1, *) } }
            let partition: StagePartition
            do {
                if let map = plan.layout.stageMap {
                    partition = try StagePartition(map: map, layerCount: layers.count, stages: pipelineDegree)
                } else {
                    partition = try StagePartition(balancing: counts, stages: pipelineDegree)
                }
            } catch {
                throw .layout(error.description)
            }
            // Each replica's slice of the global batch, cut into micro-batches of whole samples.
            let localSamples = (batchSize + dataDegree - 1) / dataDegree
            let perMicroBatch = max(1, (localSamples + microBatches - 1) / microBatches)
            let stage = PipelineStage(makeLayers: { [spec] in spec.makeLayers(tensorGroup: tensorGroup, separateTiedHead: separateTiedHead) },
                                      partition: partition,
                                      stage: parallel.coordinates.stage, stageRanks: parallel.layout.pipelineRanks(of: parallel.layout.rank(parallel.coordinates)),
                                      group: group ?? parallel.dataParallel, schedule: plan.layout.schedule, microBatches: microBatches,
                                      maxMicroBatchRows: perMicroBatch * sequenceLength, loss: loss, seed: plan.seed, device: device,
                                      sequenceLength: sequenceLength, tensorRank: tensorRank, tensorDegree: tensorDegree)
            self.stage = stage
            fusedReduction = nil
            sharedHeader = nil
            model = nil
            parameters = stage.parameters
            let own = Sequential.parameterSpecRange(of: layers, layerRange: partition.ranges[parallel.coordinates.stage])
            parameterSplits = Sequential.parameterSpecs(of: layers)[own].map(\.spec.split)
            modelRows = max(localSamples, 1) * sequenceLength
            let pipeline = parallel.layout.pipelineRanks(of: parallel.layout.rank(parallel.coordinates))
            if separateTiedHead, let group, stage.isFirst || stage.isLast {
                let name = stage.isFirst ? "layers.0.token.weight" : "layers.\(layers.count - 1).weight"
                guard let parameter = stage.parameters[name] else { throw .layout("the tied table \(name) is not on this stage") }
                tiedTable = TiedTable(parameter: parameter, partner: stage.isFirst ? pipeline[pipeline.count - 1] : pipeline[0],
                                      isCopy: stage.isLast)
                // The head's copy starts as the embedding's table.
                try tiedTable?.synchronizeValues(group)
            } else {
                tiedTable = nil
            }
        } else {
            // A language model evaluates a batch at a time: its activations grow with the context.
            let evaluationRows = sequenceLength > 1 ? batchSize : max(batchSize, min(1024, max(data.validation?.count ?? 0, data.train.count)))
            let specs = Sequential.parameterSpecs(of: layers)
            // Data-parallel ranks that all share this host keep their gradients in memory the
            // others map, and reduce them where they lie (no messages, no copies).
            // The region's first 16 floats (a cache line) carry the step's loss and stop flag.
            // ZeRO keeps the values there too (after the header the gradients, then the values,
            // each on whole cache lines): one copy for all the ranks, rank 0's, which every rank
            // reads where it lies; the other ranks' regions give that tail no memory. A step is two handshakes: every rank's gradients are in place; each
            // rank has reduced its segment of them and updated that segment of the values.
            //
            // Reducing inline without a chosen ZeRO stage, co-located ranks shard the update too:
            // each rank reduces its segment of the gradients and updates that segment (its share
            // of the optimizer state), and nothing is copied back. The update is
            // elementwise, so the values are a replicated update's up to the order of the
            // gradient sums: bit for bit on 2 ranks (two addends sum the same either way); on
            // more, an element's sum starts from its segment owner's value and the segments fall
            // elsewhere, so its last bits may differ. The step does less work and waits on fewer
            // handshakes. (Not with clipping: the global norm would be summed by segments, in
            // another order. Not for tensor-parallel pieces: their replicas share no region.)
            var shardsUpdate = plan.zeroStage == 1
                || (!plan.zeroStageChosen && !overlapReduction && plan.gradientClip == 0 && parallel == nil)
            var shared: UnsafeMutableBufferPointer<Float>?
            var valueMemory: UnsafeMutableBufferPointer<Float>?
            var gradientMemory: UnsafeMutableBufferPointer<Float>?
            if let group, group.worldSize > 1, device.capabilities.hostVisibleMemory {
                let total = specs.reduce(0) { $0 + $1.spec.shape.reduce(1, *) }
                let line = Trainer.fusedHeader, padded = (total + line - 1) / line * line
                // Sharding the update, the values go last: with one copy for all the ranks (not
                // for tensor-parallel parts) only rank 0's region gives them memory.
                let valuesOnRankZero = shardsUpdate && parallel == nil
                do {
                    shared = try group.sharedBuffer(count: line + (shardsUpdate ? padded + total : total),
                                                    rankZeroOnlyTail: valuesOnRankZero ? total : 0)
                    if shared == nil, shardsUpdate, !plan.zeroStageChosen {
                        // No room in /dev/shm for values and gradients (every rank learns the
                        // same): the gradients alone, reduced in place, and a replicated update.
                        shared = try group.sharedBuffer(count: line + total)
                        if shared != nil { shardsUpdate = false }
                    }
                } catch {
                    throw .group(error)
                }
                if let shared, shardsUpdate {
                    // One copy of the values for all the ranks, in rank 0's region: each rank
                    // updates its segment in place and reads the others' where they lie, so
                    // nothing is copied after an update.
                    // (Not for tensor-parallel parts: each holds values of its own, and its
                    // replicas' group is a subgroup without this region.)
                    gradientMemory = UnsafeMutableBufferPointer(rebasing: shared[line..<(line + total)])
                    let own = UnsafeMutableBufferPointer(rebasing: shared[(line + padded)...])
                    valueMemory = valuesOnRankZero ? group.sharedCounterpart(of: own, on: 0) ?? own : own
                } else if let shared {
                    gradientMemory = UnsafeMutableBufferPointer(rebasing: shared[line...])
                }
            }
            sharedHeader = shared.map { UnsafeMutableBufferPointer(rebasing: $0[0..<2]) }
            // Reduced inline, buckets only add synchronisation points (each waits for the slowest
            // rank's share of the step, and a VM's jitter makes that wait real): the whole region,
            // loss included, is reduced once, after backward.
            fusedReduction = overlapReduction || shardsUpdate ? nil : shared
            shardedInRegion = shardsUpdate && shared != nil
            let block = ParameterBlock(specs: specs, seed: plan.seed, device: device, tensorRank: tensorRank, tensorDegree: tensorDegree,
                                       valueMemory: valueMemory, gradientMemory: gradientMemory)
            model = Sequential(layers, parameters: block, maxBatch: evaluationRows * sequenceLength)
            stage = nil
            parameters = block
            parameterSplits = specs.map(\.spec.split)
            modelRows = evaluationRows * sequenceLength
            tiedTable = nil
        }
        if plan.zeroStage == 1 || shardedInRegion, let dataGroup, dataGroup.worldSize > 1 {
            // Each piece's state is sharded across that piece's replicas.
            zero = ZeroRedundancyOptimizer(block: parameters, group: dataGroup, sharedValues: shardedInRegion && parallel == nil) { values, gradients in
                Trainer.makeOptimizer(plan, values: values, gradients: gradients)
            }
        } else {
            zero = nil
        }
        valuesShared = zero?.sharedValues ?? false
        optimizer = zero?.inner ?? Trainer.makeOptimizer(plan, values: parameters.values, gradients: parameters.gradients)
        inputs = Tensor(zeros: [modelRows, fullInput], on: device)
        targets = Tensor(zeros: [modelRows], on: device)
        outputGradient = Tensor(zeros: [modelRows, fullOutput], on: device)
        // Host staging only for devices whose memory the trainer cannot write directly.
        let staged = device.capabilities.hostVisibleMemory ? 0 : modelRows
        stagingFeatures = [Float](repeating: 0, count: staged * fullInput)
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
        // (Not for a split model: its layers talk to other ranks in a fixed order.)
        if let model, parallel == nil, let cpu = device as? CPUDevice, cpu.pool.threadCount > 1, batchSize >= 16 * cpu.pool.threadCount {
            let parts = cpu.pool.threadCount
            let rowsPerPart = (batchSize + parts - 1) / parts
            BLASRuntime.setThreadCount(1)
            pool = cpu.pool
            let (main, spec, outputs) = (model, spec, model.outputWidth)
            let length = sequenceLength
            replicas = [main] + (1..<parts).map { _ in
                Sequential(replicaOf: main, layers: spec.makeLayers(), maxBatch: rowsPerPart * length)
            }
            replicaGradients = [outputGradient] + (1..<parts).map { _ in
                Tensor(zeros: [rowsPerPart * length, outputs], on: device)
            }
        } else {
            pool = nil
            replicas = model.map { [$0] } ?? []
            replicaGradients = [outputGradient]
        }
        if let group, let model, parallel == nil, zero == nil {
            reducer = BucketReducer(group: group, threaded: overlapReduction, prepare: { FloatEnvironment.enableFlushToZero() })
            buckets = GradientBuckets(model: model, bucketBytes: bucketBytes)
        } else {
            reducer = nil
            buckets = nil
        }
        if plan.earlyStoppingPatience > 0, data.validation != nil {
            // A block of its own for the best epoch's values (no network buffers needed).
            best = ParameterBlock(zerosLike: parameters)
        }
    }

    deinit {
        reducer?.stop()
        lossBuffer.deallocate()
    }

    /// The plan's optimizer over flat `values` and `gradients` (the block, or a ZeRO segment).
    static func makeOptimizer(_ plan: TrainingPlan, values: Tensor, gradients: Tensor) -> any Optimizer {
        switch plan.optimizer {
        case .sgd:
            SGD(values: values, gradients: gradients, learningRate: plan.learningRate, momentum: plan.momentum,
                weightDecay: plan.weightDecay)
        case .adam, .adamw:
            Adam(values: values, gradients: gradients, learningRate: plan.learningRate, beta1: plan.beta1, beta2: plan.beta2,
                 weightDecay: plan.weightDecay, decoupled: plan.optimizer == .adamw)
        }
    }

    var earlyStopping: Bool { best != nil }

    /// How a data-parallel step combines the ranks' gradients, in words (for the log); nil
    /// without data parallelism.
    public var reductionMode: String? {
        guard let dataGroup, dataGroup.worldSize > 1 else { return nil }
        if zero != nil {
            let ranks = dataGroup.worldSize
            if plan.zeroStage != 1 {
                return "update sharded across \(ranks) co-located ranks: each reduces its segment of the gradients in a shared region and "
                    + "updates it in the one copy of the values they share (as ZeRO-1; forge_zero_stage 0 replicates it)"
            }
            return "ZeRO-1: optimizer state sharded across \(ranks) ranks; "
                + (valuesShared ? "gradients reduced in shared regions, each segment updated in the one copy of the values the ranks share"
                    : "gradients reduce-scattered, parameters all-gathered")
        }
        if fusedReduction != nil { return "one in-place all-reduce per step in a shared region" }
        if reducer?.threaded == true { return "gradient buckets reduced on their own thread, overlapping backward" }
        return reducer == nil ? nil : "gradient buckets reduced inline (no CPU left to overlap on)"
    }

    /// Gradient all-reduces (buckets and the loss) started so far, and how many of them
    /// started while backward was still running (the overlap achieved); nil without buckets.
    public var reductionOverlap: (started: Int, whileComputing: Int)? { reducer?.overlap }

    /// Bytes of optimizer state this rank holds (with ZeRO, its segment's).
    public var optimizerStateBytes: Int {
        optimizer.stateTensors.reduce(0) { $0 + $1.tensor.count * MemoryLayout<Float>.stride }
    }

    /// Only one rank writes checkpoints (the state is the same on every rank).
    var writesCheckpoints: Bool { (group?.rank ?? 0) == 0 }
    /// Whether this rank takes part in writing checkpoints: rank 0 of a replicated model, and
    /// every rank when the optimizer state is sharded (it is gathered) or the model is split
    /// (the writers of its pieces meet the others at barriers).
    var makesCheckpoints: Bool { writesCheckpoints || zero != nil || parallel != nil }

    /// Trains to the end (or to an early stop), resuming from `checkpoints` when it holds one.
    /// Every rank passes a store, or none.
    ///
    /// `shouldStop` is asked before each step; once it says yes on any rank, every rank stops
    /// after the same step (the answer travels with the step's loss), rank 0 writes a
    /// checkpoint, and `run` throws `TrainingError.stopped`.
    public func run(checkpoints: CheckpointStore? = nil, observer: any TrainingObserver = SilentObserver(),
                    shouldStop: @escaping @Sendable () -> Bool = { false }) throws(TrainingError) -> TrainingResult {
        self.shouldStop = shouldStop
        // All ranks resume from the same checkpoint: none may read while rank 0 writes.
        try barrier()
        // A rank that cannot read its checkpoint still takes part in the check (as one with
        // none), so the others hear of it at once, and then reports its own error.
        var latest: (checkpoint: Checkpoint, path: String)?
        var unreadable: TrainingError?
        do {
            latest = try checkpoints?.loadLatest()
        } catch {
            unreadable = error
        }
        do {
            try agreeOnCheckpoint(latest.map { ($0.checkpoint.state.step, $0.path) })
        } catch {
            throw unreadable ?? error
        }
        if let unreadable { throw unreadable }
        if let (checkpoint, path) = latest {
            try restore(checkpoint, path: path)
            // Shared values: every rank wrote the same bytes; none steps before all have.
            if valuesShared { try barrier() }
            observer.resumed(fromStep: state.step, epoch: state.epoch + 1, path: path)
        }
        let batches = BatchSchedule(data: data, batchSize: batchSize, seed: plan.seed,
                                    rank: dataGroup?.rank ?? 0, worldSize: dataGroup?.worldSize ?? 1)
        totalSteps = plan.epochs * batches.steps
        if plan.maxSteps > 0 { totalSteps = min(totalSteps, plan.maxSteps) }
        let wholeModel = Sequential.parameterSpecs(of: spec.makeLayers()).reduce(0) { $0 + $1.spec.shape.reduce(1, *) }
        let split = parallel.map { p in
            "\(p.layout.pipelineDegree) pipeline stage(s) × \(p.layout.tensorDegree) tensor-parallel part(s) × \(p.layout.dataDegree) replica(s)"
                + (plan.layout.pipelineDegree > 1 ? ", \(plan.layout.schedule) with \(microBatches) micro-batches" : "")
        }
        observer.trainingStarted(RunSummary(trainRecords: data.totalTrainCount, validationRecords: data.validation?.count ?? 0,
                                            features: data.train.width, classes: spec.numClasses,
                                            parameterCount: wholeModel, stepsPerEpoch: batches.steps, epochs: plan.epochs,
                                            totalSteps: totalSteps, contextLength: plan.transformer?.contextLength, layout: split))
        while !state.finished && state.epoch < plan.epochs {
            let permutation = batches.permutation(epoch: state.epoch)
            observer.epochStarted(epoch: state.epoch + 1, batches: batches.steps)
            while state.batchInEpoch < batches.steps && !(plan.maxSteps > 0 && state.step >= plan.maxSteps) {
                let batch = batches.batch(state.batchInEpoch, of: permutation)
                let batchLoss = try trainStep(local: batch.local, globalRows: batch.globalRows, firstSample: batch.firstSample)
                state.epochLossSum += batchLoss
                state.epochSamples += batch.globalRows
                state.batchInEpoch += 1
                state.step += 1
                observer.stepCompleted(epoch: state.epoch + 1, batch: state.batchInEpoch, batches: batches.steps,
                                       step: state.step, loss: batchLoss / Double(batch.globalRows * sequenceLength))
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
            let report = try finishEpoch()
            observer.epochCompleted(report)
            if state.finished { observer.stoppedEarly(epoch: state.epoch, bestEpoch: state.bestEpoch) }
            // max_steps ends the run, however far into an epoch it falls.
            if plan.maxSteps > 0 && state.step >= plan.maxSteps { state.finished = true }
            if let checkpoints, makesCheckpoints, plan.checkpointSteps == 0 || state.step % plan.checkpointSteps != 0,
               let saved = try saveCheckpoint(to: checkpoints) {
                observer.checkpointSaved(path: saved, step: state.step)
            }
        }
        state.finished = true
        if let best {
            // Shared values: no rank may still be evaluating the last epoch's values.
            if valuesShared { try barrier() }
            parameters.copyValues(from: best)
            if valuesShared { try barrier() }
        }
        let metrics = try finalMetrics()
        return TrainingResult(model: try trainedModel(), metrics: metrics, state: state)
    }

    /// Checks that every rank found the same checkpoint (its step; nil: none) before any
    /// restores it: ranks that each read their own folder (another node's disk, not a shared
    /// one) could otherwise resume at different steps, or some not at all, and train on out of
    /// step. Every rank sees the same extremes, so all throw or none does.
    func agreeOnCheckpoint(_ found: (step: Int, path: String)?) throws(TrainingError) {
        guard let group, group.worldSize > 1 else { return }
        // step + 1 (0: none) in two parts a Float holds exactly; max of each part and of its
        // negation gives the largest and smallest across the ranks.
        let code = (found?.step ?? -1) + 1
        let (high, low) = (Float(code >> 22), Float(code & ((1 << 22) - 1)))
        let extremes = UnsafeMutableBufferPointer<Float>.allocate(capacity: 4)
        defer { extremes.deallocate() }
        extremes[0] = high; extremes[1] = low; extremes[2] = -high; extremes[3] = -low
        do {
            try group.allReduce(extremes, op: .max)
        } catch {
            throw .group(error)
        }
        guard extremes[0] != -extremes[2] || extremes[1] != -extremes[3] else { return }
        func described(_ high: Float, _ low: Float) -> String {
            let code = Int(high) << 22 | Int(low)
            return code == 0 ? "none" : "step \(code - 1)"
        }
        let here = found.map { "step \($0.step) in \($0.path)" } ?? "none"
        throw .badCheckpoint(path: found?.path ?? "-", reason: "the ranks did not find the same checkpoint to resume from "
            + "(rank \(group.rank): \(here); across the ranks: from \(described(-extremes[2], -extremes[3])) to \(described(extremes[0], extremes[1]))); "
            + "give every rank the same checkpoint folder (--checkpoint-dir on storage all nodes share), or start afresh with --no-resume")
    }

    /// Waits until every rank of the job has called it.
    func barrier() throws(TrainingError) {
        do {
            try group?.barrier()
        } catch {
            throw .group(error)
        }
    }

    // MARK: Steps

    /// One optimizer step on a global batch of `globalRows` rows of which this rank holds the
    /// records `local`, the first being row `firstSample` of the global batch; returns the
    /// batch's summed loss.
    func trainStep(local: ArraySlice<Int>, globalRows: Int, firstSample: Int) throws(TrainingError) -> Double {
        if parallel != nil { return try splitModelStep(local: local, globalRows: globalRows, firstSample: firstSample) }
        var lossSum = 0.0
        // Every rank submits the same all-reduces in the same order: the loss, then the
        // gradient buckets from the last layer back.
        let gradients = parameters.gradients
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
            let job = StepJob(replicas: replicas, gradients: replicaGradients, inputs: x,
                              targets: targets.rows(0..<(local.count * sequenceLength)),
                              loss: loss, rows: local.count, globalRows: globalRows, firstSample: firstSample,
                              step: state.step, seed: plan.seed, sequenceLength: sequenceLength)
            if pool == nil, let buckets, reducer != nil, fusedReduction == nil {
                // One compute thread: each bucket goes to the reducer the moment backward has
                // finished its first layer, while the layers below it are still computing
                // (inline, it is reduced right there, between two layers' backward passes).
                reducer?.computeBegan()
                lossSum = job.run(part: 0, lossComputed: submitLoss) { layer in
                    for bucket in buckets.completed(byLayer: layer) { submitBucket(bucket) }
                }
                reducer?.computeEnded()
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
        if let fused = fusedReduction, let group {
            fused[0] = Float(lossSum)
            fused[1] = wantsStop
            do {
                try group.allReduce(fused, op: .sum)
            } catch {
                throw .group(error)
            }
            lossSum = Double(fused[0])
            stopAgreed = fused[1] > 0
        } else if let reducer, let buckets {
            if !submittedDuringBackward {
                submitLoss(lossSum)
                for bucket in buckets.ranges.indices { submitBucket(bucket) }
            }
            do {
                try reducer.wait()
            } catch {
                throw .group(error)
            }
            lossSum = Double(lossBuffer[0])
            stopAgreed = lossBuffer[1] > 0
        }
        optimizer.learningRate = plan.learningRate(atStep: state.step, totalSteps: totalSteps)
        if let zero {
            // Sharded: reduce-scatter the gradient, clip by the norm its segments add up to,
            // update this rank's segment, all-gather the parameters.
            // The loss and stop flag are summed with the step (in the shared region's header when
            // there is one: then the step is one pass over the region).
            let scalars = sharedHeader ?? lossBuffer
            scalars[0] = Float(lossSum)
            scalars[1] = wantsStop
            do {
                try zero.step(maxGradientNorm: plan.gradientClip > 0 ? plan.gradientClip : nil, scalars: scalars)
            } catch {
                throw .group(error)
            }
            lossSum = Double(scalars[0])
            stopAgreed = scalars[1] > 0
            return lossSum
        }
        if plan.gradientClip > 0 {
            // The summed gradient is the same on every rank, so is the clipping.
            let norm = device.sumOfSquares(gradients).squareRoot()
            if let scale = ZeroRedundancyOptimizer.clipScale(norm: norm, maxNorm: plan.gradientClip) {
                device.axpby(alpha: scale, gradients, beta: 0, gradients)
            }
        }
        optimizer.step()
        return lossSum
    }

    /// Gathers rows of `dataset` into the input and target tensors; returns the input view.
    /// Host-visible devices receive the rows directly; others through one staging copy.
    func load(_ dataset: Dataset, indices: some Collection<Int>) -> Tensor {
        let width = inputs.shape[1]
        let rows = indices.count * sequenceLength
        let x = inputs.rows(0..<rows)
        let y = targets.rows(0..<rows)
        let gather = sequenceLength > 1 ? Trainer.gatherWindows : Trainer.gather
        if device.capabilities.hostVisibleMemory {
            gather(dataset, Array(indices), x.hostPointer, y.hostPointer)
            return x
        }
        stagingFeatures.withUnsafeMutableBufferPointer { features in
            stagingLabels.withUnsafeMutableBufferPointer { labels in
                guard let f = features.baseAddress, let l = labels.baseAddress else { return }
                gather(dataset, Array(indices), f, l)
            }
        }
        stagingFeatures.withUnsafeBufferPointer { device.copy(from: UnsafeBufferPointer(rebasing: $0[0..<rows * width]), to: x) }
        stagingLabels.withUnsafeBufferPointer { device.copy(from: UnsafeBufferPointer(rebasing: $0[0..<rows]), to: y) }
        return x
    }

    /// Text windows of L + 1 bytes become L rows of one input token each, whose targets are the
    /// next bytes.
    static func gatherWindows(_ dataset: Dataset, _ indices: [Int],
                                      _ tokens: UnsafeMutablePointer<Float>, _ targets: UnsafeMutablePointer<Float>) {
        let length = dataset.width - 1
        dataset.features.withUnsafeBufferPointer { source in
            guard let base = source.baseAddress else { return }
            for (row, index) in indices.enumerated() {
                let window = base + index * dataset.width
                (tokens + row * length).update(from: window, count: length)
                (targets + row * length).update(from: window + 1, count: length)
            }
        }
    }

    static func gather(_ dataset: Dataset, _ indices: [Int],
                               _ features: UnsafeMutablePointer<Float>, _ labels: UnsafeMutablePointer<Float>) {
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

    func finishEpoch() throws(TrainingError) -> EpochReport {
        let trainLoss = reportedLoss(sum: state.epochLossSum, count: state.epochSamples)
        var metrics = [MetricValue("train:loss", trainLoss)]
        if let validation = data.validation {
            let evaluation = try evaluate(validation)
            metrics += evaluation
            if earlyStopping, let validationLoss = evaluation.first(where: { $0.name == "validation:loss" })?.value {
                let threshold = (state.bestValidationLoss ?? .infinity) * (1 - plan.earlyStoppingTolerance)
                if state.bestValidationLoss == nil || validationLoss < threshold {
                    state.bestValidationLoss = validationLoss
                    state.bestEpoch = state.epoch + 1
                    state.epochsWithoutImprovement = 0
                    best?.copyValues(from: parameters)
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
    func reportedLoss(sum: Double, count: Int) -> Double {
        let mean = sum / Double(max(count * sequenceLength, 1))
        guard plan.predictorType == .regressor else { return mean }
        let scale = Double(data.labelScaling.scale)
        return 2 * mean / (scale * scale)
    }

    /// Loss and the algorithm's metric on `dataset` with the current parameters.
    public func evaluate(_ dataset: Dataset) throws(TrainingError) -> [MetricValue] {
        if let stage { return try evaluateThroughPipeline(dataset, stage: stage) }
        guard let model else { preconditionFailure("a trainer has a model or a stage") }
        var lossSum = 0.0, correct = 0
        let rows = model.maxBatch / sequenceLength
        var start = 0
        while start < dataset.count {
            let end = min(start + rows, dataset.count)
            let x = load(dataset, indices: start..<end)
            let output = model.forward(x, context: ForwardContext(training: false, sequenceLength: sequenceLength))
            try tensorParallel?.check()
            lossSum += loss.evaluate(output: output, targets: targets.rows(0..<((end - start) * sequenceLength)), gradient: nil, gradScale: 1)
            if sequenceLength > 1 {
                start = end
                continue
            }
            correct += correctPredictions(output, labels: dataset.labels[start..<end])
            start = end
        }
        return metrics(lossSum: lossSum, correct: correct, count: dataset.count)
    }

    /// How many rows of a classifier's `output` predict their label (0 for a regressor).
    func correctPredictions(_ output: Tensor, labels: ArraySlice<Float>) -> Int {
        switch plan.predictorType {
        case .multiclassClassifier:
            return zip(device.argmaxRows(output), labels).filter { Float($0) == $1 }.count
        case .binaryClassifier:
            return zip(output.toArray(), labels).filter { ($0 > 0 ? 1 : 0) == $1 }.count
        case .regressor:
            return 0
        }
    }

    /// The validation metrics from a pass's summed loss and correct predictions.
    func metrics(lossSum: Double, correct: Int, count: Int) -> [MetricValue] {
        let validationLoss = reportedLoss(sum: lossSum, count: count)
        if sequenceLength > 1 { return [MetricValue("validation:loss", validationLoss)] }
        if plan.predictorType == .regressor {
            return [MetricValue("validation:loss", validationLoss), MetricValue("validation:mse", validationLoss)]
        }
        return [MetricValue("validation:loss", validationLoss),
                MetricValue(plan.validationMetricName, Double(correct) / Double(count))]
    }

    func finalMetrics() throws(TrainingError) -> [MetricValue] {
        var metrics = [MetricValue("train:loss", state.lastReport["train:loss"] ?? .nan)]
        if let validation = data.validation { metrics += try evaluate(validation) }
        return metrics
    }
}
