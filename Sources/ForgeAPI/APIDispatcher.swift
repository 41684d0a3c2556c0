// Every request on the HTTP port passes through here: its face is found, its signature
// checked against the configured access keys (none configured: every request is accepted),
// and only then is it handed to the face. A refused request reaches no face, so it changes
// nothing.
import ForgeSigning
import Foundation
import Logging
import NIOCore

/// Checks signatures and hands requests to the faces.
///
/// Concurrency: Sendable; immutable (the faces serialise their own state).
public struct APIDispatcher: Sendable {
    public let sageMaker: SageMakerAPI
    public let logs: LogsAPI
    public let sts: STSAPI
    public let s3: S3API
    /// nil when no access key is configured: signatures are then not checked.
    public let verifier: SigV4Verifier?
    let logger: Logger

    public init(sageMaker: SageMakerAPI, logs: LogsAPI, sts: STSAPI = STSAPI(), s3: S3API, keys: AccessKeyStore, logger: Logger) {
        self.sageMaker = sageMaker
        self.logs = logs
        self.sts = sts
        self.s3 = s3
        self.verifier = keys.isEmpty ? nil : SigV4Verifier(keys: keys)
        self.logger = logger
    }

    /// Answers `request` with the whole `body` in hand, at server time `now`.
    public func handle(_ request: SignableRequest, body: [UInt8], now: Date = Date()) -> APIReply {
        let requestID = UUID().uuidString
        let face = APIFace.of(request)
        var caller: String?
        if let verifier {
            do {
                caller = try verifier.verify(request, bodySHA256: SigV4.hexSHA256(body), now: now).accessKeyID
            } catch {
                return refuse(request, face: face, error: error, requestID: requestID)
            }
        } else if let header = request.value("authorization") {
            caller = try? AuthorizationHeader(parsing: header).accessKeyID
        }
        let target = request.value("x-amz-target") ?? ""
        switch face {
        case .sageMaker:
            return json(prefix: "SageMaker.", target: target, requestID: requestID) { operation throws(APIError) in
                try sageMaker.handle(operation: operation, body: body)
            }
        case .logs:
            return json(prefix: "Logs_20140328.", target: target, requestID: requestID) { operation throws(APIError) in
                try logs.handle(operation: operation, body: body)
            }
        case .sts:
            let form = request.method == "POST" ? STSAPI.formParameters(String(decoding: body, as: UTF8.self)) : []
            return sts.handle(parameters: request.queryItems + form, accessKeyID: caller, requestID: requestID)
        case .s3:
            return S3Errors.reply(status: 500, code: "InternalError", message: "S3 requests stream their bodies: use handleS3",
                                  requestID: requestID)
        case .unknown(let service):
            return .json(APIError("UnknownOperationException",
                                  "Forge serves the services sagemaker, logs, sts and s3, not '\(service)'"), requestID: requestID)
        }
    }

    /// Answers an S3 request (face `.s3`), whose body is read as it arrives: the signature is
    /// checked from the headers first (the payload hash as claimed), the body as it streams.
    public func handleS3<Body: AsyncSequence>(_ request: SignableRequest, body: Body, now: Date = Date()) async -> APIReply
    where Body.Element == ByteBuffer {
        let requestID = UUID().uuidString
        var verified: VerifiedSignature?
        if let verifier {
            do {
                verified = try verifier.verify(request, bodySHA256: nil, now: now)
            } catch {
                return refuse(request, face: .s3, error: error, requestID: requestID)
            }
        }
        return await s3.handle(request, verified: verified, body: body, requestID: requestID)
    }

    private func refuse(_ request: SignableRequest, face: APIFace, error: SigV4Error, requestID: String) -> APIReply {
        var metadata: Logger.Metadata = ["face": "\(face)", "request": "\(requestID)"]
        if let header = request.value("authorization"), let parsed = try? AuthorizationHeader(parsing: header) {
            metadata["accessKey"] = "\(parsed.accessKeyID)"
        }
        logger.info("refused a request: \(error)", metadata: metadata)
        if case .signatureMismatch(let canonical, let stringToSign) = error {
            logger.debug("canonical request:\n\(canonical)\nstring to sign:\n\(stringToSign)", metadata: metadata)
        }
        var reply = face.refusal(error, requestID: requestID)
        if request.method == "HEAD" { reply.body = [] }
        return reply
    }

    private func json(prefix: String, target: String, requestID: String,
                      _ run: (String) throws(APIError) -> [UInt8]) -> APIReply {
        guard target.hasPrefix(prefix) else {
            return .json(APIError("UnknownOperationException", "no operation named by X-Amz-Target '\(target)'"), requestID: requestID)
        }
        do {
            return .json(try run(String(target.dropFirst(prefix.count))), requestID: requestID)
        } catch {
            return .json(error, requestID: requestID)
        }
    }
}
