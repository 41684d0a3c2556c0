// `forge train`: a whole job on one machine.
import ArgumentParser
import CForgeSystem
import ForgeCollectives
import ForgeData
import ForgeTensor
import ForgeTraining
import Foundation

struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a built-in algorithm and write OUTPUT/model.tar.gz and OUTPUT/metrics.json.",
        discussion: """
        Channels (--train, --validation) are a file or a folder of files: CSV with the label in \
        the first column and no header (SageMaker's text/csv), LibSVM, or IDX pairs \
        (*-images-idx3-ubyte[.gz] with *-labels-idx1-ubyte[.gz]).

        Hyperparameters are strings, as SageMaker passes them, e.g. -H hidden_layer_sizes=256,128 \
        -H epochs=30 -H learning_rate=0.001. See docs/hyperparameters.md for every name.

        A metric line is printed per epoch:
          epoch=3 step=420 train:loss=0.123400 validation:accuracy=0.971200
        Checkpoints go to OUTPUT/checkpoints (every forge_checkpoint_steps steps, and at each \
        epoch's end); a rerun with the same arguments resumes from the newest one.
        """
    )

    @Option(name: .long, help: "Built-in algorithm: mlp, linear-learner or transformer-lm.")
    var algorithm: String

    @Option(name: .long, help: "Training channel: a file or a folder of files.")
    var train: String

    @Option(name: .long, help: "Validation channel: a file or a folder of files.")
    var validation: String?

    @Option(name: .customShort("H"), parsing: .singleValue, help: "A hyperparameter as key=value (repeatable).")
    var hyperparameter: [String] = []

    @Option(name: .long, help: "A JSON object of hyperparameters (SageMaker's hyperparameters.json); -H wins over it.")
    var hyperparameters: String?

    @Option(name: .long, help: "Output folder for model.tar.gz, metrics.json and checkpoints.")
    var output: String

    @Option(name: .long, help: "Rank processes for data-parallel training on this machine (forge launch starts them).")
    var instanceCount: Int = 1

    @Option(name: .long, help: "A cluster key file (forge keygen) for the ranks' ZeroMQ CURVE.")
    var clusterKey: String?

    @Option(name: .long, help: """
        How ranks split the train channel (SageMaker's S3DataDistributionType): FullyReplicated         (each reads it all and takes its slice of every global batch: matches one process) or         ShardedByS3Key (file i goes to rank i mod N; each rank reads only its files, shuffled by rank).
        """)
    var trainDistribution: TrainDistribution = .fullyReplicated

    @Option(name: .long, help: "Content type of the channels: text/csv, application/x-libsvm, application/x-idx (default: from file names).")
    var contentType: String?

    @Flag(name: .long, help: "CSV files start with a header line.")
    var csvHeader = false

    @Flag(name: .long, help: "Skip corrupt records (each is reported) instead of failing.")
    var skipCorruptRecords = false

    @Option(name: .long, help: "Compute threads (OpenBLAS and Forge's own kernels); default: up to 2, or 1 per rank.")
    var threads: Int?

    @Option(name: .long, help: """
        ZeRO stage of data-parallel ranks (forge_zero_stage): 0 keeps the whole optimizer state on every rank; 1 shards it \
        across the ranks (each updates its segment of the parameters; checkpoints still hold the whole state).
        """)
    var zeroStage: Int?

    @Option(name: .long, help: "Checkpoint folder (default OUTPUT/checkpoints).")
    var checkpointDir: String?

    @Flag(name: .long, help: "Start afresh: remove earlier checkpoints instead of resuming.")
    var noResume = false

    @Option(name: .long, help: "Pipeline stages (forge_pipeline_degree): the model's layers split across this many ranks.")
    var pipelineDegree: Int?

    @Option(name: .long, help: "Tensor-parallel ranks (forge_tensor_degree): each layer's heads and MLP units split across them.")
    var tensorDegree: Int?

    @Option(name: .long, help: "Micro-batches per step under pipeline parallelism (forge_micro_batches; default: the pipeline degree).")
    var microBatches: Int?

    @Option(name: .long, help: "Pipeline schedule (forge_pipeline_schedule): gpipe or 1f1b.")
    var schedule: String?

    @Option(name: .long, help: "Layers per pipeline stage, e.g. 0-3,4-7 (forge_stage_map; default balances parameter counts).")
    var stageMap: String?

    @Flag(name: .long, help: "No progress bar.")
    var quiet = false

    @Flag(name: .long, help: "Debug logging.")
    var verbose = false

    func validate() throws {
        guard AlgorithmKind(rawValue: algorithm) != nil else {
            throw ValidationError("unknown algorithm '\(algorithm)'; choose one of: \(AlgorithmKind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard instanceCount >= 1 else { throw ValidationError("--instance-count must be at least 1") }
        guard (threads ?? 1) >= 1 else { throw ValidationError("--threads must be at least 1") }
        guard zeroStage.map({ (0...1).contains($0) }) ?? true else { throw ValidationError("--zero-stage must be 0 or 1") }
    }

    func run() throws {
        let environment = ProcessInfo.processInfo.environment
        let isRank = RankEnvironment.isRank(environment)
        if instanceCount > 1, !isRank {
            do {
                try runCluster()
            } catch let exit as ExitCode {
                throw exit
            } catch {
                FileHandle.standardError.write(Data("error: \(error)\n".utf8))
                throw ExitCode.failure
            }
            return
        }
        // A rank a worker started dies with it (a lost node), rather than train on as an orphan.
        if isRank, let worker = environment["FORGE_WORKER_PID"].flatMap(Int32.init), forge_die_with_parent(worker) != 0 {
            FileHandle.standardError.write(Data("error: the worker that started this rank (pid \(worker)) has gone\n".utf8))
            throw ExitCode.failure
        }
        let logger = Log.logger(verbose: verbose)
        let rank = isRank ? environment["RANK"].flatMap(Int.init) : nil
        let display = ProgressDisplay(logger: logger, quiet: quiet || (rank ?? 0) != 0,
                                      report: (rank ?? 0) == 0 && environment["FORGE_PROGRESS"] == "report")
        do {
            let group: ProcessGroup?
            do {
                group = try rank.map { _ in try RankEnvironment.joinGroup(environment, clusterKey: clusterKey, logger: logger) }
            } catch where rank == 0 && "\(error)".contains("(errno \(EADDRINUSE))") {
                // Another program holds MASTER_PORT on this host: say so with the status a
                // coordinator takes as "try another port" rather than a failed attempt.
                FileHandle.standardError.write(Data("error: \(RankEnvironment.portTakenMarker) \(environment["MASTER_PORT"] ?? "?") is taken on this host: \(error)\n".utf8))
                throw ExitCode(RankEnvironment.portTakenStatus)
            }
            var values = try collectHyperparameters()
            let platform = try PlatformHyperparameters.take(from: &values)
            if group == nil {
                let plan = try TrainingPlan.make(algorithm: AlgorithmKind(rawValue: algorithm) ?? .mlp, hyperparameters: values)
                let ranks = plan.layout.pipelineDegree * plan.layout.tensorDegree
                guard ranks == 1 else {
                    throw ValidationError("this layout needs \(ranks) ranks (pipeline \(plan.layout.pipelineDegree) × tensor \(plan.layout.tensorDegree)); "
                        + "add --instance-count \(ranks) (or a multiple), or run under forge launch --nproc \(ranks)")
                }
            }
            let threads = self.threads ?? platform.threads ?? (group == nil ? min(ProcessInfo.processInfo.activeProcessorCount, 2) : 1)
            // s3:// channels are fetched first; an s3:// output is written here and uploaded after.
            let staging = S3Staging(environment: environment)
            let trainPath = try staging.channel(train, name: "train")
            let validationPath = try validation.map { path throws in try staging.channel(path, name: "validation") }
            let (outputPath, upload) = try staging.output(output)
            let request = TrainingJobRequest(
                algorithm: AlgorithmKind(rawValue: algorithm) ?? .mlp, trainPath: trainPath, validationPath: validationPath,
                hyperparameters: values, outputDirectory: outputPath, contentType: contentType,
                csvHeader: csvHeader, corruptRecords: skipCorruptRecords || platform.skipCorruptRecords ? .skip : .fail,
                checkpointDirectory: checkpointDir, resume: !noResume, trainDistribution: trainDistribution.mode)
            let device = CPUDevice(threadCount: threads)
            logger.info("device \(device.name): \(threads) thread(s), OpenBLAS core \(BLASRuntime.coreName), FTZ/DAZ \(FloatEnvironment.flushesToZero ? "on" : "off")")
            let observer: any TrainingObserver = (group?.rank ?? 0) == 0 ? display : SilentObserver()
            let overlap = RankEnvironment.overlapReduction(environment, threads: threads)
            // SIGTERM (a stopped job, SageMaker's grace period) or SIGINT: finish the step, write a
            // checkpoint, exit. Every rank stops after the same step.
            let signals = SignalLatch(signals: [SIGTERM, SIGINT])
            let result: TrainingResult
            do {
                result = try TrainingJob.run(request, device: device, logger: logger, observer: observer, group: group,
                                             overlapReduction: overlap, shouldStop: { signals.received != nil })
            } catch TrainingError.stopped(let step, let checkpoint) {
                display.finish()
                let signal = signals.received ?? SIGTERM
                if (group?.rank ?? 0) == 0 {
                    logger.info("stopped on signal \(signal) after step \(step)\(checkpoint.map { "; checkpoint \($0)" } ?? "")")
                }
                throw ExitCode(128 + signal)
            }
            display.finish()
            if (group?.rank ?? 0) == 0, let upload {
                try upload()
                logger.info("uploaded model.tar.gz and metrics.json to \(output)")
            }
            let summary = result.metrics.map { "\($0.name)=\(MetricLine.fixed($0.value))" }.joined(separator: " ")
            if (group?.rank ?? 0) == 0 { logger.info("final: \(summary)") }
            if (group?.rank ?? 0) == 0, let entropy = result.unigramEntropy {
                let loss = result.metrics.first { $0.name == "validation:loss" } ?? result.metrics.first { $0.name == "train:loss" }
                let modelPath = (outputPath as NSString).appendingPathComponent("model.tar.gz")
                let report = try LanguageModelReport.lines(modelPath: modelPath, loss: loss, unigramEntropy: entropy)
                // Under a worker, the job's log keeps it (forge train --instance-count prints
                // its own once the job is done).
                if environment["FORGE_WORKER_PID"] == nil {
                    for line in report { print(line) }
                } else {
                    for line in report { logger.info("\(line)") }
                }
            }
        } catch let exit as ExitCode {
            throw exit
        } catch {
            display.finish()
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            throw RankEnvironment.failureStatus(error)
        }
    }

    /// `--instance-count N`: the job on an embedded coordinator with N local workers.
    func runCluster() throws {
        var values = try collectHyperparameters()
        if let threads { values[PlatformHyperparameters.threads] = String(threads) }
        if skipCorruptRecords { values[PlatformHyperparameters.skipCorruptRecords] = "true" }
        // Problems with the hyperparameters are reported here, before any process starts.
        var check = values
        _ = try PlatformHyperparameters.take(from: &check)
        let plan = try TrainingPlan.make(algorithm: AlgorithmKind(rawValue: algorithm) ?? .mlp, hyperparameters: check)
        if case .failure(let error) = plan.layout.dataParallelDegree(worldSize: instanceCount) { throw error }
        try EmbeddedCluster(algorithm: algorithm, train: train, validation: validation, hyperparameters: values, output: output,
                            checkpointDirectory: checkpointDir, instanceCount: instanceCount, distribution: trainDistribution,
                            contentType: contentType, csvHeader: csvHeader, resume: !noResume, clusterKey: clusterKey, quiet: quiet).run()
    }

    /// The JSON file's values, then each -H (later wins), then `--zero-stage`.
    func collectHyperparameters() throws -> [String: String] {
        var values = [String: String]()
        if let path = hyperparameters {
            values = try HyperparameterFile.read(path)
        }
        for item in hyperparameter {
            guard let equals = item.firstIndex(of: "="), equals != item.startIndex else {
                throw TrainingError.io(path: "-H \(item)", reason: "expected key=value")
            }
            values[String(item[..<equals])] = String(item[item.index(after: equals)...])
        }
        // The layout flags say what a job spec says with these keys.
        let layout: [(String, String?)] = [("forge_pipeline_degree", pipelineDegree.map(String.init)),
                                           ("forge_tensor_degree", tensorDegree.map(String.init)),
                                           ("forge_micro_batches", microBatches.map(String.init)),
                                           ("forge_pipeline_schedule", schedule), ("forge_stage_map", stageMap)]
        for case let (key, value?) in layout { values[key] = value }
        // A learning setting's flag travels as its hyperparameter, to every rank and worker.
        if let zeroStage { values["forge_zero_stage"] = String(zeroStage) }
        return values
    }
}

/// Hyperparameters that set how `forge train` runs rather than what it learns, so that a job
/// spec (whose only free-form member is HyperParameters) can say what the flags say.
enum PlatformHyperparameters {
    /// `--threads` per rank.
    static let threads = "forge_threads"
    /// `--skip-corrupt-records`.
    static let skipCorruptRecords = "forge_skip_corrupt_records"

    /// Removes these keys from `values` and returns what they say.
    static func take(from values: inout [String: String]) throws -> (threads: Int?, skipCorruptRecords: Bool) {
        var threads: Int?
        if let text = values.removeValue(forKey: self.threads) {
            guard let count = Int(text), (1...1024).contains(count) else {
                throw ValidationError("hyperparameter \(self.threads) must be an integer from 1 to 1024, not '\(text)'")
            }
            threads = count
        }
        var skip = false
        if let text = values.removeValue(forKey: skipCorruptRecords) {
            switch text.lowercased() {
            case "true", "1", "yes": skip = true
            case "false", "0", "no": skip = false
            default: throw ValidationError("hyperparameter \(skipCorruptRecords) must be 'true' or 'false', not '\(text)'")
            }
        }
        return (threads, skip)
    }
}

/// SageMaker's hyperparameters.json: a JSON object whose values are strings (numbers and
/// booleans are accepted and turned into strings).
enum HyperparameterFile {
    private enum Scalar: Decodable {
        case text(String)

        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let text = try? container.decode(String.self) {
                self = .text(text)
            } else if let flag = try? container.decode(Bool.self) {
                self = .text(flag ? "true" : "false")
            } else if let integer = try? container.decode(Int.self) {
                self = .text(String(integer))
            } else {
                self = .text(String(try container.decode(Double.self)))
            }
        }
    }

    static func read(_ path: String) throws -> [String: String] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TrainingError.io(path: path, reason: "cannot read the hyperparameters file")
        }
        guard let object = try? JSONDecoder().decode([String: Scalar].self, from: data) else {
            throw TrainingError.io(path: path, reason: "not a JSON object of string, number or boolean values, e.g. {\"epochs\": \"10\"}")
        }
        return object.mapValues { if case .text(let text) = $0 { return text }; return "" }
    }
}

/// The values `--train-distribution` takes.
enum TrainDistribution: String, ExpressibleByArgument, CaseIterable {
    case fullyReplicated = "FullyReplicated"
    case shardedByS3Key = "ShardedByS3Key"

    var mode: ShardingMode { self == .fullyReplicated ? .fullyReplicated : .shardedByS3Key }
}
