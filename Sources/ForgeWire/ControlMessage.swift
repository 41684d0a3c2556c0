// The control plane between the coordinator and its workers: small JSON messages, one per
// ZeroMQ frame, each carrying the protocol version and its type. Decoding is total: any bytes
// either decode into a message or throw a `ControlDecodingError` that says what was wrong.
import Foundation

/// What a worker tells the coordinator about itself when it registers.
public struct WorkerResources: Codable, Sendable, Equatable {
    public var host: String
    public var cores: Int
    public var memoryBytes: Int64
    /// An instance type label (e.g. ml.m5.xlarge); nil accepts any instance type.
    public var instanceType: String?
    public var instanceGroup: String?
    public var pid: Int32
    /// Ranks it still runs when it registers (again, after a coordinator restart).
    public var running: [String]?
    /// What it knows of its recent ranks, running or ended (the newest few): a restarted
    /// coordinator re-attaches a job whose every rank it can account for.
    public var ranks: [RankReport]?
    /// The compute devices it offers ranks (`cpu`, and accelerator plugins' devices).
    public var devices: [String]?

    public init(host: String, cores: Int, memoryBytes: Int64, instanceType: String?, instanceGroup: String?, pid: Int32,
                running: [String]? = nil, ranks: [RankReport]? = nil, devices: [String]? = nil) {
        self.running = running
        self.ranks = ranks
        self.devices = devices
        self.host = host
        self.cores = cores
        self.memoryBytes = memoryBytes
        self.instanceType = instanceType
        self.instanceGroup = instanceGroup
        self.pid = pid
    }
}

/// One rank of one attempt of a job, as a worker runs it.
public struct RankAssignment: Codable, Sendable, Equatable {
    /// Unique per rank and attempt: `JOB/ATTEMPT/RANK`.
    public var id: String
    public var job: String
    public var attempt: Int
    public var rank: Int
    public var worldSize: Int
    /// The program and its arguments; `forge` means the worker's own executable.
    public var arguments: [String]
    /// Added to the worker's environment (RANK, WORLD_SIZE, MASTER_ADDR, … among them).
    public var environment: [String: String]
    /// The folder the rank runs in (created by the worker).
    public var workDirectory: String

    public init(id: String, job: String, attempt: Int, rank: Int, worldSize: Int, arguments: [String],
                environment: [String: String], workDirectory: String) {
        self.id = id
        self.job = job
        self.attempt = attempt
        self.rank = rank
        self.worldSize = worldSize
        self.arguments = arguments
        self.environment = environment
        self.workDirectory = workDirectory
    }

    /// The job, attempt and rank an assignment id (`JOB/ATTEMPT/RANK`) names, or nil for an id
    /// of another shape (job names hold no `/`).
    public static func parse(id: String) -> (job: String, attempt: Int, rank: Int)? {
        let parts = id.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, let attempt = Int(parts[1]), let rank = Int(parts[2]), attempt >= 1, rank >= 0 else {
            return nil
        }
        return (String(parts[0]), attempt, rank)
    }
}

/// A rank a worker runs or ran lately, as it reports it when it registers.
public struct RankReport: Codable, Sendable, Equatable {
    /// `JOB/ATTEMPT/RANK`.
    public var assignment: String
    public var worldSize: Int
    /// How it ended; nil while it runs.
    public var exit: RankExit?

    public init(assignment: String, worldSize: Int, exit: RankExit?) {
        self.assignment = assignment
        self.worldSize = worldSize
        self.exit = exit
    }
}

/// How a rank process ended.
public struct RankExit: Codable, Sendable, Equatable {
    public var assignment: String
    /// The exit status, or the signal number when `signaled`.
    public var status: Int32
    public var signaled: Bool
    /// The last lines it wrote to standard error (the likely reason).
    public var lastError: String

    public init(assignment: String, status: Int32, signaled: Bool, lastError: String) {
        self.assignment = assignment
        self.status = status
        self.signaled = signaled
        self.lastError = lastError
    }

    public var succeeded: Bool { !signaled && status == 0 }

    /// The status of a rank 0 that found MASTER_PORT taken on its host (EX_TEMPFAIL): the
    /// attempt should go again on another port, not count as failed.
    public static let portTakenStatus: Int32 = 75

    public var portTaken: Bool { !signaled && status == RankExit.portTakenStatus && lastError.contains("MASTER_PORT") }

    /// The status of a rank that stopped because another rank failed first: that one closed
    /// its connection, exited, or sent nothing in time (EX_PROTOCOL). Whoever names a failed
    /// attempt names a rank that failed otherwise, when there is one.
    public static let peerFailedStatus: Int32 = 76

    /// Whether `status`/`signaled` is a rank's exit after another rank failed first.
    public static func peerFailedFirst(status: Int32, signaled: Bool) -> Bool {
        !signaled && status == peerFailedStatus
    }

    public var peerFailedFirst: Bool { RankExit.peerFailedFirst(status: status, signaled: signaled) }

    /// "exited with status 1" / "was killed by signal 9".
    public var summary: String { RankExit.summary(status: status, signaled: signaled) }

    /// How a process with this `status`/`signaled` ended, in words.
    public static func summary(status: Int32, signaled: Bool) -> String {
        if signaled { return "was killed by signal \(status)" }
        return "exited with status \(status)" + (peerFailedFirst(status: status, signaled: signaled) ? " (another rank failed first)" : "")
    }
}

/// A control-plane message.
public enum ControlMessage: Sendable, Equatable {
    // Worker → coordinator.
    case register(worker: String, resources: WorkerResources)
    case heartbeat(worker: String, running: [String])
    case rankStarted(assignment: String, pid: Int32)
    /// Lines of a rank's output; `first` is the first line's index in all of that rank's output
    /// (nil from a worker that does not number them), so that lines sent again are stored once.
    /// `oldestKept`: the message starts at the oldest line the worker still has (it sends its
    /// kept lines again on registering, or from a line `resendOutput` asks for), so lines
    /// missing before it are lost for good.
    case rankOutput(assignment: String, lines: [String], first: Int? = nil, oldestKept: Bool = false)
    case rankExited(RankExit)
    // Coordinator → worker.
    case registered(worker: String, heartbeatMilliseconds: Int)
    case assign(RankAssignment)
    case stop(assignment: String, graceSeconds: Int)
    /// The coordinator does not know this worker (it restarted, or declared the worker dead):
    /// register again.
    case unknownWorker(worker: String)
    /// Lines of this rank's output from index `from` on never arrived (they were on their way to
    /// a coordinator that went down): send them again, as far as they are kept.
    case resendOutput(assignment: String, from: Int)

    public static let version = 1

    private var type: String {
        switch self {
        case .register: return "register"
        case .heartbeat: return "heartbeat"
        case .rankStarted: return "rankStarted"
        case .rankOutput: return "rankOutput"
        case .rankExited: return "rankExited"
        case .registered: return "registered"
        case .assign: return "assign"
        case .stop: return "stop"
        case .unknownWorker: return "unknownWorker"
        case .resendOutput: return "resendOutput"
        }
    }

    private struct Envelope: Codable {
        var v: Int
        var type: String
        var worker: String?
        var resources: WorkerResources?
        var running: [String]?
        var assignment: String?
        var pid: Int32?
        var lines: [String]?
        var exit: RankExit?
        var heartbeatMilliseconds: Int?
        var rank: RankAssignment?
        var graceSeconds: Int?
        var first: Int?
        var oldestKept: Bool?
    }

    /// The message as one JSON frame.
    public func encoded() -> [UInt8] {
        // Heartbeats, most of the traffic, have one fixed shape that a byte scan reads back.
        if case .heartbeat(let worker, let running) = self {
            return Array((#"{"v":\#(ControlMessage.version),"type":"heartbeat","worker":"# + ControlMessage.quoted(worker) + #","running":["#
                + running.map(ControlMessage.quoted).joined(separator: ",") + "]}").utf8)
        }
        var envelope = Envelope(v: ControlMessage.version, type: type)
        switch self {
        case .register(let worker, let resources):
            envelope.worker = worker
            envelope.resources = resources
        case .heartbeat(let worker, let running):
            envelope.worker = worker
            envelope.running = running
        case .rankStarted(let assignment, let pid):
            envelope.assignment = assignment
            envelope.pid = pid
        case .rankOutput(let assignment, let lines, let first, let oldestKept):
            envelope.assignment = assignment
            envelope.lines = lines
            envelope.first = first
            envelope.oldestKept = oldestKept ? true : nil
        case .rankExited(let exit):
            envelope.exit = exit
        case .registered(let worker, let heartbeat):
            envelope.worker = worker
            envelope.heartbeatMilliseconds = heartbeat
        case .assign(let rank):
            envelope.rank = rank
        case .stop(let assignment, let grace):
            envelope.assignment = assignment
            envelope.graceSeconds = grace
        case .unknownWorker(let worker):
            envelope.worker = worker
        case .resendOutput(let assignment, let from):
            envelope.assignment = assignment
            envelope.first = from
        }
        // Encoding plain strings, numbers and arrays cannot fail.
        return (try? [UInt8](JSONEncoder().encode(envelope))) ?? []
    }

    /// Decodes one frame. Anything but a well-formed message of this version throws.
    public init(decoding bytes: [UInt8]) throws(ControlDecodingError) {
        guard bytes.count <= ControlMessage.maximumBytes else { throw .tooLarge(bytes.count) }
        // Heartbeats are most of the traffic (a thousand a second with a thousand workers):
        // they take a lighter path than Codable's.
        if let heartbeat = ControlMessage.heartbeat(bytes) {
            self = heartbeat
            return
        }
        let envelope: Envelope
        do {
            envelope = try JSONDecoder().decode(Envelope.self, from: Data(bytes))
        } catch {
            throw .malformed(String(describing: error).prefix(200).description)
        }
        guard envelope.v == ControlMessage.version else { throw .unsupportedVersion(envelope.v) }
        func need<T>(_ value: T?, _ field: String) throws(ControlDecodingError) -> T {
            guard let value else { throw .missingField(type: envelope.type, field: field) }
            return value
        }
        switch envelope.type {
        case "register": self = .register(worker: try need(envelope.worker, "worker"), resources: try need(envelope.resources, "resources"))
        case "heartbeat": self = .heartbeat(worker: try need(envelope.worker, "worker"), running: try need(envelope.running, "running"))
        case "rankStarted": self = .rankStarted(assignment: try need(envelope.assignment, "assignment"), pid: try need(envelope.pid, "pid"))
        case "rankOutput":
            if let first = envelope.first, first < 0 { throw .malformed("rankOutput's first line index \(first) is negative") }
            self = .rankOutput(assignment: try need(envelope.assignment, "assignment"), lines: try need(envelope.lines, "lines"),
                               first: envelope.first, oldestKept: envelope.oldestKept ?? false)
        case "rankExited": self = .rankExited(try need(envelope.exit, "exit"))
        case "registered":
            self = .registered(worker: try need(envelope.worker, "worker"),
                               heartbeatMilliseconds: try need(envelope.heartbeatMilliseconds, "heartbeatMilliseconds"))
        case "assign": self = .assign(try need(envelope.rank, "rank"))
        case "stop": self = .stop(assignment: try need(envelope.assignment, "assignment"), graceSeconds: try need(envelope.graceSeconds, "graceSeconds"))
        case "unknownWorker": self = .unknownWorker(worker: try need(envelope.worker, "worker"))
        case "resendOutput":
            let from = try need(envelope.first, "first")
            guard from >= 0 else { throw .malformed("resendOutput's first line index \(from) is negative") }
            self = .resendOutput(assignment: try need(envelope.assignment, "assignment"), from: from)
        default: throw .unknownType(envelope.type)
        }
    }

    /// `text` as a JSON string literal: quotes, backslashes and control characters escaped.
    static func quoted(_ text: String) -> String {
        var result = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case _ where scalar.value < 0x20: result += String(format: "\\u%04x", scalar.value)
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result + "\""
    }

    /// The bytes `encoded()` writes before a heartbeat's worker id.
    private static let heartbeatPrefix = Array(#"{"v":1,"type":"heartbeat","worker":""#.utf8)
    private static let runningMember = Array(#","running":["#.utf8)

    /// A heartbeat exactly as `encoded()` writes it, read by a byte scan with no allocation
    /// beyond its strings; nil for anything else (the general path then decodes the frame, or
    /// says what is wrong with it).
    private static func heartbeat(_ bytes: [UInt8]) -> ControlMessage? {
        guard bytes.starts(with: heartbeatPrefix) else { return nil }
        var index = heartbeatPrefix.count
        // A string's body up to its closing quote; only the `\/` escape (JSONEncoder writes
        // it) is taken, any other escape or a control byte sends the frame to the general path.
        func string() -> String? {
            var text = [UInt8]()
            while index < bytes.count {
                let byte = bytes[index]
                index += 1
                switch byte {
                case UInt8(ascii: "\""): return String(validating: text, as: UTF8.self)
                case UInt8(ascii: "\\"):
                    guard index < bytes.count, bytes[index] == UInt8(ascii: "/") else { return nil }
                    text.append(UInt8(ascii: "/"))
                    index += 1
                case 0..<0x20: return nil
                default: text.append(byte)
                }
            }
            return nil
        }
        func take(_ expected: [UInt8]) -> Bool {
            guard bytes.count - index >= expected.count, bytes[index..<(index + expected.count)].elementsEqual(expected) else { return false }
            index += expected.count
            return true
        }
        guard let worker = string(), take(runningMember) else { return nil }
        var running = [String]()
        if !take([UInt8(ascii: "]")]) {
            while true {
                guard take([UInt8(ascii: "\"")]), let name = string() else { return nil }
                running.append(name)
                if take([UInt8(ascii: "]")]) { break }
                guard take([UInt8(ascii: ",")]) else { return nil }
            }
        }
        guard take([UInt8(ascii: "}")]), index == bytes.count else { return nil }
        return .heartbeat(worker: worker, running: running)
    }

    /// The largest frame accepted (log batches stay far below).
    public static let maximumBytes = 4 << 20
}

/// Why a control frame did not decode.
public enum ControlDecodingError: Error, Equatable, CustomStringConvertible {
    case tooLarge(Int)
    case malformed(String)
    case unsupportedVersion(Int)
    case unknownType(String)
    case missingField(type: String, field: String)

    public var description: String {
        switch self {
        case .tooLarge(let count): return "a control message of \(count) bytes (the limit is \(ControlMessage.maximumBytes))"
        case .malformed(let reason): return "a control message that is not valid JSON of the protocol: \(reason)"
        case .unsupportedVersion(let version): return "control protocol version \(version); this build speaks \(ControlMessage.version)"
        case .unknownType(let type): return "an unknown control message type '\(type)'"
        case .missingField(let type, let field): return "a '\(type)' message without '\(field)'"
        }
    }
}
