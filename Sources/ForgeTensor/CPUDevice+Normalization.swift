// Layer norm and dropout masks on the CPU.
import ForgeRandom

extension CPUDevice {
    public func layerNorm(_ x: Tensor, gamma: Tensor, beta: Tensor, epsilon: Float, into out: Tensor, mean: Tensor, inverseStd: Tensor) {
        let (rows, cols, ldx) = CPUDevice.matrix(x)
        let (_, _, ldo) = CPUDevice.matrix(out)
        precondition(gamma.count == cols && beta.count == cols && mean.count >= rows && inverseStd.count >= rows, "layerNorm shapes")
        let g = gamma.hostPointer, b = beta.hostPointer, mu = mean.hostPointer, rs = inverseStd.hostPointer
        for r in 0..<rows {
            let xr = x.hostPointer + r * ldx, orow = out.hostPointer + r * ldo
            var sum: Float = 0
            for j in 0..<cols { sum += xr[j] }
            let m = sum / Float(cols)
            var sq: Float = 0
            for j in 0..<cols { let d = xr[j] - m; sq += d * d }
            let inv = 1 / (sq / Float(cols) + epsilon).squareRoot()
            mu[r] = m
            rs[r] = inv
            for j in 0..<cols { orow[j] = (xr[j] - m) * inv * g[j] + b[j] }
        }
    }

    public func layerNormBackward(_ x: Tensor, gamma: Tensor, mean: Tensor, inverseStd: Tensor, gradOutput: Tensor,
                                  gradInput: Tensor, gradGamma: Tensor, gradBeta: Tensor) {
        let (rows, cols, ldx) = CPUDevice.matrix(x)
        let (_, _, ldg) = CPUDevice.matrix(gradOutput)
        let (_, _, ldd) = CPUDevice.matrix(gradInput)
        let g = gamma.hostPointer, mu = mean.hostPointer, rs = inverseStd.hostPointer
        let dg = gradGamma.hostPointer, db = gradBeta.hostPointer
        let n = Float(cols)
        for r in 0..<rows {
            let xr = x.hostPointer + r * ldx, dy = gradOutput.hostPointer + r * ldg, dx = gradInput.hostPointer + r * ldd
            let m = mu[r], inv = rs[r]
            // With x̂ = (x − μ)/σ and u = dy ⊙ gamma: dx = (u − mean(u) − x̂ · mean(u ⊙ x̂)) / σ.
            var sumU: Float = 0, sumUX: Float = 0
            for j in 0..<cols {
                let xhat = (xr[j] - m) * inv
                let u = dy[j] * g[j]
                sumU += u
                sumUX += u * xhat
                dg[j] += dy[j] * xhat
                db[j] += dy[j]
            }
            let meanU = sumU / n, meanUX = sumUX / n
            for j in 0..<cols {
                let xhat = (xr[j] - m) * inv
                dx[j] = (dy[j] * g[j] - meanU - xhat * meanUX) * inv
            }
        }
    }

    public func dropoutMask(_ mask: Tensor, rate: Float, seed: UInt64, step: UInt64, firstRow: Int, firstColumn: Int) {
        let (rows, cols, ld) = CPUDevice.matrix(mask)
        let random = CounterRandom(seed: seed)
        let keep = 1 - rate
        let scale = keep > 0 ? 1 / keep : 0
        for r in 0..<rows {
            let row = mask.hostPointer + r * ld
            let sample = UInt64(firstRow + r)
            for j in 0..<cols {
                row[j] = random.unit(step, sample, UInt64(firstColumn + j)) < keep ? scale : 0
            }
        }
    }
}
