// Channels in SageMaker's sense: a file or a folder of files holding one data set. Lists the
// files in a fixed order, tells their format, pairs IDX images with labels, and loads them.
import Foundation

/// Finds and loads the files of a channel.
///
/// A channel is a file, or a folder whose regular, non-hidden files (recursively; names
/// starting with `.` are skipped, folders included) together hold the data, taken in byte
/// order of their paths. This order is what `ShardedByS3Key` assigns by.
public enum Channel {
    /// The data files of the channel at `path`: `[path]` for a file; for a folder its regular,
    /// non-hidden files, recursively, sorted by path. Throws `emptyChannel` for a folder without
    /// any, `unreadable` for a missing path.
    public static func files(at path: String) throws(DataError) -> [String] {
        switch FileKind.of(path) {
        case .missing:
            throw .unreadable(file: path, reason: "no such file or folder")
        case .regular:
            return [path]
        case .other:
            throw .unreadable(file: path, reason: "it is neither a regular file nor a folder")
        case .folder(let device, let inode):
            var found = [String]()
            var visited: Set<[UInt64]> = [[device, inode]]
            try collect(folder: path, into: &found, visited: &visited)
            guard !found.isEmpty else { throw .emptyChannel(path: path) }
            return found.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        }
    }

    /// Loads the channel at `path`. With `format` nil, the format is told from the file names
    /// (`DataFormat(fileName:)`); all files must agree. `csv` applies to CSV files, and its
    /// `corruptRecords` policy to LibSVM files too; `libsvmWidth` fixes the LibSVM width
    /// (default: the largest index over all files of the channel).
    public static func load(
        path: String, format: DataFormat? = nil, csv: CSVOptions = CSVOptions(), libsvmWidth: Int? = nil
    ) throws(DataError) -> ChannelData {
        try load(files: files(at: path), channel: path, format: format, csv: csv, libsvmWidth: libsvmWidth)
    }

    /// Loads the given files of a channel (for instance one rank's `Shard.files`), in the
    /// order given; `channel` names the channel in errors. Options as in `load(path:…)`.
    public static func load(
        files: [String], channel: String, format: DataFormat? = nil, csv: CSVOptions = CSVOptions(),
        libsvmWidth: Int? = nil
    ) throws(DataError) -> ChannelData {
        guard !files.isEmpty else { throw .emptyChannel(path: channel) }
        let resolved: DataFormat
        if let format { resolved = format } else { resolved = try detectFormat(of: files, channel: channel) }
        var parts = [NamedDataset]()
        var skipped = [DataError]()
        switch resolved {
        case .csv:
            for file in files {
                let result = try CSVReader.read(file: file, options: csv)
                parts.append(NamedDataset(name: file, dataset: result.dataset))
                skipped += result.skipped
            }
        case .libsvm:
            var sparse = [SparseRecords]()
            for file in files {
                let bytes = try FileBytes.readDecompressed(file)
                sparse.append(try LibSVMReader.parse(bytes, name: file, width: libsvmWidth,
                                                     policy: csv.corruptRecords))
            }
            let width = try LibSVMReader.resolvedWidth(of: sparse, given: libsvmWidth)
            for records in sparse {
                parts.append(NamedDataset(name: records.name, dataset: try records.dense(width: width)))
                skipped += records.skipped
            }
        case .idx:
            if files == [channel] {
                throw .unpairedFile(path: channel, reason: "an IDX channel must be a folder holding images and "
                    + "labels files; this is a single file")
            }
            for pair in try idxPairs(files) {
                let dataset = try IDXReader.dataset(images: pair.images, labels: pair.labels)
                parts.append(NamedDataset(name: pair.images, dataset: dataset))
            }
        }
        try Dataset.checkWidths(parts)
        return ChannelData(format: resolved, files: parts, skipped: skipped)
    }

    /// The format all `files` share by name, or `unknownFormat` saying what to pass instead.
    static func detectFormat(of files: [String], channel: String) throws(DataError) -> DataFormat {
        var first: (file: String, format: DataFormat)?
        for file in files {
            guard let format = DataFormat(fileName: file) else {
                throw .unknownFormat(path: file, hint: "the name ends in neither .csv, .libsvm nor .svm and "
                    + "does not contain 'idx'; pass a content type (text/csv, application/x-libsvm or "
                    + "application/x-idx)")
            }
            guard let seen = first else {
                first = (file, format)
                continue
            }
            if seen.format != format {
                throw .unknownFormat(path: channel, hint: "it mixes \(seen.format.rawValue) ('\(seen.file)') and "
                    + "\(format.rawValue) ('\(file)') files; keep one format per channel or pass a content type")
            }
        }
        guard let first else { throw .emptyChannel(path: channel) }
        return first.format
    }

    /// Pairs IDX images files with their labels files: two names pair when they are equal after
    /// `images`/`labels`, the digit after `idx`, and a `.gz` ending are set aside
    /// (`t10k-images-idx3-ubyte.gz` with `t10k-labels-idx1-ubyte.gz`). Pairs come in the order
    /// of their images files. A file with no partner, or whose name says neither, is an error.
    static func idxPairs(_ files: [String]) throws(DataError) -> [(images: String, labels: String)] {
        var images = [String: String]()
        var labels = [String: String]()
        var imageOrder = [String]()
        for file in files {
            guard let (isImages, key) = idxRole(of: file) else {
                throw .unpairedFile(path: file, reason: "an IDX channel holds pairs like X-images-idx3-ubyte and "
                    + "X-labels-idx1-ubyte, but this name contains neither 'images' nor 'labels'")
            }
            if let other = isImages ? images[key] : labels[key] {
                throw .unpairedFile(path: file, reason: "it would pair with the same file as '\(other)'; "
                    + "keep only one of them")
            }
            if isImages {
                images[key] = file
                imageOrder.append(key)
            } else {
                labels[key] = file
            }
        }
        var pairs = [(images: String, labels: String)]()
        for key in imageOrder {
            guard let image = images[key], let label = labels.removeValue(forKey: key) else {
                throw .unpairedFile(path: images[key] ?? key, reason: "no labels file pairs with this images file; "
                    + "expected one named like it with 'labels' for 'images'")
            }
            pairs.append((image, label))
        }
        if let orphan = labels.values.sorted().first {
            throw .unpairedFile(path: orphan, reason: "no images file pairs with this labels file; "
                + "expected one named like it with 'images' for 'labels'")
        }
        return pairs.sorted { $0.images.utf8.lexicographicallyPrecedes($1.images.utf8) }
    }

    /// Whether `file` is an images file, and the name it pairs by; nil when it says neither.
    private static func idxRole(of file: String) -> (isImages: Bool, key: String)? {
        var key = file
        if key.hasSuffix(".gz") { key.removeLast(3) }
        let slash = key.lastIndex(of: "/").map { key.index(after: $0) } ?? key.startIndex
        let isImages: Bool
        if let role = key.range(of: "images", range: slash..<key.endIndex) {
            key.replaceSubrange(role, with: "\u{1}")
            isImages = true
        } else if let role = key.range(of: "labels", range: slash..<key.endIndex) {
            key.replaceSubrange(role, with: "\u{1}")
            isImages = false
        } else {
            return nil
        }
        if let idx = key.range(of: "idx", range: slash..<key.endIndex), idx.upperBound < key.endIndex,
           key[idx.upperBound].isASCII, key[idx.upperBound].isNumber {
            key.replaceSubrange(idx.upperBound...idx.upperBound, with: "\u{1}")
        }
        return (isImages, key)
    }

    /// Appends the regular, non-hidden files under `folder` to `found`, recursively.
    private static func collect(
        folder: String, into found: inout [String], visited: inout Set<[UInt64]>
    ) throws(DataError) {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: folder)
        } catch {
            throw .unreadable(file: folder, reason: "cannot list the folder: \(error.localizedDescription)")
        }
        for name in names where !name.hasPrefix(".") {
            let path = folder.hasSuffix("/") ? folder + name : folder + "/" + name
            switch FileKind.of(path) {
            case .regular:
                found.append(path)
            case .folder(let device, let inode):
                // A symbolic link back up the tree would otherwise recurse forever.
                if visited.insert([device, inode]).inserted {
                    try collect(folder: path, into: &found, visited: &visited)
                }
            case .missing, .other:
                continue
            }
        }
    }
}
