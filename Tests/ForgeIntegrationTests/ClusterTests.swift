// The cluster runtime end to end: a real coordinator (in this process, on its ZeroMQ control
// endpoint and a real SQLite store) and real `forge worker` processes that run real `forge
// train` ranks. Jobs are gang-scheduled, complete with their model where SageMaker puts it,
// and leave their events and logs in the store; a worker killed mid-job fails the attempt,
// which restarts from its checkpoint on the workers left.
import ForgeCoordinator
import ForgeTestSupport
import Foundation
import Logging
import Testing

/// Worker processes for one test; all are killed when it ends.
final class WorkerProcesses {
    private(set) var processes: [Process] = []

    func start(_ count: Int, coordinator: String, directory: TemporaryDirectory) throws {
        for _ in 0..<count {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: try ForgeProcess.binary())
            process.arguments = ["worker", "--coordinator", coordinator, "--work-dir", directory.file("workers"), "--node-addr", "127.0.0.1"]
            var environment = ProcessInfo.processInfo.environment
            for name in ForgeProcess.blasVariables { environment[name] = nil }
            process.environment = environment
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle(forWritingAtPath: "/dev/null")
            try process.run()
            processes.append(process)
        }
    }

    func kill(_ index: Int) {
        Foundation.kill(processes[index].processIdentifier, SIGKILL)
    }

    deinit {
        for process in processes where process.isRunning {
            process.terminate()
        }
        for process in processes { process.waitUntilExit() }
    }
}

@Suite(.serialized) struct ClusterTests {
    static func spec(_ name: String, algorithm: String, instances: Int, epochs: Int, bucket: String, retries: Int = 0) -> String {
        let model = algorithm == "mlp" ? #""hidden_layer_sizes": "16""# : #""predictor_type": "multiclass_classifier", "num_classes": "3""#
        return """
        {"TrainingJobName": "\(name)", "RoleArn": "arn:aws:iam::123456789012:role/forge",
         "AlgorithmSpecification": {"TrainingImage": "forge/\(algorithm):latest", "TrainingInputMode": "File"},
         "HyperParameters": {"epochs": "\(epochs)", "mini_batch_size": "32", "forge_checkpoint_steps": "20", \(model)},
         "InputDataConfig": [
           {"ChannelName": "train", "ContentType": "text/csv", "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://\(bucket)/train"}}},
           {"ChannelName": "validation", "ContentType": "text/csv", "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://\(bucket)/validation"}}}],
         "OutputDataConfig": {"S3OutputPath": "s3://\(bucket)/models"},
         "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": \(instances)},
         "RetryStrategy": {"MaximumRetryAttempts": \(max(retries, 1))},
         "StoppingCondition": {"MaxRuntimeInSeconds": 600}}
        """
    }

    /// A coordinator with its data in the object store (bucket `data`).
    static func coordinator(_ directory: TemporaryDirectory) throws -> Coordinator {
        let configuration = CoordinatorConfiguration(listen: "tcp://127.0.0.1:*", stateDirectory: directory.file("state"),
                                                     heartbeatMilliseconds: 200, heartbeatTimeoutMilliseconds: 5000, stopGraceSeconds: 5)
        var logger = Logger(label: "coordinator")
        logger.logLevel = .warning
        let coordinator = try Coordinator(configuration: configuration, logger: logger)
        _ = try directory.write(SyntheticCSV(count: 600, seed: 1).labelled, to: "state/objects/data/train/part-0.csv")
        _ = try directory.write(SyntheticCSV(count: 200, seed: 2).labelled, to: "state/objects/data/validation/part-0.csv")
        return coordinator
    }

    /// Steps the coordinator until `done` or the deadline; returns whether `done` held.
    static func run(_ coordinator: Coordinator, seconds: Double, until done: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            coordinator.step(timeoutMilliseconds: 50)
            if done() { return true }
        }
        return false
    }

    @Test func twoJobsOnThreeWorkersCompleteWithTheirModelsEventsAndLogs() throws {
        let directory = try TemporaryDirectory()
        let coordinator = try Self.coordinator(directory)
        let workers = WorkerProcesses()
        try workers.start(3, coordinator: coordinator.endpoint, directory: directory)
        #expect(Self.run(coordinator, seconds: 60) { coordinator.workers.count == 3 }, "the workers did not register")
        try coordinator.submit(try TrainingJobSpec.decode(json: Data(Self.spec("pair", algorithm: "mlp", instances: 2, epochs: 8, bucket: "data").utf8)))
        try coordinator.submit(try TrainingJobSpec.decode(json: Data(Self.spec("solo", algorithm: "linear-learner", instances: 1, epochs: 8, bucket: "data").utf8)))
        let finished = Self.run(coordinator, seconds: 240) {
            ((try? coordinator.store.jobs(status: .inProgress)) ?? []).isEmpty && ((try? coordinator.store.jobs(status: .stopping)) ?? []).isEmpty
        }
        #expect(finished, "jobs still running: \(String(describing: try? coordinator.store.jobs().map { "\($0.name) \($0.state.secondaryStatus)" }))")
        for name in ["pair", "solo"] {
            let job = try coordinator.store.job(named: name)
            #expect(job.state.status == .completed, "\(name): \(job.state.failureReason ?? "") \(job.state.transitions.map(\.message))")
            #expect(job.state.transitions.map(\.status) == [.starting, .downloading, .training, .uploading, .completed], "\(name)")
            let model = directory.file("state/objects/data/models/\(name)/output/model.tar.gz")
            #expect(FileManager.default.fileExists(atPath: model), "\(name): no \(model)")
            let metrics = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: directory.file("state/objects/data/models/\(name)/output/metrics.json")))) as? [String: Double]
            let accuracy = metrics?["validation:accuracy"] ?? metrics?["validation:multiclass_accuracy"] ?? 0
            #expect(accuracy > 0.9, "\(name): \(String(describing: metrics))")
            #expect(try coordinator.store.events(of: name).map(\.kind) == ["Created", "Assigned", "TrainingStarted", "UploadStarted", "Succeeded"])
            let streams = try coordinator.store.logStreams(of: name)
            #expect(streams.count == job.spec.instanceCount, "\(name): \(streams)")
            let lines = try coordinator.store.logLines(of: name, stream: "\(name)/attempt-1/rank-0")
            #expect(lines.contains { $0.hasPrefix("epoch=8 ") }, "\(name): rank 0's log has no final metric line: \(lines.suffix(5))")
        }
    }

    @Test func aWorkerKilledMidJobFailsTheAttemptAndTheJobResumesFromItsCheckpoint() throws {
        let directory = try TemporaryDirectory()
        let coordinator = try Self.coordinator(directory)
        let workers = WorkerProcesses()
        try workers.start(3, coordinator: coordinator.endpoint, directory: directory)
        #expect(Self.run(coordinator, seconds: 60) { coordinator.workers.count == 3 }, "the workers did not register")
        try coordinator.submit(try TrainingJobSpec.decode(json: Data(Self.spec("tough", algorithm: "mlp", instances: 2, epochs: 60, bucket: "data", retries: 2).utf8)))
        // Wait for training and its first checkpoint, then kill a worker that runs a rank.
        let checkpoints = directory.file("state/checkpoints/tough")
        let training = Self.run(coordinator, seconds: 120) {
            ((try? FileManager.default.contentsOfDirectory(atPath: checkpoints)) ?? []).contains { $0.hasPrefix("step-") }
        }
        #expect(training, "no checkpoint appeared")
        let busy = coordinator.workers.values.filter { $0.assignment != nil }.map(\.resources.pid)
        let victim = try #require(workers.processes.firstIndex { busy.contains($0.processIdentifier) })
        workers.kill(victim)
        let finished = Self.run(coordinator, seconds: 240) {
            (try? coordinator.store.job(named: "tough").state.status.isTerminal) == true
        }
        #expect(finished)
        let job = try coordinator.store.job(named: "tough")
        #expect(job.state.status == .completed, "\(job.state.failureReason ?? "") \(job.state.transitions.map(\.message))")
        #expect(job.state.attempt == 2)
        let restart = try #require(job.state.transitions.first { $0.status == .restarting })
        #expect(restart.message.contains("rank"), "the restart names the rank: \(restart.message)")
        let attempt2 = try coordinator.store.logLines(of: "tough", stream: "tough/attempt-2/rank-0")
        #expect(attempt2.contains { $0.contains("resum") }, "attempt 2 resumed from a checkpoint: \(attempt2.prefix(10))")
    }
}
