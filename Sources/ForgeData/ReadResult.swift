// What a text reader returns: the records, and every record it skipped with the reason.

/// The records of one file, and the records dropped under `CorruptRecordPolicy.skip`.
public struct ReadResult: Sendable, Equatable {
    /// The valid records.
    public var dataset: Dataset
    /// One error (file, line, reason) per skipped record, in file order; empty under `.fail`.
    public var skipped: [DataError]

    public init(dataset: Dataset, skipped: [DataError]) {
        self.dataset = dataset
        self.skipped = skipped
    }
}
