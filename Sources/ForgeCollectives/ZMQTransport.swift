// The collective transport over ZeroMQ: each rank binds one ROUTER socket for everything it
// receives and keeps one DEALER per peer for what it sends. Every message is a ForgeWire
// frame header plus the payload; messages from one peer arrive in order, and those that
// arrive while another peer is awaited wait in a per-peer queue.
import ForgeTransport
import ForgeWire
import Foundation
import Synchronization

/// A rank's ZeroMQ endpoint in a collective group.
///
/// Concurrency: not Sendable; its sockets belong to the thread that runs this rank (create it
/// on one thread and hand it to another before use, never share it).
public final class ZMQTransport: CollectiveTransport {
    public let rank: Int
    public let worldSize: Int
    public let timeoutMilliseconds: Int
    /// The endpoint peers connect to (with the port the system chose).
    public let endpoint: String
    private let context: ZMQContext
    private let key: ClusterKey?
    private let router: ZMQSocket
    private var dealers: [ZMQSocket?]
    /// Messages that arrived while another peer was awaited, per source rank.
    private var pending: [[Received]]
    /// Zero-copy sends libzmq has not finished with.
    private let inFlight = InFlightSends()
    /// Payloads from this size on go without a copy when the caller allows it.
    static let zeroCopyBytes = 8 << 10
    /// How long a receive polls before it blocks.
    static let pollNanoseconds: UInt64 = 100_000

    /// A received payload: a view of the ZeroMQ frame that `owner` keeps alive.
    private struct Received {
        let tag: UInt64
        let owner: ZMQMessage
        var payload: UnsafeRawBufferPointer { owner.bytes }
    }

    /// Binds this rank's receiving socket at `endpoint` (`tcp://HOST:*` picks a port; `tcp://*:*`
    /// listens on every interface). `advertisedHost` replaces the bound host in `endpoint` as
    /// peers see it (needed with `*`, which peers cannot connect to). With a cluster key every
    /// connection is CURVE-encrypted and peers without it are refused.
    public init(context: ZMQContext, rank: Int, worldSize: Int, bind endpoint: String, advertisedHost: String? = nil,
                key: ClusterKey? = nil, timeoutMilliseconds: Int = 30_000) throws(CollectiveError) {
        precondition(rank >= 0 && rank < worldSize, "rank \(rank) outside 0..<\(worldSize)")
        self.rank = rank
        self.worldSize = worldSize
        self.timeoutMilliseconds = timeoutMilliseconds
        self.context = context
        self.key = key
        dealers = Array(repeating: nil, count: worldSize)
        pending = Array(repeating: [], count: worldSize)
        do {
            router = try ZMQSocket(context, kind: .router)
            try router.setHighWaterMarks(0)
            if let key { try router.makeCurveServer(key) }
            let bound = try router.bind(endpoint)
            if let advertisedHost, bound.hasPrefix("tcp://"), let colon = bound.lastIndex(of: ":") {
                self.endpoint = "tcp://\(advertisedHost)\(bound[colon...])"
            } else {
                self.endpoint = bound
            }
        } catch {
            throw .transport(peer: rank, reason: error.description)
        }
    }

    /// Connects to every peer's endpoint (`endpoints[rank]` is this rank's own and is skipped,
    /// as are the peers in `skipping`, which another transport reaches).
    public func connect(to endpoints: [String], skipping: Set<Int> = []) throws(CollectiveError) {
        guard endpoints.count == worldSize else {
            throw .invalidArgument("\(endpoints.count) endpoints for a group of \(worldSize)")
        }
        for peer in 0..<worldSize where peer != rank && !skipping.contains(peer) {
            do {
                let dealer = try ZMQSocket(context, kind: .dealer)
                try dealer.setIdentity(ZMQTransport.identity(of: rank))
                try dealer.setHighWaterMarks(0)
                if let key { try dealer.makeCurveClient(key) }
                try dealer.setSendTimeout(timeoutMilliseconds)
                try dealer.connect(endpoints[peer])
                dealers[peer] = dealer
            } catch {
                throw .transport(peer: peer, reason: error.description)
            }
        }
    }

    public func send(_ bytes: UnsafeRawBufferPointer, to peer: Int, tag: UInt64) throws(CollectiveError) {
        try send(bytes.count, to: peer, tag: tag) { dealer throws(TransportError) in try dealer.send(bytes, more: false) }
    }

    /// Sends the payload straight from the caller's memory (libzmq's I/O thread reads it); the
    /// header is copied. `flush` waits until libzmq has let go of every such payload.
    public func sendWithoutCopy(_ bytes: UnsafeRawBufferPointer, to peer: Int, tag: UInt64) throws(CollectiveError) {
        guard bytes.count >= ZMQTransport.zeroCopyBytes, let base = bytes.baseAddress else {
            try send(bytes, to: peer, tag: tag)
            return
        }
        try send(bytes.count, to: peer, tag: tag) { dealer throws(TransportError) in
            try dealer.sendWithoutCopy(base, count: bytes.count, owner: inFlight.token(), more: false)
        }
    }

    /// Sends the header of a `count`-byte message to `peer`, then the payload as `payload` sends it.
    private func send(_ count: Int, to peer: Int, tag: UInt64,
                      payload: (ZMQSocket) throws(TransportError) -> Void) throws(CollectiveError) {
        guard peer >= 0, peer < worldSize, peer != rank, let dealer = dealers[peer] else {
            throw .invalidArgument("cannot send to rank \(peer) (connected?)")
        }
        guard count <= Int(UInt32.max) else { throw .invalidArgument("a message of \(count) bytes is too large") }
        let header = FrameHeader(kind: .pointToPoint, elementType: .uint8, collectiveID: tag, step: 0, chunkIndex: 0, chunkCount: 1,
                                 sourceRank: UInt32(rank), payloadByteCount: UInt32(count))
        do throws(TransportError) {
            try dealer.send(header.encoded(), more: true)
            try payload(dealer)
        } catch {
            if case .timedOut = error { throw .timedOut(peer: peer, milliseconds: timeoutMilliseconds) }
            throw .transport(peer: peer, reason: error.description)
        }
    }

    public func flush() throws(CollectiveError) {
        let start = DispatchTime.now().uptimeNanoseconds
        while inFlight.count > 0 {
            if DispatchTime.now().uptimeNanoseconds - start > UInt64(timeoutMilliseconds) * 1_000_000 {
                throw .transport(peer: rank, reason: "libzmq still holds \(inFlight.count) sent buffer(s) after \(timeoutMilliseconds) ms")
            }
            sched_yield()
        }
    }

    public func receive(from peer: Int, tag: UInt64, byteCount: Int, _ consume: (UnsafeRawBufferPointer) -> Void) throws(CollectiveError) {
        guard peer >= 0, peer < worldSize, peer != rank else { throw .invalidArgument("cannot receive from rank \(peer)") }
        let message = try nextMessage(from: peer)
        guard message.tag == tag else {
            throw .protocolViolation(peer: peer, reason: "expected tag \(String(tag, radix: 16)), got \(String(message.tag, radix: 16))")
        }
        guard message.payload.count == byteCount else {
            throw .protocolViolation(peer: peer, reason: "expected \(byteCount) bytes, got \(message.payload.count)")
        }
        consume(message.payload)
        withExtendedLifetime(message.owner) {}
    }

    /// The next message from `peer`, reading (and queueing other peers' messages) until it
    /// arrives or the timeout passes.
    private func nextMessage(from peer: Int) throws(CollectiveError) -> Received {
        if !pending[peer].isEmpty { return pending[peer].removeFirst() }
        let start = DispatchTime.now().uptimeNanoseconds
        let deadline = Date().addingTimeInterval(Double(timeoutMilliseconds) / 1000)
        while true {
            let frames: [ZMQMessage]
            do throws(TransportError) {
                // Poll without blocking for a short while first: a blocked thread takes tens of
                // microseconds to wake (far more in a VM), longer than a chunk takes to arrive
                // when the peer is keeping up; yielding leaves the core to whoever needs it.
                if DispatchTime.now().uptimeNanoseconds - start < ZMQTransport.pollNanoseconds {
                    guard let ready = try router.receiveMessageIfReady() else {
                        sched_yield()
                        continue
                    }
                    frames = ready
                } else {
                    let remaining = Int(deadline.timeIntervalSinceNow * 1000)
                    guard remaining > 0 else { throw TransportError.timedOut(operation: "receive", milliseconds: timeoutMilliseconds) }
                    try router.setReceiveTimeout(remaining)
                    frames = try router.receiveMessage()
                }
            } catch {
                if case .timedOut = error { throw .timedOut(peer: peer, milliseconds: timeoutMilliseconds) }
                throw .transport(peer: peer, reason: error.description)
            }
            // [identity, header, payload]; a frame that does not decode is a peer's fault.
            guard frames.count == 3, let source = ZMQTransport.rank(ofIdentity: frames[0].array), source < worldSize else {
                throw .protocolViolation(peer: peer, reason: "a message of \(frames.count) frames from an unknown sender")
            }
            let header: FrameHeader
            do {
                header = try FrameHeader(decoding: frames[1].bytes)
                try header.validate(payloadByteCount: frames[2].bytes.count)
            } catch {
                throw .protocolViolation(peer: source, reason: error.description)
            }
            guard Int(header.sourceRank) == source else {
                throw .protocolViolation(peer: source, reason: "claims to be rank \(header.sourceRank)")
            }
            let message = Received(tag: header.collectiveID, owner: frames[2])
            if source == peer { return message }
            pending[source].append(message)
        }
    }

    static func identity(of rank: Int) -> [UInt8] {
        withUnsafeBytes(of: UInt32(rank).littleEndian) { Array($0) }
    }

    static func rank(ofIdentity bytes: [UInt8]) -> Int? {
        guard bytes.count == 4 else { return nil }
        return Int(bytes.enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << (8 * $1.offset) })
    }
}

/// Counts zero-copy sends that libzmq still reads: each holds a token, released on a libzmq I/O
/// thread once the payload is no longer needed.
///
/// Concurrency: Sendable; the count is atomic.
final class InFlightSends: Sendable {
    private let outstanding = Atomic<Int>(0)

    var count: Int { outstanding.load(ordering: .acquiring) }

    /// A token to hand libzmq as a payload's owner.
    func token() -> AnyObject {
        outstanding.add(1, ordering: .relaxed)
        return Token(self)
    }

    fileprivate func release() { outstanding.subtract(1, ordering: .releasing) }

    private final class Token: Sendable {
        let sends: InFlightSends
        init(_ sends: InFlightSends) { self.sends = sends }
        deinit { sends.release() }
    }
}
