// Tests of PreparedData: labels are checked against the predictor type (with the record that
// is wrong), widths must agree, and scaling is learned from the training set alone.
import ForgeData
import ForgeTraining
import Testing

@Suite struct PreparedDataTests {
    private func plan(_ algorithm: AlgorithmKind = .mlp, _ values: [String: String] = [:]) throws -> TrainingPlan {
        try TrainingPlan.make(algorithm: algorithm, hyperparameters: values)
    }

    private func data(_ labels: [Float], width: Int = 1) -> Dataset {
        Dataset(features: (0..<labels.count * width).map(Float.init), labels: labels, width: width)
    }

    private func failure(_ plan: TrainingPlan, _ train: Dataset, _ validation: Dataset? = nil) -> TrainingError? {
        do {
            _ = try PreparedData(plan: plan, train: train, validation: validation)
            return nil
        } catch {
            return error
        }
    }

    @Test func multiclassLabelsMustBeClassIndices() throws {
        let mlp = try plan()
        #expect(failure(mlp, data([0, 2.5, 1])) == .badLabel(channel: "train", record: 1, value: 2.5,
                                                            expected: "a non-negative integer class index"))
        #expect(failure(mlp, data([0, 1, 2, -1])) == .badLabel(channel: "train", record: 3, value: -1,
                                                               expected: "a non-negative integer class index"))
        guard case .badLabel(channel: "validation", record: 1, let value, _)? = failure(mlp, data([0, 1]), data([1, .nan])) else {
            Issue.record("a NaN validation label was accepted")
            return
        }
        #expect(value.isNaN)
        let three = try plan(.mlp, ["num_classes": "3"])
        #expect(failure(three, data([0, 1, 2]), data([2, 0, 3])) == .badLabel(channel: "validation", record: 2, value: 3,
                                                                              expected: "a class index 0...2 (num_classes=3)"))
        let description = try #require(failure(three, data([0, 1, 2]), data([2, 0, 3]))?.description)
        #expect(description.contains("validation channel, record 3"))
    }

    @Test func binaryLabelsMustBeZeroOrOne() throws {
        let binary = try plan(.linearLearner, ["predictor_type": "binary_classifier"])
        #expect(failure(binary, data([0, 1, 2, 1])) == .badLabel(channel: "train", record: 2, value: 2,
                                                                expected: "0 or 1 (binary_classifier)"))
        #expect(failure(binary, data([0, 1]), data([1, 0.5])) == .badLabel(channel: "validation", record: 1, value: 0.5,
                                                                          expected: "0 or 1 (binary_classifier)"))
        let prepared = try PreparedData(plan: binary, train: data([0, 1, 1]), validation: nil)
        #expect(prepared.numClasses == 2)
    }

    @Test func regressionLabelsMustBeFinite() throws {
        let regressor = try plan(.linearLearner, ["predictor_type": "regressor"])
        #expect(failure(regressor, data([1.5, .infinity])) == .badLabel(channel: "train", record: 1, value: .infinity,
                                                                       expected: "a finite number"))
    }

    @Test func classCountComesFromLabelsUnlessNamed() throws {
        #expect(try PreparedData(plan: plan(), train: data([0, 4, 1]), validation: nil).numClasses == 5)
        #expect(try PreparedData(plan: plan(), train: data([0, 1]), validation: data([6])).numClasses == 7)
        #expect(try PreparedData(plan: plan(), train: data([0, 0]), validation: nil).numClasses == 2)
        #expect(try PreparedData(plan: plan(.mlp, ["num_classes": "9"]), train: data([0, 1]), validation: nil).numClasses == 9)
    }

    @Test func widthsAndEmptyChannels() throws {
        let mlp = try plan()
        #expect(failure(mlp, data([0, 1], width: 3), data([0], width: 2)) == .widthMismatch(channel: "validation", expected: 3, found: 2))
        #expect(failure(mlp, Dataset(width: 3)) == .emptyChannel("train"))
        #expect(failure(mlp, data([0, 1], width: 3), Dataset(width: 3)) == .emptyChannel("validation"))
    }

    @Test func scalingIsFittedOnTrainAndAppliedToValidation() throws {
        // Column 0: 0 and 4 (mean 2, sd 2); column 1 is constant 10 (scale stays 1).
        let train = Dataset(features: [0, 10, 4, 10], labels: [0, 1], width: 2)
        let validation = Dataset(features: [6, 12, -2, 10], labels: [1, 0], width: 2)
        let prepared = try PreparedData(plan: plan(), train: train, validation: validation)
        #expect(prepared.featureScaling == FeatureScaling(offset: [2, 10], scale: [0.5, 1]))
        #expect(prepared.train.features == [-1, 0, 1, 0])
        #expect(prepared.validation?.features == [2, 2, -2, 0])
        #expect(prepared.validation?.labels == [1, 0])

        let raw = try PreparedData(plan: plan(.mlp, ["normalize_data": "false"]), train: train, validation: validation)
        #expect(raw.featureScaling == nil)
        #expect(raw.train.features == train.features)
        #expect(raw.validation?.features == validation.features)
    }

    @Test func regressionLabelsAreStandardisedWithTrainStatistics() throws {
        let regressor = try plan(.linearLearner, ["predictor_type": "regressor"])
        let prepared = try PreparedData(plan: regressor, train: data([1, 3]), validation: data([5]))
        #expect(prepared.labelScaling == LabelScaling(offset: 2, scale: 1))
        #expect(prepared.train.labels == [-1, 1])
        #expect(prepared.validation?.labels == [3])
        #expect(prepared.labelScaling.inverse(3) == 5)

        let unscaled = try PreparedData(plan: plan(.linearLearner, ["predictor_type": "regressor", "normalize_label": "false"]),
                                        train: data([1, 3]), validation: nil)
        #expect(unscaled.labelScaling == .identity)
        #expect(unscaled.train.labels == [1, 3])
    }
}
