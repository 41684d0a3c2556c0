// The element types of the IDX format (MNIST's file format), by their type code.

/// The element type of an IDX file: the third byte of its magic number. Multi-byte types are
/// big-endian in the file.
public enum IDXElementType: UInt8, Sendable, Hashable, CaseIterable {
    case unsignedByte = 0x08
    case signedByte = 0x09
    case int16 = 0x0B
    case int32 = 0x0C
    case float32 = 0x0D
    case float64 = 0x0E

    /// Bytes per element.
    public var byteCount: Int {
        switch self {
        case .unsignedByte, .signedByte: return 1
        case .int16: return 2
        case .int32, .float32: return 4
        case .float64: return 8
        }
    }

    /// A short name for messages (`u8`, `i8`, `i16`, `i32`, `f32`, `f64`).
    public var name: String {
        switch self {
        case .unsignedByte: return "u8"
        case .signedByte: return "i8"
        case .int16: return "i16"
        case .int32: return "i32"
        case .float32: return "f32"
        case .float64: return "f64"
        }
    }
}
