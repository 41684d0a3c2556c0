// A transport that reaches each peer through one of several transports: shared memory for the
// ranks on this host, ZeroMQ for the rest. Messages to one peer all take the same route, so
// their order is kept.

/// Per-peer routing over several transports of the same group.
///
/// Concurrency: not Sendable; it belongs to the thread that runs this rank, like its routes.
public final class RoutedTransport: CollectiveTransport {
    public let rank: Int
    /// The transport that reaches each rank (the entry at `rank` is unused).
    public let routes: [any CollectiveTransport]

    public init(routes: [any CollectiveTransport], rank: Int) {
        precondition(routes.allSatisfy { $0.worldSize == routes.count && $0.rank == rank }, "routes of one group and rank")
        self.routes = routes
        self.rank = rank
    }

    public var worldSize: Int { routes.count }

    public func send(_ bytes: UnsafeRawBufferPointer, to peer: Int, tag: UInt64) throws(CollectiveError) {
        guard peer >= 0, peer < worldSize else { throw .invalidArgument("cannot send to rank \(peer)") }
        try routes[peer].send(bytes, to: peer, tag: tag)
    }

    public func sendWithoutCopy(_ bytes: UnsafeRawBufferPointer, to peer: Int, tag: UInt64) throws(CollectiveError) {
        guard peer >= 0, peer < worldSize else { throw .invalidArgument("cannot send to rank \(peer)") }
        try routes[peer].sendWithoutCopy(bytes, to: peer, tag: tag)
    }

    public func flush() throws(CollectiveError) {
        for (peer, route) in routes.enumerated() where peer != rank && !routes[..<peer].contains(where: { $0 === route }) {
            try route.flush()
        }
    }

    public func receive(from peer: Int, tag: UInt64, byteCount: Int, _ consume: (UnsafeRawBufferPointer) -> Void) throws(CollectiveError) {
        guard peer >= 0, peer < worldSize else { throw .invalidArgument("cannot receive from rank \(peer)") }
        try routes[peer].receive(from: peer, tag: tag, byteCount: byteCount, consume)
    }
}
