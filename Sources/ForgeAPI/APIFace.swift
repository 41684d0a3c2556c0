// The faces of the HTTP port, which face a request is for, and how each face words a refused
// signature. A signed request names its face by the service of its credential scope; an
// unsigned one by its shape (`X-Amz-Target`, an STS form, else S3's paths).
import ForgeSigning

/// One AWS service the HTTP port speaks.
enum APIFace: Equatable, Sendable {
    case sageMaker
    case logs
    case sts
    case s3
    /// A scope naming a service Forge does not serve.
    case unknown(service: String)

    /// The face a request is for.
    static func of(_ request: SignableRequest) -> APIFace {
        if let scope = SigV4Verifier.claimedScope(of: request) {
            switch scope.service {
            case "sagemaker": return .sageMaker
            case "logs": return .logs
            case "sts": return .sts
            case "s3": return .s3
            default: return .unknown(service: scope.service)
            }
        }
        let target = request.value("x-amz-target") ?? ""
        if target.hasPrefix("SageMaker.") { return .sageMaker }
        if target.hasPrefix("Logs_20140328.") { return .logs }
        let form = request.value("content-type")?.lowercased().hasPrefix("application/x-www-form-urlencoded") == true
        if request.method == "POST", request.path == "/" || request.path.isEmpty, form { return .sts }
        if request.queryItems.contains(where: { $0.name == "Action" }) { return .sts }
        if !target.isEmpty { return .sageMaker }
        return .s3
    }

    /// The answer to a request whose signature was refused, in this face's error shape.
    func refusal(_ error: SigV4Error, requestID: String) -> APIReply {
        switch self {
        case .sageMaker, .logs, .unknown:
            return .json(APIFace.jsonError(error), requestID: requestID)
        case .sts:
            let (status, code) = APIFace.queryErrorCode(error)
            return STSAPI.error(status: status, code: code, message: error.description, requestID: requestID)
        case .s3:
            let (status, code) = APIFace.s3ErrorCode(error)
            return S3Errors.reply(status: status, code: code, message: error.description, requestID: requestID)
        }
    }

    /// JSON 1.1 services (SageMaker, Logs) as AWS answers them.
    static func jsonError(_ error: SigV4Error) -> APIError {
        switch error {
        case .missingAuthentication: return APIError(status: 403, "MissingAuthenticationTokenException", error.description)
        case .malformed: return APIError(status: 400, "IncompleteSignatureException", error.description)
        case .unknownAccessKey: return APIError(status: 400, "UnrecognizedClientException", error.description)
        case .signatureMismatch, .requestTimeSkewed, .presignedURLExpired, .payloadHashMismatch:
            return APIError(status: 403, "InvalidSignatureException", error.description)
        }
    }

    /// Query-protocol services (STS).
    static func queryErrorCode(_ error: SigV4Error) -> (Int, String) {
        switch error {
        case .missingAuthentication: return (403, "MissingAuthenticationToken")
        case .malformed: return (400, "IncompleteSignature")
        case .unknownAccessKey: return (403, "InvalidClientTokenId")
        case .signatureMismatch, .requestTimeSkewed, .presignedURLExpired, .payloadHashMismatch: return (403, "SignatureDoesNotMatch")
        }
    }

    /// S3. A malformed header is `InvalidArgument`, not `AuthorizationHeaderMalformed`, which
    /// would send botocore looking for another region.
    static func s3ErrorCode(_ error: SigV4Error) -> (Int, String) {
        switch error {
        case .missingAuthentication: return (403, "AccessDenied")
        case .malformed: return (400, "InvalidArgument")
        case .unknownAccessKey: return (403, "InvalidAccessKeyId")
        case .signatureMismatch: return (403, "SignatureDoesNotMatch")
        case .requestTimeSkewed: return (403, "RequestTimeTooSkewed")
        case .presignedURLExpired: return (403, "AccessDenied")
        case .payloadHashMismatch: return (400, "XAmzContentSHA256Mismatch")
        }
    }
}

/// S3's XML error shape (the S3 face itself comes with the object store).
enum S3Errors {
    static func reply(status: Int, code: String, message: String, requestID: String, extra: [(String, String)] = []) -> APIReply {
        var text = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>\(XMLText.escape(code))</Code><Message>\(XMLText.escape(message))</Message>"
        for (name, value) in extra { text += "<\(name)>\(XMLText.escape(value))</\(name)>" }
        text += "<RequestId>\(requestID)</RequestId><HostId>forge</HostId></Error>"
        return APIReply(status: status, headers: [("Content-Type", "application/xml"), ("x-amz-request-id", requestID), ("x-amz-id-2", "forge")],
                        body: Array(text.utf8))
    }
}
