// Where a run stands: everything besides tensors that a checkpoint must hold to resume to
// the same result as an uninterrupted run.

/// The trainer's position and bookkeeping (tensors are saved beside it).
public struct TrainerState: Codable, Sendable, Equatable {
    /// Format version of checkpoints.
    public var version = 1
    /// Optimizer steps taken.
    public var step = 0
    /// The epoch in progress (0-based).
    public var epoch = 0
    /// Batches of that epoch already trained (the data position: the epoch's order is a pure
    /// function of seed and epoch, so this index locates the next batch exactly).
    public var batchInEpoch = 0
    /// Σ loss and samples of the epoch so far, for its metric line.
    public var epochLossSum = 0.0
    public var epochSamples = 0
    /// Best validation loss so far and the epoch it came from (early stopping).
    public var bestValidationLoss: Double?
    public var bestEpoch = 0
    public var epochsWithoutImprovement = 0
    /// True once training ended (early stop or last epoch).
    public var finished = false
    /// The randomness state: all of Forge's draws are keyed by (seed, epoch, step, sample), so
    /// the seed and the counters above are the complete RNG state.
    public var seed: UInt64 = 0
    /// Hyperparameters the state was trained with; a resume under others is refused.
    public var hyperparameters: [String: String] = [:]
    /// Records and features of the training data, checked on resume.
    public var trainRecords = 0
    public var features = 0
    public var lastReport: [String: Double] = [:]

    public init() {}
}
