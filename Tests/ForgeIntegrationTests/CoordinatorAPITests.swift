// `forge coordinator` and `forge worker` as real processes, driven the way users drive them:
// boto3 (create, describe, list, the completion waiter, stop, the errors botocore models) and
// the forge CLI (submit a YAML job file, jobs, describe, stop). The coordinator has an access
// key, so every request here is signed and checked.
import ForgeTestSupport
import Foundation
import Testing

/// A coordinator and its workers, stopped when the test ends.
final class LocalCluster {
    let directory: TemporaryDirectory
    let endpoint: String
    private let control: Int
    private let api: Int
    private var processes: [Process] = []
    private var coordinator: Process?

    /// The key the coordinator accepts and the `forge` clients sign with; nil: none configured.
    let key: (id: String, secret: String)?
    private let keysInEnvironment: Bool
    private let coordinatorArguments: [String]

    /// `key` reaches the coordinator as FORGE_ACCESS_KEY_ID/FORGE_SECRET_ACCESS_KEY unless
    /// `keysInEnvironment` is false (then `coordinatorArguments` may name a --credentials file).
    init(workers: Int, key: (id: String, secret: String)? = ("AKIDEXAMPLE", "secret"), keysInEnvironment: Bool = true,
         coordinatorArguments: [String] = []) throws {
        self.key = key
        self.keysInEnvironment = keysInEnvironment
        self.coordinatorArguments = coordinatorArguments
        directory = try TemporaryDirectory()
        control = MultiNodeLaunchTests.freePort()
        api = MultiNodeLaunchTests.freePort()
        endpoint = "http://127.0.0.1:\(api)"
        _ = try directory.write(SyntheticCSV(count: 600, seed: 1).labelled, to: "state/objects/data/train/part-0.csv")
        _ = try directory.write(SyntheticCSV(count: 200, seed: 2).labelled, to: "state/objects/data/validation/part-0.csv")
        try startCoordinator()
        for index in 0..<workers {
            try launch(["worker", "--coordinator", "tcp://127.0.0.1:\(control)", "--work-dir", directory.file("w\(index)"),
                        "--node-addr", "127.0.0.1"], log: "worker\(index).log")
        }
    }

    /// Starts the coordinator (again: same state, same ports) and waits for its API.
    func startCoordinator() throws {
        coordinator = try launch(["coordinator", "--state", directory.file("state"), "--listen", "tcp://127.0.0.1:\(control)",
                                  "--api", "127.0.0.1:\(api)", "--heartbeat-timeout", "10000"] + coordinatorArguments, log: "coordinator.log",
                             environment: keysInEnvironment ? ["FORGE_ACCESS_KEY_ID": key?.id, "FORGE_SECRET_ACCESS_KEY": key?.secret] : [:])
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            if (try? forge(["jobs"]))?.status == 0 { return }
            usleep(200_000)
        }
        throw ForgeProcess.Failure(description: "the coordinator's API did not come up: \(log("coordinator.log"))")
    }

    /// kill -9 the coordinator.
    func killCoordinator() {
        guard let coordinator else { return }
        kill(coordinator.processIdentifier, SIGKILL)
        coordinator.waitUntilExit()
    }

    @discardableResult
    private func launch(_ arguments: [String], log: String, environment extra: [String: String?] = [:]) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try ForgeProcess.binary())
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        for name in ForgeProcess.blasVariables + LocalCluster.keyVariables { environment[name] = nil }
        for (name, value) in extra { environment[name] = value }
        process.environment = environment
        _ = FileManager.default.createFile(atPath: directory.file(log), contents: nil)
        let handle = FileHandle(forWritingAtPath: directory.file(log))
        handle?.seekToEndOfFile()
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        processes.append(process)
        return process
    }

    func log(_ name: String) -> String { (try? String(contentsOfFile: directory.file(name), encoding: .utf8)) ?? "" }

    /// Runs a Python script with the API's URL as its first argument (then `more`) and reads the
    /// JSON it prints; a failure is recorded as an issue with the coordinator's log, and is nil.
    func pythonJSON(_ script: String, _ more: [String] = []) -> Any? {
        do {
            return try ExternalTool.pythonJSON(script, [endpoint] + more)
        } catch {
            Issue.record("\(error)\ncoordinator: \(log("coordinator.log").suffix(3000))")
            return nil
        }
    }

    /// Variables that carry access keys; no child inherits them from the test's environment.
    static let keyVariables = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
                               "AWS_SHARED_CREDENTIALS_FILE", "FORGE_ACCESS_KEY_ID", "FORGE_SECRET_ACCESS_KEY"]

    /// Runs a forge client against this cluster, signing with `key` unless `environment`
    /// says otherwise (no shared-credentials file is found unless it names one).
    func forge(_ arguments: [String], environment extra: [String: String?] = [:]) throws -> ForgeRun {
        var environment: [String: String?] = ["FORGE_ENDPOINT": endpoint, "AWS_SHARED_CREDENTIALS_FILE": directory.file("no-credentials")]
        for name in LocalCluster.keyVariables where environment[name] == nil { environment[name] = .some(nil) }
        if let key {
            environment["AWS_ACCESS_KEY_ID"] = key.id
            environment["AWS_SECRET_ACCESS_KEY"] = key.secret
        }
        for (name, value) in extra { environment[name] = value }
        return try ForgeProcess.run(arguments, environment: environment, timeout: .seconds(60))
    }

    deinit {
        for process in processes.reversed() where process.isRunning { process.terminate() }
        for process in processes { process.waitUntilExit() }
    }
}

@Suite(.serialized) struct CoordinatorAPITests {
    @Test func boto3DrivesJobsThroughTheSageMakerAPI() throws {
        let cluster = try LocalCluster(workers: 2)
        let script = """
        import boto3, sys, json, time
        sm = boto3.client("sagemaker", endpoint_url=sys.argv[1], region_name="us-east-1",
                          aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret")
        def create(name, count, epochs):
            return sm.create_training_job(TrainingJobName=name, RoleArn="arn:aws:iam::123456789012:role/forge",
                AlgorithmSpecification={"TrainingImage": "forge/mlp:latest", "TrainingInputMode": "File"},
                HyperParameters={"epochs": str(epochs), "hidden_layer_sizes": "16", "mini_batch_size": "32"},
                InputDataConfig=[{"ChannelName": c, "ContentType": "text/csv",
                                  "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://data/" + c}}}
                                 for c in ("train", "validation")],
                OutputDataConfig={"S3OutputPath": "s3://data/models"},
                ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": count, "VolumeSizeInGB": 1},
                StoppingCondition={"MaxRuntimeInSeconds": 600})
        out = {"arn": create("boto-pair", 2, 10)["TrainingJobArn"]}
        sm.get_waiter("training_job_completed_or_stopped").wait(TrainingJobName="boto-pair", WaiterConfig={"Delay": 1, "MaxAttempts": 120})
        d = sm.describe_training_job(TrainingJobName="boto-pair")
        out["status"] = d["TrainingJobStatus"]
        out["secondary"] = [t["Status"] for t in d["SecondaryStatusTransitions"]]
        out["model"] = d["ModelArtifacts"]["S3ModelArtifacts"]
        out["metrics"] = {m["MetricName"]: m["Value"] for m in d.get("FinalMetricDataList", [])}
        logs = boto3.client("logs", endpoint_url=sys.argv[1], region_name="us-east-1",
                            aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret")
        streams = logs.describe_log_streams(logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix="boto-pair/")
        out["streams"] = [s["logStreamName"] for s in streams["logStreams"]]
        out["streamsPaged"] = "nextToken" in streams
        first = out["streams"][0]
        page = logs.get_log_events(logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=first, startFromHead=True)
        out["lastLine"] = page["events"][-1]["message"] if page["events"] else ""
        out["afterLast"] = len(logs.get_log_events(logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=first,
                                                   nextToken=page["nextForwardToken"])["events"])
        create("boto-long", 1, 100000)
        for _ in range(100):
            if sm.describe_training_job(TrainingJobName="boto-long")["SecondaryStatus"] == "Training": break
            time.sleep(0.2)
        sm.stop_training_job(TrainingJobName="boto-long")
        sm.get_waiter("training_job_completed_or_stopped").wait(TrainingJobName="boto-long", WaiterConfig={"Delay": 1, "MaxAttempts": 120})
        out["stopped"] = sm.describe_training_job(TrainingJobName="boto-long")["TrainingJobStatus"]
        out["listed"] = [j["TrainingJobName"] for j in sm.list_training_jobs(SortBy="Name", SortOrder="Ascending")["TrainingJobSummaries"]]
        out["completed"] = [j["TrainingJobName"] for j in sm.list_training_jobs(StatusEquals="Completed")["TrainingJobSummaries"]]
        errors = {}
        try: create("boto-pair", 1, 1)
        except Exception as e: errors["duplicate"] = e.response["Error"]["Code"]
        try: sm.describe_training_job(TrainingJobName="missing")
        except Exception as e: errors["describe"] = e.response["Error"]["Code"] + ": " + e.response["Error"]["Message"]
        try: sm.stop_training_job(TrainingJobName="missing")
        except Exception as e: errors["stop"] = e.response["Error"]["Code"]
        try: create("bad name!", 0, 1)
        except Exception as e: errors["invalid"] = e.response["Error"]["Code"] + ": " + e.response["Error"]["Message"]
        out["errors"] = errors
        import urllib.request
        out["prometheus"] = urllib.request.urlopen(sys.argv[1] + "/metrics").read().decode()
        nodes = sm.list_cluster_nodes(ClusterName="default")["ClusterNodeSummaries"]
        out["nodes"] = sorted(n["InstanceStatus"]["Status"] for n in nodes)
        print(json.dumps(out))
        """
        let result: Any
        do {
            result = try ExternalTool.pythonJSON(script, [cluster.endpoint])
        } catch {
            Issue.record("\(error)\ncoordinator: \(cluster.log("coordinator.log").suffix(3000))\nworker 0: \(cluster.log("worker0.log").suffix(1500))\nworker 1: \(cluster.log("worker1.log").suffix(1500))")
            return
        }
        let answer = try #require(result as? [String: Any])
        #expect(answer["arn"] as? String == "arn:aws:sagemaker:us-east-1:000000000000:training-job/boto-pair")
        #expect(answer["status"] as? String == "Completed", "\(answer) \(cluster.log("coordinator.log").suffix(2000))")
        #expect(answer["secondary"] as? [String] == ["Starting", "Downloading", "Training", "Uploading", "Completed"])
        #expect(answer["model"] as? String == "s3://data/models/boto-pair/output/model.tar.gz")
        #expect(FileManager.default.fileExists(atPath: cluster.directory.file("state/objects/data/models/boto-pair/output/model.tar.gz")))
        #expect(((answer["metrics"] as? [String: Double])?["validation:accuracy"] ?? 0) > 0.9, "\(answer)")
        // One stream per host, named as SageMaker names them: JOB/algo-N-EPOCH.
        let streams = answer["streams"] as? [String] ?? []
        #expect(streams.count == 2 && streams[0].hasPrefix("boto-pair/algo-1-") && streams[1].hasPrefix("boto-pair/algo-2-")
                && streams[0].split(separator: "-").last == streams[1].split(separator: "-").last, "\(answer)")
        #expect(answer["streamsPaged"] as? Bool == false)
        #expect((answer["lastLine"] as? String)?.contains("final:") == true || (answer["lastLine"] as? String)?.contains("wrote") == true, "\(answer)")
        #expect(answer["afterLast"] as? Int == 0, "the forward token after the last event gives an empty page")
        #expect(answer["stopped"] as? String == "Stopped")
        // The stopped rank used its grace period to write a checkpoint (the job keeps it).
        let kept = (try? FileManager.default.contentsOfDirectory(atPath: cluster.directory.file("state/checkpoints/boto-long"))) ?? []
        #expect(kept.contains { $0.hasPrefix("step-") }, "no checkpoint after the stop: \(kept)")
        #expect(answer["listed"] as? [String] == ["boto-long", "boto-pair"])
        #expect(answer["completed"] as? [String] == ["boto-pair"])
        #expect(answer["nodes"] as? [String] == ["Running", "Running"], "\(answer)")
        // Prometheus at /metrics: jobs by status, nodes, and the 2-rank job's steps and all-reduce payload.
        let prometheus = answer["prometheus"] as? String ?? ""
        func value(_ series: String) -> Double? {
            prometheus.split(separator: "\n").first { $0.hasPrefix(series + " ") }.flatMap { Double($0.split(separator: " ").last ?? "") }
        }
        #expect(value(#"forge_jobs{status="Completed"}"#) == 1, "\(prometheus)")
        #expect(value(#"forge_jobs{status="Stopped"}"#) == 1, "\(prometheus)")
        #expect(value(#"forge_nodes{status="Running"}"#) == 2, "\(prometheus)")
        #expect((value(#"forge_training_steps_total{job="boto-pair"}"#) ?? 0) >= 10, "\(prometheus)")
        #expect((value(#"forge_allreduce_bytes_total{job="boto-pair"}"#) ?? 0) > 0, "\(prometheus)")
        #expect((value("forge_heartbeats_total") ?? 0) > 0, "\(prometheus)")
        let errors = answer["errors"] as? [String: String] ?? [:]
        #expect(errors["duplicate"] == "ResourceInUse")
        #expect(errors["describe"] == "ValidationException: Requested resource not found.")
        #expect(errors["stop"] == "ResourceNotFound")
        #expect(errors["invalid"]?.hasPrefix("ValidationException: ") == true && errors["invalid"]?.contains("trainingJobName") == true, "\(errors)")
    }

    @Test func aCoordinatorKilledMidJobComesBackAndReattachesTheRunningRanks() throws {
        let cluster = try LocalCluster(workers: 2)
        let spec = try cluster.directory.write("""
        TrainingJobName: survivor
        RoleArn: arn:aws:iam::123456789012:role/forge
        AlgorithmSpecification: {TrainingImage: "forge/mlp", TrainingInputMode: File}
        HyperParameters: {epochs: "400", hidden_layer_sizes: "16", mini_batch_size: "32", forge_checkpoint_steps: "20"}
        InputDataConfig:
          - ChannelName: train
            DataSource: {S3DataSource: {S3DataType: S3Prefix, S3Uri: "s3://data/train"}}
          - ChannelName: validation
            DataSource: {S3DataSource: {S3DataType: S3Prefix, S3Uri: "s3://data/validation"}}
        OutputDataConfig: {S3OutputPath: "s3://data/models"}
        ResourceConfig: {InstanceType: ml.m5.large, InstanceCount: 2}
        """, to: "survivor.yaml")
        #expect(try cluster.forge(["submit", spec]).status == 0)
        let checkpoints = cluster.directory.file("state/checkpoints/survivor")
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline, ((try? FileManager.default.contentsOfDirectory(atPath: checkpoints)) ?? []).isEmpty { usleep(100_000) }
        // Both ranks' first lines are in, and the job is still running when its coordinator dies.
        func streams() throws -> Set<Substring> {
            let logs = try cluster.forge(["logs", "survivor"]).standardOutput
            return Set(logs.split(separator: "\n").compactMap { $0.hasPrefix("[") ? $0.split(separator: "]").first : nil })
        }
        while Date() < deadline, try streams().count < 2 { usleep(100_000) }
        #expect(try cluster.forge(["describe", "survivor"]).standardOutput.contains("\"TrainingJobStatus\" : \"InProgress\""))
        cluster.killCoordinator()
        try cluster.startCoordinator()
        var described = ""
        for _ in 0..<600 {
            described = try cluster.forge(["describe", "survivor"]).standardOutput
            if ["Completed", "Failed", "Stopped"].contains(where: { described.contains("\"TrainingJobStatus\" : \"\($0)\"") }) { break }
            usleep(200_000)
        }
        #expect(described.contains("\"TrainingJobStatus\" : \"Completed\""), "\(described)\n\(cluster.log("coordinator.log").suffix(3000))")
        // Its ranks ran on while the coordinator was away: the new one re-attached them (no
        // restart, no second attempt) and saw them finish.
        #expect(!described.contains("Restarting") && !described.contains("was interrupted"), "\(described)")
        let logs = try cluster.forge(["logs", "survivor"]).standardOutput
        let hosts = try streams()
        #expect(logs.contains("epoch=400 ") && hosts.count == 2, "one attempt, two hosts: \(hosts) \(logs.suffix(2000))")
        // Nothing the ranks wrote meanwhile is lost or stored twice: what was on its way to the
        // dead coordinator, queued while none listened, or sent again when the workers
        // re-registered. Rank 0 writes a line per epoch.
        let epochs = logs.split(separator: "\n").compactMap { line -> Int? in
            guard let range = line.range(of: "] epoch=") else { return nil }
            return Int(line[range.upperBound...].prefix { $0.isNumber })
        }
        #expect(epochs == Array(1...400), "epochs out of order, missing or repeated: \(epochs.count) lines")
        let resumed = try String(contentsOfFile: cluster.directory.file("state/objects/data/models/survivor/output/metrics.json"), encoding: .utf8)
        #expect(resumed.contains("validation:accuracy"))
    }

    @Test func theForgeCLISubmitsListsDescribesAndStops() throws {
        let cluster = try LocalCluster(workers: 1)
        let spec = try cluster.directory.write("""
        TrainingJobName: cli-job
        RoleArn: arn:aws:iam::123456789012:role/forge
        AlgorithmSpecification: {TrainingImage: "forge/linear-learner", TrainingInputMode: File}
        HyperParameters: {predictor_type: multiclass_classifier, num_classes: "3", epochs: "5"}
        InputDataConfig:
          - ChannelName: train
            ContentType: text/csv
            DataSource: {S3DataSource: {S3DataType: S3Prefix, S3Uri: "s3://data/train"}}
        OutputDataConfig: {S3OutputPath: "s3://data/models"}
        ResourceConfig: {InstanceType: ml.m5.large, InstanceCount: 1}
        """, to: "cli-job.yaml")
        let submitted = try cluster.forge(["submit", spec])
        #expect(submitted.status == 0, "\(submitted)")
        #expect(submitted.standardOutput.contains("training-job/cli-job"))
        var described = ""
        for _ in 0..<200 {
            described = try cluster.forge(["describe", "cli-job"]).standardOutput
            if described.contains("\"TrainingJobStatus\" : \"Completed\"") || described.contains("\"Failed\"") { break }
            usleep(200_000)
        }
        #expect(described.contains("\"TrainingJobStatus\" : \"Completed\""), "\(described)")
        let logs = try cluster.forge(["logs", "cli-job"])
        #expect(logs.status == 0 && logs.standardOutput.split(separator: "\n").contains { $0.hasPrefix("[algo-1-") && $0.contains("] epoch=5 ") }, "\(logs)")
        let followed = try cluster.forge(["logs", "-f", "cli-job"])
        #expect(followed.standardOutput == logs.standardOutput, "following an ended job prints the same and returns")
        let nodes = try cluster.forge(["nodes"])
        #expect(nodes.status == 0 && nodes.standardOutput.contains("Running"), "\(nodes)")
        let jobs = try cluster.forge(["jobs"])
        #expect(jobs.standardOutput.contains("cli-job") && jobs.standardOutput.contains("Completed"), "\(jobs)")
        // A bad file is refused before it is sent, with every problem listed.
        let bad = try cluster.directory.write("TrainingJobName: x\nResourceConfig: {InstanceCount: 0}\n", to: "bad.yaml")
        let refused = try cluster.forge(["submit", bad])
        #expect(refused.status == 1)
        #expect(refused.standardError.contains("validation errors detected") && refused.standardError.contains("roleArn"), "\(refused)")
        let missing = try cluster.forge(["stop", "no-such-job"])
        #expect(missing.status == 1 && missing.standardError.contains("ResourceNotFound"), "\(missing)")
        // Nothing listens here: a clear error that says what to do.
        let nowhere = try ForgeProcess.run(["jobs", "--endpoint", "http://127.0.0.1:1"], timeout: .seconds(60))
        #expect(nowhere.status == 1 && nowhere.standardError.contains("is forge coordinator running?"), "\(nowhere)")
    }
}
