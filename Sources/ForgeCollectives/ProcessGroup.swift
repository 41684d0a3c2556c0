// The front of the collectives: a group of ranks and the operations they perform together.
import ForgeTransport

/// A group of ranks joined by a transport.
///
/// Concurrency: not Sendable; it belongs to the thread that runs this rank. After a
/// collective fails, the group is broken: recovery is a new rendezvous, not a retry.
public final class ProcessGroup {
    public let transport: any CollectiveTransport
    private let ring: RingAllReduce
    private let broadcaster: PipelineBroadcast
    public private(set) var broken: CollectiveError?

    public init(transport: any CollectiveTransport, chunkElements: Int = 1 << 16) {
        self.transport = transport
        ring = RingAllReduce(transport: transport, chunkElements: chunkElements)
        broadcaster = PipelineBroadcast(transport: transport, chunkElements: chunkElements)
    }

    public var rank: Int { transport.rank }
    public var worldSize: Int { transport.worldSize }

    /// Joins a ZeroMQ group: binds this rank's data endpoint at `bind` (e.g. `tcp://HOST:*`, or
    /// `tcp://*:*` with `advertisedHost`), meets the others at the master, connects to all.
    public static func join(_ configuration: RendezvousConfiguration, bind: String, advertisedHost: String? = nil,
                            key: ClusterKey?, timeoutMilliseconds: Int = 30_000) throws(CollectiveError) -> ProcessGroup {
        let context: ZMQContext
        do {
            context = try ZMQContext()
        } catch {
            throw .transport(peer: configuration.rank, reason: error.description)
        }
        let transport = try ZMQTransport(context: context, rank: configuration.rank, worldSize: configuration.worldSize,
                                         bind: bind, advertisedHost: advertisedHost, key: key, timeoutMilliseconds: timeoutMilliseconds)
        let endpoints = try Rendezvous.exchange(configuration, endpoint: transport.endpoint, context: context, key: key)
        try transport.connect(to: endpoints)
        return ProcessGroup(transport: transport)
    }

    /// Reduces `buffer` across the group in place (ring all-reduce; every rank passes the
    /// same count).
    public func allReduce(_ buffer: UnsafeMutableBufferPointer<Float>, op: ReduceOp) throws(CollectiveError) {
        try guarded { () throws(CollectiveError) in try ring.run(buffer, op: op) }
    }

    /// Reduce-scatter in place: afterwards `segment(of:)` of `buffer` holds this rank's share of
    /// the reduction.
    public func reduceScatter(_ buffer: UnsafeMutableBufferPointer<Float>, op: ReduceOp) throws(CollectiveError) {
        try guarded { () throws(CollectiveError) in try ring.reduceScatter(buffer, op: op) }
    }

    /// All-gather in place: every rank's `segment(of:)` of `buffer` reaches every rank.
    public func allGather(_ buffer: UnsafeMutableBufferPointer<Float>) throws(CollectiveError) {
        try guarded { () throws(CollectiveError) in try ring.allGather(buffer) }
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

    /// Runs `body` unless the group is broken; a failure breaks it.
    private func guarded(_ body: () throws(CollectiveError) -> Void) throws(CollectiveError) {
        if let broken { throw broken }
        do {
            try body()
        } catch {
            broken = error
            throw error
        }
    }
}
