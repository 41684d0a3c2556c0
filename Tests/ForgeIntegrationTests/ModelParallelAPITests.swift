// The layout through the SageMaker API: boto3 submits a transformer-lm job split across its
// two instances (tensor parallel, as HyperParameters, the only free-form member), the
// coordinator runs it on two workers, and its log shows the loss beside the corpus's unigram
// entropy and a sample; a layout its InstanceCount does not fit is a ValidationException.
import ForgeTestSupport
import Foundation
import Testing

@Suite(.serialized) struct ModelParallelAPITests {
    @Test func boto3RunsATensorParallelLanguageModelJob() throws {
        let cluster = try LocalCluster(workers: 2)
        var text = ""
        var random = SplitMix64(seed: 4)
        let words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far"]
        while text.utf8.count < 20_000 { text += (0..<6).map { _ in words[random.below(words.count)] }.joined(separator: " ") + ".\n" }
        _ = try cluster.directory.write(text, to: "state/objects/data/text/train/part-0.txt")
        _ = try cluster.directory.write(String(text.prefix(3000)), to: "state/objects/data/text/validation/part-0.txt")
        let script = """
        import boto3, sys, json
        sm = boto3.client("sagemaker", endpoint_url=sys.argv[1], region_name="us-east-1",
                          aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret")
        def create(name, count, layout):
            hp = {"num_layers": "1", "d_model": "32", "num_heads": "4", "context_length": "16", "mini_batch_size": "16",
                  "max_steps": "30", "learning_rate": "0.003"}
            hp.update(layout)
            return sm.create_training_job(TrainingJobName=name, RoleArn="arn:aws:iam::123456789012:role/forge",
                AlgorithmSpecification={"TrainingImage": "forge/transformer-lm:latest", "TrainingInputMode": "File"},
                HyperParameters=hp,
                InputDataConfig=[{"ChannelName": c, "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://data/text/" + c}}}
                                 for c in ("train", "validation")],
                OutputDataConfig={"S3OutputPath": "s3://data/models"},
                ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": count, "VolumeSizeInGB": 1},
                StoppingCondition={"MaxRuntimeInSeconds": 600})
        out = {}
        create("lm-tp", 2, {"forge_tensor_degree": "2"})
        sm.get_waiter("training_job_completed_or_stopped").wait(TrainingJobName="lm-tp", WaiterConfig={"Delay": 1, "MaxAttempts": 240})
        d = sm.describe_training_job(TrainingJobName="lm-tp")
        out["status"] = d["TrainingJobStatus"]
        out["reason"] = d.get("FailureReason", "")
        out["metrics"] = {m["MetricName"]: m["Value"] for m in d.get("FinalMetricDataList", [])}
        logs = boto3.client("logs", endpoint_url=sys.argv[1], region_name="us-east-1",
                            aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret")
        stream = logs.describe_log_streams(logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix="lm-tp/algo-1")["logStreams"][0]
        events = logs.get_log_events(logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=stream["logStreamName"], startFromHead=True)
        out["log"] = [e["message"] for e in events["events"]]
        try:
            create("lm-bad", 3, {"forge_pipeline_degree": "2"})
        except Exception as e:
            out["bad"] = e.response["Error"]["Code"] + ": " + e.response["Error"]["Message"]
        print(json.dumps(out))
        """
        let answer = try #require(cluster.pythonJSON(script) as? [String: Any])
        #expect(answer["status"] as? String == "Completed", "\(answer) \(cluster.log("coordinator.log").suffix(2000))")
        #expect(FileManager.default.fileExists(atPath: cluster.directory.file("state/objects/data/models/lm-tp/output/model.tar.gz")))
        #expect((answer["metrics"] as? [String: Double])?["validation:loss"] != nil, "\(answer)")
        let log = (answer["log"] as? [String] ?? []).joined(separator: "\n")
        #expect(log.contains("unigram entropy of the corpus"), "\(log.suffix(2000))")
        #expect(log.contains("sample continuation"), "\(log.suffix(2000))")
        let bad = answer["bad"] as? String ?? ""
        #expect(bad.hasPrefix("ValidationException") && bad.contains("forge_pipeline_degree"), "\(bad)")
    }
}
