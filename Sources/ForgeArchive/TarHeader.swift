// The 512-byte ustar header block: field layout, numeric encodings and checksum.

/// One ustar header block (POSIX.1-1988 layout, as written by GNU tar and Python's `tarfile`).
///
/// Numeric fields are octal ASCII, NUL- or space-terminated; values too large for octal use
/// the GNU base-256 form (high bit of the first byte set, big-endian two's complement).
/// The checksum is the sum of all 512 bytes with the checksum field read as eight spaces.
struct TarHeader {
    /// Bytes in a header or data block.
    static let blockByteCount = 512

    static let nameField = 0..<100
    static let modeField = 100..<108
    static let uidField = 108..<116
    static let gidField = 116..<124
    static let sizeField = 124..<136
    static let modificationTimeField = 136..<148
    static let checksumField = 148..<156
    static let typeflagIndex = 156
    static let linkNameField = 157..<257
    static let magicField = 257..<263
    static let versionField = 263..<265
    static let prefixField = 345..<500

    /// POSIX `ustar\0`; GNU's old format writes `ustar  \0` and uses the prefix area otherwise.
    static let posixMagic: [UInt8] = Array("ustar".utf8) + [0]

    /// The entry's path as stored: `prefix/name` for POSIX ustar, else the name field.
    let path: [UInt8]
    /// The typeflag byte (`0`, `5`, `x`, `L`, ...).
    let typeflag: UInt8
    /// Payload bytes that follow the header, before padding to a whole block.
    let size: Int
    /// The link target field (for reporting refused links only).
    let linkName: [UInt8]
    /// Where this header starts in the archive, in bytes.
    let offset: Int
    private let block: ArraySlice<UInt8>

    /// Parses and checks the header at `block` (512 bytes) found at byte `offset`.
    init(decoding block: ArraySlice<UInt8>, at offset: Int) throws(ArchiveError) {
        precondition(block.count == Self.blockByteCount, "a tar header is one 512-byte block")
        self.block = block
        self.offset = offset
        let stored = try Self.number(in: block, field: Self.checksumField, named: "checksum", at: offset)
        let (unsigned, signed) = Self.checksums(of: block)
        guard stored == unsigned || stored == signed else {
            throw .corruptTar(offset: offset, reason: "header checksum is \(stored), computed \(unsigned)")
        }
        let size = try Self.number(in: block, field: Self.sizeField, named: "size", at: offset)
        guard size >= 0 else { throw .corruptTar(offset: offset, reason: "negative entry size \(size)") }
        self.size = size
        self.typeflag = block[block.startIndex + Self.typeflagIndex]
        self.linkName = Self.string(in: block, field: Self.linkNameField)
        let name = Self.string(in: block, field: Self.nameField)
        let magic = Array(Self.slice(block, Self.magicField))
        let prefix = magic == Self.posixMagic ? Self.string(in: block, field: Self.prefixField) : []
        self.path = prefix.isEmpty ? name : prefix + [UInt8(ascii: "/")] + name
    }

    /// Permission bits, masked to `0o7777` (old archives also store the file-type bits here).
    func mode() throws(ArchiveError) -> UInt32 {
        let raw = try Self.number(in: block, field: Self.modeField, named: "mode", at: offset)
        return UInt32(truncatingIfNeeded: raw & 0o7777)
    }

    /// Modification time in seconds since the Unix epoch.
    func modificationTime() throws(ArchiveError) -> Int {
        try Self.number(in: block, field: Self.modificationTimeField, named: "mtime", at: offset)
    }

    /// True when all 512 bytes are zero: the end-of-archive marker.
    static func isZeroBlock(_ block: ArraySlice<UInt8>) -> Bool {
        block.withUnsafeBufferPointer { raw in
            var bits: UInt8 = 0
            for byte in raw { bits |= byte }
            return bits == 0
        }
    }

    /// Encodes one header. `path` must already be split into `name` (≤ 100 bytes) and
    /// `prefix` (≤ 155 bytes); `mode` is masked to `0o7777`.
    static func encode(
        name: [UInt8],
        prefix: [UInt8],
        typeflag: UInt8,
        mode: UInt32,
        size: Int,
        modificationTime: Int
    ) -> [UInt8] {
        precondition(name.count <= nameField.count && prefix.count <= prefixField.count)
        var block = [UInt8](repeating: 0, count: blockByteCount)
        block.replaceSubrange(nameField.lowerBound..<(nameField.lowerBound + name.count), with: name)
        put(Int(mode & 0o7777), into: &block, field: modeField)
        put(0, into: &block, field: uidField)
        put(0, into: &block, field: gidField)
        put(size, into: &block, field: sizeField)
        put(modificationTime, into: &block, field: modificationTimeField)
        block[typeflagIndex] = typeflag
        block.replaceSubrange(magicField, with: posixMagic)
        block.replaceSubrange(versionField, with: Array("00".utf8))
        block.replaceSubrange(prefixField.lowerBound..<(prefixField.lowerBound + prefix.count), with: prefix)
        let (checksum, _) = checksums(of: block[...])
        // Six octal digits, NUL, space: the form every tar reader accepts.
        let digits = Array(String(checksum, radix: 8).utf8)
        var field = [UInt8](repeating: UInt8(ascii: "0"), count: 6 - digits.count) + digits
        field += [0, UInt8(ascii: " ")]
        block.replaceSubrange(checksumField, with: field)
        return block
    }

    // MARK: - Fields

    private static func slice(_ block: ArraySlice<UInt8>, _ field: Range<Int>) -> ArraySlice<UInt8> {
        block[(block.startIndex + field.lowerBound)..<(block.startIndex + field.upperBound)]
    }

    /// The field's bytes up to its first NUL.
    private static func string(in block: ArraySlice<UInt8>, field: Range<Int>) -> [UInt8] {
        Array(slice(block, field).prefix { $0 != 0 })
    }

    /// Unsigned and signed byte sums of `block`, checksum field counted as spaces.
    private static func checksums(of block: ArraySlice<UInt8>) -> (unsigned: Int, signed: Int) {
        block.withUnsafeBufferPointer { raw in
            let spaces = checksumField.count * Int(UInt8(ascii: " "))
            var unsigned = spaces
            var signed = spaces
            for index in raw.indices where index < checksumField.lowerBound || index >= checksumField.upperBound {
                unsigned += Int(raw[index])
                signed += Int(Int8(bitPattern: raw[index]))
            }
            return (unsigned, signed)
        }
    }

    /// Writes `value` as zero-padded octal plus NUL, or as base-256 when octal cannot hold it.
    private static func put(_ value: Int, into block: inout [UInt8], field: Range<Int>) {
        let digitCount = field.count - 1
        let octal = Array(String(value, radix: 8).utf8)
        if value >= 0, octal.count <= digitCount {
            let padded = [UInt8](repeating: UInt8(ascii: "0"), count: digitCount - octal.count) + octal + [0]
            block.replaceSubrange(field, with: padded)
            return
        }
        var remaining = value
        for index in field.reversed() {
            block[index] = UInt8(truncatingIfNeeded: remaining)
            remaining >>= 8
        }
        block[field.lowerBound] = value < 0 ? 0xff : 0x80
    }

    /// Reads a numeric field: octal (optionally space-padded, NUL/space-terminated; empty is 0)
    /// or GNU base-256.
    private static func number(
        in block: ArraySlice<UInt8>,
        field: Range<Int>,
        named name: String,
        at offset: Int
    ) throws(ArchiveError) -> Int {
        let bytes = slice(block, field)
        guard let first = bytes.first else { return 0 }
        if first & 0x80 != 0 {
            return try base256(bytes, named: name, at: offset)
        }
        var value = 0
        var sawDigit = false
        var sawTrailingSpace = false
        for byte in bytes.prefix(while: { $0 != 0 }) {
            if byte == UInt8(ascii: " ") {
                sawTrailingSpace = sawDigit
                continue
            }
            guard !sawTrailingSpace, byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "7") else {
                throw .corruptTar(offset: offset, reason: "\(name) field is not octal")
            }
            // At most 12 octal digits (36 bits) fit a field, so this cannot overflow.
            value = value * 8 + Int(byte - UInt8(ascii: "0"))
            sawDigit = true
        }
        return value
    }

    private static func base256(_ bytes: ArraySlice<UInt8>, named name: String, at offset: Int) throws(ArchiveError) -> Int {
        let negative = bytes[bytes.startIndex] & 0x40 != 0
        var value = negative ? -1 : 0
        for (index, byte) in bytes.enumerated() {
            let bits = index == 0 && !negative ? byte & 0x7f : byte
            guard value >= Int.min >> 8, value <= Int.max >> 8 else {
                throw .corruptTar(offset: offset, reason: "\(name) field overflows 64 bits")
            }
            value = (value << 8) | Int(bits)
        }
        return value
    }
}
