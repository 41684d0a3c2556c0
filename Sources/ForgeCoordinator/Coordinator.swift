// The coordinator's runtime: the ZeroMQ control endpoint for workers, the node registry, the
// scheduler (priority, then FIFO; gang: a job starts only when all its ranks have a worker),
// and the handling of what workers report. Durable state lives in the JobStore; what is only
// in memory (workers, which rank runs where) is rebuilt from heartbeats after a restart.
import ForgeS3
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
    /// Where rank 0's MASTER_PORT is drawn from: below Linux's ephemeral range (32768-60999),
    /// so no outgoing connection on its host holds it.
    public var masterPorts: Range<Int>
    /// Buckets kept in external S3-compatible stores (`--config`).
    public var buckets = BucketMap()

    public init(listen: String, stateDirectory: String, objectRoot: String? = nil, heartbeatMilliseconds: Int = 1000,
                heartbeatTimeoutMilliseconds: Int = 5000, stopGraceSeconds: Int = 120, clusterKeyPath: String? = nil,
                masterPorts: Range<Int> = 20_000..<32_768) {
        self.masterPorts = masterPorts
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
    /// Its Prometheus metrics (the HTTP port serves them at /metrics).
    public let metrics = ClusterMetrics()
    /// Called with every batch of lines a rank writes (job, rank, lines), on the loop's thread;
    /// `forge train` shows rank 0's as they come.
    public var outputHandler: ((String, Int, [String]) -> Void)?
    /// Running attempts: job → its ranks.
    private var attempts: [String: Attempt] = [:]
    /// Script-mode jobs whose model is being packed and uploaded, by job.
    private var packings: [String: PackingTask] = [:]
    /// Attempts per job that went again because MASTER_PORT was taken (at most `portRetryLimit`).
    private var portRetries: [String: Int] = [:]
    static let portRetryLimit = 5
    /// The most ranks a job has (CreateTrainingJob's InstanceCount limit).
    static let maxWorldSize = 4096
    /// The compiled MetricDefinitions of jobs with ranks running, by job.
    private var metricPatterns: [String: [(name: String, regex: NSRegularExpression)]] = [:]
    /// Jobs that were running when this coordinator started, waiting for their workers to
    /// report their ranks (re-attached when every rank is accounted for).
    private var recovering: [String: Recovery] = [:]
    /// Output a worker was asked to send again (assignment → the first missing line, and when).
    private var resendAsked: [String: (from: Int, at: Date)] = [:]
    private var lastSweep = Date.distantPast
    private var lastNodeFlush = Date.distantPast
    /// The store's job revision and the workers' revision the scheduler last looked at: it
    /// reads the store only when jobs or free workers may have changed.
    private var scheduledRevision = (jobs: -1, workers: -1)
    private var workersRevision = 0
    /// Nodes registered during the current batch of messages: written in one transaction at
    /// its end (a thousand workers registering at once make one write, not a thousand).
    private var registeredNodes: [JobStore.NodeRecord] = []
    /// How long a rank's failure that blames another waits for that one's own to arrive.
    static let causeGraceSeconds: TimeInterval = 2
    /// How long the loop lets control messages gather after the first arrives.
    static let batchMicroseconds = 20_000

    private struct Attempt {
        var number: Int
        /// The epoch second in its log streams' names (`JOB/algo-N-EPOCH`).
        var streamEpoch: Int
        /// Per rank: the worker and the assignment id.
        var ranks: [(worker: String, assignment: String)]
        var started: Set<Int> = []
        var exited: [Int: RankExit] = [:]
        /// Set once the attempt is failing (the first failure, named).
        var failure: String?
        /// The first failure of a rank that blames another (RankExit.peerFailedFirst), and when
        /// it came: it becomes `failure` unless the rank to blame reports its own within
        /// `causeGraceSeconds` (its report can come a moment after those it brought down).
        var blamed: (failure: String, since: Date)?
        /// Rank 0 found MASTER_PORT taken: the attempt goes again on another port.
        var portTaken = false
        var stopping = false
        var deadline: Date
    }

    /// What a restarted coordinator has learnt of a running job's ranks from its workers.
    private struct Recovery {
        var attempt: Int
        var streamEpoch: Int
        /// How long to wait for the workers before restarting the job from its checkpoint.
        var deadline: Date
        var worldSize: Int?
        var running: [Int: (worker: String, assignment: String)] = [:]
        var exited: [Int: (worker: String, exit: RankExit)] = [:]

        var complete: Bool {
            guard let worldSize else { return false }
            return (0..<worldSize).allSatisfy { running[$0] != nil || exited[$0] != nil }
        }
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
        try socket.setSendTimeout(1000)
        endpoint = try socket.bind(configuration.listen)
        logger.info("coordinator listening for workers at \(endpoint); state in \(configuration.stateDirectory)")
        recover(Date())
    }

    /// After a restart: jobs that were running (or stopping) wait up to one heartbeat timeout
    /// for their workers to re-register and say which of their ranks still run and how the
    /// others ended. A job whose every rank is accounted for is re-attached and goes on as if
    /// nothing happened; the others restart from their latest checkpoints without using up a
    /// retry (or, when stopping, are stopped). Queued jobs wait.
    private func recover(_ now: Date) {
        guard let jobs = try? store.jobs() else { return }
        let window = Double(max(configuration.heartbeatTimeoutMilliseconds, 3 * configuration.heartbeatMilliseconds)) / 1000
        for job in jobs {
            switch (job.state.status, job.state.secondaryStatus) {
            case (.inProgress, .downloading), (.inProgress, .training), (.inProgress, .uploading), (.stopping, _):
                logger.info("job \(job.name) was running when the coordinator stopped: waiting up to \(Int(window)) s for its workers")
                recovering[job.name] = Recovery(attempt: job.state.attempt, streamEpoch: Coordinator.streamEpoch(of: job, now: now),
                                                deadline: now.addingTimeInterval(window))
            default:
                break
            }
        }
    }

    /// Takes what a worker reports of a rank into the recovery of its job.
    private func adopt(_ assignment: String, worldSize: Int?, exit: RankExit?, worker: String, at now: Date) {
        guard let (job, attempt, rank) = RankAssignment.parse(id: assignment), var recovery = recovering[job],
              recovery.attempt == attempt, rank < Coordinator.maxWorldSize else { return }
        if let worldSize {
            guard (1...Coordinator.maxWorldSize).contains(worldSize), rank < worldSize else { return }
            recovery.worldSize = worldSize
        }
        if let exit {
            recovery.running[rank] = nil
            recovery.exited[rank] = (worker, exit)
        } else if recovery.exited[rank] == nil {
            recovery.running[rank] = (worker, assignment)
        }
        recovering[job] = recovery
        if recovery.complete { reattach(job, at: now) }
    }

    /// Makes a recovered job's ranks the running attempt again.
    private func reattach(_ job: String, at now: Date) {
        guard let record = try? store.job(named: job), let recovery = recovering.removeValue(forKey: job),
              let worldSize = recovery.worldSize else { return }
        if record.state.status.isTerminal {
            // It ended while it was being recovered (say, stopped with no rank to stop yet).
            for rank in recovery.running.values { send(.stop(assignment: rank.assignment, graceSeconds: 10), to: rank.worker) }
            return
        }
        let ranks = (0..<worldSize).map { rank in
            recovery.running[rank] ?? (recovery.exited[rank]?.worker ?? "", "\(job)/\(recovery.attempt)/\(rank)")
        }
        var attempt = Attempt(number: recovery.attempt, streamEpoch: recovery.streamEpoch, ranks: ranks,
                              deadline: Coordinator.deadline(of: record, now: now))
        attempt.started = Set(0..<worldSize)
        for (rank, ended) in recovery.exited { attempt.exited[rank] = ended.exit }
        let host = { (worker: String) in self.workers[worker]?.resources.host ?? worker }
        let ended = recovery.exited.sorted(by: { $0.key < $1.key })
        if let (rank, ended) = ended.first(where: { !$0.value.exit.succeeded && !$0.value.exit.peerFailedFirst })
            ?? ended.first(where: { !$0.value.exit.succeeded }) {
            attempt.failure = "rank \(rank) on \(host(ended.worker)) \(ended.exit.summary)\(Coordinator.detail(of: ended.exit))"
        }
        attempts[job] = attempt
        watchMetrics(of: record.spec)
        let message = "re-attached attempt \(recovery.attempt) after a coordinator restart: \(recovery.running.count) rank(s) still running, \(recovery.exited.count) ended"
        logger.info("job \(job): \(message)")
        try? store.note(job: job, kind: "Reattached", message: message, at: now)
        if record.state.secondaryStatus == .downloading { apply(.trainingStarted, to: job, at: now) }
        if record.state.status == .stopping {
            // A stop asked for before (or while) the coordinator was away: carried out now.
            attempts[job]?.stopping = true
            stopRunningRanks(of: attempt, graceSeconds: configuration.stopGraceSeconds)
        } else if attempt.failure != nil {
            stopRunningRanks(of: attempt, graceSeconds: 10)
        }
        finishIfDone(job, at: now)
    }

    /// Recoveries whose window has passed without every rank accounted for: the ranks found
    /// are stopped, and the job restarts from its checkpoint (or, when stopping, is stopped).
    private func abandonRecoveries(_ now: Date) {
        for (job, recovery) in recovering where now > recovery.deadline {
            guard let record = try? store.job(named: job) else { continue }
            recovering[job] = nil
            for rank in recovery.running.values { send(.stop(assignment: rank.assignment, graceSeconds: 10), to: rank.worker) }
            let found = "\(recovery.running.count + recovery.exited.count) of \(recovery.worldSize.map(String.init) ?? "its") ranks"
            if record.state.status == .stopping {
                apply(.ranksStopped, to: job, at: now)
            } else {
                logger.warning("job \(job): its workers reported \(found) after the coordinator restarted: restarting it from its latest checkpoint")
                apply(.attemptInterrupted(reason: "the coordinator restarted while it ran, and its workers reported \(found)"), to: job, at: now)
            }
        }
    }

    /// When a running attempt of `record` must end by: `MaxRuntimeInSeconds` after it began
    /// downloading.
    private static func deadline(of record: JobRecord, now: Date) -> Date {
        let began = record.state.transitions.last { $0.status == .downloading }?.startTime ?? now
        return began.addingTimeInterval(Double(record.spec.maxRuntimeSeconds))
    }

    /// The epoch second that names an attempt's log streams: when it began downloading, plus
    /// the attempts before it, so that attempts started within one second still get streams of
    /// their own (and a restarted coordinator computes the same from the store).
    private static func streamEpoch(of record: JobRecord, now: Date) -> Int {
        let began = record.state.transitions.last { $0.status == .downloading }?.startTime ?? now
        return Int(began.timeIntervalSince1970) + record.state.attempt - 1
    }

    /// A rank's log stream, named as SageMaker names an instance's: `JOB/algo-(RANK+1)-EPOCH`.
    public static func logStream(job: String, rank: Int, epoch: Int) -> String {
        "\(job)/algo-\(rank + 1)-\(epoch)"
    }

    /// ": the last line of standard error", or nothing.
    private static func detail(of exit: RankExit) -> String {
        exit.lastError.split(separator: "\n").last.map { ": \($0)" } ?? ""
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
        for job in stopping where recovering[job.name] == nil {
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
        if rank == 0, exit.portTaken { attempt.portTaken = true }
        if let failure, attempt.failure == nil, !attempt.stopping {
            if exit.peerFailedFirst {
                // Held back (nothing is stopped meanwhile) for the failure that caused it.
                if attempt.blamed == nil { attempt.blamed = (failure, now) }
            } else {
                attempt.failure = failure
                stopRunningRanks(of: attempt, graceSeconds: 10)
            }
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
                // Let 20 ms of messages gather: with a thousand workers heartbeating, waking
                // for each one costs more than handling it.
                usleep(UInt32(Coordinator.batchMicroseconds))
                while let frames = try socket.receiveMessageIfReady() {
                    guard frames.count == 2, let worker = String(validating: frames[0].array, as: UTF8.self) else { continue }
                    do {
                        let message = try ControlMessage(decoding: frames[1].array)
                        if case .heartbeat = message { metrics.received(heartbeat: true) } else { metrics.received(heartbeat: false) }
                        handle(message, from: worker)
                    } catch {
                        logger.warning("ignored a control message from \(worker): \(error)")
                    }
                }
                if !registeredNodes.isEmpty {
                    try? store.saveNodes(registeredNodes)
                    registeredNodes = []
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
            // The store is read only when jobs changed or workers came, went or were freed.
            let revision = (jobs: store.jobsRevision, workers: workersRevision)
            if revision != scheduledRevision {
                scheduledRevision = revision
                stopRequested(now)
                schedule(now)
            }
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
            // Ranks of jobs this coordinator is recovering (it restarted) are taken back; others
            // it does not know are stopped, and the worker counts as busy until they have exited.
            for report in resources.ranks ?? [] {
                adopt(report.assignment, worldSize: report.worldSize, exit: report.exit, worker: worker, at: now)
            }
            workersRevision += 1
            let stale = (resources.running ?? []).filter { !isCurrent($0) }
            let current = (resources.running ?? []).first { isCurrent($0) }
            workers[worker] = WorkerStatus(id: worker, resources: resources, lastHeartbeat: now, assignment: current ?? stale.first,
                                           registeredAt: now)
            if let status = workers[worker] { registeredNodes.append(status.record) }
            for assignment in stale { send(.stop(assignment: assignment, graceSeconds: configuration.stopGraceSeconds), to: worker) }
            logger.info("worker \(worker) registered: \(resources.host), \(resources.cores) cores, \(resources.memoryBytes >> 20) MiB, devices \((resources.devices ?? ["cpu"]).joined(separator: " "))\(resources.instanceType.map { ", \($0)" } ?? "")")
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
            if let busy = status.assignment, !running.contains(busy), !isCurrent(busy) {
                status.assignment = nil
                workersRevision += 1
            }
            workers[worker] = status
        case .rankStarted(let assignment, _):
            guard let (job, rank) = locate(assignment) else { return }
            attempts[job]?.started.insert(rank)
            if let attempt = attempts[job], attempt.started.count == attempt.ranks.count, attempt.failure == nil, !attempt.stopping {
                apply(.trainingStarted, to: job, at: now)
            }
        case .rankOutput(let assignment, let sent, let first, let oldestKept):
            guard let (job, _, rank) = RankAssignment.parse(id: assignment), isCurrent(assignment),
                  let epoch = attempts[job]?.streamEpoch ?? recovering[job].map(\.streamEpoch) else { return }
            let stream = Coordinator.logStream(job: job, rank: rank, epoch: epoch)
            // Numbered lines are stored once and in order (a worker sends what it kept again when
            // it re-registers); only the new ones go on to metrics and watchers. Lines after a
            // gap (lost on their way to a coordinator that went down) wait for the worker to
            // send the gap again, asked for at most once a second.
            let lines: [String]
            if let first {
                switch try? store.appendOutput(job: job, stream: stream, first: first, lines: sent, oldestKept: oldestKept, at: now) {
                case .appended(let fresh)?:
                    resendAsked[assignment] = nil
                    guard !fresh.isEmpty else { return }
                    lines = fresh
                case .missing(let from)?:
                    if let asked = resendAsked[assignment], asked.from == from, now.timeIntervalSince(asked.at) < 1 { return }
                    resendAsked[assignment] = (from, now)
                    logger.info("output of \(assignment) from line \(from) on is missing: asking worker \(worker) to send it again")
                    send(.resendOutput(assignment: assignment, from: from), to: worker)
                    return
                case nil:
                    return
                }
            } else {
                lines = sent
                try? store.appendLog(job: job, stream: stream, lines: lines, at: now)
            }
            if let patterns = metricPatterns[job] { try? store.recordMetrics(job: job, values: Coordinator.metrics(in: lines, patterns), at: now) }
            metrics.observe(job: job, rank: rank, worldSize: attempts[job]?.ranks.count ?? 1, lines: lines, at: now)
            // A built-in's closing line (`final: validation:accuracy=0.98 …`) holds its final
            // metrics, wherever its metrics.json went.
            if rank == 0 { try? store.recordMetrics(job: job, values: Coordinator.finalMetrics(in: lines), at: now) }
            outputHandler?(job, rank, lines)
        case .rankExited(let exit):
            metrics.rankExited(succeeded: exit.succeeded)
            resendAsked[exit.assignment] = nil
            if var status = workers[worker], status.assignment == exit.assignment {
                status.assignment = nil
                workers[worker] = status
                workersRevision += 1
            }
            guard let (job, rank) = locate(exit.assignment) else {
                adopt(exit.assignment, worldSize: nil, exit: exit, worker: worker, at: now)
                return
            }
            let host = workers[worker]?.resources.host ?? worker
            rankEnded(job: job, rank: rank, exit: exit,
                      failure: exit.succeeded ? nil : "rank \(rank) on \(host) \(exit.summary)\(Coordinator.detail(of: exit))", at: now)
        default:
            logger.warning("worker \(worker) sent a message meant for workers")
        }
    }

    /// The values `patterns` find in `lines`: each pattern's first capture group (or whole
    /// match), where it reads as a number.
    static func metrics(in lines: [String], _ patterns: [(name: String, regex: NSRegularExpression)]) -> [(name: String, value: Double)] {
        var found = [(name: String, value: Double)]()
        for line in lines {
            let range = NSRange(line.startIndex..., in: line)
            for (name, regex) in patterns {
                guard let match = regex.firstMatch(in: line, range: range) else { continue }
                let group = match.numberOfRanges > 1 ? match.range(at: 1) : match.range
                guard let span = Range(group, in: line), let value = Double(line[span].trimmingCharacters(in: .whitespaces)),
                      value.isFinite else { continue }
                found.append((name, value))
            }
        }
        return found
    }

    /// The `name=value` pairs of a built-in's `final: …` log line.
    static func finalMetrics(in lines: [String]) -> [(name: String, value: Double)] {
        var found = [(name: String, value: Double)]()
        for line in lines {
            guard let marker = line.range(of: "] final: ") ?? (line.hasPrefix("final: ") ? line.range(of: "final: ") : nil) else { continue }
            for pair in line[marker.upperBound...].split(separator: " ") {
                let parts = pair.split(separator: "=", maxSplits: 1)
                if parts.count == 2, let value = Double(parts[1]), value.isFinite { found.append((String(parts[0]), value)) }
            }
        }
        return found
    }

    /// Compiles a job's MetricDefinitions (validated when it was submitted) for its running ranks.
    private func watchMetrics(of spec: TrainingJobSpec) {
        let patterns = (spec.metricDefinitions ?? []).compactMap { definition in
            (try? NSRegularExpression(pattern: definition.regex)).map { (name: definition.name, regex: $0) }
        }
        metricPatterns[spec.name] = patterns.isEmpty ? nil : patterns
    }

    /// Whether `assignment` is a rank of a running attempt, or of one being recovered.
    private func isCurrent(_ assignment: String) -> Bool {
        if locate(assignment) != nil { return true }
        guard let (job, attempt, rank) = RankAssignment.parse(id: assignment), rank < Coordinator.maxWorldSize else { return false }
        return recovering[job]?.attempt == attempt
    }

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
        guard var attempt = attempts[job], attempt.exited.count == attempt.ranks.count else { return }
        if attempt.failure == nil { attempt.failure = attempt.blamed?.failure }
        attempts[job] = nil
        metricPatterns[job] = nil
        metrics.ended(job: job)
        for rank in attempt.ranks where workers[rank.worker]?.assignment == rank.assignment { workers[rank.worker]?.assignment = nil }
        workersRevision += 1
        guard let record = try? store.job(named: job) else { return }
        if record.state.status == .stopping {
            apply(.ranksStopped, to: job, at: now)
        } else if attempt.portTaken, portRetries[job, default: 0] < Coordinator.portRetryLimit {
            portRetries[job, default: 0] += 1
            let host = workers[attempt.ranks[0].worker]?.resources.host ?? attempt.ranks[0].worker
            logger.warning("job \(job) attempt \(attempt.number): MASTER_PORT was taken on \(host); going again on another port")
            apply(.attemptInterrupted(reason: "rank 0's MASTER_PORT was taken on \(host); going again on another port"), to: job, at: now)
        } else if let failure = attempt.failure {
            logger.warning("job \(job) attempt \(attempt.number): \(failure)")
            apply(.attemptFailed(reason: failure), to: job, at: now)
        } else {
            apply(.uploadStarted, to: job, at: now)
            let plan: RankPlan
            do {
                plan = try RankPlan(spec: record.spec, configuration: configuration, attempt: attempt.number)
            } catch {
                apply(.attemptFailed(reason: "the job's output cannot be placed: \(error)"), to: job, at: now)
                return
            }
            if plan.isScriptMode {
                // The ranks' /opt/ml/model folders, merged, become model.tar.gz (and their
                // output/data folders output.tar.gz), where SageMaker puts them. That can take
                // long for a large model, so it runs on a thread of its own while the job is
                // Uploading, and the loop picks up the outcome (collectPackings).
                let task = PackingTask()
                let buckets = configuration.buckets
                let number = attempt.number
                packings[job] = task
                Thread.detachNewThread {
                    do {
                        try ScriptArtifacts.publish(plan: plan, attempt: number, buckets: buckets)
                        task.finish(nil)
                    } catch {
                        task.finish("packing the model folder into model.tar.gz failed: \(error)")
                    }
                }
                return
            }
            apply(.succeeded, to: job, at: now)
            logger.info("job \(job) completed")
        }
    }

    // MARK: Health and limits

    /// Jobs whose packing ended: they complete, or their attempt fails with the reason.
    private func collectPackings(_ now: Date) {
        for (job, task) in packings {
            guard let outcome = task.outcome else { continue }
            packings[job] = nil
            if let failure = outcome {
                apply(.attemptFailed(reason: failure), to: job, at: now)
            } else {
                apply(.succeeded, to: job, at: now)
                logger.info("job \(job) completed")
            }
        }
    }

    private func sweep(_ now: Date) {
        collectPackings(now)
        let limit = Double(configuration.heartbeatTimeoutMilliseconds) / 1000
        abandonRecoveries(now)
        for (id, worker) in workers where now.timeIntervalSince(worker.lastHeartbeat) > limit {
            workers[id] = nil
            workersRevision += 1
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
        for (job, attempt) in attempts where attempt.failure == nil && !attempt.stopping {
            guard let blamed = attempt.blamed, now.timeIntervalSince(blamed.since) >= Coordinator.causeGraceSeconds else { continue }
            // A worker not heard from since may have died with its rank (the likeliest cause of a
            // lost peer): wait for its heartbeat, or for the sweep above to declare it dead,
            // which names that rank instead.
            let silent = attempt.ranks.indices.contains { rank in
                attempt.exited[rank] == nil && (workers[attempt.ranks[rank].worker]?.lastHeartbeat ?? .distantPast) < blamed.since
            }
            if silent && now.timeIntervalSince(blamed.since) <= limit { continue }
            attempts[job]?.failure = blamed.failure
            stopRunningRanks(of: attempt, graceSeconds: 10)
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
        guard let jobs = try? store.jobs(status: .inProgress) else {
            scheduledRevision = (-1, -1)  // look again on the next sweep
            return
        }
        let waiting = jobs.filter { attempts[$0.name] == nil && [.starting, .pending, .restarting].contains($0.state.secondaryStatus) }
            .sorted { ($0.priority, $1.createdAt) > ($1.priority, $0.createdAt) }
        for job in waiting {
            let spec = job.spec
            let free = workers.values.filter { $0.assignment == nil && ($0.resources.instanceType == nil || $0.resources.instanceType == spec.instanceType) }
                .sorted { $0.id < $1.id }
            // A job that has run before and allows it (forge_min_instance_count) resumes on the
            // workers there are rather than wait for the full count (elastic resume).
            // A split model takes a multiple of the ranks one copy spans.
            let usable = free.count / spec.modelSplit * spec.modelSplit
            let count = free.count >= spec.instanceCount ? spec.instanceCount
                : (job.state.attempt > 1 && usable >= max(spec.minInstanceCount, spec.modelSplit) ? usable : nil)
            guard let count else {
                if job.state.secondaryStatus != .pending {
                    apply(.queued(reason: "Waiting for \(spec.instanceCount) free worker\(spec.instanceCount == 1 ? "" : "s") of type \(spec.instanceType) (\(free.count) free)"),
                          to: job.name, at: now)
                }
                continue
            }
            if count < spec.instanceCount {
                let message = "resuming on \(count) of \(spec.instanceCount) instances (forge_min_instance_count \(spec.minInstanceCount)): the same global batch, re-sharded"
                logger.warning("job \(job.name): \(message)")
                try? store.note(job: job.name, kind: "Elastic", message: message, at: now)
            }
            start(job, on: Array(free.prefix(count)), at: now)
        }
    }

    /// Gang-starts every rank of the job's next attempt.
    private func start(_ job: JobRecord, on chosen: [WorkerStatus], at now: Date) {
        let spec = job.spec
        let plan: RankPlan
        do {
            plan = try RankPlan(spec: spec, configuration: configuration, attempt: job.state.attempt)
        } catch {
            apply(.assigned(workers: chosen.count), to: job.name, at: now)
            apply(.attemptFailed(reason: "\(error)"), to: job.name, at: now)
            return
        }
        apply(.assigned(workers: chosen.count), to: job.name, at: now)
        if let uri = spec.checkpointUri, configuration.buckets.endpoint(of: uri) != nil, job.state.attempt == 1 {
            // Said, not hidden: checkpoints are not synced to external endpoints yet.
            try? store.note(job: job.name, kind: "CheckpointsLocal",
                            message: "checkpoints for \(uri) are kept in this coordinator's store (\(plan.checkpointDirectory)), not at the bucket's external endpoint",
                            at: now)
        }
        // A port another program listens on makes rank 0 exit with `portTakenStatus`, and the
        // attempt goes again on another (see finishIfDone).
        let port = Int.random(in: configuration.masterPorts)
        var ranks: [(worker: String, assignment: String)] = []
        for (rank, worker) in chosen.enumerated() {
            let id = "\(job.name)/\(job.state.attempt)/\(rank)"
            let environment = ["RANK": String(rank), "LOCAL_RANK": "0", "WORLD_SIZE": String(chosen.count), "LOCAL_WORLD_SIZE": "1",
                               "GROUP_RANK": String(rank), "MASTER_ADDR": chosen[0].resources.host, "MASTER_PORT": String(port),
                               "OPENBLAS_NUM_THREADS": "1", "FORGE_JOB_NAME": job.name].merging(plan.environment) { first, _ in first }
                .merging(spec.environment) { first, _ in first }
            let assignment = RankAssignment(id: id, job: job.name, attempt: job.state.attempt, rank: rank, worldSize: chosen.count,
                                            arguments: plan.arguments, environment: environment,
                                            workDirectory: (plan.jobDirectory as NSString).appendingPathComponent("attempt-\(job.state.attempt)/rank-\(rank)"))
            workers[worker.id]?.assignment = id
            ranks.append((worker.id, id))
            send(.assign(assignment), to: worker.id)
        }
        attempts[job.name] = Attempt(number: job.state.attempt, streamEpoch: Int(now.timeIntervalSince1970) + job.state.attempt - 1, ranks: ranks,
                                     deadline: now.addingTimeInterval(Double(spec.maxRuntimeSeconds)))
        watchMetrics(of: spec)
        logger.info("job \(job.name) attempt \(job.state.attempt): \(chosen.count) rank(s) on \(chosen.map(\.resources.host).joined(separator: ", "))")
    }
}

/// The outcome of packing a script-mode job's model on a thread of its own: nil while it runs,
/// then nil inside for success or the reason it failed.
///
/// Concurrency: Sendable; guarded by a lock.
final class PackingTask: @unchecked Sendable {
    private let lock = NSLock()
    private var result: String??

    func finish(_ failure: String?) {
        lock.lock()
        result = .some(failure)
        lock.unlock()
    }

    var outcome: String?? {
        lock.lock()
        defer { lock.unlock() }
        return result
    }
}
