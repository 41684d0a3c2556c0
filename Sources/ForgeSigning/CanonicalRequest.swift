// The SigV4 canonical request and string to sign, shared by the signer and the verifier so
// the two can never disagree. Steps (AWS's "Create a canonical request"):
//   method \n canonical URI \n canonical query \n canonical headers \n signed headers \n payload hash
// with the canonical URI the raw path for S3 and the normalised, re-encoded path elsewhere, the
// query decoded, re-encoded and sorted, and each signed header as `name:value\n` (values
// trimmed, inner whitespace runs collapsed, repeated fields joined by `,`).
import Crypto
import Foundation

/// The canonical form of a request for one signature.
public struct CanonicalRequest: Sendable {
    /// The canonical request text.
    public let text: String

    /// Builds the canonical request of `request` over `signedHeaders` (lowercase names, in
    /// signing order) with `payloadHash` as its last line. Query parameters named in
    /// `excludingQuery` (the presigned `X-Amz-Signature`) are left out. A signed header the
    /// request lacks contributes an empty value, so the signature simply does not match.
    public init(_ request: SignableRequest, signedHeaders: [String], payloadHash: String, service: String,
                excludingQuery: Set<String> = []) {
        var lines = [request.method, CanonicalRequest.uri(request.path, service: service),
                     CanonicalRequest.query(request.query, excluding: excludingQuery)]
        var headerBlock = ""
        for name in signedHeaders {
            let values = request.values(name).map(CanonicalRequest.normaliseHeaderValue)
            headerBlock += "\(name):\(values.joined(separator: ","))\n"
        }
        lines.append(headerBlock)
        lines.append(signedHeaders.joined(separator: ";"))
        lines.append(payloadHash)
        text = lines.joined(separator: "\n")
    }

    /// The hex SHA-256 of the text (the last line of the string to sign).
    public var digest: String { SigV4.hexSHA256(Array(text.utf8)) }

    /// `AWS4-HMAC-SHA256 \n time \n scope \n digest`.
    public func stringToSign(time: AmzDate, scope: CredentialScope) -> String {
        "\(AuthorizationHeader.algorithm)\n\(time)\n\(scope)\n\(digest)"
    }

    /// S3 signs the path as sent. Other services remove `.`/`..` segments and repeated slashes,
    /// then percent-encode the (already encoded) path once more, as botocore does.
    static func uri(_ path: String, service: String) -> String {
        if path.isEmpty { return "/" }
        if service == "s3" { return path }
        var segments = [Substring]()
        for segment in path.split(separator: "/") where segment != "." {
            if segment == ".." {
                _ = segments.popLast()
            } else {
                segments.append(segment)
            }
        }
        var normalised = (path.hasPrefix("/") ? "/" : "") + segments.joined(separator: "/")
        if path.hasSuffix("/"), !segments.isEmpty { normalised += "/" }
        if normalised.isEmpty { normalised = "/" }
        return PercentEncoding.encode(normalised, keepSlash: true)
    }

    /// Decodes every name and value, re-encodes them (RFC 3986, uppercase hex) and sorts by
    /// name, then value; a bare `name` becomes `name=`.
    static func query(_ query: String, excluding: Set<String>) -> String {
        var pairs = [(String, String)]()
        for pair in query.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = PercentEncoding.decode(parts[0])
            if excluding.contains(name) { continue }
            let value = parts.count > 1 ? PercentEncoding.decode(parts[1]) : ""
            pairs.append((PercentEncoding.encode(name), PercentEncoding.encode(value)))
        }
        // Byte order, as AWS sorts (Swift's String `<` on ASCII is byte order).
        pairs.sort { $0.0 != $1.0 ? Array($0.0.utf8).lexicographicallyPrecedes(Array($1.0.utf8)) : Array($0.1.utf8).lexicographicallyPrecedes(Array($1.1.utf8)) }
        return pairs.map { "\($0.0)=\($0.1)" }.joined(separator: "&")
    }

    /// Trims the value and collapses each run of spaces and tabs inside it to one space.
    static func normaliseHeaderValue(_ value: String) -> String {
        var output = ""
        var pendingSpace = false
        for character in value {
            if character == " " || character == "\t" {
                pendingSpace = !output.isEmpty
            } else {
                if pendingSpace { output.append(" ") }
                pendingSpace = false
                output.append(character)
            }
        }
        return output
    }
}

/// The SigV4 primitives: digests, the derived signing key, the signature.
public enum SigV4 {
    /// The hex SHA-256 of the empty string.
    public static let emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    /// The payload hash a request may claim when its body is not signed (S3).
    public static let unsignedPayload = "UNSIGNED-PAYLOAD"

    /// Lowercase hex SHA-256 of `bytes`.
    public static func hexSHA256(_ bytes: some DataProtocol) -> String {
        hex(SHA256.hash(data: bytes))
    }

    /// `kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")`.
    public static func signingKey(secret: String, scope: CredentialScope) -> SymmetricKey {
        var key = SymmetricKey(data: Array(("AWS4" + secret).utf8))
        for part in [scope.date, scope.region, scope.service, "aws4_request"] {
            key = SymmetricKey(data: HMAC<SHA256>.authenticationCode(for: Array(part.utf8), using: key))
        }
        return key
    }

    /// Hex HMAC-SHA256 of `stringToSign` under the signing key.
    public static func signature(key: SymmetricKey, stringToSign: String) -> String {
        hex(HMAC<SHA256>.authenticationCode(for: Array(stringToSign.utf8), using: key))
    }

    /// Compares two signatures in time that depends only on their lengths.
    public static func constantTimeEquals(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        guard x.count == y.count else { return false }
        var difference: UInt8 = 0
        for index in x.indices { difference |= x[index] ^ y[index] }
        return difference == 0
    }

    /// Lowercase hex of `bytes`.
    public static func hex(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var output = [UInt8]()
        for byte in bytes {
            output.append(digits[Int(byte >> 4)])
            output.append(digits[Int(byte & 0xF)])
        }
        return String(decoding: output, as: UTF8.self)
    }
}
