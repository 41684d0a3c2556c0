// The small protocol every collective algorithm runs over: rank, world size, and tagged
// sends and receives of bytes between two ranks.

/// Point-to-point byte transport between the ranks of one group.
///
/// Messages from one rank to another arrive in the order they were sent. `send` does not wait
/// for the receiver (it queues); `receive` waits up to the transport's timeout and then throws
/// `timedOut`. Each message carries a tag the receiver checks, so a desynchronised peer is a
/// `protocolViolation`, not silent corruption.
public protocol CollectiveTransport: AnyObject {
    var rank: Int { get }
    var worldSize: Int { get }
    /// Sends `bytes` to `peer`.
    func send(_ bytes: UnsafeRawBufferPointer, to peer: Int, tag: UInt64) throws(CollectiveError)
    /// Receives the next message from `peer`, whose tag must be `tag` and length `byteCount`,
    /// and hands its bytes to `consume` without copying them (they are valid only during the
    /// call).
    func receive(from peer: Int, tag: UInt64, byteCount: Int, _ consume: (UnsafeRawBufferPointer) -> Void) throws(CollectiveError)
}
