// A validated training configuration: built once from the string hyperparameters of a job,
// it cannot hold an invalid value afterwards.
import ForgeCollectives
import ForgeTensor
import Foundation

/// The built-in algorithms.
public enum AlgorithmKind: String, CaseIterable, Sendable, Codable {
    case mlp
    case linearLearner = "linear-learner"
    case transformerLM = "transformer-lm"
}

/// How the learning rate moves over a run (after any warm-up).
public enum LearningRateSchedule: String, CaseIterable, Sendable, Codable {
    case constant, cosine
}

/// The shape of `transformer-lm`: a byte-level decoder-only transformer.
public struct TransformerHyperparameters: Sendable, Equatable, Codable {
    public var layers: Int
    public var heads: Int
    public var width: Int
    public var contextLength: Int
    public var dropout: Float
    public var tieEmbeddings: Bool
}

/// How a job's ranks split the work (CONVENTIONS.md): pipeline stages × tensor-parallel ranks,
/// and the data-parallel degree is whatever of the world size remains.
public struct ParallelLayoutPlan: Sendable, Equatable {
    public var pipelineDegree: Int = 1
    public var tensorDegree: Int = 1
    /// Micro-batches per step under pipeline parallelism (default: the pipeline degree).
    public var microBatches: Int?
    public var schedule: PipelineScheduleKind = .oneForwardOneBackward
    /// Layers per stage as "0-3,4-7", or nil to balance parameter counts.
    public var stageMap: String?
    /// ZeRO stage: 0 replicates the optimizer state on every data-parallel replica, 1 shards it.
    public var zeroStage = 0
    /// Whether the job chose the stage (`forge_zero_stage`); if not, the trainer may shard the
    /// update where that costs nothing (`Trainer`).
    public var zeroStageChosen = false

    public init() {}

    /// The data-parallel degree for `worldSize` ranks, or a description of why the layout does
    /// not fit it.
    public func dataParallelDegree(worldSize: Int) -> Result<Int, HyperparameterError> {
        do {
            return .success(try ParallelLayout(worldSize: worldSize, pipelineDegree: pipelineDegree, tensorDegree: tensorDegree).dataDegree)
        } catch {
            return .failure(HyperparameterError(algorithm: "layout", problems: [.conflict(
                key: "forge_pipeline_degree", reason: "\(error)")]))
        }
    }
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
    /// The transformer's shape (`transformer-lm` only).
    public var transformer: TransformerHyperparameters?
    /// Stop after this many optimizer steps (0: run every epoch).
    public var maxSteps: Int = 0
    /// Steps over which the learning rate rises linearly from 0.
    public var warmupSteps: Int = 0
    public var learningRateSchedule: LearningRateSchedule = .constant
    /// Clip the gradient's global L2 norm to this (0: no clipping).
    public var gradientClip: Float = 0
    /// How the ranks split the model (not part of the model: a checkpoint resumes under any).
    public var layout = ParallelLayoutPlan()
    /// Every hyperparameter with its default filled in, as strings (goes into model.json).
    public var resolved: [String: String]
    /// ZeRO stage of data-parallel training: 0 replicates the optimizer state on every rank, 1
    /// shards it across the ranks (`ZeroRedundancyOptimizer`). With one process, 1 is 0.
    public var zeroStage: Int = 0
    /// Whether `forge_zero_stage` was given (else the trainer picks, `Trainer`).
    public var zeroStageChosen = false

    /// Keys the platform adds that are not the algorithm's (tuning objective, SDK bookkeeping).
    static let ignoredPrefixes = ["_", "sagemaker_"]

    /// Validates `hyperparameters` for `algorithm`, reporting every problem at once.
    public static func make(algorithm: AlgorithmKind, hyperparameters: [String: String]) throws(HyperparameterError) -> TrainingPlan {
        var r = HyperparameterReader(hyperparameters)
        if algorithm == .transformerLM { return try makeLanguageModel(hyperparameters) }
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
        // The scheduler's keys (elastic resume, layout); checked here too so a job file and
        // forge train accept the same names.
        let layout = readLayout(&r)
        if layout.tensorDegree > 1 {
            // Megatron pairs: the first layer of each pair splits its outputs across the ranks.
            for (index, width) in hidden.enumerated() where index % 2 == 0 && width % layout.tensorDegree != 0 {
                r.report(.conflict(key: "forge_tensor_degree", reason: "hidden layer \(index + 1) has \(width) units, which do not split over \(layout.tensorDegree) tensor-parallel ranks"))
            }
        }
        if normalizeLabel, let predictor, predictor.isClassifier, hyperparameters["normalize_label"] != nil {
            r.report(.conflict(key: "normalize_label", reason: "only a regressor's labels can be normalised"))
        }
        let known = Set(r.consumed)
        r.rejectUnknown(known: known, ignoredPrefixes: ignoredPrefixes)
        guard r.problems.isEmpty, let predictor, let batch, let epochs, let learningRate, let optimizer, let weightDecay,
              let momentum, let beta1, let beta2, let seed, let patience, let tolerance, let checkpointSteps,
              let activation, let dropout else {
            throw HyperparameterError(algorithm: algorithm.rawValue, problems: r.problems)
        }
        var resolved = r.resolved
        // Where and how the job runs is not part of the model (a checkpoint resumes under any).
        for key in layoutKeys { resolved[key] = nil }
        resolved["normalize_label"] = String(normalizeLabel && !predictor.isClassifier)
        var plan = TrainingPlan(algorithm: algorithm, predictorType: predictor, numClasses: numClasses, hiddenLayers: hidden,
                            activation: activation, dropout: Float(dropout), miniBatchSize: batch, epochs: epochs,
                            learningRate: Float(learningRate), optimizer: optimizer, weightDecay: Float(weightDecay),
                            momentum: Float(momentum), beta1: Float(beta1), beta2: Float(beta2), seed: UInt64(seed),
                            earlyStoppingPatience: patience, earlyStoppingTolerance: tolerance, normalizeData: normalizeData,
                            normalizeLabel: normalizeLabel && !predictor.isClassifier, checkpointSteps: checkpointSteps,
                            resolved: resolved)
        plan.layout = layout
        plan.zeroStage = layout.zeroStage
        plan.zeroStageChosen = layout.zeroStageChosen
        return plan
    }

    /// Platform keys that say where and how a job runs, not what it trains.
    static let layoutKeys = ["forge_min_instance_count", "forge_pipeline_degree", "forge_tensor_degree", "forge_micro_batches",
                             "forge_pipeline_schedule", "forge_stage_map", "forge_zero_stage"]

    /// Reads the parallel layout keys (CONVENTIONS.md), checking each on its own; whether the
    /// degrees fit the world size and the model is checked where both are known.
    private static func readLayout(_ r: inout HyperparameterReader) -> ParallelLayoutPlan {
        var layout = ParallelLayoutPlan()
        _ = r.int("forge_min_instance_count", default: 1, in: 1...4096)
        layout.pipelineDegree = r.int("forge_pipeline_degree", default: 1, in: 1...1024) ?? 1
        layout.tensorDegree = r.int("forge_tensor_degree", default: 1, in: 1...1024) ?? 1
        layout.microBatches = r.int("forge_micro_batches", default: nil, in: 1...1_000_000)
        layout.schedule = r.choice("forge_pipeline_schedule", default: PipelineScheduleKind.oneForwardOneBackward,
                                   aliases: ["pipedream": .oneForwardOneBackward, "1f1b": .oneForwardOneBackward]) ?? .oneForwardOneBackward
        layout.stageMap = r.string("forge_stage_map", default: nil)
        // How the optimizer state is laid out across replicas: a checkpoint holds it whole.
        let zeroStage = r.int("forge_zero_stage", default: nil, in: 0...1)
        layout.zeroStage = zeroStage ?? 0
        layout.zeroStageChosen = zeroStage != nil
        return layout
    }

    /// `transformer-lm`: a byte-level decoder-only transformer trained on next-byte prediction.
    private static func makeLanguageModel(_ hyperparameters: [String: String]) throws(HyperparameterError) -> TrainingPlan {
        var r = HyperparameterReader(hyperparameters)
        let layers = r.int("num_layers", default: 2, in: 1...1024)
        let heads = r.int("num_heads", default: 4, in: 1...1024)
        let width = r.int("d_model", default: 128, in: 1...65536)
        let context = r.int("context_length", default: 64, in: 1...65536)
        let dropout = r.float("dropout", default: 0.1, in: 0...0.99)
        let tie = r.bool("tie_embeddings", default: false)
        let batch = r.int("mini_batch_size", default: 32, in: 1...10_000_000)
        let epochs = r.int("epochs", default: 10, in: 1...1_000_000)
        let maxSteps = r.int("max_steps", default: 0, in: 0...Int(Int32.max))
        let warmup = r.int("warmup_steps", default: 0, in: 0...Int(Int32.max))
        let schedule = r.choice("lr_schedule", default: LearningRateSchedule.constant)
        let clip = r.float("grad_clip", default: 1, in: 0...1_000_000)
        let learningRate = r.float("learning_rate", default: 0.001, in: 0...10, openLower: true)
        let optimizer = r.choice("optimizer", default: OptimizerKind.adamw, aliases: ["auto": .adamw])
        let weightDecay = r.float("wd", default: 0.01, in: 0...10)
        let momentum = r.float("momentum", default: optimizer == .sgd ? 0.9 : 0, in: 0...0.9999)
        let beta1 = r.float("beta_1", default: 0.9, in: 0...0.9999)
        let beta2 = r.float("beta_2", default: 0.99, in: 0...0.999999)
        let seed = r.int("seed", default: 0, in: 0...Int(Int32.max))
        let patience = r.int("early_stopping_patience", default: 0, in: 0...1_000_000)
        let tolerance = r.float("early_stopping_tolerance", default: 0.001, in: 0...1)
        let checkpointSteps = r.int("forge_checkpoint_steps", default: 0, in: 0...Int(Int32.max))
        let layout = readLayout(&r)
        if let width, let heads, width % heads != 0 {
            r.report(.conflict(key: "num_heads", reason: "d_model \(width) is not a multiple of \(heads) heads"))
        }
        if let heads, let width, heads > 0, width % heads == 0, layout.tensorDegree > 1, heads % layout.tensorDegree != 0 {
            r.report(.conflict(key: "forge_tensor_degree", reason: "\(heads) heads do not split over \(layout.tensorDegree) tensor-parallel ranks"))
        }
        if let layers, layout.pipelineDegree > layers + 2 {
            r.report(.conflict(key: "forge_pipeline_degree", reason: "\(layout.pipelineDegree) stages for \(layers + 2) layers (embedding, \(layers) blocks, head)"))
        }
        r.rejectUnknown(known: Set(r.consumed), ignoredPrefixes: ignoredPrefixes)
        guard r.problems.isEmpty, let layers, let heads, let width, let context, let dropout, let batch, let epochs, let maxSteps,
              let warmup, let schedule, let clip, let learningRate, let optimizer, let weightDecay, let momentum, let beta1,
              let beta2, let seed, let patience, let tolerance, let checkpointSteps else {
            throw HyperparameterError(algorithm: AlgorithmKind.transformerLM.rawValue, problems: r.problems)
        }
        var resolved = r.resolved
        for key in layoutKeys { resolved[key] = nil }
        var plan = TrainingPlan(algorithm: .transformerLM, predictorType: .multiclassClassifier, numClasses: 256, hiddenLayers: [],
                                activation: .gelu, dropout: Float(dropout), miniBatchSize: batch, epochs: epochs,
                                learningRate: Float(learningRate), optimizer: optimizer, weightDecay: Float(weightDecay),
                                momentum: Float(momentum), beta1: Float(beta1), beta2: Float(beta2), seed: UInt64(seed),
                                earlyStoppingPatience: patience, earlyStoppingTolerance: tolerance, normalizeData: false,
                                normalizeLabel: false, checkpointSteps: checkpointSteps, resolved: resolved)
        plan.transformer = TransformerHyperparameters(layers: layers, heads: heads, width: width, contextLength: context,
                                                      dropout: Float(dropout), tieEmbeddings: tie)
        plan.maxSteps = maxSteps
        plan.warmupSteps = warmup
        plan.learningRateSchedule = schedule
        plan.gradientClip = Float(clip)
        plan.layout = layout
        plan.zeroStage = layout.zeroStage
        plan.zeroStageChosen = layout.zeroStageChosen
        return plan
    }

    /// The learning rate for optimizer step `step` (0-based) of `totalSteps`: a linear warm-up
    /// over `warmupSteps`, then constant or a cosine decay to zero at `totalSteps`.
    public func learningRate(atStep step: Int, totalSteps: Int) -> Float {
        if warmupSteps > 0, step < warmupSteps {
            return learningRate * Float(step + 1) / Float(warmupSteps)
        }
        switch learningRateSchedule {
        case .constant:
            return learningRate
        case .cosine:
            let span = max(totalSteps - warmupSteps, 1)
            let progress = min(Double(step - warmupSteps) / Double(span), 1)
            return learningRate * Float(0.5 * (1 + cos(Double.pi * progress)))
        }
    }

    /// The final validation metric's name for this algorithm and predictor (SageMaker's names).
    public var validationMetricName: String {
        switch (algorithm, predictorType) {
        case (.mlp, .regressor), (.linearLearner, .regressor): "validation:mse"
        case (.mlp, _): "validation:accuracy"
        case (.linearLearner, .binaryClassifier): "validation:binary_classification_accuracy"
        case (.linearLearner, .multiclassClassifier): "validation:multiclass_accuracy"
        case (.transformerLM, _): "validation:loss"
        }
    }
}
