// The coordinator's command-line clients: forge submit, jobs, describe, logs, stop, nodes. Each
// is an AWS JSON 1.1 client of the HTTP API (the same calls boto3 makes), at --endpoint or
// FORGE_ENDPOINT, signing with SigV4 when it finds an access key where the AWS SDKs look.
import ArgumentParser
import ForgeCoordinator
import ForgeS3
import ForgeSigning
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Where the API is, and a way to call it.
struct EndpointOptions: ParsableArguments {
    @Option(name: .long, help: "The coordinator's HTTP API (default: FORGE_ENDPOINT, else http://127.0.0.1:8080).")
    var endpoint: String?

    var url: String { endpoint ?? ProcessInfo.processInfo.environment["FORGE_ENDPOINT"] ?? "http://127.0.0.1:8080" }

    /// Calls `SageMaker.<operation>`; returns the decoded answer or exits with the API's error.
    func call(_ operation: String, _ input: [String: Any]) throws -> [String: Any] {
        try call(target: "SageMaker.\(operation)", input)
    }

    /// Calls `X-Amz-Target: target` (`SageMaker.…`, `Logs_20140328.…`).
    func call(target: String, _ input: [String: Any]) throws -> [String: Any] {
        guard let address = URL(string: url) else { throw ValidationError("--endpoint \(url) is not a URL") }
        var request = URLRequest(url: address)
        request.httpMethod = "POST"
        request.setValue("application/x-amz-json-1.1", forHTTPHeaderField: "Content-Type")
        request.setValue(target, forHTTPHeaderField: "X-Amz-Target")
        let body = try JSONSerialization.data(withJSONObject: input)
        request.httpBody = body
        request.timeoutInterval = 30
        try sign(&request, body: body, service: target.hasPrefix("Logs_") ? "logs" : "sagemaker")
        let (data, response, error) = BlockingHTTP.send(request)
        let status = response?.statusCode
        if let error {
            FileHandle.standardError.write(Data("error: cannot reach the coordinator at \(url): \(error.localizedDescription) (is forge coordinator running? set --endpoint or FORGE_ENDPOINT)\n".utf8))
            throw ExitCode.failure
        }
        let object = (data.flatMap { try? JSONSerialization.jsonObject(with: $0) } as? [String: Any]) ?? [:]
        guard status == 200 else {
            let type = (object["__type"] as? String) ?? "HTTP \(status ?? 0)"
            let message = (object["message"] as? String) ?? (object["Message"] as? String) ?? ""
            FileHandle.standardError.write(Data("error: \(type): \(message)\n".utf8))
            throw ExitCode.failure
        }
        return object
    }

    /// Signs `request` with the key the AWS SDKs would find (AWS_ACCESS_KEY_ID…, AWS_PROFILE and
    /// the shared-credentials file, then FORGE_ACCESS_KEY_ID…); leaves it unsigned without one.
    private func sign(_ request: inout URLRequest, body: Data, service: String) throws {
        let environment = ProcessInfo.processInfo.environment
        let key: AccessKey?
        do {
            key = try ClientCredentials.resolve(environment: environment, homeDirectory: NSHomeDirectory())
        } catch {
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            throw ExitCode.failure
        }
        guard let key, let url = request.url, let host = url.host else { return }
        // The Host field the HTTP client will send: the port only when it is not the scheme's default.
        let defaultPort = url.scheme == "https" ? 443 : 80
        let authority = url.port.map { $0 == defaultPort ? host : "\(host):\($0)" } ?? host
        var signable = SignableRequest(method: request.httpMethod ?? "POST", path: url.path.isEmpty ? "/" : url.path,
                                       query: url.query ?? "", fields: [SignableRequest.Field(name: "host", value: authority)])
        for (name, value) in request.allHTTPHeaderFields ?? [:] { signable.fields.append(SignableRequest.Field(name: name, value: value)) }
        SigV4Signer(key: key, region: ClientCredentials.region(environment: environment), service: service)
            .sign(&signable, payloadHash: SigV4.hexSHA256(body), at: Date())
        for field in signable.fields where field.name.hasPrefix("x-amz-") || field.name == "authorization" {
            request.setValue(field.value, forHTTPHeaderField: field.name)
        }
    }
}

struct SubmitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "submit",
        abstract: "Submit a training job from a YAML or JSON file with CreateTrainingJob's members.",
        discussion: "The file is checked here first and every problem listed; the coordinator checks it again."
    )
    @OptionGroup var endpoint: EndpointOptions
    @Argument(help: "The job file.") var spec: String

    func run() throws {
        guard let text = try? String(contentsOfFile: spec, encoding: .utf8) else {
            throw ValidationError("cannot read \(spec)")
        }
        let object: [String: Any]
        do {
            _ = try TrainingJobSpec.decode(yaml: text)
            object = try JobFile.object(yaml: text)
        } catch {
            FileHandle.standardError.write(Data("error: \(spec): \(error)\n".utf8))
            throw ExitCode.failure
        }
        let answer = try endpoint.call("CreateTrainingJob", object)
        print(answer["TrainingJobArn"] as? String ?? "")
    }
}

struct JobsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "jobs", abstract: "List training jobs, newest first.")
    @OptionGroup var endpoint: EndpointOptions
    @Option(name: .long, help: "Only jobs with this status (InProgress, Completed, Failed, Stopping, Stopped).") var status: String?

    func run() throws {
        var input: [String: Any] = ["MaxResults": 100]
        if let status { input["StatusEquals"] = status }
        let answer = try endpoint.call("ListTrainingJobs", input)
        let jobs = answer["TrainingJobSummaries"] as? [[String: Any]] ?? []
        print("NAME".padding(toLength: 32, withPad: " ", startingAt: 0) + " STATUS       SECONDARY     CREATED")
        for job in jobs {
            let name = (job["TrainingJobName"] as? String ?? "").padding(toLength: 32, withPad: " ", startingAt: 0)
            let status = (job["TrainingJobStatus"] as? String ?? "").padding(toLength: 12, withPad: " ", startingAt: 0)
            let secondary = (job["SecondaryStatus"] as? String ?? "").padding(toLength: 13, withPad: " ", startingAt: 0)
            let created = (job["CreationTime"] as? Double).map { ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: $0)) } ?? ""
            print("\(name) \(status) \(secondary) \(created)")
        }
    }
}

struct DescribeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "describe", abstract: "Show a training job (DescribeTrainingJob, as JSON).")
    @OptionGroup var endpoint: EndpointOptions
    @Argument(help: "The job's name.") var job: String

    func run() throws {
        let answer = try endpoint.call("DescribeTrainingJob", ["TrainingJobName": job])
        let data = try JSONSerialization.data(withJSONObject: answer, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        print(String(decoding: data, as: UTF8.self))
    }
}

struct StopCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stop", abstract: "Stop a training job (its ranks get SIGTERM and a grace period).")
    @OptionGroup var endpoint: EndpointOptions
    @Argument(help: "The job's name.") var job: String

    func run() throws {
        _ = try endpoint.call("StopTrainingJob", ["TrainingJobName": job])
        print("stopping \(job)")
    }
}

struct LogsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logs",
        abstract: "Print a training job's logs (every rank's output, stream by stream).",
        discussion: "Reads the CloudWatch Logs face (DescribeLogStreams, GetLogEvents), as the SageMaker SDK does. With -f it follows the job until it ends."
    )
    @OptionGroup var endpoint: EndpointOptions
    @Argument(help: "The job's name.") var job: String
    @Flag(name: .shortAndLong, help: "Follow: keep printing new lines until the job ends.") var follow = false

    func run() throws {
        var tokens: [String: String] = [:]
        while true {
            // Read the status first: lines written before it said "ended" are then all in.
            let status = try endpoint.call("DescribeTrainingJob", ["TrainingJobName": job])["TrainingJobStatus"] as? String ?? ""
            let streams = try endpoint.call(target: "Logs_20140328.DescribeLogStreams",
                                            ["logGroupName": "/aws/sagemaker/TrainingJobs", "logStreamNamePrefix": "\(job)/"])
            for stream in (streams["logStreams"] as? [[String: Any]] ?? []).compactMap({ $0["logStreamName"] as? String }) {
                while true {
                    var input: [String: Any] = ["logGroupName": "/aws/sagemaker/TrainingJobs", "logStreamName": stream, "startFromHead": true]
                    if let token = tokens[stream] { input["nextToken"] = token }
                    let page = try endpoint.call(target: "Logs_20140328.GetLogEvents", input)
                    let events = page["events"] as? [[String: Any]] ?? []
                    if let next = page["nextForwardToken"] as? String { tokens[stream] = next }
                    if events.isEmpty { break }
                    let label = stream.dropFirst(job.count + 1)
                    for event in events { print("[\(label)] \(event["message"] as? String ?? "")") }
                }
            }
            guard follow, status == "InProgress" || status == "Stopping" else { return }
            sleep(1)
        }
    }
}

struct NodesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "nodes", abstract: "List the coordinator's workers (ListClusterNodes on the cluster 'default').")
    @OptionGroup var endpoint: EndpointOptions

    func run() throws {
        let answer = try endpoint.call("ListClusterNodes", ["ClusterName": "default"])
        print("NODE".padding(toLength: 34, withPad: " ", startingAt: 0) + " STATUS   TYPE           GROUP      DETAIL")
        for node in answer["ClusterNodeSummaries"] as? [[String: Any]] ?? [] {
            let status = node["InstanceStatus"] as? [String: Any] ?? [:]
            let columns = [(node["InstanceId"] as? String ?? "", 34), (status["Status"] as? String ?? "", 8),
                           (node["InstanceType"] as? String ?? "", 14), (node["InstanceGroupName"] as? String ?? "", 10)]
            print(columns.map { $0.0.padding(toLength: $0.1, withPad: " ", startingAt: 0) }.joined(separator: " ")
                  + " \(status["Message"] as? String ?? "")")
        }
    }
}
