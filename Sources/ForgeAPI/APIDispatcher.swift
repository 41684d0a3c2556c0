// Every request on the HTTP port passes through here: its face is found, its signature
// checked against the configured access keys (none configured: every request is accepted),
// and only then is it handed to the face. A refused request reaches no face, so it changes
// nothing.
import ForgeSigning
import Foundation
import Logging

/// Checks signatures and hands requests to the faces.
///
/// Concurrency: Sendable; immutable (the faces serialise their own state).
public struct APIDispatcher: Sendable {
    public let sageMaker: SageMakerAPI
    public let logs: LogsAPI
    public let sts: STSAPI
    /// nil when no access key is configured: signatures are then not checked.
    public let verifier: SigV4Verifier?
    let logger: Logger

    public init(sageMaker: SageMakerAPI, logs: LogsAPI, sts: STSAPI = STSAPI(), keys: AccessKeyStore, logger: Logger) {
        self.sageMaker = sageMaker
        self.logs = logs
        self.sts = sts
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
                var metadata: Logger.Metadata = ["face": "\(face)", "request": "\(requestID)"]
                if let header = request.value("authorization"), let parsed = try? AuthorizationHeader(parsing: header) {
                    metadata["accessKey"] = "\(parsed.accessKeyID)"
                }
                logger.info("refused a request: \(error)", metadata: metadata)
                if case .signatureMismatch(let canonical, let stringToSign) = error {
                    logger.debug("canonical request:\n\(canonical)\nstring to sign:\n\(stringToSign)", metadata: metadata)
                }
                return face.refusal(error, requestID: requestID)
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
            // TODO(issue 6): the S3 object face over the local store.
            return S3Errors.reply(status: 501, code: "NotImplemented", message: "this Forge does not serve the S3 face yet",
                                  requestID: requestID)
        case .unknown(let service):
            return .json(APIError("UnknownOperationException",
                                  "Forge serves the services sagemaker, logs, sts and s3, not '\(service)'"), requestID: requestID)
        }
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
