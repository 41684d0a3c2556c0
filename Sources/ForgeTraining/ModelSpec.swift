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
    /// A language model's shape (then `layers` is empty, the input is one token id per row and
    /// the classes are the 256 byte values).
    public var transformer: TransformerHyperparameters?

    /// The network `plan` asks for on data of `inputWidth` features and `numClasses` classes.
    public init(plan: TrainingPlan, inputWidth: Int, numClasses: Int) {
        predictorType = plan.predictorType
        if let transformer = plan.transformer {
            self.inputWidth = 1
            self.numClasses = 256
            layers = []
            self.transformer = transformer
            return
        }
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

    /// Fresh layer objects for this architecture (not yet bound to parameters); a transformer's
    /// blocks hold their part of the heads and MLP units of `tensorGroup`.
    ///
    /// `separateTiedHead`: a tied head gets a table of its own instead of reading the
    /// embedding's (pipeline stages put the two on different ranks, which keep the copies
    /// equal); its parameter is drawn after every other, so the rest draw what they always do.
    public func makeLayers(tensorGroup: (any TensorParallelGroup)? = nil, separateTiedHead: Bool = false) -> [any Layer] {
        if let t = transformer {
            // Layer i of every layout: embedding, its dropout, the blocks, the head. Dropout
            // salts are fixed per layer, so masks do not depend on how layers are split.
            let embedding = Embedding(vocabulary: 256, width: t.width, contextLength: t.contextLength)
            var layers: [any Layer] = [embedding, Dropout(rate: t.dropout, width: t.width, salt: 1)]
            for block in 0..<t.layers {
                layers.append(TransformerBlock(width: t.width, heads: t.heads, hiddenWidth: 4 * t.width, contextLength: t.contextLength,
                                               dropout: t.dropout, layers: t.layers, salt: UInt64(2 + 2 * block), group: tensorGroup))
            }
            layers.append(OutputHead(width: t.width, vocabulary: 256, tiedTo: t.tieEmbeddings && !separateTiedHead ? embedding : nil))
            return layers
        }
        var salt: UInt64 = 0
        // Under tensor parallelism the linear layers pair up, Megatron-style: the first of a
        // pair column-split (each rank its share of the hidden units, and of the dropout after
        // them), the second row-split (one all-reduce of its outputs); an unpaired last layer
        // stays whole.
        let linears = layers.indices.filter { layers[$0].kind == .linear }
        var splitAfter: (group: any TensorParallelGroup, index: Int)?
        return layers.enumerated().map { index, spec -> any Layer in
            switch spec.kind {
            case .linear:
                let position = linears.firstIndex(of: index) ?? 0
                var split = LinearSplit.none
                splitAfter = nil
                if let tensorGroup, tensorGroup.size > 1 {
                    if position % 2 == 0, position + 1 < linears.count {
                        split = .column(tensorGroup)
                        splitAfter = (tensorGroup, index)
                    } else if position % 2 == 1 {
                        split = .row(tensorGroup)
                    }
                }
                return Linear(spec.inputs, spec.outputs, activation: (spec.activation ?? .identity).activation, split: split)
            case .dropout:
                salt += 1
                if let (group, _) = splitAfter {
                    let width = spec.inputs / group.size
                    return Dropout(rate: spec.rate ?? 0, width: width, salt: salt, firstColumn: group.rank * width)
                }
                return Dropout(rate: spec.rate ?? 0, width: spec.inputs, salt: salt)
            }
        }
    }

    /// Rows per sample: a language model's sample is a sequence of tokens.
    public var sequenceLength: Int { transformer?.contextLength ?? 1 }

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
        if let t = transformer {
            return layers.isEmpty && inputWidth == 1 && numClasses == 256 && predictorType == .multiclassClassifier
                && t.layers >= 1 && t.layers <= 1024 && t.heads >= 1 && t.width >= 1 && t.width <= 65536 && t.width % t.heads == 0
                && t.contextLength >= 1 && t.contextLength <= 65536 && t.dropout >= 0 && t.dropout < 1
        }
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
