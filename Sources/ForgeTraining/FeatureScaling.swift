// Per-feature standardisation learned from the training set and stored with the model.

/// x' = (x − offset) · scale per feature; the identity when not normalising.
public struct FeatureScaling: Codable, Sendable, Equatable {
    public var offset: [Float]
    public var scale: [Float]

    /// Mean and 1/standard-deviation of each feature of `features` (rows × width, row-major).
    /// Constant features get scale 1 so they stay finite.
    public init(fitting features: [Float], width: Int) {
        let rows = width > 0 ? features.count / width : 0
        var sum = [Double](repeating: 0, count: width), sumSq = [Double](repeating: 0, count: width)
        for r in 0..<rows {
            for j in 0..<width {
                let v = Double(features[r * width + j])
                sum[j] += v
                sumSq[j] += v * v
            }
        }
        let n = Double(max(rows, 1))
        offset = sum.map { Float($0 / n) }
        scale = (0..<width).map { j in
            let mean = sum[j] / n
            let variance = max(sumSq[j] / n - mean * mean, 0)
            let std = variance.squareRoot()
            return std > 1e-12 * max(1, abs(mean)) ? Float(1 / std) : 1
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

    public func forward(_ y: Float) -> Float { (y - offset) * scale }
    public func inverse(_ y: Float) -> Float { y / scale + offset }
}
