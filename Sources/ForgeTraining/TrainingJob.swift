// One whole single-process job: read the channels, validate the hyperparameters, train,
// and write `model.tar.gz` and `metrics.json` into the output folder.
import ForgeCollectives
import ForgeData
import ForgeTensor
import Foundation
import Logging

/// What `forge train` asks for.
public struct TrainingJobRequest: Sendable {
    public var algorithm: AlgorithmKind
    public var trainPath: String
    public var validationPath: String?
    public var hyperparameters: [String: String]
    public var outputDirectory: String
    /// `text/csv`, `application/x-libsvm`, `application/x-idx`; nil guesses from file names.
    public var contentType: String?
    public var csvHeader: Bool
    public var corruptRecords: CorruptRecordPolicy
    /// Where checkpoints go (default OUTPUT/checkpoints); the newest one is resumed.
    public var checkpointDirectory: String?
    public var resume: Bool
    /// How the train channel is split across ranks (SageMaker's S3DataDistributionType):
    /// `FullyReplicated` (every rank reads it all and trains on its slice of each global batch)
    /// or `ShardedByS3Key` (each rank reads only its files).
    public var trainDistribution: ShardingMode

    public init(algorithm: AlgorithmKind, trainPath: String, validationPath: String? = nil, hyperparameters: [String: String] = [:],
                outputDirectory: String, contentType: String? = nil, csvHeader: Bool = false,
                corruptRecords: CorruptRecordPolicy = .fail, checkpointDirectory: String? = nil, resume: Bool = true,
                trainDistribution: ShardingMode = .fullyReplicated) {
        self.trainDistribution = trainDistribution
        self.algorithm = algorithm
        self.trainPath = trainPath
        self.validationPath = validationPath
        self.hyperparameters = hyperparameters
        self.outputDirectory = outputDirectory
        self.contentType = contentType
        self.csvHeader = csvHeader
        self.corruptRecords = corruptRecords
        self.checkpointDirectory = checkpointDirectory
        self.resume = resume
    }
}

/// Runs `TrainingJobRequest`s.
public enum TrainingJob {
    /// Validates, loads, trains and writes the outputs; every failure is a thrown error whose
    /// description says what and where (`HyperparameterError`, `DataError`, `TrainingError`).
    /// With a `group`, this process is one rank of a data-parallel job: every rank trains, and
    /// rank 0 alone writes checkpoints, `model.tar.gz` and `metrics.json`.
    public static func run(_ request: TrainingJobRequest, device: any Device, logger: Logger,
                           observer: any TrainingObserver, group: ProcessGroup? = nil,
                           overlapReduction: Bool = true, shouldStop: @escaping @Sendable () -> Bool = { false }) throws -> TrainingResult {
        let plan = try TrainingPlan.make(algorithm: request.algorithm, hyperparameters: request.hyperparameters)
        let format: DataFormat?
        if let type = request.contentType {
            guard let parsed = DataFormat(contentType: type) else {
                throw TrainingError.io(path: type, reason: "unknown content type; use text/csv, application/x-libsvm or application/x-idx")
            }
            format = parsed
        } else {
            format = nil
        }
        let csv = CSVOptions(hasHeader: request.csvHeader, corruptRecords: request.corruptRecords)
        let shardGroup = request.trainDistribution == .shardedByS3Key ? group.flatMap { $0.worldSize > 1 ? $0 : nil } : nil
        let train: Dataset
        var unigramEntropy: Double?
        var validation: Dataset?
        if let length = plan.transformer?.contextLength {
            // A language model reads any files as text, whatever their names.
            let files = try Channel.files(at: request.trainPath)
            let mine = try shardGroup.map { group throws in try Shard(rank: group.rank, worldSize: group.worldSize).files(files) } ?? files
            let corpus = try TextCorpus.load(files: mine, channel: request.trainPath)
            train = try corpus.windows(contextLength: length, channel: request.trainPath)
            unigramEntropy = corpus.unigramEntropy
            logger.info("train channel: \(corpus.bytes.count) bytes of text from \(mine.count) file(s) → \(train.count) windows of \(length + 1) bytes; unigram entropy \(MetricLine.fixed(corpus.unigramEntropy)) nats/byte")
            validation = try request.validationPath.map { path throws in
                let text = try TextCorpus.load(path: path)
                let windows = try text.windows(contextLength: length, channel: path)
                logger.info("validation channel: \(text.bytes.count) bytes of text → \(windows.count) windows")
                return windows
            }
        } else if let shardGroup {
            train = try loadShard(path: request.trainPath, format: format, csv: csv, group: shardGroup, logger: logger)
        } else {
            train = try loadChannel("train", path: request.trainPath, format: format, csv: csv, width: nil, logger: logger)
        }
        if plan.transformer == nil {
            validation = try request.validationPath.map {
                try loadChannel("validation", path: $0, format: format, csv: csv, width: format == .libsvm ? train.width : nil, logger: logger)
            }
        }
        let data = try PreparedData(plan: plan, train: train, validation: validation, shardedAcross: shardGroup)
        let output = request.outputDirectory
        do {
            try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
        } catch {
            throw TrainingError.io(path: output, reason: "cannot create the output folder: \(error.localizedDescription)")
        }
        let trainer = try Trainer(plan: plan, data: data, device: device, group: group, overlapReduction: overlapReduction)
        if (group?.rank ?? 0) == 0, let mode = trainer.reductionMode { logger.info("data parallel: \(mode)") }
        let checkpointDirectory = request.checkpointDirectory ?? (output as NSString).appendingPathComponent("checkpoints")
        let store = CheckpointStore(directory: checkpointDirectory)
        let writer = (group?.rank ?? 0) == 0
        if !request.resume, writer, !store.checkpointFolders().isEmpty {
            for folder in store.checkpointFolders() {
                try? FileManager.default.removeItem(atPath: (checkpointDirectory as NSString).appendingPathComponent(folder))
            }
            logger.info("removed earlier checkpoints in \(checkpointDirectory) (--no-resume)")
        }
        var result = try trainer.run(checkpoints: store, observer: observer, shouldStop: shouldStop)
        if (group?.rank ?? 0) == 0, let overlap = trainer.reductionOverlap, overlap.started > 0 {
            logger.info("data parallel: \(overlap.whileComputing) of \(overlap.started) gradient all-reduces started while backward was still running")
        }
        result.unigramEntropy = unigramEntropy
        guard writer else { return result }
        let modelPath = (output as NSString).appendingPathComponent("model.tar.gz")
        let metricsPath = (output as NSString).appendingPathComponent("metrics.json")
        try write(try result.model.archive(), to: modelPath)
        try write(Array(MetricLine.json(result.metrics).utf8), to: metricsPath)
        logger.info("wrote \(modelPath) and \(metricsPath)")
        return result
    }

    static func loadChannel(_ name: String, path: String, format: DataFormat?, csv: CSVOptions, width: Int?, logger: Logger) throws -> Dataset {
        try report(name, Channel.load(path: path, format: format, csv: csv, libsvmWidth: width), logger: logger)
    }

    /// This rank's files of a ShardedByS3Key train channel (file i of the sorted list goes to
    /// rank i mod world size). The ranks agree on the feature width: LibSVM shards are padded to
    /// the widest; CSV shards of different widths are an error.
    static func loadShard(path: String, format: DataFormat?, csv: CSVOptions, group: ProcessGroup, logger: Logger) throws -> Dataset {
        let all = try Channel.files(at: path)
        let mine = try Shard(rank: group.rank, worldSize: group.worldSize).files(all)
        logger.info("train channel ShardedByS3Key: rank \(group.rank) reads \(mine.count) of \(all.count) file(s)")
        var dataset = try report("train", Channel.load(files: mine, channel: path, format: format, csv: csv), logger: logger)
        var widths: [Float] = [Float(dataset.width), -Float(dataset.width)]
        do {
            try widths.withUnsafeMutableBufferPointer { try group.allReduce($0, op: .max) }
        } catch let error as CollectiveError {
            throw TrainingError.group(error)
        }
        let widest = Int(widths[0]), narrowest = Int(-widths[1])
        guard widest != dataset.width else { return dataset }
        guard format == .libsvm || (format == nil && mine.allSatisfy { DataFormat(fileName: $0) == .libsvm }) else {
            throw TrainingError.widthMismatch(channel: "train", expected: widest, found: narrowest)
        }
        var padded = [Float](repeating: 0, count: dataset.count * widest)
        for row in 0..<dataset.count {
            for column in 0..<dataset.width { padded[row * widest + column] = dataset.features[row * dataset.width + column] }
        }
        dataset = Dataset(features: padded, labels: dataset.labels, width: widest)
        return dataset
    }

    private static func report(_ name: String, _ channel: ChannelData, logger: Logger) throws -> Dataset {
        for problem in channel.skipped.prefix(20) { logger.warning("skipped corrupt record: \(problem)") }
        if channel.skipped.count > 20 { logger.warning("… and \(channel.skipped.count - 20) more corrupt records skipped") }
        let dataset = try channel.combined()
        logger.info("\(name) channel: \(dataset.count) records × \(dataset.width) features from \(channel.files.count) \(channel.format.rawValue) file(s)\(channel.skipped.isEmpty ? "" : ", \(channel.skipped.count) corrupt records skipped")")
        return dataset
    }

    static func write(_ bytes: [UInt8], to path: String) throws(TrainingError) {
        let temporary = path + ".tmp"
        do {
            try Data(bytes).write(to: URL(fileURLWithPath: temporary))
            // rename(2) replaces the old file atomically: a reader sees the old or the new one.
            guard rename(temporary, path) == 0 else {
                throw TrainingError.io(path: path, reason: "cannot rename \(temporary) into place: \(String(cString: strerror(errno)))")
            }
        } catch let error as TrainingError {
            throw error
        } catch {
            throw .io(path: path, reason: "cannot write: \(error.localizedDescription)")
        }
    }
}
