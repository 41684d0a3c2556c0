// The aws-chunked content coding of S3 uploads (`Content-Encoding: aws-chunked`), decoded
// incrementally as the body arrives. Framing, after HTTP's own chunking is undone:
//   <hex size>[;chunk-signature=<64 hex>]\r\n <size bytes>\r\n   … repeated, then
//   0[;chunk-signature=…]\r\n  [name:value\r\n …]  \r\n
// The trailer lines carry checksums (`x-amz-checksum-crc32:…`) and, for signed trailers,
// `x-amz-trailer-signature`. With `STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]` each chunk's
// signature chains from the previous one (the first from the request's signature):
//   HMAC(kSigning, "AWS4-HMAC-SHA256-PAYLOAD\n" time \n scope \n previous \n SHA256("") \n SHA256(chunk))
// and the trailer's from the last chunk's:
//   HMAC(kSigning, "AWS4-HMAC-SHA256-TRAILER\n" time \n scope \n previous \n SHA256(trailer lines))
// where the trailer lines are `name:value\n` each, in the order sent.
import Crypto
import Foundation

/// Why an aws-chunked body was refused.
public enum AWSChunkedError: Error, Equatable, Sendable, CustomStringConvertible {
    case malformed(String)
    /// Chunk `index` (from 0) carries a signature that does not match.
    case chunkSignatureMismatch(index: Int)
    case trailerSignatureMismatch
    /// The body ended before the final chunk and its empty line.
    case incomplete

    public var description: String {
        switch self {
        case .malformed(let reason): return "malformed aws-chunked body: \(reason)"
        case .chunkSignatureMismatch(let index): return "the signature of chunk \(index) does not match"
        case .trailerSignatureMismatch: return "the trailer signature does not match"
        case .incomplete: return "the aws-chunked body ended before its final chunk"
        }
    }
}

/// What chunk signatures are checked against: the request's verified signature and key.
public struct ChunkSigningContext: Sendable {
    public let time: AmzDate
    public let scope: CredentialScope
    let keyBytes: [UInt8]
    /// The request's own signature: the "previous" signature of the first chunk.
    public let seedSignature: String

    public init(time: AmzDate, scope: CredentialScope, key: SymmetricKey, seedSignature: String) {
        self.time = time
        self.scope = scope
        self.keyBytes = key.withUnsafeBytes { Array($0) }
        self.seedSignature = seedSignature
    }

    public init(_ verified: VerifiedSignature) {
        self.init(time: verified.time, scope: verified.scope, key: verified.signingKey, seedSignature: verified.signature)
    }

    var key: SymmetricKey { SymmetricKey(data: keyBytes) }

    /// The signature of a chunk whose data hashes to `chunkSHA256`, following `previous`.
    public func chunkSignature(previous: String, chunkSHA256: String) -> String {
        let text = "AWS4-HMAC-SHA256-PAYLOAD\n\(time)\n\(scope)\n\(previous)\n\(SigV4.emptyPayloadHash)\n\(chunkSHA256)"
        return SigV4.signature(key: key, stringToSign: text)
    }

    /// The signature of trailer lines (`name:value\n` each), following `previous`.
    public func trailerSignature(previous: String, trailerLines: String) -> String {
        let text = "AWS4-HMAC-SHA256-TRAILER\n\(time)\n\(scope)\n\(previous)\n\(SigV4.hexSHA256(Array(trailerLines.utf8)))"
        return SigV4.signature(key: key, stringToSign: text)
    }
}

/// Decodes one aws-chunked body fed in pieces of any size.
///
/// Concurrency: a value confined to the task reading the body.
public struct AWSChunkedDecoder {
    /// The longest chunk this decoder accepts, in bytes (clients send 64 KiB to 1 MiB).
    public static let largestChunk = 64 << 20
    static let longestLine = 4096

    private enum State {
        case sizeLine
        case data(remaining: Int)
        case dataEnd
        case trailer
        case done
    }

    private let signing: ChunkSigningContext?
    private let signedTrailer: Bool
    private var sawTrailerSignature = false
    private var state = State.sizeLine
    private var line = [UInt8]()
    private var chunkIndex = 0
    private var declaredSignature: String?
    private var previousSignature: String
    private var chunkHash = SHA256()
    private var trailerText = ""
    /// Trailer fields as sent (names lowercase), without `x-amz-trailer-signature`.
    public private(set) var trailers: [String: String] = [:]
    /// Decoded payload bytes so far.
    public private(set) var decodedByteCount = 0

    /// `signing` requires and checks chunk signatures (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD…`);
    /// nil decodes without checking (`STREAMING-UNSIGNED-PAYLOAD-TRAILER`, or a server with no
    /// keys). `signedTrailer` (`…-PAYLOAD-TRAILER`) also requires a trailer signature.
    public init(signing: ChunkSigningContext?, signedTrailer: Bool = false) {
        self.signing = signing
        self.signedTrailer = signedTrailer && signing != nil
        self.previousSignature = signing?.seedSignature ?? ""
    }

    /// True once the final chunk and the trailer section have been read.
    public var isComplete: Bool {
        if case .done = state { return true }
        return false
    }

    /// Feeds the next piece of the body; `emit` receives decoded payload bytes in order.
    public mutating func feed(_ bytes: some Collection<UInt8>, emit: (ArraySlice<UInt8>) throws -> Void) throws {
        let input = Array(bytes)
        var index = 0
        while index < input.count {
            switch state {
            case .sizeLine, .dataEnd, .trailer:
                let byte = input[index]
                index += 1
                if byte == UInt8(ascii: "\n") {
                    guard line.last == UInt8(ascii: "\r") else { throw AWSChunkedError.malformed("a line ends without CR LF") }
                    let text = line.dropLast()
                    line.removeAll(keepingCapacity: true)
                    try endLine(text)
                } else {
                    line.append(byte)
                    guard line.count <= AWSChunkedDecoder.longestLine else { throw AWSChunkedError.malformed("a line is longer than \(AWSChunkedDecoder.longestLine) bytes") }
                }
            case .data(let remaining):
                let take = min(remaining, input.count - index)
                let slice = input[index..<index + take]
                chunkHash.update(data: slice)
                decodedByteCount += take
                try emit(slice)
                index += take
                if take == remaining {
                    try finishChunk()
                    state = .dataEnd
                } else {
                    state = .data(remaining: remaining - take)
                }
            case .done:
                throw AWSChunkedError.malformed("bytes follow the final chunk")
            }
        }
    }

    /// Ends the body; throws unless it was complete.
    public func finish() throws(AWSChunkedError) {
        guard isComplete else { throw .incomplete }
    }

    private mutating func endLine(_ text: ArraySlice<UInt8>) throws {
        switch state {
        case .sizeLine:
            let parts = text.split(separator: UInt8(ascii: ";"), maxSplits: 1, omittingEmptySubsequences: false)
            let hex = parts[0]
            guard !hex.isEmpty, hex.count <= 16, hex.allSatisfy({ PercentEncoding.hexValue($0) != nil }) else {
                throw AWSChunkedError.malformed("chunk size '\(String(decoding: hex.prefix(20), as: UTF8.self))' is not hex")
            }
            let size = hex.reduce(0) { $0 * 16 + Int(PercentEncoding.hexValue($1) ?? 0) }
            guard size <= AWSChunkedDecoder.largestChunk else { throw AWSChunkedError.malformed("a chunk of \(size) bytes is larger than \(AWSChunkedDecoder.largestChunk)") }
            declaredSignature = nil
            if parts.count > 1 {
                let extensionText = String(decoding: parts[1], as: UTF8.self)
                for item in extensionText.split(separator: ";") where item.hasPrefix("chunk-signature=") {
                    declaredSignature = String(item.dropFirst("chunk-signature=".count))
                }
            }
            if signing != nil, declaredSignature == nil { throw AWSChunkedError.malformed("chunk \(chunkIndex) has no chunk-signature") }
            chunkHash = SHA256()
            if size == 0 {
                try finishChunk()
                state = .trailer
            } else {
                state = .data(remaining: size)
            }
        case .dataEnd:
            guard text.isEmpty else { throw AWSChunkedError.malformed("chunk \(chunkIndex - 1) is longer than its size") }
            state = .sizeLine
        case .trailer:
            if text.isEmpty {
                if signedTrailer, !sawTrailerSignature {
                    throw AWSChunkedError.malformed("the trailer has no x-amz-trailer-signature")
                }
                state = .done
                return
            }
            let lineText = String(decoding: text, as: UTF8.self)
            guard let colon = lineText.firstIndex(of: ":") else { throw AWSChunkedError.malformed("trailer line '\(lineText.prefix(40))' is not name:value") }
            let name = lineText[..<colon].trimmingCharacters(in: .whitespaces).lowercased()
            let value = lineText[lineText.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            if name == "x-amz-trailer-signature" {
                sawTrailerSignature = true
                if let signing {
                    let expected = signing.trailerSignature(previous: previousSignature, trailerLines: trailerText)
                    guard SigV4.constantTimeEquals(expected, value) else { throw AWSChunkedError.trailerSignatureMismatch }
                }
            } else {
                trailers[name] = value
                trailerText += "\(name):\(value)\n"
            }
        case .data, .done:
            preconditionFailure("endLine is only called in line states")
        }
    }

    private mutating func finishChunk() throws {
        defer { chunkIndex += 1 }
        guard let signing, let declared = declaredSignature else { return }
        let digest = SigV4.hex(chunkHash.finalize())
        let expected = signing.chunkSignature(previous: previousSignature, chunkSHA256: digest)
        guard SigV4.constantTimeEquals(expected, declared) else { throw AWSChunkedError.chunkSignatureMismatch(index: chunkIndex) }
        previousSignature = declared
    }
}
