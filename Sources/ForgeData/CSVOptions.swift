// Options of the CSV reader, defaulting to SageMaker's built-in convention.

/// How to read a CSV file. The defaults are SageMaker's built-in algorithm convention for
/// `text/csv`: no header, the label in the first column, every other column a feature.
public struct CSVOptions: Sendable, Hashable {
    /// Skip the first non-blank line as a header.
    public var hasHeader: Bool
    /// 0-based column holding the label; the other columns are the features, in order.
    public var labelColumn: Int
    /// What to do with a corrupt record.
    public var corruptRecords: CorruptRecordPolicy

    public init(hasHeader: Bool = false, labelColumn: Int = 0, corruptRecords: CorruptRecordPolicy = .fail) {
        self.hasHeader = hasHeader
        self.labelColumn = labelColumn
        self.corruptRecords = corruptRecords
    }
}
