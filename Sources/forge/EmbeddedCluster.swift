// `forge train --instance-count N` on the embedded defaults: a coordinator in this process
// (SQLite and a folder store under OUTPUT/cluster), N local `forge worker` processes, and the
// job submitted to it as CreateTrainingJob would submit it. The coordinator does for one
// machine what it does for a cluster: gang scheduling, rank output in the store, a named
// failure, SIGTERM with a checkpoint on a stop. Rank 0's lines are shown as they come, and
// the model and metrics are copied to OUTPUT when the job completes.
import ArgumentParser
import ForgeCoordinator
import ForgeData
import ForgeTraining
import Foundation
import Logging

/// One local job with its coordinator and workers.
///
/// Concurrency: used on the calling thread only; the coordinator's loop runs there too.
struct EmbeddedCluster {
    let algorithm: String
    let train: String
    let validation: String?
    let hyperparameters: [String: String]
    let output: String
    let checkpointDirectory: String?
    let instanceCount: Int
    let distribution: TrainDistribution
    let contentType: String?
    let csvHeader: Bool
    let resume: Bool
    let clusterKey: String?
    let quiet: Bool

    /// Runs the job to its end; throws an `ExitCode` for a failed or stopped job.
    func run() throws {
        let output = EmbeddedCluster.absolute(self.output)
        let state = (output as NSString).appendingPathComponent("cluster")
        let checkpoints = EmbeddedCluster.absolute(checkpointDirectory ?? (output as NSString).appendingPathComponent("checkpoints"))
        let logs = (state as NSString).appendingPathComponent("logs")
        let fileManager = FileManager.default
        try fileManager.createDirectory(atPath: logs, withIntermediateDirectories: true)
        if !resume, fileManager.fileExists(atPath: checkpoints) {
            try fileManager.removeItem(atPath: checkpoints)
            FileHandle.standardError.write(Data("removed earlier checkpoints in \(checkpoints) (--no-resume)\n".utf8))
        }

        // Jobs of an earlier run that was killed outright have no workers any more: they end
        // as stopped, so that they are not taken up again beside this one.
        if let earlier = try? JobStore(path: (state as NSString).appendingPathComponent("forge.sqlite")) {
            for job in (try? earlier.jobs()) ?? [] where !job.state.status.isTerminal {
                _ = try? earlier.apply(.stopRequested, to: job.name, at: Date())
                _ = try? earlier.apply(.ranksStopped, to: job.name, at: Date())
            }
        }
        var logger = Log.logger(verbose: false)
        logger.logLevel = .warning
        let configuration = CoordinatorConfiguration(listen: "tcp://127.0.0.1:*", stateDirectory: state, heartbeatMilliseconds: 250,
                                                     heartbeatTimeoutMilliseconds: 10_000, clusterKeyPath: clusterKey.map(EmbeddedCluster.absolute))
        let coordinator: Coordinator
        let spec: TrainingJobSpec
        do {
            coordinator = try Coordinator(configuration: configuration, logger: logger)
            spec = try TrainingJobSpec.decode(object: jobObject(output: (state as NSString).appendingPathComponent("output"), checkpoints: checkpoints))
        } catch {
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            throw ExitCode.failure
        }
        let workers = try LocalWorkers(count: instanceCount, coordinator: coordinator.endpoint, state: state,
                                       clusterKey: configuration.clusterKeyPath)
        defer { workers.stop() }

        // At a terminal, rank 0 reports its steps and the bar is drawn here.
        let display = ProgressDisplay(logger: logger, quiet: quiet)
        defer { display.finish() }
        var rankLogs = [Int: FileHandle]()
        defer { for handle in rankLogs.values { try? handle.close() } }
        coordinator.outputHandler = { job, rank, lines in
            guard job == spec.name else { return }
            if rankLogs[rank] == nil {
                let path = (logs as NSString).appendingPathComponent("\(spec.name)-rank-\(rank).log")
                _ = FileManager.default.createFile(atPath: path, contents: nil)
                rankLogs[rank] = FileHandle(forWritingAtPath: path)
            }
            rankLogs[rank]?.write(Data(lines.map { $0 + "\n" }.joined().utf8))
            // Rank 0 speaks for the job, as a single process would: metric lines on standard
            // output, the rest on standard error. The other ranks' lines follow on standard
            // error, marked with their rank (as torchrun marks them).
            for line in lines {
                if rank == 0, display.drawReported(line) { continue }
                display.clearForLine()
                if rank == 0, line.hasPrefix("epoch=") {
                    FileHandle.standardOutput.write(Data((line + "\n").utf8))
                } else {
                    FileHandle.standardError.write(Data(((rank == 0 ? "" : "[rank \(rank)] ") + line + "\n").utf8))
                }
            }
            display.redrawReported()
        }
        // The job goes in once every worker has registered, so it starts at once (no Pending).
        let registration = Date().addingTimeInterval(60)
        while coordinator.workers.count < instanceCount {
            coordinator.step(timeoutMilliseconds: 50)
            if let dead = workers.firstExited() {
                FileHandle.standardError.write(Data("error: local worker \(dead.index) exited (\(dead.status)); its log:\n\(dead.log)\n".utf8))
                throw ExitCode.failure
            }
            if Date() > registration {
                FileHandle.standardError.write(Data("error: \(coordinator.workers.count) of \(instanceCount) local workers registered within 60 s; their logs are in \(logs)\n".utf8))
                throw ExitCode.failure
            }
        }
        try coordinator.submit(spec)

        // SIGTERM or SIGINT: stop the job as StopTrainingJob would (the ranks finish their step
        // and write a checkpoint), then exit with 128 + the signal.
        let signals = SignalLatch(signals: [SIGTERM, SIGINT])
        var stopSignal: Int32?
        var record = try coordinator.store.job(named: spec.name)
        while !record.state.status.isTerminal {
            coordinator.step(timeoutMilliseconds: 50)
            if stopSignal == nil, let signal = signals.received {
                stopSignal = signal
                try? coordinator.stop(job: spec.name)
            }
            record = try coordinator.store.job(named: spec.name)
            if !record.state.status.isTerminal, [.starting, .pending].contains(record.state.secondaryStatus),
               let dead = workers.firstExited() {
                FileHandle.standardError.write(Data("error: local worker \(dead.index) exited before the job started (\(dead.status)); its log:\n\(dead.log)\n".utf8))
                throw ExitCode.failure
            }
        }

        switch record.state.status {
        case .completed:
            let produced = try RankPlan(spec: spec, configuration: configuration).outputDirectory
            for name in ["model.tar.gz", "metrics.json"] {
                let source = (produced as NSString).appendingPathComponent(name)
                let target = (output as NSString).appendingPathComponent(name)
                try? fileManager.removeItem(atPath: target)
                try fileManager.copyItem(atPath: source, toPath: target)
            }
            FileHandle.standardError.write(Data("wrote \(output)/model.tar.gz and metrics.json (job \(spec.name); its store and logs are in \(state))\n".utf8))
            if algorithm == AlgorithmKind.transformerLM.rawValue {
                try printLanguageModelReport(output: output)
            }
        case .stopped:
            throw ExitCode(128 + (stopSignal ?? SIGTERM))
        default:
            let reason = record.state.failureReason ?? record.state.transitions.last?.message ?? "the job failed"
            FileHandle.standardError.write(Data("error: \(reason)\nevery rank's output: \(logs)\n".utf8))
            throw ExitCode.failure
        }
    }

    /// A language model's loss beside its corpus's unigram entropy (when the train channel is a
    /// local path), and a sampled continuation.
    private func printLanguageModelReport(output: String) throws {
        let metricsPath = (output as NSString).appendingPathComponent("metrics.json")
        let metrics = (try? JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: metricsPath)))) as? [String: Double] ?? [:]
        let loss = metrics["validation:loss"].map { MetricValue("validation:loss", $0) } ?? metrics["train:loss"].map { MetricValue("train:loss", $0) }
        let entropy = train.hasPrefix("s3://") ? nil : (try? TextCorpus.load(path: train))?.unigramEntropy
        let report = try LanguageModelReport.lines(modelPath: (output as NSString).appendingPathComponent("model.tar.gz"),
                                                   loss: loss, unigramEntropy: entropy)
        for line in report { print(line) }
    }

    /// CreateTrainingJob's members for this command's job.
    private func jobObject(output: String, checkpoints: String) -> [String: Any] {
        let stamp = ISO8601DateFormatter.string(from: Date(), timeZone: .gmt, formatOptions: [.withYear, .withMonth, .withDay, .withTime])
        let suffix = String(UInt32.random(in: 0...UInt32.max), radix: 36)
        var type = contentType
        if csvHeader { type = "\(contentType ?? "text/csv");header=present" }
        func channel(_ name: String, _ path: String, _ distribution: String) -> [String: Any] {
            var channel: [String: Any] = ["ChannelName": name, "DataSource": ["S3DataSource": [
                "S3DataType": "S3Prefix", "S3Uri": EmbeddedCluster.absolute(path), "S3DataDistributionType": distribution]]]
            if let type { channel["ContentType"] = type }
            return channel
        }
        var channels = [channel("train", train, distribution.rawValue)]
        if let validation { channels.append(channel("validation", validation, "FullyReplicated")) }
        return [
            "TrainingJobName": "train-\(stamp.replacingOccurrences(of: ":", with: ""))-\(suffix)",
            "RoleArn": "arn:aws:iam::000000000000:role/forge-local",
            "AlgorithmSpecification": ["TrainingImage": "forge/\(algorithm)", "TrainingInputMode": "File"],
            "HyperParameters": hyperparameters,
            "InputDataConfig": channels,
            "OutputDataConfig": ["S3OutputPath": output],
            "ResourceConfig": ["InstanceType": "local", "InstanceCount": instanceCount],
            "StoppingCondition": ["MaxRuntimeInSeconds": 2_419_200],
            "CheckpointConfig": ["S3Uri": checkpoints],
            "Environment": isatty(STDERR_FILENO) == 1 && !quiet ? ["FORGE_PROGRESS": "report"] : [String: String](),
        ]
    }

    static func absolute(_ path: String) -> String {
        let full = path.hasPrefix("/") ? path : (FileManager.default.currentDirectoryPath as NSString).appendingPathComponent(path)
        return (full as NSString).standardizingPath
    }
}

/// `forge worker` processes on this machine, each on its own share of the CPUs when there are
/// enough (as forge launch --cpu-bind cores), logging to STATE/logs/worker-I.log.
///
/// Concurrency: used on one thread.
final class LocalWorkers {
    private var processes: [Process] = []
    private let logPaths: [String]

    init(count: Int, coordinator: String, state: String, clusterKey: String?) throws {
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let cpus = CPUBinding.allowedCPUs()
        let bind = count <= cpus.count
        defer { if bind { CPUBinding.pinCallingThread(to: cpus) } }
        logPaths = (0..<count).map { (state as NSString).appendingPathComponent("logs/worker-\($0).log") }
        for index in 0..<count {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = ["worker", "--coordinator", coordinator, "--work-dir", (state as NSString).appendingPathComponent("workers"),
                                 "--node-addr", "127.0.0.1"] + (clusterKey.map { ["--cluster-key", $0] } ?? [])
            var environment = ProcessInfo.processInfo.environment
            if bind { environment["FORGE_CPU_BIND"] = "cores" }
            process.environment = environment
            _ = FileManager.default.createFile(atPath: logPaths[index], contents: nil)
            let log = FileHandle(forWritingAtPath: logPaths[index])
            process.standardOutput = log
            process.standardError = log
            process.standardInput = FileHandle.nullDevice
            if bind {
                // The worker, and so its ranks, inherit the spawning thread's CPU set.
                CPUBinding.pinCallingThread(to: CPUBinding.share(index, of: count, cpus: cpus))
            }
            do {
                try process.run()
            } catch {
                stop()
                FileHandle.standardError.write(Data("error: cannot start a local worker (\(executable)): \(error.localizedDescription)\n".utf8))
                throw ExitCode.failure
            }
            processes.append(process)
        }
    }

    /// The first worker that has exited: its index, how it ended and its log's tail.
    func firstExited() -> (index: Int, status: String, log: String)? {
        guard let index = processes.firstIndex(where: { !$0.isRunning }) else { return nil }
        let process = processes[index]
        let status = process.terminationReason == .uncaughtSignal ? "killed by signal \(process.terminationStatus)"
            : "exit status \(process.terminationStatus)"
        let log = (try? String(contentsOfFile: logPaths[index], encoding: .utf8)) ?? ""
        return (index, status, String(log.suffix(2000)))
    }

    /// SIGTERM to every worker (they stop their ranks), SIGKILL to any left after 15 s.
    func stop() {
        for process in processes where process.isRunning { process.terminate() }
        let deadline = Date().addingTimeInterval(15)
        while processes.contains(where: \.isRunning) && Date() < deadline { usleep(20_000) }
        for process in processes where process.isRunning { kill(process.processIdentifier, SIGKILL) }
        for process in processes { process.waitUntilExit() }
        processes = []
    }
}
