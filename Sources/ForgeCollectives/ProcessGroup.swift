// The front of the collectives: a group of ranks and the operations they perform together.
import ForgeTransport

/// A group of ranks joined by a transport.
///
/// Concurrency: not Sendable; it belongs to the thread that runs this rank. After a
/// collective fails, the group is broken: recovery is a new rendezvous, not a retry.
public final class ProcessGroup {
    public let transport: any CollectiveTransport
    private let ring: RingAllReduce
    public private(set) var broken: CollectiveError?

    public init(transport: any CollectiveTransport, chunkElements: Int = 1 << 16) {
        self.transport = transport
        ring = RingAllReduce(transport: transport, chunkElements: chunkElements)
    }

    public var rank: Int { transport.rank }
    public var worldSize: Int { transport.worldSize }

    /// Joins a ZeroMQ group: binds this rank's data endpoint at `bind` (e.g. `tcp://HOST:*`),
    /// meets the others at the master, connects to all.
    public static func join(_ configuration: RendezvousConfiguration, bind: String, key: ClusterKey?,
                            timeoutMilliseconds: Int = 30_000) throws(CollectiveError) -> ProcessGroup {
        let context: ZMQContext
        do {
            context = try ZMQContext()
        } catch {
            throw .transport(peer: configuration.rank, reason: error.description)
        }
        let transport = try ZMQTransport(context: context, rank: configuration.rank, worldSize: configuration.worldSize,
                                         bind: bind, key: key, timeoutMilliseconds: timeoutMilliseconds)
        let endpoints = try Rendezvous.exchange(configuration, endpoint: transport.endpoint, context: context, key: key)
        try transport.connect(to: endpoints)
        return ProcessGroup(transport: transport)
    }

    /// Reduces `buffer` across the group in place (ring all-reduce; every rank passes the
    /// same count).
    public func allReduce(_ buffer: UnsafeMutableBufferPointer<Float>, op: ReduceOp) throws(CollectiveError) {
        if let broken { throw broken }
        do {
            try ring.run(buffer, op: op)
        } catch {
            broken = error
            throw error
        }
    }
}
