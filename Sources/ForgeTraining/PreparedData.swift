// Training data checked against the task and scaled: labels suit the predictor type, widths
// agree, features standardised with the training set's statistics.
import ForgeCollectives
import ForgeData

/// The train and validation sets as the trainer consumes them.
public struct PreparedData: Sendable {
    public var train: Dataset
    public var validation: Dataset?
    public var numClasses: Int
    public var featureScaling: FeatureScaling?
    public var labelScaling: LabelScaling
    /// Records of the train channel on all ranks together: `train.count` for one process or a
    /// replicated channel; the sum of every rank's share when the channel is sharded.
    public var totalTrainCount: Int
    /// Whether each rank holds only its own part of the train channel (ShardedByS3Key).
    public var trainIsSharded: Bool

    /// Checks labels and widths and applies the scalings `plan` asks for.
    /// With `shardedAcross`, `train` is this rank's share of the channel: class counts, scaling
    /// statistics and the record count are reduced over the group, so every rank prepares its
    /// share exactly as one process would prepare the whole.
    public init(plan: TrainingPlan, train: Dataset, validation: Dataset?, shardedAcross group: ProcessGroup? = nil) throws(TrainingError) {
        guard train.count > 0 else { throw .emptyChannel("train") }
        func sumAcrossRanks(_ values: inout [Double]) throws(TrainingError) {
            guard let group else { return }
            var floats = values.map { Float($0) }
            try PreparedData.allReduce(&floats, op: .sum, group: group)
            values = floats.map { Double($0) }
        }
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
            var seen = max(train.labels.max() ?? 0, validation?.labels.max() ?? 0)
            if let group {
                var largest = [seen]
                try PreparedData.allReduce(&largest, op: .max, group: group)
                seen = largest[0]
            }
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
            let scaling = try FeatureScaling(fitting: train.features, width: train.width, sumAcrossRanks: sumAcrossRanks)
            scaling.apply(to: &train.features)
            if var v = validation {
                scaling.apply(to: &v.features)
                validation = v
            }
            featureScaling = scaling
        } else {
            featureScaling = nil
        }
        labelScaling = plan.normalizeLabel ? try LabelScaling(fitting: train.labels, sumAcrossRanks: sumAcrossRanks) : .identity
        if plan.normalizeLabel {
            train.labels = train.labels.map(labelScaling.forward)
            if var v = validation {
                v.labels = v.labels.map(labelScaling.forward)
                validation = v
            }
        }
        self.train = train
        self.validation = validation
        trainIsSharded = group != nil
        // Counts travel as two exact floats (below 2^24 each).
        var count = [Double(train.count >> 20), Double(train.count & 0xFFFFF)]
        try sumAcrossRanks(&count)
        totalTrainCount = Int(count[0]) << 20 + Int(count[1])
    }

    private static func allReduce(_ values: inout [Float], op: ReduceOp, group: ProcessGroup) throws(TrainingError) {
        do {
            try values.withUnsafeMutableBufferPointer { try group.allReduce($0, op: op) }
        } catch let error as CollectiveError {
            throw .group(error)
        } catch {
            throw .collective("\(error)")
        }
    }

    private static func checkLabels(_ data: Dataset, channel: String, below limit: Int, what: String) throws(TrainingError) {
        for (index, label) in data.labels.enumerated() {
            guard label >= 0, label < Float(limit), label.rounded() == label else {
                throw .badLabel(channel: channel, record: index, value: label, expected: what)
            }
        }
    }
}
