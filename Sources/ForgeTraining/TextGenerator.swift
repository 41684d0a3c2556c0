// Sampling text from a trained `transformer-lm`, one byte at a time.
import ForgeNN
import ForgeRandom
import ForgeTensor
import Foundation

/// Continues a prompt with bytes drawn from a trained language model.
///
/// Each new byte runs the model over the last `context_length` bytes (no key/value cache: the
/// models here are small, and this keeps one code path for training and sampling) and draws
/// from the last position's softmax at `temperature` (0 takes the most likely byte).
///
/// Concurrency: not Sendable; it owns the network's tensors.
public final class TextGenerator {
    public let model: TrainedModel
    private let network: Sequential
    private let device: any Device
    private let contextLength: Int
    private let input: Tensor

    public init(model: TrainedModel, device: any Device, path: String) throws(TrainingError) {
        guard let transformer = model.description.model.transformer else {
            throw .badModel(path: path, reason: "it is a \(model.description.algorithm.rawValue) model; forge generate needs a transformer-lm model")
        }
        self.model = model
        self.device = device
        contextLength = transformer.contextLength
        network = try model.network(maxBatch: transformer.contextLength, device: device, path: path)
        input = Tensor(zeros: [transformer.contextLength, 1], on: device)
    }

    /// `length` bytes following `prompt` (an empty prompt starts from a newline).
    public func continuation(of prompt: [UInt8], length: Int, temperature: Float = 0.8, seed: UInt64 = 0) -> [UInt8] {
        var text = prompt.isEmpty ? [UInt8(ascii: "\n")] : prompt
        let random = CounterRandom(seed: seed)
        var generated = [UInt8]()
        generated.reserveCapacity(length)
        for index in 0..<length {
            let window = text.suffix(contextLength)
            let rows = window.count
            let tokens = window.map { Float($0) }
            let x = input.rows(0..<rows)
            tokens.withUnsafeBufferPointer { device.copy(from: $0, to: x) }
            let logits = network.forward(x, context: ForwardContext(training: false, sequenceLength: rows)).rows((rows - 1)..<rows).toArray()
            let byte = TextGenerator.draw(logits, temperature: temperature, uniform: random.unit(UInt64(index)))
            generated.append(byte)
            text.append(byte)
        }
        return generated
    }

    /// A byte from `logits` at `temperature`, by inverting the cumulative distribution at `uniform`.
    static func draw(_ logits: [Float], temperature: Float, uniform: Float) -> UInt8 {
        guard temperature > 0 else {
            return UInt8(logits.indices.max { logits[$0] < logits[$1] } ?? 0)
        }
        let peak = logits.max() ?? 0
        let weights = logits.map { Double(expf(($0 - peak) / temperature)) }
        let total = weights.reduce(0, +)
        var threshold = Double(uniform) * total
        for (index, weight) in weights.enumerated() {
            threshold -= weight
            if threshold < 0 { return UInt8(index) }
        }
        return UInt8(weights.count - 1)
    }
}
