// Seeded synthetic data sets for the training tests: separable blobs, linear labels and noise,
// small enough that a debug build trains on them in well under a second.
import ForgeData

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

    /// Uniform in [0, 1).
    mutating func unit() -> Float {
        Float(next() >> 40) / Float(1 << 24)
    }

    /// Uniform in [-1, 1).
    mutating func signed() -> Float {
        2 * unit() - 1
    }

    /// Uniform in 0..<bound.
    mutating func int(below bound: Int) -> Int {
        Int(next() % UInt64(bound))
    }
}

/// Learnable and unlearnable problems. The problem itself (class centres, true weights) comes
/// from a fixed seed; `seed` draws the samples, so train and validation sets share a problem.
enum SyntheticData {
    /// `classes` well separated clusters in `width` dimensions, offset and stretched so that
    /// standardisation matters.
    static func blobs(count: Int, width: Int, classes: Int, spread: Float = 0.4, seed: UInt64) -> Dataset {
        var problem = TestRandom(seed: 7_001)
        let centres = (0..<classes * width).map { _ in 3 * problem.signed() }
        var random = TestRandom(seed: seed)
        var features = [Float](), labels = [Float]()
        for _ in 0..<count {
            let label = random.int(below: classes)
            labels.append(Float(label))
            for j in 0..<width {
                features.append(10 + 5 * (centres[label * width + j] + spread * random.signed()))
            }
        }
        return Dataset(features: features, labels: labels, width: width)
    }

    /// Label 1 when a fixed hyperplane has the point on its positive side, with a margin so
    /// the classes are separable.
    static func linearBinary(count: Int, width: Int, seed: UInt64) -> Dataset {
        var problem = TestRandom(seed: 7_002)
        let weights = (0..<width).map { _ in problem.signed() }
        var random = TestRandom(seed: seed)
        var features = [Float](), labels = [Float]()
        while labels.count < count {
            let x = (0..<width).map { _ in 2 * random.signed() }
            let score = zip(weights, x).reduce(Float(0.1)) { $0 + $1.0 * $1.1 }
            guard abs(score) > 0.2 else { continue }
            features += x
            labels.append(score > 0 ? 1 : 0)
        }
        return Dataset(features: features, labels: labels, width: width)
    }

    /// y = w·x + 3 plus a little noise.
    static func linearRegression(count: Int, width: Int, noise: Float = 0.01, seed: UInt64) -> Dataset {
        var problem = TestRandom(seed: 7_003)
        let weights = (0..<width).map { _ in 2 * problem.signed() }
        var random = TestRandom(seed: seed)
        var features = [Float](), labels = [Float]()
        for _ in 0..<count {
            let x = (0..<width).map { _ in random.signed() }
            features += x
            labels.append(zip(weights, x).reduce(Float(3)) { $0 + $1.0 * $1.1 } + noise * random.signed())
        }
        return Dataset(features: features, labels: labels, width: width)
    }

    /// Random features with random labels: nothing to learn, everything to overfit.
    static func noise(count: Int, width: Int, classes: Int, seed: UInt64) -> Dataset {
        var random = TestRandom(seed: seed)
        let features = (0..<count * width).map { _ in random.signed() }
        let labels = (0..<count).map { _ in Float(random.int(below: classes)) }
        return Dataset(features: features, labels: labels, width: width)
    }
}
