// The architecture of a built-in model as data: what model.json records and what both
// training and prediction build the network from.
import ForgeNN
import ForgeTensor

/// One layer of a built-in model.
public struct LayerSpec: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable {
        case linear, dropout
    }

    public var kind: Kind
    public var inputs: Int
    public var outputs: Int
    /// Fused activation of a linear layer.
    public var activation: ActivationName?
    /// Drop probability of a dropout layer.
    public var rate: Float?

    public static func linear(_ inputs: Int, _ outputs: Int, _ activation: ActivationName) -> LayerSpec {
        LayerSpec(kind: .linear, inputs: inputs, outputs: outputs, activation: activation, rate: nil)
    }

    public static func dropout(_ width: Int, rate: Float) -> LayerSpec {
        LayerSpec(kind: .dropout, inputs: width, outputs: width, activation: nil, rate: rate)
    }
}

/// A built-in model's layers and the loss it trains with.
public struct ModelSpec: Codable, Sendable, Equatable {
    public var predictorType: PredictorType
    public var inputWidth: Int
    /// Classes of a classifier (2 for binary); 1 for a regressor.
    public var numClasses: Int
    public var layers: [LayerSpec]

    /// The network `plan` asks for on data of `inputWidth` features and `numClasses` classes.
    public init(plan: TrainingPlan, inputWidth: Int, numClasses: Int) {
        predictorType = plan.predictorType
        self.inputWidth = inputWidth
        self.numClasses = numClasses
        var layers = [LayerSpec]()
        var width = inputWidth
        for hidden in plan.hiddenLayers {
            layers.append(.linear(width, hidden, plan.activation))
            if plan.dropout > 0 { layers.append(.dropout(hidden, rate: plan.dropout)) }
            width = hidden
        }
        layers.append(.linear(width, outputWidth(predictorType: plan.predictorType, numClasses: numClasses), .identity))
        self.layers = layers
    }

    /// The network with fresh parameters drawn from `seed`, buffers for `maxBatch` rows.
    public func build(maxBatch: Int, seed: UInt64, device: any Device) -> Sequential {
        Sequential(makeLayers(), maxBatch: maxBatch, seed: seed, device: device)
    }

    /// Fresh layer objects for this architecture (not yet bound to parameters).
    public func makeLayers() -> [any Layer] {
        var salt: UInt64 = 0
        return layers.map { spec -> any Layer in
            switch spec.kind {
            case .linear:
                return Linear(spec.inputs, spec.outputs, activation: (spec.activation ?? .identity).activation)
            case .dropout:
                salt += 1
                return Dropout(rate: spec.rate ?? 0, width: spec.inputs, salt: salt)
            }
        }
    }

    /// The loss matching the predictor type.
    public var loss: any Loss {
        switch predictorType {
        case .multiclassClassifier: SoftmaxCrossEntropy()
        case .binaryClassifier: BinaryLogistic()
        case .regressor: MeanSquaredError()
        }
    }

    /// Checks that the layer chain is consistent (used on specs read from files).
    public var isConsistent: Bool {
        guard let first = layers.first, first.inputs == inputWidth, inputWidth > 0 else { return false }
        guard zip(layers, layers.dropFirst()).allSatisfy({ $0.outputs == $1.inputs }) else { return false }
        guard layers.allSatisfy({ $0.inputs > 0 && $0.outputs > 0 && ($0.kind != .dropout || ($0.rate ?? -1) >= 0 && ($0.rate ?? 1) < 1) })
        else { return false }
        return layers.last?.outputs == outputWidth(predictorType: predictorType, numClasses: numClasses)
    }
}

private func outputWidth(predictorType: PredictorType, numClasses: Int) -> Int {
    predictorType == .multiclassClassifier ? numClasses : 1
}
