// The SageMaker face of the coordinator's HTTP port: JSON 1.1 (`X-Amz-Target: SageMaker.*`)
// for CreateTrainingJob, DescribeTrainingJob, ListTrainingJobs and StopTrainingJob, with the
// shapes and errors botocore expects. It reads and writes the job store only; the coordinator
// loop picks up new jobs and stop requests from there.
import ForgeCoordinator
import Foundation

/// An API error, as JSON 1.1 carries it: the HTTP status, `__type` and a message.
public struct APIError: Error, Equatable {
    public var status: Int
    public var type: String
    public var message: String

    public init(status: Int = 400, _ type: String, _ message: String) {
        self.status = status
        self.type = type
        self.message = message
    }

    public var body: [UInt8] {
        let object: [String: String] = ["__type": type, "message": message]
        return (try? [UInt8](JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]))) ?? []
    }
}

/// Handles SageMaker operations against a job store.
///
/// Concurrency: Sendable; the store serialises access.
public struct SageMakerAPI: Sendable {
    public let store: JobStore
    /// The local object store's root (for the metrics a finished job left).
    public let objectRoot: String

    public init(store: JobStore, objectRoot: String) {
        self.store = store
        self.objectRoot = objectRoot
    }

    /// Runs `operation` (the part of `X-Amz-Target` after `SageMaker.`) on a JSON body; returns
    /// the response body.
    public func handle(operation: String, body: [UInt8]) throws(APIError) -> [UInt8] {
        let input: [String: Any]
        do {
            let parsed = body.isEmpty ? [:] : try JSONSerialization.jsonObject(with: Data(body))
            guard let object = parsed as? [String: Any] else { throw APIError("SerializationException", "the request body must be a JSON object") }
            input = object
        } catch let error as APIError {
            throw error
        } catch {
            throw APIError("SerializationException", "the request body is not JSON: \(error.localizedDescription)")
        }
        let output: [String: Any]
        switch operation {
        case "CreateTrainingJob": output = try create(input)
        case "DescribeTrainingJob": output = try describe(input)
        case "ListTrainingJobs": output = try list(input)
        case "StopTrainingJob": output = try stop(input)
        case "ListClusterNodes": output = try listNodes(input)
        case "AddTags": output = try addTags(input)
        case "ListTags": output = try listTags(input)
        case "DeleteTags": output = try deleteTags(input)
        default: throw APIError("UnknownOperationException", "SageMaker.\(operation) is not an operation this server knows")
        }
        do {
            return [UInt8](try JSONSerialization.data(withJSONObject: output, options: [.sortedKeys, .withoutEscapingSlashes]))
        } catch {
            throw APIError(status: 500, "InternalFailure", "cannot encode the response: \(error)")
        }
    }

    private func create(_ input: [String: Any]) throws(APIError) -> [String: Any] {
        let spec: TrainingJobSpec
        do {
            spec = try TrainingJobSpec.decode(object: input)
        } catch {
            throw APIError("ValidationException", error.description)
        }
        do {
            let record = try store.create(spec, at: Date())
            return ["TrainingJobArn": record.arn]
        } catch {
            throw SageMakerAPI.translate(error)
        }
    }

    private func name(_ input: [String: Any]) throws(APIError) -> String {
        guard let name = input["TrainingJobName"] as? String, !name.isEmpty else {
            throw APIError("ValidationException", "1 validation error detected: trainingJobName: Member must not be null")
        }
        return name
    }

    private func describe(_ input: [String: Any]) throws(APIError) -> [String: Any] {
        let name = try name(input)
        let record: JobRecord
        do {
            record = try store.job(named: name)
        } catch .notFound {
            // What the real service answers (and the SDK's waiters rely on).
            throw APIError("ValidationException", "Requested resource not found.")
        } catch {
            throw SageMakerAPI.translate(error)
        }
        return SageMakerAPI.description(of: record, metrics: finalMetrics(record))
    }

    private func list(_ input: [String: Any]) throws(APIError) -> [String: Any] {
        var jobs: [JobRecord]
        do {
            jobs = try store.jobs()
        } catch {
            throw SageMakerAPI.translate(error)
        }
        if let status = input["StatusEquals"] as? String {
            guard let wanted = TrainingJobStatus(rawValue: status) else {
                throw APIError("ValidationException", "statusEquals: Value '\(status)' failed to satisfy constraint: Member must satisfy enum value set: [InProgress, Completed, Failed, Stopping, Stopped]")
            }
            jobs = jobs.filter { $0.state.status == wanted }
        }
        if let contains = input["NameContains"] as? String { jobs = jobs.filter { $0.name.contains(contains) } }
        if let after = input["CreationTimeAfter"] as? Double { jobs = jobs.filter { $0.createdAt.timeIntervalSince1970 > after } }
        if let before = input["CreationTimeBefore"] as? Double { jobs = jobs.filter { $0.createdAt.timeIntervalSince1970 < before } }
        let ascending = (input["SortOrder"] as? String) == "Ascending"
        switch input["SortBy"] as? String {
        case "Name": jobs.sort { ascending ? $0.name < $1.name : $0.name > $1.name }
        case "Status": jobs.sort { ascending ? $0.state.status.rawValue < $1.state.status.rawValue : $0.state.status.rawValue > $1.state.status.rawValue }
        default: jobs.sort { ascending ? ($0.createdAt, $0.name) < ($1.createdAt, $1.name) : ($0.createdAt, $0.name) > ($1.createdAt, $1.name) }
        }
        let maxResults = (input["MaxResults"] as? Int).map { min(max($0, 1), 100) } ?? 10
        let start = (input["NextToken"] as? String).flatMap(Int.init) ?? 0
        guard start >= 0, start <= jobs.count else { throw APIError("ValidationException", "the NextToken is not one this server issued") }
        let page = jobs[start..<min(jobs.count, start + maxResults)]
        var output: [String: Any] = ["TrainingJobSummaries": page.map { record -> [String: Any] in
            var summary: [String: Any] = ["TrainingJobName": record.name, "TrainingJobArn": record.arn,
                                          "CreationTime": record.createdAt.timeIntervalSince1970,
                                          "LastModifiedTime": record.modifiedAt.timeIntervalSince1970,
                                          "TrainingJobStatus": record.state.status.rawValue,
                                          "SecondaryStatus": record.state.secondaryStatus.rawValue]
            if let end = record.state.trainingEndTime { summary["TrainingEndTime"] = end.timeIntervalSince1970 }
            return summary
        }]
        if start + maxResults < jobs.count { output["NextToken"] = String(start + maxResults) }
        return output
    }

    private func stop(_ input: [String: Any]) throws(APIError) -> [String: Any] {
        let name = try name(input)
        do {
            let record = try store.job(named: name)
            guard !record.state.status.isTerminal else {
                throw APIError("ValidationException", "The training job \(name) is \(record.state.status.rawValue) and cannot be stopped")
            }
            try store.apply(.stopRequested, to: name, at: Date())
            return [:]
        } catch let error as APIError {
            throw error
        } catch let error as JobStoreError {
            throw SageMakerAPI.translate(error)
        } catch {
            throw APIError(status: 500, "InternalFailure", "\(error)")
        }
    }

    // MARK: Tags

    /// The job a request's ResourceArn names.
    private func taggedJob(_ input: [String: Any]) throws(APIError) -> JobRecord {
        guard let arn = input["ResourceArn"] as? String, !arn.isEmpty else {
            throw APIError("ValidationException", "1 validation error detected: resourceArn: Member must not be null")
        }
        guard let name = store.jobName(fromArn: arn) else {
            throw APIError("ValidationException", "resourceArn: \(arn) is not the ARN of a training job of this server")
        }
        do {
            return try store.job(named: name)
        } catch {
            throw SageMakerAPI.translate(error)
        }
    }

    private static func tagList(_ tags: [String: String]) -> [[String: String]] {
        tags.keys.sorted().map { ["Key": $0, "Value": tags[$0] ?? ""] }
    }

    private func addTags(_ input: [String: Any]) throws(APIError) -> [String: Any] {
        let record = try taggedJob(input)
        guard let raw = input["Tags"] as? [Any], raw.count <= 50 else {
            throw APIError("ValidationException", "1 validation error detected: tags: Member must be a list of at most 50 tags")
        }
        var tags = record.spec.tags
        for (index, item) in raw.enumerated() {
            guard let tag = item as? [String: Any], let key = tag["Key"] as? String, (1...128).contains(key.count) else {
                throw APIError("ValidationException", "tags.\(index + 1).member.key: Member must have length between 1 and 128")
            }
            let value = tag["Value"] as? String ?? ""
            guard value.count <= 256 else { throw APIError("ValidationException", "tags.\(index + 1).member.value: Member must have length at most 256") }
            tags[key] = value
        }
        guard tags.count <= 50 else { throw APIError("ValidationException", "a resource holds at most 50 tags") }
        do {
            try store.setTags(of: record.name, to: tags)
        } catch {
            throw SageMakerAPI.translate(error)
        }
        return ["Tags": SageMakerAPI.tagList(tags)]
    }

    private func listTags(_ input: [String: Any]) throws(APIError) -> [String: Any] {
        ["Tags": SageMakerAPI.tagList(try taggedJob(input).spec.tags)]
    }

    private func deleteTags(_ input: [String: Any]) throws(APIError) -> [String: Any] {
        let record = try taggedJob(input)
        guard let keys = input["TagKeys"] as? [String] else {
            throw APIError("ValidationException", "1 validation error detected: tagKeys: Member must not be null")
        }
        var tags = record.spec.tags
        for key in keys { tags[key] = nil }
        do {
            try store.setTags(of: record.name, to: tags)
        } catch {
            throw SageMakerAPI.translate(error)
        }
        return [:]
    }

    /// The workers of the implicit cluster `default`, as ListClusterNodes summaries.
    private func listNodes(_ input: [String: Any]) throws(APIError) -> [String: Any] {
        let cluster = input["ClusterName"] as? String ?? ""
        guard cluster == "default" || cluster.hasSuffix(":cluster/default") else {
            throw APIError("ResourceNotFound", "Cluster \(cluster) does not exist (this coordinator's workers form the cluster 'default')")
        }
        let nodes: [JobStore.NodeRecord]
        do {
            nodes = try store.nodes()
        } catch {
            throw SageMakerAPI.translate(error)
        }
        let group = input["InstanceGroupNameContains"] as? String
        return ["ClusterNodeSummaries": nodes.filter { group == nil || ($0.instanceGroup ?? "default").contains(group ?? "") }.map { node in
            ["InstanceGroupName": node.instanceGroup ?? "default", "InstanceId": node.id, "InstanceType": node.instanceType ?? "any",
             "LaunchTime": node.registeredAt.timeIntervalSince1970, "PrivateDnsHostname": node.host,
             "InstanceStatus": ["Status": node.status, "Message": node.message]] as [String: Any]
        }]
    }

    /// The job's final metrics: the newest value of each metric its MetricDefinitions found in
    /// its log lines, and, once it completed, what a built-in left in its output's metrics.json.
    private func finalMetrics(_ record: JobRecord) -> [(String, Double)] {
        var values = [String: Double]()
        for metric in (try? store.latestMetrics(of: record.name)) ?? [] { values[metric.name] = metric.value }
        if record.state.status == .completed,
           let path = try? LocalObjectStore(root: objectRoot).path(of: SageMakerAPI.outputPrefix(record.spec) + "metrics.json"),
           let data = FileManager.default.contents(atPath: path),
           let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] {
            for (key, value) in object { if let number = value as? Double { values[key] = number } }
        }
        return values.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }

    static func outputPrefix(_ spec: TrainingJobSpec) -> String {
        (spec.outputPath.hasSuffix("/") ? spec.outputPath : spec.outputPath + "/") + "\(spec.name)/output/"
    }

    static func translate(_ error: JobStoreError) -> APIError {
        switch error {
        case .duplicate(let name): return APIError("ResourceInUse", "Training job \(name) already exists")
        case .notFound(let name): return APIError("ResourceNotFound", "Training job \(name) does not exist")
        case .transition(let reason): return APIError("ValidationException", reason.description)
        case .database(let reason): return APIError(status: 500, "InternalFailure", reason)
        }
    }

    /// DescribeTrainingJob's answer: the request echoed, with the job's statuses and times.
    static func description(of record: JobRecord, metrics: [(String, Double)]) -> [String: Any] {
        let spec = record.spec
        var algorithm: [String: Any] = ["TrainingInputMode": spec.inputMode]
        if let image = spec.trainingImage { algorithm["TrainingImage"] = image }
        if let name = spec.algorithmName { algorithm["AlgorithmName"] = name }
        if let definitions = spec.metricDefinitions { algorithm["MetricDefinitions"] = definitions.map { ["Name": $0.name, "Regex": $0.regex] } }
        var resources: [String: Any] = ["InstanceType": spec.instanceType, "InstanceCount": spec.instanceCount]
        if let volume = spec.volumeSizeInGB { resources["VolumeSizeInGB"] = volume }
        let channels: [[String: Any]] = spec.channels.map { channel in
            var entry: [String: Any] = ["ChannelName": channel.name,
                                        "DataSource": ["S3DataSource": ["S3DataType": "S3Prefix", "S3Uri": channel.uri,
                                                                        "S3DataDistributionType": channel.distribution]]]
            if let type = channel.contentType { entry["ContentType"] = type }
            if let compression = channel.compression { entry["CompressionType"] = compression }
            if let mode = channel.inputMode { entry["InputMode"] = mode }
            return entry
        }
        let state = record.state
        var output: [String: Any] = [
            "TrainingJobName": spec.name, "TrainingJobArn": record.arn, "RoleArn": spec.roleArn,
            "AlgorithmSpecification": algorithm, "HyperParameters": spec.hyperParameters, "InputDataConfig": channels,
            "OutputDataConfig": ["S3OutputPath": spec.outputPath], "ResourceConfig": resources,
            "StoppingCondition": ["MaxRuntimeInSeconds": spec.maxRuntimeSeconds],
            "ModelArtifacts": ["S3ModelArtifacts": outputPrefix(spec) + "model.tar.gz"],
            "TrainingJobStatus": state.status.rawValue, "SecondaryStatus": state.secondaryStatus.rawValue,
            "CreationTime": record.createdAt.timeIntervalSince1970, "LastModifiedTime": record.modifiedAt.timeIntervalSince1970,
            "SecondaryStatusTransitions": state.transitions.map { transition -> [String: Any] in
                var entry: [String: Any] = ["Status": transition.status.rawValue, "StartTime": transition.startTime.timeIntervalSince1970,
                                            "StatusMessage": transition.message]
                if let end = transition.endTime { entry["EndTime"] = end.timeIntervalSince1970 }
                return entry
            },
        ]
        if let reason = state.failureReason { output["FailureReason"] = reason }
        if let start = state.trainingStartTime { output["TrainingStartTime"] = start.timeIntervalSince1970 }
        if let end = state.trainingEndTime {
            output["TrainingEndTime"] = end.timeIntervalSince1970
            if let start = state.trainingStartTime {
                let seconds = max(1, Int(end.timeIntervalSince(start).rounded(.up)))
                output["TrainingTimeInSeconds"] = seconds
                output["BillableTimeInSeconds"] = seconds
            }
        }
        if let uri = spec.checkpointUri {
            output["CheckpointConfig"] = ["S3Uri": uri, "LocalPath": spec.checkpointLocalPath ?? "/opt/ml/checkpoints/"]
        }
        if spec.maxRetryAttempts > 0 { output["RetryStrategy"] = ["MaximumRetryAttempts": spec.maxRetryAttempts] }
        if !spec.environment.isEmpty { output["Environment"] = spec.environment }
        if !metrics.isEmpty {
            let time = (state.trainingEndTime ?? record.modifiedAt).timeIntervalSince1970
            output["FinalMetricDataList"] = metrics.prefix(40).map { ["MetricName": $0.0, "Value": $0.1, "Timestamp": time] }
        }
        return output
    }
}
