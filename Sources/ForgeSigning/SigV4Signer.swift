// Signs requests with an access key (the forge CLI clients): adds `X-Amz-Date`, the session
// token if any, and the `Authorization` header over `host`, `content-type` and every `x-amz-*`
// field.
import Foundation

/// Signs requests for one key, region and service.
public struct SigV4Signer: Sendable {
    public let key: AccessKey
    public let region: String
    public let service: String

    public init(key: AccessKey, region: String, service: String) {
        self.key = key
        self.region = region
        self.service = service
    }

    /// Signs `request` (which must carry its `host` field) for a body whose hex SHA-256 is
    /// `payloadHash`, at `time`: sets `x-amz-date`, `x-amz-security-token` (with a session
    /// token) and `authorization`.
    public func sign(_ request: inout SignableRequest, payloadHash: String, at time: Date) {
        let stamp = AmzDate(time)
        request.setField("x-amz-date", stamp.description)
        if let token = key.sessionToken { request.setField("x-amz-security-token", token) }
        request.fields.removeAll { $0.name == "authorization" }
        let signed = Set(request.fields.map(\.name).filter { $0 == "host" || $0 == "content-type" || $0.hasPrefix("x-amz-") }).sorted()
        let scope = CredentialScope(date: stamp.day, region: region, service: service)
        let canonical = CanonicalRequest(request, signedHeaders: signed, payloadHash: payloadHash, service: service)
        let signature = SigV4.signature(key: SigV4.signingKey(secret: key.secret, scope: scope),
                                        stringToSign: canonical.stringToSign(time: stamp, scope: scope))
        let header = AuthorizationHeader(accessKeyID: key.id, scope: scope, signedHeaders: signed, signature: signature)
        request.setField("authorization", header.description)
    }

    /// The query of a presigned URL for `request` (its own query kept), valid `expires` seconds
    /// from `time`, signing only `host` with an unsigned payload (S3's form).
    public func presignedQuery(for request: SignableRequest, expires: Int, at time: Date) -> String {
        let stamp = AmzDate(time)
        let scope = CredentialScope(date: stamp.day, region: region, service: service)
        var items = [("X-Amz-Algorithm", AuthorizationHeader.algorithm), ("X-Amz-Credential", "\(key.id)/\(scope)"),
                     ("X-Amz-Date", stamp.description), ("X-Amz-Expires", String(expires)), ("X-Amz-SignedHeaders", "host")]
        if let token = key.sessionToken { items.append(("X-Amz-Security-Token", token)) }
        var query = items.map { "\($0.0)=\(PercentEncoding.encode($0.1))" }.joined(separator: "&")
        if !request.query.isEmpty { query = request.query + "&" + query }
        var presigned = request
        presigned.query = query
        let canonical = CanonicalRequest(presigned, signedHeaders: ["host"], payloadHash: SigV4.unsignedPayload, service: service)
        let signature = SigV4.signature(key: SigV4.signingKey(secret: key.secret, scope: scope),
                                        stringToSign: canonical.stringToSign(time: stamp, scope: scope))
        return query + "&X-Amz-Signature=\(signature)"
    }
}
