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
    /// Like `send`, but the transport may go on reading `bytes` after it returns, until
    /// `flush()` returns: the caller must leave them unchanged until then. (A stream transport
    /// has copied them out once the receiver has them, so an algorithm may also rewrite bytes
    /// once data that depends on them has come back.)
    func sendWithoutCopy(_ bytes: UnsafeRawBufferPointer, to peer: Int, tag: UInt64) throws(CollectiveError)
    /// Returns once no earlier `sendWithoutCopy` reads the caller's memory any more.
    func flush() throws(CollectiveError)
}

extension CollectiveTransport {
    /// Transports that copy on every send: the same as `send`.
    public func sendWithoutCopy(_ bytes: UnsafeRawBufferPointer, to peer: Int, tag: UInt64) throws(CollectiveError) {
        try send(bytes, to: peer, tag: tag)
    }

    public func flush() throws(CollectiveError) {}
}
