// A transport for a subset of a group's ranks: subgroup rank i is the parent's rank ranks[i],
// and every message goes through the parent's transport under a tag salted with the subgroup's
// identity.

/// The transport of a sub-group (`ProcessGroup.subgroup(ranks:)`): it renumbers the members
/// 0..<ranks.count and forwards every call to the parent transport.
///
/// Tags: each tag is XOR-ed with a salt that has the top bit set (no tag layout of the
/// collectives uses bit 63: their kinds are 1…4 in bits 60–62) and 63 bits hashed from the
/// member list (and the parent's salt, for a sub-group of a sub-group). XOR with a constant
/// keeps a group's tags distinct, a parent's message never matches a sub-group's, and two
/// sub-groups' tags match only by a 63-bit coincidence: a program that runs collectives on
/// different groups in a different order on two ranks fails with `protocolViolation`.
///
/// Ordering: the parent transport delivers messages between two ranks in order, and all groups
/// that hold that pair share that one stream. So ranks that both belong to several groups (the
/// parent and a sub-group, or two overlapping sub-groups) must run their operations on those
/// groups in the same program order; the tags turn a mismatch into an error, not a deadlock
/// or corruption. Groups that share no pair of ranks (the data-parallel and tensor-parallel
/// groups of a 2-D layout share only one rank) are independent.
///
/// Concurrency: not Sendable; it belongs to the thread that runs this rank, like its parent.
public final class SubgroupTransport: CollectiveTransport {
    public let parent: any CollectiveTransport
    /// The parent's rank of each member, ascending.
    public let ranks: [Int]
    public let rank: Int
    /// XOR-ed into every tag (see the type's comment).
    public let salt: UInt64

    /// A sub-group of `parent`'s ranks `ranks` (ascending, distinct, including the parent's own
    /// rank); every member must pass the same list.
    public init(parent: any CollectiveTransport, ranks: [Int]) throws(CollectiveError) {
        guard !ranks.isEmpty, zip(ranks, ranks.dropFirst()).allSatisfy({ $0 < $1 }),
              let first = ranks.first, let last = ranks.last, first >= 0, last < parent.worldSize else {
            throw .invalidArgument("a sub-group needs distinct ascending ranks within 0..<\(parent.worldSize), not \(ranks)")
        }
        guard let rank = ranks.firstIndex(of: parent.rank) else {
            throw .invalidArgument("rank \(parent.rank) is not a member of the sub-group \(ranks); only members create it")
        }
        self.parent = parent
        self.ranks = ranks
        self.rank = rank
        let outer = (parent as? SubgroupTransport)?.salt ?? 0
        salt = (1 << 63) | (SubgroupTransport.hash(ranks, seed: outer) >> 1)
    }

    public var worldSize: Int { ranks.count }

    public func send(_ bytes: UnsafeRawBufferPointer, to peer: Int, tag: UInt64) throws(CollectiveError) {
        try parent.send(bytes, to: parentRank(peer), tag: tag ^ salt)
    }

    public func sendWithoutCopy(_ bytes: UnsafeRawBufferPointer, to peer: Int, tag: UInt64) throws(CollectiveError) {
        try parent.sendWithoutCopy(bytes, to: parentRank(peer), tag: tag ^ salt)
    }

    public func flush() throws(CollectiveError) {
        try parent.flush()
    }

    public func receive(from peer: Int, tag: UInt64, byteCount: Int, _ consume: (UnsafeRawBufferPointer) -> Void) throws(CollectiveError) {
        try parent.receive(from: parentRank(peer), tag: tag ^ salt, byteCount: byteCount, consume)
    }

    /// The parent's rank of member `peer`.
    private func parentRank(_ peer: Int) throws(CollectiveError) -> Int {
        guard peer >= 0, peer < ranks.count else {
            throw .invalidArgument("rank \(peer) is outside a sub-group of \(ranks.count)")
        }
        return ranks[peer]
    }

    /// FNV-1a over the ranks, finished with SplitMix64's mixer: the same on every process (not
    /// Swift's per-process seeded `Hasher`).
    private static func hash(_ ranks: [Int], seed: UInt64) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325 ^ seed
        for rank in ranks {
            h = (h ^ UInt64(truncatingIfNeeded: rank)) &* 0x0000_0100_0000_01b3
        }
        h = (h ^ (h >> 30)) &* 0xbf58_476d_1ce4_e5b9
        h = (h ^ (h >> 27)) &* 0x94d0_49bb_1331_11eb
        return h ^ (h >> 31)
    }
}
