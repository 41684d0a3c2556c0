// Job specs: what boto3 sends for CreateTrainingJob decodes (and the same job as YAML decodes
// the same); a bad request lists every problem at once, in SageMaker's words.
import ForgeCoordinator
import Foundation
import Testing

@Suite struct TrainingJobSpecTests {
    static let valid = """
    {"TrainingJobName": "digits-mlp-1", "RoleArn": "arn:aws:iam::123456789012:role/forge",
     "AlgorithmSpecification": {"TrainingImage": "forge/mlp:latest", "TrainingInputMode": "File"},
     "HyperParameters": {"epochs": "20", "hidden_layer_sizes": "64,32"},
     "InputDataConfig": [
        {"ChannelName": "train", "ContentType": "text/csv",
         "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://data/digits/train",
                                         "S3DataDistributionType": "ShardedByS3Key"}}},
        {"ChannelName": "validation", "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "/srv/data/digits/test.csv"}}}],
     "OutputDataConfig": {"S3OutputPath": "s3://models/digits"},
     "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 2, "VolumeSizeInGB": 10},
     "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
     "RetryStrategy": {"MaximumRetryAttempts": 2},
     "Tags": [{"Key": "team", "Value": "ml"}]}
    """

    @Test func whatBoto3SendsDecodes() throws {
        let spec = try TrainingJobSpec.decode(json: Data(Self.valid.utf8))
        #expect(spec.name == "digits-mlp-1")
        #expect(spec.builtInAlgorithm == "mlp")
        #expect(spec.instanceCount == 2 && spec.instanceType == "ml.m5.xlarge")
        #expect(spec.channels.map(\.name) == ["train", "validation"])
        #expect(spec.channels[0].sharding == .shardedByS3Key && spec.channels[1].sharding == .fullyReplicated)
        #expect(spec.channels[0].contentType == "text/csv")
        #expect(spec.hyperParameters == ["epochs": "20", "hidden_layer_sizes": "64,32"])
        #expect(spec.maxRuntimeSeconds == 3600 && spec.maxRetryAttempts == 2)
        #expect(spec.tags == ["team": "ml"])
    }

    @Test func theSameJobInYAMLDecodesTheSame() throws {
        let yaml = """
        TrainingJobName: digits-mlp-1
        RoleArn: arn:aws:iam::123456789012:role/forge
        AlgorithmSpecification: {TrainingImage: forge/mlp:latest, TrainingInputMode: File}
        HyperParameters: {epochs: "20", hidden_layer_sizes: "64,32"}
        InputDataConfig:
          - ChannelName: train
            ContentType: text/csv
            DataSource:
              S3DataSource: {S3DataType: S3Prefix, S3Uri: "s3://data/digits/train", S3DataDistributionType: ShardedByS3Key}
          - ChannelName: validation
            DataSource: {S3DataSource: {S3DataType: S3Prefix, S3Uri: /srv/data/digits/test.csv}}
        OutputDataConfig: {S3OutputPath: "s3://models/digits"}
        ResourceConfig: {InstanceType: ml.m5.xlarge, InstanceCount: 2, VolumeSizeInGB: 10}
        StoppingCondition: {MaxRuntimeInSeconds: 3600}
        RetryStrategy: {MaximumRetryAttempts: 2}
        Tags: [{Key: team, Value: ml}]
        """
        #expect(try TrainingJobSpec.decode(yaml: yaml) == TrainingJobSpec.decode(json: Data(Self.valid.utf8)))
    }

    @Test func defaultsFollowSageMaker() throws {
        let minimal = """
        {"TrainingJobName": "j", "RoleArn": "arn:aws:iam::123456789012:role/forge",
         "AlgorithmSpecification": {"AlgorithmName": "linear-learner", "TrainingInputMode": "File"},
         "InputDataConfig": [{"ChannelName": "train", "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/k"}}}],
         "OutputDataConfig": {"S3OutputPath": "s3://b/out"}, "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1}}
        """
        let spec = try TrainingJobSpec.decode(json: Data(minimal.utf8))
        #expect(spec.maxRuntimeSeconds == 86_400)
        #expect(spec.maxRetryAttempts == 0)
        #expect(spec.builtInAlgorithm == "linear-learner")
        #expect(spec.channels[0].distribution == "FullyReplicated")
        #expect(spec.inputMode == "File")
    }

    @Test func aBadRequestListsEveryProblem() throws {
        let bad = """
        {"TrainingJobName": "bad_name!", "RoleArn": "nope",
         "AlgorithmSpecification": {"TrainingInputMode": "Stream"},
         "HyperParameters": {"epochs": 20},
         "InputDataConfig": [
           {"ChannelName": "train", "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/../../etc/passwd"}}},
           {"ChannelName": "train", "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "relative/path",
                                                                 "S3DataDistributionType": "Everywhere"}}}],
         "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 0},
         "StoppingCondition": {"MaxRuntimeInSeconds": -5},
         "RetryStrategy": {"MaximumRetryAttempts": 99}}
        """
        let error = try #require(throws: SpecError.self) { try TrainingJobSpec.decode(json: Data(bad.utf8)) }
        let expected = ["trainingJobName", "roleArn", "algorithmSpecification:", "algorithmSpecification.trainingInputMode",
                        "hyperParameters.epochs", "s3Uri: Value 's3://b/../../etc/passwd' must not contain a '..' segment",
                        "inputDataConfig.2.member.dataSource.s3DataSource.s3Uri", "s3DataDistributionType",
                        "outputDataConfig: Member must not be null", "resourceConfig.instanceCount",
                        "stoppingCondition.maxRuntimeInSeconds", "retryStrategy.maximumRetryAttempts"]
        for fragment in expected {
            #expect(error.problems.contains { $0.contains(fragment) }, "missing \(fragment) in \(error)")
        }
        #expect(error.description.hasPrefix("\(error.problems.count) validation errors detected: "))
    }

    @Test func elasticResumeNeedsAMinimumFromOneToTheInstanceCount() throws {
        func spec(_ minimum: String) throws -> TrainingJobSpec {
            try TrainingJobSpec.decode(json: Data(Self.valid.replacingOccurrences(of: #""epochs": "20""#,
                                                                                  with: #""epochs": "20", "forge_min_instance_count": "\#(minimum)""#).utf8))
        }
        #expect(try spec("1").minInstanceCount == 1)
        #expect(try TrainingJobSpec.decode(json: Data(Self.valid.utf8)).minInstanceCount == 2, "without it, the full count")
        for bad in ["0", "3", "two", ""] {
            let error = try #require(throws: SpecError.self) { try spec(bad) }
            #expect(error.problems.contains { $0.hasPrefix("hyperParameters.forge_min_instance_count: ") }, "\(bad): \(error)")
        }
    }

    @Test func aSplitModelNeedsAnInstanceCountItDivides() throws {
        // The fixture asks for 2 instances.
        func spec(_ layout: String) throws -> TrainingJobSpec {
            try TrainingJobSpec.decode(json: Data(Self.valid.replacingOccurrences(of: #""epochs": "20""#, with: #""epochs": "20", \#(layout)"#).utf8))
        }
        #expect(try spec(#""forge_tensor_degree": "2""#).modelSplit == 2)
        #expect(try spec(#""forge_pipeline_degree": "1""#).modelSplit == 1)
        for bad in [#""forge_pipeline_degree": "4""#, #""forge_pipeline_degree": "2", "forge_tensor_degree": "2""#, #""forge_tensor_degree": "x""#] {
            let error = try #require(throws: SpecError.self) { try spec(bad) }
            #expect(error.problems.contains { $0.hasPrefix("hyperParameters.forge_") }, "\(bad): \(error)")
        }
    }

    @Test func metricDefinitionsAreRegexesThatMustCompile() throws {
        func spec(_ definitions: String) throws -> TrainingJobSpec {
            try TrainingJobSpec.decode(json: Data(Self.valid.replacingOccurrences(
                of: #""TrainingInputMode": "File"}"#, with: #""TrainingInputMode": "File", "MetricDefinitions": \#(definitions)}"#).utf8))
        }
        let good = try spec(#"[{"Name": "train:loss", "Regex": "loss=([0-9.]+)"}]"#)
        #expect(good.metricDefinitions == [MetricDefinition(name: "train:loss", regex: "loss=([0-9.]+)")])
        let error = try #require(throws: SpecError.self) { try spec(#"[{"Name": "x", "Regex": "([0-9"}, {"Regex": "a"}]"#) }
        #expect(error.problems.contains { $0.contains("metricDefinitions.1.member.regex") }, "\(error)")
        #expect(error.problems.contains { $0.contains("metricDefinitions.2.member.name") }, "\(error)")
    }

    @Test func channelNamesCannotBeDotFolders() throws {
        for name in [".", ".."] {
            let body = Self.valid.replacingOccurrences(of: #""ChannelName": "validation""#, with: #""ChannelName": "\#(name)""#)
            let error = try #require(throws: SpecError.self) { try TrainingJobSpec.decode(json: Data(body.utf8)) }
            #expect(error.problems.contains { $0.contains("channelName") }, "\(error)")
        }
    }

    @Test func notJSONAndNotAnObjectAreErrorsToo() {
        #expect(throws: SpecError.self) { try TrainingJobSpec.decode(json: Data("{".utf8)) }
        #expect(throws: SpecError.self) { try TrainingJobSpec.decode(json: Data("[1, 2]".utf8)) }
        #expect(throws: SpecError.self) { try TrainingJobSpec.decode(yaml: "a: [unclosed") }
    }
}
