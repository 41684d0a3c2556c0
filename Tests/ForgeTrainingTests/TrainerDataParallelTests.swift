// Data-parallel training with ranks as threads over the in-process transport: any world size,
// any bucket size (one bucket per layer, or one for the whole model), one or two compute
// threads per rank, must take the steps one process takes, up to float summation order. The
// multi-process version of this test (DataParallelTests) runs real rank processes.
import ForgeCollectives
import ForgeData
import ForgeTensor
import ForgeTestSupport
import ForgeTraining
import Foundation
import Testing

@Suite struct TrainerDataParallelTests {
    /// 203 records of 10 features in 3 classes: batches of 30 leave a partial last batch of 23.
    private static func data(seed: UInt64) -> Dataset {
        SyntheticData.thresholdClasses(count: 203, width: 10, seed: seed)
    }

    /// `zeroStage` nil: not chosen (the trainer picks).
    private static func plan(zeroStage: Int? = 0, extra: [String: String] = [:]) throws -> TrainingPlan {
        var hyperparameters = [
            "hidden_layer_sizes": "24,12", "mini_batch_size": "30", "epochs": "8", "dropout": "0.2", "seed": "11",
            "forge_checkpoint_steps": "6",
        ].merging(extra) { $1 }
        if let zeroStage { hyperparameters["forge_zero_stage"] = String(zeroStage) }
        return try TrainingPlan.make(algorithm: .mlp, hyperparameters: hyperparameters)
    }

    /// Trains on `worldSize` rank threads; returns every rank's parameters (flat, and by tensor)
    /// and train loss.
    private static func train(worldSize: Int, threads: Int, bucketBytes: Int, overlap: Bool = true, zeroStage: Int? = 0,
                              checkpoints: String? = nil, sharedMemory: Bool = false, extra: [String: String] = [:]) throws -> [RankResult] {
        let plan = try plan(zeroStage: zeroStage, extra: extra)
        let prepared = try PreparedData(plan: plan, train: data(seed: 1), validation: data(seed: 2))
        return try onRankThreads(worldSize, sharedMemory: sharedMemory) { group -> RankResult in
            let trainer = try Trainer(plan: plan, data: prepared, device: CPUDevice(threadCount: threads), group: group,
                                      bucketBytes: bucketBytes, overlapReduction: overlap)
            let result = try trainer.run(checkpoints: checkpoints.map { CheckpointStore(directory: $0, keep: 1000) })
            return (result.model.parameters.flatMap(\.values), result.metrics.first { $0.name == "train:loss" }?.value ?? .nan,
                    result.model.parameters.map(\.values), trainer.optimizerStateBytes)
        }
    }

    @Test(arguments: [(1, 1, 1 << 20), (2, 1, 64), (3, 1, 64), (4, 1, 1 << 20), (4, 1, 64), (2, 2, 64), (5, 1, 2048)])
    func anyWorldSizeAndBucketingTakesTheSingleProcessSteps(worldSize: Int, threads: Int, bucketBytes: Int) throws {
        let plan = try Self.plan()
        let prepared = try PreparedData(plan: plan, train: Self.data(seed: 1), validation: Self.data(seed: 2))
        let single = try Trainer(plan: plan, data: prepared, device: CPUDevice(threadCount: 1)).run()
        let reference = single.model.parameters.flatMap(\.values)
        let ranks = try Self.train(worldSize: worldSize, threads: threads, bucketBytes: bucketBytes)
        let scale = reference.map(abs).max() ?? 1
        for (rank, result) in ranks.enumerated() {
            // Every rank holds the same parameters, bit for bit: they apply the same reduced sums.
            #expect(result.parameters.map(\.bitPattern) == ranks[0].parameters.map(\.bitPattern), "rank \(rank) drifted from rank 0")
        }
        // Only the order of summation differs (rows per rank, then ranks, bucket by bucket);
        // measured ≤ 1e-6 relative after 56 steps.
        let difference = zip(reference, ranks[0].parameters).map { abs($0 - $1) }.max() ?? .infinity
        #expect(difference / scale <= 1e-5, "\(worldSize) ranks × \(threads) threads, buckets of \(bucketBytes) B: max|Δ|/max|ref| = \(difference / scale)")
        let singleLoss = single.metrics.first { $0.name == "train:loss" }?.value ?? .nan
        #expect(abs(ranks[0].loss - singleLoss) <= 1e-4 * max(1, abs(singleLoss)), "train:loss \(ranks[0].loss) vs \(singleLoss)")
    }
}

extension TrainerDataParallelTests {
    @Test(arguments: [(2, 1, false), (2, 2, false), (2, 1, true), (3, 1, false), (3, 1, true), (4, 1, false)])
    func coLocatedRanksReduceInSharedGradientsAndTakeTheSingleProcessSteps(worldSize: Int, threads: Int, overlap: Bool) throws {
        // Over shared-memory mailboxes the gradients live in a region every rank maps: inline,
        // loss and gradients are reduced in place once per step; threaded, bucket by bucket.
        let plan = try Self.plan()
        let prepared = try PreparedData(plan: plan, train: Self.data(seed: 1), validation: Self.data(seed: 2))
        let reference = try Trainer(plan: plan, data: prepared, device: CPUDevice(threadCount: 1)).run().model.parameters.map(\.values)
        let ranks = try Self.train(worldSize: worldSize, threads: threads, bucketBytes: 64, overlap: overlap, sharedMemory: true)
        for (rank, result) in ranks.enumerated() {
            #expect(result.parameters.map(\.bitPattern) == ranks[0].parameters.map(\.bitPattern), "rank \(rank) drifted from rank 0")
        }
        let worst = Self.worstTensor(reference, ranks[0].tensors)
        #expect(worst.relative <= 1e-5, "\(worldSize) co-located ranks: tensor \(worst.tensor) max|Δ|/max|ref| = \(worst.relative)")
        if worldSize == 2 {
            // Two addends sum the same in either order: the message algorithms give the same bits.
            let messages = try Self.train(worldSize: 2, threads: threads, bucketBytes: 64, overlap: overlap)
            #expect(ranks[0].parameters.map(\.bitPattern) == messages[0].parameters.map(\.bitPattern))
        }
    }

    @Test(arguments: [2, 3])
    func coLocatedInlineRanksShardTheUpdateUnlessAStageIsChosen(worldSize: Int) throws {
        // Without forge_zero_stage, co-located ranks reducing inline step as ZeRO-1 does, in one
        // pass over their shared region: each holds 1/N of the Adam moments, and the update is
        // elementwise, so the values are the replicated update's up to the order of the gradient
        // sums: on 2 ranks bit for bit (two addends sum the same either way); on 3 this tiny
        // model's replicated all-reduce goes by recursive doubling, another order. Reducing on a
        // thread of their own, or with the stage chosen, they replicate.
        let plan = try Self.plan()
        let prepared = try PreparedData(plan: plan, train: Self.data(seed: 1), validation: Self.data(seed: 2))
        let full = try Trainer(plan: plan, data: prepared, device: CPUDevice(threadCount: 1)).optimizerStateBytes
        let sharded = try Self.train(worldSize: worldSize, threads: 1, bucketBytes: 64, overlap: false, zeroStage: nil, sharedMemory: true)
        let replicated = try Self.train(worldSize: worldSize, threads: 1, bucketBytes: 64, overlap: false, zeroStage: 0, sharedMemory: true)
        let threaded = try Self.train(worldSize: worldSize, threads: 1, bucketBytes: 64, overlap: true, zeroStage: nil, sharedMemory: true)
        #expect(sharded.map(\.stateBytes).reduce(0, +) == full, "\(sharded.map(\.stateBytes)) vs \(full)")
        #expect(replicated.allSatisfy { $0.stateBytes == full } && threaded.allSatisfy { $0.stateBytes == full })
        for result in sharded + replicated {
            #expect(result.parameters.map(\.bitPattern) == (result.stateBytes == full ? replicated : sharded)[0].parameters.map(\.bitPattern))
        }
        if worldSize == 2 {
            #expect(sharded[0].parameters.map(\.bitPattern) == replicated[0].parameters.map(\.bitPattern))
            #expect(sharded[0].loss.bitPattern == replicated[0].loss.bitPattern)
        }
        let worst = Self.worstTensor(replicated[0].tensors, sharded[0].tensors)
        #expect(worst.relative <= 1e-6, "tensor \(worst.tensor): max|Δ|/max|ref| = \(worst.relative)")
    }

    @Test(arguments: [nil, 1])
    func ranksSharingOneCopyOfTheValuesResumeAndKeepTheBestEpoch(zeroStage: Int?) throws {
        // Co-located ranks that shard the update keep one copy of the values, in rank 0's
        // region. Early stopping writes the best epoch's values back into it at the end, and a
        // resumed run loads a checkpoint into it. Every rank must still end with one process's
        // model (up to summation order), and a run resumed mid-epoch with the uninterrupted
        // run's bits.
        let extra = ["early_stopping_patience": "3", "learning_rate": "0.05"]
        let plan = try Self.plan(zeroStage: zeroStage, extra: extra)
        let prepared = try PreparedData(plan: plan, train: Self.data(seed: 1), validation: Self.data(seed: 2))
        let single = try Trainer(plan: plan, data: prepared, device: CPUDevice(threadCount: 1)).run()
        // The best epoch is not the last: the values written back differ from the last step's.
        #expect(single.state.bestEpoch < single.state.epoch, "best epoch \(single.state.bestEpoch) of \(single.state.epoch)")
        let reference = single.model.parameters.map(\.values)
        let scratch = try TemporaryDirectory()
        let modes = try onRankThreads(2, sharedMemory: true) { group -> String in
            try Trainer(plan: plan, data: prepared, device: CPUDevice(threadCount: 1), group: group, overlapReduction: false).reductionMode ?? ""
        }
        #expect(modes.allSatisfy { $0.contains("one copy of the values") }, "\(modes)")
        let whole = try Self.train(worldSize: 2, threads: 1, bucketBytes: 64, overlap: false, zeroStage: zeroStage,
                                   checkpoints: scratch.file("whole"), sharedMemory: true, extra: extra)
        #expect(whole[1].parameters.map(\.bitPattern) == whole[0].parameters.map(\.bitPattern))
        let worst = Self.worstTensor(reference, whole[0].tensors)
        #expect(worst.relative <= 1e-5, "tensor \(worst.tensor): max|Δ|/max|ref| = \(worst.relative)")
        let store = CheckpointStore(directory: scratch.file("whole"), keep: 1000)
        let step = try #require(store.checkpointFolders().first { $0.hasSuffix("-000000030") }, "\(store.checkpointFolders())")
        try FileManager.default.createDirectory(atPath: scratch.file("resumed"), withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: store.directory + "/" + step, toPath: scratch.file("resumed") + "/" + step)
        let resumed = try Self.train(worldSize: 2, threads: 1, bucketBytes: 64, overlap: false, zeroStage: zeroStage,
                                     checkpoints: scratch.file("resumed"), sharedMemory: true, extra: extra)
        for result in resumed { #expect(result.parameters.map(\.bitPattern) == whole[0].parameters.map(\.bitPattern)) }
    }

    @Test func ranksGivenDifferentCPUCountsAgreeOnOneWayToReduce() throws {
        // A CPU binding can leave one rank a core to spare and not the other: rank 0 would
        // reduce on a thread, rank 1 inline (and shard the update). They agree on the threaded
        // way, so the layouts and collectives match, and the steps are the usual ones.
        let plan = try Self.plan(zeroStage: nil)
        let prepared = try PreparedData(plan: plan, train: Self.data(seed: 1), validation: Self.data(seed: 2))
        let reference = try Self.train(worldSize: 2, threads: 1, bucketBytes: 64, overlap: true, zeroStage: nil, sharedMemory: true)
        let mixed = try onRankThreads(2, sharedMemory: true) { group -> [Float] in
            let trainer = try Trainer(plan: plan, data: prepared, device: CPUDevice(threadCount: 1), group: group,
                                      bucketBytes: 64, overlapReduction: group.rank == 0)
            #expect(trainer.reductionMode == "gradient buckets reduced on their own thread, overlapping backward")
            return try trainer.run().model.parameters.flatMap(\.values)
        }
        for parameters in mixed { #expect(parameters.map(\.bitPattern) == reference[0].parameters.map(\.bitPattern)) }
    }

    /// The largest `max|a − b| / max|a|` over the tensors, with the tensor's index.
    private static func worstTensor(_ reference: [[Float]], _ other: [[Float]]) -> (tensor: Int, relative: Float) {
        var worst = (tensor: -1, relative: Float.infinity)
        guard reference.count == other.count else { return worst }
        worst.relative = 0
        for (index, (a, b)) in zip(reference, other).enumerated() {
            let scale = max(a.map(abs).max() ?? 1, Float.leastNormalMagnitude)
            let relative = (zip(a, b).map { abs($0 - $1) }.max() ?? .infinity) / scale
            if relative > worst.relative || relative.isNaN { worst = (index, relative) }
        }
        return worst
    }

    @Test(arguments: [(2, false), (3, false), (2, true), (3, true)])
    func zeroStageOneTakesTheSingleProcessSteps(worldSize: Int, sharedMemory: Bool) throws {
        // 8 epochs (56 steps) with dropout: the sharded optimizer (reduce-scatter, update of a
        // segment, all-gather) matches one process per tensor; only the summation order differs.
        // Over shared memory the gradients and the values live in shared regions, reduce-scattered
        // and all-gathered in place.
        let plan = try Self.plan()
        let prepared = try PreparedData(plan: plan, train: Self.data(seed: 1), validation: Self.data(seed: 2))
        let singleTrainer = try Trainer(plan: plan, data: prepared, device: CPUDevice(threadCount: 1))
        let reference = try singleTrainer.run().model.parameters.map(\.values)
        let ranks = try Self.train(worldSize: worldSize, threads: 1, bucketBytes: 64, zeroStage: 1, sharedMemory: sharedMemory)
        // Each rank keeps the Adam moments of its segment only.
        #expect(ranks.map(\.stateBytes).reduce(0, +) == singleTrainer.optimizerStateBytes)
        #expect(ranks.allSatisfy { $0.stateBytes <= singleTrainer.optimizerStateBytes / worldSize + 8 }, "\(ranks.map(\.stateBytes))")
        for (rank, result) in ranks.enumerated() {
            #expect(result.parameters.map(\.bitPattern) == ranks[0].parameters.map(\.bitPattern), "rank \(rank) drifted from rank 0")
        }
        let worst = Self.worstTensor(reference, ranks[0].tensors)
        #expect(worst.relative <= 1e-5, "ZeRO-1 on \(worldSize) ranks (shared memory: \(sharedMemory)): tensor \(worst.tensor) max|Δ|/max|ref| = \(worst.relative)")
    }

    @Test(arguments: [(2, 1, [(1, 0), (3, 1)]), (3, 0, [(2, 1)])])
    func zeroCheckpointsResumeUnderAnyLayout(writers: Int, writerStage: Int, resumers: [(worldSize: Int, zeroStage: Int)]) throws {
        // A checkpoint holds the whole optimizer state whatever wrote it: one from step 24 of a
        // ZeRO run resumes on one process and under ZeRO on another world size, and one from a
        // replicated run resumes under ZeRO, each to the uninterrupted parameters.
        let scratch = try TemporaryDirectory()
        let plan = try Self.plan()
        let prepared = try PreparedData(plan: plan, train: Self.data(seed: 1), validation: Self.data(seed: 2))
        let reference = try Trainer(plan: plan, data: prepared, device: CPUDevice(threadCount: 1)).run().model.parameters.map(\.values)
        _ = try Self.train(worldSize: writers, threads: 1, bucketBytes: 64, zeroStage: writerStage, checkpoints: scratch.file("written"))
        let store = CheckpointStore(directory: scratch.file("written"), keep: 1000)
        let steps = try #require(store.checkpointFolders().first { $0.hasSuffix("-000000024") }, "\(store.checkpointFolders())")
        for (worldSize, zeroStage) in resumers {
            let target = scratch.file("resume-\(worldSize)-\(zeroStage)")
            try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: store.directory + "/" + steps, toPath: target + "/" + steps)
            let resumed: [[Float]]
            if worldSize == 1 {
                resumed = try Trainer(plan: Self.plan(zeroStage: zeroStage), data: prepared, device: CPUDevice(threadCount: 1))
                    .run(checkpoints: CheckpointStore(directory: target)).model.parameters.map(\.values)
            } else {
                resumed = try Self.train(worldSize: worldSize, threads: 1, bucketBytes: 64, zeroStage: zeroStage, checkpoints: target)[0].tensors
            }
            let worst = Self.worstTensor(reference, resumed)
            let layouts = "written by \(writers) (ZeRO \(writerStage)), resumed by \(worldSize) (ZeRO \(zeroStage))"
            #expect(worst.relative <= 1e-5, "\(layouts): tensor \(worst.tensor) max|Δ|/max|ref| = \(worst.relative)")
            #expect(CheckpointStore(directory: target).checkpointFolders().last?.hasSuffix("-000000056") == true,
                    "the resumed run went on to the end and checkpointed it")
        }
    }

    @Test(arguments: [2, 3])
    func checkpointsResumeUnderAnotherWorldSize(writers: Int) throws {
        // `writers` ranks write checkpoints; a copy of one from mid-epoch 4 (step 24) is resumed
        // under every other world size from 1 to 3 (elastic resume goes from 3 to 2 or 1): each
        // ends where the uninterrupted runs do (the state in a checkpoint does not depend on
        // the world size that wrote it).
        let scratch = try TemporaryDirectory()
        let plan = try Self.plan()
        let prepared = try PreparedData(plan: plan, train: Self.data(seed: 1), validation: Self.data(seed: 2))
        let reference = try Trainer(plan: plan, data: prepared, device: CPUDevice(threadCount: 1)).run().model.parameters.flatMap(\.values)
        _ = try Self.train(worldSize: writers, threads: 1, bucketBytes: 64, checkpoints: scratch.file("written"))
        let store = CheckpointStore(directory: scratch.file("written"), keep: 1000)
        let steps = try #require(store.checkpointFolders().first { $0.hasSuffix("-000000024") }, "\(store.checkpointFolders())")
        let scale = reference.map(abs).max() ?? 1
        for worldSize in [1, 2, 3] where worldSize != writers {
            let target = scratch.file("resume-\(worldSize)")
            try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: store.directory + "/" + steps, toPath: target + "/" + steps)
            let resumed: [Float]
            if worldSize == 1 {
                resumed = try Trainer(plan: plan, data: prepared, device: CPUDevice(threadCount: 1))
                    .run(checkpoints: CheckpointStore(directory: target)).model.parameters.flatMap(\.values)
            } else {
                resumed = try Self.train(worldSize: worldSize, threads: 1, bucketBytes: 64, checkpoints: target)[0].parameters
            }
            let difference = zip(reference, resumed).map { abs($0 - $1) }.max() ?? .infinity
            #expect(difference / scale <= 1e-5, "resumed by \(worldSize): max|Δ|/max|ref| = \(difference / scale)")
            #expect(CheckpointStore(directory: target).checkpointFolders().last?.hasSuffix("-000000056") == true,
                    "the resumed run went on to the end and checkpointed it")
        }
    }

    @Test(arguments: [2, 3])
    func reducingInlineOrOnAThreadGivesTheSameBits(worldSize: Int) throws {
        // The same buckets in the same order: where the reduction runs cannot change a bit.
        let threaded = try Self.train(worldSize: worldSize, threads: 1, bucketBytes: 64, overlap: true)
        let inline = try Self.train(worldSize: worldSize, threads: 1, bucketBytes: 64, overlap: false)
        #expect(threaded[0].parameters.map(\.bitPattern) == inline[0].parameters.map(\.bitPattern))
        #expect(threaded[0].loss == inline[0].loss)
    }
}

/// One rank's trained parameters (flat, and by tensor in model order), train loss and optimizer
/// state bytes.
private typealias RankResult = (parameters: [Float], loss: Double, tensors: [[Float]], stateBytes: Int)

extension TrainerDataParallelTests {
    @Test func ranksThatFindDifferentCheckpointsRefuseToResume() throws {
        // Ranks on nodes that each read a checkpoint folder of their own (not shared storage):
        // two find the last checkpoint of an earlier run, the third finds none. Resuming some
        // and not others would train on out of step; every rank must stop, saying why, at once.
        let plan = try Self.plan()
        let prepared = try PreparedData(plan: plan, train: Self.data(seed: 1), validation: Self.data(seed: 2))
        let shared = try TemporaryDirectory(), elsewhere = try TemporaryDirectory()
        let earlier = try Trainer(plan: plan, data: prepared, device: CPUDevice(threadCount: 1)).run(checkpoints: CheckpointStore(directory: shared.path))
        let step = try #require(try CheckpointStore(directory: shared.path).loadLatest()).checkpoint.state.step
        #expect(step == earlier.state.step)
        let outcomes = try onRankThreads(3, timeoutMilliseconds: 60_000) { group -> String in
            let store = CheckpointStore(directory: group.rank < 2 ? shared.path : elsewhere.path)
            do {
                _ = try Trainer(plan: plan, data: prepared, device: CPUDevice(threadCount: 1), group: group).run(checkpoints: store)
                return "trained"
            } catch {
                return "\(error)"
            }
        }
        for (rank, outcome) in outcomes.enumerated() {
            #expect(outcome.contains("did not find the same checkpoint") && outcome.contains("from none to step \(step)"), "rank \(rank): \(outcome)")
            #expect(outcome.contains(rank < 2 ? "rank \(rank): step \(step) in \(shared.path)" : "rank 2: none"), "rank \(rank): \(outcome)")
        }
        // The same folder on every rank resumes (here at the end: nothing is left to train).
        let resumed = try onRankThreads(3) { group -> Int in
            try Trainer(plan: plan, data: prepared, device: CPUDevice(threadCount: 1), group: group)
                .run(checkpoints: CheckpointStore(directory: shared.path)).state.step
        }
        #expect(resumed == [step, step, step])
    }
}

extension TrainerDataParallelTests {
    @Test(arguments: [true, false])
    func gradientBucketsAreReducedWhileBackwardStillRuns(threaded: Bool) throws {
        // One compute thread per rank, a bucket per layer: each bucket's all-reduce must start
        // before backward has finished the layers below it: on the reducer's thread, alongside
        // them (threaded), or between two layers' backward passes (inline). Buckets handed
        // over only after backward would start none while it runs. Layers wide enough that
        // backward below the last one takes far longer than waking the reducer's thread.
        let plan = try Self.plan(extra: ["hidden_layer_sizes": "256,256", "epochs": "2"])
        let prepared = try PreparedData(plan: plan, train: Self.data(seed: 1), validation: Self.data(seed: 2))
        let overlaps = try onRankThreads(2) { group -> (started: Int, whileComputing: Int) in
            let trainer = try Trainer(plan: plan, data: prepared, device: CPUDevice(threadCount: 1), group: group,
                                      bucketBytes: 1, overlapReduction: threaded)
            _ = try trainer.run()
            return try #require(trainer.reductionOverlap)
        }
        for (rank, overlap) in overlaps.enumerated() {
            // 14 steps, each: the loss and three buckets.
            #expect(overlap.started == 14 * 4, "rank \(rank): \(overlap)")
            if !threaded { #expect(overlap.whileComputing == overlap.started, "rank \(rank): \(overlap)") }
        }
        // Threaded, how many start in time depends on when the reducer's thread gets a core
        // (measured here: 44 and 6 of 56); handed over after backward, none would.
        #expect(overlaps.map(\.whileComputing).reduce(0, +) > 0, "no all-reduce started while backward ran: \(overlaps)")
    }
}
