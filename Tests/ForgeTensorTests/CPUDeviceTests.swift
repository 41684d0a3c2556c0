// CPU kernels against plain Float64 references.
import ForgeTensor
import Testing

private let cpu = CPUDevice(threadCount: 2)

/// Deterministic pseudo-random values in [-1, 1).
func sampleValues(_ count: Int, seed: UInt64) -> [Float] {
    var state = seed
    return (0..<count).map { _ in
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return Float(state >> 40) / Float(1 << 23) - 1
    }
}

func referenceGEMM(_ a: [Float], _ b: [Float], m: Int, n: Int, k: Int, transposeA: Bool, transposeB: Bool) -> [Double] {
    var c = [Double](repeating: 0, count: m * n)
    for i in 0..<m {
        for j in 0..<n {
            var s = 0.0
            for p in 0..<k {
                let av = transposeA ? a[p * m + i] : a[i * k + p]
                let bv = transposeB ? b[j * k + p] : b[p * n + j]
                s += Double(av) * Double(bv)
            }
            c[i * n + j] = s
        }
    }
    return c
}

@Suite struct CPUDeviceTests {
    @Test(arguments: [(false, false), (true, false), (false, true), (true, true)])
    func gemmAllTransposes(transposeA: Bool, transposeB: Bool) {
        let m = 7, n = 5, k = 9
        let a = sampleValues(m * k, seed: 1), b = sampleValues(k * n, seed: 2)
        let ta = Tensor(a, shape: transposeA ? [k, m] : [m, k], on: cpu)
        let tb = Tensor(b, shape: transposeB ? [n, k] : [k, n], on: cpu)
        let c = Tensor(sampleValues(m * n, seed: 3), shape: [m, n], on: cpu)
        let before = c.toArray()
        cpu.gemm(ta, transposeA: transposeA, tb, transposeB: transposeB, into: c, alpha: 2, beta: 0.5)
        let expected = referenceGEMM(a, b, m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB)
        for (i, value) in c.toArray().enumerated() {
            #expect(abs(Double(value) - (2 * expected[i] + 0.5 * Double(before[i]))) < 1e-4)
        }
    }

    @Test func gemmOnTransposedViewsAndRowSlices() {
        let a = Tensor(sampleValues(6 * 4, seed: 4), shape: [6, 4], on: cpu)
        let b = Tensor(sampleValues(6 * 3, seed: 5), shape: [6, 3], on: cpu)
        let c = Tensor(zeros: [4, 3], on: cpu)
        // aᵀ·b through a transposed view equals the transposeA flag.
        cpu.gemm(a.transposed, transposeA: false, b, transposeB: false, into: c, alpha: 1, beta: 0)
        let expected = referenceGEMM(a.toArray(), b.toArray(), m: 4, n: 3, k: 6, transposeA: true, transposeB: false)
        for (x, y) in zip(c.toArray(), expected) { #expect(abs(Double(x) - y) < 1e-5) }
        let top = Tensor(zeros: [2, 3], on: cpu)
        cpu.gemm(a.rows(0..<2), transposeA: false, b.rows(0..<4), transposeB: false, into: top, alpha: 1, beta: 0)
        let expectedTop = referenceGEMM(Array(a.toArray()[0..<8]), Array(b.toArray()[0..<12]), m: 2, n: 3, k: 4, transposeA: false, transposeB: false)
        for (x, y) in zip(top.toArray(), expectedTop) { #expect(abs(Double(x) - y) < 1e-5) }
    }

    @Test(arguments: Activation.allCases)
    func biasActivationAndBackwardMatchReference(activation: Activation) {
        let rows = 3, cols = 4
        let xv = sampleValues(rows * cols, seed: 6).map { $0 * 3 }, bv = sampleValues(cols, seed: 7)
        let x = Tensor(xv, shape: [rows, cols], on: cpu), bias = Tensor(bv, shape: [cols], on: cpu)
        let y = Tensor(zeros: [rows, cols], on: cpu)
        cpu.biasActivation(x, bias: bias, activation: activation, into: y)
        let z = (0..<rows * cols).map { Double(xv[$0]) + Double(bv[$0 % cols]) }
        func f(_ v: Double) -> Double {
            switch activation {
            case .identity: return v
            case .relu: return max(v, 0)
            case .tanh: return Foundation_tanh(v)
            case .sigmoid: return 1 / (1 + Foundation_exp(-v))
            case .gelu: return 0.5 * v * (1 + Foundation_tanh(0.7978845608 * (v + 0.044715 * v * v * v)))
            }
        }
        for (i, value) in y.toArray().enumerated() { #expect(abs(Double(value) - f(z[i])) < 1e-5) }
        // Backward against a central difference of the float64 reference.
        let dy = Tensor(sampleValues(rows * cols, seed: 8), shape: [rows, cols], on: cpu)
        let pre = Tensor(z.map(Float.init), shape: [rows, cols], on: cpu)
        let dx = Tensor(zeros: [rows, cols], on: cpu)
        cpu.activationBackward(activation, input: pre, output: y, gradOutput: dy, into: dx)
        let dyv = dy.toArray()
        for (i, value) in dx.toArray().enumerated() where activation != .relu || abs(z[i]) > 1e-3 {
            let h = 1e-6
            let derivative = (f(z[i] + h) - f(z[i] - h)) / (2 * h)
            #expect(abs(Double(value) - Double(dyv[i]) * derivative) < 1e-4, "\(activation) at \(z[i])")
        }
    }

    @Test func reluForwardAndBackwardMatchTheScalarRuleBitForBitInVectorsAndTails() {
        // 21 columns: two 8-lane vectors and a tail of 5 per row; -0, +0, NaN, infinities and
        // values on either side of zero at every other element, which over the odd row length
        // reaches every column; a bias that moves some values across zero. The backward also
        // runs in place (its output over its incoming gradient), as layers call it.
        let rows = 3, cols = 21
        let special: [Float] = [-0.0, 0, .nan, .infinity, -.infinity, 1e-30, -1e-30]
        let xv = (0..<rows * cols).map { i in i % 2 == 0 ? special[(i / 2) % special.count] : sampleValues(1, seed: UInt64(i))[0] * 3 }
        let bv = (0..<cols).map { $0 % 4 == 1 ? Float(0.25) : 0 }
        let x = Tensor(xv, shape: [rows, cols], on: cpu), bias = Tensor(bv, shape: [cols], on: cpu)
        let y = Tensor(zeros: [rows, cols], on: cpu)
        cpu.biasActivation(x, bias: bias, activation: .relu, into: y)
        let forward = y.toArray()
        for i in 0..<rows * cols {
            #expect(forward[i].bitPattern == max(xv[i] + bv[i % cols], 0).bitPattern, "relu(\(xv[i]) + \(bv[i % cols])) at \(i)")
        }
        let dyv = (0..<rows * cols).map { Float($0) - 30.5 }
        let dx = Tensor(zeros: [rows, cols], on: cpu)
        cpu.activationBackward(.relu, input: x, output: y, gradOutput: Tensor(dyv, shape: [rows, cols], on: cpu), into: dx)
        let inPlace = Tensor(dyv, shape: [rows, cols], on: cpu)
        cpu.activationBackward(.relu, input: x, output: y, gradOutput: inPlace, into: inPlace)
        for (name, result) in [("separate", dx.toArray()), ("in place", inPlace.toArray())] {
            for i in 0..<rows * cols {
                #expect(result[i].bitPattern == (forward[i] > 0 ? dyv[i] : 0).bitPattern, "relu' \(name) at \(xv[i]), element \(i)")
            }
        }
    }

    @Test func softmaxCrossEntropyValueAndGradient() {
        let logits = Tensor([1, 2, 3, 0, 0, 0], shape: [2, 3], on: cpu)
        let labels = Tensor([2, 0], shape: [2], on: cpu)
        let grad = Tensor(zeros: [2, 3], on: cpu)
        let loss = cpu.softmaxCrossEntropy(logits: logits, labels: labels, gradient: grad, gradScale: 0.5)
        let lse = Foundation_log(Foundation_exp(1.0) + Foundation_exp(2.0) + Foundation_exp(3.0))
        #expect(abs(loss - ((lse - 3) + Foundation_log(3.0))) < 1e-5)
        let g = grad.toArray()
        #expect(abs(Double(g[2]) - 0.5 * (Foundation_exp(3.0) / Foundation_exp(lse) - 1)) < 1e-6)
        #expect(abs(Double(g[3]) - 0.5 * (1.0 / 3 - 1)) < 1e-6)
        #expect(cpu.argmaxRows(logits) == [2, 0])
    }

    @Test func sumRowsAndSumOfSquares() {
        let x = Tensor([1, 2, 3, 4, 5, 6], shape: [3, 2], on: cpu)
        let out = Tensor([10, 10], shape: [2], on: cpu)
        cpu.sumRows(x, into: out, beta: 1)
        #expect(out.toArray() == [19, 22])
        #expect(cpu.sumOfSquares(x) == 91)
    }

    @Test func adamMatchesTheTextbookUpdate() {
        let n = 100_000  // large enough to split across the pool
        let p0 = sampleValues(n, seed: 9), g = sampleValues(n, seed: 10)
        let p = Tensor(p0, shape: [n], on: cpu), grad = Tensor(g, shape: [n], on: cpu)
        let m = Tensor(zeros: [n], on: cpu), v = Tensor(zeros: [n], on: cpu)
        for step in 1...2 {
            cpu.adamStep(parameters: p, gradients: grad, firstMoment: m, secondMoment: v,
                         AdamParameters(learningRate: 0.01, weightDecay: 0.1, decoupledWeightDecay: true, step: step))
        }
        let result = p.toArray()
        for i in stride(from: 0, to: n, by: 997) {
            var w = Double(p0[i]), mi = 0.0, vi = 0.0
            for step in 1...2 {
                let gi = Double(g[i])
                mi = 0.9 * mi + 0.1 * gi
                vi = 0.999 * vi + 0.001 * gi * gi
                let mhat = mi / (1 - Foundation_pow(0.9, Double(step))), vhat = vi / (1 - Foundation_pow(0.999, Double(step)))
                w = w * (1 - 0.01 * 0.1) - 0.01 * mhat / (vhat.squareRoot() + 1e-8)
            }
            #expect(abs(Double(result[i]) - w) < 1e-5)
        }
    }

    @Test func sgdWithMomentumAndWeightDecay() {
        let p = Tensor([1, -2], shape: [2], on: cpu), g = Tensor([0.5, 0.5], shape: [2], on: cpu)
        let velocity = Tensor(zeros: [2], on: cpu)
        let options = SGDParameters(learningRate: 0.1, momentum: 0.9, weightDecay: 0.01)
        cpu.sgdStep(parameters: p, gradients: g, velocity: velocity, options)
        cpu.sgdStep(parameters: p, gradients: g, velocity: velocity, options)
        var w = 1.0, vel = 0.0
        for _ in 0..<2 { let gi = 0.5 + 0.01 * w; vel = 0.9 * vel + gi; w -= 0.1 * vel }
        #expect(abs(Double(p.toArray()[0]) - w) < 1e-6)
    }

    @Test func dropoutMaskIsKeyedByRowAndStep() {
        let a = Tensor(zeros: [4, 64], on: cpu), b = Tensor(zeros: [2, 64], on: cpu)
        cpu.dropoutMask(a, rate: 0.5, seed: 1, step: 3, firstRow: 0)
        cpu.dropoutMask(b, rate: 0.5, seed: 1, step: 3, firstRow: 2)
        #expect(Array(a.toArray()[128...]) == b.toArray())
        #expect(Set(a.toArray()) == [0, 2])
        let c = Tensor(zeros: [4, 64], on: cpu)
        cpu.dropoutMask(c, rate: 0.5, seed: 1, step: 4, firstRow: 0)
        #expect(c.toArray() != a.toArray())
    }

    @Test func layerNormNormalisesRows() {
        let x = Tensor([1, 2, 3, 4, 10, 10, 10, 14], shape: [2, 4], on: cpu)
        let out = Tensor(zeros: [2, 4], on: cpu)
        let gamma = Tensor([1, 1, 1, 1], shape: [4], on: cpu), beta = Tensor(zeros: [4], on: cpu)
        let mean = Tensor(zeros: [2], on: cpu), rstd = Tensor(zeros: [2], on: cpu)
        cpu.layerNorm(x, gamma: gamma, beta: beta, epsilon: 0, into: out, mean: mean, inverseStd: rstd)
        let o = out.toArray()
        #expect(abs(o[0..<4].reduce(0, +)) < 1e-5)
        let variance: Float = o[0..<4].map { $0 * $0 }.reduce(0, +) / 4
        #expect(abs(variance - 1) < 1e-5)
        #expect(mean.toArray() == [2.5, 11])
    }

    @Test func stridedCopyTransposes() {
        let x = Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3], on: cpu)
        #expect(x.transposed.contiguousCopy().toArray() == [1, 4, 2, 5, 3, 6])
    }
}
