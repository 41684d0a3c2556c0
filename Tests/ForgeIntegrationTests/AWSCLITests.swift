// The real AWS CLI (and boto3's paginator) against a real coordinator and workers, with nothing
// but --endpoint-url: a built-in mlp job on a channel put there with `aws s3 cp` is created,
// polled to Completed, listed, and its model found where S3ModelArtifacts says; a second job is
// stopped mid-run and ends Stopped.
import ForgeTestSupport
import Foundation
import Testing

@Suite(.serialized) struct AWSCLITests {
    static let hasCLI = (try? ExternalTool.run(["aws", "--version"]).status) == 0

    /// Runs `aws --endpoint-url … ARGS` with the cluster's keys; returns its status and output.
    static func aws(_ cluster: LocalCluster, _ arguments: [String]) throws -> ExternalTool.Result {
        try ExternalTool.run(["env", "AWS_ACCESS_KEY_ID=AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY=secret", "AWS_DEFAULT_REGION=us-east-1",
                              "AWS_PAGER=", "aws", "--endpoint-url", cluster.endpoint, "--output", "json"] + arguments)
    }

    static func job(_ name: String, epochs: Int) -> String {
        """
        {"TrainingJobName": "\(name)", "RoleArn": "arn:aws:iam::123456789012:role/forge",
         "AlgorithmSpecification": {"TrainingImage": "forge/mlp:latest", "TrainingInputMode": "File"},
         "HyperParameters": {"epochs": "\(epochs)", "hidden_layer_sizes": "16", "mini_batch_size": "32"},
         "InputDataConfig": [{"ChannelName": "train", "ContentType": "text/csv",
                              "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://cli-data/train/"}}}],
         "OutputDataConfig": {"S3OutputPath": "s3://cli-data/models"},
         "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
         "StoppingCondition": {"MaxRuntimeInSeconds": 600}}
        """
    }

    @Test(.enabled(if: AWSCLITests.hasCLI, "the AWS CLI (scripts/setup installs it)"))
    func theAWSCLICreatesPollsListsFindsAndStopsJobs() throws {
        let cluster = try LocalCluster(workers: 2)
        let scratch = try TemporaryDirectory()
        let data = try scratch.write(SyntheticCSV(count: 400, seed: 3).labelled, to: "train.csv")
        #expect(try Self.aws(cluster, ["s3", "mb", "s3://cli-data"]).status == 0)
        let copied = try Self.aws(cluster, ["s3", "cp", data, "s3://cli-data/train/train.csv"])
        #expect(copied.status == 0, "\(copied.standardError)")
        let spec = try scratch.write(Self.job("cli-done", epochs: 5), to: "done.json")
        let created = try Self.aws(cluster, ["sagemaker", "create-training-job", "--cli-input-json", "file://\(spec)"])
        #expect(created.status == 0 && created.text.contains("training-job/cli-done"), "\(created.text) \(created.standardError)")
        var described: [String: Any] = [:]
        for _ in 0..<300 {
            let run = try Self.aws(cluster, ["sagemaker", "describe-training-job", "--training-job-name", "cli-done"])
            described = (try? JSONSerialization.jsonObject(with: Data(run.standardOutput))) as? [String: Any] ?? [:]
            if ["Completed", "Failed", "Stopped"].contains(described["TrainingJobStatus"] as? String ?? "") { break }
            usleep(200_000)
        }
        #expect(described["TrainingJobStatus"] as? String == "Completed", "\(described)")
        let model = (described["ModelArtifacts"] as? [String: String])?["S3ModelArtifacts"] ?? ""
        #expect(model == "s3://cli-data/models/cli-done/output/model.tar.gz")
        let listed = try Self.aws(cluster, ["s3", "ls", model])
        #expect(listed.status == 0 && listed.text.contains("model.tar.gz"), "the model is where the description says: \(listed.text)")
        let jobs = try Self.aws(cluster, ["sagemaker", "list-training-jobs", "--status-equals", "Completed"])
        #expect(jobs.text.contains("\"TrainingJobName\": \"cli-done\""), "\(jobs.text)")

        // A long job, stopped once it trains.
        let long = try scratch.write(Self.job("cli-long", epochs: 100_000), to: "long.json")
        #expect(try Self.aws(cluster, ["sagemaker", "create-training-job", "--cli-input-json", "file://\(long)"]).status == 0)
        var secondary = ""
        for _ in 0..<300 where secondary != "Training" {
            let run = try Self.aws(cluster, ["sagemaker", "describe-training-job", "--training-job-name", "cli-long",
                                             "--query", "SecondaryStatus", "--output", "text"])
            secondary = run.text.trimmingCharacters(in: .whitespacesAndNewlines)
            usleep(200_000)
        }
        #expect(try Self.aws(cluster, ["sagemaker", "stop-training-job", "--training-job-name", "cli-long"]).status == 0)
        var status = ""
        for _ in 0..<600 where status != "Stopped" {
            status = try Self.aws(cluster, ["sagemaker", "describe-training-job", "--training-job-name", "cli-long",
                                            "--query", "TrainingJobStatus", "--output", "text"]).text.trimmingCharacters(in: .whitespacesAndNewlines)
            usleep(200_000)
        }
        #expect(status == "Stopped")

        // boto3's paginator walks every job, two at a time, through NextToken.
        let pages = try ExternalTool.pythonJSON("""
        import boto3, json, sys
        sm = boto3.client("sagemaker", endpoint_url=sys.argv[1], region_name="us-east-1", aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret")
        names = []
        count = 0
        for page in sm.get_paginator("list_training_jobs").paginate(SortBy="Name", SortOrder="Ascending", PaginationConfig={"PageSize": 1}):
            count += 1
            names += [j["TrainingJobName"] for j in page["TrainingJobSummaries"]]
        print(json.dumps({"pages": count, "names": names}))
        """, [cluster.endpoint]) as? [String: Any] ?? [:]
        #expect(pages["names"] as? [String] == ["cli-done", "cli-long"], "\(pages)")
        #expect((pages["pages"] as? Int ?? 0) >= 2, "one job a page: \(pages)")
    }
}
