// Mistakes a user makes on the command line: each run exits non-zero with a message that names
// the problem (the algorithm, the hyperparameter, the file and line, the path), and writes no
// model.
import ForgeTestSupport
import Foundation
import Testing

@Suite struct CommandErrorTests {
    /// Runs `forge train` on a small valid data set plus `extra` arguments.
    private func train(_ extra: [String], in scratch: TemporaryDirectory) throws -> ForgeRun {
        let data = try scratch.write(SyntheticCSV(count: 20, seed: 1).labelled, to: "train.csv")
        return try ForgeProcess.run(["train", "--train", data, "--output", scratch.file("out")] + extra)
    }

    /// Exit status of errors found while running (ExitCode.failure).
    private static let runFailure: Int32 = 1
    /// Exit status of arguments rejected before running (ArgumentParser's EX_USAGE).
    private static let usageFailure: Int32 = 64

    /// Expects a clean failure: the exact status (a crash would give 134 or 132) and every text.
    private func expectFailure(_ run: ForgeRun, status: Int32 = runFailure, mentioning texts: [String],
                               sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(run.status == status, "\(run)", sourceLocation: sourceLocation)
        #expect(!run.timedOut, sourceLocation: sourceLocation)
        for text in texts {
            #expect(run.standardError.contains(text), "stderr lacks \"\(text)\":\n\(run)", sourceLocation: sourceLocation)
        }
    }

    @Test func unknownAlgorithm() throws {
        let scratch = try TemporaryDirectory()
        expectFailure(try train(["--algorithm", "xgboost"], in: scratch), status: Self.usageFailure,
                      mentioning: ["unknown algorithm 'xgboost'", "mlp, linear-learner"])
        #expect(!FileManager.default.fileExists(atPath: scratch.file("out")))
    }

    @Test func unknownHyperparameterNamesTheKey() throws {
        let scratch = try TemporaryDirectory()
        expectFailure(try train(["--algorithm", "mlp", "-H", "learning_rat=0.1", "-H", "epochs=ten"], in: scratch),
                      mentioning: ["invalid hyperparameters for mlp",
                                   "unknown hyperparameter 'learning_rat' (did you mean 'learning_rate'?)",
                                   "hyperparameter 'epochs': 'ten' is not an integer"])
        #expect(!FileManager.default.fileExists(atPath: scratch.file("out/model.tar.gz")))
    }

    @Test func linearLearnerWithoutPredictorType() throws {
        let scratch = try TemporaryDirectory()
        expectFailure(try train(["--algorithm", "linear-learner"], in: scratch),
                      mentioning: ["hyperparameter 'predictor_type' is required"])
    }

    @Test func malformedHyperparameterArgument() throws {
        let scratch = try TemporaryDirectory()
        expectFailure(try train(["--algorithm", "mlp", "-H", "epochs"], in: scratch), mentioning: ["-H epochs", "expected key=value"])
    }

    @Test func corruptCSVRowNamesTheFileAndLine() throws {
        let scratch = try TemporaryDirectory()
        let bad = try scratch.write("0,1.0,2.0\n1,1.5,2.5\n1,abc,2.5\n0,0.5,1.0\n", to: "data/train.csv")
        let run = try ForgeProcess.run(["train", "--algorithm", "mlp", "--train", bad, "--output", scratch.file("out")])
        expectFailure(run, mentioning: ["train.csv:3:"])
        // With --skip-corrupt-records the same file trains, reporting the skipped row.
        let skipped = try ForgeProcess.run(["train", "--algorithm", "mlp", "--train", bad, "--output", scratch.file("out"),
                                            "--skip-corrupt-records", "-H", "epochs=1"])
        #expect(skipped.status == 0, "\(skipped)")
        #expect(skipped.standardError.contains("train.csv:3:"), "\(skipped)")
        #expect(skipped.standardError.contains("3 records"), "\(skipped)")
    }

    @Test func missingTrainPath() throws {
        let scratch = try TemporaryDirectory()
        let missing = scratch.file("no-such-channel")
        let run = try ForgeProcess.run(["train", "--algorithm", "mlp", "--train", missing, "--output", scratch.file("out")])
        expectFailure(run, mentioning: [missing])
    }

    @Test func labelsThatDoNotSuitThePredictor() throws {
        let scratch = try TemporaryDirectory()
        let data = try scratch.write("0,1.0\n1,2.0\n2,3.0\n", to: "train.csv")
        let run = try ForgeProcess.run(["train", "--algorithm", "linear-learner", "--train", data, "--output", scratch.file("out"),
                                        "-H", "predictor_type=binary_classifier"])
        expectFailure(run, mentioning: ["train channel, record 3: label 2.0 is not 0 or 1 (binary_classifier)"])
    }

    @Test func instanceCountMustBePositive() throws {
        let scratch = try TemporaryDirectory()
        expectFailure(try train(["--algorithm", "mlp", "--instance-count", "0"], in: scratch), status: Self.usageFailure,
                      mentioning: ["--instance-count must be at least 1"])
    }

    @Test func predictWithSomethingThatIsNotAModel() throws {
        let scratch = try TemporaryDirectory()
        let input = try scratch.write("1.0,2.0\n", to: "input.csv")
        let notModel = try scratch.write("0,1,2\n", to: "model.tar.gz")
        expectFailure(try ForgeProcess.run(["predict", "--model", notModel, "--input", input]),
                      mentioning: ["cannot use model \(notModel)", "is it a model.tar.gz written by forge train?"])
        let missing = scratch.file("missing.tar.gz")
        expectFailure(try ForgeProcess.run(["predict", "--model", missing, "--input", input]),
                      mentioning: ["\(missing): cannot read the model file"])
    }

    @Test func predictWithInputOfTheWrongWidth() throws {
        let scratch = try TemporaryDirectory()
        let data = try scratch.write(SyntheticCSV(count: 20, width: 8, seed: 1).labelled, to: "train.csv")
        let trained = try ForgeProcess.run(["train", "--algorithm", "mlp", "--train", data, "--output", scratch.file("out"),
                                            "-H", "epochs=1", "-H", "hidden_layer_sizes=4"])
        try #require(trained.status == 0, "\(trained)")
        let narrow = try scratch.write(SyntheticCSV(count: 5, width: 5, seed: 2).labelled, to: "narrow.csv")
        expectFailure(try ForgeProcess.run(["predict", "--model", scratch.file("out/model.tar.gz"), "--input", narrow]),
                      mentioning: ["the input data has 5 features per record, the model expects 8"])
    }
}
