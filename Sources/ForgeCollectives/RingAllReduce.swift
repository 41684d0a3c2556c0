// Ring all-reduce, chunked and pipelined, for large tensors.
//
// The buffer is cut into P segments (sizes differ by at most one element). In P − 1
// reduce-scatter steps each rank sends one segment to its right neighbour and adds the
// segment arriving from its left; afterwards rank r holds the full reduction of segment
// (r + 1) mod P. In P − 1 all-gather steps the reduced segments travel once more round the
// ring. Each segment moves in chunks, so sending one chunk overlaps receiving the next.
// Every rank sends and receives 2(P − 1)/P · S bytes for a buffer of S bytes: the minimum for
// an all-reduce, independent of P. After the all-gather every rank holds the owner's copy of
// each segment, so all ranks end bit-identical.

/// How values combine.
public enum ReduceOp: String, Sendable, CaseIterable {
    case sum, mean, max
}

/// Ring all-reduce over one transport.
///
/// Concurrency: not Sendable; it belongs to the thread that runs this rank. `run` allocates
/// no buffers: incoming chunks are combined straight from the transport's receive buffers.
public final class RingAllReduce {
    public let transport: any CollectiveTransport
    /// Elements per chunk on the wire (injectable so tests reach the multi-chunk paths cheaply).
    public let chunkElements: Int
    private var sequence: UInt64 = 0

    public init(transport: any CollectiveTransport, chunkElements: Int = 1 << 16) {
        precondition(chunkElements > 0, "chunks need at least one element")
        self.transport = transport
        self.chunkElements = chunkElements
    }

    /// Reduces `buffer` across all ranks in place. Every rank must call it with the same count.
    public func run(_ buffer: UnsafeMutableBufferPointer<Float>, op: ReduceOp) throws(CollectiveError) {
        try reduceScatter(buffer, op: op)
        try allGather(buffer)
    }

    /// Reduce-scatter in place: afterwards segment `rank` of `buffer` (see `segment(_:of:ranks:)`)
    /// holds the reduction over all ranks; other segments hold partial sums.
    public func reduceScatter(_ buffer: UnsafeMutableBufferPointer<Float>, op: ReduceOp) throws(CollectiveError) {
        guard let (rank, ranks, right, left) = beginCall() else { return }
        // Step s sends segment r − s − 1 and combines segment r − s − 2, so after P − 1 steps
        // segment r has passed through every rank and ends here, complete.
        for step in 0..<(ranks - 1) {
            try exchange(buffer, send: (rank - step - 1 + 2 * ranks) % ranks, receive: (rank - step - 2 + 2 * ranks) % ranks,
                         right: right, left: left, phase: 0, step: step, reduce: op == .max ? .max : .sum)
        }
        try transport.flush()
        if op == .mean, let base = buffer.baseAddress {
            let own = RingAllReduce.segment(rank, of: buffer.count, ranks: ranks)
            let scale = 1 / Float(ranks)
            for i in own { base[i] *= scale }
        }
    }

    /// All-gather in place: each rank's segment `rank` travels to every other rank.
    public func allGather(_ buffer: UnsafeMutableBufferPointer<Float>) throws(CollectiveError) {
        guard let (rank, ranks, right, left) = beginCall() else { return }
        for step in 0..<(ranks - 1) {
            try exchange(buffer, send: (rank - step + ranks) % ranks, receive: (rank - step - 1 + 2 * ranks) % ranks,
                         right: right, left: left, phase: 1, step: step, reduce: nil)
        }
        // The caller gets its buffer back only when the transport no longer reads it.
        try transport.flush()
    }

    /// Numbers a new call and returns this rank, the world size and the ring neighbours; nil
    /// when the group has one rank (nothing to exchange).
    private func beginCall() -> (rank: Int, ranks: Int, right: Int, left: Int)? {
        sequence &+= 1
        let ranks = transport.worldSize, rank = transport.rank
        guard ranks > 1 else { return nil }
        return (rank, ranks, (rank + 1) % ranks, (rank + ranks - 1) % ranks)
    }

    enum Combine { case sum, max }

    /// Sends segment `send` right and takes segment `receive` from the left, chunk by chunk,
    /// combining (reduce-scatter) or overwriting (all-gather).
    private func exchange(_ buffer: UnsafeMutableBufferPointer<Float>, send: Int, receive: Int, right: Int, left: Int,
                          phase: UInt64, step: Int, reduce: Combine?) throws(CollectiveError) {
        let outgoing = segment(send, of: buffer.count), incoming = segment(receive, of: buffer.count)
        let outgoingChunks = (outgoing.count + chunkElements - 1) / chunkElements
        let incomingChunks = (incoming.count + chunkElements - 1) / chunkElements
        guard let base = buffer.baseAddress else { return }
        // Chunk c goes out before chunk c comes in: sends queue without waiting, so the next
        // outgoing chunk is on the wire while the incoming one is combined.
        for chunk in 0..<max(outgoingChunks, incomingChunks) {
            if chunk < outgoingChunks {
                let start = outgoing.lowerBound + chunk * chunkElements
                let count = min(chunkElements, outgoing.upperBound - start)
                // Without a copy: this chunk is not rewritten until data that depends on it has
                // come back round the ring (and the caller's flush ends the call).
                try transport.sendWithoutCopy(UnsafeRawBufferPointer(start: base + start, count: count * 4), to: right, tag: tag(phase, step, chunk))
            }
            guard chunk < incomingChunks else { continue }
            let start = incoming.lowerBound + chunk * chunkElements
            let count = min(chunkElements, incoming.upperBound - start)
            try RingAllReduce.receive(count, into: base + start, from: left, over: transport, tag: tag(phase, step, chunk), combine: reduce)
        }
    }

    /// Receives `count` floats from `peer` and combines them into `target` (or, without
    /// `combine`, copies them there).
    static func receive(_ count: Int, into target: UnsafeMutablePointer<Float>, from peer: Int, over transport: any CollectiveTransport,
                        tag: UInt64, combine: Combine?) throws(CollectiveError) {
        try transport.receive(from: peer, tag: tag, byteCount: count * 4) { bytes in
            guard let source = bytes.baseAddress else { return }
            guard let combine else {
                UnsafeMutableRawPointer(target).copyMemory(from: source, byteCount: count * 4)
                return
            }
            RingAllReduce.combine(target, source, count: count, combine)
        }
    }

    /// target[i] = target[i] ⊕ source[i]; `source` is a received frame of any alignment.
    static func combine(_ target: UnsafeMutablePointer<Float>, _ source: UnsafeRawPointer, count: Int, _ reduce: Combine) {
        if Int(bitPattern: source) % MemoryLayout<Float>.alignment == 0 {
            // The usual case (libzmq's buffers are malloc-aligned): a plain loop that vectorises.
            let values = source.assumingMemoryBound(to: Float.self)
            switch reduce {
            case .sum: for i in 0..<count { target[i] += values[i] }
            case .max: for i in 0..<count { target[i] = Swift.max(target[i], values[i]) }
            }
        } else {
            for i in 0..<count {
                let value = source.loadUnaligned(fromByteOffset: i * 4, as: Float.self)
                target[i] = reduce == .sum ? target[i] + value : Swift.max(target[i], value)
            }
        }
    }

    /// The tag of one chunk: the ring's kind (1), the call's sequence number, the phase, the step
    /// and the chunk.
    private func tag(_ phase: UInt64, _ step: Int, _ chunk: Int) -> UInt64 {
        (1 << 60) | ((sequence & 0xFFFF) << 44) | (phase << 43) | (UInt64(step) << 28) | UInt64(chunk)
    }

    private func segment(_ index: Int, of count: Int) -> Range<Int> {
        RingAllReduce.segment(index, of: count, ranks: transport.worldSize)
    }

    /// Segment `index` of `count` elements split over `ranks`: contiguous, sizes differing by
    /// at most one, larger ones first.
    public static func segment(_ index: Int, of count: Int, ranks: Int) -> Range<Int> {
        let base = count / ranks, extra = count % ranks
        let start = index * base + min(index, extra)
        return start..<(start + base + (index < extra ? 1 : 0))
    }
}
