// In-memory ustar writer and reader (with pax and GNU long-name support when reading).

/// Tar archives held in memory as `[UInt8]`.
///
/// The writer emits POSIX ustar: one 512-byte header per entry, the bytes padded to a whole
/// block, and two zero blocks at the end. Owner ids are 0 and names are empty, so the same
/// entries always give the same bytes. Names longer than 100 bytes are split at a `/` into
/// the 155-byte prefix field; longer ones are refused.
///
/// The reader also accepts what GNU tar and Python's `tarfile` write: pax extended headers
/// (`x`, whose `path`, `size` and `mtime` apply to the next entry; `g` is skipped), GNU long
/// names (`L`), and base-256 numbers. Only regular files and directories are returned;
/// links, devices and FIFOs are refused, as are names that could escape an extraction root.
public enum TarArchive {
    /// Bytes in a tar block.
    public static let blockByteCount = TarHeader.blockByteCount

    /// Encodes `entries` in order as a ustar archive.
    ///
    /// Throws `badEntryName` for an empty, absolute or `..`-containing name, or one that cannot
    /// be split into a 155-byte prefix and a 100-byte name; `unsupportedEntry` for a directory
    /// that carries bytes.
    public static func write(_ entries: [TarEntry]) throws(ArchiveError) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(entries.reduce(2 * blockByteCount) { $0 + blockByteCount + padded($1.bytes.count) })
        for entry in entries {
            let path = try TarPath.normalized(entry.name)
            if entry.kind == .directory, !entry.bytes.isEmpty {
                throw .unsupportedEntry(name: entry.name, reason: "a directory cannot carry \(entry.bytes.count) bytes")
            }
            let stored = Array(path.utf8) + (entry.kind == .directory ? [UInt8(ascii: "/")] : [])
            guard let fields = split(stored) else { throw .badEntryName(entry.name) }
            output += TarHeader.encode(
                name: fields.name,
                prefix: fields.prefix,
                typeflag: entry.kind == .directory ? UInt8(ascii: "5") : UInt8(ascii: "0"),
                mode: entry.mode,
                size: entry.bytes.count,
                modificationTime: entry.modificationTime
            )
            output += entry.bytes
            output += repeatElement(0, count: padded(entry.bytes.count) - entry.bytes.count)
        }
        output += repeatElement(0, count: 2 * blockByteCount)
        return output
    }

    /// Decodes every file and directory in a tar archive, in archive order.
    ///
    /// Throws `corruptTar` (with the byte offset of the bad header) for a bad checksum,
    /// non-octal field, size past the end, malformed pax record or missing end-of-archive
    /// block; `badEntryName` for an unsafe or non-UTF-8 name; `unsupportedEntry` for links,
    /// devices and other kinds.
    public static func read(_ bytes: [UInt8]) throws(ArchiveError) -> [TarEntry] {
        var entries: [TarEntry] = []
        var offset = 0
        var pax: [String: String] = [:]
        var longName: [UInt8]?
        while true {
            guard offset <= bytes.count - blockByteCount else {
                let reason = offset >= bytes.count
                    ? "archive ends without an end-of-archive block (truncated?)"
                    : "archive ends inside a header block (truncated?)"
                throw .corruptTar(offset: min(offset, bytes.count), reason: reason)
            }
            let block = bytes[offset..<(offset + blockByteCount)]
            if TarHeader.isZeroBlock(block) {
                guard pax.isEmpty, longName == nil else {
                    throw .corruptTar(offset: offset, reason: "extended header is not followed by an entry")
                }
                return entries
            }
            let header = try TarHeader(decoding: block, at: offset)
            let isMeta = [UInt8(ascii: "x"), UInt8(ascii: "g"), UInt8(ascii: "L"), UInt8(ascii: "K")]
                .contains(header.typeflag)
            let size = try isMeta ? header.size : paxSize(pax, default: header.size, at: offset)
            let dataStart = offset + blockByteCount
            guard size <= bytes.count - dataStart else {
                throw .corruptTar(
                    offset: offset,
                    reason: "entry size \(size) runs past the end of the archive (\(bytes.count - dataStart) bytes left)"
                )
            }
            let data = bytes[dataStart..<(dataStart + size)]
            offset = dataStart + padded(size)
            switch header.typeflag {
            case UInt8(ascii: "x"):
                pax.merge(try TarPaxRecords.parse(data, at: header.offset)) { _, new in new }
            case UInt8(ascii: "L"):
                longName = Array(data.prefix { $0 != 0 })
            case UInt8(ascii: "g"), UInt8(ascii: "K"):
                // Global pax defaults and GNU long link targets never change a file or directory.
                continue
            default:
                let entry = try entry(header, data: data, pax: pax, longName: longName)
                pax = [:]
                longName = nil
                if let entry { entries.append(entry) }
            }
        }
    }

    /// `write` followed by gzip compression at `level` (1–9).
    public static func writeGzipped(_ entries: [TarEntry], level: Int32 = 6) throws(ArchiveError) -> [UInt8] {
        try Gzip.compress(write(entries), level: level)
    }

    /// gzip decompression followed by `read`.
    public static func readGzipped(_ bytes: [UInt8]) throws(ArchiveError) -> [TarEntry] {
        try read(Gzip.decompress(bytes))
    }

    // MARK: - Reading helpers

    /// The entry `header` describes, or nil for the archive root (`./`).
    private static func entry(
        _ header: TarHeader,
        data: ArraySlice<UInt8>,
        pax: [String: String],
        longName: [UInt8]?
    ) throws(ArchiveError) -> TarEntry? {
        let rawPath: String
        if let paxPath = pax["path"], !paxPath.isEmpty {
            rawPath = paxPath
        } else {
            let pathBytes = longName ?? header.path
            guard let decoded = String(validating: pathBytes, as: UTF8.self) else {
                throw .badEntryName(String(decoding: pathBytes, as: UTF8.self))
            }
            rawPath = decoded
        }
        let kind: TarEntry.Kind
        switch header.typeflag {
        case 0 where rawPath.hasSuffix("/"):
            kind = .directory
        case 0, UInt8(ascii: "0"), UInt8(ascii: "7"):
            kind = .file
        case UInt8(ascii: "5"):
            kind = .directory
        default:
            throw .unsupportedEntry(name: rawPath, reason: describe(header))
        }
        let components = try TarPath.components(of: rawPath)
        if components.isEmpty {
            guard kind == .directory else { throw .badEntryName(rawPath) }
            return nil
        }
        var modificationTime = try header.modificationTime()
        if let paxTime = try paxTime(pax, at: header.offset) { modificationTime = paxTime }
        return TarEntry(
            name: components.joined(separator: "/"),
            kind: kind,
            mode: try header.mode(),
            modificationTime: modificationTime,
            bytes: kind == .file ? Array(data) : []
        )
    }

    private static func paxSize(_ pax: [String: String], default size: Int, at offset: Int) throws(ArchiveError) -> Int {
        guard let text = pax["size"] else { return size }
        guard let value = Int(text), value >= 0 else {
            throw .corruptTar(offset: offset, reason: "pax size '\(text)' is not a byte count")
        }
        return value
    }

    /// The whole seconds of a pax `mtime` (which may carry a fraction), or nil when absent.
    private static func paxTime(_ pax: [String: String], at offset: Int) throws(ArchiveError) -> Int? {
        guard let text = pax["mtime"] else { return nil }
        let seconds = text.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)[0]
        guard let value = Int(seconds) else {
            throw .corruptTar(offset: offset, reason: "pax mtime '\(text)' is not a time")
        }
        return value
    }

    private static func describe(_ header: TarHeader) -> String {
        let target = String(decoding: header.linkName, as: UTF8.self)
        switch header.typeflag {
        case UInt8(ascii: "1"): return "a hard link to '\(target)'; only files and directories are supported"
        case UInt8(ascii: "2"): return "a symbolic link to '\(target)'; only files and directories are supported"
        case UInt8(ascii: "3"): return "a character device; only files and directories are supported"
        case UInt8(ascii: "4"): return "a block device; only files and directories are supported"
        case UInt8(ascii: "6"): return "a FIFO; only files and directories are supported"
        default: return "unknown typeflag \(header.typeflag); only files and directories are supported"
        }
    }

    // MARK: - Writing helpers

    /// `count` rounded up to a whole number of blocks.
    private static func padded(_ count: Int) -> Int {
        (count + blockByteCount - 1) / blockByteCount * blockByteCount
    }

    /// Splits a stored path into (prefix, name) fields: the whole path as the name when it fits
    /// in 100 bytes, else at the last `/` that leaves a prefix of at most 155 bytes and a
    /// non-empty name of at most 100. Nil when no such `/` exists.
    private static func split(_ path: [UInt8]) -> (prefix: [UInt8], name: [UInt8])? {
        let nameLimit = TarHeader.nameField.count
        let prefixLimit = TarHeader.prefixField.count
        if path.count <= nameLimit { return ([], path) }
        for index in stride(from: min(prefixLimit, path.count - 2), through: 1, by: -1)
        where path[index] == UInt8(ascii: "/") {
            let nameCount = path.count - index - 1
            // Walking left only lengthens the name, so the first `/` with too long a name ends the search.
            guard nameCount <= nameLimit else { return nil }
            return (Array(path[..<index]), Array(path[(index + 1)...]))
        }
        return nil
    }
}
