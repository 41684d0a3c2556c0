// The coordinator's one HTTP port (Hummingbird). Every request, whatever its method and path,
// goes to the dispatcher, which finds its face (SageMaker, CloudWatch Logs, STS, S3) and checks
// its SigV4 signature; this file only moves bytes between Hummingbird and the dispatcher.
// Prometheus's `/metrics` is the one path served without a signature.
import ForgeCoordinator
import ForgeSigning
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOPosix

public enum APIServer {
    /// The largest request body read into memory, in bytes.
    public static let largestBody = 64 << 20

    /// Serves `api`, `logs`, STS and S3 (over `api.objectRoot`) on `host:port`, checking
    /// signatures against `keys`, and `metrics` at `GET /metrics`, until the task is cancelled
    /// or SIGTERM/SIGINT arrives; `started` gets the bound port.
    public static func run(api: SageMakerAPI, logs: LogsAPI, metrics: ClusterMetrics? = nil, keys: AccessKeyStore = AccessKeyStore(),
                           host: String, port: Int, logger: Logger, started: @escaping @Sendable (Int) -> Void = { _ in }) async throws {
        if keys.isEmpty {
            logger.warning("no access keys configured: the API does not check signatures")
        } else {
            logger.info("the API checks SigV4 signatures (\(keys.count) access key\(keys.count == 1 ? "" : "s"))")
        }
        let dispatcher = APIDispatcher(sageMaker: api, logs: logs, s3: S3API(root: api.objectRoot), keys: keys, logger: logger)
        let responder = CallbackResponder<BasicRequestContext> { request, _ in
            let signable = signable(request)
            if let metrics, isMetricsScrape(signable) {
                var headers = HTTPFields()
                headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
                return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: metrics.scrape(store: api.store))))
            }
            let reply: APIReply
            if APIFace.of(signable) == .s3 {
                reply = await dispatcher.handleS3(signable, body: request.body)
            } else {
                let body = try await request.body.collect(upTo: largestBody)
                reply = dispatcher.handle(signable, body: [UInt8](buffer: body))
            }
            return response(reply)
        }
        // S3 clients send `Expect: 100-continue` with every upload and wait up to a second for
        // the 100 before sending the body anyway; answer it at once.
        let server = HTTPServerBuilder { responder in
            HTTP1Channel(responder: { request, writer, channel in
                if request.headers[.expect]?.lowercased() == "100-continue" {
                    try await writer.writeInformationalHead(HTTPResponse(status: .continue))
                }
                try await responder(request, writer, channel)
            })
        }
        let app = Application(responder: responder, server: server, configuration: .init(address: .hostname(host, port: port)),
                              onServerRunning: { channel in started(channel.localAddress?.port ?? port) }, logger: logger)
        try await app.runService()
    }

    /// `GET /metrics` with no query and no signature: a Prometheus scrape, which, like a
    /// dashboard, needs no signature. (A signed `GET /metrics…` is S3's, for a bucket `metrics`.)
    static func isMetricsScrape(_ request: SignableRequest) -> Bool {
        request.method == "GET" && request.path == "/metrics" && request.query.isEmpty && request.value("authorization") == nil
    }

    static func response(_ reply: APIReply) -> Response {
        var headers = HTTPFields()
        for (name, value) in reply.headers {
            if let field = HTTPField.Name(name) { headers[field] = value }
        }
        guard let file = reply.file else {
            return Response(status: HTTPResponse.Status(code: reply.status), headers: headers,
                            body: ResponseBody(byteBuffer: ByteBuffer(bytes: reply.body)))
        }
        // The file is read in 1 MiB pieces as the client takes them, not loaded whole; the reads
        // run on NIO's pool for blocking work.
        let body = ResponseBody(contentLength: file.length) { writer in
            let handle = try await NIOThreadPool.singleton.runIfActive { () throws -> FileHandle in
                guard let handle = FileHandle(forReadingAtPath: file.path) else { throw CocoaError(.fileReadNoSuchFile) }
                try handle.seek(toOffset: UInt64(file.offset))
                return handle
            }
            defer { try? handle.close() }
            var remaining = file.length
            while remaining > 0 {
                let wanted = min(remaining, 1 << 20)
                let data = try await NIOThreadPool.singleton.runIfActive { try handle.read(upToCount: wanted) ?? Data() }
                if data.isEmpty { break }
                try await writer.write(ByteBuffer(bytes: data))
                remaining -= data.count
            }
            try await writer.finish(nil)
        }
        return Response(status: HTTPResponse.Status(code: reply.status), headers: headers, body: body)
    }

    /// The request as SigV4 sees it; HTTP/1.1's `Host` arrives as the authority.
    static func signable(_ request: Request) -> SignableRequest {
        var fields = request.headers.map { SignableRequest.Field(name: $0.name.canonicalName, value: $0.value) }
        if let authority = request.head.authority { fields.append(SignableRequest.Field(name: "host", value: authority)) }
        return SignableRequest(method: request.method.rawValue, target: request.head.path ?? "/", fields: fields)
    }
}
