// aws-chunked bodies: AWS's published signed example (66,560 bytes of 'a' in chunks of 64 KiB
// and 1 KiB, seed signature 4f232c43…), the unsigned-trailer body boto3 sends over https, and
// a fuzz run of corrupted bodies that must decode or throw, never crash.
import Crypto
import Foundation
@testable import ForgeSigning
import ForgeTestSupport
import Testing

@Suite struct AWSChunkedDecoderTests {
    static let key = AccessKey(id: "AKIAIOSFODNN7EXAMPLE", secret: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    static let signatures = ["ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
                             "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
                             "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"]

    /// The example's seed request, as the verifier sees it.
    static func seedRequest() -> SignableRequest {
        let header = "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
            + "SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class, "
            + "Signature=4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
        return SignableRequest(method: "PUT", target: "/examplebucket/chunkObject.txt", fields: [
            .init(name: "Host", value: "s3.amazonaws.com"), .init(name: "x-amz-date", value: "20130524T000000Z"),
            .init(name: "x-amz-storage-class", value: "REDUCED_REDUNDANCY"), .init(name: "Authorization", value: header),
            .init(name: "x-amz-content-sha256", value: "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"), .init(name: "Content-Encoding", value: "aws-chunked"),
            .init(name: "x-amz-decoded-content-length", value: "66560"), .init(name: "Content-Length", value: "66824"),
        ])
    }

    static func body(signatures: [String] = signatures) -> [UInt8] {
        var body = [UInt8]()
        for (size, signature) in zip([65536, 1024, 0], signatures) {
            body += Array("\(String(size, radix: 16));chunk-signature=\(signature)\r\n".utf8) + [UInt8](repeating: UInt8(ascii: "a"), count: size) + Array("\r\n".utf8)
        }
        return body
    }

    static func verified() throws -> VerifiedSignature {
        let now = try #require(AmzDate(parsing: "20130524T000000Z")).date
        return try SigV4Verifier(keys: AccessKeyStore([key])).verify(seedRequest(), bodySHA256: nil, now: now)
    }

    @Test func awsSignedExampleDecodesInPiecesOfAnySize() throws {
        let verified = try Self.verified()
        #expect(verified.payloadHash == "STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
        let body = Self.body()
        for piece in [1, 7, 4096, body.count] {
            var decoder = AWSChunkedDecoder(signing: ChunkSigningContext(verified))
            var output = [UInt8]()
            var offset = 0
            while offset < body.count {
                try decoder.feed(body[offset..<min(body.count, offset + piece)]) { output += $0 }
                offset += piece
            }
            try decoder.finish()
            #expect(output == [UInt8](repeating: UInt8(ascii: "a"), count: 66560), "pieces of \(piece)")
            #expect(decoder.decodedByteCount == 66560)
        }
    }

    @Test func aChangedChunkOrSignatureIsRefused() throws {
        let context = ChunkSigningContext(try Self.verified())
        var changed = Self.body()
        changed[100] = UInt8(ascii: "b")
        var decoder = AWSChunkedDecoder(signing: context)
        #expect(throws: AWSChunkedError.chunkSignatureMismatch(index: 0)) { try decoder.feed(changed) { _ in } }
        var swapped = Self.signatures
        swapped.swapAt(1, 2)
        decoder = AWSChunkedDecoder(signing: context)
        #expect(throws: AWSChunkedError.chunkSignatureMismatch(index: 1)) { try decoder.feed(Self.body(signatures: swapped)) { _ in } }
        // Unsigned chunks where signatures are required.
        decoder = AWSChunkedDecoder(signing: context)
        #expect(throws: AWSChunkedError.self) { try decoder.feed(Array("b\r\nhello world\r\n0\r\n\r\n".utf8)) { _ in } }
        // Truncated: not complete.
        decoder = AWSChunkedDecoder(signing: context)
        try decoder.feed(Self.body().dropLast(10)) { _ in }
        #expect(throws: AWSChunkedError.incomplete) { try decoder.finish() }
    }

    /// boto3's https PutObject of `hello world`, with its CRC32 trailer (aws-faces.md §3).
    @Test func unsignedPayloadWithTrailer() throws {
        var decoder = AWSChunkedDecoder(signing: nil)
        var output = [UInt8]()
        try decoder.feed(Array("b\r\nhello world\r\n0\r\nx-amz-checksum-crc32:DUoRhQ==\r\n\r\n".utf8)) { output += $0 }
        try decoder.finish()
        #expect(String(decoding: output, as: UTF8.self) == "hello world")
        #expect(decoder.trailers == ["x-amz-checksum-crc32": "DUoRhQ=="])
        var empty = AWSChunkedDecoder(signing: nil)
        try empty.feed(Array("0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n".utf8)) { _ in }
        try empty.finish()
        #expect(empty.decodedByteCount == 0)
    }

    @Test func signedTrailerChainsFromTheLastChunk() throws {
        let context = ChunkSigningContext(time: try #require(AmzDate(parsing: "20240101T000000Z")),
                                          scope: CredentialScope(date: "20240101", region: "us-east-1", service: "s3"),
                                          key: SymmetricKey(data: Array("k".utf8)), seedSignature: String(repeating: "0", count: 64))
        let data = Array("hello".utf8)
        let first = context.chunkSignature(previous: context.seedSignature, chunkSHA256: SigV4.hexSHA256(data))
        let last = context.chunkSignature(previous: first, chunkSHA256: SigV4.emptyPayloadHash)
        let trailer = context.trailerSignature(previous: last, trailerLines: "x-amz-checksum-crc32:NhCmhg==\n")
        let body = "5;chunk-signature=\(first)\r\nhello\r\n0;chunk-signature=\(last)\r\nx-amz-checksum-crc32:NhCmhg==\r\nx-amz-trailer-signature:\(trailer)\r\n\r\n"
        var decoder = AWSChunkedDecoder(signing: context, signedTrailer: true)
        try decoder.feed(Array(body.utf8)) { _ in }
        try decoder.finish()
        #expect(decoder.trailers == ["x-amz-checksum-crc32": "NhCmhg=="])
        var tampered = AWSChunkedDecoder(signing: context, signedTrailer: true)
        #expect(throws: AWSChunkedError.trailerSignatureMismatch) {
            try tampered.feed(Array(body.replacingOccurrences(of: "NhCmhg==", with: "AAAAAA==").utf8)) { _ in }
        }
    }

    @Test func fuzz() throws {
        let context = ChunkSigningContext(try Self.verified())
        let small = Array("b\r\nhello world\r\n5;x=y\r\nagain\r\n0\r\nx-amz-checksum-crc32:DUoRhQ==\r\n\r\n".utf8)
        let mutator = ByteMutator(interesting: Array("0123456789abcdef;=\r\n:-chunk-signature".utf8))
        let unsigned = mutator.fuzz("aws-chunked", valid: small, iterations: 20_000) { _, bytes throws(AWSChunkedError) in
            var decoder = AWSChunkedDecoder(signing: nil)
            do {
                try decoder.feed(bytes) { _ in }
            } catch let error as AWSChunkedError {
                throw error
            } catch {
                throw .malformed("\(error)")
            }
            try decoder.finish()
        }
        #expect(unsigned.decoded > 0 && unsigned.rejected > 0, "\(unsigned)")
        let signed = mutator.fuzz("aws-chunked signed", valid: Self.body(), iterations: 300) { _, bytes throws(AWSChunkedError) in
            var decoder = AWSChunkedDecoder(signing: context)
            do {
                try decoder.feed(bytes) { _ in }
            } catch let error as AWSChunkedError {
                throw error
            } catch {
                throw .malformed("\(error)")
            }
            try decoder.finish()
        }
        #expect(signed.rejected > 0)
    }
}
