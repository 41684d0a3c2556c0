// Tests of Predictor: a model reloaded from its archive predicts what the trainer evaluated
// (accuracy and MSE on unscaled inputs, since the archive carries the scalings), with
// probabilities that are distributions, and refuses inputs of the wrong width.
import ForgeData
import ForgeTensor
import ForgeTraining
import Foundation
import Testing

@Suite struct PredictorTests {
    private func trainAndReload(_ algorithm: AlgorithmKind, _ values: [String: String], train: Dataset,
                                validation: Dataset) throws -> (result: TrainingResult, predictor: Predictor) {
        let plan = try TrainingPlan.make(algorithm: algorithm, hyperparameters: values)
        let data = try PreparedData(plan: plan, train: train, validation: validation)
        let result = try Trainer(plan: plan, data: data, device: CPUDevice(threadCount: 1)).run()
        let reloaded = try TrainedModel(archive: result.model.archive(), path: "model.tar.gz")
        // A batch smaller than the data set exercises the predictor's batching.
        return (result, try Predictor(model: reloaded, device: CPUDevice(threadCount: 1), path: "model.tar.gz", batch: 7))
    }

    @Test func multiclassPredictionsMatchTheTrainersAccuracy() throws {
        let validation = SyntheticData.blobs(count: 45, width: 4, classes: 3, spread: 1.2, seed: 2)
        let (result, predictor) = try trainAndReload(.mlp, ["hidden_layer_sizes": "8", "epochs": "3", "mini_batch_size": "16"],
                                                     train: SyntheticData.blobs(count: 60, width: 4, classes: 3, spread: 1.2, seed: 1),
                                                     validation: validation)
        let predictions = try predictor.predict(features: validation.features, width: validation.width)
        #expect(predictions.count == 45)
        let correct = zip(predictions, validation.labels).filter { $0.label == $1 }.count
        #expect(Double(correct) / 45 == result.metrics.first { $0.name == "validation:accuracy" }?.value)
        for prediction in predictions {
            #expect(prediction.probabilities.count == 3)
            #expect(abs(prediction.probabilities.reduce(0, +) - 1) < 1e-5)
            let best = prediction.probabilities.indices.max { prediction.probabilities[$0] < prediction.probabilities[$1] }
            #expect(best.map(Float.init) == prediction.label)
        }
    }

    @Test func binaryPredictionsMatchTheTrainersAccuracy() throws {
        let validation = SyntheticData.linearBinary(count: 50, width: 3, seed: 2)
        let (result, predictor) = try trainAndReload(.linearLearner, ["predictor_type": "binary_classifier", "epochs": "2",
                                                                      "mini_batch_size": "10"],
                                                     train: SyntheticData.linearBinary(count: 40, width: 3, seed: 1), validation: validation)
        let predictions = try predictor.predict(features: validation.features, width: 3)
        let correct = zip(predictions, validation.labels).filter { $0.label == $1 }.count
        #expect(Double(correct) / 50 == result.metrics.first { $0.name == "validation:binary_classification_accuracy" }?.value)
        #expect(predictions.allSatisfy { $0.probabilities.count == 2 && ($0.probabilities[1] > 0.5) == ($0.label == 1) })
    }

    @Test func regressionPredictionsAreInLabelUnits() throws {
        let validation = SyntheticData.linearRegression(count: 40, width: 3, seed: 2)
        let (result, predictor) = try trainAndReload(.linearLearner, ["predictor_type": "regressor", "epochs": "3", "mini_batch_size": "10"],
                                                     train: SyntheticData.linearRegression(count: 60, width: 3, seed: 1),
                                                     validation: validation)
        let predictions = try predictor.predict(features: validation.features, width: 3)
        #expect(predictions.allSatisfy { $0.probabilities.isEmpty })
        let mse = zip(predictions, validation.labels).reduce(0.0) { $0 + pow(Double($1.0.label - $1.1), 2) } / 40
        let reported = try #require(result.metrics.first { $0.name == "validation:mse" }?.value)
        #expect(abs(mse - reported) <= 1e-4 * max(reported, 1e-3), "predictor MSE \(mse), trainer's \(reported)")
    }

    @Test func wrongWidthIsRefused() throws {
        let (_, predictor) = try trainAndReload(.linearLearner, ["predictor_type": "regressor", "epochs": "1"],
                                                train: SyntheticData.linearRegression(count: 10, width: 3, seed: 1),
                                                validation: SyntheticData.linearRegression(count: 5, width: 3, seed: 2))
        #expect(throws: TrainingError.widthMismatch(channel: "input", expected: 3, found: 4)) {
            try predictor.predict(features: [Float](repeating: 0, count: 8), width: 4)
        }
        #expect(try predictor.predict(features: [], width: 3).isEmpty)
    }
}
