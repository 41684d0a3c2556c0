// A training job as CreateTrainingJob describes it, decoded once and validated once: either a
// typed spec that cannot be invalid, or every problem at once, in SageMaker's words.
import ForgeData
import Foundation
import Yams

/// One input channel.
public struct ChannelSpec: Codable, Sendable, Equatable {
    public var name: String
    /// `s3://bucket/prefix`, `https://…`, or (Forge's own) an absolute local path.
    public var uri: String
    public var distribution: String
    public var contentType: String?
    public var compression: String?
    public var inputMode: String?

    /// `S3DataDistributionType` as a sharding mode.
    public var sharding: ShardingMode { distribution == "ShardedByS3Key" ? .shardedByS3Key : .fullyReplicated }
}

/// A metric read from a job's log lines: the first capture group of `regex` is its value.
public struct MetricDefinition: Codable, Sendable, Equatable {
    public var name: String
    public var regex: String

    public init(name: String, regex: String) {
        self.name = name
        self.regex = regex
    }
}

/// A validated CreateTrainingJob request.
public struct TrainingJobSpec: Codable, Sendable, Equatable {
    public var name: String
    public var roleArn: String
    /// `forge/<algorithm>[:tag]` (or `AlgorithmName`) for a built-in; any other image is script mode.
    public var trainingImage: String?
    public var algorithmName: String?
    public var inputMode: String
    /// `AlgorithmSpecification.MetricDefinitions`: regexes applied to the job's log lines.
    public var metricDefinitions: [MetricDefinition]?
    public var hyperParameters: [String: String]
    public var channels: [ChannelSpec]
    public var outputPath: String
    public var instanceType: String
    public var instanceCount: Int
    public var volumeSizeInGB: Int?
    public var maxRuntimeSeconds: Int
    public var checkpointUri: String?
    public var checkpointLocalPath: String?
    public var maxRetryAttempts: Int
    public var environment: [String: String]
    public var tags: [String: String]

    /// The hyperparameter that lets a job resume on fewer instances (elastic resume).
    public static let minInstanceCountKey = "forge_min_instance_count"

    /// The fewest instances a restarted attempt may run on (`forge_min_instance_count`); the
    /// full `instanceCount` when the job does not allow elastic resume.
    public var minInstanceCount: Int {
        hyperParameters[TrainingJobSpec.minInstanceCountKey].flatMap(Int.init).map { min(max($0, 1), instanceCount) } ?? instanceCount
    }

    /// Ranks one copy of the model is split across (`forge_pipeline_degree` ×
    /// `forge_tensor_degree`): a job runs on a multiple of it.
    public var modelSplit: Int {
        ["forge_pipeline_degree", "forge_tensor_degree"].reduce(1) { $0 * (hyperParameters[$1].flatMap(Int.init).map { max($0, 1) } ?? 1) }
    }

    /// The built-in algorithm this job runs (`forge/mlp:latest` → `mlp`), or nil for script mode.
    public var builtInAlgorithm: String? {
        if let algorithmName, !algorithmName.hasPrefix("arn:") { return algorithmName }
        guard let image = trainingImage, image.hasPrefix("forge/") else { return nil }
        let rest = image.dropFirst("forge/".count)
        return String(rest.split(separator: ":", maxSplits: 1).first ?? rest)
    }

    /// Decodes a CreateTrainingJob request body (JSON).
    public static func decode(json: Data) throws(SpecError) -> TrainingJobSpec {
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: json)
        } catch {
            throw SpecError(["the request is not JSON: \(error.localizedDescription)"])
        }
        return try decode(object: object)
    }

    /// Decodes a job file in YAML (or JSON, which YAML includes) with CreateTrainingJob's members.
    public static func decode(yaml: String) throws(SpecError) -> TrainingJobSpec {
        let object: Any?
        do {
            object = try Yams.load(yaml: yaml)
        } catch {
            throw SpecError(["the job file is not YAML: \(error)"])
        }
        return try decode(object: object as Any)
    }

    /// Decodes an already parsed request (dictionary of CreateTrainingJob's members).
    public static func decode(object: Any) throws(SpecError) -> TrainingJobSpec {
        guard let root = object as? [String: Any] else { throw SpecError(["the request must be an object of CreateTrainingJob's members"]) }
        var check = Checker()
        let name = check.string(root, "TrainingJobName", required: true, length: 1...63,
                                pattern: "^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$") ?? ""
        let role = check.string(root, "RoleArn", required: true, length: 20...2048,
                                pattern: "^arn:aws[a-z\\-]*:iam::\\d{12}:role/?[a-zA-Z_0-9+=,.@\\-_/]+$") ?? ""
        // Algorithm.
        let algorithm = check.object(root, "AlgorithmSpecification", required: true) ?? [:]
        let image = check.string(algorithm, "TrainingImage", at: "algorithmSpecification", length: 0...255)
        let algorithmName = check.string(algorithm, "AlgorithmName", at: "algorithmSpecification", length: 1...170)
        if root["AlgorithmSpecification"] != nil, image == nil, algorithmName == nil {
            check.problem("algorithmSpecification", "give TrainingImage (forge/<algorithm> for a built-in) or AlgorithmName")
        }
        let inputMode = check.string(algorithm, "TrainingInputMode", at: "algorithmSpecification", required: root["AlgorithmSpecification"] != nil,
                                     oneOf: ["File", "Pipe", "FastFile"]) ?? "File"
        var metricDefinitions = [MetricDefinition]()
        for (index, raw) in (check.list(algorithm, "MetricDefinitions", count: 0...40) ?? []).enumerated() {
            let at = "algorithmSpecification.metricDefinitions.\(index + 1).member"
            guard let definition = raw as? [String: Any] else {
                check.problem(at, "a metric definition is {Name, Regex}")
                continue
            }
            let metric = check.string(definition, "Name", at: at, required: true, length: 1...255, pattern: "^.+$")
            let regex = check.string(definition, "Regex", at: at, required: true, length: 1...500, pattern: "^.+$")
            if let regex, (try? NSRegularExpression(pattern: regex)) == nil {
                check.problem("\(at).regex", "'\(regex)' is not a regular expression")
            } else if let metric, let regex {
                metricDefinitions.append(MetricDefinition(name: metric, regex: regex))
            }
        }
        // Hyperparameters: a map of strings.
        var hyperParameters = [String: String]()
        if let raw = root["HyperParameters"] {
            if let map = raw as? [String: Any] {
                if map.count > 100 { check.problem("hyperParameters", "at most 100 hyperparameters, got \(map.count)") }
                for (key, value) in map.sorted(by: { $0.key < $1.key }) {
                    guard let text = value as? String else {
                        check.problem("hyperParameters.\(key)", "values are strings (SageMaker passes every hyperparameter as a string); write \"\(value)\"")
                        continue
                    }
                    if key.count > 256 || text.count > 2500 { check.problem("hyperParameters.\(key)", "keys are at most 256 characters, values 2500") }
                    hyperParameters[key] = text
                }
            } else {
                check.problem("hyperParameters", "must be a map of strings to strings")
            }
        }
        // Channels.
        var channels = [ChannelSpec]()
        let rawChannels = check.list(root, "InputDataConfig", count: 1...20) ?? []
        for (index, raw) in rawChannels.enumerated() {
            let at = "inputDataConfig.\(index + 1).member"
            guard let channel = raw as? [String: Any] else {
                check.problem(at, "a channel is an object with ChannelName and DataSource")
                continue
            }
            let channelName = check.string(channel, "ChannelName", at: at, required: true, length: 1...64, pattern: "^[A-Za-z0-9.\\-_]+$")
            if channelName == "." || channelName == ".." { check.problem("\(at).channelName", "'\(channelName ?? "")' cannot name a channel folder") }
            let source = check.object(channel, "DataSource", at: at, required: true) ?? [:]
            let s3 = check.object(source, "S3DataSource", at: "\(at).dataSource", required: channel["DataSource"] != nil) ?? [:]
            let s3At = "\(at).dataSource.s3DataSource"
            _ = check.string(s3, "S3DataType", at: s3At, required: source["S3DataSource"] != nil, oneOf: ["S3Prefix", "ManifestFile", "AugmentedManifestFile"])
            if (s3["S3DataType"] as? String).map({ $0 != "S3Prefix" }) == true {
                check.problem("\(s3At).s3DataType", "Forge reads S3Prefix channels only")
            }
            let uri = check.uri(s3, "S3Uri", at: s3At, required: source["S3DataSource"] != nil)
            let distribution = check.string(s3, "S3DataDistributionType", at: s3At, oneOf: ["FullyReplicated", "ShardedByS3Key"]) ?? "FullyReplicated"
            let contentType = check.string(channel, "ContentType", at: at, length: 0...256)
            let compression = check.string(channel, "CompressionType", at: at, oneOf: ["None", "Gzip"])
            let channelMode = check.string(channel, "InputMode", at: at, oneOf: ["File", "Pipe", "FastFile"])
            if let channelName, let uri {
                if channels.contains(where: { $0.name == channelName }) { check.problem("\(at).channelName", "channel \(channelName) appears twice") }
                channels.append(ChannelSpec(name: channelName, uri: uri, distribution: distribution, contentType: contentType,
                                            compression: compression, inputMode: channelMode))
            }
        }
        // Output, resources, limits.
        let output = check.object(root, "OutputDataConfig", required: true) ?? [:]
        let outputPath = check.uri(output, "S3OutputPath", at: "outputDataConfig", required: root["OutputDataConfig"] != nil) ?? ""
        let resources = check.object(root, "ResourceConfig", required: true) ?? [:]
        let instanceType = check.string(resources, "InstanceType", at: "resourceConfig", required: root["ResourceConfig"] != nil,
                                        length: 1...64, pattern: "^[a-z0-9][a-z0-9.\\-]*$") ?? ""
        let instanceCount = check.integer(resources, "InstanceCount", at: "resourceConfig", required: root["ResourceConfig"] != nil, range: 1...4096) ?? 1
        let volume = check.integer(resources, "VolumeSizeInGB", at: "resourceConfig", range: 0...16384)
        if let text = hyperParameters[TrainingJobSpec.minInstanceCountKey] {
            if let minimum = Int(text), (1...instanceCount).contains(minimum) {
                // Valid.
            } else {
                check.problem("hyperParameters.\(TrainingJobSpec.minInstanceCountKey)",
                              "the fewest instances the job may resume on: an integer from 1 to its InstanceCount (\(instanceCount)), not '\(text)'")
            }
        }
        // A model split across P × T ranks runs on a multiple of that many instances.
        var split = 1
        for key in ["forge_pipeline_degree", "forge_tensor_degree"] {
            guard let text = hyperParameters[key] else { continue }
            if let degree = Int(text), (1...4096).contains(degree) {
                split *= degree
            } else {
                check.problem("hyperParameters.\(key)", "an integer from 1 to 4096, not '\(text)'")
            }
        }
        if split > 1, instanceCount % split != 0 {
            check.problem("hyperParameters.forge_pipeline_degree",
                          "pipeline degree × tensor degree = \(split) does not divide InstanceCount \(instanceCount); choose degrees whose product divides it")
        }
        let stopping = check.object(root, "StoppingCondition") ?? [:]
        let maxRuntime = check.integer(stopping, "MaxRuntimeInSeconds", at: "stoppingCondition", range: 1...2_419_200) ?? 86_400
        let checkpoint = check.object(root, "CheckpointConfig")
        let checkpointUri = checkpoint.flatMap { check.uri($0, "S3Uri", at: "checkpointConfig", required: true) }
        let checkpointLocal = checkpoint.flatMap { check.string($0, "LocalPath", at: "checkpointConfig", length: 1...4096) }
        let retry = check.object(root, "RetryStrategy")
        let retries = retry.flatMap { check.integer($0, "MaximumRetryAttempts", at: "retryStrategy", required: true, range: 1...30) } ?? 0
        var environment = [String: String]()
        if let raw = check.object(root, "Environment") {
            for (key, value) in raw.sorted(by: { $0.key < $1.key }) {
                guard key.range(of: "^[a-zA-Z_][a-zA-Z0-9_]*$", options: .regularExpression) != nil, key.count <= 512,
                      let text = value as? String, text.count <= 512 else {
                    check.problem("environment.\(key)", "names match [a-zA-Z_][a-zA-Z0-9_]* and values are strings, each at most 512 characters")
                    continue
                }
                environment[key] = text
            }
        }
        var tags = [String: String]()
        for (index, raw) in (check.list(root, "Tags", count: 0...50) ?? []).enumerated() {
            guard let tag = raw as? [String: Any], let key = tag["Key"] as? String, let value = tag["Value"] as? String,
                  (1...128).contains(key.count), value.count <= 256 else {
                check.problem("tags.\(index + 1).member", "a tag is {Key: 1-128 characters, Value: at most 256}")
                continue
            }
            tags[key] = value
        }
        guard check.problems.isEmpty else { throw SpecError(check.problems) }
        return TrainingJobSpec(name: name, roleArn: role, trainingImage: image, algorithmName: algorithmName, inputMode: inputMode,
                               metricDefinitions: metricDefinitions.isEmpty ? nil : metricDefinitions,
                               hyperParameters: hyperParameters, channels: channels, outputPath: outputPath, instanceType: instanceType,
                               instanceCount: instanceCount, volumeSizeInGB: volume, maxRuntimeSeconds: maxRuntime,
                               checkpointUri: checkpointUri, checkpointLocalPath: checkpointLocal, maxRetryAttempts: retries,
                               environment: environment, tags: tags)
    }
}

/// Every problem with a request, as SageMaker words a `ValidationException`.
public struct SpecError: Error, Equatable, CustomStringConvertible {
    public let problems: [String]

    public init(_ problems: [String]) { self.problems = problems }

    public var description: String {
        "\(problems.count) validation error\(problems.count == 1 ? "" : "s") detected: " + problems.joined(separator: "; ")
    }
}

/// Collects problems while reading members of a decoded request.
private struct Checker {
    var problems: [String] = []

    mutating func problem(_ at: String, _ what: String) { problems.append("\(at): \(what)") }

    private static func member(_ at: String?, _ key: String) -> String {
        let camel = key.prefix(1).lowercased() + key.dropFirst()
        return at.map { "\($0).\(camel)" } ?? camel
    }

    mutating func string(_ object: [String: Any], _ key: String, at: String? = nil, required: Bool = false,
                         length: ClosedRange<Int>? = nil, pattern: String? = nil, oneOf: [String]? = nil) -> String? {
        let path = Checker.member(at, key)
        guard let raw = object[key] else {
            if required { problem(path, "Member must not be null") }
            return nil
        }
        guard let value = raw as? String else {
            problem(path, "Value '\(raw)' failed to satisfy constraint: Member must be a string")
            return nil
        }
        if let length, !length.contains(value.count) {
            problem(path, "Value '\(value)' failed to satisfy constraint: Member must have length between \(length.lowerBound) and \(length.upperBound)")
            return nil
        }
        if let pattern, value.range(of: pattern, options: .regularExpression) == nil {
            problem(path, "Value '\(value)' failed to satisfy constraint: Member must satisfy regular expression pattern: \(pattern)")
            return nil
        }
        if let oneOf, !oneOf.contains(value) {
            problem(path, "Value '\(value)' failed to satisfy constraint: Member must satisfy enum value set: [\(oneOf.joined(separator: ", "))]")
            return nil
        }
        return value
    }

    mutating func integer(_ object: [String: Any], _ key: String, at: String? = nil, required: Bool = false, range: ClosedRange<Int>) -> Int? {
        let path = Checker.member(at, key)
        guard let raw = object[key] else {
            if required { problem(path, "Member must not be null") }
            return nil
        }
        var value: Int?
        if type(of: raw) != Bool.self {
            if let integer = raw as? Int {
                value = integer
            } else if let real = raw as? Double, real == real.rounded(), abs(real) < 1e15 {
                value = Int(real)
            }
        }
        guard let value else {
            problem(path, "Value '\(raw)' failed to satisfy constraint: Member must be an integer")
            return nil
        }
        guard range.contains(value) else {
            problem(path, "Value '\(value)' failed to satisfy constraint: Member must have value between \(range.lowerBound) and \(range.upperBound)")
            return nil
        }
        return value
    }

    mutating func object(_ object: [String: Any], _ key: String, at: String? = nil, required: Bool = false) -> [String: Any]? {
        let path = Checker.member(at, key)
        guard let raw = object[key] else {
            if required { problem(path, "Member must not be null") }
            return nil
        }
        guard let value = raw as? [String: Any] else {
            problem(path, "Member must be an object")
            return nil
        }
        return value
    }

    mutating func list(_ object: [String: Any], _ key: String, count: ClosedRange<Int>) -> [Any]? {
        let path = Checker.member(nil, key)
        guard let raw = object[key] else {
            if count.lowerBound > 0 { problem(path, "Member must not be null") }
            return nil
        }
        guard let value = raw as? [Any] else {
            problem(path, "Member must be a list")
            return nil
        }
        guard count.contains(value.count) else {
            problem(path, "Member must have length between \(count.lowerBound) and \(count.upperBound), got \(value.count)")
            return nil
        }
        return value
    }

    /// An `s3://bucket/key`, `https://host/…` URI or an absolute local path, at most 1024
    /// characters, with no `..` segment.
    mutating func uri(_ object: [String: Any], _ key: String, at: String, required: Bool = false) -> String? {
        guard let value = string(object, key, at: at, required: required, length: 1...1024) else { return nil }
        let path = Checker.member(at, key)
        let isS3 = value.range(of: "^(https|s3)://([^/]+)/?(.*)$", options: .regularExpression) != nil
        guard isS3 || value.hasPrefix("/") else {
            problem(path, "Value '\(value)' failed to satisfy constraint: Member must be an s3:// or https:// URI, or an absolute local path")
            return nil
        }
        let segments = value.split(separator: "/", omittingEmptySubsequences: false)
        guard !segments.contains("..") else {
            problem(path, "Value '\(value)' must not contain a '..' segment")
            return nil
        }
        return value
    }
}

/// Job files: YAML (or JSON) with CreateTrainingJob's members.
public enum JobFile {
    /// The file's members as JSON-ready values (for sending as a CreateTrainingJob request).
    public static func object(yaml: String) throws(SpecError) -> [String: Any] {
        let loaded: Any?
        do {
            loaded = try Yams.load(yaml: yaml)
        } catch {
            throw SpecError(["the job file is not YAML: \(error)"])
        }
        guard let object = loaded as? [String: Any], JSONSerialization.isValidJSONObject(object) else {
            throw SpecError(["the job file must be a mapping of CreateTrainingJob's members"])
        }
        return object
    }
}
