// Tests of Trainer runs without interruption: seeded reproducibility, the linear learner on
// problems it must solve (with SageMaker's metric names), and early stopping keeping the best
// epoch's parameters.
import ForgeData
import ForgeTensor
import ForgeTraining
import Testing

@Suite struct TrainerTests {
    private func train(_ algorithm: AlgorithmKind, _ values: [String: String], train: Dataset, validation: Dataset?,
                       observer: RecordingObserver = RecordingObserver()) throws -> TrainingResult {
        let plan = try TrainingPlan.make(algorithm: algorithm, hyperparameters: values)
        let data = try PreparedData(plan: plan, train: train, validation: validation)
        return try Trainer(plan: plan, data: data, device: CPUDevice(threadCount: 1)).run(observer: observer)
    }

    private func metric(_ result: TrainingResult, _ name: String) -> Double? {
        result.metrics.first { $0.name == name }?.value
    }

    @Test func sameSeedIsBitIdenticalAndAnotherSeedIsNot() throws {
        let data = SyntheticData.blobs(count: 40, width: 5, classes: 3, seed: 1)
        func run(seed: Int) throws -> TrainingResult {
            try train(.mlp, ["hidden_layer_sizes": "12", "dropout": "0.25", "mini_batch_size": "16", "epochs": "3",
                             "seed": String(seed)], train: data, validation: nil)
        }
        let a = try run(seed: 3), b = try run(seed: 3), c = try run(seed: 4)
        expectBitIdentical(a.model, b.model, "for the same seed")
        #expect(metricBits(a.metrics) == metricBits(b.metrics))
        #expect(parameterBits(a.model) != parameterBits(c.model), "seeds 3 and 4 trained the same parameters")
    }

    @Test func reportsOneLinePerEpochWithTheStepCount() throws {
        let observer = RecordingObserver()
        let result = try train(.mlp, ["hidden_layer_sizes": "8", "mini_batch_size": "16", "epochs": "3"],
                               train: SyntheticData.blobs(count: 40, width: 4, classes: 3, seed: 1),
                               validation: SyntheticData.blobs(count: 10, width: 4, classes: 3, seed: 2), observer: observer)
        // 40 records in batches of 16: 16 + 16 + 8, so 3 steps per epoch.
        #expect(observer.summary?.stepsPerEpoch == 3)
        #expect(observer.summary?.classes == 3)
        #expect(observer.steps == Array(1...9))
        #expect(observer.reports.map(\.epoch) == [1, 2, 3])
        #expect(observer.reports.map(\.step) == [3, 6, 9])
        #expect(observer.reports.allSatisfy { $0.metrics.map(\.name) == ["train:loss", "validation:loss", "validation:accuracy"] })
        #expect(result.metrics.map(\.name) == ["train:loss", "validation:loss", "validation:accuracy"])
        #expect(result.state.step == 9)
        #expect(result.state.finished)
        // The final validation metrics are those of the last epoch (no early stopping here).
        #expect(metricBits(result.metrics) == metricBits(observer.reports[2].metrics))
    }

    @Test func linearLearnerBinaryClassifierSeparatesAHyperplane() throws {
        let result = try train(.linearLearner, ["predictor_type": "binary_classifier", "mini_batch_size": "32", "epochs": "15",
                                                "learning_rate": "0.05"],
                               train: SyntheticData.linearBinary(count: 300, width: 5, seed: 1),
                               validation: SyntheticData.linearBinary(count: 200, width: 5, seed: 2))
        #expect(result.metrics.map(\.name) == ["train:loss", "validation:loss", "validation:binary_classification_accuracy"])
        let accuracy = try #require(metric(result, "validation:binary_classification_accuracy"))
        #expect(accuracy > 0.95)
        #expect(result.model.parameters.map(\.shape) == [[1, 5], [1]])
    }

    @Test func linearLearnerMulticlassClassifierSeparatesBlobs() throws {
        let result = try train(.linearLearner, ["predictor_type": "multiclass_classifier", "mini_batch_size": "32", "epochs": "10",
                                                "learning_rate": "0.05"],
                               train: SyntheticData.blobs(count: 300, width: 4, classes: 3, seed: 1),
                               validation: SyntheticData.blobs(count: 150, width: 4, classes: 3, seed: 2))
        #expect(result.metrics.map(\.name) == ["train:loss", "validation:loss", "validation:multiclass_accuracy"])
        let accuracy = try #require(metric(result, "validation:multiclass_accuracy"))
        #expect(accuracy > 0.95)
        #expect(result.model.parameters.map(\.shape) == [[3, 4], [3]])
    }

    @Test func linearLearnerRegressorFitsALinearFunction() throws {
        let result = try train(.linearLearner, ["predictor_type": "regressor", "mini_batch_size": "32", "epochs": "20",
                                                "learning_rate": "0.05"],
                               train: SyntheticData.linearRegression(count: 300, width: 4, seed: 1),
                               validation: SyntheticData.linearRegression(count: 100, width: 4, seed: 2))
        #expect(result.metrics.map(\.name) == ["train:loss", "validation:loss", "validation:mse"])
        let mse = try #require(metric(result, "validation:mse"))
        // The labels spread over about ±5; a constant predictor would score an MSE above 1.
        #expect(mse < 0.01)
        #expect(metric(result, "validation:loss") == mse)
    }

    @Test func earlyStoppingStopsAndKeepsTheBestEpoch() throws {
        // Sixteen random points with random labels: the network memorises them, so the loss
        // on fresh random points rises after the first epochs.
        let trainData = SyntheticData.noise(count: 16, width: 20, classes: 2, seed: 1)
        let validationData = SyntheticData.noise(count: 64, width: 20, classes: 2, seed: 2)
        var values = ["hidden_layer_sizes": "64", "mini_batch_size": "16", "epochs": "40", "learning_rate": "0.05",
                      "early_stopping_patience": "1", "early_stopping_tolerance": "0", "seed": "5"]
        let observer = RecordingObserver()
        let stopped = try train(.mlp, values, train: trainData, validation: validationData, observer: observer)

        let (stopEpoch, bestEpoch) = try #require(observer.stopped, "training ran all 40 epochs without stopping")
        #expect(stopEpoch < 40)
        #expect(stopEpoch == bestEpoch + 1, "patience 1 stops one epoch after the best")
        #expect(observer.reports.count == stopEpoch)
        #expect(stopped.state.epoch == stopEpoch)
        let losses = observer.reports.compactMap { $0.metrics.first { $0.name == "validation:loss" }?.value }
        #expect(losses[bestEpoch - 1] == losses.prefix(stopEpoch).min())
        #expect(stopped.state.bestValidationLoss == losses[bestEpoch - 1])
        // The final metrics are evaluated with the best epoch's parameters.
        #expect(metric(stopped, "validation:loss") == losses[bestEpoch - 1])

        // The same run cut at the best epoch (no early stopping) ends with the same parameters;
        // cut at the stopping epoch, it does not.
        values["early_stopping_patience"] = "0"
        values["epochs"] = String(bestEpoch)
        let best = try train(.mlp, values, train: trainData, validation: validationData)
        expectBitIdentical(stopped.model, best.model, "(early-stopped vs. trained for exactly the best epoch's count)")
        values["epochs"] = String(stopEpoch)
        let last = try train(.mlp, values, train: trainData, validation: validationData)
        #expect(parameterBits(stopped.model) != parameterBits(last.model), "early stopping kept the last epoch, not the best")
    }

    @Test func withoutValidationThereIsNoEarlyStopping() throws {
        let observer = RecordingObserver()
        let result = try train(.linearLearner, ["predictor_type": "multiclass_classifier", "epochs": "4", "mini_batch_size": "20",
                                                "early_stopping_patience": "1"],
                               train: SyntheticData.noise(count: 20, width: 3, classes: 3, seed: 1), validation: nil, observer: observer)
        #expect(observer.stopped == nil)
        #expect(observer.reports.count == 4)
        #expect(result.metrics.map(\.name) == ["train:loss"])
    }
}
