// The data plane's frame header: what travels in front of every tensor chunk between ranks.
//
// Layout (40 bytes, little-endian), sent as the first frame of a two-frame ZeroMQ message
// whose second frame is the payload:
//   0  magic "FGW\0"            4  version (1)        5  kind
//   6  element type             7  reserved (0)
//   8  collective id (u64)     16  step (u64)
//  24  chunk index (u32)       28  chunk count (u32)
//  32  source rank (u32)       36  payload bytes (u32)

/// The kinds of data-plane messages.
public enum MessageKind: UInt8, Sendable, CaseIterable {
    /// A chunk of a tensor in a collective (all-reduce, all-gather, …).
    case tensorChunk = 1
    /// A point-to-point tensor (send/recv).
    case pointToPoint = 2
    /// A barrier token (empty payload).
    case barrier = 3
    /// A peer saying who it is when a connection opens (payload: UTF-8 host name).
    case hello = 4
}

/// Element types on the wire.
public enum ElementType: UInt8, Sendable, CaseIterable {
    case float32 = 1, bfloat16 = 2, int32 = 3, uint8 = 4

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .float32, .int32: 4
        case .bfloat16: 2
        case .uint8: 1
        }
    }
}

/// A decoded, valid frame header.
public struct FrameHeader: Sendable, Hashable {
    public static let magic: [UInt8] = [0x46, 0x47, 0x57, 0x00]
    public static let version: UInt8 = 1
    public static let byteCount = 40

    public var kind: MessageKind
    public var elementType: ElementType
    /// Which collective call this chunk belongs to (ranks number their calls identically).
    public var collectiveID: UInt64
    /// The training step.
    public var step: UInt64
    public var chunkIndex: UInt32
    public var chunkCount: UInt32
    public var sourceRank: UInt32
    /// Bytes of the payload frame that follows.
    public var payloadByteCount: UInt32

    public init(kind: MessageKind, elementType: ElementType, collectiveID: UInt64, step: UInt64,
                chunkIndex: UInt32, chunkCount: UInt32, sourceRank: UInt32, payloadByteCount: UInt32) {
        self.kind = kind
        self.elementType = elementType
        self.collectiveID = collectiveID
        self.step = step
        self.chunkIndex = chunkIndex
        self.chunkCount = chunkCount
        self.sourceRank = sourceRank
        self.payloadByteCount = payloadByteCount
    }

    /// The 40 header bytes.
    public func encoded() -> [UInt8] {
        var bytes = FrameHeader.magic + [FrameHeader.version, kind.rawValue, elementType.rawValue, 0]
        bytes.reserveCapacity(FrameHeader.byteCount)
        append(collectiveID, to: &bytes)
        append(step, to: &bytes)
        append(chunkIndex, to: &bytes)
        append(chunkCount, to: &bytes)
        append(sourceRank, to: &bytes)
        append(payloadByteCount, to: &bytes)
        return bytes
    }

    /// Decodes a header frame; the header must be exactly `byteCount` bytes.
    public init(decoding bytes: some Collection<UInt8>) throws(WireDecodingError) {
        let b = Array(bytes)
        guard b.count >= FrameHeader.byteCount else { throw .shortHeader(byteCount: b.count, needed: FrameHeader.byteCount) }
        guard Array(b[0..<4]) == FrameHeader.magic else { throw .badMagic(Array(b[0..<4])) }
        guard b[4] == FrameHeader.version else { throw .unsupportedVersion(b[4], supported: FrameHeader.version) }
        guard let kind = MessageKind(rawValue: b[5]) else { throw .unknownKind(b[5]) }
        guard let elementType = ElementType(rawValue: b[6]) else { throw .unknownElementType(b[6]) }
        guard b[7] == 0 else { throw .reservedNotZero }
        guard b.count == FrameHeader.byteCount else {
            throw .lengthMismatch(declared: FrameHeader.byteCount, actual: b.count)
        }
        self.init(kind: kind, elementType: elementType,
                  collectiveID: read(b, at: 8), step: read(b, at: 16),
                  chunkIndex: read(b, at: 24), chunkCount: read(b, at: 28),
                  sourceRank: read(b, at: 32), payloadByteCount: read(b, at: 36))
        guard chunkIndex < chunkCount else { throw .chunkOutOfRange(index: chunkIndex, count: chunkCount) }
        guard Int(payloadByteCount) % elementType.size == 0 else {
            throw .partialElement(byteCount: Int(payloadByteCount), elementSize: elementType.size)
        }
    }

    /// Checks a received payload frame against this header.
    public func validate(payloadByteCount actual: Int) throws(WireDecodingError) {
        guard actual == Int(payloadByteCount) else { throw .lengthMismatch(declared: Int(payloadByteCount), actual: actual) }
    }
}

private func append<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
    withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
}

private func read<T: FixedWidthInteger>(_ bytes: [UInt8], at offset: Int) -> T {
    var value: T = 0
    for index in 0..<MemoryLayout<T>.size {
        value |= T(bytes[offset + index]) << (8 * index)
    }
    return value
}
