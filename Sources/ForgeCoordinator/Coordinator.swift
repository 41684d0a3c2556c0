// The coordinator's runtime: the ZeroMQ control endpoint for workers, the node registry, the
// scheduler (priority, then FIFO; gang: a job starts only when all its ranks have a worker),
// and the handling of what workers report. Durable state lives in the JobStore; what is only
// in memory (workers, which rank runs where) is rebuilt from heartbeats after a restart.
import ForgeTransport
import ForgeWire
import Foundation
import Logging

/// Settings of a coordinator.
public struct CoordinatorConfiguration: Sendable {
    /// Where the control endpoint listens (`tcp://HOST:PORT`, port 0 or `*` to pick one).
    public var listen: String
    /// The state folder: the SQLite store, job folders, checkpoints.
    public var stateDirectory: String
    /// The local object store: `s3://bucket/key` is `objectRoot/bucket/key`.
    public var objectRoot: String
    public var heartbeatMilliseconds: Int
    /// A worker silent this long is dead.
    public var heartbeatTimeoutMilliseconds: Int
    /// SIGTERM-to-SIGKILL grace for stopped ranks (SageMaker gives 120 s).
    public var stopGraceSeconds: Int
    public var clusterKeyPath: String?

    public init(listen: String, stateDirectory: String, objectRoot: String? = nil, heartbeatMilliseconds: Int = 1000,
                heartbeatTimeoutMilliseconds: Int = 5000, stopGraceSeconds: Int = 120, clusterKeyPath: String? = nil) {
        // Absolute, so ranks running in their own folders find them.
        func absolute(_ path: String) -> String {
            path.hasPrefix("/") ? path : (FileManager.default.currentDirectoryPath as NSString).appendingPathComponent(path)
        }
        self.listen = listen
        self.stateDirectory = (absolute(stateDirectory) as NSString).standardizingPath
        self.objectRoot = (absolute(objectRoot ?? (stateDirectory as NSString).appendingPathComponent("objects")) as NSString).standardizingPath
        self.heartbeatMilliseconds = heartbeatMilliseconds
        self.heartbeatTimeoutMilliseconds = heartbeatTimeoutMilliseconds
        self.stopGraceSeconds = stopGraceSeconds
        self.clusterKeyPath = clusterKeyPath
    }
}

/// A registered worker, as the coordinator sees it.
public struct WorkerStatus: Sendable, Equatable {
    public var id: String
    public var resources: WorkerResources
    public var lastHeartbeat: Date
    /// The rank it runs (one per worker), if any.
    public var assignment: String?
    public var registeredAt: Date

    var record: JobStore.NodeRecord {
        JobStore.NodeRecord(id: id, host: resources.host, cores: resources.cores, memoryBytes: resources.memoryBytes,
                            instanceType: resources.instanceType, instanceGroup: resources.instanceGroup, registeredAt: registeredAt,
                            lastHeartbeat: lastHeartbeat, status: "Running", message: assignment.map { "running \($0)" } ?? "idle",
                            assignment: assignment)
    }
}

/// The coordinator.
///
/// Concurrency: not Sendable; `step` and `run` own the socket on one thread. Other threads
/// talk to it through the store (submissions and stops are store writes it picks up).
public final class Coordinator {
    public let configuration: CoordinatorConfiguration
    public let store: JobStore
    /// The control endpoint as bound.
    public let endpoint: String
    private let logger: Logger
    private let context: ZMQContext
    private let socket: ZMQSocket
    public private(set) var workers: [String: WorkerStatus] = [:]
    /// Running attempts: job → its ranks.
    private var attempts: [String: Attempt] = [:]
    private var lastSweep = Date.distantPast
    private var lastNodeFlush = Date.distantPast
    /// How long the loop lets control messages gather after the first arrives.
    static let batchMicroseconds = 10_000

    private struct Attempt {
        var number: Int
        /// Per rank: the worker and the assignment id.
        var ranks: [(worker: String, assignment: String)]
        var started: Set<Int> = []
        var exited: [Int: RankExit] = [:]
        /// Set once the attempt is failing (the first failure, named).
        var failure: String?
        var stopping = false
        var deadline: Date
    }

    public init(configuration: CoordinatorConfiguration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        try FileManager.default.createDirectory(atPath: configuration.objectRoot, withIntermediateDirectories: true)
        store = try JobStore(path: (configuration.stateDirectory as NSString).appendingPathComponent("forge.sqlite"))
        context = try ZMQContext()
        socket = try ZMQSocket(context, kind: .router)
        if let path = configuration.clusterKeyPath {
            try socket.makeCurveServer(try ClusterKey.load(path: path))
        } else {
            logger.info("no cluster key: the control plane is plain")
        }
        socket.sendTimeoutMilliseconds = 1000
        endpoint = try socket.bind(configuration.listen)
        logger.info("coordinator listening for workers at \(endpoint); state in \(configuration.stateDirectory)")
        recover(Date())
    }

    /// After a restart: jobs that were running have lost their ranks' bookkeeping (the ranks
    /// themselves are stopped when their workers next heartbeat), so each restarts from its
    /// latest checkpoint, without using up a retry; stopping ones are stopped; queued ones wait.
    private func recover(_ now: Date) {
        guard let running = try? store.jobs() else { return }
        for job in running {
            switch (job.state.status, job.state.secondaryStatus) {
            case (.inProgress, .downloading), (.inProgress, .training), (.inProgress, .uploading):
                logger.warning("job \(job.name) was running when the coordinator stopped: restarting it from its latest checkpoint")
                apply(.attemptInterrupted(reason: "the coordinator restarted while it ran"), to: job.name, at: now)
            case (.stopping, _):
                apply(.ranksStopped, to: job.name, at: now)
            default:
                break
            }
        }
    }

    /// Validates nothing more (the spec is already valid) and stores the job; the scheduler
    /// picks it up on its next step.
    @discardableResult
    public func submit(_ spec: TrainingJobSpec, priority: Int = 0) throws(JobStoreError) -> JobRecord {
        try store.create(spec, at: Date(), priority: priority)
    }

    /// Asks a job to stop: its ranks get SIGTERM and the grace period. (The API does the same
    /// through the store; the loop notices either way.)
    public func stop(job name: String) throws(JobStoreError) {
        try store.apply(.stopRequested, to: name, at: Date())
        stopRequested(Date())
    }

    /// Carries out stops recorded in the store: SIGTERM to the ranks of a stopping job, and
    /// `Stopped` at once for one that runs nowhere.
    private func stopRequested(_ now: Date) {
        guard let stopping = try? store.jobs(status: .stopping) else { return }
        for job in stopping {
            guard var attempt = attempts[job.name] else {
                apply(.ranksStopped, to: job.name, at: now)
                continue
            }
            guard !attempt.stopping else { continue }
            attempt.stopping = true
            attempts[job.name] = attempt
            stopRunningRanks(of: attempt, graceSeconds: configuration.stopGraceSeconds)
        }
    }

    /// Sends a stop to every rank of `attempt` that has not exited.
    private func stopRunningRanks(of attempt: Attempt, graceSeconds: Int) {
        for (index, rank) in attempt.ranks.enumerated() where attempt.exited[index] == nil {
            send(.stop(assignment: rank.assignment, graceSeconds: graceSeconds), to: rank.worker)
        }
    }

    /// Records that `rank` of `job`'s running attempt has ended. The first `failure` fails the
    /// attempt and stops the rest of the gang; once every rank has ended, the job moves on.
    private func rankEnded(job: String, rank: Int, exit: RankExit, failure: String?, at now: Date) {
        guard var attempt = attempts[job] else { return }
        attempt.exited[rank] = exit
        if let failure, attempt.failure == nil, !attempt.stopping {
            attempt.failure = failure
            stopRunningRanks(of: attempt, graceSeconds: 10)
        }
        attempts[job] = attempt
        finishIfDone(job, at: now)
    }

    /// Runs until `shouldStop()`.
    public func run(shouldStop: () -> Bool) {
        while !shouldStop() { step(timeoutMilliseconds: 100) }
    }

    /// One turn: handle what arrived (waiting up to `timeoutMilliseconds`), then sweep dead
    /// workers and runtime limits, then schedule.
    public func step(timeoutMilliseconds: Int) {
        do {
            if !(try ZMQSocket.pollReadable([socket], milliseconds: timeoutMilliseconds)).isEmpty {
                // Let a few milliseconds of messages gather: with a thousand workers
                // heartbeating, waking for each one costs more than handling it.
                usleep(UInt32(Coordinator.batchMicroseconds))
                while let frames = try socket.receiveMessageIfReady() {
                    guard frames.count == 2, let worker = String(validating: frames[0].array, as: UTF8.self) else { continue }
                    do {
                        handle(try ControlMessage(decoding: frames[1].array), from: worker)
                    } catch {
                        logger.warning("ignored a control message from \(worker): \(error)")
                    }
                }
            }
        } catch {
            logger.error("control endpoint: \(error)")
        }
        let now = Date()
        if now.timeIntervalSince(lastSweep) >= 0.2 {
            lastSweep = now
            sweep(now)
            if now.timeIntervalSince(lastNodeFlush) >= 5 {
                // Heartbeats reach the store in batches: one write for all nodes every 5 s.
                lastNodeFlush = now
                try? store.saveNodes(workers.values.map(\.record))
            }
            stopRequested(now)
            schedule(now)
        }
    }

    // MARK: Messages

    private func send(_ message: ControlMessage, to worker: String) {
        do {
            try socket.send([Array(worker.utf8), message.encoded()])
        } catch {
            logger.warning("cannot reach worker \(worker): \(error)")
        }
    }

    private func handle(_ message: ControlMessage, from worker: String) {
        let now = Date()
        switch message {
        case .register(_, let resources):
            // Ranks it still runs that this coordinator does not know (it restarted) are stopped,
            // and the worker counts as busy until they have exited.
            let stale = (resources.running ?? []).filter { !isCurrent($0) }
            let current = (resources.running ?? []).first { isCurrent($0) }
            workers[worker] = WorkerStatus(id: worker, resources: resources, lastHeartbeat: now, assignment: current ?? stale.first,
                                           registeredAt: now)
            if let status = workers[worker] { try? store.saveNodes([status.record]) }
            for assignment in stale { send(.stop(assignment: assignment, graceSeconds: configuration.stopGraceSeconds), to: worker) }
            logger.info("worker \(worker) registered: \(resources.host), \(resources.cores) cores\(resources.instanceType.map { ", \($0)" } ?? "")")
            send(.registered(worker: worker, heartbeatMilliseconds: configuration.heartbeatMilliseconds), to: worker)
        case .heartbeat(_, let running):
            guard var status = workers[worker] else {
                send(.unknownWorker(worker: worker), to: worker)
                return
            }
            status.lastHeartbeat = now
            // A rank this coordinator does not know of (say, after a restart) is stopped, and
            // keeps its worker busy until it has exited.
            for assignment in running where !isCurrent(assignment) {
                send(.stop(assignment: assignment, graceSeconds: configuration.stopGraceSeconds), to: worker)
                if status.assignment == nil { status.assignment = assignment }
            }
            if let busy = status.assignment, !running.contains(busy), !isCurrent(busy) { status.assignment = nil }
            workers[worker] = status
        case .rankStarted(let assignment, _):
            guard let (job, rank) = locate(assignment) else { return }
            attempts[job]?.started.insert(rank)
            if let attempt = attempts[job], attempt.started.count == attempt.ranks.count, attempt.failure == nil, !attempt.stopping {
                apply(.trainingStarted, to: job, at: now)
            }
        case .rankOutput(let assignment, let lines):
            guard let (job, rank) = locate(assignment), let attempt = attempts[job] else { return }
            try? store.appendLog(job: job, stream: "\(job)/attempt-\(attempt.number)/rank-\(rank)", lines: lines, at: now)
        case .rankExited(let exit):
            if var status = workers[worker], status.assignment == exit.assignment {
                status.assignment = nil
                workers[worker] = status
            }
            guard let (job, rank) = locate(exit.assignment) else { return }
            let host = workers[worker]?.resources.host ?? worker
            let detail = exit.lastError.split(separator: "\n").last.map { ": \($0)" } ?? ""
            rankEnded(job: job, rank: rank, exit: exit, failure: exit.succeeded ? nil : "rank \(rank) on \(host) \(exit.summary)\(detail)", at: now)
        default:
            logger.warning("worker \(worker) sent a message meant for workers")
        }
    }

    private func isCurrent(_ assignment: String) -> Bool { locate(assignment) != nil }

    /// The job and rank of an assignment id of a running attempt.
    private func locate(_ assignment: String) -> (String, Int)? {
        for (job, attempt) in attempts {
            if let rank = attempt.ranks.firstIndex(where: { $0.assignment == assignment }) { return (job, rank) }
        }
        return nil
    }

    private func apply(_ event: JobEvent, to job: String, at time: Date) {
        do {
            try store.apply(event, to: job, at: time)
        } catch {
            logger.error("job \(job): \(error)")
        }
    }

    /// Once every rank of an attempt has exited: the job completes, retries, fails or stops.
    private func finishIfDone(_ job: String, at now: Date) {
        guard let attempt = attempts[job], attempt.exited.count == attempt.ranks.count else { return }
        attempts[job] = nil
        for rank in attempt.ranks { if workers[rank.worker]?.assignment != nil { workers[rank.worker]?.assignment = nil } }
        guard let record = try? store.job(named: job) else { return }
        if record.state.status == .stopping {
            apply(.ranksStopped, to: job, at: now)
        } else if let failure = attempt.failure {
            logger.warning("job \(job) attempt \(attempt.number): \(failure)")
            apply(.attemptFailed(reason: failure), to: job, at: now)
        } else {
            apply(.uploadStarted, to: job, at: now)
            apply(.succeeded, to: job, at: now)
            logger.info("job \(job) completed")
        }
    }

    // MARK: Health and limits

    private func sweep(_ now: Date) {
        let limit = Double(configuration.heartbeatTimeoutMilliseconds) / 1000
        for (id, worker) in workers where now.timeIntervalSince(worker.lastHeartbeat) > limit {
            workers[id] = nil
            var record = worker.record
            record.status = "Failure"
            record.message = "no heartbeat for more than \(Int(limit)) s"
            try? store.saveNodes([record])
            logger.warning("worker \(id) on \(worker.resources.host) missed heartbeats for \(Int(limit * 1000)) ms: declared dead")
            for (job, attempt) in attempts {
                guard let rank = attempt.ranks.firstIndex(where: { $0.worker == id }), attempt.exited[rank] == nil else { continue }
                rankEnded(job: job, rank: rank,
                          exit: RankExit(assignment: attempt.ranks[rank].assignment, status: -1, signaled: false, lastError: ""),
                          failure: "rank \(rank) on \(worker.resources.host): its worker stopped heartbeating (silent for more than \(Int(limit)) s)",
                          at: now)
            }
        }
        for (job, attempt) in attempts where !attempt.stopping && now > attempt.deadline {
            apply(.maxRuntimeExceeded, to: job, at: now)
            var updated = attempt
            updated.stopping = true
            attempts[job] = updated
            stopRunningRanks(of: attempt, graceSeconds: configuration.stopGraceSeconds)
        }
    }

    // MARK: Scheduling

    private func schedule(_ now: Date) {
        guard let jobs = try? store.jobs(status: .inProgress) else { return }
        let waiting = jobs.filter { attempts[$0.name] == nil && [.starting, .pending, .restarting].contains($0.state.secondaryStatus) }
            .sorted { ($0.priority, $1.createdAt) > ($1.priority, $0.createdAt) }
        for job in waiting {
            let spec = job.spec
            let free = workers.values.filter { $0.assignment == nil && ($0.resources.instanceType == nil || $0.resources.instanceType == spec.instanceType) }
                .sorted { $0.id < $1.id }
            guard free.count >= spec.instanceCount else {
                if job.state.secondaryStatus != .pending {
                    apply(.queued(reason: "Waiting for \(spec.instanceCount) free worker\(spec.instanceCount == 1 ? "" : "s") of type \(spec.instanceType) (\(free.count) free)"),
                          to: job.name, at: now)
                }
                continue
            }
            start(job, on: Array(free.prefix(spec.instanceCount)), at: now)
        }
    }

    /// Gang-starts every rank of the job's next attempt.
    private func start(_ job: JobRecord, on chosen: [WorkerStatus], at now: Date) {
        let spec = job.spec
        let plan: RankPlan
        do {
            plan = try RankPlan(spec: spec, configuration: configuration)
        } catch {
            apply(.assigned(workers: chosen.count), to: job.name, at: now)
            apply(.attemptFailed(reason: "\(error)"), to: job.name, at: now)
            return
        }
        apply(.assigned(workers: chosen.count), to: job.name, at: now)
        // Below Linux's ephemeral range (32768-60999), so no outgoing connection on rank 0's
        // host holds it; a port another service listens on fails the attempt, which then
        // retries on another.
        let port = Int.random(in: 20_000..<32_768)
        var ranks: [(worker: String, assignment: String)] = []
        for (rank, worker) in chosen.enumerated() {
            let id = "\(job.name)/\(job.state.attempt)/\(rank)"
            let environment = ["RANK": String(rank), "LOCAL_RANK": "0", "WORLD_SIZE": String(chosen.count), "LOCAL_WORLD_SIZE": "1",
                               "GROUP_RANK": String(rank), "MASTER_ADDR": chosen[0].resources.host, "MASTER_PORT": String(port),
                               "OPENBLAS_NUM_THREADS": "1", "FORGE_JOB_NAME": job.name]
            let assignment = RankAssignment(id: id, job: job.name, attempt: job.state.attempt, rank: rank, worldSize: chosen.count,
                                            arguments: plan.arguments, environment: environment,
                                            workDirectory: (plan.jobDirectory as NSString).appendingPathComponent("attempt-\(job.state.attempt)/rank-\(rank)"))
            workers[worker.id]?.assignment = id
            ranks.append((worker.id, id))
            send(.assign(assignment), to: worker.id)
        }
        attempts[job.name] = Attempt(number: job.state.attempt, ranks: ranks,
                                     deadline: now.addingTimeInterval(Double(spec.maxRuntimeSeconds)))
        logger.info("job \(job.name) attempt \(job.state.attempt): \(chosen.count) rank(s) on \(chosen.map(\.resources.host).joined(separator: ", "))")
    }
}
