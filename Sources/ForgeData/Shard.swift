// One rank's share of a job's data: its slice of each global batch, its files under
// ShardedByS3Key, its record range under per-record sharding.

/// The place of one rank among `worldSize` and the share of data that follows from it.
///
/// Every split here is contiguous and balanced: `n` items over `worldSize` ranks give
/// `n / worldSize` items to each rank, and one more to each of the first `n % worldSize`
/// ranks, so sizes differ by at most one and the ranks' pieces, in rank order, are exactly
/// the whole.
public struct Shard: Sendable, Hashable {
    /// This rank, in `0..<worldSize`.
    public let rank: Int
    /// Number of ranks sharing the data.
    public let worldSize: Int

    /// A shard for `rank` of `worldSize`; throws `invalidShard` unless `0 <= rank < worldSize`.
    public init(rank: Int, worldSize: Int) throws(DataError) {
        guard worldSize >= 1, rank >= 0, rank < worldSize else {
            throw .invalidShard(rank: rank, worldSize: worldSize)
        }
        self.rank = rank
        self.worldSize = worldSize
    }

    /// This rank's contiguous part of the positions `range` of a global batch.
    public func slice(ofBatch range: Range<Int>) -> Range<Int> {
        let base = range.count / worldSize
        let extra = range.count % worldSize
        let start = range.lowerBound + rank * base + min(rank, extra)
        return start ..< start + base + (rank < extra ? 1 : 0)
    }

    /// This rank's contiguous range of the records `0..<count`, for per-record sharding.
    public func records(count: Int) -> Range<Int> {
        precondition(count >= 0, "record count must not be negative")
        return slice(ofBatch: 0..<count)
    }

    /// This rank's files under `ShardedByS3Key`: of `all` sorted by path, file `i` goes to rank
    /// `i % worldSize`. Throws `shardUnderfilled` when there are fewer files than ranks.
    public func files(_ all: [String]) throws(DataError) -> [String] {
        guard all.count >= worldSize else { throw .shardUnderfilled(fileCount: all.count, worldSize: worldSize) }
        let sorted = all.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        return stride(from: rank, to: sorted.count, by: worldSize).map { sorted[$0] }
    }
}
