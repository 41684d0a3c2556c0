// Seeded synthetic CSV data sets (SageMaker's text/csv: label first, no header) that forge
// learns in a few epochs of a debug build.

/// SplitMix64: a tiny seeded generator, so the fixtures do not depend on the code under test.
struct TestRandom {
    private var state: UInt64

    init(seed: UInt64) {
        state = seed
    }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    mutating func signed() -> Double {
        2 * Double(next() >> 11) / Double(1 << 53) - 1
    }

    /// Uniform in 0..<bound.
    mutating func int(below bound: Int) -> Int {
        Int(next() % UInt64(bound))
    }
}

/// Rows of `classes` separated clusters in `width` dimensions; the cluster centres are fixed,
/// `seed` draws the rows, so files made with different seeds hold the same problem.
struct SyntheticCSV {
    var labels: [Int] = []
    var rows: [[Double]] = []

    init(count: Int, width: Int = 8, classes: Int = 3, seed: UInt64) {
        var problem = TestRandom(seed: 9_001)
        let centres = (0..<classes).map { _ in (0..<width).map { _ in 4 * problem.signed() } }
        var random = TestRandom(seed: seed)
        for _ in 0..<count {
            let label = random.int(below: classes)
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
