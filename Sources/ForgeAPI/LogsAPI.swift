// The CloudWatch Logs face (JSON 1.1, `X-Amz-Target: Logs_20140328.*`): DescribeLogStreams and
// GetLogEvents over the ranks' output in the job store, in the log group SageMaker uses, with
// the token behaviour the SageMaker SDK's log follower relies on (the forward token after the
// last event yields an empty page; DescribeLogStreams never pages).
import ForgeCoordinator
import Foundation

public struct LogsAPI: Sendable {
    public let store: JobStore
    public static let group = "/aws/sagemaker/TrainingJobs"

    public init(store: JobStore) { self.store = store }

    public func handle(operation: String, body: [UInt8]) throws(APIError) -> [UInt8] {
        let input: [String: Any]
        do {
            input = (body.isEmpty ? [:] : try JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] ?? [:]
        } catch {
            throw APIError("SerializationException", "the request body is not JSON: \(error.localizedDescription)")
        }
        if let group = input["logGroupName"] as? String, group != LogsAPI.group {
            throw APIError("ResourceNotFoundException", "The specified log group does not exist: \(group)")
        }
        let output: [String: Any]
        switch operation {
        case "DescribeLogStreams": output = try describeStreams(input)
        case "GetLogEvents": output = try events(input)
        default: throw APIError("UnknownOperationException", "Logs_20140328.\(operation) is not an operation this server knows")
        }
        do {
            return [UInt8](try JSONSerialization.data(withJSONObject: output, options: [.sortedKeys, .withoutEscapingSlashes]))
        } catch {
            throw APIError(status: 500, "InternalFailure", "cannot encode the response: \(error)")
        }
    }

    private func describeStreams(_ input: [String: Any]) throws(APIError) -> [String: Any] {
        let prefix = input["logStreamNamePrefix"] as? String ?? ""
        let limit = min(max((input["limit"] as? Int) ?? 50, 1), 50)
        do {
            let streams = try store.logStreams(prefix: prefix).prefix(limit)
            return ["logStreams": streams.map { stream -> [String: Any] in
                ["logStreamName": stream.name, "creationTime": Int64(stream.first.timeIntervalSince1970 * 1000),
                 "firstEventTimestamp": Int64(stream.first.timeIntervalSince1970 * 1000),
                 "lastEventTimestamp": Int64(stream.last.timeIntervalSince1970 * 1000),
                 "lastIngestionTime": Int64(stream.last.timeIntervalSince1970 * 1000), "storedBytes": stream.bytes,
                 "arn": "arn:aws:logs:us-east-1:000000000000:log-group:\(LogsAPI.group):log-stream:\(stream.name)"]
            }]
        } catch {
            throw SageMakerAPI.translate(error)
        }
    }

    private func events(_ input: [String: Any]) throws(APIError) -> [String: Any] {
        guard let stream = input["logStreamName"] as? String else {
            throw APIError("InvalidParameterException", "logStreamName is required")
        }
        var after: Int64 = 0
        if let token = input["nextToken"] as? String {
            guard token.count > 2, token.hasPrefix("f/") || token.hasPrefix("b/"), let id = Int64(token.dropFirst(2)) else {
                throw APIError("InvalidParameterException", "The specified nextToken is invalid.")
            }
            after = id
        }
        let since = (input["startTime"] as? Double).map { Date(timeIntervalSince1970: $0 / 1000) }
        let limit = min(max((input["limit"] as? Int) ?? 10_000, 1), 10_000)
        do {
            let lines = try store.logLines(stream: stream, afterID: after, since: since, limit: limit)
            let last = lines.last?.id ?? after
            return ["events": lines.map { line -> [String: Any] in
                        let millis = Int64(line.time.timeIntervalSince1970 * 1000)
                        return ["timestamp": millis, "ingestionTime": millis, "message": line.line]
                    },
                    "nextForwardToken": "f/\(last)", "nextBackwardToken": "b/\(lines.first?.id ?? after)"]
        } catch {
            throw SageMakerAPI.translate(error)
        }
    }
}
