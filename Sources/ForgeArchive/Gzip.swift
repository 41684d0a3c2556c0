// gzip (RFC 1952) compression and decompression of whole buffers through zlib.
import CZlib

/// Whole-buffer gzip through zlib. Stateless; every call owns its own `z_stream`.
public enum Gzip {
    /// Returns the gzip stream of `bytes` (compression level 1–9, default 6).
    public static func compress(_ bytes: [UInt8], level: Int32 = 6) throws(ArchiveError) -> [UInt8] {
        var stream = z_stream()
        // windowBits 15 + 16 asks zlib for a gzip header and trailer.
        let initCode = deflateInit2_(&stream, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY,
                                     ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
        guard initCode == Z_OK else { throw .zlib(call: "deflateInit2", code: initCode, message: "") }
        defer { deflateEnd(&stream) }
        let bound = Int(deflateBound(&stream, UInt(bytes.count)))
        var output = [UInt8](repeating: 0, count: bound)
        var code: Int32 = Z_OK
        let produced = bytes.withUnsafeBufferPointer { input in
            output.withUnsafeMutableBufferPointer { out -> Int in
                stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress)
                stream.avail_in = uInt(input.count)
                stream.next_out = out.baseAddress
                stream.avail_out = uInt(out.count)
                code = deflate(&stream, Z_FINISH)
                return out.count - Int(stream.avail_out)
            }
        }
        guard code == Z_STREAM_END else {
            throw .zlib(call: "deflate", code: code, message: message(of: stream))
        }
        output.removeSubrange(produced...)
        return output
    }

    /// True when `bytes` starts with the gzip magic number.
    public static func isGzip(_ bytes: [UInt8]) -> Bool {
        bytes.count >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b
    }

    /// Decompresses a gzip stream (several concatenated members are read as one).
    /// Throws `corruptGzip` for anything that is not a complete, valid stream.
    public static func decompress(_ bytes: [UInt8]) throws(ArchiveError) -> [UInt8] {
        guard isGzip(bytes) else { throw .corruptGzip(reason: "missing gzip magic bytes 1f 8b") }
        var stream = z_stream()
        let initCode = inflateInit2_(&stream, 15 + 16, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
        guard initCode == Z_OK else { throw .zlib(call: "inflateInit2", code: initCode, message: "") }
        defer { inflateEnd(&stream) }
        var output = [UInt8]()
        output.reserveCapacity(max(bytes.count * 4, 1 << 16))
        var chunk = [UInt8](repeating: 0, count: 1 << 18)
        var consumed = 0
        while true {
            var code: Int32 = Z_OK
            var produced = 0
            bytes.withUnsafeBufferPointer { input in
                chunk.withUnsafeMutableBufferPointer { out in
                    stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress.map { $0 + consumed })
                    stream.avail_in = uInt(input.count - consumed)
                    stream.next_out = out.baseAddress
                    stream.avail_out = uInt(out.count)
                    code = inflate(&stream, Z_NO_FLUSH)
                    produced = out.count - Int(stream.avail_out)
                    consumed = input.count - Int(stream.avail_in)
                }
            }
            output.append(contentsOf: chunk[0..<produced])
            switch code {
            case Z_OK:
                continue
            case Z_STREAM_END:
                // A further member may follow (as `cat a.gz b.gz` makes); trailing zeros are padding.
                let rest = bytes[consumed...]
                if rest.allSatisfy({ $0 == 0 }) { return output }
                guard rest.count >= 2, rest[rest.startIndex] == 0x1f, rest[rest.startIndex + 1] == 0x8b else {
                    throw .corruptGzip(reason: "\(rest.count) bytes of garbage after the gzip stream")
                }
                inflateReset(&stream)
            case Z_BUF_ERROR where produced == 0:
                throw .corruptGzip(reason: "stream ends early (truncated file?)")
            case Z_BUF_ERROR:
                continue
            default:
                throw .corruptGzip(reason: "\(message(of: stream)) (zlib code \(code))")
            }
        }
    }

    private static func message(of stream: z_stream) -> String {
        guard let msg = stream.msg else { return "no message" }
        return String(cString: msg)
    }
}
