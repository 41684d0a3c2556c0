// A validated training configuration: built once from the string hyperparameters of a job,
// it cannot hold an invalid value afterwards.
import ForgeTensor
import Foundation

/// The built-in algorithms.
public enum AlgorithmKind: String, CaseIterable, Sendable, Codable {
    case mlp
    case linearLearner = "linear-learner"
}

/// What the model predicts (Linear Learner's names).
public enum PredictorType: String, CaseIterable, Sendable, Codable {
    case binaryClassifier = "binary_classifier"
    case multiclassClassifier = "multiclass_classifier"
    case regressor

    public var isClassifier: Bool { self != .regressor }
}

/// Optimizers a job can ask for.
public enum OptimizerKind: String, CaseIterable, Sendable, Codable {
    case sgd, adam, adamw
}

/// Activation names as hyperparameter values.
public enum ActivationName: String, CaseIterable, Sendable, Codable {
    case relu, gelu, tanh, sigmoid, identity

    public var activation: Activation {
        switch self {
        case .relu: .relu
        case .gelu: .gelu
        case .tanh: .tanh
        case .sigmoid: .sigmoid
        case .identity: .identity
        }
    }
}

/// Everything a training run needs to know, validated.
public struct TrainingPlan: Sendable, Equatable {
    public var algorithm: AlgorithmKind
    public var predictorType: PredictorType
    /// Number of classes if the job named it; otherwise taken from the labels.
    public var numClasses: Int?
    /// Hidden layer widths (empty for linear-learner).
    public var hiddenLayers: [Int]
    public var activation: ActivationName
    public var dropout: Float
    /// The global batch, in samples.
    public var miniBatchSize: Int
    public var epochs: Int
    public var learningRate: Float
    public var optimizer: OptimizerKind
    public var weightDecay: Float
    public var momentum: Float
    public var beta1: Float
    public var beta2: Float
    public var seed: UInt64
    /// Epochs without validation-loss improvement before stopping; 0 turns early stopping off.
    public var earlyStoppingPatience: Int
    /// Relative improvement that counts as one.
    public var earlyStoppingTolerance: Double
    /// Standardise features with the training set's mean and standard deviation.
    public var normalizeData: Bool
    /// Standardise regression targets (predictions are mapped back).
    public var normalizeLabel: Bool
    /// Write a checkpoint every this many steps (0: only at the end of each epoch).
    public var checkpointSteps: Int
    /// Every hyperparameter with its default filled in, as strings (goes into model.json).
    public var resolved: [String: String]
    /// ZeRO stage of data-parallel training: 0 replicates the optimizer state on every rank, 1
    /// shards it across the ranks (`ZeroRedundancyOptimizer`). With one process, 1 is 0.
    public var zeroStage: Int = 0

    /// Keys the platform adds that are not the algorithm's (tuning objective, SDK bookkeeping).
    static let ignoredPrefixes = ["_", "sagemaker_"]

    /// Validates `hyperparameters` for `algorithm`, reporting every problem at once.
    public static func make(algorithm: AlgorithmKind, hyperparameters: [String: String]) throws(HyperparameterError) -> TrainingPlan {
        var r = HyperparameterReader(hyperparameters)
        let isMLP = algorithm == .mlp
        let predictor = r.choice("predictor_type", default: isMLP ? PredictorType.multiclassClassifier : nil,
                                 aliases: ["classifier": .multiclassClassifier, "binary": .binaryClassifier,
                                           "multiclass": .multiclassClassifier, "regression": .regressor])
        if predictor == nil, r.values["predictor_type"] == nil {
            r.report(.missing(key: "predictor_type", why: "linear-learner needs binary_classifier, multiclass_classifier or regressor"))
        }
        let numClasses = r.int("num_classes", default: nil, in: 2...1_000_000)
        if predictor == .binaryClassifier, let numClasses, numClasses != 2 {
            r.report(.conflict(key: "num_classes", reason: "a binary_classifier has 2 classes, not \(numClasses)"))
        }
        let hidden = isMLP ? r.intList("hidden_layer_sizes", default: [100], in: 1...1_000_000) : []
        let activation = isMLP ? r.choice("activation", default: ActivationName.relu) : .identity
        let dropout = isMLP ? r.float("dropout", default: 0, in: 0...0.99) : 0
        let batch = r.int("mini_batch_size", default: isMLP ? 200 : 1000, in: 1...10_000_000)
        let epochs = r.int("epochs", default: isMLP ? 200 : 15, in: 1...1_000_000)
        let learningRate = r.float("learning_rate", default: isMLP ? 0.001 : 0.01, in: 0...10, openLower: true)
        let optimizer = r.choice("optimizer", default: OptimizerKind.adam, aliases: ["auto": .adam])
        let weightDecay = r.float("wd", default: isMLP ? 0.001 : 0, in: 0...10)
        let momentum = r.float("momentum", default: optimizer == .sgd ? 0.9 : 0, in: 0...0.9999)
        let beta1 = r.float("beta_1", default: 0.9, in: 0...0.9999)
        let beta2 = r.float("beta_2", default: 0.999, in: 0...0.999999)
        let seed = r.int("seed", default: 0, in: 0...Int(Int32.max))
        let patience = r.int("early_stopping_patience", default: isMLP ? 0 : 3, in: 0...1_000_000)
        let tolerance = r.float("early_stopping_tolerance", default: 0.001, in: 0...1)
        let normalizeData = r.bool("normalize_data", default: true)
        let normalizeLabel = r.bool("normalize_label", default: predictor == .regressor)
        let checkpointSteps = r.int("forge_checkpoint_steps", default: 0, in: 0...Int(Int32.max))
        // The scheduler's (elastic resume); checked here too so a job file and forge train
        // accept the same names.
        _ = r.int("forge_min_instance_count", default: 1, in: 1...4096)
        let zeroStage = r.int("forge_zero_stage", default: 0, in: 0...1)
        if normalizeLabel, let predictor, predictor.isClassifier, hyperparameters["normalize_label"] != nil {
            r.report(.conflict(key: "normalize_label", reason: "only a regressor's labels can be normalised"))
        }
        let known = Set(r.consumed)
        r.rejectUnknown(known: known, ignoredPrefixes: ignoredPrefixes)
        guard r.problems.isEmpty, let predictor, let batch, let epochs, let learningRate, let optimizer, let weightDecay,
              let momentum, let beta1, let beta2, let seed, let patience, let tolerance, let checkpointSteps,
              let activation, let dropout, let zeroStage else {
            throw HyperparameterError(algorithm: algorithm.rawValue, problems: r.problems)
        }
        var resolved = r.resolved
        // Where the job may run is not part of the model (a checkpoint resumes under any).
        resolved["forge_min_instance_count"] = nil
        // Nor is how the optimizer state is laid out across ranks: the checkpoint holds it whole.
        resolved["forge_zero_stage"] = nil
        resolved["normalize_label"] = String(normalizeLabel && !predictor.isClassifier)
        return TrainingPlan(algorithm: algorithm, predictorType: predictor, numClasses: numClasses, hiddenLayers: hidden,
                            activation: activation, dropout: Float(dropout), miniBatchSize: batch, epochs: epochs,
                            learningRate: Float(learningRate), optimizer: optimizer, weightDecay: Float(weightDecay),
                            momentum: Float(momentum), beta1: Float(beta1), beta2: Float(beta2), seed: UInt64(seed),
                            earlyStoppingPatience: patience, earlyStoppingTolerance: tolerance, normalizeData: normalizeData,
                            normalizeLabel: normalizeLabel && !predictor.isClassifier, checkpointSteps: checkpointSteps,
                            resolved: resolved, zeroStage: zeroStage)
    }

    /// The final validation metric's name for this algorithm and predictor (SageMaker's names).
    public var validationMetricName: String {
        switch (algorithm, predictorType) {
        case (.mlp, .regressor), (.linearLearner, .regressor): "validation:mse"
        case (.mlp, _): "validation:accuracy"
        case (.linearLearner, .binaryClassifier): "validation:binary_classification_accuracy"
        case (.linearLearner, .multiclassClassifier): "validation:multiclass_accuracy"
        }
    }
}
