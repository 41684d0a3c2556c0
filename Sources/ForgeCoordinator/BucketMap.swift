// Buckets that live in S3-compatible stores of their own (`forge coordinator --config`): a
// job whose channel or output is in such a bucket has its ranks fetch and upload through
// that endpoint; every other bucket is a folder of the local object store.
import ForgeS3
import Foundation
import Yams

/// Bucket name → the endpoint that holds it.
public struct BucketMap: Sendable, Equatable {
    public var buckets: [String: S3Endpoint]

    public init(_ buckets: [String: S3Endpoint] = [:]) { self.buckets = buckets }

    /// The environment variable that hands a rank the endpoints its job uses (JSON).
    public static let environmentName = "FORGE_S3_ENDPOINTS"

    /// Reads the coordinator's configuration file:
    ///
    ///     buckets:
    ///       datasets:
    ///         endpoint: http://127.0.0.1:9000
    ///         region: us-east-1            # optional
    ///         access_key_id: KEY
    ///         secret_access_key: SECRET
    public static func load(path: String) throws -> BucketMap {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw RankPlanError(description: "cannot read the configuration file \(path)")
        }
        let root: Any?
        do {
            root = try Yams.load(yaml: text)
        } catch {
            throw RankPlanError(description: "\(path) is not YAML: \(error)")
        }
        guard let object = root as? [String: Any] else { return BucketMap() }
        var problems = [String]()
        var buckets = [String: S3Endpoint]()
        for (name, value) in (object["buckets"] as? [String: Any] ?? [:]).sorted(by: { $0.key < $1.key }) {
            guard let entry = value as? [String: Any], let endpoint = entry["endpoint"] as? String, URL(string: endpoint)?.host != nil,
                  let key = entry["access_key_id"] as? String, let secret = entry["secret_access_key"] as? String else {
                problems.append("buckets.\(name): needs endpoint (a URL), access_key_id and secret_access_key")
                continue
            }
            buckets[name] = S3Endpoint(url: endpoint, region: entry["region"] as? String ?? "us-east-1", accessKeyID: key, secretAccessKey: secret)
        }
        if object["buckets"] != nil, !(object["buckets"] is [String: Any]) { problems.append("buckets: must be a map of bucket names") }
        guard problems.isEmpty else { throw RankPlanError(description: "\(path): " + problems.joined(separator: "; ")) }
        return BucketMap(buckets)
    }

    /// The endpoint of the bucket `uri` names, if that bucket is mapped.
    public func endpoint(of uri: String) -> S3Endpoint? {
        S3Client.split(uri).flatMap { buckets[$0.bucket] }
    }

    /// The endpoints of the mapped buckets among `uris`, as the JSON a rank reads back.
    public func environment(for uris: [String]) -> [String: String] {
        var used = [String: S3Endpoint]()
        for uri in uris { if let (bucket, _) = S3Client.split(uri), let endpoint = buckets[bucket] { used[bucket] = endpoint } }
        guard !used.isEmpty, let data = try? JSONEncoder().encode(used) else { return [:] }
        return [BucketMap.environmentName: String(decoding: data, as: UTF8.self)]
    }

    /// The endpoints a rank was handed, or none.
    public static func fromEnvironment(_ environment: [String: String]) -> BucketMap {
        guard let text = environment[environmentName], let buckets = try? JSONDecoder().decode([String: S3Endpoint].self, from: Data(text.utf8)) else {
            return BucketMap()
        }
        return BucketMap(buckets)
    }
}
