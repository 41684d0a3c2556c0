// Tests of CheckpointStore: folder names, the newest-`keep` retention, exact round trips of
// state and tensors, and that unfinished temporary folders are never taken for checkpoints.
import ForgeArchive
import ForgeTestSupport
import ForgeTraining
import Foundation
import Testing

@Suite struct CheckpointStoreTests {
    private func checkpoint(step: Int) -> Checkpoint {
        var state = TrainerState()
        state.step = step
        state.epoch = step / 10
        state.batchInEpoch = step % 10
        state.epochLossSum = 0.1 * Double(step)
        state.bestValidationLoss = step.isMultiple(of: 2) ? 1.0 / 3.0 : nil
        state.hyperparameters = ["epochs": "3", "seed": "9"]
        state.lastReport = ["train:loss": 0.25]
        return Checkpoint(state: state, tensors: [
            SafeTensor(name: "model.layers.0.weight", shape: [2, 3], floats: [1, -2, 3.5, .leastNonzeroMagnitude, -0.0, Float(step)]),
            SafeTensor(name: "optimizer.m", shape: [2], floats: [0.125, 1e-30]),
        ])
    }

    @Test func savesZeroPaddedFoldersAndKeepsTheNewest() throws {
        let scratch = try TemporaryDirectory()
        let store = CheckpointStore(directory: scratch.file("nested/checkpoints"), keep: 3)
        #expect(try store.loadLatest() == nil)
        for step in [5, 7, 100, 1_000, 12] {
            let path = try store.save(checkpoint(step: step))
            #expect(path == store.directory + String(format: "/step-%09d", step))
        }
        #expect(store.checkpointFolders() == ["step-000000012", "step-000000100", "step-000001000"])
        let latest = try #require(try store.loadLatest())
        #expect(latest.path == store.directory + "/step-000001000")
        #expect(latest.checkpoint.state.step == 1_000)
        #expect(CheckpointStore(directory: scratch.path, keep: 0).keep == 1)
    }

    @Test func roundTripIsExact() throws {
        let scratch = try TemporaryDirectory()
        let store = CheckpointStore(directory: scratch.path)
        let original = checkpoint(step: 42)
        let path = try store.save(original)
        let loaded = try store.load(path: path)
        #expect(loaded.state == original.state)
        #expect(loaded.tensors.map(\.name) == original.tensors.map(\.name))
        #expect(loaded.tensors.map(\.shape) == original.tensors.map(\.shape))
        #expect(loaded.tensors.map { $0.floats?.map(\.bitPattern) } == original.tensors.map { $0.floats?.map(\.bitPattern) })
    }

    @Test func temporaryFoldersAreNotCheckpoints() throws {
        let scratch = try TemporaryDirectory()
        let store = CheckpointStore(directory: scratch.path)
        try store.save(checkpoint(step: 3))
        // What a crash in the middle of a save leaves behind.
        try scratch.write(Array("garbage".utf8), to: ".tmp-step-000000009-1234/trainer.json")
        try scratch.write([], to: "notes.txt")
        #expect(store.checkpointFolders() == ["step-000000003"])
        #expect(try store.loadLatest()?.checkpoint.state.step == 3)
    }

    @Test func aMissingFolderIsBadCheckpoint() {
        let store = CheckpointStore(directory: "/nonexistent-forge-test")
        #expect(store.checkpointFolders().isEmpty)
        let error = #expect(throws: TrainingError.self) { try store.load(path: "/nonexistent-forge-test/step-000000001") }
        guard case .badCheckpoint(path: "/nonexistent-forge-test/step-000000001", _)? = error else {
            Issue.record("expected badCheckpoint, got \(String(describing: error))")
            return
        }
    }
}
