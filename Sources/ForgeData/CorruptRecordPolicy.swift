// What a text reader does with a record it cannot parse.

/// What to do with a corrupt record (bad number, wrong column count, bad index).
public enum CorruptRecordPolicy: String, Sendable, Hashable {
    /// Stop at the first corrupt record and throw its error.
    case fail
    /// Leave the record out and list its error in `ReadResult.skipped`.
    case skip
}
