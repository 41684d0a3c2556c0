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
        }
    }
}
