// The front of the collectives: a group of ranks and the operations they perform together.
import ForgeTransport
import Foundation

/// A group of ranks joined by a transport.
///
/// Concurrency: not Sendable; it belongs to the thread that runs this rank. After a
/// collective fails, the group is broken: recovery is a new rendezvous, not a retry.
public final class ProcessGroup {
    public let transport: any CollectiveTransport
    private let ring: RingAllReduce
    private let doubling: RecursiveDoublingAllReduce
    /// Recursive halving and doubling, for power-of-two groups of more than two ranks.
    private let halving: HalvingDoublingAllReduce?
    /// On a power-of-two group of more than two ranks, all-reduces above `smallAllReduceBytes`
    /// and up to this many bytes go by recursive halving and doubling (2 log2 P steps) instead
    /// of the ring (2(P − 1) steps); nil: never. Set it the same on every rank (`join` does:
    /// every size unless every pair of ranks shares memory; sub-groups inherit it).
    public var halvingDoublingBytes: Int?
    /// All-reduces of at most this many bytes use recursive doubling (fewest messages); larger
    /// ones the ring (least data per rank). See docs/collectives.md for how it was measured.
    public let smallAllReduceBytes: Int

    /// The measured crossover (docs/collectives.md): 64 KiB when every peer is in shared memory,
    /// where a message costs little and the ring's smaller combines win early; 256 KiB when any
    /// peer is behind a socket, where each message costs tens of microseconds.
    public static func defaultSmallAllReduceBytes(for transport: any CollectiveTransport) -> Int {
        if let subgroup = transport as? SubgroupTransport { return defaultSmallAllReduceBytes(for: subgroup.parent) }
        return smallAllReduceBytes(everyPeerInMemory: transport is SharedMemoryTransport || transport is InProcessTransport)
    }

    /// The doubling size: 64 KiB when every peer is reached in memory, 256 KiB otherwise.
    static func smallAllReduceBytes(everyPeerInMemory: Bool) -> Int { everyPeerInMemory ? 64 << 10 : 256 << 10 }

    /// The halving-and-doubling bound: never when every peer is reached in memory, else every size.
    static func halvingDoublingBytes(everyPeerInMemory: Bool) -> Int? { everyPeerInMemory ? nil : Int.max }

    /// Over sockets, every size (measured on 4 ranks over tcp from 1 to 64 MiB, docs/
    /// collectives.md); in shared memory, never: there a message costs little, and direct
    /// reduction takes these sizes when every peer shares memory.
    public static func defaultHalvingDoublingBytes(for transport: any CollectiveTransport) -> Int? {
        if let subgroup = transport as? SubgroupTransport { return defaultHalvingDoublingBytes(for: subgroup.parent) }
        return halvingDoublingBytes(everyPeerInMemory: transport is SharedMemoryTransport || transport is InProcessTransport)
    }
    private let broadcaster: PipelineBroadcast
    /// The group this one is a sub-group of: they share its transport, so a failure in either
    /// breaks both (a half-finished operation leaves messages behind on the shared streams).
    private let parentGroup: ProcessGroup?
    private var ownFailure: CollectiveError?
    /// Regions every co-located rank maps (`sharedBuffer(count:)`): buffers inside them are
    /// all-reduced in place, without messages.
    private var registered: [SharedReductionArena] = []
    /// The region all-reduces above `directAllReduceBytes` go through when every peer is in
    /// shared memory (made on first use).
    private var scratch: SharedReductionArena?
    private var arenasMade: UInt64 = 0
    /// All-reduces larger than this go through a shared scratch region (`SharedReductionArena`)
    /// instead of the ring, when every peer shares this host; nil: never.
    public var directAllReduceBytes: Int? = 8 << 10
    /// On more than two ranks, a buffer in a shared region of at most this many bytes still goes
    /// by recursive doubling: three handshakes among oversubscribed ranks cost more than one
    /// exchange of a few KiB (measured: 4 KiB on 4 ranks, 65 µs against 14 µs).
    static let registeredDoublingBytes = 8 << 10
    /// Whether `sharedBuffer(count:)` and `directAllReduceBytes` may make shared regions at all
    /// (set it the same on every rank).
    public var directReduction = true
    /// Floats in each rank's scratch region (two halves used in turn).
    public var scratchFloats = 1 << 19
    /// The failure that broke this group or one it shares a transport with.
    public var broken: CollectiveError? { ownFailure ?? parentGroup?.broken }

    public convenience init(transport: any CollectiveTransport, chunkElements: Int = 1 << 16,
                            smallAllReduceBytes: Int? = nil) {
        self.init(transport: transport, chunkElements: chunkElements, smallAllReduceBytes: smallAllReduceBytes, parent: nil)
    }

    private init(transport: any CollectiveTransport, chunkElements: Int, smallAllReduceBytes: Int?, parent: ProcessGroup?) {
        parentGroup = parent
        self.transport = transport
        self.smallAllReduceBytes = smallAllReduceBytes ?? ProcessGroup.defaultSmallAllReduceBytes(for: transport)
        ring = RingAllReduce(transport: transport, chunkElements: chunkElements)
        doubling = RecursiveDoublingAllReduce(transport: transport, chunkElements: chunkElements)
        let ranks = transport.worldSize
        halving = ranks > 2 && ranks.nonzeroBitCount == 1 ? HalvingDoublingAllReduce(transport: transport, chunkElements: chunkElements) : nil
        halvingDoublingBytes = ProcessGroup.defaultHalvingDoublingBytes(for: transport)
        broadcaster = PipelineBroadcast(transport: transport, chunkElements: chunkElements)
    }

    public var rank: Int { transport.rank }
    public var worldSize: Int { transport.worldSize }

    /// Joins a group: binds this rank's ZeroMQ data endpoint at `bind` (e.g. `tcp://HOST:*`, or
    /// `tcp://*:*` with `advertisedHost`), meets the others at the master, and connects to all.
    /// With `sharedMemory`, ranks on the same host (same kernel, mount and network namespace)
    /// talk through shared-memory rings instead of sockets. The others talk through TCP
    /// connections the rank polls itself (`SocketTransport`; sealed with a cluster key), or
    /// through ZeroMQ (CURVE with a cluster key) when the bind is not tcp:// or `plainSockets`
    /// is off.
    public static func join(_ configuration: RendezvousConfiguration, bind: String, advertisedHost: String? = nil,
                            key: ClusterKey?, timeoutMilliseconds: Int = 30_000,
                            sharedMemory: Bool = true, plainSockets: Bool = true, chunkElements: Int = 1 << 16,
                            smallAllReduceBytes: Int? = nil) throws(CollectiveError) -> ProcessGroup {
        try join(configuration, bind: bind, advertisedHost: advertisedHost, key: key, timeoutMilliseconds: timeoutMilliseconds,
                 sharedMemory: sharedMemory, plainSockets: plainSockets, chunkElements: chunkElements,
                 smallAllReduceBytes: smallAllReduceBytes, declining: [])
    }

    /// `join`, with `declining`: peers on this host whose mailboxes this rank does not map, as if
    /// mapping them had failed (tests make groups where some pairs share memory and some do not).
    static func join(_ configuration: RendezvousConfiguration, bind: String, advertisedHost: String?,
                     key: ClusterKey?, timeoutMilliseconds: Int, sharedMemory: Bool, plainSockets: Bool, chunkElements: Int,
                     smallAllReduceBytes: Int?, declining: Set<Int>) throws(CollectiveError) -> ProcessGroup {
        let context: ZMQContext
        do {
            context = try ZMQContext()
        } catch {
            throw .transport(peer: configuration.rank, reason: error.description)
        }
        let (rank, worldSize) = (configuration.rank, configuration.worldSize)
        let zmq = try ZMQTransport(context: context, rank: rank, worldSize: worldSize,
                                   bind: bind, advertisedHost: advertisedHost, key: key, timeoutMilliseconds: timeoutMilliseconds)
        // A host without a usable /dev/shm simply offers no mailbox.
        let host = sharedMemory && worldSize > 1 ? PeerAddress.currentHostKey() : nil
        var shm: SharedMemoryTransport?
        var unavailable: String?
        if host != nil {
            do {
                shm = try SharedMemoryTransport(rank: rank, worldSize: worldSize, capacity: SharedMemoryTransport.ringCapacity(worldSize: worldSize),
                                                timeoutMilliseconds: timeoutMilliseconds)
            } catch {
                unavailable = error.description
            }
        }
        var sockets: SocketTransport?
        if plainSockets, worldSize > 1, bind.hasPrefix("tcp://"), let colon = bind.lastIndex(of: ":") {
            let bindHost = String(bind[bind.index(bind.startIndex, offsetBy: 6)..<colon])
            sockets = try SocketTransport(rank: rank, worldSize: worldSize, host: bindHost, advertisedHost: advertisedHost,
                                          timeoutMilliseconds: timeoutMilliseconds, sealedWith: key)
        }
        let me = PeerAddress(endpoint: zmq.endpoint, host: shm == nil ? nil : host, mailbox: shm?.mailbox, socket: sockets?.endpoint,
                             sealing: sockets?.sealingSecret.map { Data($0).base64EncodedString() })
        // Each rank maps the mailboxes of the peers on its host; a pair talks through shared
        // memory only when both sides could (a full /dev/shm fails one side, and a pair must
        // agree on how it talks), else over the sockets.
        var refusals: [Int: String] = [:]
        let (peers, mapped) = try Rendezvous.exchange(configuration, address: me, context: context, key: key) { peers in
            guard let shm, let host else { return [] }
            var attached: [Int] = []
            for peer in 0..<worldSize where peer != rank && peers[peer].host == host && !declining.contains(peer) {
                guard let mailbox = peers[peer].mailbox else { continue }
                do throws(CollectiveError) {
                    try shm.attach(peer: peer, mailbox: mailbox)
                    attached.append(peer)
                } catch {
                    refusals[peer] = error.description
                }
            }
            return attached
        }
        // The second round ended once every rank had mapped what it could: the files can go
        // (the mappings stay), so nothing is left in /dev/shm however the job ends.
        shm?.unlinkMailbox()
        var local = Set<Int>()
        if let shm {
            for peer in 0..<worldSize where peer != rank && shm.isAttached(peer) {
                if mapped[peer].contains(rank) {
                    local.insert(peer)
                } else {
                    shm.detach(peer: peer)
                    refusals[peer] = "rank \(peer) could not map this rank's mailbox"
                }
            }
        }
        // Every rank sees the same addresses, so every rank makes the same choice.
        let remote: any CollectiveTransport
        let secrets = peers.map { $0.sealing.flatMap { Data(base64Encoded: $0) }.map { [UInt8]($0) } }
        if let sockets, peers.allSatisfy({ $0.socket != nil }), !sockets.sealed || secrets.allSatisfy({ $0?.count == 32 }) {
            try sockets.connect(to: peers.map { $0.socket ?? "" }, secrets: sockets.sealed ? secrets.map { $0 ?? [] } : nil, skipping: local)
            remote = sockets
        } else {
            try zmq.connect(to: peers.map(\.endpoint), skipping: local)
            remote = zmq
        }
        let transport: any CollectiveTransport
        if let shm, !local.isEmpty {
            let routes: [any CollectiveTransport] = (0..<worldSize).map { local.contains($0) ? shm as any CollectiveTransport : remote }
            transport = local.count == worldSize - 1 ? shm : RoutedTransport(routes: routes, rank: rank)
        } else {
            transport = remote
        }
        // Every rank must pick the same algorithm for a call, so what depends on the transport is
        // decided from the lists all ranks reported, not from this rank's own pairs (a rank
        // whose pairs all share memory may sit in a group where two others' do not): shared
        // regions, and the sizes at which the algorithms change.
        let everyPairShares = ProcessGroup.everyPairShares(mapped)
        let group = ProcessGroup(transport: transport, chunkElements: chunkElements,
                                 smallAllReduceBytes: smallAllReduceBytes ?? ProcessGroup.smallAllReduceBytes(everyPeerInMemory: everyPairShares))
        group.halvingDoublingBytes = ProcessGroup.halvingDoublingBytes(everyPeerInMemory: everyPairShares)
        group.sharedMemoryRefusals = refusals
        group.sharedMemoryUnavailable = unavailable
        if !everyPairShares { group.directReduction = false }
        return group
    }

    /// Whether every pair of ranks shares memory, from the peers each rank reported mapping
    /// (`mapped[r]`: rank r's): a pair shares when each side mapped the other. One rank's own
    /// pairs may all share while two other ranks' pair does not.
    static func everyPairShares(_ mapped: [[Int]]) -> Bool {
        mapped.indices.allSatisfy { one in
            mapped.indices.allSatisfy { other in one == other || (mapped[one].contains(other) && mapped[other].contains(one)) }
        }
    }

    /// Peers on this rank's host it reaches over sockets because the pair could not share
    /// memory, and why (a full /dev/shm, most often).
    public internal(set) var sharedMemoryRefusals: [Int: String] = [:]
    /// Why this rank offered no shared memory at all (its mailbox could not be made), if so.
    public internal(set) var sharedMemoryUnavailable: String?

    /// The transport of type `T` this group talks through: its own, or one of its routes.
    public func route<T: CollectiveTransport>(of _: T.Type) -> T? {
        (transport as? T) ?? (transport as? RoutedTransport)?.routes.lazy.compactMap { $0 as? T }.first
    }

    /// How many peers this rank reaches through shared memory.
    public var sharedMemoryPeers: Int {
        guard let shm = route(of: SharedMemoryTransport.self) else { return 0 }
        return (0..<worldSize).filter { $0 != rank && shm.isAttached($0) }.count
    }

    /// Reduces `buffer` across the group in place (every rank passes the same count): in place
    /// in a shared region, or through a scratch one, when every rank shares memory; else
    /// recursive doubling up to `smallAllReduceBytes`, above it recursive halving and doubling
    /// (power-of-two groups of more than two, up to `halvingDoublingBytes`) or the ring.
    public func allReduce(_ buffer: UnsafeMutableBufferPointer<Float>, op: ReduceOp) throws(CollectiveError) {
        try guarded { () throws(CollectiveError) in
            if let arena = registeredArena(holding: buffer),
               worldSize == 2 || buffer.count * 4 > ProcessGroup.registeredDoublingBytes {
                try arena.allReduce(buffer, op: op)
            } else if let threshold = directAllReduceBytes, buffer.count * 4 > threshold, let arena = try scratchArena() {
                try arena.allReduce(buffer, op: op)
            } else if buffer.count * 4 <= smallAllReduceBytes {
                try doubling.run(buffer, op: op)
            } else if let halving, let limit = halvingDoublingBytes, buffer.count * 4 <= limit {
                try halving.run(buffer, op: op)
            } else {
                try ring.run(buffer, op: op)
            }
        }
    }

    /// A buffer of `count` floats (zeroed) in a region every rank of the group maps, when every
    /// peer shares this host (else nil, on every rank): all-reduces of buffers inside it run in
    /// place, each rank reducing its segment straight from the others' memory. Every rank calls
    /// it, with the same count. The buffer lives as long as the group.
    ///
    /// The last `rankZeroOnlyTail` floats take memory on rank 0 alone: for something only rank
    /// 0's copy holds and every rank reaches through `sharedCounterpart(of:on: 0)`. Other ranks
    /// must never touch their own copy of them.
    public func sharedBuffer(count: Int, rankZeroOnlyTail: Int = 0) throws(CollectiveError) -> UnsafeMutableBufferPointer<Float>? {
        guard count > 0 else { return nil }
        var arena: SharedReductionArena?
        try guarded { () throws(CollectiveError) in arena = try makeArena(floats: count, rankZeroOnlyTail: rankZeroOnlyTail) }
        guard let arena else { return nil }
        registered.append(arena)
        return UnsafeMutableBufferPointer(start: arena.base, count: count)
    }

    /// `buffer`'s place (inside a `sharedBuffer` of this rank) in rank `owner`'s region: memory
    /// every rank of the group maps, so one copy of something (a model's values) can serve them
    /// all. Nil when `buffer` is in no shared region.
    public func sharedCounterpart(of buffer: UnsafeMutableBufferPointer<Float>, on owner: Int) -> UnsafeMutableBufferPointer<Float>? {
        registeredArena(holding: buffer)?.counterpart(of: buffer, in: owner)
    }

    /// The shared region `buffer` lies in, if any.
    private func registeredArena(holding buffer: UnsafeMutableBufferPointer<Float>) -> SharedReductionArena? {
        registered.first { $0.contains(buffer) }
    }

    private func scratchArena() throws(CollectiveError) -> SharedReductionArena? {
        if scratch == nil {
            scratch = try makeArena(floats: scratchFloats)
            // Nobody has one when any rank could not make one: stop asking.
            if scratch == nil { directAllReduceBytes = nil }
        }
        return scratch
    }

    private func makeArena(floats: Int, rankZeroOnlyTail: Int = 0) throws(CollectiveError) -> SharedReductionArena? {
        guard directReduction, worldSize > 1, let shm = transport as? SharedMemoryTransport,
              (0..<worldSize).allSatisfy({ $0 == rank || shm.isAttached($0) }) else { return nil }
        arenasMade += 1
        return try SharedReductionArena.make(transport: shm, capacity: floats, tag: (5 << 60) | arenasMade, rankZeroOnlyTail: rankZeroOnlyTail)
    }

    /// Reduce-scatter in place: afterwards `segment(of:)` of `buffer` holds this rank's share of
    /// the reduction (the rest: partial sums, or this rank's own input for a buffer in a shared
    /// region, which is reduced straight from the other ranks' memory).
    public func reduceScatter(_ buffer: UnsafeMutableBufferPointer<Float>, op: ReduceOp) throws(CollectiveError) {
        try guarded { () throws(CollectiveError) in
            if let arena = registeredArena(holding: buffer) {
                try arena.reduceScatter(buffer, op: op)
            } else {
                try ring.reduceScatter(buffer, op: op)
            }
        }
    }

    /// All-gather in place: every rank's `segment(of:)` of `buffer` reaches every rank.
    public func allGather(_ buffer: UnsafeMutableBufferPointer<Float>) throws(CollectiveError) {
        try guarded { () throws(CollectiveError) in
            if let arena = registeredArena(holding: buffer) {
                try arena.allGather(buffer)
            } else {
                try ring.allGather(buffer)
            }
        }
    }

    /// A sharded optimizer step (ZeRO-1): sums `gradients` so that this rank's `segment(of:)`
    /// holds the reduction, runs `update` (which writes this rank's segment of `values` from it),
    /// and gathers every rank's segment of `values` to every rank; `scalars` are all-reduced
    /// (summed) with it. When all three lie in one shared region (`sharedBuffer`) this is one
    /// pass with three handshakes; otherwise an all-reduce of the scalars, a reduce-scatter
    /// and an all-gather.
    public func reduceScatterUpdateGather(gradients: UnsafeMutableBufferPointer<Float>, values: UnsafeMutableBufferPointer<Float>,
                                          scalars: UnsafeMutableBufferPointer<Float>, update: () -> Void) throws(CollectiveError) {
        try guarded { () throws(CollectiveError) in
            if let arena = registeredArena(holding: gradients), arena.contains(values), scalars.isEmpty || arena.contains(scalars) {
                try arena.reduceScatterUpdateGather(gradients: gradients, values: values, scalars: scalars, update: update)
                return
            }
            if !scalars.isEmpty { try allReduce(scalars, op: .sum) }
            try reduceScatter(gradients, op: .sum)
            update()
            try allGather(values)
        }
    }

    /// A sharded optimizer step over values all the ranks share (one copy in a shared region,
    /// `sharedCounterpart(of:on:)`): sums `gradients` (inside this rank's `sharedBuffer`) so that
    /// this rank's `segment(of:)` holds the reduction, and runs `update`, which writes that
    /// segment of the shared values; `scalars` (in the same region) are summed with it. Two
    /// handshakes, nothing gathered: when it returns, every rank's segment is updated. The values
    /// may change outside `update` only behind a barrier (or with the same bytes on every rank).
    public func reduceScatterUpdate(gradients: UnsafeMutableBufferPointer<Float>, scalars: UnsafeMutableBufferPointer<Float>,
                                    update: () -> Void) throws(CollectiveError) {
        try guarded { () throws(CollectiveError) in
            guard let arena = registeredArena(holding: gradients) else {
                throw .invalidArgument("a step over shared values needs its gradients in a shared region (sharedBuffer)")
            }
            try arena.reduceScatterUpdate(gradients: gradients, scalars: scalars, update: update)
        }
    }

    /// Copies `root`'s buffer to every rank.
    public func broadcast(_ buffer: UnsafeMutableBufferPointer<Float>, root: Int) throws(CollectiveError) {
        try guarded { () throws(CollectiveError) in try broadcaster.run(buffer, root: root) }
    }

    /// Returns once every rank has called it.
    public func barrier() throws(CollectiveError) {
        let token = UnsafeMutableBufferPointer<Float>.allocate(capacity: 1)
        defer { token.deallocate() }
        token[0] = 1
        try allReduce(token, op: .sum)
        guard token[0] == Float(worldSize) else {
            throw .protocolViolation(peer: (rank + worldSize - 1) % worldSize, reason: "barrier counted \(token[0]) ranks of \(worldSize)")
        }
    }

    /// Sends `buffer` to `peer`; it must call `receive` with the same tag and count.
    public func send(_ buffer: UnsafeBufferPointer<Float>, to peer: Int, tag: UInt32 = 0) throws(CollectiveError) {
        try guarded { () throws(CollectiveError) in
            try transport.send(UnsafeRawBufferPointer(buffer), to: peer, tag: (3 << 60) | UInt64(tag))
        }
    }

    /// Receives into `buffer` what `peer` sent with `tag`.
    public func receive(_ buffer: UnsafeMutableBufferPointer<Float>, from peer: Int, tag: UInt32 = 0) throws(CollectiveError) {
        try guarded { () throws(CollectiveError) in
            try transport.receive(from: peer, tag: (3 << 60) | UInt64(tag), byteCount: buffer.count * 4) { bytes in
                if let source = bytes.baseAddress, let target = buffer.baseAddress {
                    UnsafeMutableRawPointer(target).copyMemory(from: source, byteCount: buffer.count * 4)
                }
            }
        }
    }

    /// This rank's segment of a buffer of `count` elements for reduce-scatter and all-gather.
    public func segment(of count: Int) -> Range<Int> {
        RingAllReduce.segment(rank, of: count, ranks: worldSize)
    }

    /// A group of this group's ranks `ranks` (ascending, the same list on every member), in
    /// which rank `ranks[i]` is rank i. Only members call it, and it sends nothing. It talks
    /// through this group's transport (see `SubgroupTransport` for the tags, and for the rule
    /// that ranks in several groups use them in the same order); a failure in either breaks
    /// both.
    public func subgroup(ranks: [Int]) throws(CollectiveError) -> ProcessGroup {
        if let broken { throw broken }
        let transport = try SubgroupTransport(parent: transport, ranks: ranks)
        let group = ProcessGroup(transport: transport, chunkElements: ring.chunkElements,
                                 smallAllReduceBytes: smallAllReduceBytes, parent: self)
        group.halvingDoublingBytes = halvingDoublingBytes
        return group
    }

    /// Runs `body` unless the group is broken; a failure breaks it and the groups it shares a
    /// transport with.
    private func guarded(_ body: () throws(CollectiveError) -> Void) throws(CollectiveError) {
        if let broken { throw broken }
        do {
            try body()
        } catch {
            var group: ProcessGroup? = self
            while let current = group {
                current.ownFailure = current.ownFailure ?? error
                group = current.parentGroup
            }
            throw error
        }
    }
}
