// `forge container`: one script-mode rank, run as SageMaker's training toolkit runs a job in a
// framework container. The worker starts it in the rank's folder; it lays out the /opt/ml tree
// there (config files, channel folders with this rank's files, code, model, output,
// checkpoints), prepares the framework's Python environment (cached per host), sets the SM_*
// variables, runs the entry point with the hyperparameters as arguments, forwards SIGTERM, and
// afterwards leaves the model folder for the coordinator to pack, or says why it failed.
import ArgumentParser
import CForgeSystem
import ForgeArchive
import ForgeCoordinator
import ForgeS3
import Foundation

struct ContainerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "container",
        abstract: "Run one script-mode rank under SageMaker's training-container contract (forge worker starts it).",
        discussion: """
        The tree SageMaker puts at /opt/ml is laid out under ./opt/ml in the current folder, and \
        SM_MODEL_DIR, SM_CHANNEL_<NAME> and the other SM_* variables point into it. Framework \
        images (scikit-learn, XGBoost, PyTorch, TensorFlow image URIs) run in a Python \
        environment with that framework's packages, made on first use and cached in \
        FORGE_PYTHON_ENVS (default ~/.cache/forge/python-envs); a requirements.txt in the source \
        folder is installed on top. FORGE_PYTHON picks the interpreter environments start from.
        """,
        shouldDisplay: false
    )

    @Option(name: .long, help: "The resolved job, as JSON (the coordinator writes it).")
    var job: String

    func run() throws {
        let job: ContainerJob
        do {
            job = try JSONDecoder().decode(ContainerJob.self, from: Data(self.job.utf8))
        } catch {
            throw ValidationError("--job is not a script-mode job description: \(error)")
        }
        let environment = ProcessInfo.processInfo.environment
        // Like a built-in rank, it dies with the worker that started it.
        if let worker = environment["FORGE_WORKER_PID"].flatMap(Int32.init), forge_die_with_parent(worker) != 0 {
            throw ExitCode.failure
        }
        let rank = environment["RANK"].flatMap(Int.init) ?? 0
        let worldSize = environment["WORLD_SIZE"].flatMap(Int.init) ?? 1
        let container = ScriptContainer(job: job, rank: rank, worldSize: worldSize,
                                        root: FileManager.default.currentDirectoryPath + "/opt/ml")
        do {
            let status = try container.run(environment: environment)
            if status != 0 { throw ExitCode(status) }
        } catch let exit as ExitCode {
            throw exit
        } catch {
            // The worker reports the last line of standard error as the failure's detail.
            FileHandle.standardError.write(Data("ClientError: \(error)\n".utf8))
            throw ExitCode.failure
        }
    }
}

/// Why a script-mode rank could not start.
struct ContainerError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// One script-mode rank's container: its tree, its environment, its program.
struct ScriptContainer {
    let job: ContainerJob
    let rank: Int
    let worldSize: Int
    /// The folder that stands for /opt/ml.
    let root: String

    private var fileManager: FileManager { .default }
    var hosts: [String] { (1...max(worldSize, 1)).map { "algo-\($0)" } }
    var currentHost: String { "algo-\(rank + 1)" }
    private func path(_ relative: String) -> String { (root as NSString).appendingPathComponent(relative) }

    /// Lays out the tree, runs the program, hands over its model; returns its exit status.
    func run(environment inherited: [String: String]) throws -> Int32 {
        for folder in ["input/config", "input/data", "model", "output/data", "output/intermediate", "code"] {
            try fileManager.createDirectory(atPath: path(folder), withIntermediateDirectories: true)
        }
        try writeConfiguration()
        try linkChannels()
        try linkCheckpoints()
        try unpackSource()
        guard let program = ScriptHyperparameters.reserved("sagemaker_program", in: job.hyperParameters) else {
            throw ContainerError("the job has no sagemaker_program (its entry point)")
        }
        let codeDirectory = path("code")
        guard fileManager.fileExists(atPath: (codeDirectory as NSString).appendingPathComponent(program)) else {
            throw ContainerError("the entry point \(program) is not in the source folder (\(job.sourceDirectory ?? "none given: set sagemaker_submit_directory"))")
        }
        let python = try PythonEnvironments.prepare(ScriptFramework(image: job.image),
                                                    requirements: (codeDirectory as NSString).appendingPathComponent("requirements.txt"))
        if program.hasSuffix(".sh") {
            // The toolkit runs a shell entry point as ./program, and makes it executable first:
            // a tarball made without the bit must not fail with status 126.
            let path = (codeDirectory as NSString).appendingPathComponent(program)
            if let attributes = try? fileManager.attributesOfItem(atPath: path), let mode = attributes[.posixPermissions] as? Int {
                try? fileManager.setAttributes([.posixPermissions: mode | 0o111], ofItemAtPath: path)
            }
        }
        let command = self.command(program: program, python: python)
        var environment = inherited
        for (key, value) in containerVariables() { environment[key] = value }
        environment["PYTHONPATH"] = ([codeDirectory] + (inherited["PYTHONPATH"].map { [$0] } ?? [])).joined(separator: ":")
        environment["PYTHONUNBUFFERED"] = "1"
        for (key, value) in job.environment { environment[key] = value }
        FileHandle.standardError.write(Data("forge container: \(job.jobName) on \(currentHost) (rank \(rank) of \(worldSize)): \(command.joined(separator: " "))\n".utf8))

        // The program starts through `forge container-exec`, which asks the kernel to kill it
        // when this process dies: a script that ignores SIGTERM cannot outlive the SIGKILL
        // that follows the grace period.
        let process = Process()
        process.executableURL = URL(fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
                                    ?? CommandLine.arguments[0])
        process.arguments = ["container-exec", "--parent", String(getpid()), "--"] + command
        process.environment = environment
        process.currentDirectoryURL = URL(fileURLWithPath: codeDirectory)
        let signals = SignalLatch(signals: [SIGTERM, SIGINT])
        try process.run()
        var forwarded = false
        while process.isRunning {
            if !forwarded, let signal = signals.received {
                kill(process.processIdentifier, signal)
                forwarded = true
            }
            usleep(20_000)
        }
        let status: Int32 = process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
        if status == 0 {
            try gather(path("model"), into: job.modelGather)
            try gather(path("output/data"), into: job.outputDataGather)
            _ = fileManager.createFile(atPath: path("output/success"), contents: Data())
            return 0
        }
        // SageMaker's FailureReason is what the program wrote to /opt/ml/output/failure.
        let failure = fileManager.contents(atPath: path("output/failure")).map { String(decoding: $0.prefix(1024), as: UTF8.self) }
        let written = failure?.trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: "\n", with: " ") ?? ""
        let reason = written.isEmpty ? "ExecuteUserScriptError: \(program) exited with status \(status)" : written
        FileHandle.standardError.write(Data("AlgorithmError: \(reason)\n".utf8))
        return status
    }

    /// How the toolkit runs an entry point: a shell script with sh, a Python file with the
    /// environment's interpreter, a folder with setup.py as a module.
    func command(program: String, python: String) -> [String] {
        let arguments = ScriptHyperparameters.arguments(job.hyperParameters)
        if program.hasSuffix(".sh") {
            return ["/bin/sh", "-c", "./\(program) " + arguments.map(ScriptContainer.shellQuoted).joined(separator: " ")]
        }
        if program.hasSuffix(".py") { return [python, program] + arguments }
        return [python, "-m", program] + arguments
    }

    static func shellQuoted(_ text: String) -> String { "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'" }

    // MARK: The tree

    private func writeJSON(_ object: Any, to relative: String) throws {
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        try data.write(to: URL(fileURLWithPath: path(relative)))
    }

    var resourceConfig: [String: Any] {
        ["current_host": currentHost, "hosts": hosts, "network_interface_name": "eth0", "current_instance_type": job.instanceType,
         "current_group_name": "homogeneousCluster",
         "instance_groups": [["instance_group_name": "homogeneousCluster", "instance_type": job.instanceType, "hosts": hosts]]]
    }

    var inputDataConfig: [String: Any] {
        Dictionary(uniqueKeysWithValues: job.channels.map { channel in
            var entry: [String: Any] = ["TrainingInputMode": channel.inputMode == "FastFile" ? "File" : channel.inputMode,
                                        "S3DistributionType": channel.distribution, "RecordWrapperType": "None"]
            if let type = channel.contentType { entry["ContentType"] = type }
            return (channel.name, entry)
        })
    }

    private func writeConfiguration() throws {
        try writeJSON(job.hyperParameters, to: "input/config/hyperparameters.json")
        try writeJSON(resourceConfig, to: "input/config/resourceconfig.json")
        try writeJSON(inputDataConfig, to: "input/config/inputdataconfig.json")
    }

    /// input/data/<channel>/ holds links to this rank's files of the channel: all of them, or
    /// for ShardedByS3Key every `worldSize`-th file from the rank's index (as S3 keys are split).
    private func linkChannels() throws {
        for channel in job.channels {
            let target = path("input/data/\(channel.name)")
            if fileManager.fileExists(atPath: target) { try fileManager.removeItem(atPath: target) }
            try fileManager.createDirectory(atPath: target, withIntermediateDirectories: true)
            if let (bucket, prefix) = S3Client.split(channel.path) {
                // A bucket of an external store: this rank's objects are fetched into the folder.
                let client = try S3Staging(environment: ProcessInfo.processInfo.environment).client(for: channel.path)
                let sharded = channel.distribution == "ShardedByS3Key"
                _ = try client.download(bucket: bucket, prefix: prefix, into: target) { !sharded || $0 % max(worldSize, 1) == rank }
                continue
            }
            var isDirectory: ObjCBool = false
            guard fileManager.fileExists(atPath: channel.path, isDirectory: &isDirectory) else {
                throw ContainerError("channel \(channel.name): \(channel.path) does not exist")
            }
            var files: [(relative: String, absolute: String)] = []
            if isDirectory.boolValue {
                let names = (fileManager.enumerator(atPath: channel.path)?.allObjects as? [String] ?? []).sorted()
                for name in names {
                    let absolute = (channel.path as NSString).appendingPathComponent(name)
                    var folder: ObjCBool = false
                    if fileManager.fileExists(atPath: absolute, isDirectory: &folder), !folder.boolValue { files.append((name, absolute)) }
                }
            } else {
                files = [((channel.path as NSString).lastPathComponent, channel.path)]
            }
            if channel.distribution == "ShardedByS3Key" {
                files = files.enumerated().filter { $0.offset % max(worldSize, 1) == rank }.map(\.element)
            }
            for file in files {
                let link = (target as NSString).appendingPathComponent(file.relative)
                try fileManager.createDirectory(atPath: (link as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                try fileManager.createSymbolicLink(atPath: link, withDestinationPath: file.absolute)
            }
        }
    }

    /// CheckpointConfig.LocalPath is the job's checkpoint folder (S3Uri) itself: what the
    /// program writes there is kept across attempts, and a restart finds it.
    private func linkCheckpoints() throws {
        try fileManager.createDirectory(atPath: job.checkpointDirectory, withIntermediateDirectories: true)
        let relative = job.checkpointLocalPath.hasPrefix("/opt/ml/") ? String(job.checkpointLocalPath.dropFirst("/opt/ml/".count))
            : String(job.checkpointLocalPath.drop { $0 == "/" })
        let parts = relative.split(separator: "/").map(String.init)
        guard !parts.isEmpty, !parts.contains(".."), !parts.contains("."),
              !["input", "model", "output", "code"].contains(parts[0]) else {
            throw ContainerError("CheckpointConfig.LocalPath \(job.checkpointLocalPath) must name a folder of its own under /opt/ml (like /opt/ml/checkpoints)")
        }
        let local = path(parts.joined(separator: "/"))
        try fileManager.createDirectory(atPath: (local as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        if (try? fileManager.destinationOfSymbolicLink(atPath: local)) != nil || fileManager.fileExists(atPath: local) {
            try fileManager.removeItem(atPath: local)
        }
        try fileManager.createSymbolicLink(atPath: local, withDestinationPath: job.checkpointDirectory)
    }

    /// sagemaker_submit_directory: a .tar.gz (what the SDK uploads) unpacked into code/, or a
    /// folder copied there.
    private func unpackSource() throws {
        guard var source = job.sourceDirectory else { return }
        if let (bucket, key) = S3Client.split(source) {
            let fetched = path("input/sourcedir.tar.gz")
            try S3Staging(environment: ProcessInfo.processInfo.environment).client(for: source).get(bucket: bucket, key: key, to: fetched)
            source = fetched
        }
        var isDirectory: ObjCBool = false
        guard fileManager.fileExists(atPath: source, isDirectory: &isDirectory) else {
            throw ContainerError("sagemaker_submit_directory \(source) does not exist")
        }
        if isDirectory.boolValue {
            for name in try fileManager.contentsOfDirectory(atPath: source) {
                let target = path("code/\(name)")
                if fileManager.fileExists(atPath: target) { try fileManager.removeItem(atPath: target) }
                try fileManager.copyItem(atPath: (source as NSString).appendingPathComponent(name), toPath: target)
            }
            return
        }
        guard let bytes = fileManager.contents(atPath: source) else { throw ContainerError("cannot read \(source)") }
        do {
            try TarArchive.extract(try TarArchive.readGzipped([UInt8](bytes)), into: path("code"))
        } catch {
            throw ContainerError("sagemaker_submit_directory \(source) is not a readable .tar.gz: \(error)")
        }
    }

    /// Merges a folder's files into the attempt's shared folder (other ranks' files stay).
    private func gather(_ folder: String, into shared: String) throws {
        try fileManager.createDirectory(atPath: shared, withIntermediateDirectories: true)
        for (name, isDirectory) in ScriptArtifacts.contents(of: folder) {
            let source = (folder as NSString).appendingPathComponent(name)
            let target = (shared as NSString).appendingPathComponent(name)
            if isDirectory {
                try fileManager.createDirectory(atPath: target, withIntermediateDirectories: true)
            } else {
                // Ranks gather at the same moment: each copies beside the target and renames
                // over it, so a reader never sees half a file and two ranks never collide.
                let temporary = target + ".rank-\(rank).partial"
                _ = try? fileManager.removeItem(atPath: temporary)
                try fileManager.copyItem(atPath: source, toPath: temporary)
                guard rename(temporary, target) == 0 else {
                    throw ContainerError("cannot move \(name) into \(shared): \(String(cString: strerror(errno)))")
                }
            }
        }
    }

    // MARK: Variables

    /// The SM_* variables and the rest the toolkit sets.
    func containerVariables() -> [String: String] {
        func json(_ object: Any) -> String {
            (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .fragmentsAllowed]))
                .map { String(decoding: $0, as: UTF8.self).replacingOccurrences(of: "\\/", with: "/") } ?? "null"
        }
        let user = job.hyperParameters.filter { !ScriptHyperparameters.isReserved($0.key) }
        let decoded = user.mapValues(ScriptHyperparameters.decode)
        let hps = "{" + decoded.keys.sorted().map { JSONValue.quoted($0) + ":" + (decoded[$0]?.compact ?? "null") }.joined(separator: ",") + "}"
        let frameworkParameters = job.hyperParameters.filter {
            $0.key.hasPrefix("sagemaker_") && !["sagemaker_program", "sagemaker_submit_directory", "sagemaker_region",
                                               "sagemaker_container_log_level", "sagemaker_job_name",
                                               "sagemaker_enable_cloudwatch_metrics"].contains($0.key)
        }.mapValues(ScriptHyperparameters.decode)
        let frameworkJSON = "{" + frameworkParameters.keys.sorted().map { JSONValue.quoted($0) + ":" + (frameworkParameters[$0]?.compact ?? "null") }
            .joined(separator: ",") + "}"
        let channels = job.channels.map(\.name).sorted()
        let program = ScriptHyperparameters.reserved("sagemaker_program", in: job.hyperParameters) ?? ""
        var variables: [String: String] = [
            "SM_MODEL_DIR": path("model"), "SM_OUTPUT_DIR": path("output"), "SM_OUTPUT_DATA_DIR": path("output/data"),
            "SM_OUTPUT_INTERMEDIATE_DIR": path("output/intermediate"), "SM_INPUT_DIR": path("input"),
            "SM_INPUT_CONFIG_DIR": path("input/config"), "SM_CHANNELS": json(channels),
            "SM_HPS": hps, "SM_USER_ARGS": json(ScriptHyperparameters.arguments(job.hyperParameters)),
            "SM_HOSTS": json(hosts), "SM_CURRENT_HOST": currentHost, "SM_NETWORK_INTERFACE_NAME": "eth0",
            "SM_CURRENT_INSTANCE_TYPE": job.instanceType, "SM_CURRENT_INSTANCE_GROUP": "homogeneousCluster",
            "SM_CURRENT_INSTANCE_GROUP_HOSTS": json(hosts), "SM_INSTANCE_GROUPS": json(["homogeneousCluster"]),
            "SM_INSTANCE_GROUPS_DICT": json(["homogeneousCluster": ["hosts": hosts, "instance_group_name": "homogeneousCluster",
                                                                    "instance_type": job.instanceType]]),
            "SM_DISTRIBUTION_INSTANCE_GROUPS": json(["homogeneousCluster"]), "SM_IS_HETERO": "false",
            "SM_NUM_CPUS": String(ProcessInfo.processInfo.activeProcessorCount), "SM_NUM_GPUS": "0", "SM_NUM_NEURONS": "0",
            "SM_LOG_LEVEL": ScriptHyperparameters.reserved("sagemaker_container_log_level", in: job.hyperParameters) ?? "20",
            "SM_MODULE_NAME": (program as NSString).deletingPathExtension, "SM_USER_ENTRY_POINT": program, "SM_FRAMEWORK_MODULE": "",
            "SM_MODULE_DIR": ScriptHyperparameters.reserved("sagemaker_submit_directory", in: job.hyperParameters) ?? "",
            "SM_FRAMEWORK_PARAMS": frameworkJSON, "SM_RESOURCE_CONFIG": json(resourceConfig),
            "SM_INPUT_DATA_CONFIG": json(inputDataConfig),
            "TRAINING_JOB_NAME": job.jobName, "TRAINING_JOB_ARN": job.jobArn, "SAGEMAKER_JOB_NAME": job.jobName,
            "CURRENT_HOST": currentHost, "SAGEMAKER_REGION": job.region,
        ]
        for channel in channels { variables["SM_CHANNEL_\(channel.uppercased())"] = path("input/data/\(channel)") }
        for key in decoded.keys {
            guard let value = decoded[key] else { continue }
            if case .string(let text) = value { variables["SM_HP_\(key.uppercased())"] = text } else { variables["SM_HP_\(key.uppercased())"] = value.compact }
        }
        var training: [String: Any] = [:]
        for (key, value) in variables where key.hasPrefix("SM_") {
            let name = String(key.dropFirst(3)).lowercased()
            training[name] = (try? JSONSerialization.jsonObject(with: Data(value.utf8), options: [.fragmentsAllowed])) ?? value
        }
        training["job_name"] = job.jobName
        training["is_master"] = rank == 0
        training["master_hostname"] = hosts[0]
        training["hyperparameters"] = (try? JSONSerialization.jsonObject(with: Data(hps.utf8))) ?? [:]
        variables["SM_TRAINING_ENV"] = json(training)
        return variables
    }
}

/// Python environments for framework images: a virtual environment per framework (and set of
/// requirements) on top of the system's Python, made once per host and shared by every rank.
enum PythonEnvironments {
    static var cache: String {
        if let explicit = ProcessInfo.processInfo.environment["FORGE_PYTHON_ENVS"], !explicit.isEmpty { return explicit }
        let home = ProcessInfo.processInfo.environment["HOME"] ?? NSTemporaryDirectory()
        return (home as NSString).appendingPathComponent(".cache/forge/python-envs")
    }

    /// The interpreter of the framework's environment, making it first if needed.
    static func prepare(_ framework: ScriptFramework, requirements: String) throws -> String {
        let extra = FileManager.default.contents(atPath: requirements)
        var name = framework.rawValue
        if let extra {
            // FNV-1a over the requirements: the same file shares one environment.
            var hash: UInt64 = 0xcbf2_9ce4_8422_2325
            for byte in extra { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
            name += "-" + String(hash, radix: 16)
        }
        let directory = (cache as NSString).appendingPathComponent(name)
        let python = (directory as NSString).appendingPathComponent("bin/python")
        let ready = (directory as NSString).appendingPathComponent(".forge-ready")
        try FileManager.default.createDirectory(atPath: cache, withIntermediateDirectories: true)
        // One rank makes it; the others on this host wait on the lock, then find it ready.
        let lock = open((cache as NSString).appendingPathComponent("\(name).lock"), O_CREAT | O_RDWR, 0o644)
        guard lock >= 0 else { throw ContainerError("cannot lock the Python environment cache in \(cache)") }
        defer { close(lock) }
        flock(lock, LOCK_EX)
        defer { flock(lock, LOCK_UN) }
        if FileManager.default.fileExists(atPath: ready) { return python }
        FileHandle.standardError.write(Data("forge container: preparing the \(framework.rawValue) environment in \(directory) (once per host)\n".utf8))
        try? FileManager.default.removeItem(atPath: directory)
        let base = ProcessInfo.processInfo.environment["FORGE_PYTHON"] ?? "python3"
        try run(["/usr/bin/env", base, "-m", "venv", "--system-site-packages", directory], what: "making the virtual environment")
        let packages = framework.packages + (extra == nil ? [] : ["-r", requirements])
        if !packages.isEmpty {
            try run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"] + packages,
                    what: "installing \(packages.joined(separator: " "))")
        }
        _ = FileManager.default.createFile(atPath: ready, contents: Data())
        return python
    }

    private static func run(_ command: [String], what: String) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.standardError
        try process.run()
        let output = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            let tail = String(decoding: output.suffix(600), as: UTF8.self).replacingOccurrences(of: "\n", with: " ")
            throw ContainerError("\(what) failed (status \(process.terminationStatus)): \(tail)")
        }
    }
}

/// `forge container-exec --parent PID -- PROGRAM ARGS…`: becomes PROGRAM (exec), after asking the
/// kernel to kill it when PID, the `forge container` that started it, dies.
struct ContainerExecCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "container-exec",
        abstract: "Run a program that dies with the forge container that started it (forge container uses it).",
        shouldDisplay: false
    )

    @Option(name: .long, help: "The process whose death ends the program.")
    var parent: Int32

    @Argument(parsing: .captureForPassthrough, help: "The program and its arguments, after --.")
    var command: [String] = []

    func run() throws {
        let program = command.first == "--" ? Array(command.dropFirst()) : command
        guard let executable = program.first else { throw ValidationError("no program given after --") }
        guard forge_die_with_parent(parent) == 0 else {
            FileHandle.standardError.write(Data("error: the process that started this one (pid \(parent)) has gone\n".utf8))
            throw ExitCode.failure
        }
        var arguments = program.map { strdup($0) } + [nil]
        execvp(executable, &arguments)
        FileHandle.standardError.write(Data("error: cannot run \(executable): \(String(cString: strerror(errno)))\n".utf8))
        throw ExitCode(127)
    }
}
