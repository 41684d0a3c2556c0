// Tests of Trainer checkpoints: a run resumed from any checkpoint (mid-epoch included) ends
// bit-identical to the uninterrupted run, for each optimizer, with dropout and a partial last
// batch; resumes under other hyperparameters or data, or from damaged checkpoints, are refused
// with TrainingError.badCheckpoint.
import ForgeArchive
import ForgeData
import ForgeTensor
import ForgeTestSupport
import ForgeTraining
import Foundation
import Testing

@Suite struct TrainerResumeTests {
    // 50 records in batches of 8: six full batches and one of 2, so 7 steps per epoch.
    private let trainData = SyntheticData.blobs(count: 50, width: 6, classes: 3, seed: 1)
    private let validationData = SyntheticData.blobs(count: 20, width: 6, classes: 3, seed: 2)

    private func trainer(_ values: [String: String], train: Dataset? = nil) throws -> Trainer {
        let plan = try TrainingPlan.make(algorithm: .mlp, hyperparameters: values)
        let data = try PreparedData(plan: plan, train: train ?? trainData, validation: validationData)
        return try Trainer(plan: plan, data: data, device: CPUDevice(threadCount: 1))
    }

    private func values(optimizer: String) -> [String: String] {
        ["hidden_layer_sizes": "16,8", "dropout": "0.3", "mini_batch_size": "8", "epochs": "3", "optimizer": optimizer,
         "learning_rate": "0.01", "forge_checkpoint_steps": "5", "seed": "11", "early_stopping_patience": "2"]
    }

    private func copyFolder(_ source: String, into directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: source,
                                         toPath: (directory as NSString).appendingPathComponent((source as NSString).lastPathComponent))
    }

    @Test(arguments: ["sgd", "adam", "adamw"])
    func resumeFromAnyCheckpointIsBitExact(optimizer: String) throws {
        let scratch = try TemporaryDirectory()
        let all = CheckpointStore(directory: scratch.file("a"), keep: 1000)
        let full = RecordingObserver()
        let uninterrupted = try trainer(values(optimizer: optimizer)).run(checkpoints: all, observer: full)
        #expect(full.steps == Array(1...21))
        // Every 5 steps, and at the end of each epoch (7, 14, 21) unless one was just written.
        #expect(all.checkpointFolders() == [5, 7, 10, 14, 15, 20, 21].map { String(format: "step-%09d", $0) })
        #expect(full.checkpointSteps == [5, 7, 10, 14, 15, 20, 21])

        // Mid-epoch (10, 20), at an epoch's end (7), and on a step-count checkpoint that is not one (15).
        for resumeStep in [10, 7, 15, 20] {
            let folder = all.directory + String(format: "/step-%09d", resumeStep)
            let target = scratch.file("b-\(resumeStep)")
            try copyFolder(folder, into: target)
            let resumed = RecordingObserver()
            let result = try trainer(values(optimizer: optimizer)).run(checkpoints: CheckpointStore(directory: target), observer: resumed)
            let context = "(\(optimizer), resumed at step \(resumeStep))"
            #expect(resumed.resumedAt?.step == resumeStep, "\(context)")
            #expect(resumed.resumedAt?.epoch == resumeStep / 7 + 1, "\(context)")
            #expect(resumed.steps == Array((resumeStep + 1)...21), "\(context): the resumed run retrained steps")
            #expect(resumed.reports == full.reports.filter { $0.step > resumeStep }, "\(context)")
            expectBitIdentical(uninterrupted.model, result.model, context)
            #expect(metricBits(result.metrics) == metricBits(uninterrupted.metrics), "\(context)")
            #expect(result.state == uninterrupted.state, "\(context)")
        }
    }

    @Test func aFinishedRunResumesAtItsEnd() throws {
        let scratch = try TemporaryDirectory()
        let store = CheckpointStore(directory: scratch.path)
        let first = try trainer(values(optimizer: "adam")).run(checkpoints: store)
        let observer = RecordingObserver()
        let again = try trainer(values(optimizer: "adam")).run(checkpoints: store, observer: observer)
        #expect(observer.resumedAt?.step == 21)
        #expect(observer.steps.isEmpty)
        #expect(observer.reports.isEmpty)
        expectBitIdentical(first.model, again.model)
        #expect(metricBits(first.metrics) == metricBits(again.metrics))
        // The default store keeps the newest two.
        #expect(store.checkpointFolders() == ["step-000000020", "step-000000021"])
    }

    @Test func otherHyperparametersOrDataAreRefused() throws {
        let scratch = try TemporaryDirectory()
        let store = CheckpointStore(directory: scratch.path)
        var settings = values(optimizer: "adam")
        settings["epochs"] = "1"
        _ = try trainer(settings).run(checkpoints: store)
        let path = scratch.file("step-000000007")

        settings["learning_rate"] = "0.02"
        let changed = #expect(throws: TrainingError.self) { try trainer(settings).run(checkpoints: store) }
        guard case .badCheckpoint(let errorPath, let reason)? = changed else {
            Issue.record("expected badCheckpoint, got \(String(describing: changed))")
            return
        }
        #expect(errorPath == path)
        #expect(reason.contains("learning_rate"), "\(reason)")
        #expect(!reason.contains("epochs"), "\(reason)")

        settings["learning_rate"] = "0.01"
        let smaller = trainData.subset(0..<40)
        let other = #expect(throws: TrainingError.self) { try trainer(settings, train: smaller).run(checkpoints: store) }
        guard case .badCheckpoint(path, let dataReason)? = other else {
            Issue.record("expected badCheckpoint, got \(String(describing: other))")
            return
        }
        #expect(dataReason.contains("50 records"), "\(dataReason)")
    }

    /// Writes a finished one-epoch run's checkpoint and returns its folder.
    private func finishedCheckpoint(in scratch: TemporaryDirectory) throws -> String {
        var settings = values(optimizer: "adam")
        settings["epochs"] = "1"
        _ = try trainer(settings).run(checkpoints: CheckpointStore(directory: scratch.path, keep: 1))
        return scratch.file("step-000000007")
    }

    private func resumeError(_ scratch: TemporaryDirectory) -> TrainingError? {
        var settings = values(optimizer: "adam")
        settings["epochs"] = "1"
        do {
            _ = try trainer(settings).run(checkpoints: CheckpointStore(directory: scratch.path, keep: 1))
            return nil
        } catch {
            return error as? TrainingError
        }
    }

    private func expectBadCheckpoint(_ error: TrainingError?, _ folder: String, mentioning text: String?,
                                     sourceLocation: SourceLocation = #_sourceLocation) {
        guard case .badCheckpoint(let path, let reason)? = error else {
            Issue.record("expected badCheckpoint, got \(String(describing: error))", sourceLocation: sourceLocation)
            return
        }
        #expect(path == folder, sourceLocation: sourceLocation)
        if let text { #expect(reason.contains(text), "\(reason)", sourceLocation: sourceLocation) }
    }

    @Test func damagedCheckpointsAreRefused() throws {
        let scratch = try TemporaryDirectory()
        let folder = try finishedCheckpoint(in: scratch)
        let statePath = folder + "/state.safetensors", jsonPath = folder + "/trainer.json"
        let state = try [UInt8](Data(contentsOf: URL(fileURLWithPath: statePath)))
        let json = try Data(contentsOf: URL(fileURLWithPath: jsonPath))

        try Data("{ not json".utf8).write(to: URL(fileURLWithPath: jsonPath))
        expectBadCheckpoint(resumeError(scratch), folder, mentioning: "trainer.json is malformed")

        var object = try #require(try JSONSerialization.jsonObject(with: json) as? [String: Any])
        object["version"] = 2
        try JSONSerialization.data(withJSONObject: object).write(to: URL(fileURLWithPath: jsonPath))
        expectBadCheckpoint(resumeError(scratch), folder, mentioning: "unknown format version 2")
        try json.write(to: URL(fileURLWithPath: jsonPath))

        try FileManager.default.removeItem(atPath: statePath)
        expectBadCheckpoint(resumeError(scratch), folder, mentioning: nil)

        let file = try SafetensorsFile(decoding: state)
        let pruned = SafetensorsFile(tensors: file.tensors.filter { $0.name != "model.layers.0.weight" }, metadata: file.metadata)
        try Data(pruned.encoded()).write(to: URL(fileURLWithPath: statePath))
        expectBadCheckpoint(resumeError(scratch), folder, mentioning: "tensor 'model.layers.0.weight' is missing or has the wrong size")

        let optimizerName = try #require(file.tensors.first { $0.name.hasPrefix("optimizer.") }?.name)
        let reshaped = SafetensorsFile(tensors: file.tensors.map {
            $0.name == optimizerName ? SafeTensor(name: optimizerName, shape: [1], floats: [0]) : $0
        }, metadata: file.metadata)
        try Data(reshaped.encoded()).write(to: URL(fileURLWithPath: statePath))
        expectBadCheckpoint(resumeError(scratch), folder, mentioning: "tensor '\(optimizerName)' is missing or has the wrong size")

        // Truncated anywhere: refused, never a crash.
        for length in stride(from: 0, to: state.count, by: max(1, state.count / 25)) {
            try Data(state[0..<length]).write(to: URL(fileURLWithPath: statePath))
            expectBadCheckpoint(resumeError(scratch), folder, mentioning: "corrupt safetensors file")
        }
        // And the intact checkpoint still resumes.
        try Data(state).write(to: URL(fileURLWithPath: statePath))
        #expect(resumeError(scratch) == nil)
    }
}
