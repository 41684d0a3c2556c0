// Reductions and losses on the CPU: column sums, sums of squares, softmax, arg-max,
// softmax cross-entropy, logistic loss and squared error. Sums accumulate in Float64 where
// the result leaves the device, so reported losses do not depend on the batch split.
import Foundation

extension CPUDevice {
    public func sumRows(_ x: Tensor, into out: Tensor, beta: Float) {
        let (rows, cols, ld) = CPUDevice.matrix(x)
        CPUDevice.requireContiguous(out)
        precondition(out.count == cols, "sumRows output has \(out.count) elements, need \(cols)")
        let o = out.hostPointer, xs = x.hostPointer
        CPUDevice.scale(o, count: cols, by: beta)
        for r in 0..<rows {
            let row = xs + r * ld
            for j in 0..<cols { o[j] += row[j] }
        }
    }

    public func sumOfSquares(_ x: Tensor) -> Double {
        CPUDevice.requireContiguous(x)
        let p = x.hostPointer
        var total = 0.0
        var i = 0
        let n = x.count
        // Blocks of float sums keep the loop vectorised; the blocks add up in Float64.
        while i < n {
            let end = min(i + 1024, n)
            var block: Float = 0
            for j in i..<end { block += p[j] * p[j] }
            total += Double(block)
            i = end
        }
        return total
    }

    public func softmax(_ x: Tensor, into out: Tensor) {
        let (rows, cols, ldx) = CPUDevice.matrix(x)
        let (_, _, ldo) = CPUDevice.matrix(out)
        for r in 0..<rows {
            CPUDevice.softmaxRow(UnsafePointer(x.hostPointer + r * ldx), into: out.hostPointer + r * ldo, count: cols)
        }
    }

    /// The softmax of `count` values into `out` (which may be `x` itself): shifted by the
    /// maximum, exponentiated, scaled by the inverse of the sum. Rows of `softmax` and the
    /// visible prefix of each row of `causalSoftmax`.
    static func softmaxRow(_ x: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, count: Int) {
        var peak = -Float.infinity
        for j in 0..<count { peak = max(peak, x[j]) }
        var total: Float = 0
        for j in 0..<count {
            let e = expf(x[j] - peak)
            out[j] = e
            total += e
        }
        let inverse = 1 / total
        for j in 0..<count { out[j] *= inverse }
    }

    public func argmaxRows(_ x: Tensor) -> [Int] {
        let (rows, cols, ld) = CPUDevice.matrix(x)
        return (0..<rows).map { r in
            let row = x.hostPointer + r * ld
            var best = 0
            for j in 1..<max(cols, 1) where row[j] > row[best] { best = j }
            return best
        }
    }

    public func softmaxCrossEntropy(logits: Tensor, labels: Tensor, gradient: Tensor?, gradScale: Float) -> Double {
        let (rows, cols, ld) = CPUDevice.matrix(logits)
        precondition(labels.count == rows, "\(labels.count) labels for \(rows) rows")
        let gradientLayout = gradient.map(CPUDevice.matrix)
        let y = labels.hostPointer
        var total = 0.0
        for r in 0..<rows {
            let z = logits.hostPointer + r * ld
            let label = Int(y[r])
            precondition(label >= 0 && label < cols, "label \(y[r]) outside 0..<\(cols)")
            var peak = -Float.infinity
            for j in 0..<cols { peak = max(peak, z[j]) }
            var sum: Float = 0
            for j in 0..<cols { sum += expf(z[j] - peak) }
            let logSum = logf(sum)
            total += Double(logSum + peak - z[label])
            if let gradient, let layout = gradientLayout {
                let g = gradient.hostPointer + r * layout.ld
                let inverse = gradScale / sum
                for j in 0..<cols { g[j] = expf(z[j] - peak) * inverse }
                g[label] -= gradScale
            }
        }
        return total
    }

    public func logisticLoss(logits: Tensor, labels: Tensor, gradient: Tensor?, gradScale: Float) -> Double {
        CPUDevice.requireContiguous(logits, labels)
        precondition(logits.count == labels.count, "\(labels.count) labels for \(logits.count) logits")
        let z = logits.hostPointer, y = labels.hostPointer
        let g = gradient?.hostPointer
        var total = 0.0
        for i in 0..<logits.count {
            let v = z[i]
            // max(z, 0) − z·y + log(1 + e^−|z|): stable for any z.
            total += Double(max(v, 0) - v * y[i] + log1pf(expf(-abs(v))))
            if let g { g[i] = gradScale * (CPUDevice.sigmoid(v) - y[i]) }
        }
        return total
    }

    public func squaredError(predictions: Tensor, targets: Tensor, gradient: Tensor?, gradScale: Float) -> Double {
        CPUDevice.requireContiguous(predictions, targets)
        precondition(predictions.count == targets.count, "\(targets.count) targets for \(predictions.count) predictions")
        let p = predictions.hostPointer, t = targets.hostPointer
        let g = gradient?.hostPointer
        var total = 0.0
        for i in 0..<predictions.count {
            let d = p[i] - t[i]
            total += 0.5 * Double(d) * Double(d)
            if let g { g[i] = gradScale * d }
        }
        return total
    }
}
