// Checkpoints in a folder: `step-NNNNNNNNN/` holding `state.safetensors` (model, optimizer and
// best-model tensors) and `trainer.json` (position and bookkeeping); a model split across
// ranks writes one `state-sS-tT.safetensors` per piece (stage S, tensor part T) instead, listed
// in `manifest.json`. A checkpoint is written into a temporary folder and renamed into place,
// so a crash never leaves a half one.
import ForgeArchive
import Foundation

/// A checkpoint's contents.
public struct Checkpoint: Sendable {
    public var state: TrainerState
    /// Named tensors: `model.<parameter>`, `optimizer.<buffer>.<parameter>` (older ones:
    /// `optimizer.<buffer>`, flat over the model), `best.<parameter>`.
    public var tensors: [SafeTensor]
    /// The files of a model split across ranks: pieces of those tensors, each described in its
    /// file's metadata (`LogicalState`).
    public var shards: [SafetensorsFile]

    public init(state: TrainerState, tensors: [SafeTensor], shards: [SafetensorsFile] = []) {
        self.state = state
        self.tensors = tensors
        self.shards = shards
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

    /// Where the ranks of a split model write step `step`'s pieces, and where it goes once
    /// complete. The temporary folder's name is the same on every rank.
    public func shardedFolders(step: Int) -> (temporary: String, final: String) {
        let name = CheckpointStore.prefix + String(format: "%09d", step)
        return ((directory as NSString).appendingPathComponent(".tmp-\(name)-shards"), (directory as NSString).appendingPathComponent(name))
    }

    /// Empties (or makes) the temporary folder of a split checkpoint; one rank calls it before
    /// the others write.
    public func prepareShards(in temporary: String) throws(TrainingError) {
        let fm = FileManager.default
        do {
            try? fm.removeItem(atPath: temporary)
            try fm.createDirectory(atPath: temporary, withIntermediateDirectories: true)
        } catch {
            throw .io(path: temporary, reason: "cannot make the checkpoint folder: \(error.localizedDescription)")
        }
    }

    /// Writes one piece file of a split checkpoint.
    public func writeShard(_ file: SafetensorsFile, named name: String, in temporary: String) throws(TrainingError) {
        let path = (temporary as NSString).appendingPathComponent(name)
        do {
            var metadata = file.metadata
            metadata["format"] = "forge-checkpoint"
            try Data(try SafetensorsFile(tensors: file.tensors, metadata: metadata).encoded()).write(to: URL(fileURLWithPath: path))
        } catch let error as ArchiveError {
            throw .io(path: path, reason: error.description)
        } catch {
            throw .io(path: path, reason: "cannot write checkpoint: \(error.localizedDescription)")
        }
    }

    /// Completes a split checkpoint once every rank has written its piece: checks the files
    /// are there, writes `manifest.json` and `trainer.json`, renames the folder into place and
    /// prunes old checkpoints. Returns the final folder.
    public func commitShards(state: TrainerState, files: [String], temporary: String, final: String) throws(TrainingError) -> String {
        let fm = FileManager.default
        for file in files where !fm.fileExists(atPath: (temporary as NSString).appendingPathComponent(file)) {
            throw .io(path: temporary, reason: "the piece \(file) was not written")
        }
        do {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(Manifest(files: files)).write(to: URL(fileURLWithPath: (temporary as NSString).appendingPathComponent("manifest.json")))
            try encoder.encode(state).write(to: URL(fileURLWithPath: (temporary as NSString).appendingPathComponent("trainer.json")))
            try? fm.removeItem(atPath: final)
            try fm.moveItem(atPath: temporary, toPath: final)
        } catch {
            throw .io(path: final, reason: "cannot write checkpoint: \(error.localizedDescription)")
        }
        for old in checkpointFolders().dropLast(keep) {
            try? fm.removeItem(atPath: (directory as NSString).appendingPathComponent(old))
        }
        return final
    }

    /// The piece files of a split checkpoint.
    struct Manifest: Codable {
        var files: [String]
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
        let manifestPath = (path as NSString).appendingPathComponent("manifest.json")
        let split = FileManager.default.fileExists(atPath: manifestPath)
        for file in ["trainer.json"] + (split ? [] : ["state.safetensors"])
        where !FileManager.default.fileExists(atPath: (path as NSString).appendingPathComponent(file)) {
            throw .badCheckpoint(path: path, reason: "\(file) is missing")
        }
        do {
            let json = try Data(contentsOf: URL(fileURLWithPath: (path as NSString).appendingPathComponent("trainer.json")))
            let state = try JSONDecoder().decode(TrainerState.self, from: json)
            guard state.version == 1 else { throw TrainingError.badCheckpoint(path: path, reason: "unknown format version \(state.version)") }
            if split {
                let manifest = try JSONDecoder().decode(Manifest.self, from: Data(contentsOf: URL(fileURLWithPath: manifestPath)))
                var shards = [SafetensorsFile]()
                for name in manifest.files {
                    guard !name.contains("/"), name.hasSuffix(".safetensors") else {
                        throw TrainingError.badCheckpoint(path: path, reason: "manifest.json names '\(name)', not a file of this folder")
                    }
                    let file = (path as NSString).appendingPathComponent(name)
                    guard FileManager.default.fileExists(atPath: file) else {
                        throw TrainingError.badCheckpoint(path: path, reason: "\(name) (listed in manifest.json) is missing")
                    }
                    shards.append(try SafetensorsFile(decoding: [UInt8](try Data(contentsOf: URL(fileURLWithPath: file)))))
                }
                return Checkpoint(state: state, tensors: [], shards: shards)
            }
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
