// Script mode: a job whose TrainingImage is not a built-in runs the user's program on each
// worker under SageMaker's training-container contract. The coordinator resolves the job into
// a `ContainerJob` (paths instead of URIs), `forge container` lays out the /opt/ml tree for one
// rank and runs the program, and the coordinator packs the ranks' model folders into
// model.tar.gz when every rank has succeeded.
import ForgeArchive
import ForgeS3
import Foundation

/// What one script-mode rank needs, with every URI already resolved to a local path.
public struct ContainerJob: Codable, Sendable, Equatable {
    public struct Channel: Codable, Sendable, Equatable {
        public var name: String
        /// A file or a folder of files.
        public var path: String
        public var distribution: String
        public var contentType: String?
        public var inputMode: String
    }

    public var jobName: String
    public var jobArn: String
    public var image: String
    public var hyperParameters: [String: String]
    public var channels: [Channel]
    public var instanceType: String
    /// `sagemaker_submit_directory` as a local path (a .tar.gz or a folder), if given.
    public var sourceDirectory: String?
    /// Where the job's checkpoints live (CheckpointConfig.S3Uri, or the job's default folder).
    public var checkpointDirectory: String
    /// CheckpointConfig.LocalPath (SageMaker's default /opt/ml/checkpoints), inside the tree.
    public var checkpointLocalPath: String
    /// The attempt's shared folders where every rank leaves its model and output data files.
    public var modelGather: String
    public var outputDataGather: String
    public var environment: [String: String]
    public var region: String
}

/// The prepared Python environment a framework image stands for.
public enum ScriptFramework: String, Sendable, CaseIterable {
    case sklearn = "scikit-learn"
    case xgboost
    case pytorch
    case tensorflow
    case python

    /// The framework of a SageMaker framework image URI (the SDK builds names like
    /// `…/sagemaker-scikit-learn:1.2-1-cpu-py3`); any other image runs on plain Python.
    public init(image: String) {
        let name = image.split(separator: "/").last.map(String.init)?.lowercased() ?? image.lowercased()
        if name.contains("scikit-learn") || name.contains("sklearn") {
            self = .sklearn
        } else if name.contains("xgboost") {
            self = .xgboost
        } else if name.contains("pytorch") || name.contains("torch") {
            self = .pytorch
        } else if name.contains("tensorflow") {
            self = .tensorflow
        } else {
            self = .python
        }
    }

    /// The packages its environment holds (on top of what the system's Python has).
    public var packages: [String] {
        switch self {
        case .sklearn: return ["scikit-learn", "pandas", "numpy", "scipy", "joblib"]
        case .xgboost: return ["xgboost", "scikit-learn", "pandas", "numpy", "scipy"]
        case .pytorch: return ["torch", "numpy"]
        case .tensorflow: return ["tensorflow", "numpy"]
        case .python: return []
        }
    }
}

/// How SageMaker's training toolkit turns hyperparameters into what a script sees.
public enum ScriptHyperparameters {
    /// Keys the platform keeps for itself: never passed to the script as arguments.
    public static func isReserved(_ key: String) -> Bool {
        key.hasPrefix("sagemaker_") || key == "_tuning_objective_metric" || key == "default_user_module_name"
    }

    /// A value as the toolkit reads it: JSON when it parses (`"3"` → 3, `"\"adam\""` → adam,
    /// `"[64, 32]"` → a list), else the raw string.
    public static func decode(_ text: String) -> JSONValue {
        JSONValue.parse(text) ?? .string(text)
    }

    /// A decoded value as a string argument: what Python's `str()` gives (`True`, `[64, 32]`),
    /// and `a=1,b=2` for a map.
    public static func argument(_ value: JSONValue) -> String {
        if case .object(let members) = value {
            return members.sorted { $0.key < $1.key }.map { "\($0.key)=\(python($0.value, nested: false))" }.joined(separator: ",")
        }
        return python(value, nested: false)
    }

    /// Python's `str()` of a value (`repr()` inside lists and maps).
    static func python(_ value: JSONValue, nested: Bool) -> String {
        switch value {
        case .string(let text):
            return nested ? "'" + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "'", with: "\\'") + "'" : text
        case .bool(let flag):
            return flag ? "True" : "False"
        case .null:
            return "None"
        case .number(let literal):
            if !literal.contains(where: { ".eE".contains($0) }) { return literal }
            guard let double = Double(literal) else { return literal }
            if double == double.rounded(), abs(double) < 1e16 { return String(format: "%.1f", double) }
            return "\(double)"
        case .array(let items):
            return "[" + items.map { python($0, nested: true) }.joined(separator: ", ") + "]"
        case .object(let members):
            return "{" + members.sorted { $0.key < $1.key }.map { "'\($0.key)': \(python($0.value, nested: true))" }.joined(separator: ", ") + "}"
        }
    }

    /// The script's command-line arguments: user keys sorted, `--key value` (`-k value` for a
    /// one-letter key).
    public static func arguments(_ hyperParameters: [String: String]) -> [String] {
        hyperParameters.keys.sorted().filter { !isReserved($0) }.flatMap { key in
            [key.count == 1 ? "-\(key)" : "--\(key)", argument(decode(hyperParameters[key] ?? ""))]
        }
    }

    /// A reserved key's value as the toolkit reads it (the SDK JSON-encodes them:
    /// `"\"train.py\""`).
    public static func reserved(_ key: String, in hyperParameters: [String: String]) -> String? {
        guard let raw = hyperParameters[key] else { return nil }
        if case .string(let text) = decode(raw) { return text }
        return raw
    }
}

extension RankPlan {
    /// The command of a script-mode rank: `forge container` with the resolved job.
    static func containerArguments(spec: TrainingJobSpec, store: LocalObjectStore, buckets: BucketMap, jobDirectory: String,
                                   checkpointDirectory: String, attempt: Int) throws -> [String] {
        // A URI in an external bucket stays a URI: the rank fetches it.
        func local(_ uri: String) throws -> String { buckets.endpoint(of: uri) != nil ? uri : try store.path(of: uri) }
        var channels = [ContainerJob.Channel]()
        for channel in spec.channels {
            channels.append(ContainerJob.Channel(name: channel.name, path: try local(channel.uri), distribution: channel.distribution,
                                                 contentType: channel.contentType, inputMode: channel.inputMode ?? spec.inputMode))
        }
        let source = try ScriptHyperparameters.reserved("sagemaker_submit_directory", in: spec.hyperParameters).map { uri throws in
            try local(uri)
        }
        let attemptDirectory = (jobDirectory as NSString).appendingPathComponent("attempt-\(attempt)")
        let job = ContainerJob(jobName: spec.name, jobArn: "arn:aws:sagemaker:us-east-1:000000000000:training-job/\(spec.name)",
                               image: spec.trainingImage ?? spec.algorithmName ?? "", hyperParameters: spec.hyperParameters,
                               channels: channels, instanceType: spec.instanceType, sourceDirectory: source,
                               checkpointDirectory: checkpointDirectory,
                               checkpointLocalPath: spec.checkpointLocalPath ?? "/opt/ml/checkpoints",
                               modelGather: (attemptDirectory as NSString).appendingPathComponent("model"),
                               outputDataGather: (attemptDirectory as NSString).appendingPathComponent("output-data"),
                               environment: spec.environment, region: "us-east-1")
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let json = (try? encoder.encode(job)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
        return ["forge", "container", "--job", json]
    }
}

/// Why a model folder could not be packed.
public struct ScriptArtifactError: Error, CustomStringConvertible {
    public let description: String
}

/// Packs a script-mode job's artifacts once every rank has succeeded.
public enum ScriptArtifacts {
    /// The folders and regular files under `folder` (relative names, sorted), never following
    /// a symbolic link nor descending through one: a script must not get files of the host
    /// into its model by linking to them.
    public static func contents(of folder: String) -> [(name: String, isDirectory: Bool)] {
        let fileManager = FileManager.default
        var names = [String]()
        if let walker = fileManager.enumerator(atPath: folder) {
            while let name = walker.nextObject() as? String { names.append(name) }
        }
        var links = [String]()
        var found = [(name: String, isDirectory: Bool)]()
        for name in names.sorted() {
            if links.contains(where: { name.hasPrefix($0 + "/") }) { continue }
            let type = (try? fileManager.attributesOfItem(atPath: (folder as NSString).appendingPathComponent(name)))?[.type] as? FileAttributeType
            switch type {
            case .typeDirectory?: found.append((name, true))
            case .typeRegular?: found.append((name, false))
            case .typeSymbolicLink?: links.append(name)
            default: continue
            }
        }
        return found
    }

    /// Packs an attempt's gathered model (and output data) into the job's folder, then puts
    /// the archives where the output goes: the local store, or the external bucket.
    public static func publish(plan: RankPlan, attempt: Int, buckets: BucketMap) throws {
        let packed = (plan.jobDirectory as NSString).appendingPathComponent("attempt-\(attempt)/packed")
        try pack(plan.modelGather(attempt: attempt), to: packed + "/model.tar.gz")
        var names = ["model.tar.gz"]
        if FileManager.default.fileExists(atPath: plan.outputDataGather(attempt: attempt)) {
            try pack(plan.outputDataGather(attempt: attempt), to: packed + "/output.tar.gz")
            names.append("output.tar.gz")
        }
        for name in names {
            if plan.outputIsExternal, let endpoint = buckets.endpoint(of: plan.outputDirectory),
               let (bucket, key) = S3Client.split(plan.outputDirectory + "/" + name) {
                try S3Client(endpoint: endpoint).put(bucket: bucket, key: key, file: packed + "/" + name)
            } else {
                let target = (plan.outputDirectory as NSString).appendingPathComponent(name)
                try FileManager.default.createDirectory(atPath: plan.outputDirectory, withIntermediateDirectories: true)
                _ = try? FileManager.default.removeItem(atPath: target)
                try FileManager.default.copyItem(atPath: packed + "/" + name, toPath: target)
            }
        }
    }

    /// Tars and gzips everything under `folder` (relative names, sorted) into `archive`; an
    /// absent folder gives an empty archive, as SageMaker uploads one for an empty model folder.
    public static func pack(_ folder: String, to archive: String) throws {
        var entries = [TarEntry]()
        let fileManager = FileManager.default
        for (name, isDirectory) in contents(of: folder) {
            if isDirectory {
                entries.append(TarEntry(name: name, kind: .directory))
            } else {
                guard let bytes = fileManager.contents(atPath: (folder as NSString).appendingPathComponent(name)) else {
                    throw ScriptArtifactError(description: "cannot read \(name) in the model folder")
                }
                entries.append(TarEntry(name: name, bytes: [UInt8](bytes)))
            }
        }
        try fileManager.createDirectory(atPath: (archive as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let bytes = try TarArchive.writeGzipped(entries)
        let temporary = archive + ".partial"
        try Data(bytes).write(to: URL(fileURLWithPath: temporary))
        _ = try? fileManager.removeItem(atPath: archive)
        try fileManager.moveItem(atPath: temporary, toPath: archive)
    }
}
