// Errors of reading training data: each names the file (and line, for text formats), says what
// was wrong, and where it helps, what to do next.

/// Why reading, pairing or sharding training data failed.
public enum DataError: Error, Equatable, CustomStringConvertible {
    /// Line `line` (1-based, counting every physical line, blank and header lines included) of
    /// `file` is not a valid record; `reason` names the column or index at fault.
    case malformedRecord(file: String, line: Int, reason: String)
    /// Line `line` of the CSV file `file` has `found` columns where the first record had `expected`.
    case inconsistentWidth(file: String, line: Int, expected: Int, found: Int)
    /// `file` could not be opened or read (missing, a folder, no permission).
    case unreadable(file: String, reason: String)
    /// `file` could not be created or written.
    case unwritable(file: String, reason: String)
    /// The bytes of `file` are not a valid file of its format (an IDX header or payload size,
    /// a broken gzip stream, a size too large to hold).
    case corruptFile(file: String, reason: String)
    /// `file` holds no records; `skipped` of them were dropped as corrupt under `.skip`.
    case noRecords(file: String, skipped: Int)
    /// The channel at `path` is a folder with no data files in it (hidden files are ignored).
    case emptyChannel(path: String)
    /// The format of `path` cannot be told from its name; `hint` says what to pass instead.
    case unknownFormat(path: String, hint: String)
    /// Two files of one channel have different feature widths (features per record).
    case widthMismatch(file: String, width: Int, otherFile: String, otherWidth: Int)
    /// An IDX labels file does not fit its images file (count or shape).
    case labelMismatch(images: String, labels: String, reason: String)
    /// A file of an IDX channel has no images/labels partner, or its name says neither.
    case unpairedFile(path: String, reason: String)
    /// `ShardedByS3Key` over `fileCount` files cannot give each of `worldSize` ranks a file.
    case shardUnderfilled(fileCount: Int, worldSize: Int)
    /// `rank` is not in `0..<worldSize`, or `worldSize` is below 1.
    case invalidShard(rank: Int, worldSize: Int)
    /// A reader or writer option has an unusable value.
    case invalidOption(name: String, reason: String)

    public var description: String {
        switch self {
        case .malformedRecord(let file, let line, let reason):
            return "\(file):\(line): \(reason)"
        case .inconsistentWidth(let file, let line, let expected, let found):
            return "\(file):\(line): expected \(expected) columns as in the first record, found \(found); "
                + "every record needs its label and the same number of features"
        case .unreadable(let file, let reason):
            return "cannot read '\(file)': \(reason)"
        case .unwritable(let file, let reason):
            return "cannot write '\(file)': \(reason)"
        case .corruptFile(let file, let reason):
            return "'\(file)' is corrupt: \(reason)"
        case .noRecords(let file, let skipped):
            if skipped > 0 {
                return "'\(file)' holds no usable records: all \(skipped) were skipped as corrupt"
            }
            return "'\(file)' holds no records; check that it is not empty or header-only"
        case .emptyChannel(let path):
            return "channel '\(path)' holds no data files (hidden files are ignored); "
                + "put at least one data file in it"
        case .unknownFormat(let path, let hint):
            return "cannot tell the data format of '\(path)': \(hint)"
        case .widthMismatch(let file, let width, let otherFile, let otherWidth):
            return "'\(file)' has \(width) features per record but '\(otherFile)' has \(otherWidth); "
                + "all files of a channel need the same width"
        case .labelMismatch(let images, let labels, let reason):
            return "IDX labels '\(labels)' do not fit images '\(images)': \(reason)"
        case .unpairedFile(let path, let reason):
            return "'\(path)': \(reason)"
        case .shardUnderfilled(let fileCount, let worldSize):
            return "ShardedByS3Key needs at least one file per rank, but the channel has \(fileCount) "
                + "file(s) for \(worldSize) ranks; split the data into at least \(worldSize) files "
                + "or use FullyReplicated"
        case .invalidShard(let rank, let worldSize):
            if worldSize < 1 { return "world size \(worldSize) must be at least 1" }
            return "rank \(rank) is outside 0..<\(worldSize)"
        case .invalidOption(let name, let reason):
            return "invalid \(name): \(reason)"
        }
    }
}
