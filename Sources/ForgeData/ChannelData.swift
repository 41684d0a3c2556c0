// What loading a channel gives: the records of each file, in order, and every skipped record.

/// The records of one channel, file by file (sorted by path), all of the same width.
public struct ChannelData: Sendable, Equatable {
    /// The format the files were read as.
    public var format: DataFormat
    /// The records of each file (for IDX, each images/labels pair, named by its images file).
    public var files: [NamedDataset]
    /// Every record skipped under `CorruptRecordPolicy.skip`, with file, line and reason.
    public var skipped: [DataError]

    public init(format: DataFormat, files: [NamedDataset], skipped: [DataError]) {
        self.format = format
        self.files = files
        self.skipped = skipped
    }

    /// Records over all files.
    public var recordCount: Int { files.reduce(0) { $0 + $1.dataset.count } }

    /// All records in one data set, files in order. Throws `widthMismatch` when the files
    /// differ in width, naming the first file and the first that differs.
    public func combined() throws(DataError) -> Dataset {
        try Dataset.concatenate(files)
    }
}
