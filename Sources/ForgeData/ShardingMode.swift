// How a channel's data is split across the ranks of a job (SageMaker's S3DataDistributionType).

/// How a channel's records are divided among ranks. The raw values are the strings of
/// SageMaker's `S3DataDistributionType`, except `byRecord`, which is Forge's own.
public enum ShardingMode: String, Sendable, Hashable, CaseIterable {
    /// Every rank sees the whole data set; each global batch (one seeded shuffle) is split into
    /// contiguous per-rank slices (`Shard.slice(ofBatch:)`), so any world size takes the same
    /// step as one process.
    case fullyReplicated = "FullyReplicated"
    /// Each rank gets its own files (file `i` of the sorted list goes to rank `i % worldSize`),
    /// shuffled per rank: fast, but not equivalent to a single-process run.
    case shardedByS3Key = "ShardedByS3Key"
    /// Forge's own: each rank holds only a contiguous range of records (`Shard.records(count:)`)
    /// of the whole, identically ordered data set.
    case byRecord = "ShardedByRecord"
}
