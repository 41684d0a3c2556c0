// Extraction of tar entries onto the file system, refusing every path that would escape the root.
import Foundation

extension TarArchive {
    /// Writes `entries` under `directory`, creating it and any missing parent folders.
    ///
    /// Safety: every name is checked again (no absolute paths, no `..`), and no existing
    /// symbolic link below `directory` is followed, so nothing is written outside it. An
    /// existing regular file is replaced. File permissions are `mode & 0o777`; directory
    /// permissions are applied last, deepest first, so a read-only directory still receives
    /// its files. Modification times are set from `modificationTime`.
    ///
    /// Throws `badEntryName` for an unsafe name, `fileSystem` when a path is a symbolic link
    /// or of the wrong kind, or when the file system refuses a write.
    public static func extract(_ entries: [TarEntry], into directory: String) throws(ArchiveError) {
        let fileManager = FileManager.default
        if kind(of: directory, in: fileManager) == nil {
            try fileSystem(directory) {
                try fileManager.createDirectory(atPath: directory, withIntermediateDirectories: true)
            }
        }
        var directoryModes: [(path: String, mode: UInt32, time: Int)] = []
        for entry in entries {
            let components = try TarPath.components(of: entry.name)
            guard let last = components.last else { throw .badEntryName(entry.name) }
            var parent = directory
            for component in components.dropLast() {
                parent += "/" + component
                try makeRealDirectory(parent, in: fileManager)
            }
            let target = parent + "/" + last
            switch entry.kind {
            case .directory:
                try makeRealDirectory(target, in: fileManager)
                directoryModes.append((target, entry.mode, entry.modificationTime))
            case .file:
                try writeFile(entry, at: target, in: fileManager)
            }
        }
        for (path, mode, time) in directoryModes.reversed() {
            try setAttributes(of: path, mode: mode, time: time, in: fileManager)
        }
    }

    private static func writeFile(_ entry: TarEntry, at path: String, in fileManager: FileManager) throws(ArchiveError) {
        switch kind(of: path, in: fileManager) {
        case .typeRegular?:
            try fileSystem(path) { try fileManager.removeItem(atPath: path) }
        case nil:
            break
        case .typeSymbolicLink?:
            throw .fileSystem(path: path, reason: "is a symbolic link; refusing to write through it")
        case let other?:
            throw .fileSystem(path: path, reason: "exists as \(other.rawValue), not a regular file")
        }
        try fileSystem(path) {
            try Data(entry.bytes).write(to: URL(fileURLWithPath: path), options: .withoutOverwriting)
        }
        try setAttributes(of: path, mode: entry.mode, time: entry.modificationTime, in: fileManager)
    }

    /// Makes sure `path` is a real directory (not a link to one), creating it when missing.
    private static func makeRealDirectory(_ path: String, in fileManager: FileManager) throws(ArchiveError) {
        switch kind(of: path, in: fileManager) {
        case .typeDirectory?:
            return
        case nil:
            try fileSystem(path) { try fileManager.createDirectory(atPath: path, withIntermediateDirectories: false) }
        case .typeSymbolicLink?:
            throw .fileSystem(path: path, reason: "is a symbolic link; refusing to extract through it")
        case let other?:
            throw .fileSystem(path: path, reason: "exists as \(other.rawValue), not a directory")
        }
    }

    private static func setAttributes(
        of path: String,
        mode: UInt32,
        time: Int,
        in fileManager: FileManager
    ) throws(ArchiveError) {
        let attributes: [FileAttributeKey: Any] = [
            .posixPermissions: NSNumber(value: mode & 0o777),
            .modificationDate: Date(timeIntervalSince1970: TimeInterval(time)),
        ]
        try fileSystem(path) { try fileManager.setAttributes(attributes, ofItemAtPath: path) }
    }

    /// The type of the item at `path` without following a final symbolic link; nil if absent.
    private static func kind(of path: String, in fileManager: FileManager) -> FileAttributeType? {
        guard let attributes = try? fileManager.attributesOfItem(atPath: path) else { return nil }
        return attributes[.type] as? FileAttributeType
    }

    /// Runs a Foundation call, reporting its error as `fileSystem` at `path`.
    private static func fileSystem(_ path: String, _ body: () throws -> Void) throws(ArchiveError) {
        do {
            try body()
        } catch {
            throw .fileSystem(path: path, reason: "\(error)")
        }
    }
}
