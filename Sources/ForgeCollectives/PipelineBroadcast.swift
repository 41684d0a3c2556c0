// Broadcast along the ring from the root, chunk by chunk: each rank forwards a chunk to its
// right neighbour as soon as it has it, so for S bytes and P ranks the time is about
// S/bandwidth + (P − 2) chunk latencies, and every link carries S bytes once.

/// Pipelined broadcast over one transport.
///
/// Concurrency: not Sendable; it belongs to the thread that runs this rank.
public final class PipelineBroadcast {
    public let transport: any CollectiveTransport
    public let chunkElements: Int
    private var sequence: UInt64 = 0

    public init(transport: any CollectiveTransport, chunkElements: Int = 1 << 16) {
        precondition(chunkElements > 0, "chunks need at least one element")
        self.transport = transport
        self.chunkElements = chunkElements
    }

    /// Copies `root`'s `buffer` into every rank's `buffer` (same count on every rank).
    public func run(_ buffer: UnsafeMutableBufferPointer<Float>, root: Int) throws(CollectiveError) {
        let ranks = transport.worldSize, rank = transport.rank
        guard root >= 0, root < ranks else { throw .invalidArgument("broadcast root \(root) outside 0..<\(ranks)") }
        sequence &+= 1
        guard ranks > 1, let base = buffer.baseAddress else { return }
        let position = (rank - root + ranks) % ranks
        let right = (rank + 1) % ranks, left = (rank + ranks - 1) % ranks
        let chunks = (buffer.count + chunkElements - 1) / chunkElements
        for chunk in 0..<chunks {
            let start = chunk * chunkElements
            let count = min(chunkElements, buffer.count - start)
            let tag = (2 << 60) | ((sequence & 0xFFFF) << 44) | UInt64(chunk)
            if position > 0 {
                try transport.receive(from: left, tag: tag, byteCount: count * 4) { bytes in
                    if let source = bytes.baseAddress { UnsafeMutableRawPointer(base + start).copyMemory(from: source, byteCount: count * 4) }
                }
            }
            if position < ranks - 1 {
                try transport.sendWithoutCopy(UnsafeRawBufferPointer(start: base + start, count: count * 4), to: right, tag: tag)
            }
        }
        try transport.flush()
    }
}
