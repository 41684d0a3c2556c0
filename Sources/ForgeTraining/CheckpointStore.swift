// Checkpoints in a folder: `step-NNNNNNNNN/` holding `state.safetensors` (model, optimizer and
// best-model tensors) and `trainer.json` (position and bookkeeping). A checkpoint is written
// into a temporary folder and renamed into place, so a crash never leaves a half one.
import ForgeArchive
import Foundation

/// A checkpoint's contents.
public struct Checkpoint: Sendable {
    public var state: TrainerState
    /// Named tensors: `model.<parameter>`, `optimizer.<buffer>`, `best.<parameter>`.
    public var tensors: [SafeTensor]

    public init(state: TrainerState, tensors: [SafeTensor]) {
        self.state = state
        self.tensors = tensors
    }
}

/// Reads and writes checkpoints under one folder, keeping the newest `keep`.
public struct CheckpointStore: Sendable {
    public let directory: String
    public let keep: Int

    public init(directory: String, keep: Int = 2) {
        self.directory = directory
        self.keep = max(1, keep)
    }

    private static let prefix = "step-"

    /// Writes `checkpoint` and returns its folder.
    @discardableResult
    public func save(_ checkpoint: Checkpoint) throws(TrainingError) -> String {
        let name = CheckpointStore.prefix + String(format: "%09d", checkpoint.state.step)
        let final = (directory as NSString).appendingPathComponent(name)
        let temporary = (directory as NSString).appendingPathComponent(".tmp-\(name)-\(getpid())")
        let fm = FileManager.default
        do {
            try fm.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try? fm.removeItem(atPath: temporary)
            try fm.createDirectory(atPath: temporary, withIntermediateDirectories: true)
            let tensors = try SafetensorsFile(tensors: checkpoint.tensors, metadata: ["format": "forge-checkpoint"]).encoded()
            try Data(tensors).write(to: URL(fileURLWithPath: (temporary as NSString).appendingPathComponent("state.safetensors")))
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(checkpoint.state).write(to: URL(fileURLWithPath: (temporary as NSString).appendingPathComponent("trainer.json")))
            try? fm.removeItem(atPath: final)
            try fm.moveItem(atPath: temporary, toPath: final)
        } catch let error as ArchiveError {
            throw .io(path: final, reason: error.description)
        } catch {
            throw .io(path: final, reason: "cannot write checkpoint: \(error.localizedDescription)")
        }
        for old in checkpointFolders().dropLast(keep) {
            try? fm.removeItem(atPath: (directory as NSString).appendingPathComponent(old))
        }
        return final
    }

    /// Completed checkpoint folder names, oldest first.
    public func checkpointFolders() -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.filter { $0.hasPrefix(CheckpointStore.prefix) }.sorted()
    }

    /// The newest checkpoint, or nil when the folder has none.
    public func loadLatest() throws(TrainingError) -> (checkpoint: Checkpoint, path: String)? {
        guard let newest = checkpointFolders().last else { return nil }
        let path = (directory as NSString).appendingPathComponent(newest)
        return (try load(path: path), path)
    }

    /// Reads the checkpoint in folder `path`.
    public func load(path: String) throws(TrainingError) -> Checkpoint {
        for file in ["trainer.json", "state.safetensors"] where !FileManager.default.fileExists(atPath: (path as NSString).appendingPathComponent(file)) {
            throw .badCheckpoint(path: path, reason: "\(file) is missing")
        }
        do {
            let json = try Data(contentsOf: URL(fileURLWithPath: (path as NSString).appendingPathComponent("trainer.json")))
            let state = try JSONDecoder().decode(TrainerState.self, from: json)
            guard state.version == 1 else { throw TrainingError.badCheckpoint(path: path, reason: "unknown format version \(state.version)") }
            let bytes = try Data(contentsOf: URL(fileURLWithPath: (path as NSString).appendingPathComponent("state.safetensors")))
            let file = try SafetensorsFile(decoding: [UInt8](bytes))
            return Checkpoint(state: state, tensors: file.tensors)
        } catch let error as TrainingError {
            throw error
        } catch let error as ArchiveError {
            throw .badCheckpoint(path: path, reason: error.description)
        } catch let error as DecodingError {
            throw .badCheckpoint(path: path, reason: "trainer.json is malformed: \(error)")
        } catch {
            throw .badCheckpoint(path: path, reason: error.localizedDescription)
        }
    }
}
