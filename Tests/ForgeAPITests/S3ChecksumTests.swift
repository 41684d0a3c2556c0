// Checksums against their published check values, and the byte-range forms S3 accepts.
@testable import ForgeAPI
import Testing

@Suite struct S3ChecksumTests {
    func value(_ algorithm: S3ChecksumAlgorithm, _ text: String, split: Int = 3) -> String {
        var checksum = S3Checksum(algorithm)
        let bytes = Array(text.utf8)
        checksum.update(bytes[..<min(split, bytes.count)])
        checksum.update(bytes[min(split, bytes.count)...])
        return checksum.value
    }

    @Test func knownValues() {
        // CRC-32 of "hello world" as boto3 sends it; "123456789" is the CRC catalogue's check input.
        #expect(value(.crc32, "hello world") == "DUoRhQ==")
        #expect(value(.crc32, "") == "AAAAAA==")
        #expect(value(.crc32, "123456789") == "y/Q5Jg==")  // 0xCBF43926
        #expect(value(.crc32c, "123456789") == "4waSgw==")  // 0xE3069283
        #expect(value(.sha256, "") == "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=")
        #expect(value(.sha1, "abc") == "qZk+NkcGgWq6PiVxeFDCbJzQ2J0=")
        #expect(S3ChecksumAlgorithm(fieldName: "X-Amz-Checksum-CRC32C") == .crc32c)
    }

    @Test(arguments: [
        ("bytes=0-4", 11, [0, 4]), ("bytes=6-", 11, [6, 10]), ("bytes=-3", 11, [8, 10]), ("bytes=-30", 11, [0, 10]),
        ("bytes=5-100", 11, [5, 10]), ("bytes=4-2", 11, nil), ("bytes=0-1,3-4", 11, nil), ("items=0-1", 11, nil),
    ])
    func ranges(_ text: String, size: Int, expected: [Int]?) throws {
        let range = try S3API.byteRange(text, size: size)
        #expect(range.map { [$0.0, $0.1] } == expected)
    }

    @Test func rangesPastTheEndAreUnsatisfiable() {
        #expect(throws: S3Error.self) { try S3API.byteRange("bytes=11-", size: 11) }
        #expect(throws: S3Error.self) { try S3API.byteRange("bytes=-1", size: 0) }
    }
}
