// Whole-file reads and writes through POSIX calls, with gzip handled transparently, so every
// reader sees plain bytes and every failure names the file and the OS's reason.
import ForgeArchive

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads and writes whole files as bytes. Stateless; each call opens and closes its own descriptor.
enum FileBytes {
    /// The bytes of the file at `path`, decompressed when the name ends in `.gz` or the bytes
    /// start with the gzip magic number.
    static func readDecompressed(_ path: String) throws(DataError) -> [UInt8] {
        try decompressIfGzip(try readFile(path), name: path)
    }

    /// `bytes`, decompressed when `name` ends in `.gz` or the bytes start with the gzip magic.
    static func decompressIfGzip(_ bytes: [UInt8], name: String) throws(DataError) -> [UInt8] {
        guard Gzip.isGzip(bytes) || name.hasSuffix(".gz") else { return bytes }
        do {
            return try Gzip.decompress(bytes)
        } catch {
            throw .corruptFile(file: name, reason: "\(error); check the download or re-create the file")
        }
    }

    /// The raw bytes of the file at `path`.
    static func readFile(_ path: String) throws(DataError) -> [UInt8] {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw .unreadable(file: path, reason: lastErrorText()) }
        defer { close(descriptor) }
        var info = stat()
        guard fstat(descriptor, &info) == 0 else { throw .unreadable(file: path, reason: lastErrorText()) }
        if (info.st_mode & S_IFMT) == S_IFDIR {
            throw .unreadable(file: path, reason: "it is a folder, not a file")
        }
        // st_size is a hint: the loop reads until end of file, growing the buffer if needed.
        var bytes = [UInt8](repeating: 0, count: max(Int(info.st_size), 0) + 1)
        var filled = 0
        while true {
            if filled == bytes.count { bytes.append(contentsOf: repeatElement(0, count: max(bytes.count, 1 << 16))) }
            let got = bytes.withUnsafeMutableBytes { buffer in
                read(descriptor, buffer.baseAddress.map { $0 + filled }, buffer.count - filled)
            }
            if got < 0 {
                if errno == EINTR { continue }
                throw .unreadable(file: path, reason: lastErrorText())
            }
            if got == 0 { break }
            filled += got
        }
        bytes.removeSubrange(filled...)
        return bytes
    }

    /// Creates or replaces the file at `path` with `bytes` (mode 0644).
    static func writeFile(_ bytes: [UInt8], to path: String) throws(DataError) {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw .unwritable(file: path, reason: lastErrorText()) }
        var written = 0
        while written < bytes.count {
            let put = bytes.withUnsafeBytes { buffer in
                write(descriptor, buffer.baseAddress.map { $0 + written }, buffer.count - written)
            }
            if put < 0 {
                if errno == EINTR { continue }
                let reason = lastErrorText()
                close(descriptor)
                throw .unwritable(file: path, reason: reason)
            }
            written += put
        }
        guard close(descriptor) == 0 else { throw .unwritable(file: path, reason: lastErrorText()) }
    }

    private static func lastErrorText() -> String {
        String(cString: strerror(errno))
    }
}
