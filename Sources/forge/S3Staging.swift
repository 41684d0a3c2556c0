// `s3://` channels and outputs for `forge train`: a channel is fetched into ./input/data/NAME
// before training, and the model and metrics go up to the output prefix afterwards. The
// endpoint of a bucket comes from the coordinator (FORGE_S3_ENDPOINTS, for buckets its
// --config maps), or else from AWS_ENDPOINT_URL_S3 with the usual AWS credentials.
import ForgeCoordinator
import ForgeS3
import ForgeSigning
import Foundation

struct S3Staging {
    let environment: [String: String]
    /// Where fetched channels go.
    let root: String

    init(environment: [String: String], root: String = FileManager.default.currentDirectoryPath) {
        self.environment = environment
        self.root = root
    }

    /// The client for the bucket `uri` names.
    func client(for uri: String) throws -> S3Client {
        if let endpoint = BucketMap.fromEnvironment(environment).endpoint(of: uri) { return S3Client(endpoint: endpoint) }
        guard let url = environment["AWS_ENDPOINT_URL_S3"] ?? environment["AWS_ENDPOINT_URL"],
              let key = try ClientCredentials.resolve(environment: environment, homeDirectory: NSHomeDirectory()) else {
            throw TrainingStagingError(description: "\(uri): no endpoint for this bucket; map it in the coordinator's --config, "
                + "or set AWS_ENDPOINT_URL_S3 and AWS credentials")
        }
        return S3Client(endpoint: S3Endpoint(url: url, region: ClientCredentials.region(environment: environment), accessKeyID: key.id,
                                             secretAccessKey: key.secret, sessionToken: key.sessionToken))
    }

    /// A local path for the channel: the path itself, or the folder an `s3://` prefix was
    /// fetched into.
    func channel(_ path: String, name: String) throws -> String {
        guard let (bucket, prefix) = S3Client.split(path) else { return path }
        let folder = (root as NSString).appendingPathComponent("input/data/\(name)")
        if FileManager.default.fileExists(atPath: folder) { try FileManager.default.removeItem(atPath: folder) }
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let files = try client(for: path).download(bucket: bucket, prefix: prefix, into: folder)
        guard !files.isEmpty else { throw TrainingStagingError(description: "\(path): no objects under this prefix") }
        return folder
    }

    /// A local folder for the output, and what uploads it when the output is an `s3://` prefix.
    func output(_ path: String) throws -> (local: String, upload: (() throws -> Void)?) {
        guard let (bucket, prefix) = S3Client.split(path) else { return (path, nil) }
        let local = (root as NSString).appendingPathComponent("output")
        let client = try self.client(for: path)
        return (local, {
            for name in ["model.tar.gz", "metrics.json"] {
                let file = (local as NSString).appendingPathComponent(name)
                guard FileManager.default.fileExists(atPath: file) else { continue }
                let key = prefix.isEmpty ? name : (prefix.hasSuffix("/") ? prefix : prefix + "/") + name
                try client.put(bucket: bucket, key: key, file: file)
            }
        })
    }
}

struct TrainingStagingError: Error, CustomStringConvertible {
    let description: String
}
