// `forge launch`: start N rank processes on this node, torchrun-style, and tear them all down
// when one fails.
import ArgumentParser
import CForgeSystem
import ForgeCollectives
import ForgeWire
import ForgeWorker
import Foundation

struct LaunchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "launch",
        abstract: "Start N rank processes with RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT set.",
        discussion: """
        Example: forge launch --nproc 2 -- forge bench allreduce --sizes 1048576
        Across nodes, run one launcher per node with the same --nnodes and --rdzv-endpoint and its \
        own --node-rank: forge launch --nproc 2 --nnodes 2 --node-rank 1 --rdzv-endpoint host0:29500 -- CMD
        Global rank = node rank × nproc + local rank; node 0 hosts the rendezvous. When a rank \
        exits with an error, the others on its node are stopped and the launcher reports which \
        rank failed, on which host, and how (ranks on other nodes then fail on their timeouts). \
        A rank that exits with 76 failed because another did first (a forge rank that lost a \
        peer exits so); the launcher names the rank that failed otherwise, and exits 76 itself \
        only when all its failed ranks did. Stops go to each rank's process group, and what is \
        left running in those groups when the launch ends is killed. \
        Each rank gets OPENBLAS_NUM_THREADS=1 unless it is set.
        """
    )

    @Option(name: .long, help: "Rank processes to start on this node.")
    var nproc: Int

    @Option(name: .long, help: "A cluster key file (forge keygen); ranks then talk over ZeroMQ CURVE.")
    var clusterKey: String?

    @Option(name: .long, help: "Port for the rendezvous at MASTER_ADDR on a single node (default: a free one).")
    var masterPort: Int?

    @Option(name: .long, help: "Nodes in the job (one launcher per node).")
    var nnodes: Int = 1

    @Option(name: .long, help: "This node's index, 0..<nnodes.")
    var nodeRank: Int = 0

    @Option(name: .long, help: "HOST:PORT of the rendezvous, on node 0 (required with --nnodes > 1).")
    var rdzvEndpoint: String?

    @Option(name: .long, help: "Address other nodes reach this node's ranks at (FORGE_NODE_ADDR; default 127.0.0.1 on one node, else this host's name).")
    var nodeAddr: String?

    @Option(name: .long, help: "Seconds a rank waits on a silent or dead peer before its collective fails (FORGE_COLLECTIVE_TIMEOUT; default 30).")
    var timeout: Double?

    @Option(name: .long, help: "Pin ranks to CPUs: none, or cores (each rank gets its own share of this launcher's CPUs, as mpirun --bind-to core).")
    var cpuBind: CPUBinding = .none

    @Argument(parsing: .captureForPassthrough, help: "The command each rank runs (after --).")
    var command: [String] = []

    func validate() throws {
        guard nproc >= 1 else { throw ValidationError("--nproc must be at least 1") }
        guard nnodes >= 1, (0..<nnodes).contains(nodeRank) else {
            throw ValidationError("--node-rank \(nodeRank) is outside 0..<\(nnodes) (--nnodes)")
        }
        if nnodes > 1 {
            guard let endpoint = rdzvEndpoint, LaunchCommand.split(endpoint) != nil else {
                throw ValidationError("--nnodes \(nnodes) needs --rdzv-endpoint HOST:PORT (node 0's address and a free port)")
            }
        }
        if let timeout, !(timeout > 0 && timeout <= 86_400) { throw ValidationError("--timeout must be a number of seconds between 0 and 86400") }
        guard !command.filter({ $0 != "--" }).isEmpty else { throw ValidationError("give the command to run after --") }
    }

    func run() throws {
        let arguments = command.first == "--" ? Array(command.dropFirst()) : command
        let host = ProcessInfo.processInfo.hostName
        let master: (host: String, port: Int)
        if let endpoint = rdzvEndpoint, let parsed = LaunchCommand.split(endpoint) {
            master = parsed
        } else {
            master = ("127.0.0.1", try masterPort ?? LaunchCommand.freePort())
        }
        let nodeAddress = nodeAddr ?? (nnodes == 1 ? "127.0.0.1" : host)
        // SIGINT/SIGTERM to the launcher stop the ranks too, so none is left running.
        let stopSignal = SignalLatch(signals: [SIGINT, SIGTERM])
        var processes = [Process]()
        // The order ranks exit in: when one fails, its peers fail moments later (a closed
        // connection, a vanished process); the first to exit is the one to name.
        let exits = ExitOrder()
        // What ranks leave behind outside their groups carries their tag and, orphaned, becomes
        // this launcher's child (Leftovers): it is killed and reaped when the launch ends.
        _ = forge_become_subreaper()
        let launchTag = "launch-\(getpid())-\(String(UInt32.random(in: 0...UInt32.max), radix: 36))"
        let cpus = CPUBinding.allowedCPUs()
        defer { if cpuBind == .cores { CPUBinding.pinCallingThread(to: cpus) } }
        // Each rank in a cgroup of its own where the host allows it (RankCgroup): nothing it
        // starts outlives the launch, whatever group, session or environment it moves to.
        var cgroups = [RankCgroup?]()
        for localRank in 0..<nproc {
            let rank = nodeRank * nproc + localRank
            let process = Process()
            var program = LaunchCommand.resolve(arguments[0])
            var cgroup: RankCgroup?
            // In the shell that moves the rank into its cgroup, /proc/self/exe is the shell; this
            // process's own link still names the very file it runs (even if it was replaced).
            // A relative name (not found on PATH) means a file in this directory, as it does to
            // Process; the shell's exec would look it up on PATH instead.
            let named = program == "/proc/self/exe" ? "/proc/\(getpid())/exe" : URL(fileURLWithPath: program).path
            if RankCgroup.canWrap(named) {
                cgroup = RankCgroup.make(named: "\(launchTag) rank \(rank)")
                if cgroup != nil { program = named }
            }
            cgroups.append(cgroup)
            var environment = ProcessInfo.processInfo.environment
            environment["RANK"] = String(rank)
            environment[Leftovers.variable] = Leftovers.tag(worker: launchTag, assignment: "rank \(rank)")
            environment["LOCAL_RANK"] = String(localRank)
            environment["GROUP_RANK"] = String(nodeRank)
            environment["WORLD_SIZE"] = String(nproc * nnodes)
            environment["LOCAL_WORLD_SIZE"] = String(nproc)
            environment["MASTER_ADDR"] = master.host
            environment["MASTER_PORT"] = String(master.port)
            environment["FORGE_NODE_ADDR"] = nodeAddress
            if environment["OPENBLAS_NUM_THREADS"] == nil { environment["OPENBLAS_NUM_THREADS"] = "1" }
            if let clusterKey { environment["FORGE_CLUSTER_KEY"] = clusterKey }
            if cpuBind == .cores { environment["FORGE_CPU_BIND"] = "cores" }
            if let timeout { environment["FORGE_COLLECTIVE_TIMEOUT"] = String(timeout) }
            let command = cgroup?.wrap(executable: program, arguments: Array(arguments.dropFirst()), environment: environment)
                ?? (executable: program, arguments: Array(arguments.dropFirst()))
            process.executableURL = URL(fileURLWithPath: command.executable)
            process.arguments = command.arguments
            process.environment = environment
            if cpuBind == .cores, !cpus.isEmpty {
                // The child inherits the spawning thread's CPU set.
                let share = CPUBinding.share(localRank, of: nproc, cpus: cpus)
                CPUBinding.pinCallingThread(to: share)
            }
            let index = processes.count
            do {
                try process.run()
                exits.watch(process, as: index)
            } catch {
                for started in processes { started.terminate() }
                for made in cgroups { made?.destroy() }
                let why = ProgramFile.refusal(named) ?? error.localizedDescription
                FileHandle.standardError.write(Data("error: cannot start rank \(rank) (\(arguments[0])): \(why)\n".utf8))
                throw ExitCode.failure
            }
            processes.append(process)
        }
        // Wait for all; the first failure stops the rest. Endings are read with waitid(WNOWAIT)
        // (ProcessEnding), not Foundation's isRunning, which lags the exit by as long as its own
        // reaping takes: a rank reaped late must not let a peer it brought down be named instead.
        func running() -> Bool { processes.contains { ProcessEnding(of: $0) == nil } }
        // Each rank is the leader of a process group of its own (Foundation spawns it so), and
        // what it starts (data loader workers, a shell's children) is in that group: signals go
        // to the whole group, as a container's stop reaches all it runs.
        func stopAll() {
            for process in processes where ProcessEnding(of: process) == nil { kill(-process.processIdentifier, SIGTERM) }
            let deadline = Date().addingTimeInterval(5)
            while running() && Date() < deadline { usleep(20_000) }
            for process in processes { kill(-process.processIdentifier, SIGKILL) }
        }
        func describe(_ index: Int, _ ending: ProcessEnding) -> String {
            // A launcher whose named rank only failed because another did says so too (76), so
            // that whatever runs launchers on several nodes can tell them apart in turn.
            if ending.peerFailedFirst { failureStatus = ExitCode(RankExit.peerFailedStatus) }
            return "rank \(nodeRank * nproc + index) (pid \(processes[index].processIdentifier)) on \(host) \(ending)"
        }
        // The ranks: Foundation's to reap. Any other child is an orphan handed to this subreaper.
        let known = Set(processes.map(\.processIdentifier))
        func cleanUp() {
            // What the ranks left running ends with the job: all of each rank's cgroup, where
            // it has one; what stayed in their groups (a group's id cannot name another group
            // meanwhile: the kernel hands out no pid that a group still uses).
            for cgroup in cgroups { cgroup?.destroy() }
            for process in processes { kill(-process.processIdentifier, SIGKILL) }
            for localRank in 0..<nproc {
                _ = Leftovers.kill(tagged: Leftovers.tag(worker: launchTag, assignment: "rank \(nodeRank * nproc + localRank)"))
            }
            // The orphans handed to this subreaper (Foundation reaps only the ranks themselves).
            for _ in 0..<50 where Leftovers.children().contains(where: { !known.contains($0) }) {
                Leftovers.reapAdopted(known: known)
                usleep(10_000)
            }
            // A rank killed before its group formed leaves its shared-memory mailbox behind.
            for process in processes { SharedMemoryTransport.removeMailboxes(ofProcess: process.processIdentifier) }
        }
        // A rank that failed because another did first (RankExit.peerFailedStatus) is named only
        // when no other failure shows within `LaunchCommand.causeGrace`: a peer that crashed can
        // be seen to exit a moment after the ranks it brought down. Nothing is stopped meanwhile,
        // so every failure seen in that time is one of the ranks' own.
        var failure: String?
        var failureStatus = ExitCode.failure
        var peerFailureSeen: Date?
        var turns = 0
        while running() {
            if let signal = stopSignal.received {
                stopAll()
                cleanUp()
                FileHandle.standardError.write(Data("forge launch: stopped all ranks on signal \(signal)\n".utf8))
                throw ExitCode(128 + signal)
            }
            if failure == nil {
                let order = exits.indices
                if let (index, ending) = ProcessEnding.firstFailure(in: order, of: processes, causesOnly: true) {
                    failure = describe(index, ending)
                } else if let (index, ending) = ProcessEnding.firstFailure(in: order, of: processes, causesOnly: false) {
                    let seen = peerFailureSeen ?? Date()
                    peerFailureSeen = seen
                    if Date().timeIntervalSince(seen) >= LaunchCommand.causeGrace { failure = describe(index, ending) }
                }
                if failure != nil { stopAll() }
            }
            usleep(20_000)
            turns += 1
            // Orphans handed to this subreaper that have exited, once a second.
            if turns % 50 == 0 { Leftovers.reapAdopted(known: known) }
        }
        cleanUp()
        let order = exits.indices + Array(processes.indices)
        if failure == nil, let (index, ending) = ProcessEnding.firstFailure(in: order, of: processes, causesOnly: true)
            ?? ProcessEnding.firstFailure(in: order, of: processes, causesOnly: false) {
            failure = describe(index, ending)
        }
        if let failure {
            FileHandle.standardError.write(Data("error: \(failure); stopped the other ranks\n".utf8))
            throw failureStatus
        }
    }

    /// How long a failure that blames another rank waits to be explained by that rank's own.
    static let causeGrace: TimeInterval = 2

    /// "HOST:PORT" → (HOST, PORT).
    static func split(_ endpoint: String) -> (host: String, port: Int)? {
        guard let colon = endpoint.lastIndex(of: ":"), let port = Int(endpoint[endpoint.index(after: colon)...]),
              (1...65535).contains(port), colon != endpoint.startIndex else { return nil }
        return (String(endpoint[..<colon]), port)
    }

    /// `forge` means this very executable; other names are looked up on PATH.
    static func resolve(_ name: String) -> String {
        if name.contains("/") { return name }
        if name == "forge" { return "/proc/self/exe" }
        for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") {
            let candidate = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return name
    }

    /// A TCP port nobody listens on right now (the kernel's pick for port 0).
    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ValidationError("cannot open a socket to find a free port") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard bound == 0 else { throw ValidationError("cannot find a free port") }
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

/// Remembers the first of `signals` the process receives (they no longer kill it).
///
/// Concurrency: Sendable; `received` is guarded by `lock`, and the dispatch sources live as
/// long as the latch.
final class SignalLatch: @unchecked Sendable {
    private let lock = NSLock()
    private var signal: Int32?
    private var sources: [any DispatchSourceSignal] = []

    init(signals: [Int32]) {
        for number in signals {
            // A handler that does nothing, not SIG_IGN: ignored signals stay ignored across
            // exec, so ranks and workers' children would never die of SIGTERM; a handler is reset
            // to the default in every child. The dispatch source sees the signal either way.
            Foundation.signal(number, ignoreSignal)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { [weak self] in self?.record(number) }
            source.resume()
            sources.append(source)
        }
    }

    var received: Int32? {
        lock.lock()
        defer { lock.unlock() }
        return signal
    }

    private func record(_ number: Int32) {
        lock.lock()
        if signal == nil { signal = number }
        lock.unlock()
    }
}

/// The do-nothing handler SignalLatch installs.
private let ignoreSignal: @convention(c) (Int32) -> Void = { _ in }

extension ProcessEnding {
    /// The first rank in `order` (the order they were seen to exit) that failed, leaving out
    /// those that failed because another rank did first when `causesOnly`. Nil while none has,
    /// and also while an earlier one's ending cannot be read yet: naming a later rank then
    /// could blame a peer that only failed because the earlier one was gone.
    static func firstFailure(in order: [Int], of processes: [Process], causesOnly: Bool) -> (Int, ProcessEnding)? {
        for index in order {
            guard let ending = ProcessEnding(of: processes[index]) else { return nil }
            if !ending.succeeded && !(causesOnly && ending.peerFailedFirst) { return (index, ending) }
        }
        return nil
    }
}

/// The local ranks in the order they exited.
///
/// Foundation reaps children in no particular order once several have exited, and a thread
/// woken per child runs whenever the scheduler lets it, so neither tells which rank went
/// first. The kernel does: an epoll set of pidfds (forge_exit_watch_*) queues each exit as it
/// happens, and one thread drains it in that order. Where pidfds are missing (kernels before
/// 5.3), a thread per rank waits on Foundation instead, and the order is only roughly right.
///
/// Concurrency: `@unchecked Sendable`; `lock` guards `order`; the watch descriptor is written
/// once in init and only read after.
final class ExitOrder: @unchecked Sendable {
    private let lock = NSLock()
    private var order: [Int] = []
    private let watchDescriptor = forge_exit_watch_create()
    private var draining = false
    /// Every process watched, by local rank.
    private var processes: [(Int, Process)] = []

    private func watched() -> [(Int, Process)] {
        lock.lock()
        defer { lock.unlock() }
        return processes
    }

    /// Starts watching `process` (already running) as local rank `index`.
    func watch(_ process: Process, as index: Int) {
        lock.lock()
        processes.append((index, process))
        lock.unlock()
        if watchDescriptor >= 0 {
            if forge_exit_watch_add(watchDescriptor, process.processIdentifier, UInt32(index)) == 0 {
                startDraining()
                return
            }
            if errno == ESRCH {
                record(index)  // Gone, and reaped, already.
                return
            }
        }
        waitWithoutWatch(process, index)
    }

    /// Without pidfds: a thread per rank waits on Foundation.
    private func waitWithoutWatch(_ process: Process, _ index: Int) {
        Thread { [self] in
            process.waitUntilExit()
            record(index)
        }.start()
    }

    private func startDraining() {
        lock.lock()
        defer { lock.unlock() }
        guard !draining else { return }
        draining = true
        Thread { [self] in
            var tags = [UInt32](repeating: 0, count: 64)
            while true {
                let count = forge_exit_watch_next(watchDescriptor, &tags, Int32(tags.count))
                guard count >= 0 else {
                    // The watch broke (it should not): the ranks not seen to exit yet are waited
                    // for one by one, so that a failure still stops the rest.
                    FileHandle.standardError.write(Data("forge launch: watching rank exits failed (\(String(cString: strerror(errno)))); waiting on each rank instead\n".utf8))
                    for (index, process) in watched() where !indices.contains(index) { waitWithoutWatch(process, index) }
                    return
                }
                for tag in tags.prefix(Int(count)) { record(Int(tag)) }
            }
        }.start()
    }

    /// Notes that local rank `index` exited (once; later reports of it are ignored).
    private func record(_ index: Int) {
        lock.lock()
        if !order.contains(index) { order.append(index) }
        lock.unlock()
    }

    var indices: [Int] {
        lock.lock()
        defer { lock.unlock() }
        return order
    }
}
