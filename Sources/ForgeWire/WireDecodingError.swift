// Why bytes from a peer are not a valid frame. Decoding is total: any byte string either
// decodes or throws one of these; nothing a peer sends can crash or hang a process.

/// What is wrong with a received frame.
public enum WireDecodingError: Error, Equatable, CustomStringConvertible {
    /// Fewer bytes than the fixed header needs.
    case shortHeader(byteCount: Int, needed: Int)
    /// The first four bytes are not Forge's magic number.
    case badMagic([UInt8])
    /// A version this build does not speak.
    case unsupportedVersion(UInt8, supported: UInt8)
    /// An unknown message kind.
    case unknownKind(UInt8)
    /// An unknown element type.
    case unknownElementType(UInt8)
    /// Reserved bits that must be zero are not.
    case reservedNotZero
    /// The payload's length differs from what the header declares.
    case lengthMismatch(declared: Int, actual: Int)
    /// The payload is not a whole number of elements.
    case partialElement(byteCount: Int, elementSize: Int)
    /// A chunk index at or past the chunk count.
    case chunkOutOfRange(index: UInt32, count: UInt32)

    public var description: String {
        switch self {
        case .shortHeader(let count, let needed):
            return "frame header has \(count) bytes, needs \(needed)"
        case .badMagic(let bytes):
            return "not a Forge frame (magic \(bytes.map { String($0, radix: 16) }.joined(separator: " ")))"
        case .unsupportedVersion(let version, let supported):
            return "frame version \(version) is not supported (this build speaks \(supported)); are all nodes on the same Forge?"
        case .unknownKind(let kind):
            return "unknown message kind \(kind)"
        case .unknownElementType(let type):
            return "unknown element type \(type)"
        case .reservedNotZero:
            return "reserved header bytes are not zero"
        case .lengthMismatch(let declared, let actual):
            return "payload has \(actual) bytes, the header declares \(declared)"
        case .partialElement(let count, let size):
            return "payload of \(count) bytes is not a whole number of \(size)-byte elements"
        case .chunkOutOfRange(let index, let count):
            return "chunk \(index) of \(count) is out of range"
        }
    }
}
