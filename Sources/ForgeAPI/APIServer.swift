// The coordinator's one HTTP port (Hummingbird). Every request, whatever its method and path,
// goes to the dispatcher, which finds its face (SageMaker, CloudWatch Logs, STS, S3) and checks
// its SigV4 signature; this file only moves bytes between Hummingbird and the dispatcher.
import ForgeSigning
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore

public enum APIServer {
    /// The largest request body read into memory, in bytes.
    public static let largestBody = 64 << 20

    /// Serves `api`, `logs` and STS on `host:port`, checking signatures against `keys`, until
    /// the task is cancelled or SIGTERM/SIGINT arrives; `started` gets the bound port.
    public static func run(api: SageMakerAPI, logs: LogsAPI, keys: AccessKeyStore = AccessKeyStore(), host: String, port: Int,
                           logger: Logger, started: @escaping @Sendable (Int) -> Void = { _ in }) async throws {
        if keys.isEmpty {
            logger.warning("no access keys configured: the API does not check signatures")
        } else {
            logger.info("the API checks SigV4 signatures (\(keys.count) access key\(keys.count == 1 ? "" : "s"))")
        }
        let dispatcher = APIDispatcher(sageMaker: api, logs: logs, keys: keys, logger: logger)
        let responder = CallbackResponder<BasicRequestContext> { request, _ in
            let body = try await request.body.collect(upTo: largestBody)
            let reply = dispatcher.handle(signable(request), body: [UInt8](buffer: body))
            var headers = HTTPFields()
            for (name, value) in reply.headers {
                if let field = HTTPField.Name(name) { headers[field] = value }
            }
            return Response(status: HTTPResponse.Status(code: reply.status), headers: headers,
                            body: ResponseBody(byteBuffer: ByteBuffer(bytes: reply.body)))
        }
        let app = Application(responder: responder, configuration: .init(address: .hostname(host, port: port)), onServerRunning: { channel in
            started(channel.localAddress?.port ?? port)
        }, logger: logger)
        try await app.runService()
    }

    /// The request as SigV4 sees it; HTTP/1.1's `Host` arrives as the authority.
    static func signable(_ request: Request) -> SignableRequest {
        var fields = request.headers.map { SignableRequest.Field(name: $0.name.canonicalName, value: $0.value) }
        if let authority = request.head.authority { fields.append(SignableRequest.Field(name: "host", value: authority)) }
        return SignableRequest(method: request.method.rawValue, target: request.head.path ?? "/", fields: fields)
    }
}
