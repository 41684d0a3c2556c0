// S3's older query-string authentication (Signature Version 2), which boto3's
// generate_presigned_url and `aws s3 presign` still produce by default:
//   ?AWSAccessKeyId=AKID&Signature=<url-encoded base64>&Expires=<epoch seconds>
// with Signature = base64(HMAC-SHA1(secret, string to sign)) and the string to sign
//   METHOD \n Content-MD5 \n Content-Type \n Expires \n x-amz-* lines, then the path as sent
// followed by the S3 subresources of the query (sorted, values decoded).
import Crypto
import Foundation

public enum SigV2PresignedURL {
    /// The query parameters S3 signs as part of the resource.
    static let subresources: Set<String> = [
        "acl", "cors", "delete", "lifecycle", "location", "logging", "notification", "partNumber", "policy", "requestPayment",
        "response-cache-control", "response-content-disposition", "response-content-encoding", "response-content-language",
        "response-content-type", "response-expires", "restore", "tagging", "torrent", "uploadId", "uploads", "versionId",
        "versioning", "versions", "website",
    ]

    /// True when the request carries SigV2 query authentication.
    public static func isPresent(in request: SignableRequest) -> Bool {
        let names = Set(request.queryItems.map(\.name))
        return names.contains("AWSAccessKeyId") && names.contains("Signature")
    }

    /// The string to sign for `request` valid until `expires` (epoch seconds, as sent).
    public static func stringToSign(_ request: SignableRequest, expires: String) -> String {
        var amzLines = [String: [String]]()
        for field in request.fields where field.name.hasPrefix("x-amz-") {
            amzLines[field.name, default: []].append(field.value.trimmingCharacters(in: .whitespaces))
        }
        let amz = amzLines.keys.sorted().map { "\($0):\(amzLines[$0, default: []].joined(separator: ","))\n" }.joined()
        let signedQuery = request.queryItems.filter { subresources.contains($0.name) }.sorted { $0.name < $1.name }
            .map { $0.value.isEmpty ? $0.name : "\($0.name)=\($0.value)" }.joined(separator: "&")
        let resource = (request.path.isEmpty ? "/" : request.path) + (signedQuery.isEmpty ? "" : "?" + signedQuery)
        return "\(request.method)\n\(request.value("content-md5") ?? "")\n\(request.value("content-type") ?? "")\n\(expires)\n\(amz)\(resource)"
    }

    /// base64(HMAC-SHA1(secret, stringToSign)).
    public static func signature(secret: String, stringToSign: String) -> String {
        let code = HMAC<Insecure.SHA1>.authenticationCode(for: Array(stringToSign.utf8), using: SymmetricKey(data: Array(secret.utf8)))
        return Data(code).base64EncodedString()
    }
}

extension SigV4Verifier {
    /// Verifies SigV2 query authentication (S3 presigned URLs) at server time `now`.
    func verifyV2Presigned(_ request: SignableRequest, now: Date) throws(SigV4Error) -> VerifiedSignature {
        let query = request.queryItems
        func item(_ name: String) throws(SigV4Error) -> String {
            let values = query.filter { $0.name == name }
            guard values.count == 1 else { throw .malformed("the presigned query needs exactly one \(name)") }
            return values[0].value
        }
        let id = try item("AWSAccessKeyId")
        let signature = try item("Signature")
        let expiresText = try item("Expires")
        guard let secret = keys.secret(for: id) else { throw .unknownAccessKey(id) }
        guard let expires = Int64(expiresText) else { throw .malformed("Expires must be a number of seconds since 1970") }
        let serverTime = AmzDate(now)
        if serverTime.epochSeconds > expires {
            throw .presignedURLExpired(expiry: AmzDate(Date(timeIntervalSince1970: TimeInterval(expires))).description, serverTime: serverTime.description)
        }
        let stringToSign = SigV2PresignedURL.stringToSign(request, expires: expiresText)
        guard SigV4.constantTimeEquals(SigV2PresignedURL.signature(secret: secret, stringToSign: stringToSign), signature) else {
            throw .signatureMismatch(canonicalRequest: stringToSign, stringToSign: stringToSign)
        }
        let scope = CredentialScope(date: serverTime.day, region: "us-east-1", service: "s3")
        return VerifiedSignature(accessKeyID: id, scope: scope, time: serverTime, signature: signature,
                                 payloadHash: SigV4.unsignedPayload, signingKeyBytes: [])
    }
}
