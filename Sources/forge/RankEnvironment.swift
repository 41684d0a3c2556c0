// The data-parallel group a rank process joins: what `forge launch` put in its environment.
import ArgumentParser
import ForgeCollectives
import ForgeTraining
import ForgeTransport
import ForgeWire
import Foundation
import Logging

enum RankEnvironment {
    /// The exit status of a rank 0 that could not listen on MASTER_PORT (EX_TEMPFAIL), and the
    /// words its error line starts with: a coordinator retries such an attempt on another port.
    static let portTakenStatus = RankExit.portTakenStatus
    static let portTakenMarker = "MASTER_PORT"

    /// The status a rank exits with after `error`: RankExit.peerFailedStatus when another rank
    /// failed first (so that a launcher or coordinator names that one), 1 otherwise.
    static func failureStatus(_ error: any Error) -> ExitCode {
        switch error {
        case let error as CollectiveError where error.peerFailedFirst: return ExitCode(RankExit.peerFailedStatus)
        case TrainingError.peerFailed: return ExitCode(RankExit.peerFailedStatus)
        default: return .failure
        }
    }

    /// Whether a rank computing on `threads` threads should all-reduce gradients on a thread
    /// of its own, overlapped with backward: only when a CPU is left over for it (this
    /// process's CPUs, shared with the other local ranks unless forge launch bound each rank to
    /// its own). FORGE_OVERLAP_REDUCTION=0 or 1 decides instead.
    static func overlapReduction(_ environment: [String: String], threads: Int) -> Bool {
        if let forced = environment["FORGE_OVERLAP_REDUCTION"] { return forced != "0" }
        let sharing = environment["FORGE_CPU_BIND"] == "cores" ? 1 : Int(environment["LOCAL_WORLD_SIZE"] ?? "1") ?? 1
        return CPUBinding.allowedCPUs().count > threads * max(1, sharing)
    }

    /// True when the torchrun variables are all set.
    static func isRank(_ environment: [String: String]) -> Bool {
        ["RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"].allSatisfy { environment[$0] != nil }
    }

    /// The default wait on a silent peer: 30 s.
    static let defaultCollectiveTimeoutMilliseconds = 30_000

    /// FORGE_COLLECTIVE_TIMEOUT (seconds, a positive number) in milliseconds, or the default.
    static func collectiveTimeoutMilliseconds(_ environment: [String: String]) throws -> Int {
        guard let text = environment["FORGE_COLLECTIVE_TIMEOUT"] else { return defaultCollectiveTimeoutMilliseconds }
        guard let seconds = Double(text), seconds.isFinite, seconds > 0, seconds <= 86_400 else {
            throw ValidationError("FORGE_COLLECTIVE_TIMEOUT=\(text) is not a number of seconds between 0 and 86400 (forge launch --timeout sets it)")
        }
        return max(1, Int((seconds * 1000).rounded()))
    }

    /// Joins the group `forge launch` described (CURVE with `clusterKey` or FORGE_CLUSTER_KEY).
    static func joinGroup(_ environment: [String: String], clusterKey: String?, logger: Logger) throws -> ProcessGroup {
        guard let rank = environment["RANK"].flatMap(Int.init), let worldSize = environment["WORLD_SIZE"].flatMap(Int.init),
              let address = environment["MASTER_ADDR"], let port = environment["MASTER_PORT"] else {
            throw ValidationError("RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT must all be set (forge launch sets them)")
        }
        let keyPath = clusterKey ?? environment["FORGE_CLUSTER_KEY"]
        let key = try keyPath.map { path throws(TransportError) in try ClusterKey.load(path: path) }
        // How long a rank waits on a silent or dead peer before the collective fails on it
        // (FORGE_COLLECTIVE_TIMEOUT, seconds; forge launch --timeout sets it). The rendezvous
        // waits at least a minute: ranks on other nodes may start later.
        let timeout = try collectiveTimeoutMilliseconds(environment)
        let nodeAddress = environment["FORGE_NODE_ADDR"] ?? "127.0.0.1"
        let local = nodeAddress == "127.0.0.1"
        if rank == 0 {
            logger.info("data parallel: \(worldSize) ranks, rendezvous at \(address):\(port), \(key == nil ? "no cluster key: planes are plain" : "cluster key: rendezvous under CURVE, data plane encrypted")")
        }
        // Ranks on one host share memory unless FORGE_SHARED_MEMORY=0 keeps them on sockets.
        let sharedMemory = environment["FORGE_SHARED_MEMORY"] != "0"
        // Ranks on other hosts talk over TCP connections they poll themselves (sealed with a
        // cluster key), unless FORGE_PLAIN_SOCKETS=0 keeps them on ZeroMQ (CURVE with a key).
        let plainSockets = environment["FORGE_PLAIN_SOCKETS"] != "0"
        let group = try ProcessGroup.join(RendezvousConfiguration(rank: rank, worldSize: worldSize, master: "tcp://\(address):\(port)",
                                                                  timeoutMilliseconds: max(60_000, timeout)),
                                          bind: local ? "tcp://127.0.0.1:*" : "tcp://*:*", advertisedHost: local ? nil : nodeAddress, key: key,
                                          timeoutMilliseconds: timeout, sharedMemory: sharedMemory, plainSockets: plainSockets)
        // FORGE_DIRECT_REDUCE=0 keeps co-located ranks on the shared-memory rings' message
        // algorithms (no shared gradient regions, no scratch region).
        if environment["FORGE_DIRECT_REDUCE"] == "0" { group.directReduction = false }
        if let reason = group.sharedMemoryUnavailable {
            logger.warning("rank \(rank): no shared memory for ranks on this host, who talk over sockets: \(reason)")
        }
        for (peer, reason) in group.sharedMemoryRefusals.sorted(by: { $0.key < $1.key }) {
            logger.warning("rank \(rank): rank \(peer) is on this host but talks over sockets, not shared memory: \(reason)")
        }
        if rank == 0 {
            let rest = group.route(of: SocketTransport.self).map { $0.sealed ? "sealed tcp (AES-256-GCM)" : "plain tcp" } ?? (key == nil ? "ZeroMQ tcp" : "ZeroMQ tcp with CURVE")
            let shared = group.sharedMemoryPeers
            let remote = shared == worldSize - 1 ? "" : ", the rest over \(rest)"
            logger.info("data plane: \(shared) of \(worldSize - 1) peers through shared memory\(remote)")
        }
        return group
    }
}
