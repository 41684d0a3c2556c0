// `forge launch`: start N rank processes on this node, torchrun-style, and tear them all down
// when one fails.
import ArgumentParser
import CForgeSystem
import ForgeCollectives
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
        let cpus = CPUBinding.allowedCPUs()
        defer { if cpuBind == .cores { CPUBinding.pinCallingThread(to: cpus) } }
        for localRank in 0..<nproc {
            let rank = nodeRank * nproc + localRank
            let process = Process()
            process.executableURL = URL(fileURLWithPath: LaunchCommand.resolve(arguments[0]))
            process.arguments = Array(arguments.dropFirst())
            var environment = ProcessInfo.processInfo.environment
            environment["RANK"] = String(rank)
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
            process.environment = environment
            if cpuBind == .cores, !cpus.isEmpty {
                // The child inherits the spawning thread's CPU set.
                let share = CPUBinding.share(localRank, of: nproc, cpus: cpus)
                CPUBinding.pinCallingThread(to: share)
            }
            let index = processes.count
            process.terminationHandler = { _ in exits.record(index) }
            do {
                try process.run()
                // Foundation reaps children in no particular order once several have exited;
                // a pidfd wakes a watcher the moment this one exits.
                let pid = process.processIdentifier
                Thread { if forge_wait_for_exit(pid) == 0 { exits.record(index) } }.start()
            } catch {
                for started in processes { started.terminate() }
                FileHandle.standardError.write(Data("error: cannot start rank \(rank) (\(arguments[0])): \(error.localizedDescription)\n".utf8))
                throw ExitCode.failure
            }
            processes.append(process)
        }
        // Wait for all; the first failure stops the rest.
        var failure: String?
        while processes.contains(where: \.isRunning) {
            if let signal = stopSignal.received {
                for process in processes where process.isRunning { process.terminate() }
                let deadline = Date().addingTimeInterval(5)
                while processes.contains(where: \.isRunning) && Date() < deadline { usleep(20_000) }
                for process in processes where process.isRunning { kill(process.processIdentifier, SIGKILL) }
                for process in processes { SharedMemoryTransport.removeMailboxes(ofProcess: process.processIdentifier) }
                FileHandle.standardError.write(Data("forge launch: stopped all ranks on signal \(signal)\n".utf8))
                throw ExitCode(128 + signal)
            }
            if failure == nil, let index = exits.indices.first(where: { !processes[$0].isRunning && !LaunchCommand.succeeded(processes[$0]) }) {
                let process = processes[index]
                failure = "rank \(nodeRank * nproc + index) (pid \(process.processIdentifier)) on \(host) \(LaunchCommand.describe(process))"
                for other in processes where other.isRunning { other.terminate() }
                let deadline = Date().addingTimeInterval(5)
                while processes.contains(where: \.isRunning) && Date() < deadline { usleep(20_000) }
                for other in processes where other.isRunning { kill(other.processIdentifier, SIGKILL) }
            }
            usleep(20_000)
        }
        // A rank killed before its group formed leaves its shared-memory mailbox behind.
        for process in processes { SharedMemoryTransport.removeMailboxes(ofProcess: process.processIdentifier) }
        if failure == nil, let index = (exits.indices + Array(processes.indices)).first(where: { !LaunchCommand.succeeded(processes[$0]) }) {
            let process = processes[index]
            failure = "rank \(nodeRank * nproc + index) (pid \(process.processIdentifier)) on \(host) \(LaunchCommand.describe(process))"
        }
        if let failure {
            FileHandle.standardError.write(Data("error: \(failure); stopped the other ranks\n".utf8))
            throw ExitCode.failure
        }
    }

    /// "HOST:PORT" → (HOST, PORT).
    static func split(_ endpoint: String) -> (host: String, port: Int)? {
        guard let colon = endpoint.lastIndex(of: ":"), let port = Int(endpoint[endpoint.index(after: colon)...]),
              (1...65535).contains(port), colon != endpoint.startIndex else { return nil }
        return (String(endpoint[..<colon]), port)
    }

    static func succeeded(_ process: Process) -> Bool {
        process.terminationReason == .exit && process.terminationStatus == 0
    }

    static func describe(_ process: Process) -> String {
        process.terminationReason == .uncaughtSignal
            ? "was killed by signal \(process.terminationStatus)"
            : "exited with status \(process.terminationStatus)"
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

/// The local ranks in the order they exited, recorded from Foundation's termination handlers.
///
/// Concurrency: `@unchecked Sendable`; `lock` guards `order`.
final class ExitOrder: @unchecked Sendable {
    private let lock = NSLock()
    private var order: [Int] = []

    /// Notes that local rank `index` exited (once; later reports of it are ignored).
    func record(_ index: Int) {
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
