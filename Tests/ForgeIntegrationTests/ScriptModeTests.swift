// Script mode: a job whose image is a SageMaker framework image runs the user's own script on
// the workers under the training-container contract. A real coordinator and real workers run
// an unmodified scikit-learn script (pandas in, joblib out) submitted through boto3 the way the
// SageMaker SDK submits it (source tarball in the object store, JSON-encoded reserved
// hyperparameters, MetricDefinitions); the test checks what the script saw, the model it left,
// the metric read from its log, and the failure reason a failing script wrote.
import ForgeTestSupport
import Foundation
import Testing

@Suite(.serialized) struct ScriptModeTests {
    /// A random forest on the channel's CSV files, as a SageMaker scikit-learn user writes it.
    static let trainScript = #"""
    import argparse, glob, json, os, sys
    import joblib, pandas as pd
    from sklearn.ensemble import RandomForestClassifier

    parser = argparse.ArgumentParser()
    parser.add_argument("--n-estimators", type=int, default=10)
    parser.add_argument("--max-depth", type=int, default=None)
    parser.add_argument("--fail", type=str, default="no")
    parser.add_argument("--model-dir", type=str, default=os.environ["SM_MODEL_DIR"])
    parser.add_argument("--train", type=str, default=os.environ["SM_CHANNEL_TRAIN"])
    args = parser.parse_args()
    if args.fail == "yes":
        with open(os.path.join(os.environ["SM_OUTPUT_DIR"], "failure"), "w") as f:
            f.write("the data had no rows to learn from")
        sys.exit(3)
    files = sorted(glob.glob(os.path.join(args.train, "*.csv")))
    frame = pd.concat([pd.read_csv(f, header=None) for f in files])
    y, x = frame.iloc[:, 0], frame.iloc[:, 1:]
    model = RandomForestClassifier(n_estimators=args.n_estimators, max_depth=args.max_depth, random_state=0).fit(x, y)
    validation = pd.read_csv(glob.glob(os.path.join(os.environ["SM_CHANNEL_VALIDATION"], "*.csv"))[0], header=None)
    accuracy = model.score(validation.iloc[:, 1:], validation.iloc[:, 0])
    print(f"validation-accuracy: {accuracy:.4f}", flush=True)
    host = os.environ["SM_CURRENT_HOST"]
    if host == "algo-1":
        joblib.dump(model, os.path.join(args.model_dir, "model.joblib"))
    seen = {"argv": sys.argv[1:], "files": [os.path.basename(f) for f in files], "hosts": json.loads(os.environ["SM_HOSTS"]),
            "hps": json.loads(os.environ["SM_HPS"]), "user_args": json.loads(os.environ["SM_USER_ARGS"]),
            "resource": json.load(open("/".join([os.environ["SM_INPUT_CONFIG_DIR"], "resourceconfig.json"]))),
            "hyperparameters_file": json.load(open(os.path.join(os.environ["SM_INPUT_CONFIG_DIR"], "hyperparameters.json"))),
            "channels": json.loads(os.environ["SM_CHANNELS"]), "job": os.environ["TRAINING_JOB_NAME"],
            "rank": os.environ.get("RANK"), "master": os.environ.get("MASTER_ADDR"), "env_extra": os.environ.get("MY_SETTING")}
    with open(os.path.join(args.model_dir, f"seen-{host}.json"), "w") as f:
        json.dump(seen, f)
    """#

    @Test func aScikitLearnScriptRunsUnmodifiedOnTwoInstancesAndItsMetricIsRead() throws {
        let cluster = try LocalCluster(workers: 2)
        // The source tarball where the SDK uploads it, and a channel of 4 files for sharding.
        let source = try TemporaryDirectory()
        _ = try source.write(Self.trainScript, to: "train.py")
        _ = try source.write("joblib\n", to: "requirements.txt")
        let tarball = cluster.directory.file("state/objects/data/rf-job/source/sourcedir.tar.gz")
        try FileManager.default.createDirectory(atPath: (tarball as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let tar = try ExternalTool.run(["tar", "-czf", tarball, "-C", source.path, "train.py", "requirements.txt"])
        #expect(tar.status == 0, "\(tar.standardError)")
        let all = SyntheticCSV(count: 400, seed: 7).labelled.split(separator: "\n")
        for part in 0..<4 {
            _ = try cluster.directory.write(all[(part * 100)..<((part + 1) * 100)].joined(separator: "\n") + "\n",
                                            to: "state/objects/data/sharded/part-\(part).csv")
        }
        let script = """
        import boto3, sys, json
        sm = boto3.client("sagemaker", endpoint_url=sys.argv[1], region_name="us-east-1",
                          aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret")
        def create(name, hps, count):
            sm.create_training_job(TrainingJobName=name, RoleArn="arn:aws:iam::123456789012:role/forge",
                AlgorithmSpecification={"TrainingImage": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3",
                    "TrainingInputMode": "File",
                    "MetricDefinitions": [{"Name": "validation:accuracy", "Regex": "validation-accuracy: ([0-9.]+)"}]},
                HyperParameters=dict({"sagemaker_program": json.dumps("train.py"),
                    "sagemaker_submit_directory": json.dumps("s3://data/rf-job/source/sourcedir.tar.gz"),
                    "sagemaker_container_log_level": "20", "sagemaker_region": json.dumps("us-east-1")}, **hps),
                InputDataConfig=[
                    {"ChannelName": "train", "ContentType": "text/csv",
                     "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://data/sharded",
                                                     "S3DataDistributionType": "ShardedByS3Key"}}},
                    {"ChannelName": "validation", "ContentType": "text/csv",
                     "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://data/validation"}}}],
                OutputDataConfig={"S3OutputPath": "s3://data/rf-out"},
                ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": count, "VolumeSizeInGB": 1},
                Environment={"MY_SETTING": "on"},
                StoppingCondition={"MaxRuntimeInSeconds": 900})
            try:
                sm.get_waiter("training_job_completed_or_stopped").wait(TrainingJobName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 600})
            except Exception:
                pass  # the waiter raises on Failed; the description says why
            d = sm.describe_training_job(TrainingJobName=name)
            return {"status": d["TrainingJobStatus"], "reason": d.get("FailureReason", ""),
                    "metrics": {m["MetricName"]: m["Value"] for m in d.get("FinalMetricDataList", [])},
                    "model": d["ModelArtifacts"]["S3ModelArtifacts"],
                    "definitions": d["AlgorithmSpecification"].get("MetricDefinitions", [])}
        out = {"ok": create("rf-job", {"n-estimators": "20", "max-depth": "6"}, 2),
               "bad": create("rf-bad", {"fail": json.dumps("yes")}, 1)}
        print(json.dumps(out))
        """
        let answer: [String: Any]
        do {
            answer = try ExternalTool.pythonJSON(script, [cluster.endpoint]) as? [String: Any] ?? [:]
        } catch {
            Issue.record("\(error)\ncoordinator: \(cluster.log("coordinator.log").suffix(3000))\nworker 0: \(cluster.log("worker0.log").suffix(2000))")
            return
        }
        let ok = answer["ok"] as? [String: Any] ?? [:]
        let logs = (try? cluster.forge(["logs", "rf-job"]).standardOutput.suffix(3000)).map(String.init) ?? ""
        #expect(ok["status"] as? String == "Completed", "\(ok)\n\(logs)")
        let accuracy = (ok["metrics"] as? [String: Double])?["validation:accuracy"] ?? 0
        #expect(accuracy > 0.9, "the metric read from the log by its regex: \(ok)")
        #expect((ok["definitions"] as? [[String: String]])?.first?["Name"] == "validation:accuracy")
        #expect(ok["model"] as? String == "s3://data/rf-out/rf-job/output/model.tar.gz")

        // The model folder of both hosts, merged: rank 0's model and what each host saw.
        let unpacked = try TemporaryDirectory()
        let untar = try ExternalTool.run(["tar", "-xzf", cluster.directory.file("state/objects/data/rf-out/rf-job/output/model.tar.gz"), "-C", unpacked.path])
        #expect(untar.status == 0, "\(untar.standardError)")
        #expect(FileManager.default.fileExists(atPath: unpacked.file("model.joblib")))
        let load = try ExternalTool.run(["python3", "-c", "import joblib,sys; m=joblib.load(sys.argv[1]); print(type(m).__name__, m.n_estimators)",
                                         unpacked.file("model.joblib")])
        #expect(load.text.trimmingCharacters(in: .whitespacesAndNewlines) == "RandomForestClassifier 20", "\(load.text) \(load.standardError)")
        var files = [String]()
        for host in ["algo-1", "algo-2"] {
            let data = try Data(contentsOf: URL(fileURLWithPath: unpacked.file("seen-\(host).json")))
            let seen = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
            #expect(seen["argv"] as? [String] == ["--max-depth", "6", "--n-estimators", "20"], "\(seen)")
            #expect(seen["user_args"] as? [String] == ["--max-depth", "6", "--n-estimators", "20"], "\(seen)")
            #expect(seen["hosts"] as? [String] == ["algo-1", "algo-2"])
            #expect((seen["hps"] as? [String: Any])?["n-estimators"] as? Int == 20, "SM_HPS holds decoded values: \(seen)")
            #expect((seen["hyperparameters_file"] as? [String: String])?["sagemaker_program"] == "\"train.py\"", "the file keeps the raw strings")
            #expect((seen["resource"] as? [String: Any])?["current_host"] as? String == host)
            #expect(seen["channels"] as? [String] == ["train", "validation"])
            #expect(seen["job"] as? String == "rf-job")
            #expect(seen["rank"] as? String == (host == "algo-1" ? "0" : "1"))
            #expect(seen["master"] as? String == "127.0.0.1")
            #expect(seen["env_extra"] as? String == "on", "the job's Environment reaches the script")
            files += seen["files"] as? [String] ?? []
            // ShardedByS3Key: every other file, from the rank's index.
            #expect(seen["files"] as? [String] == (host == "algo-1" ? ["part-0.csv", "part-2.csv"] : ["part-1.csv", "part-3.csv"]), "\(seen)")
        }
        #expect(files.sorted() == ["part-0.csv", "part-1.csv", "part-2.csv", "part-3.csv"])

        let bad = answer["bad"] as? [String: Any] ?? [:]
        #expect(bad["status"] as? String == "Failed", "\(bad)")
        #expect((bad["reason"] as? String ?? "").contains("AlgorithmError: the data had no rows to learn from"), "\(bad)")
    }

    @Test func aJobWithNeitherABuiltInNorAnEntryPointFailsWithAClearReason() throws {
        let cluster = try LocalCluster(workers: 1)
        let spec = try cluster.directory.write("""
        TrainingJobName: no-entry
        RoleArn: arn:aws:iam::123456789012:role/forge
        AlgorithmSpecification: {TrainingImage: "my-registry/my-image:1", TrainingInputMode: File}
        InputDataConfig:
          - ChannelName: train
            DataSource: {S3DataSource: {S3DataType: S3Prefix, S3Uri: "s3://data/train"}}
        OutputDataConfig: {S3OutputPath: "s3://data/models"}
        ResourceConfig: {InstanceType: ml.m5.large, InstanceCount: 1}
        """, to: "no-entry.yaml")
        #expect(try cluster.forge(["submit", spec]).status == 0)
        let described = try Self.describeOnceFailed(cluster, "no-entry", seconds: 20)
        #expect(described.contains("sagemaker_program"), "the reason says what is missing: \(described)")
    }

    /// One rank fails, and the other stops because it did (exit status 76, as a forge rank
    /// that lost its peer exits) and is reported first: the job's reason names the rank that
    /// failed, with what it wrote, not the one it took down.
    @Test func theRankThatFailedIsNamedNotThePeerItTookDown() throws {
        let cluster = try LocalCluster(workers: 2)
        let scratch = try TemporaryDirectory()
        let source = try TemporaryDirectory()
        // algo-1 gives up as a forge rank does when its peer is gone, and only then does algo-2
        // fail, so algo-1's exit is usually reported first.
        _ = try source.write("""
        if [ "$SM_CURRENT_HOST" = algo-1 ]; then touch "$SIGNAL_DIR/gave-up"; exit 76; fi
        while [ ! -e "$SIGNAL_DIR/gave-up" ]; do sleep 0.05; done
        echo "rank 1 ran out of memory" > "$SM_OUTPUT_DIR/failure"
        exit 3
        """, to: "train.sh")
        let tarball = cluster.directory.file("state/objects/data/blame/source/sourcedir.tar.gz")
        try FileManager.default.createDirectory(atPath: (tarball as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let tar = try ExternalTool.run(["tar", "-czf", tarball, "-C", source.path, "train.sh"])
        #expect(tar.status == 0, "\(tar.standardError)")
        let spec = try cluster.directory.write("""
        TrainingJobName: blame
        RoleArn: arn:aws:iam::123456789012:role/forge
        AlgorithmSpecification: {TrainingImage: "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3", TrainingInputMode: File}
        HyperParameters: {sagemaker_program: '"train.sh"', sagemaker_submit_directory: '"s3://data/blame/source/sourcedir.tar.gz"'}
        InputDataConfig:
          - ChannelName: train
            DataSource: {S3DataSource: {S3DataType: S3Prefix, S3Uri: "s3://data/train"}}
        OutputDataConfig: {S3OutputPath: "s3://data/models"}
        ResourceConfig: {InstanceType: ml.m5.large, InstanceCount: 2}
        Environment: {SIGNAL_DIR: "\(scratch.path)"}
        """, to: "blame.yaml")
        let submitted = try cluster.forge(["submit", spec])
        #expect(submitted.status == 0, "\(submitted)")
        let described = try Self.describeOnceFailed(cluster, "blame", seconds: 120)
        #expect(described.contains("rank 1 ") && described.contains("exited with status 3"), "\(described)")
        #expect(described.contains("rank 1 ran out of memory"), "\(described)")
        #expect(!described.contains("status 76"), "\(described)")
    }

    /// The user's program runs under `forge container-exec`: when the `forge container` above
    /// it is killed outright, the program goes too, even if it ignores SIGTERM.
    @Test func aScriptDiesWithTheContainerThatStartedIt() throws {
        let scratch = try TemporaryDirectory()
        let pidFile = scratch.file("pid")
        let shell = Process()
        shell.executableURL = URL(fileURLWithPath: "/bin/sh")
        shell.arguments = ["-c", #"trap '' TERM; "$0" container-exec --parent $$ -- sh -c 'trap "" TERM; sleep 60' & echo $! > "$1"; wait"#,
                           try ForgeProcess.binary(), pidFile]
        try shell.run()
        var child: Int32 = 0
        for _ in 0..<100 where child == 0 {
            usleep(50_000)
            child = (try? String(contentsOfFile: pidFile, encoding: .utf8)).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 0
        }
        #expect(child > 0)
        usleep(300_000)
        #expect(Self.alive(child), "the program runs")
        kill(shell.processIdentifier, SIGKILL)
        shell.waitUntilExit()
        var gone = false
        for _ in 0..<50 where !gone {
            usleep(100_000)
            gone = !Self.alive(child)
        }
        #expect(gone, "the program died with the process that started it")
    }

    /// `forge describe JOB` once the job has failed (recording an issue if it has not within
    /// `seconds`).
    static func describeOnceFailed(_ cluster: LocalCluster, _ job: String, seconds: Double) throws -> String {
        let deadline = Date().addingTimeInterval(seconds)
        var described = ""
        repeat {
            described = try cluster.forge(["describe", job]).standardOutput
            if described.contains("\"TrainingJobStatus\" : \"Failed\"") { return described }
            usleep(200_000)
        } while Date() < deadline
        Issue.record("\(job) did not fail within \(Int(seconds)) s: \(described)")
        return described
    }

    /// Running (not a zombie, not gone).
    static func alive(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        let state = stat[stat.index(close, offsetBy: 2)]
        return state != "Z" && state != "X"
    }
}
