// Optimizer updates on the CPU over flat buffers: one pass reads the parameters, gradients and
// state once and writes them once. Large buffers are split across the compute pool.
import CFloatEnv
import Foundation

extension CPUDevice {
    public func adamStep(parameters: Tensor, gradients: Tensor, firstMoment: Tensor, secondMoment: Tensor, _ o: AdamParameters) {
        CPUDevice.requireContiguous(parameters, gradients, firstMoment, secondMoment)
        let n = parameters.count
        precondition(gradients.count == n && firstMoment.count == n && secondMoment.count == n, "adam buffers differ in size")
        precondition(o.step >= 1, "adam step is 1-based")
        let t = Float(o.step)
        let correction1 = 1 - powf(o.beta1, t), correction2 = 1 - powf(o.beta2, t)
        let stepSize = o.learningRate / correction1
        let inverseRootCorrection2 = 1 / correction2.squareRoot()
        let b1 = o.beta1, b2 = o.beta2, eps = o.epsilon
        let l2 = o.decoupledWeightDecay ? 0 : o.weightDecay
        let shrink = o.decoupledWeightDecay ? 1 - o.learningRate * o.weightDecay : 1
        let p = SendablePointer(parameters.hostPointer), g = SendablePointer(gradients.hostPointer)
        let m = SendablePointer(firstMoment.hostPointer), v = SendablePointer(secondMoment.hostPointer)
        pool.parallelFor(count: n) { range in
            let ps = p.pointer, gs = g.pointer, ms = m.pointer, vs = v.pointer
            // Explicit 8-wide vectors with a vector square root: Swift's scalar sqrt goes through
            // libm with errno, which blocks vectorisation and costs Adam about 4×.
            typealias Vector = SIMD8<Float>
            var i = range.lowerBound
            while i + Vector.scalarCount <= range.upperBound {
                let grad = Vector.load(gs + i) + l2 * Vector.load(ps + i)
                let mi = b1 * Vector.load(ms + i) + (1 - b1) * grad
                let vi = b2 * Vector.load(vs + i) + (1 - b2) * grad * grad
                let pi = Vector.load(ps + i) * shrink - stepSize * mi / (forge_sqrt8(vi) * inverseRootCorrection2 + eps)
                mi.store(to: ms + i)
                vi.store(to: vs + i)
                pi.store(to: ps + i)
                i += Vector.scalarCount
            }
            while i < range.upperBound {
                let grad = gs[i] + l2 * ps[i]
                let mi = b1 * ms[i] + (1 - b1) * grad
                let vi = b2 * vs[i] + (1 - b2) * grad * grad
                ms[i] = mi
                vs[i] = vi
                ps[i] = ps[i] * shrink - stepSize * mi / (vi.squareRoot() * inverseRootCorrection2 + eps)
                i += 1
            }
        }
    }

    public func sgdStep(parameters: Tensor, gradients: Tensor, velocity: Tensor?, _ o: SGDParameters) {
        CPUDevice.requireContiguous(parameters, gradients)
        let n = parameters.count
        precondition(gradients.count == n, "sgd buffers differ in size")
        let p = SendablePointer(parameters.hostPointer), g = SendablePointer(gradients.hostPointer)
        let lr = o.learningRate, wd = o.weightDecay, mu = o.momentum, nesterov = o.nesterov
        guard let velocity, mu != 0 else {
            pool.parallelFor(count: n) { range in
                for i in range { p.pointer[i] -= lr * (g.pointer[i] + wd * p.pointer[i]) }
            }
            return
        }
        precondition(velocity.count == n && velocity.isContiguous, "sgd velocity size")
        let v = SendablePointer(velocity.hostPointer)
        pool.parallelFor(count: n) { range in
            let ps = p.pointer, gs = g.pointer, vs = v.pointer
            for i in range {
                let grad = gs[i] + wd * ps[i]
                let vi = mu * vs[i] + grad
                vs[i] = vi
                ps[i] -= lr * (nesterov ? grad + mu * vi : vi)
            }
        }
    }
}

extension SIMD8<Float> {
    /// Loads eight floats from `pointer` (any alignment).
    @inline(__always)
    static func load(_ pointer: UnsafeMutablePointer<Float>) -> Self {
        UnsafeRawPointer(pointer).loadUnaligned(as: Self.self)
    }

    /// Stores eight floats at `pointer` (any alignment).
    @inline(__always)
    func store(to pointer: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(pointer).storeBytes(of: self, as: Self.self)
    }
}
