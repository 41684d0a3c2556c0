// One member of a tar archive: a regular file or a directory, held in memory.

/// A tar member: a regular file with its bytes, or a directory.
///
/// `name` is a relative path with `/` separators and no trailing slash (the writer adds the
/// slash that marks a directory on disk). Names are checked when written, read and extracted:
/// absolute paths and `..` components are refused everywhere.
public struct TarEntry: Sendable, Equatable {
    /// What the entry is. Tar also knows links and devices; Forge refuses those.
    public enum Kind: Sendable, Equatable {
        /// A regular file; its contents are `bytes`.
        case file
        /// A directory; `bytes` is empty.
        case directory
    }

    /// Relative path inside the archive, `/`-separated, without a trailing slash.
    public var name: String
    /// File or directory.
    public var kind: Kind
    /// Permission bits (`0o7777` at most; higher bits are dropped when written).
    public var mode: UInt32
    /// Modification time in seconds since the Unix epoch. The default 0 keeps archives
    /// byte-for-byte reproducible.
    public var modificationTime: Int
    /// The file's contents; empty for a directory.
    public var bytes: [UInt8]

    /// Makes an entry. `mode` defaults to `0o644` for a file and `0o755` for a directory.
    /// A trailing slash on a directory name is removed.
    public init(
        name: String,
        kind: Kind = .file,
        mode: UInt32? = nil,
        modificationTime: Int = 0,
        bytes: [UInt8] = []
    ) {
        var trimmed = Substring(name)
        while kind == .directory, trimmed.count > 1, trimmed.hasSuffix("/") {
            trimmed = trimmed.dropLast()
        }
        self.name = String(trimmed)
        self.kind = kind
        self.mode = mode ?? (kind == .file ? 0o644 : 0o755)
        self.modificationTime = modificationTime
        self.bytes = bytes
    }

    /// A regular file named `name` holding `bytes`.
    public static func file(_ name: String, bytes: [UInt8], mode: UInt32 = 0o644) -> TarEntry {
        TarEntry(name: name, kind: .file, mode: mode, bytes: bytes)
    }

    /// A directory named `name`.
    public static func directory(_ name: String, mode: UInt32 = 0o755) -> TarEntry {
        TarEntry(name: name, kind: .directory, mode: mode)
    }
}
