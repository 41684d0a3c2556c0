// Errors of the archive formats (gzip, tar, safetensors): each names what was wrong and where.

/// Why reading or writing an archive failed.
public enum ArchiveError: Error, Equatable, CustomStringConvertible {
    /// zlib reported an error; `call` is the zlib function, `code` its return value.
    case zlib(call: String, code: Int32, message: String)
    /// The bytes are not a gzip stream, or the stream ends early.
    case corruptGzip(reason: String)
    /// The tar stream is malformed at byte `offset`.
    case corruptTar(offset: Int, reason: String)
    /// A tar entry name is unsafe (absolute, `..`, too long) or not representable.
    case badEntryName(String)
    /// A safetensors header or payload is malformed.
    case corruptSafetensors(reason: String)
    /// A named entry or tensor was not found.
    case missing(String)
    /// A tar entry is well formed but of a kind Forge does not handle (a symbolic link, a device,
    /// a directory carrying bytes); `name` is the entry's path.
    case unsupportedEntry(name: String, reason: String)
    /// A tensor cannot be written or read as asked (bad name, byte count that does not match
    /// its shape, the wrong dtype for a typed accessor); `name` is the tensor's name.
    case invalidTensor(name: String, reason: String)
    /// A file-system operation failed while extracting; `path` is the file or folder involved.
    case fileSystem(path: String, reason: String)

    public var description: String {
        switch self {
        case .zlib(let call, let code, let message):
            return "zlib \(call) failed (\(code)): \(message)"
        case .corruptGzip(let reason):
            return "corrupt gzip data: \(reason)"
        case .corruptTar(let offset, let reason):
            return "corrupt tar archive at byte \(offset): \(reason)"
        case .badEntryName(let name):
            return "unsafe or unsupported archive entry name '\(name)'"
        case .corruptSafetensors(let reason):
            return "corrupt safetensors file: \(reason)"
        case .missing(let name):
            return "'\(name)' not found in the archive"
        case .unsupportedEntry(let name, let reason):
            return "unsupported tar entry '\(name)': \(reason)"
        case .invalidTensor(let name, let reason):
            return "invalid tensor '\(name)': \(reason)"
        case .fileSystem(let path, let reason):
            return "file-system error at '\(path)': \(reason)"
        }
    }
}
