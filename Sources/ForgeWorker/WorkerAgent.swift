// The node agent: registers with the coordinator, heartbeats, runs each assigned rank as a
// child process (a crashing trainer never takes the agent down), forwards its output, and
// reports how it ended. One thread owns the ZeroMQ socket; pipe readers hand lines to it.
import CForgeSystem
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
    /// When this worker last registered without an answer yet.
    private var registeredAsked: DispatchTime?
    private var ranks: [String: RunningRank] = [:]
    /// Ranks that ended lately, newest last: reported when registering again, so a coordinator
    /// that restarted learns how the ranks it lost track of ended.
    private var ended: [RankReport] = []
    static let endedKept = 32
    /// The output of those ranks, as far as it is kept: sent again on registering, with the
    /// running ranks', because what a coordinator received just before it went down may never
    /// have been stored (it stores each line once).
    private var endedOutput: [(assignment: String, log: OutputLog)] = []
    /// Processes that ended but Foundation has not reaped yet (a child they left holds one of
    /// their descriptors): kept until it has.
    private var unreaped: [Process] = []
    /// When adopted orphans were last reaped.
    private var lastReap = DispatchTime.now()

    private final class RunningRank {
        let assignment: RankAssignment
        let process: Process
        let output: OutputBuffer
        /// The rank's own cgroup, where the host allows one (RankCgroup).
        let cgroup: RankCgroup?
        let log = OutputLog()
        var stopDeadline: DispatchTime?
        /// How the process ended, once it has (seen without reaping it: ProcessEnding).
        var ending: ProcessEnding? { ProcessEnding(of: process) }
        var isRunning: Bool { ending == nil }
        init(assignment: RankAssignment, process: Process, output: OutputBuffer, cgroup: RankCgroup?) {
            self.assignment = assignment
            self.process = process
            self.output = output
            self.cgroup = cgroup
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
        try socket.setSendTimeout(1000)
        try socket.connect(configuration.coordinator)
        // What a rank leaves behind, orphaned, becomes this worker's to find and reap.
        if forge_become_subreaper() != 0 {
            logger.warning("worker \(id): cannot become a subreaper (\(String(cString: strerror(errno)))); a rank's orphans go to init")
        }
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
        for rank in ranks.values where rank.isRunning { rank.process.terminate() }
        let deadline = Date().addingTimeInterval(Double(graceSeconds))
        while ranks.values.contains(where: { $0.isRunning }) && Date() < deadline { usleep(20_000) }
        for rank in ranks.values where rank.isRunning { kill(rank.process.processIdentifier, SIGKILL) }
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
        registeredAsked = .now()
        logger.info("worker \(id): registering with \(configuration.coordinator)")
        for (assignment, log) in ranks.map({ ($0.key, $0.value.log) }) + endedOutput {
            try resendOutput(of: assignment, log, from: 0)
        }
    }

    /// Sends lines of a rank's output numbered from `first`, in messages of at most 1,000 lines.
    /// `oldest`: line `oldest` is the oldest this worker still has, and its message says so
    /// (`oldestKept`), so that the coordinator takes it even after a gap it cannot fill.
    private func sendOutput(of assignment: String, _ lines: ArraySlice<String>, first: Int, oldest: Int? = nil) throws(TransportError) {
        var start = lines.startIndex
        while start < lines.endIndex {
            let end = min(lines.endIndex, start + 1000)
            let index = first + start - lines.startIndex
            try send(.rankOutput(assignment: assignment, lines: Array(lines[start..<end]), first: index, oldestKept: index == oldest))
            start = end
        }
    }

    /// Sends a rank's kept output again from line `from` (or the oldest line kept).
    private func resendOutput(of assignment: String, _ log: OutputLog, from: Int) throws(TransportError) {
        let skip = min(log.kept.count, max(0, from - log.first))
        try sendOutput(of: assignment, log.kept[skip...], first: log.first + skip, oldest: log.first)
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
            registeredAsked = nil
            heartbeatMilliseconds = max(50, interval)
            logger.info("worker \(id): registered; heartbeat every \(heartbeatMilliseconds) ms")
        case .assign(let assignment):
            start(assignment)
        case .stop(let assignment, let grace):
            guard let rank = ranks[assignment], rank.isRunning else { return }
            rank.process.terminate()
            // A repeated stop never moves the SIGKILL deadline later.
            let deadline = DispatchTime.now() + .seconds(grace)
            rank.stopDeadline = rank.stopDeadline.map { min($0, deadline) } ?? deadline
        case .unknownWorker:
            // Every heartbeat queued while the coordinator was away gets this answer: register
            // (and send the kept output) once, again only if no answer came for a while.
            if let asked = registeredAsked, DispatchTime.now().uptimeNanoseconds - asked.uptimeNanoseconds < 5_000_000_000 { return }
            try? register()
        case .resendOutput(let assignment, let from):
            guard let log = ranks[assignment]?.log ?? endedOutput.last(where: { $0.assignment == assignment })?.log else { return }
            try? resendOutput(of: assignment, log, from: from)
        default:
            logger.warning("worker \(id): ignored a message meant for the coordinator")
        }
    }

    private func start(_ assignment: RankAssignment) {
        guard ranks[assignment.id] == nil else { return }
        let output = OutputBuffer()
        let process = Process()
        // Absolute (a relative path means the worker's directory, not the rank's).
        let program = URL(fileURLWithPath: assignment.arguments.first == "forge" ? configuration.forgeExecutable
                                           : assignment.arguments.first ?? "/bin/false").path
        let tag = Leftovers.tag(worker: id, assignment: assignment.id)
        // The rank runs in a cgroup of its own where the host allows it: whatever it starts
        // stays there and ends with it (RankCgroup.canWrap says which programs may go through
        // the shell that moves it in).
        let cgroup = RankCgroup.canWrap(program) ? RankCgroup.make(named: tag) : nil
        var environment = ProcessInfo.processInfo.environment
        for (key, value) in assignment.environment { environment[key] = value }
        if let key = configuration.clusterKeyPath { environment["FORGE_CLUSTER_KEY"] = key }
        environment["FORGE_NODE_ADDR"] = configuration.host
        // A forge rank asks the kernel to kill it when this worker dies, as a lost node's would.
        environment["FORGE_WORKER_PID"] = String(getpid())
        // Whatever the rank starts carries it, so what it leaves running can be found (Leftovers).
        environment[Leftovers.variable] = tag
        let command = cgroup?.wrap(executable: program, arguments: Array(assignment.arguments.dropFirst()), environment: environment)
            ?? (executable: program, arguments: Array(assignment.arguments.dropFirst()))
        process.executableURL = URL(fileURLWithPath: command.executable)
        process.arguments = command.arguments
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
            cgroup?.destroy()
            logger.error("worker \(id): cannot start \(assignment.id): \(error)")
            try? send(.rankExited(RankExit(assignment: assignment.id, status: 127, signaled: false,
                                           lastError: "cannot start \(program): \(ProgramFile.refusal(program) ?? error.localizedDescription)")))
            return
        }
        ranks[assignment.id] = RunningRank(assignment: assignment, process: process, output: output, cgroup: cgroup)
        logger.info("worker \(id): started \(assignment.id) as pid \(process.processIdentifier)")
        try? send(.rankStarted(assignment: assignment.id, pid: process.processIdentifier))
    }

    /// Heartbeats, forwards output, reports exits, enforces stop deadlines.
    private func tend() throws(TransportError) {
        for (id, rank) in ranks {
            let (lines, dropped) = rank.output.take()
            if let first = rank.log.append(lines, after: dropped) { try sendOutput(of: id, lines[...], first: first) }
            var ending = rank.ending
            if ending == nil, let deadline = rank.stopDeadline, DispatchTime.now() > deadline {
                kill(rank.process.processIdentifier, SIGKILL)
                ending = rank.ending
            }
            guard let ending else { continue }
            // What the rank left running goes with it, as in a container that ends: all of its
            // cgroup, where it has one (nothing the rank started can leave that).
            let contained = rank.cgroup?.destroy() ?? 0
            // Its process group (Foundation starts each child in a group of its own). The id
            // cannot name another group: the kernel does not hand out a pid while a group of
            // that id has a member, and a freed one comes round again only after the whole pid
            // space.
            kill(-rank.process.processIdentifier, SIGKILL)
            // And what left the group: found by the assignment it still carries.
            let strays = Leftovers.kill(tagged: Leftovers.tag(worker: self.id, assignment: id))
            if contained + strays > 0 { logger.info("worker \(self.id): killed \(contained + strays) process(es) \(id) left running") }
            // The pipes may still hold the last lines.
            rank.output.finish()
            let (tail, lost) = rank.output.take()
            if let first = rank.log.append(tail, after: lost) { try sendOutput(of: id, tail[...], first: first) }
            let exit = RankExit(assignment: id, status: ending.status, signaled: ending.signaled, lastError: rank.output.lastErrors())
            ended.append(RankReport(assignment: id, worldSize: rank.assignment.worldSize, exit: exit))
            if ended.count > WorkerAgent.endedKept { ended.removeFirst(ended.count - WorkerAgent.endedKept) }
            endedOutput.append((id, rank.log))
            if endedOutput.count > WorkerAgent.endedKept { endedOutput.removeFirst(endedOutput.count - WorkerAgent.endedKept) }
            try send(.rankExited(exit))
            logger.info("worker \(self.id): \(id) \(exit.summary)")
            SharedMemoryTransport.removeMailboxes(ofProcess: rank.process.processIdentifier)
            ranks[id] = nil
            unreaped.append(rank.process)
        }
        unreaped.removeAll { !$0.isRunning }
        if DispatchTime.now().uptimeNanoseconds - lastReap.uptimeNanoseconds >= 1_000_000_000 {
            // Orphans handed to this subreaper are reaped here; Foundation reaps only its own.
            Leftovers.reapAdopted(known: Set((ranks.values.map(\.process) + unreaped).map(\.processIdentifier)))
            lastReap = .now()
        }
        if DispatchTime.now().uptimeNanoseconds - lastHeartbeat.uptimeNanoseconds >= UInt64(heartbeatMilliseconds) * 1_000_000 {
            try send(.heartbeat(worker: id, running: ranks.keys.sorted()))
            lastHeartbeat = .now()
        }
    }
}

/// The numbered output of one rank as far as it is kept: the last `capacity` lines, the first
/// of them line `first` of everything the rank wrote (lines the buffer dropped count too).
///
/// Concurrency: not Sendable; it belongs to the worker's loop thread.
final class OutputLog {
    static let capacity = 5000
    private(set) var first = 0
    private(set) var kept: [String] = []

    /// Numbers `lines`, which follow `dropped` lines that were never seen; returns the index of
    /// the first, or nil when there are none.
    func append(_ lines: [String], after dropped: Int) -> Int? {
        if dropped > 0 {
            // A gap: what is kept before it can no longer be sent in one numbered run with it.
            first += kept.count + dropped
            kept = []
        }
        guard !lines.isEmpty else { return nil }
        let index = first + kept.count
        kept.append(contentsOf: lines)
        if kept.count > OutputLog.capacity {
            let excess = kept.count - OutputLog.capacity
            kept.removeFirst(excess)
            first += excess
        }
        return index
    }
}

/// Lines a rank wrote, collected on pipe-reader threads.
///
/// Concurrency: Sendable; everything is guarded by `lock`.
final class OutputBuffer: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []
    private var dropped = 0
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
            if lines.count > 10_000 {
                dropped += lines.count - 10_000
                lines.removeFirst(lines.count - 10_000)
            }
        }
        partial[key] = buffer
    }

    /// Reads what is left in the pipes (the process has exited), without waiting: a child the
    /// rank left behind may hold them open for as long as it lives, and the worker's loop must
    /// go on (heartbeats, other ranks).
    func finish() {
        for handle in handles {
            handle.readabilityHandler = nil
            // Blocking reads, each only after poll says the pipe has data or its end (the
            // descriptor stays blocking: Foundation's reader may still be in it).
            let descriptor = handle.fileDescriptor
            var rest = Data()
            var chunk = [UInt8](repeating: 0, count: 65536)
            while true {
                var entry = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
                let ready = poll(&entry, 1, 0)
                if ready < 0, errno == EINTR { continue }
                guard ready > 0 else { break }  // nothing more for now
                let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
                if count > 0 {
                    rest.append(contentsOf: chunk[0..<count])
                } else if count < 0, errno == EINTR {
                    continue
                } else {
                    break  // the end
                }
            }
            if !rest.isEmpty { append(rest, from: handle, isError: handle === handles.last) }
            append(Data(), from: handle, isError: handle === handles.last)
        }
    }

    /// The lines since the last call, and how many lines before them were dropped because the
    /// worker's loop did not take them in time (more than 10,000 waiting).
    func take() -> (lines: [String], dropped: Int) {
        lock.lock()
        defer { lock.unlock() }
        let taken = (lines, dropped)
        lines = []
        dropped = 0
        return taken
    }

    /// The last lines of standard error, joined.
    func lastErrors() -> String {
        lock.lock()
        defer { lock.unlock() }
        return errors.suffix(5).joined(separator: "\n")
    }
}
