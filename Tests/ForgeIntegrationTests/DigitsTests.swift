// One run on real data: scikit-learn's handwritten digits (scripts/export-digits), 1347
// training and 450 test images of 8×8 gray levels, learnt by both built-in algorithms.
import ForgeTestSupport
import Foundation
import Testing

@Suite struct DigitsTests {
    /// The package root, from this file's path (Tests/ForgeIntegrationTests/DigitsTests.swift).
    private let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    private func exportDigits(into directory: String) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: packageRoot + "/scripts/export-digits")
        process.arguments = [directory]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        try #require(process.terminationStatus == 0,
                     "scripts/export-digits failed (it needs python3 with numpy and scikit-learn: pip install scikit-learn)")
    }

    @Test func bothAlgorithmsLearnTheDigits() throws {
        let scratch = try TemporaryDirectory()
        try exportDigits(into: scratch.path)
        let common = ["--train", scratch.file("train.csv"), "--validation", scratch.file("test.csv"), "-H", "epochs=5",
                      "-H", "mini_batch_size=64"]

        let mlp = try ForgeProcess.run(["train", "--algorithm", "mlp", "--output", scratch.file("mlp"), "-H", "hidden_layer_sizes=64",
                                        "-H", "learning_rate=0.003"] + common)
        try #require(mlp.status == 0, "\(mlp)")
        #expect(mlp.outputLines.count == 5)
        // 1347 records in batches of 64: 22 steps per epoch.
        #expect(mlp.outputLines.last?.hasPrefix("epoch=5 step=110 ") == true, "\(mlp)")
        let mlpMetrics = try #require(try JSONSerialization.jsonObject(with: Data(scratch.read("mlp/metrics.json"))) as? [String: Double])
        #expect((mlpMetrics["validation:accuracy"] ?? 0) > 0.9, "\(mlp)")

        let linear = try ForgeProcess.run(["train", "--algorithm", "linear-learner", "--output", scratch.file("linear"),
                                           "-H", "predictor_type=multiclass_classifier", "-H", "learning_rate=0.01"] + common)
        try #require(linear.status == 0, "\(linear)")
        let linearMetrics = try #require(try JSONSerialization.jsonObject(with: Data(scratch.read("linear/metrics.json"))) as? [String: Double])
        #expect(Set(linearMetrics.keys) == ["train:loss", "validation:loss", "validation:multiclass_accuracy"])
        #expect((linearMetrics["validation:multiclass_accuracy"] ?? 0) > 0.9, "\(linear)")

        let predicted = try ForgeProcess.run(["predict", "--model", scratch.file("mlp/model.tar.gz"), "--input", scratch.file("test.csv")])
        try #require(predicted.status == 0, "\(predicted)")
        #expect(predicted.outputLines.count == 450)
        let accuracy = String(format: "%.6f", mlpMetrics["validation:accuracy"] ?? -1)
        #expect(predicted.standardError.contains("accuracy=\(accuracy) on 450 labelled records"), "\(predicted)")
    }
}
