// Recursive doubling all-reduce, for small buffers where latency, not bandwidth, is the cost.
//
// With P a power of two, log2 P steps: in step k each rank swaps its whole buffer with the rank
// whose number differs in bit k and combines, so after the last step every rank holds the
// reduction. The ring needs 2(P − 1) sequential messages for the same result; for a 4 KiB
// buffer on two ranks that is two round trips against one.
//
// Other world sizes fold first: with P' the largest power of two below P and E = P − P', each
// even rank below 2E hands its buffer to the odd rank above it and sits out; the remaining P'
// ranks double; each odd rank then hands the result back to its even partner.
//
// All ranks end bit-identical: every combination is of two ranks' identical partial results
// in opposite orders, a ⊕ b against b ⊕ a, and float sum and max are commutative.

/// Recursive doubling all-reduce over one transport.
///
/// Concurrency: not Sendable; it belongs to the thread that runs this rank.
public final class RecursiveDoublingAllReduce {
    public let transport: any CollectiveTransport
    /// Elements per message: a larger buffer goes as several, all sent before the first is
    /// combined, so combining overlaps the arrival of the rest.
    public let chunkElements: Int
    private var sequence: UInt64 = 0

    public init(transport: any CollectiveTransport, chunkElements: Int = 1 << 16) {
        precondition(chunkElements > 0, "chunks need at least one element")
        self.transport = transport
        self.chunkElements = chunkElements
    }

    /// Reduces `buffer` across all ranks in place. Every rank must call it with the same count.
    public func run(_ buffer: UnsafeMutableBufferPointer<Float>, op: ReduceOp) throws(CollectiveError) {
        sequence &+= 1
        let ranks = transport.worldSize, rank = transport.rank
        guard ranks > 1 else { return }
        let power = 1 << (Int.bitWidth - 1 - ranks.leadingZeroBitCount)
        let extra = ranks - power
        let combine: RingAllReduce.Combine = op == .max ? .max : .sum
        // This rank's place among the P' ranks that double, or nil while it sits out.
        let virtualRank: Int?
        if rank < 2 * extra {
            if rank % 2 == 0 {
                try send(buffer, to: rank + 1, phase: 0, step: 0)
                virtualRank = nil
            } else {
                try receive(buffer, from: rank - 1, phase: 0, step: 0, combine: combine)
                virtualRank = rank / 2
            }
        } else {
            virtualRank = rank - extra
        }
        if let virtualRank {
            var mask = 1, step = 0
            while mask < power {
                let partnerVirtual = virtualRank ^ mask
                let partner = partnerVirtual < extra ? 2 * partnerVirtual + 1 : partnerVirtual + extra
                // A copying send: the partner's data can arrive (and be combined into this
                // buffer) before a zero-copy send of ours would have left it.
                try send(buffer, to: partner, phase: 1, step: step)
                try receive(buffer, from: partner, phase: 1, step: step, combine: combine)
                mask <<= 1
                step += 1
            }
            if rank < 2 * extra {
                try send(buffer, to: rank - 1, phase: 2, step: 0)
            }
        } else {
            try receive(buffer, from: rank + 1, phase: 2, step: 0, combine: nil)
        }
        if op == .mean {
            let scale = 1 / Float(ranks)
            for i in buffer.indices { buffer[i] *= scale }
        }
    }

    /// Sends the whole buffer to `peer`, chunk by chunk (copied: see the call sites).
    private func send(_ buffer: UnsafeMutableBufferPointer<Float>, to peer: Int, phase: UInt64, step: Int) throws(CollectiveError) {
        var chunk = 0
        repeat {
            let range = chunkRange(chunk, of: buffer.count)
            try transport.send(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(buffer)[(range.lowerBound * 4)..<(range.upperBound * 4)]),
                               to: peer, tag: tag(phase, step, chunk))
            chunk += 1
        } while chunk * chunkElements < buffer.count
    }

    /// Receives the whole buffer from `peer` chunk by chunk and combines it into `buffer` (or
    /// copies it).
    private func receive(_ buffer: UnsafeMutableBufferPointer<Float>, from peer: Int, phase: UInt64, step: Int,
                         combine: RingAllReduce.Combine?) throws(CollectiveError) {
        var chunk = 0
        repeat {
            let range = chunkRange(chunk, of: buffer.count)
            try transport.receive(from: peer, tag: tag(phase, step, chunk), byteCount: range.count * 4) { bytes in
                guard let source = bytes.baseAddress, let base = buffer.baseAddress, !range.isEmpty else { return }
                let target = base + range.lowerBound
                guard let combine else {
                    UnsafeMutableRawPointer(target).copyMemory(from: source, byteCount: range.count * 4)
                    return
                }
                RingAllReduce.combine(target, source, count: range.count, combine)
            }
            chunk += 1
        } while chunk * chunkElements < buffer.count
    }

    private func chunkRange(_ chunk: Int, of count: Int) -> Range<Int> {
        (chunk * chunkElements)..<min(count, (chunk + 1) * chunkElements)
    }

    /// The tag of one message: the algorithm's kind (4), the call's sequence number, the phase
    /// (fold, double, unfold), the step and the chunk.
    private func tag(_ phase: UInt64, _ step: Int, _ chunk: Int) -> UInt64 {
        (4 << 60) | ((sequence & 0xFFFF) << 44) | (phase << 40) | (UInt64(step) << 32) | UInt64(chunk)
    }
}
