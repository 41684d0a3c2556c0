// Checks a received request's SigV4 signature, from an `Authorization` header or from presigned
// query parameters, exactly as AWS computes it: the canonical request rebuilt from the fields
// as received, the payload hash as claimed in `X-Amz-Content-SHA256` (checked against the body
// when the caller has it) or else the body's own, the scope's date equal to `X-Amz-Date`'s,
// the clock within the allowed skew, and the signatures compared in constant time. S3's SigV2
// presigned URLs are checked too (SigV2PresignedURL.swift).
import Crypto
import Foundation

/// What a verified request was signed with.
public struct VerifiedSignature: Sendable {
    public let accessKeyID: String
    public let scope: CredentialScope
    public let time: AmzDate
    /// The request's signature (the seed of aws-chunked chunk signatures).
    public let signature: String
    /// The payload hash the signature covers (hex, `UNSIGNED-PAYLOAD` or `STREAMING-…`).
    public let payloadHash: String
    /// The derived key's bytes (kept as bytes: `SymmetricKey` is not Sendable).
    let signingKeyBytes: [UInt8]

    /// The derived key (for aws-chunked chunk signatures).
    public var signingKey: SymmetricKey { SymmetricKey(data: signingKeyBytes) }
}

/// Verifies signatures against a set of access keys.
///
/// Concurrency: Sendable; immutable.
public struct SigV4Verifier: Sendable {
    public let keys: AccessKeyStore
    /// The largest difference allowed between `X-Amz-Date` and the server's clock, in seconds
    /// (AWS allows 15 minutes).
    public let allowedSkewSeconds: Int64
    /// The longest `X-Amz-Expires` a presigned URL may ask for, in seconds (AWS: 7 days).
    public static let longestPresignedExpiry: Int64 = 604_800

    public init(keys: AccessKeyStore, allowedSkewSeconds: Int64 = 900) {
        self.keys = keys
        self.allowedSkewSeconds = allowedSkewSeconds
    }

    /// The credential scope the request claims, if it carries a readable one (to route it
    /// before it is verified); nil for an unsigned or unreadable request.
    public static func claimedScope(of request: SignableRequest) -> CredentialScope? {
        if let header = request.value("authorization") {
            return try? AuthorizationHeader(parsing: header).scope
        }
        guard let credential = request.queryItems.first(where: { $0.name == "X-Amz-Credential" })?.value,
              let slash = credential.firstIndex(of: "/") else { return nil }
        return try? CredentialScope(parsing: credential[credential.index(after: slash)...])
    }

    /// Verifies `request` at server time `now`. `bodySHA256` is the hex SHA-256 of the body when
    /// the caller has read it; nil when the body is still to come (then `X-Amz-Content-SHA256`
    /// must name the payload hash, and the caller checks the body against it as it arrives).
    public func verify(_ request: SignableRequest, bodySHA256: String?, now: Date) throws(SigV4Error) -> VerifiedSignature {
        if let header = request.value("authorization") {
            return try verifyHeader(AuthorizationHeader(parsing: header), request, bodySHA256: bodySHA256, now: now)
        }
        let query = request.queryItems
        if query.contains(where: { $0.name == "X-Amz-Algorithm" || $0.name == "X-Amz-Signature" }) {
            return try verifyPresigned(query, request, now: now)
        }
        if SigV2PresignedURL.isPresent(in: request) {
            return try verifyV2Presigned(request, now: now)
        }
        throw .missingAuthentication
    }

    private func verifyHeader(_ header: AuthorizationHeader, _ request: SignableRequest, bodySHA256: String?,
                              now: Date) throws(SigV4Error) -> VerifiedSignature {
        guard let secret = keys.secret(for: header.accessKeyID) else { throw .unknownAccessKey(header.accessKeyID) }
        guard header.signedHeaders.contains("host") else {
            throw .malformed("SignedHeaders must include 'host'")
        }
        guard header.signedHeaders.contains("x-amz-date"), let dateText = request.value("x-amz-date") else {
            throw .malformed("Authorization requires a signed 'X-Amz-Date' header")
        }
        guard let time = AmzDate(parsing: dateText) else {
            throw .malformed("X-Amz-Date '\(dateText.prefix(40))' is not YYYYMMDDTHHMMSSZ")
        }
        guard time.day == header.scope.date else {
            throw .malformed("Credential scope date \(header.scope.date) is not the date of X-Amz-Date \(dateText)")
        }
        try checkSkew(time, now: now)
        let payloadHash: String
        if let claimed = request.value("x-amz-content-sha256") {
            if claimed.utf8.count == 64, claimed.utf8.allSatisfy(AuthorizationHeader.isLowerHex), let bodySHA256, claimed != bodySHA256 {
                throw .payloadHashMismatch(claimed: claimed, computed: bodySHA256)
            }
            payloadHash = claimed
        } else if let bodySHA256 {
            payloadHash = bodySHA256
        } else {
            throw .malformed("the request must carry X-Amz-Content-SHA256")
        }
        return try check(request, header: header, payloadHash: payloadHash, time: time, secret: secret, excludingQuery: [])
    }

    private func verifyPresigned(_ query: [(name: String, value: String)], _ request: SignableRequest,
                                 now: Date) throws(SigV4Error) -> VerifiedSignature {
        func item(_ name: String) throws(SigV4Error) -> String {
            let values = query.filter { $0.name == name }
            guard values.count == 1 else { throw .malformed("the presigned query needs exactly one \(name)") }
            return values[0].value
        }
        let algorithm = try item("X-Amz-Algorithm")
        guard algorithm == AuthorizationHeader.algorithm else {
            throw .malformed("X-Amz-Algorithm '\(algorithm.prefix(40))' is not \(AuthorizationHeader.algorithm)")
        }
        let header = try AuthorizationHeader(credential: Substring(try item("X-Amz-Credential")),
                                             signedHeaders: Substring(try item("X-Amz-SignedHeaders")),
                                             signature: Substring(try item("X-Amz-Signature")))
        guard let secret = keys.secret(for: header.accessKeyID) else { throw .unknownAccessKey(header.accessKeyID) }
        guard header.signedHeaders.contains("host") else { throw .malformed("X-Amz-SignedHeaders must include 'host'") }
        let dateText = try item("X-Amz-Date")
        guard let time = AmzDate(parsing: dateText), time.day == header.scope.date else {
            throw .malformed("X-Amz-Date '\(dateText.prefix(40))' is not YYYYMMDDTHHMMSSZ on the credential's date")
        }
        guard let expires = Int64(try item("X-Amz-Expires")), expires >= 1, expires <= SigV4Verifier.longestPresignedExpiry else {
            throw .malformed("X-Amz-Expires must be a number of seconds from 1 to \(SigV4Verifier.longestPresignedExpiry)")
        }
        let serverTime = AmzDate(now)
        if time.epochSeconds - serverTime.epochSeconds > allowedSkewSeconds {
            throw .requestTimeSkewed(requestTime: time.description, serverTime: serverTime.description, tooEarly: false,
                                     skewMinutes: Int(allowedSkewSeconds / 60))
        }
        if serverTime.epochSeconds > time.epochSeconds + expires {
            let expiry = AmzDate(Date(timeIntervalSince1970: TimeInterval(time.epochSeconds + expires)))
            throw .presignedURLExpired(expiry: expiry.description, serverTime: serverTime.description)
        }
        let payloadHash = query.first { $0.name == "X-Amz-Content-SHA256" }?.value
            ?? request.value("x-amz-content-sha256") ?? SigV4.unsignedPayload
        return try check(request, header: header, payloadHash: payloadHash, time: time, secret: secret,
                         excludingQuery: ["X-Amz-Signature"])
    }

    private func checkSkew(_ time: AmzDate, now: Date) throws(SigV4Error) {
        let serverTime = AmzDate(now)
        let difference = time.epochSeconds - serverTime.epochSeconds
        if abs(difference) > allowedSkewSeconds {
            throw .requestTimeSkewed(requestTime: time.description, serverTime: serverTime.description, tooEarly: difference < 0,
                                     skewMinutes: Int(allowedSkewSeconds / 60))
        }
    }

    private func check(_ request: SignableRequest, header: AuthorizationHeader, payloadHash: String, time: AmzDate,
                       secret: String, excludingQuery: Set<String>) throws(SigV4Error) -> VerifiedSignature {
        let canonical = CanonicalRequest(request, signedHeaders: header.signedHeaders, payloadHash: payloadHash,
                                         service: header.scope.service, excludingQuery: excludingQuery)
        let stringToSign = canonical.stringToSign(time: time, scope: header.scope)
        let key = SigV4.signingKey(secret: secret, scope: header.scope)
        guard SigV4.constantTimeEquals(SigV4.signature(key: key, stringToSign: stringToSign), header.signature) else {
            throw .signatureMismatch(canonicalRequest: canonical.text, stringToSign: stringToSign)
        }
        return VerifiedSignature(accessKeyID: header.accessKeyID, scope: header.scope, time: time, signature: header.signature,
                                 payloadHash: payloadHash, signingKeyBytes: key.withUnsafeBytes { Array($0) })
    }
}
