// Data-parallel `forge train --instance-count N` across real rank processes matches the
// single-process run: same seed, same global batch, N = 1, 2, 3 (odd), 4, a global batch that
// does not divide by N, a partial last batch and dropout, over more than 50 steps.
import ForgeArchive
import ForgeTestSupport
import Foundation
import Testing

/// 301 records of 6 features, 3 classes: batch 40 → 8 steps per epoch (the last of 21 rows).
private func writeTrainChannel(_ directory: TemporaryDirectory) throws -> String {
    var random = SplitMix64(seed: 5)
    var csv = ""
    for _ in 0..<301 {
        let features: [Float] = (0..<6).map { _ in random.signed() }
        let label = features[0] + features[1] > 0.4 ? 2 : (features[2] > 0 ? 1 : 0)
        csv += "\(label)," + features.map { String($0) }.joined(separator: ",") + "\n"
    }
    return try directory.write(csv, to: "train.csv")
}

/// Records an issue for each tensor of `other` further than 1e-5 relative from `reference`.
private func expectMatches(_ reference: [String: [Float]], _ other: [String: [Float]], _ what: String) {
    #expect(Set(other.keys) == Set(reference.keys))
    for (name, values) in reference {
        let scale = values.map(abs).max() ?? 1
        let difference = zip(values, other[name] ?? []).map { abs($0 - $1) }.max() ?? .infinity
        #expect(difference / scale <= 1e-5, "\(what), \(name): max|Δ|/max|ref| = \(difference / scale)")
    }
}

@Suite struct DataParallelTests {
    private func parameters(_ path: String) throws -> [String: [Float]] { try modelParameters(path) }

    private static let hyperparameters = ["-H", "hidden_layer_sizes=16,8", "-H", "mini_batch_size=40", "-H", "epochs=7",
                                          "-H", "dropout=0.2", "-H", "seed=9"]

    @Test func oneTwoThreeAndFourRanksTrainTheSameModel() throws {
        let directory = try TemporaryDirectory()
        let train = try writeTrainChannel(directory)
        var runs = [[String: [Float]]]()
        for ranks in [1, 2, 3, 4] {
            let output = directory.file("out\(ranks)")
            let run = try ForgeProcess.run(["train", "--algorithm", "mlp", "--train", train, "--output", output,
                                            "--instance-count", String(ranks), "--quiet"] + Self.hyperparameters,
                                           timeout: .seconds(180))
            #expect(run.status == 0, "\(run)")
            #expect(run.outputLines.filter { $0.hasPrefix("epoch=") }.count == 7, "rank 0 alone prints one line per epoch")
            runs.append(try parameters(output + "/model.tar.gz"))
        }
        // CONVENTIONS.md: per tensor max|a − b| / max|a| ≤ 1e-5. Only the order of summation
        // differs (each rank sums its rows, the ring adds the ranks' sums), a few ulps per step
        // that Adam's normalised updates keep from growing: measured 0 for 2 ranks and
        // ~1e-6 for 3 and 4 here. Ranks on one host reduce through shared memory.
        for (index, other) in runs.enumerated().dropFirst() {
            expectMatches(runs[0], other, "\(index + 1) ranks")
        }
    }

    @Test func threeLaunchedRanksTrainTheSingleProcessLinearLearner() throws {
        // linear-learner is data parallel too: 3 launched ranks (global batch 40, slices of
        // 14, 13 and 13; a last batch of 21) take the single-process steps.
        let directory = try TemporaryDirectory()
        let train = try writeTrainChannel(directory)
        let hyperparameters = ["-H", "predictor_type=multiclass_classifier", "-H", "num_classes=3", "-H", "mini_batch_size=40",
                               "-H", "epochs=6", "-H", "seed=4"]
        let single = try ForgeProcess.run(["train", "--algorithm", "linear-learner", "--train", train, "--output", directory.file("single"),
                                           "--quiet"] + hyperparameters, timeout: .seconds(180))
        #expect(single.status == 0, "\(single)")
        let launched = try ForgeProcess.run(["launch", "--nproc", "3", "--", "forge", "train", "--algorithm", "linear-learner", "--train", train,
                                             "--output", directory.file("three"), "--quiet"] + hyperparameters, timeout: .seconds(180))
        #expect(launched.status == 0, "\(launched)")
        #expect(launched.outputLines.filter { $0.hasPrefix("epoch=") }.count == 6, "rank 0 alone prints one line per epoch")
        expectMatches(try parameters(directory.file("single/model.tar.gz")), try parameters(directory.file("three/model.tar.gz")),
                      "3 launched linear-learner ranks")
    }

    @Test func aKeyedJobOverSealedSocketsTrainsTheUnkeyedModel() throws {
        // With a cluster key the coordinator and workers talk CURVE, the rendezvous too, and
        // ranks kept off shared memory talk over sealed connections; encryption changes no
        // number: the model is the unkeyed run's, bit for bit.
        let directory = try TemporaryDirectory()
        let train = try writeTrainChannel(directory)
        let key = directory.file("cluster.key")
        #expect(try ForgeProcess.run(["keygen", "--out", key]).status == 0)
        var models = [[String: [Float]]]()
        for keyed in [false, true] {
            let output = directory.file(keyed ? "keyed" : "plain")
            let run = try ForgeProcess.run(["train", "--algorithm", "mlp", "--train", train, "--output", output, "--instance-count", "2"]
                                           + (keyed ? ["--cluster-key", key] : []) + Self.hyperparameters,
                                           environment: ["FORGE_SHARED_MEMORY": "0"], timeout: .seconds(180))
            #expect(run.status == 0, "\(run)")
            let plane = keyed ? "the rest over sealed tcp (AES-256-GCM)" : "the rest over plain tcp"
            #expect((run.standardOutput + run.standardError).contains(plane), "\(run)")
            models.append(try parameters(output + "/model.tar.gz"))
        }
        #expect(Set(models[0].keys) == Set(models[1].keys))
        for (name, values) in models[0] {
            #expect(values.map(\.bitPattern) == models[1][name]?.map(\.bitPattern), "\(name) differs with the key")
        }
    }

    @Test func twoLaunchedRanksWithZeroStageOneTrainTheSingleProcessModel() throws {
        // ZeRO-1 under `forge launch`: the ranks shard the Adam moments (reduce-scatter, update
        // of a segment, all-gather) and still take the single-process steps.
        let directory = try TemporaryDirectory()
        let train = try writeTrainChannel(directory)
        let single = try ForgeProcess.run(["train", "--algorithm", "mlp", "--train", train, "--output", directory.file("single"),
                                           "--quiet"] + Self.hyperparameters, timeout: .seconds(180))
        #expect(single.status == 0, "\(single)")
        let launched = try ForgeProcess.run(["launch", "--nproc", "2", "--", "forge", "train", "--algorithm", "mlp", "--train", train,
                                             "--output", directory.file("zero"), "--quiet", "--zero-stage", "1"] + Self.hyperparameters,
                                            timeout: .seconds(180))
        #expect(launched.status == 0, "\(launched)")
        expectMatches(try parameters(directory.file("single/model.tar.gz")), try parameters(directory.file("zero/model.tar.gz")),
                      "2 launched ranks with ZeRO-1")
    }
}

@Suite struct DataParallelFailureTests {
    @Test func aCorruptRecordFailsTheJobAndNamesTheRankAndLine() throws {
        let directory = try TemporaryDirectory()
        let train = try directory.write("1,0.5,0.5\n0,0.1,0.2\n1,oops,0.3\n", to: "train.csv")
        let run = try ForgeProcess.run(["train", "--algorithm", "mlp", "--train", train, "--output", directory.file("out"),
                                        "--instance-count", "2", "--quiet"], timeout: .seconds(120))
        #expect(run.status == 1, "\(run)")
        #expect(run.standardError.contains("train.csv:3:"), "\(run)")
        #expect(run.standardError.contains("rank"), "the launcher names the failed rank: \(run)")
        #expect(!FileManager.default.fileExists(atPath: directory.file("out/model.tar.gz")))
    }
}

extension DataParallelFailureTests {
    @Test func aSilentRankFailsTrainingWithinTheLaunchTimeout() throws {
        // Rank 1 stops (SIGSTOP) once training is under way (rank 0 has written a checkpoint):
        // no connection closes, it just goes quiet. With `forge launch --timeout 2` rank 0
        // gives up on it after 2 s of silence, not the default 30.
        let directory = try TemporaryDirectory()
        let train = try writeTrainChannel(directory)
        let output = directory.file("out")
        let training = [try ForgeProcess.binary(), "train", "--algorithm", "mlp", "--train", train, "--output", output, "--quiet",
                        "-H", "epochs=100000", "-H", "mini_batch_size=40", "-H", "forge_checkpoint_steps=1"]
        let script = #"""
            "$@" & pid=$!
            if [ "$RANK" = 1 ]; then
              while [ -z "$(ls "$OUTPUT/checkpoints" 2>/dev/null)" ]; do sleep 0.05; done
              kill -STOP $pid
            fi
            wait $pid
            """#
        let run = try ForgeProcess.run(["launch", "--nproc", "2", "--timeout", "2", "--", "/bin/sh", "-c", script, "rank"] + training,
                                       environment: ["OUTPUT": output], timeout: .seconds(150))
        #expect(run.status != 0, "\(run)")
        #expect(run.standardError.contains("no data from rank 1 within 2000 ms"), "\(run)")
    }

    @Test func aCollectiveTimeoutThatIsNotANumberIsRefused() throws {
        let directory = try TemporaryDirectory()
        let run = try ForgeProcess.run(["launch", "--nproc", "1", "--", "forge", "train", "--algorithm", "mlp", "--train",
                                        try writeTrainChannel(directory), "--output", directory.file("out"), "--quiet"],
                                       environment: ["FORGE_COLLECTIVE_TIMEOUT": "soon"])
        #expect(run.status != 0, "\(run)")
        #expect(run.standardError.contains("FORGE_COLLECTIVE_TIMEOUT=soon is not a number of seconds"), "\(run)")
        let flag = try ForgeProcess.run(["launch", "--nproc", "1", "--timeout", "0", "--", "true"])
        #expect(flag.status == 64 && flag.standardError.contains("--timeout must be"), "\(flag)")
    }
}

/// `--train-distribution ShardedByS3Key`: each rank reads only its files (file i of the sorted
/// list to rank i mod N), the ranks still agree on classes, scaling and width, and train a
/// working model together.
@Suite struct ShardedByS3KeyTests {
    /// Five CSV files of a separable 3-class problem; `corrupt` breaks one line of file 3.
    private func writeChannel(_ directory: TemporaryDirectory, corrupt: Bool = false) throws -> String {
        var random = SplitMix64(seed: 21)
        for file in 0..<5 {
            var csv = ""
            for line in 0..<80 {
                let features: [Float] = (0..<4).map { _ in random.signed() }
                let label = features[0] > 0.3 ? 2 : (features[1] > 0 ? 1 : 0)
                csv += corrupt && file == 3 && line == 6 ? "1,broken\n" : "\(label)," + features.map { String($0) }.joined(separator: ",") + "\n"
            }
            _ = try directory.write(csv, to: "train/part-\(file).csv")
        }
        return directory.file("train")
    }

    @Test func eachRankReadsOnlyItsFilesAndTheyTrainOneModel() throws {
        let directory = try TemporaryDirectory()
        let train = try writeChannel(directory)
        let validation = try directory.write((0..<200).map { i -> String in
            var random = SplitMix64(seed: UInt64(1000 + i))
            let features: [Float] = (0..<4).map { _ in random.signed() }
            let label = features[0] > 0.3 ? 2 : (features[1] > 0 ? 1 : 0)
            return "\(label)," + features.map { String($0) }.joined(separator: ",")
        }.joined(separator: "\n") + "\n", to: "validation.csv")
        let output = directory.file("out")
        let run = try ForgeProcess.run(["train", "--algorithm", "mlp", "--train", train, "--validation", validation, "--output", output,
                                        "--instance-count", "2", "--train-distribution", "ShardedByS3Key", "--quiet",
                                        "-H", "hidden_layer_sizes=16", "-H", "mini_batch_size=32", "-H", "epochs=25", "-H", "seed=4"],
                                       timeout: .seconds(180))
        #expect(run.status == 0, "\(run)")
        let log = run.standardOutput + run.standardError
        #expect(log.contains("rank 0 reads 3 of 5 file(s)"), "\(run)")
        #expect(log.contains("rank 1 reads 2 of 5 file(s)"), "\(run)")
        let metrics = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: output + "/metrics.json"))) as? [String: Double]
        let accuracy = try #require(metrics?["validation:accuracy"])
        #expect(accuracy > 0.85, "validation:accuracy \(accuracy)")
    }

    @Test func aCorruptFileFailsOnlyTheRankThatReadsIt() throws {
        let directory = try TemporaryDirectory()
        let train = try writeChannel(directory, corrupt: true)
        // part-3.csv is file 3 of 5: rank 1's under ShardedByS3Key.
        let run = try ForgeProcess.run(["train", "--algorithm", "mlp", "--train", train, "--output", directory.file("out"),
                                        "--instance-count", "2", "--train-distribution", "ShardedByS3Key", "--quiet"],
                                       timeout: .seconds(120))
        #expect(run.status == 1, "\(run)")
        #expect(run.standardError.contains("part-3.csv:7:"), "\(run)")
        #expect(run.standardError.contains("rank 1"), "the launcher names rank 1: \(run)")
    }

    @Test func moreRanksThanFilesIsAClearError() throws {
        let directory = try TemporaryDirectory()
        let train = try directory.write("1,0.5\n0,0.1\n", to: "one/only.csv")
        _ = train
        let run = try ForgeProcess.run(["train", "--algorithm", "mlp", "--train", directory.file("one"), "--output", directory.file("out"),
                                        "--instance-count", "2", "--train-distribution", "ShardedByS3Key", "--quiet"],
                                       timeout: .seconds(120))
        #expect(run.status != 0, "\(run)")
        #expect(run.standardError.contains("ShardedByS3Key needs at least one file per rank"), "\(run)")
    }
}

/// SIGTERM (how a stopped job's ranks are told, with SageMaker's grace period) or SIGINT ends
/// training after the current step with a checkpoint; every rank stops at the same step, and
/// running the command again resumes there.
@Suite struct GracefulStopTests {
    @Test(arguments: [1, 2])
    func aSignalStopsTrainingWithACheckpointToResumeFrom(instances: Int) throws {
        let directory = try TemporaryDirectory()
        let train = try directory.write(SyntheticCSV(count: 400, seed: 3).labelled, to: "train.csv")
        let output = directory.file("out")
        let arguments = ["train", "--algorithm", "mlp", "--train", train, "--output", output, "--instance-count", String(instances),
                         "--quiet", "-H", "epochs=100000", "-H", "mini_batch_size=16", "-H", "hidden_layer_sizes=32"]
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try ForgeProcess.binary())
        process.arguments = arguments
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        // Let it train a while (its first epoch-end checkpoint appears), then ask it to stop.
        let checkpoints = output + "/checkpoints"
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline, ((try? FileManager.default.contentsOfDirectory(atPath: checkpoints)) ?? []).isEmpty { usleep(50_000) }
        usleep(300_000)
        process.terminate()
        process.waitUntilExit()
        let log = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(process.terminationReason == .exit && process.terminationStatus == 143, "\(process.terminationStatus) \(log)")
        #expect(log.contains("stopped on signal 15 after step"), "\(log)")
        let stoppedAt = try #require(log.firstMatch(of: /after step (\d+); checkpoint/).flatMap { Int($0.1) }, "\(log)")
        let folders = try FileManager.default.contentsOfDirectory(atPath: checkpoints)
        #expect(folders.contains(String(format: "step-%09d", stoppedAt)), "\(folders) lacks step \(stoppedAt)")
        // The same command resumes at that step; stop it again once it says so.
        let resumed = Process()
        resumed.executableURL = URL(fileURLWithPath: try ForgeProcess.binary())
        resumed.arguments = arguments
        let resumedErrors = Pipe()
        resumed.standardError = resumedErrors
        resumed.standardOutput = FileHandle.nullDevice
        try resumed.run()
        var seen = ""
        let until = Date().addingTimeInterval(30)
        while Date() < until, !seen.contains("resuming from checkpoint") {
            let chunk = resumedErrors.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            seen += String(decoding: chunk, as: UTF8.self)
        }
        resumed.terminate()
        resumed.waitUntilExit()
        #expect(seen.contains("at step \(stoppedAt) "), "\(seen)")
    }
}

/// Ranks on one host whose /dev/shm is too small for what they would put there (Docker gives
/// containers 64 MiB): a pair that cannot map its rings talks over sockets, a shared region that
/// does not fit shrinks or goes, and the job trains the single-process model either way, with no
/// SIGBUS. Each run gets a small tmpfs of its own on /dev/shm, in a mount namespace (`unshare`).
@Suite struct SmallSharedMemoryTests {
    /// 6-512-512-3: 267,779 parameters, about 1 MiB of gradients and 1 MiB of values.
    private static let hyperparameters = ["-H", "hidden_layer_sizes=512,512", "-H", "mini_batch_size=40", "-H", "epochs=2", "-H", "seed=9"]

    /// `forge launch --nproc 2 -- forge train …` with a tmpfs of `size` (as mount's size=) on /dev/shm.
    private func launch(_ train: String, output: String, shmSize size: String) throws -> ExternalTool.Result {
        try ExternalTool.run(["unshare", "-m", "sh", "-c", #"mount -t tmpfs -o size="$1" tmpfs /dev/shm && shift && exec "$@""#, "sh",
                              size, try ForgeProcess.binary(), "launch", "--nproc", "2", "--", "forge", "train",
                              "--algorithm", "mlp", "--train", train, "--output", output] + Self.hyperparameters)
    }

    private func expectSingleProcessModel(_ single: String, _ other: String, _ what: String) throws {
        expectMatches(try modelParameters(single), try modelParameters(other), what)
    }

    /// Whether this process may give a child a mount namespace with a tmpfs of its own (root
    /// with CAP_SYS_ADMIN, as on CI's machine; not in an unprivileged container).
    static let canMountTmpfs: Bool = {
        let probe = try? ExternalTool.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /dev/shm"])
        return probe?.status == 0
    }()

    @Test(.enabled(if: SmallSharedMemoryTests.canMountTmpfs, "needs unshare -m and mount (root with CAP_SYS_ADMIN)"))
    func ranksWhoseSharedMemoryIsTooSmallTrainOverSocketsOrASmallerRegion() throws {
        let directory = try TemporaryDirectory()
        let train = try writeTrainChannel(directory)
        let single = try ForgeProcess.run(["train", "--algorithm", "mlp", "--train", train, "--output", directory.file("single"),
                                           "--quiet"] + Self.hyperparameters, timeout: .seconds(180))
        #expect(single.status == 0, "\(single)")

        // 100 KiB: not even the smallest rings between the two ranks (2 × 68 KiB) fit.
        let tiny = try launch(train, output: directory.file("tiny"), shmSize: "100k")
        #expect(tiny.status == 0, "\(tiny.text)\n\(tiny.standardError)")
        #expect(tiny.standardError.contains("talks over sockets, not shared memory") && tiny.standardError.contains("is full"),
                "\(tiny.standardError)")
        #expect(tiny.standardError.contains("data plane: 0 of 1 peers through shared memory"), "\(tiny.standardError)")
        try expectSingleProcessModel(directory.file("single/model.tar.gz"), directory.file("tiny/model.tar.gz"), "no shared memory")

        // 4 MiB: the rings, sized to it (2 × 512 KiB), fit, and then the gradients' region
        // (2 × 1.0 MiB), but not the region that holds values and gradients for the sharded
        // update (2 × 2.1 MiB).
        let small = try launch(train, output: directory.file("small"), shmSize: "4m")
        #expect(small.status == 0, "\(small.text)\n\(small.standardError)")
        #expect(small.standardError.contains("data plane: 1 of 1 peers through shared memory"), "\(small.standardError)")
        #expect(small.standardError.contains("one in-place all-reduce per step in a shared region"), "\(small.standardError)")
        try expectSingleProcessModel(directory.file("single/model.tar.gz"), directory.file("small/model.tar.gz"), "a gradients-only region")
    }
}
