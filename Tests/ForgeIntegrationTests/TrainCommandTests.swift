// `forge train` as a user runs it: a real process on CSV files in a temporary folder. Checks
// the metric lines on standard output, the outputs, prediction with the written model, the
// hyperparameters file, and resuming through the command line.
import ForgeArchive
import ForgeTestSupport
import Foundation
import Testing

@Suite struct TrainCommandTests {
    /// The documented metric line of an MLP classifier with a validation channel.
    private func metricLine() throws -> Regex<AnyRegexOutput> {
        try Regex(#"^epoch=(\d+) step=(\d+) train:loss=([0-9.]+) validation:loss=([0-9.]+) validation:accuracy=([0-9.]+)$"#)
    }

    private func metrics(_ path: String) throws -> [String: Double] {
        let object = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path)))
        return try #require(object as? [String: Double], "metrics.json is not a flat object of numbers")
    }

    /// model.json's hyperparameters inside a model.tar.gz.
    private func savedHyperparameters(_ path: String) throws -> [String: String] {
        let entries = try TarArchive.readGzipped([UInt8](Data(contentsOf: URL(fileURLWithPath: path))))
        let json = try #require(entries.first { $0.name == "model.json" }, "model.json missing from \(path)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.bytes)) as? [String: Any])
        return try #require(object["hyperparameters"] as? [String: String])
    }

    @Test func trainsAnMLPThenPredictsWithIt() throws {
        let scratch = try TemporaryDirectory()
        // The train channel is a folder; validation a single file.
        try scratch.write(SyntheticCSV(count: 200, seed: 1).labelled, to: "train/part-0.csv")
        let validationSet = SyntheticCSV(count: 60, seed: 2)
        let validation = try scratch.write(validationSet.labelled, to: "validation.csv")
        let output = scratch.file("out")
        let run = try ForgeProcess.run(["train", "--algorithm", "mlp", "--train", scratch.file("train"), "--validation", validation,
                                        "--output", output, "-H", "epochs=4", "-H", "hidden_layer_sizes=16", "-H", "mini_batch_size=32",
                                        "-H", "learning_rate=0.01", "--threads", "1"])
        try #require(run.status == 0, "\(run)")
        // 200 records in batches of 32: 7 steps per epoch; one line per epoch.
        let lines = run.outputLines
        #expect(lines.count == 4, "\(run)")
        let regex = try metricLine()
        for (index, line) in lines.enumerated() {
            let match = try #require(line.wholeMatch(of: regex), "not a metric line: \(line)")
            #expect(match.output[1].substring == "\(index + 1)")
            #expect(match.output[2].substring == "\(7 * (index + 1))")
        }
        #expect(FileManager.default.fileExists(atPath: output + "/model.tar.gz"))
        let final = try metrics(output + "/metrics.json")
        #expect(Set(final.keys) == ["train:loss", "validation:loss", "validation:accuracy"])
        let accuracy = try #require(final["validation:accuracy"])
        #expect(accuracy > 0.9, "\(run)")
        // The final metrics are the last epoch's (no early stopping for mlp by default).
        let last = try #require(lines.last?.wholeMatch(of: regex))
        #expect(String(format: "%.6f", accuracy) == String(last.output[5].substring ?? ""))

        // Features only: one label per row, mostly right.
        let features = try scratch.write(validationSet.featuresOnly, to: "features.csv")
        let predicted = try ForgeProcess.run(["predict", "--model", output + "/model.tar.gz", "--input", features])
        try #require(predicted.status == 0, "\(predicted)")
        let labels = predicted.outputLines.map { Int($0) }
        #expect(labels.count == 60)
        #expect(labels.allSatisfy { $0.map { (0..<3).contains($0) } == true }, "\(predicted.standardOutput)")
        let agreement = zip(labels, validationSet.labels).filter { $0 == $1 }.count
        #expect(Double(agreement) / 60 == accuracy, "forge predict disagrees with the trainer's validation accuracy")
        #expect(!predicted.standardError.contains("accuracy="))

        // Labelled rows: the same predictions (written to a file) and the accuracy on stderr.
        let scored = try ForgeProcess.run(["predict", "--model", output + "/model.tar.gz", "--input", validation,
                                           "--output", scratch.file("predictions.csv")])
        try #require(scored.status == 0, "\(scored)")
        #expect(scored.standardOutput.isEmpty)
        #expect(try String(contentsOfFile: scratch.file("predictions.csv"), encoding: .utf8) == predicted.standardOutput)
        #expect(scored.standardError.contains("accuracy=\(String(format: "%.6f", accuracy)) on 60 labelled records"), "\(scored)")

        // With probabilities: label, then one probability per class summing to 1.
        let probabilities = try ForgeProcess.run(["predict", "--model", output + "/model.tar.gz", "--input", features, "--probabilities"])
        try #require(probabilities.status == 0, "\(probabilities)")
        for (line, label) in zip(probabilities.outputLines, predicted.outputLines) {
            let fields = line.split(separator: ",").map(String.init)
            #expect(fields.count == 4 && fields[0] == label, "\(line)")
            let total = fields.dropFirst().compactMap(Double.init).reduce(0, +)
            #expect(abs(total - 1) < 1e-4, "\(line)")
        }
    }

    @Test func linearLearnerRegressorThroughTheCommandLine() throws {
        let scratch = try TemporaryDirectory()
        var random = SplitMix64(seed: 3)
        var text = "", features = ""
        for _ in 0..<150 {
            let x: [Double] = (0..<3).map { _ in random.signed() }
            let y = 4 + 2 * x[0] - 3 * x[1] + 0.5 * x[2]
            text += "\(y),\(x[0]),\(x[1]),\(x[2])\n"
            features += "\(x[0]),\(x[1]),\(x[2])\n"
        }
        let data = try scratch.write(text, to: "train.csv")
        let output = scratch.file("out")
        let run = try ForgeProcess.run(["train", "--algorithm", "linear-learner", "--train", data, "--validation", data,
                                        "--output", output, "-H", "predictor_type=regressor", "-H", "epochs=15",
                                        "-H", "mini_batch_size=16", "-H", "learning_rate=0.05"])
        try #require(run.status == 0, "\(run)")
        let regex = try Regex(#"^epoch=\d+ step=\d+ train:loss=[0-9.]+ validation:loss=[0-9.]+ validation:mse=([0-9.]+)$"#)
        #expect(run.outputLines.count <= 15 && !run.outputLines.isEmpty)
        #expect(run.outputLines.allSatisfy { $0.wholeMatch(of: regex) != nil }, "\(run)")
        let final = try metrics(output + "/metrics.json")
        #expect(Set(final.keys) == ["train:loss", "validation:loss", "validation:mse"])
        #expect((final["validation:mse"] ?? 1) < 0.01)

        let predicted = try ForgeProcess.run(["predict", "--model", output + "/model.tar.gz",
                                              "--input", try scratch.write(features, to: "features.csv")])
        try #require(predicted.status == 0, "\(predicted)")
        let values = predicted.outputLines.compactMap(Double.init)
        #expect(values.count == 150)
        let truth = text.split(separator: "\n").compactMap { $0.split(separator: ",").first.flatMap { Double($0) } }
        let mse = zip(values, truth).reduce(0.0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) } / 150
        #expect(abs(mse - (final["validation:mse"] ?? -1)) < 1e-4, "prediction MSE \(mse) vs metrics.json")
    }

    @Test func hyperparametersFileWithCommandLineOverrides() throws {
        let scratch = try TemporaryDirectory()
        let train = try scratch.write(SyntheticCSV(count: 50, seed: 1).labelled, to: "train.csv")
        let file = try scratch.write("""
            {"epochs": 2, "hidden_layer_sizes": "8", "learning_rate": 0.02, "mini_batch_size": "25",
             "normalize_data": true, "_tuning_objective_metric": "validation:accuracy"}
            """, to: "hyperparameters.json")
        let output = scratch.file("out")
        let run = try ForgeProcess.run(["train", "--algorithm", "mlp", "--train", train, "--output", output,
                                        "--hyperparameters", file, "-H", "epochs=3"])
        try #require(run.status == 0, "\(run)")
        #expect(run.outputLines.count == 3, "-H epochs=3 did not win over the file's 2")
        #expect(run.outputLines.last?.hasPrefix("epoch=3 step=6 train:loss=") == true, "\(run)")
        let saved = try savedHyperparameters(output + "/model.tar.gz")
        #expect(saved["epochs"] == "3")
        #expect(saved["hidden_layer_sizes"] == "8")
        #expect(saved["learning_rate"] == "0.02")
        #expect(saved["mini_batch_size"] == "25")
        #expect(saved["normalize_data"] == "true")
    }

    @Test(arguments: [#"{"epochs": {"value": 2}}"#, #"{"hidden_layer_sizes": [8, 4]}"#, #"["epochs", "2"]"#, "epochs=2"])
    func hyperparametersFileWithNonScalarValuesFails(content: String) throws {
        let scratch = try TemporaryDirectory()
        let train = try scratch.write(SyntheticCSV(count: 20, seed: 1).labelled, to: "train.csv")
        let file = try scratch.write(content, to: "hp.json")
        let run = try ForgeProcess.run(["train", "--algorithm", "mlp", "--train", train, "--output", scratch.file("out"),
                                        "--hyperparameters", file])
        #expect(run.status == 1, "\(run)")
        #expect(run.standardError.contains("\(file): not a JSON object of string, number or boolean values"), "\(run)")
        #expect(!FileManager.default.fileExists(atPath: scratch.file("out/model.tar.gz")))
    }

    @Test func rerunResumesFromTheNewestCheckpoint() throws {
        let scratch = try TemporaryDirectory()
        let train = try scratch.write(SyntheticCSV(count: 200, seed: 1).labelled, to: "train.csv")
        let validation = try scratch.write(SyntheticCSV(count: 40, seed: 2).labelled, to: "validation.csv")
        let output = scratch.file("out")
        // 7 steps per epoch; checkpoints at 3, 6, 7, 9, 12, 14; the newest two are kept.
        let arguments = ["train", "--algorithm", "mlp", "--train", train, "--validation", validation, "--output", output,
                         "-H", "epochs=2", "-H", "hidden_layer_sizes=16", "-H", "mini_batch_size=32", "-H", "dropout=0.2",
                         "-H", "forge_checkpoint_steps=3"]
        let first = try ForgeProcess.run(arguments)
        try #require(first.status == 0, "\(first)")
        #expect(first.outputLines.count == 2)
        #expect(!first.standardError.contains("resuming from checkpoint"))
        let checkpoints = try FileManager.default.contentsOfDirectory(atPath: output + "/checkpoints").sorted()
        #expect(checkpoints == ["step-000000012", "step-000000014"])
        let model = try scratch.read("out/model.tar.gz"), metricsFile = try scratch.read("out/metrics.json")

        // A finished run resumes at its end: nothing to train, the same outputs.
        let again = try ForgeProcess.run(arguments)
        try #require(again.status == 0, "\(again)")
        #expect(again.standardError.contains("resuming from checkpoint \(output)/checkpoints/step-000000014 at step 14"), "\(again)")
        #expect(again.outputLines.isEmpty)
        #expect(try scratch.read("out/metrics.json") == metricsFile)
        #expect(try scratch.read("out/model.tar.gz") == model)

        // Interrupted after step 12 (mid-epoch 2): the rerun trains steps 13-14 only and ends
        // with byte-identical outputs.
        try FileManager.default.removeItem(atPath: output + "/checkpoints/step-000000014")
        let resumed = try ForgeProcess.run(arguments)
        try #require(resumed.status == 0, "\(resumed)")
        #expect(resumed.standardError.contains("resuming from checkpoint \(output)/checkpoints/step-000000012 at step 12 (epoch 2)"),
                "\(resumed)")
        #expect(resumed.outputLines == [first.outputLines[1]])
        #expect(try scratch.read("out/metrics.json") == metricsFile)
        #expect(try scratch.read("out/model.tar.gz") == model)

        // --no-resume starts afresh, and (same seed) ends in the same place.
        let fresh = try ForgeProcess.run(arguments + ["--no-resume"])
        try #require(fresh.status == 0, "\(fresh)")
        #expect(!fresh.standardError.contains("resuming from checkpoint"))
        #expect(fresh.standardError.contains("removed earlier checkpoints"))
        #expect(fresh.outputLines == first.outputLines)
        #expect(try scratch.read("out/model.tar.gz") == model)

        // Other hyperparameters on the same checkpoints: refused, naming the change.
        let changed = try ForgeProcess.run(arguments + ["-H", "learning_rate=0.5"])
        #expect(changed.status == 1, "\(changed)")
        #expect(changed.standardError.contains("cannot resume from checkpoint"), "\(changed)")
        #expect(changed.standardError.contains("learning_rate"), "\(changed)")
    }
}
