// The seeded order of records in each epoch, and its cut into global batches. Any epoch's
// order is a pure function of (seed, epoch), so a resumed job recomputes it without replaying.
import ForgeRandom

/// The record order of every epoch of a data set of `count` records, and its global batches.
///
/// Epoch `e`'s order is a Fisher–Yates permutation drawn from
/// `CounterRandom(seed: seed).stream(EpochOrder.shufflePurpose, UInt64(e))`: the same on every
/// rank, machine and world size, and computable directly for any epoch (checkpoint resume needs
/// no replay of earlier epochs). With `shuffle` false every epoch is `0..<count` in order.
public struct EpochOrder: Sendable, Hashable {
    /// The first key of the shuffle streams ("SHUFFLE" in ASCII), keeping them apart from every
    /// other use of the same seed (dropout, initialisation).
    public static let shufflePurpose: UInt64 = 0x0053_4855_4646_4C45

    /// Records per epoch.
    public let count: Int
    /// The job's seed.
    public let seed: UInt64
    /// Whether epochs are shuffled.
    public let shuffle: Bool

    public init(count: Int, seed: UInt64, shuffle: Bool = true) {
        precondition(count >= 0, "record count must not be negative")
        self.count = count
        self.seed = seed
        self.shuffle = shuffle
    }

    /// The record indices of epoch `epoch` (0-based), in the order they are visited: a
    /// permutation of `0..<count`.
    public func permutation(epoch: Int) -> [Int] {
        precondition(epoch >= 0, "epoch must not be negative")
        guard shuffle else { return Array(0..<count) }
        var stream = CounterRandom(seed: seed).stream(Self.shufflePurpose, UInt64(epoch))
        return stream.permutation(count)
    }

    /// Number of global batches per epoch: `ceil(count / batchSize)` (the last may be partial).
    public func batchCount(batchSize: Int) -> Int {
        precondition(batchSize > 0, "batch size must be positive")
        return (count + batchSize - 1) / batchSize
    }

    /// The positions in an epoch's permutation that make up each global batch: consecutive
    /// ranges of `batchSize`, the last one partial when `batchSize` does not divide `count`.
    /// The same for every epoch.
    public func batchRanges(batchSize: Int) -> [Range<Int>] {
        (0..<batchCount(batchSize: batchSize)).map { batch in
            batch * batchSize ..< min((batch + 1) * batchSize, count)
        }
    }

    /// The record indices of each global batch of epoch `epoch`, in order; the last batch is
    /// kept when partial.
    public func batches(epoch: Int, batchSize: Int) -> [ArraySlice<Int>] {
        let order = permutation(epoch: epoch)
        return batchRanges(batchSize: batchSize).map { order[$0] }
    }
}
