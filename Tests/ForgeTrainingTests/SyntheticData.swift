// Seeded synthetic data sets for the training tests: separable blobs, linear labels and noise,
// small enough that a debug build trains on them in well under a second.
import ForgeData
import ForgeTestSupport

/// Learnable and unlearnable problems. The problem itself (class centres, true weights) comes
/// from a fixed seed; `seed` draws the samples, so train and validation sets share a problem.
enum SyntheticData {
    /// `classes` well separated clusters in `width` dimensions, offset and stretched so that
    /// standardisation matters.
    static func blobs(count: Int, width: Int, classes: Int, spread: Float = 0.4, seed: UInt64) -> Dataset {
        var problem = SplitMix64(seed: 7_001)
        let centres: [Float] = (0..<classes * width).map { _ in 3 * problem.signed() }
        var random = SplitMix64(seed: seed)
        var features = [Float](), labels = [Float]()
        for _ in 0..<count {
            let label = random.below(classes)
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
        var problem = SplitMix64(seed: 7_002)
        let weights: [Float] = (0..<width).map { _ in problem.signed() }
        var random = SplitMix64(seed: seed)
        var features = [Float](), labels = [Float]()
        while labels.count < count {
            let x: [Float] = (0..<width).map { _ in 2 * random.signed() }
            let score = zip(weights, x).reduce(Float(0.1)) { $0 + $1.0 * $1.1 }
            guard abs(score) > 0.2 else { continue }
            features += x
            labels.append(score > 0 ? 1 : 0)
        }
        return Dataset(features: features, labels: labels, width: width)
    }

    /// y = w·x + 3 plus a little noise.
    static func linearRegression(count: Int, width: Int, noise: Float = 0.01, seed: UInt64) -> Dataset {
        var problem = SplitMix64(seed: 7_003)
        let weights: [Float] = (0..<width).map { _ in 2 * problem.signed() }
        var random = SplitMix64(seed: seed)
        var features = [Float](), labels = [Float]()
        for _ in 0..<count {
            let x: [Float] = (0..<width).map { _ in random.signed() }
            features += x
            labels.append(zip(weights, x).reduce(Float(3)) { $0 + $1.0 * $1.1 } + noise * random.signed())
        }
        return Dataset(features: features, labels: labels, width: width)
    }

    /// Random features with random labels: nothing to learn, everything to overfit.
    static func noise(count: Int, width: Int, classes: Int, seed: UInt64) -> Dataset {
        var random = SplitMix64(seed: seed)
        let features: [Float] = (0..<count * width).map { _ in random.signed() }
        let labels = (0..<count).map { _ in Float(random.below(classes)) }
        return Dataset(features: features, labels: labels, width: width)
    }

    /// `count` records of `width` uniform features in [-1, 1) from a 64-bit LCG, in 3 classes
    /// by thresholds on the first three features (x0 + x1 > 0.3 → 2, else x2 > 0 → 1, else 0).
    static func thresholdClasses(count: Int, width: Int, seed: UInt64) -> Dataset {
        var state = seed
        func unit() -> Float {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Float(state >> 40) / Float(1 << 24)
        }
        var features = [Float](), labels = [Float]()
        for _ in 0..<count {
            let row = (0..<width).map { _ in unit() * 2 - 1 }
            features += row
            labels.append(row[0] + row[1] > 0.3 ? 2 : (row[2] > 0 ? 1 : 0))
        }
        return Dataset(features: features, labels: labels, width: width)
    }
}
