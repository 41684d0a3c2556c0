// What a job's ranks run: `forge train` with the job's algorithm, hyperparameters and channels,
// its output where SageMaker puts it (S3OutputPath/JOBNAME/output), and a checkpoint folder
// that survives attempts, so a restarted job resumes from its newest checkpoint.
import Foundation

/// The local object store: `s3://bucket/key` lives at `root/bucket/key`, and nothing resolves
/// outside `root` (no `..` segments, no symbolic link that leads out).
public struct LocalObjectStore: Sendable {
    public let root: String

    public init(root: String) { self.root = (root as NSString).standardizingPath }

    /// The local path of an `s3://` URI, or an absolute local path as it is.
    public func path(of uri: String) throws(ObjectPathError) -> String {
        if uri.hasPrefix("/") {
            guard !uri.split(separator: "/").contains("..") else { throw .escapes(uri) }
            return uri
        }
        guard uri.hasPrefix("s3://") else { throw .unsupported(uri) }
        let rest = uri.dropFirst("s3://".count)
        let parts = rest.split(separator: "/", omittingEmptySubsequences: false)
        guard let bucket = parts.first, !bucket.isEmpty, bucket != "..", bucket != "." else { throw .badBucket(uri) }
        guard !parts.contains(".."), !parts.contains("."), !rest.contains("\0") else { throw .escapes(uri) }
        let path = ([root] + parts.filter { !$0.isEmpty }.map(String.init)).joined(separator: "/")
        // A symbolic link inside the store must not lead out of it.
        var existing = path
        while !FileManager.default.fileExists(atPath: existing), existing.count > root.count {
            existing = (existing as NSString).deletingLastPathComponent
        }
        let resolved = (existing as NSString).resolvingSymlinksInPath
        let resolvedRoot = (root as NSString).resolvingSymlinksInPath
        guard resolved == resolvedRoot || resolved.hasPrefix(resolvedRoot + "/") else { throw .escapes(uri) }
        return path
    }
}

/// Why a URI has no place in the object store.
public enum ObjectPathError: Error, Equatable, CustomStringConvertible {
    case escapes(String)
    case unsupported(String)
    case badBucket(String)

    public var description: String {
        switch self {
        case .escapes(let uri): return "\(uri) leads outside the object store"
        case .unsupported(let uri): return "\(uri): only s3:// URIs and absolute local paths are supported here"
        case .badBucket(let uri): return "\(uri) names no bucket"
        }
    }
}

/// Why a job cannot be turned into rank commands.
public struct RankPlanError: Error, CustomStringConvertible {
    public let description: String
}

/// The command every rank of a job runs.
public struct RankPlan: Sendable {
    public let arguments: [String]
    /// Where the model goes: a folder of the local store, or `s3://…/JOB/output` in a bucket
    /// of an external endpoint (`outputIsExternal`).
    public let outputDirectory: String
    public let outputIsExternal: Bool
    /// Added to every rank's environment: the endpoints of the job's external buckets.
    public let environment: [String: String]
    public let checkpointDirectory: String
    public let jobDirectory: String

    /// Whether the job runs the user's program (script mode) rather than a built-in.
    public let isScriptMode: Bool

    /// Where a script-mode attempt's ranks leave their model files, packed into model.tar.gz.
    public func modelGather(attempt: Int) -> String {
        (jobDirectory as NSString).appendingPathComponent("attempt-\(attempt)/model")
    }

    /// Where a script-mode attempt's ranks leave /opt/ml/output/data, packed into output.tar.gz.
    public func outputDataGather(attempt: Int) -> String {
        (jobDirectory as NSString).appendingPathComponent("attempt-\(attempt)/output-data")
    }

    public init(spec: TrainingJobSpec, configuration: CoordinatorConfiguration, attempt: Int = 1) throws {
        let store = LocalObjectStore(root: configuration.objectRoot)
        let buckets = configuration.buckets
        jobDirectory = (configuration.stateDirectory as NSString).appendingPathComponent("jobs/\(spec.name)")
        let outputURI = spec.outputPath.hasSuffix("/") ? "\(spec.outputPath)\(spec.name)/output" : "\(spec.outputPath)/\(spec.name)/output"
        outputIsExternal = buckets.endpoint(of: outputURI) != nil
        outputDirectory = outputIsExternal ? outputURI : try store.path(of: outputURI)
        let source = ScriptHyperparameters.reserved("sagemaker_submit_directory", in: spec.hyperParameters)
        environment = buckets.environment(for: spec.channels.map(\.uri) + [outputURI] + (source.map { [$0] } ?? []))
        checkpointDirectory = try spec.checkpointUri.map { uri throws in try store.path(of: uri) }
            ?? (configuration.stateDirectory as NSString).appendingPathComponent("checkpoints/\(spec.name)")
        guard let algorithm = spec.builtInAlgorithm else {
            guard ScriptHyperparameters.reserved("sagemaker_program", in: spec.hyperParameters) != nil else {
                throw RankPlanError(description: "\(spec.trainingImage ?? "this image") is not a built-in forge/<algorithm> image, so the job runs in "
                    + "script mode, which needs the hyperparameter sagemaker_program (the entry point; the SageMaker SDK sets it)")
            }
            isScriptMode = true
            arguments = try RankPlan.containerArguments(spec: spec, store: store, buckets: buckets, jobDirectory: jobDirectory,
                                                        checkpointDirectory: checkpointDirectory, attempt: attempt)
            return
        }
        isScriptMode = false
        guard let train = spec.channels.first(where: { $0.name == "train" }) else {
            throw RankPlanError(description: "the job has no channel named train")
        }
        // A channel in an external bucket stays a URI: the rank fetches it.
        func channel(_ uri: String) throws -> String { buckets.endpoint(of: uri) != nil ? uri : try store.path(of: uri) }
        var arguments = ["forge", "train", "--algorithm", algorithm, "--train", try channel(train.uri),
                         "--output", outputDirectory, "--checkpoint-dir", checkpointDirectory, "--quiet",
                         "--train-distribution", train.distribution]
        if let validation = spec.channels.first(where: { $0.name == "validation" }) {
            arguments += ["--validation", try channel(validation.uri)]
        }
        // SageMaker's MIME parameters: `text/csv;header=present` says the files start with a header.
        if let type = train.contentType {
            let parts = type.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
            if let base = parts.first, !base.isEmpty { arguments += ["--content-type", base] }
            if parts.dropFirst().contains(where: { $0.lowercased() == "header=present" }) { arguments.append("--csv-header") }
        }
        for (key, value) in spec.hyperParameters.sorted(by: { $0.key < $1.key }) { arguments += ["-H", "\(key)=\(value)"] }
        self.arguments = arguments
    }
}
