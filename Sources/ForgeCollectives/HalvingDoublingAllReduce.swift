// Recursive halving and doubling all-reduce (Rabenseifner's), for groups of more than two ranks
// and buffers too large for plain recursive doubling.
//
// Reduce-scatter by recursive halving: in step k each rank splits the block it is responsible
// for in two, sends the half it gives up to the rank whose number differs in bit (log2 P − 1 − k)
// and combines the partner's copy of the half it keeps; after log2 P steps each rank holds one
// P-th of the buffer, fully reduced. All-gather by recursive doubling walks the same pairs back,
// each rank sending what it holds and taking its partner's block. A rank sends and receives
// (P − 1)/P of the buffer in each phase, as in the ring, but in 2 log2 P steps instead of
// 2(P − 1): 4 against 6 on 4 ranks, and on oversubscribed cores every step is a round of
// context switches.
//
// Other world sizes fold first, as recursive doubling does: with P' the largest power of two
// below P and E = P − P', each even rank below 2E hands its whole buffer to the odd rank above
// it and sits out, the remaining P' ranks halve and double, and each odd rank below 2E hands the
// result back. The folded ranks' partners move the whole buffer twice more, so the group picks
// this algorithm only for powers of two (ProcessGroup); the fold keeps it correct on any group.
//
// All ranks end bit-identical: every element is reduced on exactly one rank and copied to the
// others.

/// Recursive halving and doubling all-reduce over one transport.
///
/// Concurrency: not Sendable; it belongs to the thread that runs this rank.
public final class HalvingDoublingAllReduce {
    public let transport: any CollectiveTransport
    /// Elements per message (tests make it small to reach the multi-chunk paths).
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
        guard ranks > 1, let base = buffer.baseAddress else { return }
        let combine: RingAllReduce.Combine = op == .max ? .max : .sum
        let power = 1 << (Int.bitWidth - 1 - ranks.leadingZeroBitCount)
        let extra = ranks - power
        let whole = 0..<buffer.count
        // The fold: an even rank below 2E lends its buffer to the odd rank above it, lets the
        // sends leave, and takes the result back into the same memory.
        if rank < 2 * extra, rank % 2 == 0 {
            try exchange(base, send: whole, receive: 0..<0, with: rank + 1, phase: 2, step: 0, combine: nil)
            try transport.flush()
            try exchange(base, send: 0..<0, receive: whole, with: rank + 1, phase: 3, step: 0, combine: nil)
            return
        }
        if rank < 2 * extra {
            try exchange(base, send: 0..<0, receive: whole, with: rank - 1, phase: 2, step: 0, combine: combine)
        }
        // Among the P' ranks that halve and double: this rank's place, and a place's rank.
        let virtualRank = rank < 2 * extra ? rank / 2 : rank - extra
        let real = { (place: Int) in place < extra ? 2 * place + 1 : place + extra }
        // The blocks this rank was responsible for before each split, outermost first.
        var parents: [Range<Int>] = []
        var mine = whole
        var mask = power >> 1, step = 0
        while mask > 0 {
            let partner = real(virtualRank ^ mask)
            let middle = mine.lowerBound + mine.count / 2
            let (kept, given) = virtualRank & mask == 0 ? (mine.lowerBound..<middle, middle..<mine.upperBound)
                                                        : (middle..<mine.upperBound, mine.lowerBound..<middle)
            try exchange(base, send: given, receive: kept, with: partner, phase: 0, step: step, combine: combine)
            parents.append(mine)
            mine = kept
            mask >>= 1
            step += 1
        }
        // The halves sent above are overwritten below: every send must have left first.
        try transport.flush()
        if op == .mean {
            let scale = 1 / Float(ranks)
            for i in mine { base[i] *= scale }
        }
        mask = 1
        step = 0
        while mask < power {
            let partner = real(virtualRank ^ mask)
            let parent = parents.removeLast()
            let theirs = mine.lowerBound == parent.lowerBound ? mine.upperBound..<parent.upperBound : parent.lowerBound..<mine.lowerBound
            try exchange(base, send: mine, receive: theirs, with: partner, phase: 1, step: step, combine: nil)
            mine = parent
            mask <<= 1
            step += 1
        }
        if rank < 2 * extra {
            try exchange(base, send: whole, receive: 0..<0, with: rank - 1, phase: 3, step: 0, combine: nil)
        }
        // The caller gets its buffer back only when the transport no longer reads it.
        try transport.flush()
    }

    /// Sends `send` to `partner` and takes its copy of `receive` (combined in, or copied),
    /// chunk by chunk, each chunk sent before the matching one is awaited.
    private func exchange(_ base: UnsafeMutablePointer<Float>, send: Range<Int>, receive: Range<Int>, with partner: Int,
                          phase: UInt64, step: Int, combine: RingAllReduce.Combine?) throws(CollectiveError) {
        let outgoing = (send.count + chunkElements - 1) / chunkElements
        let incoming = (receive.count + chunkElements - 1) / chunkElements
        for chunk in 0..<max(outgoing, incoming) {
            if chunk < outgoing {
                let start = send.lowerBound + chunk * chunkElements
                let count = min(chunkElements, send.upperBound - start)
                // Without a copy: these elements are not written again until the flush that
                // ends this phase.
                try transport.sendWithoutCopy(UnsafeRawBufferPointer(start: base + start, count: count * 4), to: partner,
                                              tag: tag(phase, step, chunk))
            }
            guard chunk < incoming else { continue }
            let start = receive.lowerBound + chunk * chunkElements
            let count = min(chunkElements, receive.upperBound - start)
            try RingAllReduce.receive(count, into: base + start, from: partner, over: transport, tag: tag(phase, step, chunk), combine: combine)
        }
    }

    /// The tag of one message: the algorithm's kind (6), the call's sequence number, the phase
    /// (halving, doubling, fold, unfold), the step and the chunk.
    private func tag(_ phase: UInt64, _ step: Int, _ chunk: Int) -> UInt64 {
        precondition(chunk < 1 << 32, "a message of more than 2^32 chunks")
        return (6 << 60) | ((sequence & 0xFFFF) << 44) | (phase << 40) | (UInt64(step) << 32) | UInt64(chunk)
    }
}
