// Small end-to-end behaviours of the NN layer: overfitting, initialisers, reproducibility.
import ForgeNN
import ForgeRandom
import ForgeTensor
import Testing

private let cpu = CPUDevice(threadCount: 1)

private func trainSmallMLP(optimizer makeOptimizer: (ParameterBlock) -> any Optimizer, steps: Int, seed: UInt64) -> (loss: Double, weights: [Float]) {
    let rows = 64, width = 10, classes = 4
    let x = Tensor(randomValues(rows * width, seed: 100), shape: [rows, width], on: cpu)
    var random = RandomStream(seed: 101)
    let y = Tensor((0..<rows).map { _ in Float(random.nextInt(below: classes)) }, shape: [rows], on: cpu)
    let model = Sequential([Linear(width, 64, activation: .relu), Linear(64, 64, activation: .tanh), Linear(64, classes)],
                           maxBatch: rows, seed: seed, device: cpu)
    let optimizer = makeOptimizer(model.parameters)
    let grad = Tensor(zeros: [rows, classes], on: cpu)
    var loss = 0.0
    for step in 0..<steps {
        let out = model.forward(x, context: ForwardContext(training: true, step: step, seed: seed))
        loss = SoftmaxCrossEntropy().evaluate(output: out, targets: y, gradient: grad, gradScale: 1 / Float(rows)) / Double(rows)
        model.backward(grad)
        optimizer.step()
    }
    return (loss, model.parameters.values.toArray())
}

@Suite struct TrainingBehaviourTests {
    @Test func adamOverfitsSixtyFourRandomlyLabelledSamples() {
        let result = trainSmallMLP(optimizer: { Adam($0, learningRate: 0.01) }, steps: 400, seed: 1)
        #expect(result.loss < 0.01, "training loss \(result.loss) did not approach zero")
    }

    @Test func sgdWithMomentumOverfitsToo() {
        let result = trainSmallMLP(optimizer: { SGD($0, learningRate: 0.1, momentum: 0.9) }, steps: 600, seed: 2)
        #expect(result.loss < 0.05, "training loss \(result.loss)")
    }

    @Test func adamWDecaysWeights() {
        let plain = trainSmallMLP(optimizer: { Adam($0, learningRate: 0.01) }, steps: 50, seed: 3)
        let decayed = trainSmallMLP(optimizer: { Adam.adamW($0, learningRate: 0.01, weightDecay: 0.5) }, steps: 50, seed: 3)
        let norm = { (w: [Float]) in w.reduce(0) { $0 + $1 * $1 } }
        #expect(norm(decayed.weights) < norm(plain.weights))
    }

    @Test func sameSeedIsBitIdenticalAndAnotherSeedIsNot() {
        let a = trainSmallMLP(optimizer: { Adam($0, learningRate: 0.01) }, steps: 20, seed: 4)
        let b = trainSmallMLP(optimizer: { Adam($0, learningRate: 0.01) }, steps: 20, seed: 4)
        let c = trainSmallMLP(optimizer: { Adam($0, learningRate: 0.01) }, steps: 20, seed: 5)
        #expect(a.weights == b.weights)
        #expect(a.weights != c.weights)
    }

    @Test func initialisersHaveTheirVariance() {
        var random = RandomStream(seed: 9)
        let he = Initializer.heNormal(fanIn: 200).values(count: 50_000, random: &random)
        let heVariance = he.reduce(0) { $0 + Double($1 * $1) } / Double(he.count)
        #expect(abs(heVariance - 2.0 / 200) < 0.0005)
        let xavier = Initializer.xavierUniform(fanIn: 100, fanOut: 50).values(count: 50_000, random: &random)
        let limit = (6.0 / 150).squareRoot()
        #expect(xavier.allSatisfy { abs(Double($0)) <= limit })
        let xavierVariance = xavier.reduce(0) { $0 + Double($1 * $1) } / Double(xavier.count)
        #expect(abs(xavierVariance - 2.0 / 150) < 0.0005)
    }

    @Test func parametersRoundTripThroughNamedValues() throws {
        let a = Sequential([Linear(3, 2), LayerNorm(width: 2)], maxBatch: 1, seed: 1, device: cpu)
        let b = Sequential([Linear(3, 2), LayerNorm(width: 2)], maxBatch: 1, seed: 2, device: cpu)
        #expect(a.parameters.values.toArray() != b.parameters.values.toArray())
        var named = [String: (shape: [Int], values: [Float])]()
        for entry in a.parameters.namedValues() { named[entry.name] = (entry.shape, entry.values) }
        try b.parameters.load(named)
        #expect(a.parameters.values.toArray() == b.parameters.values.toArray())
        named["layers.0.weight"] = ([2, 2], [1, 2, 3, 4])
        #expect(throws: ParameterLoadError.shapeMismatch(name: "layers.0.weight", expected: [2, 3], found: [2, 2])) {
            try b.parameters.load(named)
        }
    }
}
