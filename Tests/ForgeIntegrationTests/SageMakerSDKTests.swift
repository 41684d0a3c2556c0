// The SageMaker Python SDK 2.x, unmodified, against a real coordinator and workers: a user's
// notebook code with nothing changed but the endpoints (AWS_ENDPOINT_URL_SAGEMAKER, _S3,
// _CLOUDWATCH_LOGS, _STS). It uploads data through Forge's S3 face, trains the built-in mlp on
// 2 instances and a scikit-learn script (uploaded by the SDK as sourcedir.tar.gz) through
// fit() with its live log stream, and reads model_data. The SDK's usage telemetry still tries
// the internet and fails harmlessly.
import ForgeTestSupport
import Foundation
import Testing

@Suite(.serialized) struct SageMakerSDKTests {
    static let hasSDK = (try? ExternalTool.run(["python3", "-c", "import sagemaker"]).status) == 0

    @Test(.enabled(if: SageMakerSDKTests.hasSDK, "the sagemaker package (scripts/setup installs it)"))
    func estimatorsFitThroughForgeWithNothingChangedButTheEndpoints() throws {
        let cluster = try LocalCluster(workers: 2)
        let scratch = try TemporaryDirectory()
        let train = try scratch.write(SyntheticCSV(count: 600, seed: 1).labelled, to: "data/train.csv")
        let validation = try scratch.write(SyntheticCSV(count: 200, seed: 2).labelled, to: "data/validation.csv")
        _ = try scratch.write(ScriptModeTests.trainScript, to: "source/train.py")
        let script = """
        import json, os, sys, boto3, sagemaker
        from sagemaker.estimator import Estimator
        from sagemaker.sklearn import SKLearn
        role = "arn:aws:iam::123456789012:role/forge"
        # The SDK names its default bucket after the account it asks STS for at a fixed regional
        # address (it ignores AWS_ENDPOINT_URL_STS there), so the notebook names the bucket.
        session = sagemaker.Session(boto_session=boto3.Session(region_name="us-east-1"), default_bucket="forge-sdk")
        bucket = session.default_bucket()
        train = session.upload_data(sys.argv[1], bucket=bucket, key_prefix="sdk/train")
        validation = session.upload_data(sys.argv[2], bucket=bucket, key_prefix="sdk/validation")
        out = {"bucket": bucket, "train": train}
        builtin = Estimator(image_uri="forge/mlp:latest", role=role, instance_count=2, instance_type="ml.m5.large",
                            sagemaker_session=session, output_path=f"s3://{bucket}/sdk/models",
                            hyperparameters={"epochs": 10, "hidden_layer_sizes": "16", "mini_batch_size": 32})
        builtin.fit({"train": train, "validation": validation}, logs=True)
        out["builtin"] = builtin.model_data
        sk = SKLearn(entry_point="train.py", source_dir=sys.argv[3], framework_version="1.2-1", py_version="py3",
                     instance_type="ml.m5.large", instance_count=1, role=role, sagemaker_session=session,
                     hyperparameters={"n-estimators": 10},
                     metric_definitions=[{"Name": "validation:accuracy", "Regex": "validation-accuracy: ([0-9.]+)"}])
        sk.fit({"train": train, "validation": validation}, logs=True)
        out["script"] = sk.model_data
        job = sk.latest_training_job.describe()
        out["script_metrics"] = {m["MetricName"]: m["Value"] for m in job.get("FinalMetricDataList", [])}
        out["script_status"] = job["TrainingJobStatus"]
        s3 = boto3.client("s3", region_name="us-east-1")
        def exists(uri):
            b, k = uri[5:].split("/", 1)
            return s3.head_object(Bucket=b, Key=k)["ContentLength"] > 0
        out["builtin_exists"] = exists(out["builtin"])
        out["script_exists"] = exists(out["script"])
        print("RESULT " + json.dumps(out))
        """
        let environment = ["AWS_ENDPOINT_URL_SAGEMAKER": cluster.endpoint, "AWS_ENDPOINT_URL_S3": cluster.endpoint,
                           "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS": cluster.endpoint, "AWS_ENDPOINT_URL_STS": cluster.endpoint,
                           "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_DEFAULT_REGION": "us-east-1",
                           "SAGEMAKER_SUPPRESS_V2_WARNING": "1"]
        let run = try ExternalTool.run(["env"] + environment.map { "\($0.key)=\($0.value)" }.sorted()
                                       + ["python3", "-c", script, train, validation, scratch.file("source")])
        let output = run.text
        let result = output.split(separator: "\n").first { $0.hasPrefix("RESULT ") }.map { String($0.dropFirst(7)) } ?? "{}"
        let answer = (try? JSONSerialization.jsonObject(with: Data(result.utf8))) as? [String: Any] ?? [:]
        #expect(run.status == 0, "\(output.suffix(3000))\n\(run.standardError.suffix(3000))\n\(cluster.log("coordinator.log").suffix(2000))")
        #expect(answer["bucket"] as? String == "forge-sdk", "the SDK made its bucket through the S3 face: \(answer)")
        #expect((answer["builtin"] as? String)?.hasSuffix("/output/model.tar.gz") == true, "\(answer)")
        #expect(answer["builtin_exists"] as? Bool == true && answer["script_exists"] as? Bool == true, "\(answer)")
        #expect(answer["script_status"] as? String == "Completed", "\(answer)")
        #expect(((answer["script_metrics"] as? [String: Double])?["validation:accuracy"] ?? 0) > 0.9, "\(answer)")
        // fit(logs=True) streamed the jobs' lines through the CloudWatch Logs face.
        #expect(output.contains("epoch=10 step="), "the built-in's metric lines were streamed: \(output.suffix(2000))")
        #expect(output.contains("validation-accuracy: "), "the script's own lines were streamed: \(output.suffix(2000))")
    }
}
