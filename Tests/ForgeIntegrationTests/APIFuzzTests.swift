// The HTTP API's request decoding, fuzzed in process against a real store: random and mutated
// JSON bodies for every operation either succeed or get a 4xx error in AWS's shape, never a
// crash, a hang or a server error; and the tag operations keep what they are given.
import ForgeAPI
import ForgeCoordinator
import ForgeTestSupport
import Foundation
import Testing

@Suite struct APIFuzzTests {
    static let bodies: [(target: String, body: String)] = [
        ("SageMaker.CreateTrainingJob", """
        {"TrainingJobName": "fuzz-1", "RoleArn": "arn:aws:iam::123456789012:role/forge",
         "AlgorithmSpecification": {"TrainingImage": "forge/mlp", "TrainingInputMode": "File",
                                    "MetricDefinitions": [{"Name": "loss", "Regex": "loss=([0-9.]+)"}]},
         "HyperParameters": {"epochs": "2", "forge_min_instance_count": "1"},
         "InputDataConfig": [{"ChannelName": "train", "ContentType": "text/csv",
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/train", "S3DataDistributionType": "ShardedByS3Key"}}}],
         "OutputDataConfig": {"S3OutputPath": "s3://b/out"}, "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 2},
         "StoppingCondition": {"MaxRuntimeInSeconds": 60}, "RetryStrategy": {"MaximumRetryAttempts": 1},
         "Tags": [{"Key": "team", "Value": "ml"}], "Environment": {"A": "1"}, "CheckpointConfig": {"S3Uri": "s3://b/ck"}}
        """),
        ("SageMaker.DescribeTrainingJob", #"{"TrainingJobName": "seed"}"#),
        ("SageMaker.ListTrainingJobs", #"{"MaxResults": 2, "SortBy": "Name", "SortOrder": "Ascending", "StatusEquals": "InProgress", "NameContains": "s", "NextToken": "1", "CreationTimeAfter": 0}"#),
        ("SageMaker.StopTrainingJob", #"{"TrainingJobName": "seed"}"#),
        ("SageMaker.ListClusterNodes", #"{"ClusterName": "default", "InstanceGroupNameContains": "x"}"#),
        ("SageMaker.AddTags", #"{"ResourceArn": "arn:aws:sagemaker:us-east-1:000000000000:training-job/seed", "Tags": [{"Key": "a", "Value": "b"}]}"#),
        ("SageMaker.ListTags", #"{"ResourceArn": "arn:aws:sagemaker:us-east-1:000000000000:training-job/seed"}"#),
        ("SageMaker.DeleteTags", #"{"ResourceArn": "arn:aws:sagemaker:us-east-1:000000000000:training-job/seed", "TagKeys": ["a"]}"#),
        ("Logs_20140328.DescribeLogStreams", #"{"logGroupName": "/aws/sagemaker/TrainingJobs", "logStreamNamePrefix": "seed/", "orderBy": "LogStreamName", "limit": 5}"#),
        ("Logs_20140328.GetLogEvents", #"{"logGroupName": "/aws/sagemaker/TrainingJobs", "logStreamName": "seed/attempt-1/rank-0", "startFromHead": true, "nextToken": "f/3", "limit": 2}"#),
    ]

    static func call(_ sagemaker: SageMakerAPI, _ logs: LogsAPI, _ target: String, _ body: [UInt8]) throws(APIError) -> [UInt8] {
        if target.hasPrefix("SageMaker.") { return try sagemaker.handle(operation: String(target.dropFirst(10)), body: body) }
        return try logs.handle(operation: String(target.dropFirst("Logs_20140328.".count)), body: body)
    }

    @Test func mutatedAndRandomBodiesGetAnAnswerOrAClientError() throws {
        let directory = try TemporaryDirectory()
        let store = try JobStore(path: directory.file("forge.sqlite"))
        let seed = try TrainingJobSpec.decode(json: Data(Self.bodies[0].body.replacingOccurrences(of: "fuzz-1", with: "seed").utf8))
        try store.create(seed, at: Date())
        try store.appendLog(job: "seed", stream: "seed/attempt-1/rank-0", lines: ["epoch=1 loss=0.5", "two", "three"], at: Date())
        let sagemaker = SageMakerAPI(store: store, objectRoot: directory.file("objects"))
        let logs = LogsAPI(store: store)
        let mutator = ByteMutator(interesting: ByteMutator.containerSyntax)
        var answered = 0, refused = 0
        for (target, body) in Self.bodies {
            let valid = Array(body.utf8)
            // The unmutated body works (the seed job exists; the created one is new).
            #expect(throws: Never.self, "\(target)") { _ = try Self.call(sagemaker, logs, target, valid) }
            let counts = mutator.fuzz(target, valid: valid, iterations: 2_500) { (seed: UInt64, bytes: [UInt8]) throws(APIError) in
                let result = Result { () throws(APIError) in try Self.call(sagemaker, logs, target, bytes) }
                switch result {
                case .success(let output):
                    #expect((try? JSONSerialization.jsonObject(with: Data(output))) is [String: Any], "\(target) seed \(seed): the answer is a JSON object")
                case .failure(let error):
                    #expect((400..<500).contains(error.status), "\(target) seed \(seed): \(error.status) \(error.type): \(error.message)")
                    #expect(!error.type.isEmpty && (try? JSONSerialization.jsonObject(with: Data(error.body))) is [String: Any])
                    throw error
                }
            }
            answered += counts.decoded
            refused += counts.rejected
        }
        // Random bytes, empty bodies, non-objects, absurd nesting and an unknown operation.
        var random = SplitMix64(seed: 77)
        var odd: [[UInt8]] = [[], Array("null".utf8), Array("[]".utf8), Array("\"x\"".utf8), Array(repeating: UInt8(ascii: "["), count: 100_000),
                               Array((String(repeating: "{\"a\":", count: 5_000) + "1" + String(repeating: "}", count: 5_000)).utf8)]
        for _ in 0..<500 { odd.append((0..<Int.random(in: 0..<64, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }) }
        for body in odd {
            for (target, _) in Self.bodies + [("SageMaker.NoSuchOperation", "")] {
                switch Result(catching: { () throws(APIError) in try Self.call(sagemaker, logs, target, body) }) {
                case .success:
                    answered += 1
                case .failure(let error):
                    #expect((400..<500).contains(error.status), "\(target): \(error.status) \(error.type)")
                    refused += 1
                }
            }
        }
        #expect(refused > 1_000 && answered > 100, "both paths were exercised: \(answered) answered, \(refused) refused")
    }

    @Test func tagsAreAddedListedAndDeleted() throws {
        let directory = try TemporaryDirectory()
        let store = try JobStore(path: directory.file("forge.sqlite"))
        try store.create(try TrainingJobSpec.decode(json: Data(Self.bodies[0].body.utf8)), at: Date())
        let api = SageMakerAPI(store: store, objectRoot: directory.file("objects"))
        let arn = "arn:aws:sagemaker:us-east-1:000000000000:training-job/fuzz-1"
        func tags() throws -> [[String: String]] {
            let output = try api.handle(operation: "ListTags", body: Array(#"{"ResourceArn": "\#(arn)"}"#.utf8))
            return (try JSONSerialization.jsonObject(with: Data(output)) as? [String: Any])?["Tags"] as? [[String: String]] ?? []
        }
        #expect(try tags() == [["Key": "team", "Value": "ml"]], "the tags it was created with")
        _ = try api.handle(operation: "AddTags", body: Array(#"{"ResourceArn": "\#(arn)", "Tags": [{"Key": "stage", "Value": "dev"}, {"Key": "team", "Value": "ops"}]}"#.utf8))
        #expect(try tags() == [["Key": "stage", "Value": "dev"], ["Key": "team", "Value": "ops"]])
        _ = try api.handle(operation: "DeleteTags", body: Array(#"{"ResourceArn": "\#(arn)", "TagKeys": ["team"]}"#.utf8))
        #expect(try tags() == [["Key": "stage", "Value": "dev"]])
        let unknown = #"{"ResourceArn": "arn:aws:sagemaker:us-east-1:000000000000:training-job/nope"}"#
        #expect(throws: APIError("ResourceNotFound", "Training job nope does not exist")) { _ = try api.handle(operation: "ListTags", body: Array(unknown.utf8)) }
    }
}
