// Why a request's AWS Signature Version 4 was refused. Each face of the HTTP port turns a case
// into its own error shape (JSON 1.1 `__type`, S3 and STS XML codes).
import Foundation

/// A refused signature, with what the caller needs to say why.
public enum SigV4Error: Error, Equatable, Sendable, CustomStringConvertible {
    /// Neither an `Authorization` header nor presigned query parameters.
    case missingAuthentication
    /// The `Authorization` header or presigned query is not one this verifier can read.
    case malformed(String)
    /// The access key ID is not one of the configured keys.
    case unknownAccessKey(String)
    /// The signature differs from the one computed with the key's secret. The canonical request
    /// and string to sign are what the server computed (AWS shows them to help debugging).
    case signatureMismatch(canonicalRequest: String, stringToSign: String)
    /// `X-Amz-Date` is further than the allowed skew from the server's clock.
    case requestTimeSkewed(requestTime: String, serverTime: String, tooEarly: Bool, skewMinutes: Int)
    /// A presigned URL past `X-Amz-Date + X-Amz-Expires`.
    case presignedURLExpired(expiry: String, serverTime: String)
    /// `X-Amz-Content-SHA256` names a SHA-256 that is not the body's.
    case payloadHashMismatch(claimed: String, computed: String)

    public var description: String {
        switch self {
        case .missingAuthentication:
            return "Missing Authentication Token"
        case .malformed(let reason):
            return reason
        case .unknownAccessKey:
            return "The security token included in the request is invalid."
        case .signatureMismatch:
            return "The request signature we calculated does not match the signature you provided. "
                + "Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
        case .requestTimeSkewed(let requestTime, let serverTime, let tooEarly, let skew):
            return tooEarly
                ? "Signature expired: \(requestTime) is now earlier than the server time \(serverTime) - \(skew) min."
                : "Signature not yet current: \(requestTime) is still later than the server time \(serverTime) + \(skew) min."
        case .presignedURLExpired(let expiry, let serverTime):
            return "Request has expired: the presigned URL expired at \(expiry); the server time is \(serverTime)."
        case .payloadHashMismatch:
            return "The provided 'x-amz-content-sha256' header does not match what was computed."
        }
    }
}
