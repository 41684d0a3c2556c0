// A dense, in-memory data set: one label and `width` features per record, features row-major.

/// Records of one channel, dense: record `i` has label `labels[i]` and features
/// `features[i * width ..< (i + 1) * width]`. Values are as read (no scaling).
public struct Dataset: Sendable, Equatable {
    /// Features, row-major: `count × width` values.
    public var features: [Float]
    /// One label per record.
    public var labels: [Float]
    /// Features per record.
    public let width: Int

    /// Number of records.
    public var count: Int { labels.count }

    /// A data set over `features` (row-major, `labels.count × width` values) and `labels`.
    /// The shapes must agree: a mismatch is a programming error.
    public init(features: [Float], labels: [Float], width: Int) {
        precondition(width >= 0, "width must not be negative")
        precondition(features.count == labels.count * width,
                     "\(features.count) features do not fill \(labels.count) records of width \(width)")
        self.features = features
        self.labels = labels
        self.width = width
    }

    /// An empty data set of the given width.
    public init(width: Int) {
        self.init(features: [], labels: [], width: width)
    }

    /// The features of record `index` (`width` values).
    public func row(_ index: Int) -> ArraySlice<Float> {
        precondition(index >= 0 && index < count, "record \(index) is outside 0..<\(count)")
        return features[index * width ..< (index + 1) * width]
    }

    /// A new data set of the records at `indices`, in that order (repeats allowed).
    public func subset(_ indices: some Collection<Int>) -> Dataset {
        var result = Dataset(width: width)
        result.features.reserveCapacity(indices.count * width)
        result.labels.reserveCapacity(indices.count)
        copyRows(indices, features: &result.features, labels: &result.labels)
        return result
    }

    /// Replaces the contents of `features` (row-major, `indices.count × width`) and `labels`
    /// with the records at `indices`, reusing their storage: a batch gather that allocates
    /// nothing once the buffers have grown to the batch size.
    public func copyRows(_ indices: some Collection<Int>, features: inout [Float], labels: inout [Float]) {
        features.removeAll(keepingCapacity: true)
        labels.removeAll(keepingCapacity: true)
        for index in indices {
            precondition(index >= 0 && index < count, "record \(index) is outside 0..<\(count)")
            features.append(contentsOf: self.features[index * width ..< (index + 1) * width])
            labels.append(self.labels[index])
        }
    }

    /// The records of `parts` one after another, in order. All parts need the same width;
    /// otherwise `widthMismatch` names the first part and the first that differs.
    /// `parts` must not be empty.
    public static func concatenate(_ parts: [NamedDataset]) throws(DataError) -> Dataset {
        guard let first = parts.first else {
            preconditionFailure("concatenate needs at least one part")
        }
        try checkWidths(parts)
        if parts.count == 1 { return first.dataset }
        var result = Dataset(width: first.dataset.width)
        result.features.reserveCapacity(parts.reduce(0) { $0 + $1.dataset.features.count })
        result.labels.reserveCapacity(parts.reduce(0) { $0 + $1.dataset.count })
        for part in parts {
            result.features.append(contentsOf: part.dataset.features)
            result.labels.append(contentsOf: part.dataset.labels)
        }
        return result
    }

    /// Throws `widthMismatch` unless every part has the width of the first.
    static func checkWidths(_ parts: [NamedDataset]) throws(DataError) {
        guard let first = parts.first else { return }
        for part in parts.dropFirst() where part.dataset.width != first.dataset.width {
            throw .widthMismatch(file: first.name, width: first.dataset.width,
                                 otherFile: part.name, otherWidth: part.dataset.width)
        }
    }
}
