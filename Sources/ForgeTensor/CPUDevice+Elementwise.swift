// Elementwise CPU kernels: fill, axpby, multiply, bias + activation and its backward.
// Each runs one plain loop over raw pointers so the compiler vectorises it.
import Foundation

/// √(2/π), for the tanh form of GELU.
private let geluC: Float = 0.797_884_6
private let geluK: Float = 0.044_715

extension CPUDevice {
    public func fill(_ tensor: Tensor, value: Float) {
        CPUDevice.requireContiguous(tensor)
        let p = SendablePointer(tensor.hostPointer)
        pool.parallelFor(count: tensor.count) { range in
            (p.pointer + range.lowerBound).update(repeating: value, count: range.count)
        }
    }

    public func axpby(alpha: Float, _ x: Tensor, beta: Float, _ y: Tensor) {
        CPUDevice.requireContiguous(x, y)
        precondition(x.count == y.count, "axpby of \(x.count) and \(y.count) elements")
        let xp = SendablePointer(x.hostPointer), yp = SendablePointer(y.hostPointer)
        pool.parallelFor(count: x.count) { range in
            let xs = xp.pointer, ys = yp.pointer
            if beta == 0 {
                for i in range { ys[i] = alpha * xs[i] }
            } else if beta == 1 {
                for i in range { ys[i] += alpha * xs[i] }
            } else {
                for i in range { ys[i] = alpha * xs[i] + beta * ys[i] }
            }
        }
    }

    public func multiply(_ a: Tensor, _ b: Tensor, into out: Tensor) {
        CPUDevice.requireContiguous(a, b, out)
        precondition(a.count == b.count && a.count == out.count, "multiply of mismatched sizes")
        let ap = SendablePointer(a.hostPointer), bp = SendablePointer(b.hostPointer), op = SendablePointer(out.hostPointer)
        pool.parallelFor(count: a.count) { range in
            for i in range { op.pointer[i] = ap.pointer[i] * bp.pointer[i] }
        }
    }

    public func biasActivation(_ x: Tensor, bias: Tensor?, activation: Activation, into out: Tensor) {
        let (rows, cols, ldx) = CPUDevice.matrix(x)
        let (_, _, ldo) = CPUDevice.matrix(out)
        precondition(out.shape == x.shape, "biasActivation output shape \(out.shape) differs from \(x.shape)")
        if let bias { precondition(bias.count == cols && bias.isContiguous, "bias has \(bias.count) elements, need \(cols)") }
        let xs = x.hostPointer, os = out.hostPointer
        let zeros = bias == nil ? [Float](repeating: 0, count: cols) : []
        zeros.withUnsafeBufferPointer { zeroBuffer in
            let b = bias?.hostPointer ?? UnsafeMutablePointer(mutating: zeroBuffer.baseAddress!)
            for r in 0..<rows {
                let xr = xs + r * ldx, orow = os + r * ldo
                switch activation {
                case .identity:
                    for j in 0..<cols { orow[j] = xr[j] + b[j] }
                case .relu:
                    // 8 lanes at a time, as max(z, 0) is: 0 where z <= 0 (so -0 gives +0), NaN kept.
                    var j = 0
                    while j + 8 <= cols {
                        let z = SIMD8<Float>.load(xr + j) + SIMD8<Float>.load(b + j)
                        z.replacing(with: 0, where: z .<= 0).store(to: orow + j)
                        j += 8
                    }
                    while j < cols {
                        orow[j] = max(xr[j] + b[j], 0)
                        j += 1
                    }
                case .tanh:
                    for j in 0..<cols { orow[j] = tanhf(xr[j] + b[j]) }
                case .sigmoid:
                    for j in 0..<cols { orow[j] = CPUDevice.sigmoid(xr[j] + b[j]) }
                case .gelu:
                    for j in 0..<cols {
                        let z = xr[j] + b[j]
                        orow[j] = 0.5 * z * (1 + tanhf(geluC * (z + geluK * z * z * z)))
                    }
                }
            }
        }
    }

    public func activationBackward(_ activation: Activation, input: Tensor, output: Tensor, gradOutput: Tensor, into gradInput: Tensor) {
        CPUDevice.requireContiguous(input, output, gradOutput, gradInput)
        let n = gradOutput.count
        precondition(gradInput.count == n && output.count == n && input.count == n, "activationBackward size mismatch")
        let z = input.hostPointer, y = output.hostPointer, dy = gradOutput.hostPointer, dx = gradInput.hostPointer
        switch activation {
        case .identity:
            if dx != dy { dx.update(from: dy, count: n) }
        case .relu:
            // Explicit vectors with a select: the plain loop compiles to a branch per element,
            // which a ReLU's mask mispredicts about half the time (3× slower on a training step).
            typealias Vector = SIMD8<Float>
            var i = 0
            while i + Vector.scalarCount <= n {
                let passed = Vector(repeating: 0).replacing(with: Vector.load(dy + i), where: Vector.load(y + i) .> 0)
                passed.store(to: dx + i)
                i += Vector.scalarCount
            }
            while i < n {
                dx[i] = y[i] > 0 ? dy[i] : 0
                i += 1
            }
        case .tanh:
            for i in 0..<n { dx[i] = dy[i] * (1 - y[i] * y[i]) }
        case .sigmoid:
            for i in 0..<n { dx[i] = dy[i] * y[i] * (1 - y[i]) }
        case .gelu:
            for i in 0..<n {
                let v = z[i]
                let t = tanhf(geluC * (v + geluK * v * v * v))
                let derivative = 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * geluC * (1 + 3 * geluK * v * v)
                dx[i] = dy[i] * derivative
            }
        }
    }

    @inline(__always)
    static func sigmoid(_ z: Float) -> Float {
        // Split by sign so exp never overflows.
        if z >= 0 { return 1 / (1 + expf(-z)) }
        let e = expf(z)
        return e / (1 + e)
    }
}
