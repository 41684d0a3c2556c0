// Batch prediction with a trained built-in model.
import ForgeData
import ForgeNN
import ForgeTensor
import Foundation

/// One prediction: the label (classifiers) or value (regressors), and class probabilities.
public struct Prediction: Sendable, Equatable {
    public var label: Float
    /// Probability of each class (classifiers; for binary, [P(0), P(1)]).
    public var probabilities: [Float]
}

/// Runs a trained model over records.
///
/// Concurrency: not Sendable; it owns the network's tensors.
public final class Predictor {
    public let model: TrainedModel
    private let network: Sequential
    private let device: any Device
    private let batch: Int

    public init(model: TrainedModel, device: any Device, path: String, batch: Int = 1024) throws(TrainingError) {
        self.model = model
        self.device = device
        self.batch = batch
        network = try model.network(maxBatch: batch, device: device, path: path)
    }

    /// Predicts every record of `features` (rows × inputWidth, unscaled).
    public func predict(features: [Float], width: Int) throws(TrainingError) -> [Prediction] {
        let description = model.description
        guard width == description.inputWidth else {
            throw .widthMismatch(channel: "input", expected: description.inputWidth, found: width)
        }
        var scaled = features
        description.featureScaling?.apply(to: &scaled)
        let rows = width > 0 ? scaled.count / width : 0
        let input = Tensor(zeros: [batch, width], on: device)
        var predictions = [Prediction]()
        predictions.reserveCapacity(rows)
        var start = 0
        while start < rows {
            let end = min(start + batch, rows)
            let x = input.rows(0..<(end - start))
            scaled.withUnsafeBufferPointer { device.copy(from: UnsafeBufferPointer(rebasing: $0[start * width..<end * width]), to: x) }
            let output = network.forward(x, context: ForwardContext(training: false)).toArray()
            let k = network.outputWidth
            for row in 0..<(end - start) {
                let values = Array(output[row * k..<(row + 1) * k])
                predictions.append(Predictor.interpret(values, description: description))
            }
            start = end
        }
        return predictions
    }

    static func interpret(_ values: [Float], description: ModelDescription) -> Prediction {
        switch description.predictorType {
        case .regressor:
            return Prediction(label: description.labelScaling.inverse(values[0]), probabilities: [])
        case .binaryClassifier:
            let z = values[0]
            let p = z >= 0 ? 1 / (1 + exp(-z)) : exp(z) / (1 + exp(z))
            return Prediction(label: p > 0.5 ? 1 : 0, probabilities: [1 - p, p])
        case .multiclassClassifier:
            let peak = values.max() ?? 0
            let exps = values.map { exp($0 - peak) }
            let total = exps.reduce(0, +)
            let probabilities = exps.map { $0 / total }
            let best = probabilities.indices.max { probabilities[$0] < probabilities[$1] } ?? 0
            return Prediction(label: Float(description.classes[best]), probabilities: probabilities)
        }
    }
}
