// Training data checked against the task and scaled: labels suit the predictor type, widths
// agree, features standardised with the training set's statistics.
import ForgeData

/// The train and validation sets as the trainer consumes them.
public struct PreparedData: Sendable {
    public var train: Dataset
    public var validation: Dataset?
    public var numClasses: Int
    public var featureScaling: FeatureScaling?
    public var labelScaling: LabelScaling

    /// Checks labels and widths and applies the scalings `plan` asks for.
    public init(plan: TrainingPlan, train: Dataset, validation: Dataset?) throws(TrainingError) {
        guard train.count > 0 else { throw .emptyChannel("train") }
        if let validation {
            guard validation.count > 0 else { throw .emptyChannel("validation") }
            guard validation.width == train.width else {
                throw .widthMismatch(channel: "validation", expected: train.width, found: validation.width)
            }
        }
        var classes = 1
        switch plan.predictorType {
        case .binaryClassifier:
            try PreparedData.checkLabels(train, channel: "train", below: 2, what: "0 or 1 (binary_classifier)")
            if let validation { try PreparedData.checkLabels(validation, channel: "validation", below: 2, what: "0 or 1 (binary_classifier)") }
            classes = 2
        case .multiclassClassifier:
            let limit = plan.numClasses ?? 1_000_000
            let what = plan.numClasses.map { "a class index 0...\($0 - 1) (num_classes=\($0))" } ?? "a non-negative integer class index"
            try PreparedData.checkLabels(train, channel: "train", below: limit, what: what)
            if let validation { try PreparedData.checkLabels(validation, channel: "validation", below: limit, what: what) }
            let seen = max(train.labels.max() ?? 0, validation?.labels.max() ?? 0)
            classes = plan.numClasses ?? max(2, Int(seen) + 1)
        case .regressor:
            for (name, data) in [("train", train), ("validation", validation)] {
                for (index, label) in (data?.labels ?? []).enumerated() where !label.isFinite {
                    throw .badLabel(channel: name, record: index, value: label, expected: "a finite number")
                }
            }
        }
        numClasses = classes
        var train = train
        var validation = validation
        if plan.normalizeData {
            let scaling = FeatureScaling(fitting: train.features, width: train.width)
            scaling.apply(to: &train.features)
            if var v = validation {
                scaling.apply(to: &v.features)
                validation = v
            }
            featureScaling = scaling
        } else {
            featureScaling = nil
        }
        labelScaling = plan.normalizeLabel ? LabelScaling(fitting: train.labels) : .identity
        if plan.normalizeLabel {
            train.labels = train.labels.map(labelScaling.forward)
            if var v = validation {
                v.labels = v.labels.map(labelScaling.forward)
                validation = v
            }
        }
        self.train = train
        self.validation = validation
    }

    private static func checkLabels(_ data: Dataset, channel: String, below limit: Int, what: String) throws(TrainingError) {
        for (index, label) in data.labels.enumerated() {
            guard label >= 0, label < Float(limit), label.rounded() == label else {
                throw .badLabel(channel: channel, record: index, value: label, expected: what)
            }
        }
    }
}
