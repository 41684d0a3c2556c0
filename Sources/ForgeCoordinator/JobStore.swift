// The coordinator's durable state: jobs and their event log in SQLite (GRDB), under the state
// folder. Every change is one transaction: a job and its first event appear together, a
// transition and the event that caused it are written together, and a refused change leaves
// the store as it was.
import Foundation
import Synchronization
import GRDB

/// A job as stored: its spec, its state, when it was created and last changed.
public struct JobRecord: Sendable, Equatable {
    public var spec: TrainingJobSpec
    public var arn: String
    public var state: JobState
    public var priority: Int
    public var createdAt: Date
    public var modifiedAt: Date

    public var name: String { spec.name }
}

/// One line of a job's event log.
public struct JobLogEvent: Sendable, Equatable {
    public var time: Date
    public var kind: String
    public var message: String
}

/// Why the store refused a request.
public enum JobStoreError: Error, Equatable, CustomStringConvertible {
    /// A job of that name exists (SageMaker's `ResourceInUse`).
    case duplicate(String)
    /// No job of that name (SageMaker's `ResourceNotFound`).
    case notFound(String)
    /// The event does not apply to the job's state.
    case transition(JobTransitionError)
    /// SQLite failed (the path and what it said).
    case database(String)

    public var description: String {
        switch self {
        case .duplicate(let name): return "Training job \(name) already exists"
        case .notFound(let name): return "Requested resource not found: training job \(name)"
        case .transition(let error): return error.description
        case .database(let reason): return "job store: \(reason)"
        }
    }
}

/// Jobs and events in one SQLite file.
///
/// Concurrency: Sendable; GRDB's `DatabaseQueue` serialises every access.
public final class JobStore: Sendable {
    public let path: String
    private let database: DatabaseQueue
    private let arnPrefix: String
    private let revision = Mutex(0)

    /// Goes up with every change to a job (created, or an event applied), from any thread: a
    /// reader that saw the same value has nothing new to read.
    public var jobsRevision: Int { revision.withLock { $0 } }

    /// Opens (creating if needed) the store at `path`, migrating it to the current schema.
    public init(path: String, region: String = "us-east-1", account: String = "000000000000") throws(JobStoreError) {
        self.path = path
        arnPrefix = "arn:aws:sagemaker:\(region):\(account):training-job/"
        do {
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            var configuration = Configuration()
            configuration.busyMode = .timeout(5)
            // Write-ahead logging, synced at checkpoints: a commit costs an append rather than
            // two fsyncs (log lines and heartbeats are most of the writes), and a crash of the
            // coordinator loses nothing committed.
            configuration.prepareDatabase { db in
                try db.execute(sql: "PRAGMA journal_mode = WAL")
                try db.execute(sql: "PRAGMA synchronous = NORMAL")
            }
            database = try DatabaseQueue(path: path, configuration: configuration)
            var migrator = DatabaseMigrator()
            migrator.registerMigration("v1") { db in
                try db.create(table: "job") { table in
                    table.primaryKey("name", .text)
                    table.column("arn", .text).notNull()
                    table.column("spec", .text).notNull()
                    table.column("state", .text).notNull()
                    table.column("status", .text).notNull().indexed()
                    table.column("priority", .integer).notNull()
                    table.column("createdAt", .double).notNull()
                    table.column("modifiedAt", .double).notNull()
                }
                try db.create(table: "event") { table in
                    table.autoIncrementedPrimaryKey("id")
                    table.column("job", .text).notNull().indexed().references("job", onDelete: .cascade)
                    table.column("time", .double).notNull()
                    table.column("kind", .text).notNull()
                    table.column("message", .text).notNull()
                }
            }
            migrator.registerMigration("v2-logs") { db in
                try db.create(table: "log") { table in
                    table.autoIncrementedPrimaryKey("id")
                    table.column("job", .text).notNull().references("job", onDelete: .cascade)
                    table.column("stream", .text).notNull()
                    table.column("time", .double).notNull()
                    table.column("line", .text).notNull()
                }
                try db.create(index: "log_by_stream", on: "log", columns: ["job", "stream", "id"])
                try db.create(index: "log_by_name", on: "log", columns: ["stream", "id"])
            }
            migrator.registerMigration("v3-nodes") { db in
                try db.create(table: "node") { table in
                    table.primaryKey("id", .text)
                    table.column("host", .text).notNull()
                    table.column("cores", .integer).notNull()
                    table.column("memoryBytes", .integer).notNull()
                    table.column("instanceType", .text)
                    table.column("instanceGroup", .text)
                    table.column("registeredAt", .double).notNull()
                    table.column("lastHeartbeat", .double).notNull()
                    table.column("status", .text).notNull()
                    table.column("message", .text).notNull()
                    table.column("assignment", .text)
                }
            }
            migrator.registerMigration("v4-metrics") { db in
                try db.create(table: "metric") { table in
                    table.autoIncrementedPrimaryKey("id")
                    table.column("job", .text).notNull().references("job", onDelete: .cascade)
                    table.column("name", .text).notNull()
                    table.column("value", .double).notNull()
                    table.column("time", .double).notNull()
                }
                try db.create(index: "metric_by_job", on: "metric", columns: ["job", "name", "id"])
            }
            migrator.registerMigration("v5-log-cursor") { db in
                // How many lines of each rank's output a stream holds (lost lines included), so
                // that output a worker sends again after a coordinator restart is stored once.
                try db.create(table: "log_cursor") { table in
                    table.column("job", .text).notNull().references("job", onDelete: .cascade)
                    table.column("stream", .text).notNull()
                    table.column("next", .integer).notNull()
                    table.primaryKey(["job", "stream"])
                }
            }
            try migrator.migrate(database)
        } catch {
            throw .database("\(path): \(error)")
        }
    }

    /// Stores a new job (`InProgress`, `Starting`) and its creation event, together.
    @discardableResult
    public func create(_ spec: TrainingJobSpec, at time: Date, priority: Int = 0) throws(JobStoreError) -> JobRecord {
        let record = JobRecord(spec: spec, arn: arnPrefix + spec.name, state: JobState(createdAt: time, maxRetries: spec.maxRetryAttempts),
                               priority: priority, createdAt: time, modifiedAt: time)
        try write { db in
            if try Row.fetchOne(db, sql: "SELECT 1 FROM job WHERE name = ?", arguments: [spec.name]) != nil {
                throw JobStoreError.duplicate(spec.name)
            }
            try db.execute(sql: "INSERT INTO job (name, arn, spec, state, status, priority, createdAt, modifiedAt) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           arguments: [spec.name, record.arn, try JobStore.json(spec), try JobStore.json(record.state),
                                       record.state.status.rawValue, priority, time.timeIntervalSince1970, time.timeIntervalSince1970])
            try JobStore.log(db, job: spec.name, time: time, kind: "Created",
                             message: "\(spec.instanceCount) × \(spec.instanceType), \(spec.builtInAlgorithm.map { "built-in \($0)" } ?? "script mode")")
        }
        revision.withLock { $0 += 1 }
        return record
    }

    /// The job called `name`.
    public func job(named name: String) throws(JobStoreError) -> JobRecord {
        try read { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM job WHERE name = ?", arguments: [name]) else {
                throw JobStoreError.notFound(name)
            }
            return try JobStore.record(row)
        }
    }

    /// Jobs, newest first, optionally only those with `status`.
    public func jobs(status: TrainingJobStatus? = nil) throws(JobStoreError) -> [JobRecord] {
        try read { db in
            let rows = status == nil
                ? try Row.fetchAll(db, sql: "SELECT * FROM job ORDER BY createdAt DESC, name")
                : try Row.fetchAll(db, sql: "SELECT * FROM job WHERE status = ? ORDER BY createdAt DESC, name", arguments: [status?.rawValue])
            return try rows.map(JobStore.record)
        }
    }

    /// Applies `event` to the job through the state machine and logs it, in one transaction;
    /// a refused event changes nothing.
    @discardableResult
    public func apply(_ event: JobEvent, to name: String, at time: Date) throws(JobStoreError) -> JobRecord {
        let changed = try write { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM job WHERE name = ?", arguments: [name]) else {
                throw JobStoreError.notFound(name)
            }
            var record = try JobStore.record(row)
            switch JobStateMachine.apply(event, to: record.state, at: time) {
            case .failure(let error):
                throw JobStoreError.transition(error)
            case .success(let state):
                record.state = state
                record.modifiedAt = time
            }
            try db.execute(sql: "UPDATE job SET state = ?, status = ?, modifiedAt = ? WHERE name = ?",
                           arguments: [try JobStore.json(record.state), record.state.status.rawValue, time.timeIntervalSince1970, name])
            let message = record.state.transitions.last.map { "\($0.status.rawValue): \($0.message)" } ?? ""
            try JobStore.log(db, job: name, time: time, kind: JobStore.kind(of: event), message: message)
            return record
        }
        revision.withLock { $0 += 1 }
        return changed
    }

    /// The job's event log, oldest first.
    public func events(of name: String) throws(JobStoreError) -> [JobLogEvent] {
        try read { db in
            guard try Row.fetchOne(db, sql: "SELECT 1 FROM job WHERE name = ?", arguments: [name]) != nil else {
                throw JobStoreError.notFound(name)
            }
            return try Row.fetchAll(db, sql: "SELECT time, kind, message FROM event WHERE job = ? ORDER BY id", arguments: [name]).map { row in
                JobLogEvent(time: Date(timeIntervalSince1970: row["time"]), kind: row["kind"], message: row["message"])
            }
        }
    }

    /// Appends lines to one of the job's log streams (a rank of an attempt).
    public func appendLog(job: String, stream: String, lines: [String], at time: Date) throws(JobStoreError) {
        try write { db in
            for line in lines {
                try db.execute(sql: "INSERT INTO log (job, stream, time, line) VALUES (?, ?, ?, ?)",
                               arguments: [job, stream, time.timeIntervalSince1970, line])
            }
        }
    }

    /// What `appendOutput` did.
    public enum OutputAppend: Sendable, Equatable {
        /// These lines went in (none: the stream held them all).
        case appended([String])
        /// Lines from this index on are missing before the ones given: nothing went in.
        case missing(from: Int)
    }

    /// Appends lines of a rank's output numbered from `first` (the first line's index in that
    /// output), each line once and in order: lines the stream already holds (a worker sends what
    /// it kept again when it re-registers) are skipped. Lines that leave a gap are refused
    /// (`missing`), unless `oldestKept`: they are the oldest the worker still has, and the gap
    /// becomes one line saying how many lines were lost. The lines appended, the mark included.
    public func appendOutput(job: String, stream: String, first: Int, lines: [String], oldestKept: Bool = false,
                             at time: Date) throws(JobStoreError) -> OutputAppend {
        try write { db in
            let next = try Int.fetchOne(db, sql: "SELECT next FROM log_cursor WHERE job = ? AND stream = ?", arguments: [job, stream])
                // A stream from before the cursor: its lines so far.
                ?? Int.fetchOne(db, sql: "SELECT COUNT(*) FROM log WHERE job = ? AND stream = ?", arguments: [job, stream]) ?? 0
            if first > next, !oldestKept { return .missing(from: next) }
            var fresh = Array(lines.dropFirst(max(0, next - first)))
            guard !fresh.isEmpty else { return .appended([]) }
            if first > next {
                fresh.insert("[forge] \(first - next) line(s) of this rank's output were lost (its worker no longer had them)", at: 0)
            }
            for line in fresh {
                try db.execute(sql: "INSERT INTO log (job, stream, time, line) VALUES (?, ?, ?, ?)",
                               arguments: [job, stream, time.timeIntervalSince1970, line])
            }
            try db.execute(sql: "INSERT INTO log_cursor (job, stream, next) VALUES (?, ?, ?) ON CONFLICT (job, stream) DO UPDATE SET next = excluded.next",
                           arguments: [job, stream, first + lines.count])
            return .appended(fresh)
        }
    }

    /// The job's log streams, in the order they first wrote.
    public func logStreams(of job: String) throws(JobStoreError) -> [String] {
        try read { db in
            try String.fetchAll(db, sql: "SELECT stream FROM log WHERE job = ? GROUP BY stream ORDER BY MIN(id)", arguments: [job])
        }
    }

    /// Lines of one stream, oldest first.
    public func logLines(of job: String, stream: String) throws(JobStoreError) -> [String] {
        try read { db in
            try String.fetchAll(db, sql: "SELECT line FROM log WHERE job = ? AND stream = ? ORDER BY id", arguments: [job, stream])
        }
    }

    /// One line of a log stream with its place in the store.
    public struct LogLine: Sendable, Equatable {
        public var id: Int64
        public var time: Date
        public var line: String
    }

    /// A log stream's name, first and last times and size.
    public struct LogStreamSummary: Sendable, Equatable {
        public var name: String
        public var first: Date
        public var last: Date
        public var bytes: Int
    }

    /// The log streams whose names start with `prefix`, by name.
    public func logStreams(prefix: String) throws(JobStoreError) -> [LogStreamSummary] {
        try read { db in
            try Row.fetchAll(db, sql: """
                SELECT stream, MIN(time) AS first, MAX(time) AS last, SUM(LENGTH(line)) AS bytes FROM log
                WHERE substr(stream, 1, length(?)) = ? GROUP BY stream ORDER BY stream
                """, arguments: [prefix, prefix]).map { row in
                LogStreamSummary(name: row["stream"], first: Date(timeIntervalSince1970: row["first"]),
                                 last: Date(timeIntervalSince1970: row["last"]), bytes: row["bytes"])
            }
        }
    }

    /// Lines of `stream` after the line `afterID` (0: from the start), at or after `since`,
    /// oldest first, at most `limit`.
    public func logLines(stream: String, afterID: Int64, since: Date?, limit: Int) throws(JobStoreError) -> [LogLine] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT id, time, line FROM log WHERE stream = ? AND id > ? AND time >= ? ORDER BY id LIMIT ?",
                             arguments: [stream, afterID, since?.timeIntervalSince1970 ?? 0, limit]).map { row in
                LogLine(id: row["id"], time: Date(timeIntervalSince1970: row["time"]), line: row["line"])
            }
        }
    }

    /// A worker as the registry last saw it.
    public struct NodeRecord: Sendable, Equatable {
        public var id: String
        public var host: String
        public var cores: Int
        public var memoryBytes: Int64
        public var instanceType: String?
        public var instanceGroup: String?
        public var registeredAt: Date
        public var lastHeartbeat: Date
        /// `Running`, or `Failure` once it stopped heartbeating.
        public var status: String
        public var message: String
        public var assignment: String?

        public init(id: String, host: String, cores: Int, memoryBytes: Int64, instanceType: String?, instanceGroup: String?,
                    registeredAt: Date, lastHeartbeat: Date, status: String, message: String, assignment: String?) {
            self.id = id
            self.host = host
            self.cores = cores
            self.memoryBytes = memoryBytes
            self.instanceType = instanceType
            self.instanceGroup = instanceGroup
            self.registeredAt = registeredAt
            self.lastHeartbeat = lastHeartbeat
            self.status = status
            self.message = message
            self.assignment = assignment
        }
    }

    /// Writes (inserts or replaces) nodes.
    public func saveNodes(_ nodes: [NodeRecord]) throws(JobStoreError) {
        guard !nodes.isEmpty else { return }
        try write { db in
            for node in nodes {
                try db.execute(sql: """
                    INSERT OR REPLACE INTO node (id, host, cores, memoryBytes, instanceType, instanceGroup, registeredAt, lastHeartbeat,
                    status, message, assignment) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """, arguments: [node.id, node.host, node.cores, node.memoryBytes, node.instanceType, node.instanceGroup,
                                     node.registeredAt.timeIntervalSince1970, node.lastHeartbeat.timeIntervalSince1970,
                                     node.status, node.message, node.assignment])
            }
        }
    }

    /// Every node the registry has seen, oldest registration first.
    public func nodes() throws(JobStoreError) -> [NodeRecord] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM node ORDER BY registeredAt, id").map { row in
                NodeRecord(id: row["id"], host: row["host"], cores: row["cores"], memoryBytes: row["memoryBytes"],
                           instanceType: row["instanceType"], instanceGroup: row["instanceGroup"],
                           registeredAt: Date(timeIntervalSince1970: row["registeredAt"]),
                           lastHeartbeat: Date(timeIntervalSince1970: row["lastHeartbeat"]),
                           status: row["status"], message: row["message"], assignment: row["assignment"])
            }
        }
    }

    /// Replaces a job's tags (AddTags, DeleteTags); they live in its stored spec.
    public func setTags(of name: String, to tags: [String: String]) throws(JobStoreError) {
        try write { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM job WHERE name = ?", arguments: [name]) else {
                throw JobStoreError.notFound(name)
            }
            var record = try JobStore.record(row)
            record.spec.tags = tags
            try db.execute(sql: "UPDATE job SET spec = ? WHERE name = ?", arguments: [try JobStore.json(record.spec), name])
        }
    }

    /// The job an ARN of this store names (`arn:aws:sagemaker:REGION:ACCOUNT:training-job/NAME`).
    public func jobName(fromArn arn: String) -> String? {
        guard arn.hasPrefix(arnPrefix) else { return nil }
        let name = String(arn.dropFirst(arnPrefix.count))
        return name.isEmpty ? nil : name
    }

    /// Stores metric values read from a job's log lines (MetricDefinitions), in one write.
    public func recordMetrics(job: String, values: [(name: String, value: Double)], at time: Date) throws(JobStoreError) {
        guard !values.isEmpty else { return }
        try write { db in
            for (name, value) in values {
                try db.execute(sql: "INSERT INTO metric (job, name, value, time) VALUES (?, ?, ?, ?)",
                               arguments: [job, name, value, time.timeIntervalSince1970])
            }
        }
    }

    /// The newest value of each metric of the job, by name.
    public func latestMetrics(of job: String) throws(JobStoreError) -> [(name: String, value: Double, time: Date)] {
        try read { db in
            try Row.fetchAll(db, sql: """
                SELECT name, value, time FROM metric WHERE id IN (SELECT MAX(id) FROM metric WHERE job = ? GROUP BY name) ORDER BY name
                """, arguments: [job]).map { row in
                (name: row["name"] as String, value: row["value"] as Double, time: Date(timeIntervalSince1970: row["time"]))
            }
        }
    }

    /// Every value of one metric of the job, oldest first.
    public func metricSeries(of job: String, name: String) throws(JobStoreError) -> [(value: Double, time: Date)] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT value, time FROM metric WHERE job = ? AND name = ? ORDER BY id", arguments: [job, name]).map { row in
                (value: row["value"] as Double, time: Date(timeIntervalSince1970: row["time"]))
            }
        }
    }

    /// Records a note in the job's event log (what the scheduler or a worker reported).
    public func note(job: String, kind: String, message: String, at time: Date) throws(JobStoreError) {
        try write { db in try JobStore.log(db, job: job, time: time, kind: kind, message: message) }
    }

    // MARK: Plumbing

    private func read<T>(_ body: (Database) throws -> T) throws(JobStoreError) -> T {
        do {
            return try database.read(body)
        } catch let error as JobStoreError {
            throw error
        } catch {
            throw .database("\(path): \(error)")
        }
    }

    private func write<T>(_ body: (Database) throws -> T) throws(JobStoreError) -> T {
        do {
            return try database.write(body)
        } catch let error as JobStoreError {
            throw error
        } catch {
            throw .database("\(path): \(error)")
        }
    }

    private static func log(_ db: Database, job: String, time: Date, kind: String, message: String) throws {
        try db.execute(sql: "INSERT INTO event (job, time, kind, message) VALUES (?, ?, ?, ?)",
                       arguments: [job, time.timeIntervalSince1970, kind, message])
    }

    private static func kind(of event: JobEvent) -> String {
        switch event {
        case .queued: return "Queued"
        case .assigned: return "Assigned"
        case .trainingStarted: return "TrainingStarted"
        case .uploadStarted: return "UploadStarted"
        case .succeeded: return "Succeeded"
        case .attemptFailed: return "AttemptFailed"
        case .attemptInterrupted: return "AttemptInterrupted"
        case .stopRequested: return "StopRequested"
        case .ranksStopped: return "RanksStopped"
        case .maxRuntimeExceeded: return "MaxRuntimeExceeded"
        }
    }

    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        encoder.dateEncodingStrategy = .secondsSince1970
        return encoder
    }()

    private static func json(_ value: some Encodable) throws -> String {
        String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    private static func record(_ row: Row) throws -> JobRecord {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .secondsSince1970
        let specText: String = row["spec"], stateText: String = row["state"]
        return JobRecord(spec: try decoder.decode(TrainingJobSpec.self, from: Data(specText.utf8)), arn: row["arn"],
                         state: try decoder.decode(JobState.self, from: Data(stateText.utf8)), priority: row["priority"],
                         createdAt: Date(timeIntervalSince1970: row["createdAt"]), modifiedAt: Date(timeIntervalSince1970: row["modifiedAt"]))
    }
}
