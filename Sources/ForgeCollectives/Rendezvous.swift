// Rendezvous, torchrun-style: rank 0 listens on the master address; every other rank tells it
// its data-plane endpoint; once all have, rank 0 answers each with the full list. A second round
// the same way gathers what each rank made of the list (which peers' shared memory it could
// map), so that every pair agrees on how it talks. No coordinator is needed.
import ForgeTransport
import Foundation

/// Where the group meets and who this rank is.
public struct RendezvousConfiguration: Sendable, Hashable {
    public var rank: Int
    public var worldSize: Int
    /// `tcp://MASTER_ADDR:MASTER_PORT`, where rank 0 listens.
    public var master: String
    public var timeoutMilliseconds: Int

    public init(rank: Int, worldSize: Int, master: String, timeoutMilliseconds: Int = 60_000) {
        self.rank = rank
        self.worldSize = worldSize
        self.master = master
        self.timeoutMilliseconds = timeoutMilliseconds
    }
}

/// What a rank tells the others about itself in the rendezvous.
public struct PeerAddress: Codable, Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible {
    /// The ZeroMQ data endpoint.
    public var endpoint: String
    /// Ranks with the same host key share a kernel, a mount and a network namespace: they can
    /// map each other's shared memory (nil when this rank offers none).
    public var host: String?
    /// This rank's shared-memory mailbox, when it offers one.
    public var mailbox: SharedMemoryMailbox?
    /// This rank's plain TCP data socket (`SocketTransport`), when it offers one.
    public var socket: String?
    /// With a cluster key: this rank's secret for sealing that socket's connections (base64 of
    /// `SocketTransport.sealingSecret`); only ever sent through the CURVE-protected rendezvous.
    public var sealing: String?

    public init(endpoint: String, host: String? = nil, mailbox: SharedMemoryMailbox? = nil, socket: String? = nil, sealing: String? = nil) {
        self.endpoint = endpoint
        self.host = host
        self.mailbox = mailbox
        self.socket = socket
        self.sealing = sealing
    }

    public var debugDescription: String { description }

    /// Everything but the sealing secret, which must never reach a log.
    public var description: String {
        "PeerAddress(endpoint: \(endpoint), host: \(host ?? "-"), mailbox: \(mailbox.map { "\($0)" } ?? "-"), socket: \(socket ?? "-")"
            + (sealing == nil ? ")" : ", sealing: <secret>)")
    }

    /// This machine's host key: the boot id and the mount and network namespaces (so ranks in
    /// separate network namespaces, as multi-node tests make them, count as separate hosts).
    public static func currentHostKey() -> String? {
        guard let boot = try? String(contentsOfFile: "/proc/sys/kernel/random/boot_id", encoding: .utf8),
              let mount = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/mnt"),
              let network = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/net") else { return nil }
        return "\(boot.trimmingCharacters(in: .whitespacesAndNewlines))/\(mount)/\(network)"
    }
}

/// One rank's message to rank 0, and rank 0's answer.
struct RendezvousMessage: Codable, Equatable {
    var rank: Int
    var worldSize: Int
    /// The sender's address (hello) …
    var address: PeerAddress?
    /// … or every rank's address in rank order (answer).
    var addresses: [PeerAddress]?
    /// Second round: the peers whose mailboxes the sender mapped (hello) …
    var mapped: [Int]?
    /// … or every rank's, in rank order (answer).
    var everyMapped: [[Int]]?
}

public enum Rendezvous {
    /// Exchanges data-plane addresses, then what each rank made of them: `map` runs on every
    /// rank once all addresses are known and returns the peers whose shared memory it mapped.
    /// Returns every rank's address and every rank's mapped peers, in rank order. A rank that
    /// does not show up within the timeout is an error naming it.
    public static func exchange(_ configuration: RendezvousConfiguration, address endpoint: PeerAddress, context: ZMQContext,
                                key: ClusterKey?,
                                map: ([PeerAddress]) -> [Int] = { _ in [] }) throws(CollectiveError) -> (addresses: [PeerAddress], mapped: [[Int]]) {
        let (rank, worldSize) = (configuration.rank, configuration.worldSize)
        guard worldSize >= 1, rank >= 0, rank < worldSize else {
            throw .invalidArgument("rank \(rank) of a group of \(worldSize)")
        }
        guard worldSize > 1 else { return ([endpoint], [map([endpoint])]) }
        // A peer holding another cluster key is silent, not refused (libzmq drops a failed
        // CURVE handshake without a word): a timeout says so when there is a key.
        let keyHint = key == nil ? "" : "; with a cluster key, does it hold the same one? (a CURVE handshake with another key fails silently)"
        do {
            return try rank == 0
                ? serve(configuration, endpoint: endpoint, context: context, key: key, map: map)
                : join(configuration, endpoint: endpoint, context: context, key: key, map: map)
        } catch CollectiveError.timedOut(let peer, let milliseconds) where rank == 0 {
            throw .transport(peer: peer, reason: "rank \(peer) did not join the rendezvous at \(configuration.master) within \(milliseconds) ms "
                + "(is it running\(keyHint.isEmpty ? "?)" : keyHint + ")")")
        } catch let error as CollectiveError {
            throw error
        } catch let error as TransportError {
            if case .timedOut = error {
                throw .transport(peer: 0, reason: "no answer from the rendezvous at \(configuration.master) within \(configuration.timeoutMilliseconds) ms "
                    + "(is rank 0 running\(keyHint.isEmpty ? "?)" : keyHint + ")")")
            }
            throw .transport(peer: 0, reason: "rendezvous at \(configuration.master): \(error)")
        } catch {
            throw .protocolViolation(peer: 0, reason: "rendezvous message: \(error)")
        }
    }

    private static func serve(_ configuration: RendezvousConfiguration, endpoint: PeerAddress, context: ZMQContext,
                              key: ClusterKey?, map: ([PeerAddress]) -> [Int]) throws -> (addresses: [PeerAddress], mapped: [[Int]]) {
        let socket = try ZMQSocket(context, kind: .router)
        if let key { try socket.makeCurveServer(key) }
        try socket.bind(configuration.master)
        var endpoints = [PeerAddress?](repeating: nil, count: configuration.worldSize)
        endpoints[0] = endpoint
        var identities = [[UInt8]](repeating: [], count: configuration.worldSize)
        try collect(from: socket, configuration) { identity, hello in
            guard hello.worldSize == configuration.worldSize, hello.rank > 0, hello.rank < configuration.worldSize,
                  let theirs = hello.address else {
                throw CollectiveError.protocolViolation(peer: hello.rank, reason: "joined as rank \(hello.rank) of \(hello.worldSize); this group has \(configuration.worldSize)")
            }
            guard endpoints[hello.rank] == nil else {
                throw CollectiveError.protocolViolation(peer: hello.rank, reason: "two processes claim rank \(hello.rank)")
            }
            endpoints[hello.rank] = theirs
            identities[hello.rank] = identity
            return hello.rank
        }
        let all = endpoints.compactMap { $0 }
        for peer in 1..<configuration.worldSize {
            let answer = RendezvousMessage(rank: 0, worldSize: configuration.worldSize, address: nil, addresses: all)
            try socket.send([identities[peer], [UInt8](try JSONEncoder().encode(answer))])
        }
        // Second round, from the ranks now known by their identities.
        var mapped = [[Int]?](repeating: nil, count: configuration.worldSize)
        mapped[0] = map(all)
        try collect(from: socket, configuration) { identity, hello in
            guard hello.rank > 0, hello.rank < configuration.worldSize, identities[hello.rank] == identity,
                  let theirs = hello.mapped, mapped[hello.rank] == nil else {
                throw CollectiveError.protocolViolation(peer: hello.rank, reason: "an unexpected second rendezvous message from rank \(hello.rank)")
            }
            mapped[hello.rank] = theirs
            return hello.rank
        }
        let everyMapped = mapped.map { $0 ?? [] }
        for peer in 1..<configuration.worldSize {
            let answer = RendezvousMessage(rank: 0, worldSize: configuration.worldSize, everyMapped: everyMapped)
            try socket.send([identities[peer], [UInt8](try JSONEncoder().encode(answer))])
        }
        return (all, everyMapped)
    }

    /// Takes one message from each of ranks 1..<worldSize (`take` checks and keeps it and says
    /// whose it was) within the group's timeout; one that does not come is an error naming it.
    private static func collect(from socket: ZMQSocket, _ configuration: RendezvousConfiguration,
                                _ take: (_ identity: [UInt8], _ message: RendezvousMessage) throws -> Int) throws {
        var arrived: Set<Int> = [0]
        let deadline = Date().addingTimeInterval(Double(configuration.timeoutMilliseconds) / 1000)
        while arrived.count < configuration.worldSize {
            let remaining = Int(deadline.timeIntervalSinceNow * 1000)
            guard remaining > 0 else {
                let missing = (0..<configuration.worldSize).first { !arrived.contains($0) } ?? 0
                throw CollectiveError.timedOut(peer: missing, milliseconds: configuration.timeoutMilliseconds)
            }
            try socket.setReceiveTimeout(remaining)
            guard let frames = try receive(socket), frames.count == 2 else { continue }
            arrived.insert(try take(frames[0], try JSONDecoder().decode(RendezvousMessage.self, from: Data(frames[1]))))
        }
    }

    /// The next message, or nil when none came within the socket's timeout.
    private static func receive(_ socket: ZMQSocket) throws(TransportError) -> [[UInt8]]? {
        do {
            return try socket.receive()
        } catch .timedOut {
            return nil
        }
    }

    private static func join(_ configuration: RendezvousConfiguration, endpoint: PeerAddress, context: ZMQContext,
                             key: ClusterKey?, map: ([PeerAddress]) -> [Int]) throws -> (addresses: [PeerAddress], mapped: [[Int]]) {
        let socket = try ZMQSocket(context, kind: .dealer)
        if let key { try socket.makeCurveClient(key) }
        try socket.setReceiveTimeout(configuration.timeoutMilliseconds)
        try socket.connect(configuration.master)
        let hello = RendezvousMessage(rank: configuration.rank, worldSize: configuration.worldSize, address: endpoint, addresses: nil)
        try socket.send([[UInt8](try JSONEncoder().encode(hello))])
        let frames = try socket.receive()
        guard frames.count == 1 else { throw CollectiveError.protocolViolation(peer: 0, reason: "rendezvous answer of \(frames.count) frames") }
        let answer = try JSONDecoder().decode(RendezvousMessage.self, from: Data(frames[0]))
        guard let endpoints = answer.addresses, endpoints.count == configuration.worldSize else {
            throw CollectiveError.protocolViolation(peer: 0, reason: "rendezvous answer without \(configuration.worldSize) endpoints")
        }
        let mine = RendezvousMessage(rank: configuration.rank, worldSize: configuration.worldSize, mapped: map(endpoints))
        try socket.send([[UInt8](try JSONEncoder().encode(mine))])
        let second = try socket.receive()
        guard second.count == 1 else { throw CollectiveError.protocolViolation(peer: 0, reason: "rendezvous answer of \(second.count) frames") }
        guard let everyMapped = try JSONDecoder().decode(RendezvousMessage.self, from: Data(second[0])).everyMapped,
              everyMapped.count == configuration.worldSize else {
            throw CollectiveError.protocolViolation(peer: 0, reason: "second rendezvous answer without \(configuration.worldSize) lists")
        }
        return (endpoints, everyMapped)
    }
}
