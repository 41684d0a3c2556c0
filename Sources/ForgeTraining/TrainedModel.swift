// A trained built-in model as values, and its artifact: `model.tar.gz` holding
// `model.safetensors` (the weights, PyTorch's names and layouts) and `model.json` (what the
// model is and how to feed it).
import ForgeArchive
import ForgeNN
import ForgeTensor
import Foundation

/// What `model.json` holds.
public struct ModelDescription: Codable, Sendable, Equatable {
    public var formatVersion: Int
    public var algorithm: AlgorithmKind
    public var predictorType: PredictorType
    public var hyperparameters: [String: String]
    public var inputWidth: Int
    /// Class labels in output order (classifiers); empty for regressors.
    public var classes: [Int]
    public var model: ModelSpec
    public var featureScaling: FeatureScaling?
    public var labelScaling: LabelScaling

    enum CodingKeys: String, CodingKey {
        case formatVersion = "format_version", algorithm, predictorType = "predictor_type", hyperparameters
        case inputWidth = "input_width", classes, model, featureScaling = "feature_scaling", labelScaling = "label_scaling"
    }
}

/// A trained model: description plus weights.
public struct TrainedModel: Sendable {
    public var description: ModelDescription
    public var parameters: [(name: String, shape: [Int], values: [Float])]

    public init(plan: TrainingPlan, spec: ModelSpec, parameters: [(name: String, shape: [Int], values: [Float])],
                featureScaling: FeatureScaling?, labelScaling: LabelScaling) {
        description = ModelDescription(formatVersion: 1, algorithm: plan.algorithm, predictorType: plan.predictorType,
                                       hyperparameters: plan.resolved, inputWidth: spec.inputWidth,
                                       classes: plan.predictorType.isClassifier ? Array(0..<spec.numClasses) : [],
                                       model: spec, featureScaling: featureScaling, labelScaling: labelScaling)
        self.parameters = parameters
    }

    init(description: ModelDescription, parameters: [(name: String, shape: [Int], values: [Float])]) {
        self.description = description
        self.parameters = parameters
    }

    /// The gzipped tar archive `model.tar.gz`.
    public func archive() throws(TrainingError) -> [UInt8] {
        do {
            let weights = try SafetensorsFile(
                tensors: parameters.map { SafeTensor(name: $0.name, shape: $0.shape, floats: $0.values) },
                metadata: ["format": "pt", "algorithm": description.algorithm.rawValue]
            ).encoded()
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            let json = try encoder.encode(description)
            return try TarArchive.writeGzipped([.file("model.safetensors", bytes: weights), .file("model.json", bytes: [UInt8](json))])
        } catch let error as ArchiveError {
            throw .io(path: "model.tar.gz", reason: error.description)
        } catch {
            throw .io(path: "model.tar.gz", reason: "cannot encode model.json: \(error)")
        }
    }

    /// Reads a `model.tar.gz` written by `archive()`; `path` is for messages.
    public init(archive bytes: [UInt8], path: String) throws(TrainingError) {
        let entries: [TarEntry]
        do {
            entries = try TarArchive.readGzipped(bytes)
        } catch {
            throw .badModel(path: path, reason: "\(error) (is it a model.tar.gz written by forge train?)")
        }
        guard let json = entries.first(where: { $0.name == "model.json" })?.bytes else {
            throw .badModel(path: path, reason: "model.json is missing from the archive")
        }
        guard let weights = entries.first(where: { $0.name == "model.safetensors" })?.bytes else {
            throw .badModel(path: path, reason: "model.safetensors is missing from the archive")
        }
        let description: ModelDescription
        do {
            description = try JSONDecoder().decode(ModelDescription.self, from: Data(json))
        } catch {
            throw .badModel(path: path, reason: "model.json is malformed: \(error)")
        }
        guard description.formatVersion == 1 else { throw .badModel(path: path, reason: "unknown format_version \(description.formatVersion)") }
        guard description.model.isConsistent, description.model.inputWidth == description.inputWidth else {
            throw .badModel(path: path, reason: "model.json describes an inconsistent network")
        }
        // Prediction indexes `classes` by output column: a short list would crash it.
        guard description.model.predictorType == description.predictorType,
              !description.predictorType.isClassifier || description.classes.count == description.model.numClasses else {
            throw .badModel(path: path, reason: "model.json's predictor_type or classes do not match its network")
        }
        if let scaling = description.featureScaling, scaling.offset.count != description.inputWidth || scaling.scale.count != description.inputWidth {
            throw .badModel(path: path, reason: "feature scaling has the wrong width")
        }
        let file: SafetensorsFile
        do {
            file = try SafetensorsFile(decoding: weights)
        } catch {
            throw .badModel(path: path, reason: "model.safetensors: \(error)")
        }
        var parameters = [(name: String, shape: [Int], values: [Float])]()
        for tensor in file.tensors {
            guard let floats = tensor.floats else { throw .badModel(path: path, reason: "tensor \(tensor.name) is not float32") }
            parameters.append((tensor.name, tensor.shape, floats))
        }
        // Check the sizes before the network is allocated, so a forged model.json cannot ask
        // for more memory than its weights justify.
        let declared = Sequential.parameterSpecs(of: description.model.makeLayers()).reduce(0) { $0 + $1.spec.shape.reduce(1, *) }
        let stored = file.tensors.reduce(0) { $0 + ($1.elementCount ?? 0) }
        guard declared == stored else {
            throw .badModel(path: path, reason: "model.json declares \(declared) parameters, model.safetensors holds \(stored)")
        }
        self.init(description: description, parameters: parameters)
    }

    /// The network with these weights, ready for batches of up to `maxBatch` rows.
    public func network(maxBatch: Int, device: any Device, path: String) throws(TrainingError) -> Sequential {
        let network = description.model.build(maxBatch: maxBatch, seed: 0, device: device)
        var named = [String: (shape: [Int], values: [Float])]()
        for parameter in parameters { named[parameter.name] = (parameter.shape, parameter.values) }
        do {
            try network.parameters.load(named)
        } catch {
            throw .badModel(path: path, reason: error.description)
        }
        return network
    }
}
