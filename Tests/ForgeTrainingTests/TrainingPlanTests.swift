// Tests of TrainingPlan.make (and the HyperparameterReader behind it): documented defaults,
// every problem reported at once with its exact key and value, SageMaker's quirks (ignored
// platform keys, integral floats), list parsing, conflicts, and the validation metric names.
import ForgeTraining
import Testing

@Suite struct TrainingPlanTests {
    private func problems(_ algorithm: AlgorithmKind, _ values: [String: String]) -> [HyperparameterProblem]? {
        do {
            _ = try TrainingPlan.make(algorithm: algorithm, hyperparameters: values)
            return nil
        } catch {
            return error.problems
        }
    }

    @Test func mlpDefaults() throws {
        let plan = try TrainingPlan.make(algorithm: .mlp, hyperparameters: [:])
        #expect(plan.algorithm == .mlp)
        #expect(plan.predictorType == .multiclassClassifier)
        #expect(plan.numClasses == nil)
        #expect(plan.hiddenLayers == [100])
        #expect(plan.activation == .relu)
        #expect(plan.dropout == 0)
        #expect(plan.miniBatchSize == 200)
        #expect(plan.epochs == 200)
        #expect(plan.learningRate == 0.001)
        #expect(plan.optimizer == .adam)
        #expect(plan.weightDecay == 0.001)
        #expect(plan.momentum == 0)
        #expect(plan.beta1 == 0.9)
        #expect(plan.beta2 == 0.999)
        #expect(plan.seed == 0)
        #expect(plan.earlyStoppingPatience == 0)
        #expect(plan.normalizeData)
        #expect(!plan.normalizeLabel)
        #expect(plan.checkpointSteps == 0)
        #expect(plan.resolved["wd"] == "0.001")
        #expect(plan.resolved["hidden_layer_sizes"] == "100")
        #expect(plan.resolved["optimizer"] == "adam")
        #expect(plan.resolved["predictor_type"] == "multiclass_classifier")
    }

    @Test func linearLearnerDefaults() throws {
        let binary = try TrainingPlan.make(algorithm: .linearLearner, hyperparameters: ["predictor_type": "binary_classifier"])
        #expect(binary.predictorType == .binaryClassifier)
        #expect(binary.hiddenLayers.isEmpty)
        #expect(binary.activation == .identity)
        #expect(binary.dropout == 0)
        #expect(binary.miniBatchSize == 1000)
        #expect(binary.epochs == 15)
        #expect(binary.learningRate == 0.01)
        #expect(binary.optimizer == .adam)
        #expect(binary.weightDecay == 0)
        #expect(binary.earlyStoppingPatience == 3)
        #expect(binary.earlyStoppingTolerance == 0.001)
        #expect(!binary.normalizeLabel)
        #expect(binary.resolved["hidden_layer_sizes"] == nil)

        let regressor = try TrainingPlan.make(algorithm: .linearLearner, hyperparameters: ["predictor_type": "regressor"])
        #expect(regressor.normalizeLabel)
        let sgd = try TrainingPlan.make(algorithm: .linearLearner, hyperparameters: ["predictor_type": "regressor", "optimizer": "sgd"])
        #expect(sgd.momentum == 0.9)
    }

    @Test func linearLearnerRequiresPredictorType() {
        #expect(problems(.linearLearner, [:]) == [
            .missing(key: "predictor_type", why: "linear-learner needs binary_classifier, multiclass_classifier or regressor"),
        ])
        #expect(problems(.linearLearner, ["predictor_type": "ranker"]) == [
            .badValue(key: "predictor_type", value: "ranker",
                      expected: "one of 'binary_classifier', 'multiclass_classifier', 'regressor'"),
        ])
    }

    @Test func everyProblemIsReportedAtOnce() throws {
        let error = #expect(throws: HyperparameterError.self) {
            try TrainingPlan.make(algorithm: .mlp, hyperparameters: [
                "learning_rat": "0.1", "epochs": "ten", "dropout": "1.5", "optimizer": "rmsprop", "mini_batch_size": "64",
            ])
        }
        #expect(error?.algorithm == "mlp")
        #expect(error?.problems == [
            .outOfRange(key: "dropout", value: "1.5", range: "[0.0, 0.99]"),
            .badValue(key: "epochs", value: "ten", expected: "an integer"),
            .badValue(key: "optimizer", value: "rmsprop", expected: "one of 'sgd', 'adam', 'adamw'"),
            .unknown(key: "learning_rat", suggestion: "learning_rate"),
        ])
        let text = try #require(error?.description)
        #expect(text.contains("unknown hyperparameter 'learning_rat' (did you mean 'learning_rate'?)"))
        #expect(text.contains("'rmsprop' is not one of 'sgd', 'adam', 'adamw'"))
        #expect(text.contains("hyperparameter 'epochs': 'ten' is not an integer"))
        #expect(text.contains("hyperparameter 'dropout': 1.5 is outside [0.0, 0.99]"))
    }

    @Test func rangesAndTypesOfSingleValues() {
        #expect(problems(.mlp, ["learning_rate": "0"]) == [.outOfRange(key: "learning_rate", value: "0", range: "(0.0, 10.0]")])
        #expect(problems(.mlp, ["learning_rate": "nan"]) == [.badValue(key: "learning_rate", value: "nan", expected: "a finite number")])
        #expect(problems(.mlp, ["mini_batch_size": "0"]) == [.outOfRange(key: "mini_batch_size", value: "0", range: "1...10000000")])
        #expect(problems(.mlp, ["epochs": "10.5"]) == [.badValue(key: "epochs", value: "10.5", expected: "an integer")])
        #expect(problems(.mlp, ["normalize_data": "maybe"]) == [.badValue(key: "normalize_data", value: "maybe", expected: "'true' or 'false'")])
        #expect(problems(.mlp, ["activation": "swish"]) == [
            .badValue(key: "activation", value: "swish", expected: "one of 'relu', 'gelu', 'tanh', 'sigmoid', 'identity'"),
        ])
        #expect(problems(.mlp, ["momentum": "1"]) == [.outOfRange(key: "momentum", value: "1", range: "[0.0, 0.9999]")])
    }

    @Test func zeroStageIsZeroOrOneAndNotPartOfTheModel() throws {
        #expect(try TrainingPlan.make(algorithm: .mlp, hyperparameters: [:]).zeroStage == 0)
        let sharded = try TrainingPlan.make(algorithm: .mlp, hyperparameters: ["forge_zero_stage": "1"])
        #expect(sharded.zeroStage == 1)
        // A checkpoint resumes with ZeRO on or off: the stage is not in its hyperparameters.
        #expect(sharded.resolved["forge_zero_stage"] == nil)
        #expect(sharded.resolved == (try TrainingPlan.make(algorithm: .mlp, hyperparameters: [:])).resolved)
        #expect(problems(.mlp, ["forge_zero_stage": "2"]) == [.outOfRange(key: "forge_zero_stage", value: "2", range: "0...1")])
        #expect(problems(.mlp, ["forge_zero_stage": "on"]) == [.badValue(key: "forge_zero_stage", value: "on", expected: "an integer")])
    }

    @Test func platformKeysAreIgnoredButLookalikesAreNot() throws {
        let plan = try TrainingPlan.make(algorithm: .mlp, hyperparameters: [
            "_tuning_objective_metric": "validation:accuracy", "sagemaker_program": "train.py",
            "sagemaker_region": "\"us-east-1\"", "epochs": "3",
        ])
        #expect(plan.epochs == 3)
        #expect(plan.resolved["_tuning_objective_metric"] == nil)
        #expect(plan.resolved["sagemaker_program"] == nil)
        #expect(problems(.mlp, ["tuning_objective_metric": "x"])?.map(\.key) == ["tuning_objective_metric"])
    }

    @Test func linearLearnerRejectsTheMLPOnlyKeys() {
        let found = problems(.linearLearner, ["predictor_type": "regressor", "hidden_layer_sizes": "8", "dropout": "0.1"])
        #expect(found?.map(\.key) == ["dropout", "hidden_layer_sizes"])
        #expect(found?.allSatisfy { if case .unknown = $0 { true } else { false } } == true)
    }

    @Test func integralFloatsAreAcceptedForIntegers() throws {
        let plan = try TrainingPlan.make(algorithm: .mlp, hyperparameters: ["epochs": "10.0", "mini_batch_size": "32.0", "seed": " 7 "])
        #expect(plan.epochs == 10)
        #expect(plan.miniBatchSize == 32)
        #expect(plan.seed == 7)
        #expect(plan.resolved["epochs"] == "10")
    }

    @Test(arguments: [
        ("256,128", [256, 128]), ("[64]", [64]), (" 32 , 16 ", [32, 16]), ("(8,4,2)", [8, 4, 2]), ("[]", []),
    ])
    func hiddenLayerSizesParse(text: String, expected: [Int]) throws {
        let plan = try TrainingPlan.make(algorithm: .mlp, hyperparameters: ["hidden_layer_sizes": text])
        #expect(plan.hiddenLayers == expected)
        #expect(plan.resolved["hidden_layer_sizes"] == expected.map(String.init).joined(separator: ","))
    }

    @Test func badHiddenLayerSizes() {
        #expect(problems(.mlp, ["hidden_layer_sizes": "64,x"]) == [
            .badValue(key: "hidden_layer_sizes", value: "64,x", expected: "a comma-separated list of integers like \"256,128\""),
        ])
        #expect(problems(.mlp, ["hidden_layer_sizes": "64,,32"])?.map(\.key) == ["hidden_layer_sizes"])
        #expect(problems(.mlp, ["hidden_layer_sizes": "64,0"]) == [
            .outOfRange(key: "hidden_layer_sizes", value: "0", range: "1...1000000"),
        ])
    }

    @Test func conflicts() {
        #expect(problems(.linearLearner, ["predictor_type": "binary_classifier", "num_classes": "3"]) == [
            .conflict(key: "num_classes", reason: "a binary_classifier has 2 classes, not 3"),
        ])
        #expect(problems(.mlp, ["normalize_label": "true"]) == [
            .conflict(key: "normalize_label", reason: "only a regressor's labels can be normalised"),
        ])
    }

    @Test func predictorAliasesAndNumClasses() throws {
        let plan = try TrainingPlan.make(algorithm: .linearLearner, hyperparameters: ["predictor_type": "Multiclass", "num_classes": "3"])
        #expect(plan.predictorType == .multiclassClassifier)
        #expect(plan.numClasses == 3)
        #expect(plan.resolved["predictor_type"] == "multiclass_classifier")
        let binary = try TrainingPlan.make(algorithm: .linearLearner, hyperparameters: ["predictor_type": "binary_classifier", "num_classes": "2"])
        #expect(binary.numClasses == 2)
    }

    @Test(arguments: [
        (AlgorithmKind.mlp, "multiclass_classifier", "validation:accuracy"),
        (.mlp, "binary_classifier", "validation:accuracy"),
        (.mlp, "regressor", "validation:mse"),
        (.linearLearner, "binary_classifier", "validation:binary_classification_accuracy"),
        (.linearLearner, "multiclass_classifier", "validation:multiclass_accuracy"),
        (.linearLearner, "regressor", "validation:mse"),
    ])
    func validationMetricName(algorithm: AlgorithmKind, predictor: String, expected: String) throws {
        let plan = try TrainingPlan.make(algorithm: algorithm, hyperparameters: ["predictor_type": predictor])
        #expect(plan.validationMetricName == expected)
    }
}
