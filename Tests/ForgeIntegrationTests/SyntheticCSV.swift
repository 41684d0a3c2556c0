// Seeded synthetic CSV data sets (SageMaker's text/csv: label first, no header) that forge
// learns in a few epochs of a debug build.
import ForgeTestSupport

/// Rows of `classes` separated clusters in `width` dimensions; the cluster centres are fixed,
/// `seed` draws the rows, so files made with different seeds hold the same problem.
struct SyntheticCSV {
    var labels: [Int] = []
    var rows: [[Double]] = []

    init(count: Int, width: Int = 8, classes: Int = 3, seed: UInt64) {
        var problem = SplitMix64(seed: 9_001)
        let centres: [[Double]] = (0..<classes).map { _ in (0..<width).map { _ in 4 * problem.signed() } }
        var random = SplitMix64(seed: seed)
        for _ in 0..<count {
            let label = random.below(classes)
            labels.append(label)
            rows.append(centres[label].map { 20 + 3 * ($0 + 0.5 * random.signed()) })
        }
    }

    private static func number(_ value: Double) -> String {
        String((value * 10_000).rounded() / 10_000)
    }

    /// Label first, then the features.
    var labelled: String {
        zip(labels, rows).map { label, row in ([String(label)] + row.map(SyntheticCSV.number)).joined(separator: ",") + "\n" }.joined()
    }

    /// The features only, as SageMaker's inference CSV.
    var featuresOnly: String {
        rows.map { row in row.map(SyntheticCSV.number).joined(separator: ",") + "\n" }.joined()
    }
}
