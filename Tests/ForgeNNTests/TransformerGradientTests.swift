// The transformer's layers against central finite differences (the tolerance is argued at the
// top of GradientCheckTests.swift), and the causal mask's promise.
import ForgeNN
import ForgeTensor
import Testing

private let cpu = CPUDevice(threadCount: 1)

@Suite struct TransformerGradientTests {
    /// Two sequences of three tokens, shorter than the context of four (as when generating).
    let context = ForwardContext(training: true, step: 2, firstSample: 6, seed: 5, sequenceLength: 3)

    @Test func transformerBlock() {
        let block = TransformerBlock(width: 8, heads: 2, hiddenWidth: 12, contextLength: 4, dropout: 0.2, layers: 1, salt: 3)
        checkGradients(layers: [block, Linear(8, 3)], loss: SoftmaxCrossEntropy(),
                       inputs: randomValues(6 * 8, seed: 21), targets: [0, 2, 1, 1, 0, 2], rows: 6,
                       context: context, parameterScale: 0.5)
    }

    @Test(arguments: [false, true])
    func languageModel(tied: Bool) {
        let embedding = Embedding(vocabulary: 5, width: 8, contextLength: 4)
        let layers: [any Layer] = [
            embedding, Dropout(rate: 0.1, width: 8, salt: 1),
            TransformerBlock(width: 8, heads: 2, hiddenWidth: 16, contextLength: 4, dropout: 0.1, layers: 2, salt: 2),
            TransformerBlock(width: 8, heads: 4, hiddenWidth: 16, contextLength: 4, dropout: 0.1, layers: 2, salt: 4),
            OutputHead(width: 8, vocabulary: 5, tiedTo: tied ? embedding : nil),
        ]
        checkGradients(layers: layers, loss: SoftmaxCrossEntropy(), inputs: [1, 4, 0, 2, 2, 3], targets: [4, 0, 2, 3, 3, 1],
                       rows: 6, context: context, checkInput: false, parameterScale: 0.5)
    }

    @Test func laterTokensDoNotChangeEarlierOutputs() {
        let layers: [any Layer] = [
            Embedding(vocabulary: 7, width: 8, contextLength: 5),
            TransformerBlock(width: 8, heads: 2, hiddenWidth: 16, contextLength: 5, dropout: 0, layers: 1, salt: 2),
            OutputHead(width: 8, vocabulary: 7),
        ]
        let model = Sequential(layers, maxBatch: 5, seed: 3, device: cpu)
        let values = randomValues(model.parameters.count, seed: 8, scale: 0.5)
        values.withUnsafeBufferPointer { cpu.copy(from: $0, to: model.parameters.values) }
        let context = ForwardContext(training: false, sequenceLength: 5)
        let first = model.forward(Tensor([1, 2, 3, 4, 5], shape: [5, 1], on: cpu), context: context).toArray()
        let second = model.forward(Tensor([1, 2, 3, 6, 0], shape: [5, 1], on: cpu), context: context).toArray()
        #expect(Array(first[0..<21]) == Array(second[0..<21]), "rows 0–2 see only tokens 0–2")
        #expect(Array(first[21...]) != Array(second[21...]))
    }
}
