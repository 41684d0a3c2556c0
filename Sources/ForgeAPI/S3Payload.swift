// Reads an S3 request's body the way its signature says it was sent: plain bytes whose SHA-256
// must be the signed `X-Amz-Content-SHA256` (or `UNSIGNED-PAYLOAD`), or an aws-chunked body
// (`STREAMING-…`) whose chunk signatures and trailers are checked as it is decoded. Checksums
// the client declared (`x-amz-checksum-*` in a header or trailer, `Content-MD5`) are checked
// once the body is in.
import ForgeSigning
import Foundation
import NIOCore

/// The payload of one S3 request, read once.
struct S3Payload {
    private enum Coding {
        case plain(expectedSHA256: String?)
        case chunked(AWSChunkedDecoder, decodedLength: Int?)
    }

    private var coding: Coding
    private let fields: SignableRequest
    private(set) var digests: UploadDigests

    /// Decides how to read the body of `request` (verified with `verified`, nil when the
    /// server checks no signature).
    init(_ request: SignableRequest, verified: VerifiedSignature?) throws(S3Error) {
        fields = request
        let claimed = request.value("x-amz-content-sha256")
        switch claimed {
        case nil, SigV4.unsignedPayload?:
            coding = .plain(expectedSHA256: nil)
        case "STREAMING-UNSIGNED-PAYLOAD-TRAILER"?:
            coding = .chunked(AWSChunkedDecoder(signing: nil), decodedLength: nil)
        case "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"?, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"?:
            coding = .chunked(AWSChunkedDecoder(signing: verified.map(ChunkSigningContext.init),
                                                signedTrailer: claimed?.hasSuffix("-TRAILER") == true), decodedLength: nil)
        case let hash? where hash.utf8.count == 64 && hash.utf8.allSatisfy(AuthorizationHeader.isLowerHex):
            coding = .plain(expectedSHA256: hash)
        case let other?:
            throw S3Error(400, "InvalidArgument", "x-amz-content-sha256 '\(other.prefix(64))' is not a SHA-256, UNSIGNED-PAYLOAD or a STREAMING- mode Forge reads")
        }
        if case .chunked(let decoder, _) = coding {
            let length = request.value("x-amz-decoded-content-length").flatMap(Int.init)
            coding = .chunked(decoder, decodedLength: length)
        }
        digests = UploadDigests(checksum: S3Payload.checksumAlgorithm(request))
    }

    /// The checksum the client asks for: a header value, a trailer it announces, or the SDK's
    /// algorithm header (then computed only to be echoed).
    static func checksumAlgorithm(_ request: SignableRequest) -> S3ChecksumAlgorithm? {
        if let field = request.fields.first(where: { S3ChecksumAlgorithm(fieldName: $0.name) != nil }) {
            return S3ChecksumAlgorithm(fieldName: field.name)
        }
        if let trailer = request.value("x-amz-trailer"), let algorithm = S3ChecksumAlgorithm(fieldName: trailer.trimmingCharacters(in: .whitespaces)) {
            return algorithm
        }
        return (request.value("x-amz-sdk-checksum-algorithm") ?? request.value("x-amz-checksum-algorithm"))
            .flatMap { S3ChecksumAlgorithm(rawValue: $0.uppercased()) }
    }

    /// Reads the whole body, handing decoded bytes to `sink`; then checks the payload hash,
    /// the decoded length and the declared checksums. Returns the body's hex MD5 and the
    /// checksum value, if any.
    mutating func read<Body: AsyncSequence>(_ body: Body, into sink: ([UInt8]) async throws -> Void) async throws(S3Error)
        -> (md5: String, checksum: String?)
    where Body.Element == ByteBuffer {
        do {
            for try await buffer in body {
                let bytes = Array(buffer.readableBytesView)
                switch coding {
                case .plain:
                    digests.update(bytes[...])
                    try await sink(bytes)
                case .chunked(var decoder, let length):
                    var digests = self.digests
                    var decoded = [UInt8]()
                    try decoder.feed(bytes) { piece in
                        digests.update(piece)
                        decoded += piece
                    }
                    self.digests = digests
                    coding = .chunked(decoder, decodedLength: length)
                    if !decoded.isEmpty { try await sink(decoded) }
                }
            }
        } catch let error as S3Error {
            throw error
        } catch let error as AWSChunkedError {
            throw S3Payload.translate(error)
        } catch {
            throw S3Error(400, "IncompleteBody", "the request body could not be read: \(error)")
        }
        let (md5, sha256, checksum) = digests.finish()
        var trailers = [String: String]()
        switch coding {
        case .plain(let expected):
            if let expected, expected != sha256 {
                throw S3Error(400, "XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not match what was computed.",
                              [("ClientComputedContentSHA256", expected), ("S3ComputedContentSHA256", sha256)])
            }
        case .chunked(let decoder, let length):
            do {
                try decoder.finish()
            } catch {
                throw S3Payload.translate(error)
            }
            if let length, length != decoder.decodedByteCount {
                throw S3Error(400, "IncompleteBody", "X-Amz-Decoded-Content-Length says \(length) bytes; the body decoded to \(decoder.decodedByteCount)")
            }
            trailers = decoder.trailers
        }
        if let algorithm = digests.checksum?.algorithm, let computed = checksum,
           let declared = fields.value(algorithm.fieldName) ?? trailers[algorithm.fieldName], declared != computed {
            throw S3Error(400, "BadDigest", "The \(algorithm.rawValue) you specified did not match the calculated checksum.")
        }
        if let declared = fields.value("content-md5"), declared != Data(S3Store.bytes(fromHex: md5)).base64EncodedString() {
            throw S3Error(400, "BadDigest", "The Content-MD5 you specified did not match what we received.")
        }
        return (md5, checksum)
    }

    /// The whole body in memory (request documents: DeleteObjects, CompleteMultipartUpload).
    mutating func collect<Body: AsyncSequence>(_ body: Body, limit: Int = 4 << 20) async throws(S3Error) -> [UInt8] where Body.Element == ByteBuffer {
        var bytes = [UInt8]()
        _ = try await read(body) { piece throws(S3Error) in
            bytes += piece
            guard bytes.count <= limit else { throw S3Error(400, "MaxMessageLengthExceeded", "the request document is larger than \(limit) bytes") }
        }
        return bytes
    }

    static func translate(_ error: AWSChunkedError) -> S3Error {
        switch error {
        case .chunkSignatureMismatch, .trailerSignatureMismatch:
            return S3Error(403, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided: \(error)")
        case .malformed, .incomplete:
            return S3Error(400, "IncompleteBody", error.description)
        }
    }
}
