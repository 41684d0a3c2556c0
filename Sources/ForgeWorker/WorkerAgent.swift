// The node agent: registers with the coordinator, heartbeats, runs each assigned rank as a
// child process (a crashing trainer never takes the agent down), forwards its output, and
// reports how it ended. One thread owns the ZeroMQ socket; pipe readers hand lines to it.
import ForgeCollectives
import ForgeTransport
import ForgeWire
import Foundation
import Logging

/// Configuration of a worker.
public struct WorkerConfiguration: Sendable {
    public var coordinator: String
    public var workDirectory: String
    public var instanceType: String?
    public var instanceGroup: String?
    /// The path of this worker's cluster key file (given to ranks too); nil: plain.
    public var clusterKeyPath: String?
    /// What `forge` in an assignment's arguments means (the worker's own executable).
    public var forgeExecutable: String
    /// The address other hosts reach this worker's ranks at.
    public var host: String

    public init(coordinator: String, workDirectory: String, instanceType: String? = nil, instanceGroup: String? = nil,
                clusterKeyPath: String? = nil, forgeExecutable: String, host: String) {
        self.coordinator = coordinator
        self.workDirectory = workDirectory
        self.instanceType = instanceType
        self.instanceGroup = instanceGroup
        self.clusterKeyPath = clusterKeyPath
        self.forgeExecutable = forgeExecutable
        self.host = host
    }
}

/// A worker's agent loop.
///
/// Concurrency: not Sendable; `run` owns the socket on the calling thread. Rank output arrives
/// on pipe-reader threads through `OutputBuffer`, which is locked.
public final class WorkerAgent {
    public let id: String
    public let configuration: WorkerConfiguration
    private let logger: Logger
    private let context: ZMQContext
    private let socket: ZMQSocket
    private var heartbeatMilliseconds = 1000
    private var lastHeartbeat = DispatchTime(uptimeNanoseconds: 0)
    private var ranks: [String: RunningRank] = [:]
    /// Ranks that ended lately, newest last: reported when registering again, so a coordinator
    /// that restarted learns how the ranks it lost track of ended.
    private var ended: [RankReport] = []
    static let endedKept = 32

    private final class RunningRank {
        let assignment: RankAssignment
        let process: Process
        let output: OutputBuffer
        var stopDeadline: DispatchTime?
        init(assignment: RankAssignment, process: Process, output: OutputBuffer) {
            self.assignment = assignment
            self.process = process
            self.output = output
        }
    }

    public init(configuration: WorkerConfiguration, logger: Logger) throws(TransportError) {
        self.configuration = configuration
        self.logger = logger
        id = "\(configuration.host)-\(getpid())-\(String(UInt32.random(in: 0...UInt32.max), radix: 36))"
        context = try ZMQContext()
        socket = try ZMQSocket(context, kind: .dealer)
        try socket.setIdentity(Array(id.utf8))
        if let path = configuration.clusterKeyPath { try socket.makeCurveClient(try ClusterKey.load(path: path)) }
        socket.sendTimeoutMilliseconds = 1000
        try socket.connect(configuration.coordinator)
    }

    /// Runs until `shouldStop()` is true, then stops every rank (SIGTERM, then SIGKILL after
    /// `graceSeconds`) and returns.
    public func run(graceSeconds: Int = 10, shouldStop: () -> Bool) throws(TransportError) {
        try register()
        while !shouldStop() {
            if !(try ZMQSocket.pollReadable([socket], milliseconds: 50)).isEmpty {
                while let frames = try socket.receiveMessageIfReady() {
                    for frame in frames { handle(frame.array) }
                }
            }
            try tend()
        }
        logger.info("worker \(id): stopping \(ranks.count) rank(s)")
        for rank in ranks.values where rank.process.isRunning { rank.process.terminate() }
        let deadline = Date().addingTimeInterval(Double(graceSeconds))
        while ranks.values.contains(where: { $0.process.isRunning }) && Date() < deadline { usleep(20_000) }
        for rank in ranks.values where rank.process.isRunning { kill(rank.process.processIdentifier, SIGKILL) }
        try? tend()
    }

    private func register() throws(TransportError) {
        let memory = Int64(ProcessInfo.processInfo.physicalMemory)
        let resources = WorkerResources(host: configuration.host, cores: ProcessInfo.processInfo.activeProcessorCount, memoryBytes: memory,
                                        instanceType: configuration.instanceType, instanceGroup: configuration.instanceGroup, pid: getpid(),
                                        running: ranks.keys.sorted(),
                                        ranks: ranks.values.map { RankReport(assignment: $0.assignment.id, worldSize: $0.assignment.worldSize, exit: nil) }
                                            .sorted { $0.assignment < $1.assignment } + ended,
                                        devices: ["cpu"])
        try send(.register(worker: id, resources: resources))
        logger.info("worker \(id): registering with \(configuration.coordinator)")
    }

    private func send(_ message: ControlMessage) throws(TransportError) {
        try socket.send(message.encoded(), more: false)
    }

    private func handle(_ frame: [UInt8]) {
        let message: ControlMessage
        do {
            message = try ControlMessage(decoding: frame)
        } catch {
            logger.warning("worker \(id): ignored a control message: \(error)")
            return
        }
        switch message {
        case .registered(_, let interval):
            heartbeatMilliseconds = max(50, interval)
            logger.info("worker \(id): registered; heartbeat every \(heartbeatMilliseconds) ms")
        case .assign(let assignment):
            start(assignment)
        case .stop(let assignment, let grace):
            guard let rank = ranks[assignment], rank.process.isRunning else { return }
            rank.process.terminate()
            // A repeated stop never moves the SIGKILL deadline later.
            let deadline = DispatchTime.now() + .seconds(grace)
            rank.stopDeadline = rank.stopDeadline.map { min($0, deadline) } ?? deadline
        case .unknownWorker:
            try? register()
        default:
            logger.warning("worker \(id): ignored a message meant for the coordinator")
        }
    }

    private func start(_ assignment: RankAssignment) {
        guard ranks[assignment.id] == nil else { return }
        let output = OutputBuffer()
        let process = Process()
        let program = assignment.arguments.first == "forge" ? configuration.forgeExecutable : assignment.arguments.first ?? "/bin/false"
        process.executableURL = URL(fileURLWithPath: program)
        process.arguments = Array(assignment.arguments.dropFirst())
        var environment = ProcessInfo.processInfo.environment
        for (key, value) in assignment.environment { environment[key] = value }
        if let key = configuration.clusterKeyPath { environment["FORGE_CLUSTER_KEY"] = key }
        environment["FORGE_NODE_ADDR"] = configuration.host
        // A forge rank asks the kernel to kill it when this worker dies, as a lost node's would.
        environment["FORGE_WORKER_PID"] = String(getpid())
        process.environment = environment
        do {
            try FileManager.default.createDirectory(atPath: assignment.workDirectory, withIntermediateDirectories: true)
            process.currentDirectoryURL = URL(fileURLWithPath: assignment.workDirectory)
            let out = Pipe(), err = Pipe()
            process.standardOutput = out
            process.standardError = err
            output.attach(out.fileHandleForReading, isError: false)
            output.attach(err.fileHandleForReading, isError: true)
            try process.run()
        } catch {
            logger.error("worker \(id): cannot start \(assignment.id): \(error)")
            try? send(.rankExited(RankExit(assignment: assignment.id, status: 127, signaled: false,
                                           lastError: "cannot start \(program): \(error.localizedDescription)")))
            return
        }
        ranks[assignment.id] = RunningRank(assignment: assignment, process: process, output: output)
        logger.info("worker \(id): started \(assignment.id) as pid \(process.processIdentifier)")
        try? send(.rankStarted(assignment: assignment.id, pid: process.processIdentifier))
    }

    /// Heartbeats, forwards output, reports exits, enforces stop deadlines.
    private func tend() throws(TransportError) {
        for (id, rank) in ranks {
            let lines = rank.output.take()
            if !lines.isEmpty { try send(.rankOutput(assignment: id, lines: lines)) }
            if let deadline = rank.stopDeadline, rank.process.isRunning, DispatchTime.now() > deadline {
                kill(rank.process.processIdentifier, SIGKILL)
            }
            guard !rank.process.isRunning else { continue }
            // The pipes may still hold the last lines.
            rank.output.finish()
            let tail = rank.output.take()
            if !tail.isEmpty { try send(.rankOutput(assignment: id, lines: tail)) }
            let exit = RankExit(assignment: id, status: rank.process.terminationStatus,
                                signaled: rank.process.terminationReason == .uncaughtSignal, lastError: rank.output.lastErrors())
            ended.append(RankReport(assignment: id, worldSize: rank.assignment.worldSize, exit: exit))
            if ended.count > WorkerAgent.endedKept { ended.removeFirst(ended.count - WorkerAgent.endedKept) }
            try send(.rankExited(exit))
            logger.info("worker \(self.id): \(id) \(exit.summary)")
            SharedMemoryTransport.removeMailboxes(ofProcess: rank.process.processIdentifier)
            ranks[id] = nil
        }
        if DispatchTime.now().uptimeNanoseconds - lastHeartbeat.uptimeNanoseconds >= UInt64(heartbeatMilliseconds) * 1_000_000 {
            try send(.heartbeat(worker: id, running: ranks.keys.sorted()))
            lastHeartbeat = .now()
        }
    }
}

/// Lines a rank wrote, collected on pipe-reader threads.
///
/// Concurrency: Sendable; everything is guarded by `lock`.
final class OutputBuffer: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []
    private var partial: [ObjectIdentifier: [UInt8]] = [:]
    private var errors: [String] = []
    private var handles: [FileHandle] = []

    func attach(_ handle: FileHandle, isError: Bool) {
        handles.append(handle)
        handle.readabilityHandler = { [weak self] handle in
            let data = handle.availableData
            self?.append(data, from: handle, isError: isError)
        }
    }

    private func append(_ data: Data, from handle: FileHandle, isError: Bool) {
        lock.lock()
        defer { lock.unlock() }
        let key = ObjectIdentifier(handle)
        var buffer = partial[key] ?? []
        if data.isEmpty {
            handle.readabilityHandler = nil
            if !buffer.isEmpty { buffer.append(10) }
        } else {
            buffer.append(contentsOf: data)
        }
        while let newline = buffer.firstIndex(of: 10) {
            let line = String(decoding: buffer[..<newline], as: UTF8.self)
            buffer.removeSubrange(...newline)
            lines.append(line)
            if isError {
                errors.append(line)
                if errors.count > 20 { errors.removeFirst(errors.count - 20) }
            }
            if lines.count > 10_000 { lines.removeFirst(lines.count - 10_000) }
        }
        partial[key] = buffer
    }

    /// Reads what is left in the pipes (the process has exited).
    func finish() {
        for handle in handles {
            handle.readabilityHandler = nil
            let rest = handle.readDataToEndOfFile()
            if !rest.isEmpty { append(rest, from: handle, isError: handle === handles.last) }
            append(Data(), from: handle, isError: handle === handles.last)
        }
    }

    func take() -> [String] {
        lock.lock()
        defer { lock.unlock() }
        let taken = lines
        lines = []
        return taken
    }

    /// The last lines of standard error, joined.
    func lastErrors() -> String {
        lock.lock()
        defer { lock.unlock() }
        return errors.suffix(5).joined(separator: "\n")
    }
}
