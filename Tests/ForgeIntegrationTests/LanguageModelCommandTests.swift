// `forge train --algorithm transformer-lm` on a public-domain text from Debian's `fortunes`
// package (scripts/setup installs it), as a user runs it: the loss falls well below the
// corpus's unigram entropy and both are printed, a sampled continuation is printed, and
// `forge generate` samples from the written model. Then two ranks on an embedded cluster.
import ForgeArchive
import ForgeTestSupport
import Foundation
import Testing

@Suite struct LanguageModelCommandTests {
    static let fortunes = "/usr/share/games/fortunes"

    /// Train and validation channels cut from a few fortune files (90 % / 10 %).
    static func corpus(_ directory: TemporaryDirectory) throws -> (train: String, validation: String) {
        var text = Data()
        for name in ["fortunes", "literature", "wisdom"] {
            let path = fortunes + "/" + name
            try #require(FileManager.default.fileExists(atPath: path), "\(path) is missing: run scripts/setup (it installs Debian's fortunes)")
            text += try Data(contentsOf: URL(fileURLWithPath: path))
        }
        let cut = text.count * 9 / 10
        let train = try directory.write(String(decoding: text.prefix(cut), as: UTF8.self), to: "train/text.txt")
        let validation = try directory.write(String(decoding: text.suffix(from: cut), as: UTF8.self), to: "validation/text.txt")
        return (train, validation)
    }

    static let hyperparameters = ["-H", "num_layers=1", "-H", "d_model=48", "-H", "num_heads=4", "-H", "context_length=32",
                                  "-H", "mini_batch_size=16", "-H", "learning_rate=0.004", "-H", "warmup_steps=10"]

    /// For equivalence runs: 50 steps of a global batch of 31 windows (split 16 + 15), with a
    /// cosine decay. Rounding differences grow with the noise of each step: at a batch of 11
    /// and a constant rate of 0.004, two ranks ended 1e-3 apart in the rarely seen bytes'
    /// embedding rows (Adam scales their few, small gradients up); here they end 1.8e-6 apart.
    static let equivalence = ["-H", "max_steps=50", "-H", "mini_batch_size=31", "-H", "learning_rate=0.003", "-H", "lr_schedule=cosine"]

    @Test func trainsOnFortunesThenGenerates() throws {
        let directory = try TemporaryDirectory()
        let (train, validation) = try Self.corpus(directory)
        let output = directory.file("out")
        let run = try ForgeProcess.run(["train", "--algorithm", "transformer-lm", "--train", train, "--validation", validation,
                                        "--output", output, "--quiet", "-H", "max_steps=150"] + Self.hyperparameters,
                                       timeout: .seconds(300))
        try #require(run.status == 0, "\(run)")
        let lines = run.outputLines
        let comparison = try #require(lines.first { $0.hasPrefix("validation:loss ") }, "\(run)")
        let numbers = comparison.matches(of: /([0-9]+\.[0-9]+) nats\/byte/).map { Double($0.output.1) ?? .nan }
        try #require(numbers.count == 2, "\(comparison)")
        // Measured: ≈ 2.2 nats/byte against a unigram entropy of ≈ 3.2 after 150 steps.
        #expect(numbers[0] < 0.8 * numbers[1], "\(comparison)")
        #expect(lines.contains { $0.hasPrefix("sample continuation") }, "\(run)")
        #expect(lines.contains { $0.hasPrefix("  | ") }, "\(run)")

        let generated = try ForgeProcess.run(["generate", "--model", output + "/model.tar.gz", "--prompt", "The ", "--length", "60",
                                              "--seed", "5"])
        try #require(generated.status == 0, "\(generated)")
        #expect(generated.standardOutput.hasPrefix("The "))
        #expect(generated.standardOutput.utf8.count >= 60)
        let again = try ForgeProcess.run(["generate", "--model", output + "/model.tar.gz", "--prompt", "The ", "--length", "60",
                                          "--seed", "5"])
        #expect(again.standardOutput == generated.standardOutput, "seeded sampling repeats")
    }

    @Test func generateRefusesAModelThatIsNotALanguageModel() throws {
        let directory = try TemporaryDirectory()
        let train = try directory.write(SyntheticCSV(count: 40, seed: 1).labelled, to: "train.csv")
        let output = directory.file("out")
        let run = try ForgeProcess.run(["train", "--algorithm", "mlp", "--train", train, "--output", output, "-H", "epochs=1", "--quiet"])
        try #require(run.status == 0, "\(run)")
        let generated = try ForgeProcess.run(["generate", "--model", output + "/model.tar.gz"])
        #expect(generated.status == 1)
        #expect(generated.standardError.contains("transformer-lm"), "\(generated)")
    }

    @Test func twoRanksOnAnEmbeddedClusterTrainTheSingleProcessModel() throws {
        let directory = try TemporaryDirectory()
        let (train, validation) = try Self.corpus(directory)
        var models = [[String: [Float]]]()
        for ranks in [1, 2] {
            let output = directory.file("out\(ranks)")
            let run = try ForgeProcess.run(["train", "--algorithm", "transformer-lm", "--train", train, "--validation", validation,
                                            "--output", output, "--quiet", "--instance-count", String(ranks)]
                                           + Self.hyperparameters + Self.equivalence, timeout: .seconds(300))
            try #require(run.status == 0, "\(run)")
            #expect(run.outputLines.contains { $0.hasPrefix("sample continuation") }, "\(run)")
            models.append(try Self.parameters(output + "/model.tar.gz"))
        }
        // Data parallel: only the summation order of the gradients differs. Measured 1.8e-6.
        for (name, values) in models[0] {
            let scale = values.map(abs).max() ?? 1
            let difference = zip(values, models[1][name] ?? []).map { abs($0 - $1) }.max() ?? .infinity
            #expect(difference / scale <= 1e-5, "\(name): max|Δ|/max|ref| = \(difference / scale)")
        }
    }

    static func parameters(_ path: String) throws -> [String: [Float]] { try modelParameters(path) }
}
