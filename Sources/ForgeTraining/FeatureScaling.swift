// Per-feature standardisation learned from the training set and stored with the model.

/// x' = (x − offset) · scale per feature; the identity when not normalising.
public struct FeatureScaling: Codable, Sendable, Equatable {
    public var offset: [Float]
    public var scale: [Float]

    /// Mean and 1/standard-deviation of each feature of `features` (rows × width, row-major).
    /// Constant features get scale 1 so they stay finite.
    public init(fitting features: [Float], width: Int) {
        // One process: the sums need no reduction.
        self = FeatureScaling(fitting: features, width: width) { (_: inout [Double]) in }
    }

    /// The same statistics over data split across ranks: `sumAcrossRanks` adds a vector of
    /// per-rank sums over all ranks (every rank gets the total). Two passes, means first, then
    /// squared deviations from the global mean, so no precision is lost to E[x²] − E[x]².
    public init<E: Error>(fitting features: [Float], width: Int, sumAcrossRanks: (inout [Double]) throws(E) -> Void) throws(E) {
        let rows = width > 0 ? features.count / width : 0
        var sums = [Double](repeating: 0, count: width + 1)
        for r in 0..<rows {
            for j in 0..<width { sums[j] += Double(features[r * width + j]) }
        }
        sums[width] = Double(rows)
        try sumAcrossRanks(&sums)
        let n = max(sums[width], 1)
        let means = sums[0..<width].map { $0 / n }
        var squares = [Double](repeating: 0, count: width)
        for r in 0..<rows {
            for j in 0..<width {
                let d = Double(features[r * width + j]) - means[j]
                squares[j] += d * d
            }
        }
        try sumAcrossRanks(&squares)
        offset = means.map { Float($0) }
        scale = (0..<width).map { j in
            let std = (squares[j] / n).squareRoot()
            return std > 1e-12 * max(1, abs(means[j])) ? Float(1 / std) : 1
        }
    }

    public init(offset: [Float], scale: [Float]) {
        self.offset = offset
        self.scale = scale
    }

    public var width: Int { offset.count }

    /// Scales `features` in place.
    public func apply(to features: inout [Float]) {
        let width = offset.count
        guard width > 0 else { return }
        features.withUnsafeMutableBufferPointer { buffer in
            offset.withUnsafeBufferPointer { o in
                scale.withUnsafeBufferPointer { s in
                    var base = 0
                    while base + width <= buffer.count {
                        for j in 0..<width { buffer[base + j] = (buffer[base + j] - o[j]) * s[j] }
                        base += width
                    }
                }
            }
        }
    }
}

/// Standardisation of regression targets: y' = (y − offset) · scale.
public struct LabelScaling: Codable, Sendable, Equatable {
    public var offset: Float
    public var scale: Float

    public static let identity = LabelScaling(offset: 0, scale: 1)

    public init(offset: Float, scale: Float) {
        self.offset = offset
        self.scale = scale
    }

    public init(fitting labels: [Float]) {
        let fitted = FeatureScaling(fitting: labels, width: 1)
        self.init(offset: fitted.offset[0], scale: fitted.scale[0])
    }

    /// The same over labels split across ranks (see `FeatureScaling`).
    public init<E: Error>(fitting labels: [Float], sumAcrossRanks: (inout [Double]) throws(E) -> Void) throws(E) {
        let fitted = try FeatureScaling(fitting: labels, width: 1, sumAcrossRanks: sumAcrossRanks)
        self.init(offset: fitted.offset[0], scale: fitted.scale[0])
    }

    public func forward(_ y: Float) -> Float { (y - offset) * scale }
    public func inverse(_ y: Float) -> Float { y / scale + offset }
}
