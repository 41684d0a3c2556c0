// The coordinator's one HTTP port (Hummingbird). Requests are routed by what they are: a
// JSON 1.1 call names its service in `X-Amz-Target` (`SageMaker.CreateTrainingJob`, …).
// Signatures are not checked yet (the API issue adds SigV4); every other face comes later on
// this same port.
import ForgeCoordinator
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore

public enum APIServer {
    /// Serves `api` on `host:port` until the task is cancelled or SIGTERM/SIGINT arrives;
    /// `started` gets the bound port.
    public static func run(api: SageMakerAPI, logs: LogsAPI, metrics: ClusterMetrics? = nil, host: String, port: Int, logger: Logger,
                           started: @escaping @Sendable (Int) -> Void = { _ in }) async throws {
        let router = Router()
        // Prometheus's text format; like a dashboard, it needs no signature.
        if let metrics {
            router.get("/metrics") { _, _ -> Response in
                var headers = HTTPFields()
                headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
                return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: metrics.scrape(store: api.store))))
            }
        }
        router.post("/") { request, _ -> Response in
            let target = request.headers[HTTPField.Name("X-Amz-Target")!] ?? ""
            let body = try await request.body.collect(upTo: 16 << 20)
            let bytes = [UInt8](buffer: body)
            let result: Result<[UInt8], APIError>
            if target.hasPrefix("SageMaker.") {
                let operation = String(target.dropFirst("SageMaker.".count))
                result = Result { () throws(APIError) in try api.handle(operation: operation, body: bytes) }
            } else if target.hasPrefix("Logs_20140328.") {
                let operation = String(target.dropFirst("Logs_20140328.".count))
                result = Result { () throws(APIError) in try logs.handle(operation: operation, body: bytes) }
            } else {
                result = .failure(APIError("UnknownOperationException", "no operation named by X-Amz-Target '\(target)'"))
            }
            var headers = HTTPFields()
            headers[.contentType] = "application/x-amz-json-1.1"
            headers[HTTPField.Name("x-amzn-RequestId")!] = UUID().uuidString
            switch result {
            case .success(let output):
                return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: output)))
            case .failure(let error):
                headers[HTTPField.Name("x-amzn-ErrorType")!] = error.type
                return Response(status: HTTPResponse.Status(code: error.status), headers: headers,
                                body: ResponseBody(byteBuffer: ByteBuffer(bytes: error.body)))
            }
        }
        let app = Application(router: router, configuration: .init(address: .hostname(host, port: port)), onServerRunning: { channel in
            started(channel.localAddress?.port ?? port)
        }, logger: logger)
        try await app.runService()
    }
}
