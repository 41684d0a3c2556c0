// `forge coordinator`: the long-running coordinator. Workers connect to its ZeroMQ control
// endpoint; clients (forge submit, boto3, the AWS CLI) to its HTTP port.
import ArgumentParser
import ForgeAPI
import ForgeCoordinator
import ForgeSigning
import Foundation
import Logging

struct CoordinatorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coordinator",
        abstract: "Run the coordinator: the job store, the scheduler, the workers' control endpoint and the HTTP API.",
        discussion: """
        State (the SQLite store forge.sqlite, job folders, checkpoints) lives under --state; the \
        local object store (s3://bucket/key is STORE/bucket/key) under --store. The HTTP port \
        serves AWS's own protocols, routed by the service of each request's signature: SageMaker \
        (CreateTrainingJob, DescribeTrainingJob, ListTrainingJobs, StopTrainingJob, AddTags, \
        ListTags, DeleteTags, ListClusterNodes), CloudWatch Logs (DescribeLogStreams, GetLogEvents), STS \
        (GetCallerIdentity) and S3 over the local object store (path-style buckets and objects, \
        listings, ranges, multipart uploads; aws s3 cp/ls/rm work with --endpoint-url); see \
        docs/api.md.

        Access keys: FORGE_ACCESS_KEY_ID and FORGE_SECRET_ACCESS_KEY in the environment, and/or \
        --credentials FILE (AWS shared-credentials format; every profile's key pair is accepted). \
        Every request must then carry a valid AWS Signature Version 4 made with one of them \
        (boto3, the AWS CLI and the forge clients sign with the usual AWS variables). With no key \
        configured, the API accepts any request and says so in the log. Prometheus metrics at \
        GET /metrics need no signature.

        SIGTERM or SIGINT stops it; jobs stay in the store.
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

    @Option(name: .long, help: "An AWS shared-credentials file whose key pairs may sign API requests.")
    var credentials: String?

    @Option(name: .long, help: "A YAML file mapping buckets to external S3-compatible endpoints and their keys (see docs/cluster.md).")
    var config: String?

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
        let keys = try accessKeys()
        var configuration = CoordinatorConfiguration(listen: listen, stateDirectory: state, objectRoot: store,
                                                     heartbeatTimeoutMilliseconds: heartbeatTimeout, clusterKeyPath: clusterKey)
        if let config {
            do {
                configuration.buckets = try BucketMap.load(path: config)
            } catch {
                FileHandle.standardError.write(Data("error: --config: \(error)\n".utf8))
                throw ExitCode.failure
            }
            for (bucket, endpoint) in configuration.buckets.buckets.sorted(by: { $0.key < $1.key }) {
                logger.info("bucket \(bucket) lives at \(endpoint.url)")
            }
        }
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
                    try await APIServer.run(api: api, logs: LogsAPI(store: api.store), metrics: metrics, keys: keys, host: host, port: port,
                                            logger: logger) { bound in
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

    /// The keys of FORGE_ACCESS_KEY_ID/FORGE_SECRET_ACCESS_KEY and of --credentials.
    private func accessKeys() throws -> AccessKeyStore {
        let environment = ProcessInfo.processInfo.environment
        var keys = [AccessKey]()
        switch (environment["FORGE_ACCESS_KEY_ID"].flatMap { $0.isEmpty ? nil : $0 },
                environment["FORGE_SECRET_ACCESS_KEY"].flatMap { $0.isEmpty ? nil : $0 }) {
        case let (id?, secret?): keys.append(AccessKey(id: id, secret: secret))
        case (.some, nil): throw ValidationError("FORGE_ACCESS_KEY_ID is set but FORGE_SECRET_ACCESS_KEY is not; set both or neither")
        case (nil, .some): throw ValidationError("FORGE_SECRET_ACCESS_KEY is set but FORGE_ACCESS_KEY_ID is not; set both or neither")
        case (nil, nil): break
        }
        if let credentials {
            let file: CredentialsFile
            do {
                file = try CredentialsFile(contentsOf: credentials)
            } catch {
                throw ValidationError("--credentials: \(error)")
            }
            guard !file.keys.isEmpty else {
                throw ValidationError("--credentials: \(credentials) has no profile with both aws_access_key_id and aws_secret_access_key")
            }
            keys += file.keys
        }
        return AccessKeyStore(keys)
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
