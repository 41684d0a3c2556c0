// transformer-lm split across rank threads, against one process with the same seed and global
// batch (dropout on): pipeline stages (GPipe and 1F1B, 2 and 4 stages), tensor-parallel parts,
// and both hybrids with data parallelism on 4 ranks. The multi-process versions run real rank
// processes (ModelParallelCommandTests).
import ForgeCollectives
import ForgeData
import ForgeTensor
import ForgeTestSupport
import ForgeTraining
import Foundation
import Testing

@Suite struct ModelParallelTests {
    static func plan(_ layout: [String: String] = [:]) throws -> TrainingPlan {
        var values = ["num_layers": "2", "num_heads": "4", "d_model": "16", "context_length": "8", "mini_batch_size": "13",
                      "max_steps": "50", "dropout": "0.1", "learning_rate": "0.003", "warmup_steps": "5", "lr_schedule": "cosine",
                      "seed": "5", "grad_clip": "0.5"]
        values.merge(layout) { $1 }
        return try TrainingPlan.make(algorithm: .transformerLM, hyperparameters: values)
    }

    static func data(_ plan: TrainingPlan) throws -> PreparedData {
        let length = try #require(plan.transformer).contextLength
        let train = try TextCorpus(bytes: generatedText(bytes: 3000, seed: 1)).windows(contextLength: length, channel: "train")
        let validation = try TextCorpus(bytes: generatedText(bytes: 800, seed: 2)).windows(contextLength: length, channel: "validation")
        return try PreparedData(plan: plan, train: train, validation: validation)
    }

    /// Rank 0's final model and metrics with `layout` on `ranks` rank threads.
    static func run(ranks: Int, _ layout: [String: String], sharedMemory: Bool = false) throws -> TrainingResult {
        let plan = try Self.plan(layout)
        let data = try Self.data(plan)
        return try onRankThreads(ranks, sharedMemory: sharedMemory) { group in
            try Trainer(plan: plan, data: data, device: CPUDevice(threadCount: 1), group: group).run()
        }[0]
    }

    /// The single-process reference.
    static func single() throws -> TrainingResult {
        let plan = try Self.plan()
        return try Trainer(plan: plan, data: try Self.data(plan), device: CPUDevice(threadCount: 1)).run()
    }

    @Test(arguments: [
        (2, ["forge_pipeline_degree": "2", "forge_pipeline_schedule": "gpipe", "forge_micro_batches": "3"]),
        (2, ["forge_pipeline_degree": "2", "forge_pipeline_schedule": "1f1b", "forge_micro_batches": "4"]),
        (4, ["forge_pipeline_degree": "4", "forge_pipeline_schedule": "gpipe", "forge_micro_batches": "5"]),
        (4, ["forge_pipeline_degree": "4", "forge_pipeline_schedule": "1f1b", "forge_micro_batches": "4"]),
        (2, ["forge_tensor_degree": "2"]),
        (4, ["forge_pipeline_degree": "2", "forge_micro_batches": "2"]),
        (4, ["forge_tensor_degree": "2"]),
        (4, ["forge_tensor_degree": "2", "forge_pipeline_degree": "2", "forge_micro_batches": "3"]),
        (4, ["forge_pipeline_degree": "2", "forge_zero_stage": "1"]),
        (4, ["forge_tensor_degree": "2", "forge_zero_stage": "1"]),
        (3, ["forge_zero_stage": "1"]),
    ])
    func matchesOneProcess(ranks: Int, layout: [String: String]) throws {
        let single = try Self.single()
        let split = try Self.run(ranks: ranks, layout)
        // Only summation orders differ: micro-batch gradients added one by one, partial sums
        // of a split projection all-reduced, replicas' gradients reduced.
        let worst = expectMatching(single.model.parameters, split.model.parameters, "(\(ranks) ranks, \(layout))")
        let singleLoss = try #require(single.metrics.first { $0.name == "validation:loss" }?.value)
        let splitLoss = try #require(split.metrics.first { $0.name == "validation:loss" }?.value)
        #expect(abs(singleLoss - splitLoss) <= 1e-5 * singleLoss, "validation:loss \(splitLoss) vs \(singleLoss)")
        #expect(split.state.step == 50)
        print("transformer-lm on \(ranks) ranks \(layout.sorted { $0.key < $1.key }): max per-tensor max|Δ|/max|ref| = \(worst) after 50 steps")
    }

    @Test(arguments: [
        (3, ["forge_zero_stage": "1"]),
        (2, ["forge_tensor_degree": "2", "forge_zero_stage": "1"]),
        (4, ["forge_tensor_degree": "2", "forge_zero_stage": "1"]),
    ])
    func zeroOverSharedMemoryMatchesOneProcess(ranks: Int, layout: [String: String]) throws {
        // Ranks that share memory: a whole model's replicas share one copy of the values in a
        // shared region, and with the transformer's clipping each update ends with a barrier;
        // tensor-parallel parts keep values of their own (their replicas' group has no region).
        let single = try Self.single()
        let split = try Self.run(ranks: ranks, layout, sharedMemory: true)
        let worst = expectMatching(single.model.parameters, split.model.parameters, "(\(ranks) ranks over shared memory, \(layout))")
        #expect(split.state.step == 50)
        print("transformer-lm on \(ranks) ranks over shared memory \(layout.sorted { $0.key < $1.key }): max per-tensor max|Δ|/max|ref| = \(worst)")
    }

    @Test func aLayoutThatDoesNotDivideTheRanksIsAClearError() throws {
        let plan = try Self.plan(["forge_pipeline_degree": "2"])
        let data = try Self.data(plan)
        #expect {
            try onRankThreads(3) { group in try Trainer(plan: plan, data: data, device: CPUDevice(threadCount: 1), group: group) }
        } throws: { error in
            "\(error)".contains("does not divide") || "\(error)".contains("divid")
        }
    }
}

extension ModelParallelTests {
    /// Trains `layout` on `ranks` threads with checkpoints in `directory` every 20 steps.
    static func checkpointed(ranks: Int, _ layout: [String: String], directory: String) throws -> TrainingResult {
        var values = layout
        values["forge_checkpoint_steps"] = "20"
        let plan = try Self.plan(values)
        let data = try Self.data(plan)
        let run = { @Sendable (group: ProcessGroup?) throws -> TrainingResult in
            try Trainer(plan: plan, data: data, device: CPUDevice(threadCount: 1), group: group)
                .run(checkpoints: CheckpointStore(directory: directory, keep: 100))
        }
        if ranks == 1 { return try run(nil) }
        return try onRankThreads(ranks) { group in try run(group) }[0]
    }

    @Test(arguments: [
        (2, ["forge_pipeline_degree": "2", "forge_micro_batches": "3"], 2, ["forge_tensor_degree": "2"]),
        (2, ["forge_tensor_degree": "2"], 1, [String: String]()),
        (1, [String: String](), 4, ["forge_pipeline_degree": "2", "forge_tensor_degree": "2", "forge_micro_batches": "2"]),
        (4, ["forge_pipeline_degree": "4", "forge_pipeline_schedule": "gpipe"], 2, ["forge_pipeline_degree": "2"]),
        (4, ["forge_pipeline_degree": "2", "forge_zero_stage": "1"], 4, ["forge_tensor_degree": "2", "forge_zero_stage": "1"]),
    ])
    func aCheckpointOfOneLayoutResumesUnderAnother(writers: Int, written: [String: String], readers: Int, read: [String: String]) throws {
        // One layout writes checkpoints to step 50; the one of step 20 alone is kept, and
        // another layout resumes from it to step 50: it ends where the uninterrupted run ends.
        let scratch = try TemporaryDirectory()
        let whole = try Self.checkpointed(ranks: writers, written, directory: scratch.file("checkpoints"))
        let store = CheckpointStore(directory: scratch.file("checkpoints"))
        for folder in store.checkpointFolders() where !folder.hasSuffix("-000000020") {
            try FileManager.default.removeItem(atPath: store.directory + "/" + folder)
        }
        #expect(store.checkpointFolders() == ["step-000000020"])
        let resumed = try Self.checkpointed(ranks: readers, read, directory: scratch.file("checkpoints"))
        #expect(resumed.state.step == 50)
        let worst = expectMatching(whole.model.parameters, resumed.model.parameters, "(\(written) → \(read))")
        print("checkpoint of \(written) on \(writers) resumed by \(read) on \(readers): max per-tensor max|Δ|/max|ref| = \(worst)")
    }
}

/// `mlp` split the same ways: Megatron pairs of column- and row-split layers, and stages.
@Suite struct MLPModelParallelTests {
    static func run(ranks: Int, _ layout: [String: String]) throws -> TrainingResult {
        var values = ["hidden_layer_sizes": "24,12,8", "mini_batch_size": "30", "epochs": "6", "dropout": "0.2", "seed": "11"]
        values.merge(layout) { $1 }
        let plan = try TrainingPlan.make(algorithm: .mlp, hyperparameters: values)
        let data = try PreparedData(plan: plan, train: SyntheticData.thresholdClasses(count: 203, width: 10, seed: 1),
                                    validation: SyntheticData.thresholdClasses(count: 50, width: 10, seed: 2))
        if ranks == 1 { return try Trainer(plan: plan, data: data, device: CPUDevice(threadCount: 1)).run() }
        return try onRankThreads(ranks) { group in
            try Trainer(plan: plan, data: data, device: CPUDevice(threadCount: 1), group: group).run()
        }[0]
    }

    @Test(arguments: [
        (2, ["forge_tensor_degree": "2"]),
        (4, ["forge_tensor_degree": "2"]),
        (2, ["forge_pipeline_degree": "2", "forge_micro_batches": "3"]),
        (4, ["forge_pipeline_degree": "2", "forge_tensor_degree": "2", "forge_pipeline_schedule": "gpipe"]),
    ])
    func matchesOneProcess(ranks: Int, layout: [String: String]) throws {
        let single = try Self.run(ranks: 1, [:])
        let split = try Self.run(ranks: ranks, layout)
        let worst = expectMatching(single.model.parameters, split.model.parameters, "(mlp, \(ranks) ranks, \(layout))")
        #expect(split.metrics.map(\.name) == single.metrics.map(\.name))
        for (a, b) in zip(single.metrics, split.metrics) {
            #expect(abs(a.value - b.value) <= 1e-5 * max(1, abs(a.value)), "\(a.name): \(b.value) vs \(a.value)")
        }
        print("mlp on \(ranks) ranks \(layout.sorted { $0.key < $1.key }): max per-tensor max|Δ|/max|ref| = \(worst)")
    }

    @Test func hiddenWidthsThatDoNotSplitAreNamed() {
        #expect {
            try TrainingPlan.make(algorithm: .mlp, hyperparameters: ["hidden_layer_sizes": "25,12", "forge_tensor_degree": "2"])
        } throws: { error in
            (error as? HyperparameterError)?.problems.map(\.key) == ["forge_tensor_degree"]
        }
    }
}

/// A tied output head whose embedding is on another stage: the two copies of the table stay
/// equal and take the single process's steps.
extension ModelParallelTests {
    @Test(arguments: [
        (2, ["forge_pipeline_degree": "2", "forge_micro_batches": "3"]),
        (4, ["forge_pipeline_degree": "2", "forge_pipeline_schedule": "gpipe"]),
        (4, ["forge_pipeline_degree": "4"]),
        (4, ["forge_pipeline_degree": "2", "forge_tensor_degree": "2"]),
    ])
    func aTiedHeadAcrossStagesMatchesOneProcess(ranks: Int, layout: [String: String]) throws {
        let plan = try Self.plan(["tie_embeddings": "true"])
        let single = try Trainer(plan: plan, data: try Self.data(plan), device: CPUDevice(threadCount: 1)).run()
        var tied = layout
        tied["tie_embeddings"] = "true"
        let split = try Self.run(ranks: ranks, tied)
        #expect(single.model.parameters.map(\.name) == split.model.parameters.map(\.name), "no second table in the model")
        let worst = expectMatching(single.model.parameters, split.model.parameters, "(tied, \(ranks) ranks, \(layout))")
        print("tied transformer-lm on \(ranks) ranks \(layout.sorted { $0.key < $1.key }): max per-tensor max|Δ|/max|ref| = \(worst)")
    }

    @Test func aTiedCheckpointOfStagesResumesInOneProcess() throws {
        let scratch = try TemporaryDirectory()
        let tied = ["tie_embeddings": "true"]
        let whole = try Self.checkpointed(ranks: 1, tied, directory: scratch.file("reference"))
        var staged = tied
        staged["forge_pipeline_degree"] = "2"
        _ = try Self.checkpointed(ranks: 2, staged, directory: scratch.file("checkpoints"))
        let store = CheckpointStore(directory: scratch.file("checkpoints"))
        for folder in store.checkpointFolders() where !folder.hasSuffix("-000000020") {
            try FileManager.default.removeItem(atPath: store.directory + "/" + folder)
        }
        let resumed = try Self.checkpointed(ranks: 1, tied, directory: scratch.file("checkpoints"))
        expectMatching(whole.model.parameters, resumed.model.parameters, "(tied, 2 stages → one process)")
        // And back: one process's checkpoint resumed on 2 stages.
        let back = try Self.checkpointed(ranks: 2, staged, directory: scratch.file("reference"))
        #expect(back.state.step == 50)
    }
}
