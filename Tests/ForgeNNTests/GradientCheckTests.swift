// Every layer's and loss's analytic gradients against central finite differences.
//
// Tolerance: the forward pass runs in float32, so a central difference with step h carries a
// rounding error near ε·|L|/h ≈ 6e-8·|L|/1e-2 ≈ 1e-5 for the losses here (|L| < 5), plus a
// truncation error O(h²·L''') ≈ 1e-4 for these smooth functions. We accept
// |analytic − numeric| ≤ 2e-3 · max(1, |numeric|), two orders above both.
import ForgeNN
import ForgeRandom
import ForgeTensor
import Testing

private let cpu = CPUDevice(threadCount: 1)

func randomValues(_ count: Int, seed: UInt64, scale: Float = 1) -> [Float] {
    var random = RandomStream(seed: seed)
    return (0..<count).map { _ in (2 * random.nextUnit() - 1) * scale }
}

/// Checks dL/dinput and dL/dparameters of `layers` (as a model) under `loss`.
/// `checkInput` false skips the input gradient (token ids have none); `parameterScale` redraws
/// every parameter uniformly in ±scale, so layers initialised near zero are checked away from it.
func checkGradients(layers: [any Layer], loss: any Loss, inputs: [Float], targets: [Float], rows: Int,
                    context: ForwardContext = ForwardContext(training: true, step: 3, firstSample: 5, seed: 11),
                    checkInput: Bool = true, parameterScale: Float? = nil) {
    let model = Sequential(layers, maxBatch: rows, seed: 1, device: cpu)
    if let parameterScale {
        let values = randomValues(model.parameters.count, seed: 99, scale: parameterScale)
        values.withUnsafeBufferPointer { cpu.copy(from: $0, to: model.parameters.values) }
    }
    let width = model.inputWidth
    let x = Tensor(inputs, shape: [rows, width], on: cpu)
    let y = Tensor(targets, shape: [rows], on: cpu)
    let scale = 1 / Float(rows)

    func lossValue() -> Double {
        let out = model.forward(x, context: context)
        return loss.evaluate(output: out, targets: y, gradient: nil, gradScale: 1) * Double(scale)
    }
    // Analytic gradients, input gradient included (walk the layers by hand).
    let out = model.forward(x, context: context)
    let gradOut = Tensor(zeros: out.shape, on: cpu)
    _ = loss.evaluate(output: out, targets: y, gradient: gradOut, gradScale: scale)
    var g = gradOut
    for layer in model.layers.reversed() { g = layer.backward(g, needInputGradient: true) ?? g }
    let inputGradient = g.toArray()
    let parameterGradient = model.parameters.gradients.toArray()

    let h: Float = 1e-2
    func numeric(_ pointer: UnsafeMutablePointer<Float>) -> Double {
        let saved = pointer.pointee
        pointer.pointee = saved + h
        let plus = lossValue()
        pointer.pointee = saved - h
        let minus = lossValue()
        pointer.pointee = saved
        return (plus - minus) / Double(2 * h)
    }
    for i in 0..<(checkInput ? x.count : 0) {
        let n = numeric(x.hostPointer + i)
        #expect(abs(Double(inputGradient[i]) - n) <= 2e-3 * max(1, abs(n)), "input \(i): analytic \(inputGradient[i]) numeric \(n)")
    }
    for p in model.parameters.parameters {
        for i in 0..<p.value.count {
            let n = numeric(p.value.hostPointer + i)
            let a = Double(parameterGradient[p.offset + i])
            #expect(abs(a - n) <= 2e-3 * max(1, abs(n)), "\(p.name)[\(i)]: analytic \(a) numeric \(n)")
        }
    }
}

@Suite struct GradientCheckTests {
    let rows = 4

    @Test(arguments: Activation.allCases)
    func linearWithFusedActivation(activation: Activation) {
        checkGradients(layers: [Linear(5, 3, activation: activation), Linear(3, 1)], loss: MeanSquaredError(),
                       inputs: randomValues(rows * 5, seed: 1), targets: randomValues(rows, seed: 2),
                       rows: rows)
    }

    @Test(arguments: [Activation.relu, .gelu, .tanh, .sigmoid])
    func standaloneActivation(activation: Activation) {
        checkGradients(layers: [ActivationLayer(activation, width: 6), Linear(6, 3)], loss: SoftmaxCrossEntropy(),
                       inputs: randomValues(rows * 6, seed: 3, scale: 2), targets: [0, 2, 1, 2], rows: rows)
    }

    @Test func dropoutWithAFixedMask() {
        checkGradients(layers: [Dropout(rate: 0.3, width: 8), Linear(8, 3)], loss: SoftmaxCrossEntropy(),
                       inputs: randomValues(rows * 8, seed: 4), targets: [1, 0, 2, 2], rows: rows)
    }

    @Test func layerNorm() {
        checkGradients(layers: [LayerNorm(width: 6), Linear(6, 3, activation: .tanh), Linear(3, 3)], loss: SoftmaxCrossEntropy(),
                       inputs: randomValues(rows * 6, seed: 5, scale: 2), targets: [2, 1, 0, 1], rows: rows)
    }

    @Test func softmaxCrossEntropyLoss() {
        checkGradients(layers: [Linear(4, 5)], loss: SoftmaxCrossEntropy(),
                       inputs: randomValues(rows * 4, seed: 6), targets: [4, 0, 3, 1], rows: rows)
    }

    @Test func binaryLogisticLoss() {
        checkGradients(layers: [Linear(4, 1)], loss: BinaryLogistic(),
                       inputs: randomValues(rows * 4, seed: 7, scale: 3), targets: [1, 0, 0, 1], rows: rows)
    }

    @Test func squaredErrorLoss() {
        checkGradients(layers: [Linear(4, 1, activation: .sigmoid)], loss: MeanSquaredError(),
                       inputs: randomValues(rows * 4, seed: 8), targets: [0.3, -0.5, 1.2, 0], rows: rows)
    }

    @Test func dropoutIsTheIdentityAtInference() {
        let model = Sequential([Dropout(rate: 0.5, width: 4)], maxBatch: 2, seed: 1, device: cpu)
        let x = Tensor([1, 2, 3, 4, 5, 6, 7, 8], shape: [2, 4], on: cpu)
        #expect(model.forward(x, context: ForwardContext(training: false)).toArray() == x.toArray())
        let trained = model.forward(x, context: ForwardContext(training: true, step: 1, seed: 2)).toArray()
        #expect(trained != x.toArray())
        #expect(trained.allSatisfy { $0 == 0 || [2, 4, 6, 8, 10, 12, 14, 16].contains($0) })
    }
}
