// Data where users keep it: a real S3-compatible server (moto's standalone server, a separate
// process speaking the S3 protocol; a peer, not a mock of Forge) holds a bucket that the
// coordinator's --config maps to it. A 2-instance built-in job reads its channels from there
// and writes its model there; its final metrics still reach DescribeTrainingJob.
import ForgeCoordinator
import ForgeS3
import ForgeTestSupport
import Foundation
import Testing

/// moto's S3 server on a free loopback port, stopped when the value goes away.
final class MotoServer {
    let endpoint: String
    private let process = Process()

    init() throws {
        let port = MultiNodeLaunchTests.freePort()
        endpoint = "http://127.0.0.1:\(port)"
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-m", "moto.server", "-H", "127.0.0.1", "-p", String(port)]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let ready = """
        import sys, time, urllib.request
        for _ in range(300):
            try:
                urllib.request.urlopen(sys.argv[1] + "/moto-api/"); sys.exit(0)
            except Exception:
                time.sleep(0.1)
        sys.exit(1)
        """
        let waited = try ExternalTool.run(["python3", "-c", ready, endpoint])
        guard waited.status == 0 else { throw ForgeProcess.Failure(description: "moto's server did not start at \(endpoint)") }
    }

    deinit {
        // The server's request threads keep it alive through SIGTERM and SIGINT.
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
}

@Suite(.serialized) struct ExternalS3Tests {
    @Test func aJobReadsItsChannelsFromAnS3CompatibleServerAndWritesItsModelThere() throws {
        let moto = try MotoServer()
        let scratch = try TemporaryDirectory()
        let config = try scratch.write("""
        buckets:
          lake:
            endpoint: \(moto.endpoint)
            region: us-east-1
            access_key_id: lake-key
            secret_access_key: lake-secret
        """, to: "forge.yaml")
        let train = try scratch.write(SyntheticCSV(count: 600, seed: 1).labelled, to: "train.csv")
        let validation = try scratch.write(SyntheticCSV(count: 200, seed: 2).labelled, to: "validation.csv")
        let program = try scratch.write(ScriptModeTests.trainScript, to: "train.py")
        let cluster = try LocalCluster(workers: 2, coordinatorArguments: ["--config", config])
        let script = """
        import boto3, json, sys
        lake = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1", aws_access_key_id="lake-key", aws_secret_access_key="lake-secret")
        lake.create_bucket(Bucket="lake")
        lake.upload_file(sys.argv[3], "lake", "digits/train/part-0.csv")
        lake.upload_file(sys.argv[4], "lake", "digits/validation/part-0.csv")
        sm = boto3.client("sagemaker", endpoint_url=sys.argv[2], region_name="us-east-1", aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret")
        sm.create_training_job(TrainingJobName="lake-job", RoleArn="arn:aws:iam::123456789012:role/forge",
            AlgorithmSpecification={"TrainingImage": "forge/mlp", "TrainingInputMode": "File"},
            HyperParameters={"epochs": "10", "hidden_layer_sizes": "16", "mini_batch_size": "32"},
            InputDataConfig=[{"ChannelName": c, "ContentType": "text/csv",
                              "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://lake/digits/" + c}}}
                             for c in ("train", "validation")],
            OutputDataConfig={"S3OutputPath": "s3://lake/models"}, CheckpointConfig={"S3Uri": "s3://lake/checkpoints"},
            ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 2, "VolumeSizeInGB": 1},
            StoppingCondition={"MaxRuntimeInSeconds": 600})
        try:
            sm.get_waiter("training_job_completed_or_stopped").wait(TrainingJobName="lake-job", WaiterConfig={"Delay": 1, "MaxAttempts": 240})
        except Exception:
            pass
        d = sm.describe_training_job(TrainingJobName="lake-job")
        out = {"status": d["TrainingJobStatus"], "reason": d.get("FailureReason", ""), "model": d["ModelArtifacts"]["S3ModelArtifacts"],
               "metrics": {m["MetricName"]: m["Value"] for m in d.get("FinalMetricDataList", [])},
               "keys": sorted(o["Key"] for o in lake.list_objects_v2(Bucket="lake", Prefix="models/").get("Contents", []))}
        body = lake.get_object(Bucket="lake", Key="models/lake-job/output/model.tar.gz")["Body"].read() if out["keys"] else b""
        out["gzip"] = body[:2] == b"\\x1f\\x8b"
        # Script mode from the same bucket: the source tarball and the channels come from there,
        # the packed model goes back.
        import io, tarfile
        source = io.BytesIO()
        with tarfile.open(fileobj=source, mode="w:gz") as tar:
            data = open(sys.argv[5], "rb").read()
            info = tarfile.TarInfo("train.py"); info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        lake.put_object(Bucket="lake", Key="code/sourcedir.tar.gz", Body=source.getvalue())
        sm.create_training_job(TrainingJobName="rf-lake", RoleArn="arn:aws:iam::123456789012:role/forge",
            AlgorithmSpecification={"TrainingImage": "sagemaker-scikit-learn:1.2-1-cpu-py3", "TrainingInputMode": "File",
                                    "MetricDefinitions": [{"Name": "validation:accuracy", "Regex": "validation-accuracy: ([0-9.]+)"}]},
            HyperParameters={"sagemaker_program": json.dumps("train.py"), "sagemaker_submit_directory": json.dumps("s3://lake/code/sourcedir.tar.gz"),
                             "n-estimators": "5"},
            InputDataConfig=[{"ChannelName": c, "ContentType": "text/csv",
                              "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://lake/digits/" + c}}}
                             for c in ("train", "validation")],
            OutputDataConfig={"S3OutputPath": "s3://lake/models"},
            ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 2, "VolumeSizeInGB": 1},
            StoppingCondition={"MaxRuntimeInSeconds": 600})
        try:
            sm.get_waiter("training_job_completed_or_stopped").wait(TrainingJobName="rf-lake", WaiterConfig={"Delay": 1, "MaxAttempts": 300})
        except Exception:
            pass
        d = sm.describe_training_job(TrainingJobName="rf-lake")
        out["script"] = {"status": d["TrainingJobStatus"], "reason": d.get("FailureReason", ""),
                         "metrics": {m["MetricName"]: m["Value"] for m in d.get("FinalMetricDataList", [])},
                         "keys": sorted(o["Key"] for o in lake.list_objects_v2(Bucket="lake", Prefix="models/rf-lake/").get("Contents", []))}
        print(json.dumps(out))
        """
        let answer: [String: Any]
        do {
            answer = try ExternalTool.pythonJSON(script, [moto.endpoint, cluster.endpoint, train, validation, program]) as? [String: Any] ?? [:]
        } catch {
            Issue.record("\(error)\ncoordinator: \(cluster.log("coordinator.log").suffix(3000))")
            return
        }
        let logs = (try? cluster.forge(["logs", "lake-job"]).standardOutput.suffix(2500)).map(String.init) ?? ""
        #expect(answer["status"] as? String == "Completed", "\(answer)\n\(logs)")
        #expect(answer["model"] as? String == "s3://lake/models/lake-job/output/model.tar.gz")
        #expect(answer["keys"] as? [String] == ["models/lake-job/output/metrics.json", "models/lake-job/output/model.tar.gz"], "\(answer)")
        #expect(answer["gzip"] as? Bool == true)
        let accuracy = (answer["metrics"] as? [String: Double])?["validation:accuracy"] ?? 0
        #expect(accuracy > 0.9, "the final metrics reach DescribeTrainingJob from rank 0's closing line: \(answer)")
        let local = (try? FileManager.default.contentsOfDirectory(atPath: cluster.directory.file("state/objects/lake"))) ?? []
        #expect(local == ["checkpoints"], "of the bucket only the checkpoints are kept locally (channels and models are not): \(local)")
        let events = try JobStore(path: cluster.directory.file("state/forge.sqlite")).events(of: "lake-job")
        #expect(events.contains { $0.kind == "CheckpointsLocal" }, "where the checkpoints went is said: \(events.map(\.kind))")
        let scripted = answer["script"] as? [String: Any] ?? [:]
        #expect(scripted["status"] as? String == "Completed", "\(scripted)")
        #expect(scripted["keys"] as? [String] == ["models/rf-lake/output/model.tar.gz", "models/rf-lake/output/output.tar.gz"], "\(scripted)")
        #expect(((scripted["metrics"] as? [String: Double])?["validation:accuracy"] ?? 0) > 0.9, "\(scripted)")
    }

    /// Forge's S3 client against the peer: a file larger than a part goes up in parts
    /// (multipart upload) and comes back byte for byte; listing pages; a missing key is S3's error.
    @Test func theS3ClientUploadsLargeFilesInPartsAndReadsThemBack() throws {
        let moto = try MotoServer()
        let scratch = try TemporaryDirectory()
        let client = S3Client(endpoint: S3Endpoint(url: moto.endpoint, accessKeyID: "k", secretAccessKey: "s"), partBytes: 5 << 20)
        #expect(try ExternalTool.pythonJSON("""
        import boto3, json, sys
        boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s").create_bucket(Bucket="big")
        print(json.dumps({"made": True}))
        """, [moto.endpoint]) as? [String: Bool] == ["made": true])
        var random = SplitMix64(seed: 11)
        let bytes = (0..<(13 << 20)).map { _ in UInt8.random(in: 0...255, using: &random) }
        let file = scratch.file("big.bin")
        try Data(bytes).write(to: URL(fileURLWithPath: file))
        try client.put(bucket: "big", key: "a/b/big.bin", file: file)
        for index in 0..<3 {
            _ = try scratch.write("\(index)\n", to: "small-\(index).txt")
            try client.put(bucket: "big", key: "a/small-\(index).txt", file: scratch.file("small-\(index).txt"))
        }
        let listed = try client.list(bucket: "big", prefix: "a/")
        #expect(listed.map(\.key) == ["a/b/big.bin", "a/small-0.txt", "a/small-1.txt", "a/small-2.txt"])
        #expect(listed.first?.size == bytes.count)
        let fetched = try client.download(bucket: "big", prefix: "a/", into: scratch.file("copy"))
        #expect(fetched.count == 4)
        #expect(FileManager.default.contents(atPath: scratch.file("copy/b/big.bin")) == Data(bytes), "the parts came back in order")
        #expect(throws: S3ClientError.self) { try client.get(bucket: "big", key: "missing", to: scratch.file("missing")) }
        do {
            try client.get(bucket: "big", key: "missing", to: scratch.file("missing"))
        } catch {
            #expect(error.status == 404 && error.code == "NoSuchKey", "\(error)")
        }
    }
}
