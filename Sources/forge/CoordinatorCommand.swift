// `forge coordinator`: the long-running coordinator. Workers connect to its ZeroMQ control
// endpoint; clients (forge submit, boto3, the AWS CLI) to its HTTP port.
import ArgumentParser
import ForgeAPI
import ForgeCoordinator
import Foundation
import Logging

struct CoordinatorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coordinator",
        abstract: "Run the coordinator: the job store, the scheduler, the workers' control endpoint and the HTTP API.",
        discussion: """
        State (the SQLite store forge.sqlite, job folders, checkpoints) lives under --state; the \
        local object store (s3://bucket/key is STORE/bucket/key) under --store. The HTTP port \
        speaks SageMaker's JSON 1.1 for CreateTrainingJob, DescribeTrainingJob, ListTrainingJobs \
        and StopTrainingJob (signatures are not checked yet). SIGTERM or SIGINT stops it; jobs stay \
        in the store.
        """
    )

    @Option(name: .long, help: "State folder.")
    var state: String

    @Option(name: .long, help: "Control endpoint for workers, tcp://HOST:PORT.")
    var listen: String

    @Option(name: .long, help: "HTTP API address, HOST:PORT.")
    var api: String

    @Option(name: .long, help: "Local object store folder (default STATE/objects).")
    var store: String?

    @Option(name: .long, help: "A cluster key file (forge keygen) for CURVE on the control plane.")
    var clusterKey: String?

    @Option(name: .long, help: "Milliseconds of worker silence before it is declared dead.")
    var heartbeatTimeout = 5000

    func run() throws {
        let logger = Log.logger()
        guard let colon = api.lastIndex(of: ":"), let port = Int(api[api.index(after: colon)...]) else {
            throw ValidationError("--api must be HOST:PORT, not \(api)")
        }
        let host = String(api[..<colon])
        let configuration = CoordinatorConfiguration(listen: listen, stateDirectory: state, objectRoot: store,
                                                     heartbeatTimeoutMilliseconds: heartbeatTimeout, clusterKeyPath: clusterKey)
        let coordinator: Coordinator
        do {
            coordinator = try Coordinator(configuration: configuration, logger: logger)
        } catch {
            FileHandle.standardError.write(Data("error: coordinator: \(error)\n".utf8))
            throw ExitCode.failure
        }
        let api = SageMakerAPI(store: coordinator.store, objectRoot: configuration.objectRoot)
        let metrics = coordinator.metrics
        let stopping = StopFlag()
        let server = Thread {
            let done = DispatchSemaphore(value: 0)
            Task {
                do {
                    try await APIServer.run(api: api, logs: LogsAPI(store: api.store), metrics: metrics, host: host, port: port, logger: logger) { bound in
                        logger.info("HTTP API at http://\(host):\(bound)")
                    }
                } catch {
                    logger.error("HTTP API: \(error)")
                }
                stopping.set()
                done.signal()
            }
            done.wait()
        }
        server.start()
        // The HTTP server's service lifecycle takes SIGTERM and SIGINT; once it has stopped,
        // so does the scheduler loop.
        coordinator.run { stopping.isSet }
        logger.info("coordinator stopped; jobs stay in \(coordinator.store.path)")
    }
}

/// A flag set once from any thread.
///
/// Concurrency: Sendable; guarded by a lock.
final class StopFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.lock(); value = true; lock.unlock() }
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
}
