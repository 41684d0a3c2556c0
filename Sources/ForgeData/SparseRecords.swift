// Records read from a sparse text format (LibSVM), kept sparse until the width of the whole
// channel is known, then expanded into a dense `Dataset`.

/// Sparse records: record `r` has label `labels[r]` and the pairs
/// `(indices[k], values[k])` for `k` in `starts[r] ..< starts[r + 1]`, indices 1-based and
/// strictly increasing.
struct SparseRecords: Sendable {
    /// The file the records came from, for errors.
    let name: String
    var labels: [Float] = []
    /// `labels.count + 1` offsets into `indices` and `values`.
    var starts: [Int] = [0]
    var indices: [Int32] = []
    var values: [Float] = []
    /// The largest index seen (0 when no record has a pair).
    var maxIndex = 0
    /// Records dropped under `CorruptRecordPolicy.skip`.
    var skipped: [DataError] = []

    /// The largest dense size (in Float values) expanded without complaint: 2^32 values, 16 GiB.
    static let denseLimit = 1 << 32

    init(name: String) {
        self.name = name
    }

    /// The records as a dense data set of `width` features (≥ `maxIndex`), zeros where absent.
    func dense(width: Int) throws(DataError) -> Dataset {
        precondition(width >= maxIndex, "width \(width) is below the largest index \(maxIndex)")
        let (total, overflow) = labels.count.multipliedReportingOverflow(by: width)
        guard !overflow, total <= Self.denseLimit else {
            throw .corruptFile(file: name, reason: "\(labels.count) records of width \(width) would need more than "
                + "\(Self.denseLimit) dense values; check the largest index (\(maxIndex)) or pass a width")
        }
        var features = [Float](repeating: 0, count: total)
        features.withUnsafeMutableBufferPointer { out in
            for record in 0..<labels.count {
                let rowBase = record * width - 1
                for k in starts[record] ..< starts[record + 1] {
                    out[rowBase + Int(indices[k])] = values[k]
                }
            }
        }
        return Dataset(features: features, labels: labels, width: width)
    }
}
