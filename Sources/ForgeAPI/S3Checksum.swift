// The checksums S3 clients attach to uploads (`x-amz-checksum-crc32` and its siblings, in a
// header or an aws-chunked trailer), computed as the body streams past, and the digests every
// upload needs (MD5 for the ETag, SHA-256 for the signed payload hash).
import CZlib
import Crypto
import ForgeSigning
import Foundation

/// A flexible-checksum algorithm of S3.
enum S3ChecksumAlgorithm: String, Sendable, CaseIterable {
    case crc32 = "CRC32"
    case crc32c = "CRC32C"
    case sha1 = "SHA1"
    case sha256 = "SHA256"

    /// `x-amz-checksum-crc32`, ….
    var fieldName: String { "x-amz-checksum-\(rawValue.lowercased())" }

    init?(fieldName: String) {
        guard let found = S3ChecksumAlgorithm.allCases.first(where: { $0.fieldName == fieldName.lowercased() }) else { return nil }
        self = found
    }
}

/// One running checksum; `value` is its base64 text as S3 writes it.
struct S3Checksum {
    let algorithm: S3ChecksumAlgorithm
    private var crc: UInt32 = 0
    private var sha1 = Insecure.SHA1()
    private var sha256 = SHA256()

    init(_ algorithm: S3ChecksumAlgorithm) {
        self.algorithm = algorithm
    }

    mutating func update(_ bytes: ArraySlice<UInt8>) {
        switch algorithm {
        case .crc32:
            crc = bytes.withUnsafeBufferPointer { buffer in
                UInt32(CZlib.crc32(uLong(crc), buffer.baseAddress, uInt(buffer.count)))
            }
        case .crc32c:
            crc = CRC32C.update(crc, bytes)
        case .sha1:
            sha1.update(data: bytes)
        case .sha256:
            sha256.update(data: bytes)
        }
    }

    var value: String {
        switch algorithm {
        case .crc32, .crc32c:
            return Data([UInt8(crc >> 24), UInt8(crc >> 16 & 0xFF), UInt8(crc >> 8 & 0xFF), UInt8(crc & 0xFF)]).base64EncodedString()
        case .sha1:
            return Data(sha1.finalize()).base64EncodedString()
        case .sha256:
            return Data(sha256.finalize()).base64EncodedString()
        }
    }
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), which zlib lacks.
enum CRC32C {
    static let table: [UInt32] = (0..<256).map { index in
        var value = UInt32(index)
        for _ in 0..<8 { value = value & 1 == 1 ? (value >> 1) ^ 0x82F6_3B78 : value >> 1 }
        return value
    }

    static func update(_ crc: UInt32, _ bytes: ArraySlice<UInt8>) -> UInt32 {
        var value = ~crc
        for byte in bytes { value = table[Int((value ^ UInt32(byte)) & 0xFF)] ^ (value >> 8) }
        return ~value
    }
}

/// The digests of one upload: MD5 (the ETag), SHA-256 (the signed payload hash) and the
/// client's checksum, if it names one.
struct UploadDigests {
    private var md5 = Insecure.MD5()
    private var sha256 = SHA256()
    private(set) var checksum: S3Checksum?
    private(set) var byteCount = 0

    init(checksum: S3ChecksumAlgorithm?) {
        self.checksum = checksum.map(S3Checksum.init)
    }

    mutating func update(_ bytes: ArraySlice<UInt8>) {
        md5.update(data: bytes)
        sha256.update(data: bytes)
        checksum?.update(bytes)
        byteCount += bytes.count
    }

    /// (hex MD5, hex SHA-256, checksum value).
    func finish() -> (md5: String, sha256: String, checksum: String?) {
        (SigV4.hex(md5.finalize()), SigV4.hex(sha256.finalize()), checksum?.value)
    }
}
