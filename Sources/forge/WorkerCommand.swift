// `forge worker`: the node agent. Registers with a coordinator, heartbeats, runs the ranks it
// is assigned as child processes and reports how they end.
import ArgumentParser
import ForgeWorker
import Foundation

struct WorkerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Run the node agent: take rank assignments from a coordinator and run them.",
        discussion: """
        The worker registers its cores, memory and labels, heartbeats every second, runs each \
        assigned rank as a child process in --work-dir, streams its output back and reports its \
        exit. SIGTERM or SIGINT stops its ranks (SIGTERM, then SIGKILL after a grace period) and \
        then the worker.
        """
    )

    @Option(name: .long, help: "The coordinator's control endpoint, tcp://HOST:PORT.")
    var coordinator: String

    @Option(name: .long, help: "Folder for the ranks' working folders.")
    var workDir: String

    @Option(name: .long, help: "Instance type label (e.g. ml.m5.xlarge); without one the worker takes any instance type.")
    var instanceType: String?

    @Option(name: .long, help: "Instance group name (HyperPod-style clusters).")
    var instanceGroup: String?

    @Option(name: .long, help: "A cluster key file (forge keygen): CURVE on the control plane, and given to the ranks.")
    var clusterKey: String?

    @Option(name: .long, help: "Address other hosts reach this worker's ranks at (default: FORGE_NODE_ADDR, else this host's name).")
    var nodeAddr: String?

    func run() throws {
        let logger = Log.logger(verbose: false)
        let host = nodeAddr ?? ProcessInfo.processInfo.environment["FORGE_NODE_ADDR"] ?? ProcessInfo.processInfo.hostName
        let configuration = WorkerConfiguration(coordinator: coordinator, workDirectory: workDir, instanceType: instanceType,
                                                instanceGroup: instanceGroup, clusterKeyPath: clusterKey,
                                                forgeExecutable: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
                                                    ?? CommandLine.arguments[0],
                                                host: host)
        let stop = SignalLatch(signals: [SIGINT, SIGTERM])
        do {
            let agent = try WorkerAgent(configuration: configuration, logger: logger)
            try agent.run { stop.received != nil }
        } catch {
            FileHandle.standardError.write(Data("error: worker: \(error)\n".utf8))
            throw ExitCode.failure
        }
    }
}
