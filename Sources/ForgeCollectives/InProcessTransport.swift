// A transport between threads of one process: the reference the ZeroMQ transport is tested
// against, and the way to run collective algorithms in unit tests without sockets.
import Foundation

/// Mailboxes shared by the ranks of one in-process group.
///
/// Concurrency: Sendable; every mailbox is guarded by `condition`.
public final class InProcessHub: @unchecked Sendable {
    public let worldSize: Int
    public let timeoutMilliseconds: Int
    private let condition = NSCondition()
    /// queues[destination][source]: messages in send order.
    private var queues: [[[(tag: UInt64, bytes: [UInt8])]]]

    public init(worldSize: Int, timeoutMilliseconds: Int = 10_000) {
        self.worldSize = worldSize
        self.timeoutMilliseconds = timeoutMilliseconds
        queues = Array(repeating: Array(repeating: [], count: worldSize), count: worldSize)
    }

    /// The endpoint of rank `rank`.
    public func transport(rank: Int) -> InProcessTransport {
        precondition(rank >= 0 && rank < worldSize, "rank \(rank) outside 0..<\(worldSize)")
        return InProcessTransport(hub: self, rank: rank)
    }

    func post(from source: Int, to destination: Int, tag: UInt64, bytes: [UInt8]) {
        condition.lock()
        queues[destination][source].append((tag, bytes))
        condition.broadcast()
        condition.unlock()
    }

    func take(from source: Int, to destination: Int) -> (tag: UInt64, bytes: [UInt8])? {
        let deadline = Date().addingTimeInterval(Double(timeoutMilliseconds) / 1000)
        condition.lock()
        defer { condition.unlock() }
        while queues[destination][source].isEmpty {
            guard condition.wait(until: deadline) else { return nil }
        }
        return queues[destination][source].removeFirst()
    }
}

/// One rank's endpoint on an `InProcessHub`.
///
/// Concurrency: not Sendable; used by the one thread that runs this rank.
public final class InProcessTransport: CollectiveTransport {
    public let rank: Int
    private let hub: InProcessHub

    init(hub: InProcessHub, rank: Int) {
        self.hub = hub
        self.rank = rank
    }

    public var worldSize: Int { hub.worldSize }

    public func send(_ bytes: UnsafeRawBufferPointer, to peer: Int, tag: UInt64) throws(CollectiveError) {
        guard peer >= 0, peer < worldSize, peer != rank else { throw .invalidArgument("cannot send to rank \(peer)") }
        hub.post(from: rank, to: peer, tag: tag, bytes: [UInt8](bytes))
    }

    public func receive(from peer: Int, tag: UInt64, byteCount: Int, _ consume: (UnsafeRawBufferPointer) -> Void) throws(CollectiveError) {
        guard peer >= 0, peer < worldSize, peer != rank else { throw .invalidArgument("cannot receive from rank \(peer)") }
        guard let message = hub.take(from: peer, to: rank) else {
            throw .timedOut(peer: peer, milliseconds: hub.timeoutMilliseconds)
        }
        guard message.tag == tag else {
            throw .protocolViolation(peer: peer, reason: "expected tag \(String(tag, radix: 16)), got \(String(message.tag, radix: 16))")
        }
        guard message.bytes.count == byteCount else {
            throw .protocolViolation(peer: peer, reason: "expected \(byteCount) bytes, got \(message.bytes.count)")
        }
        message.bytes.withUnsafeBytes(consume)
    }
}
