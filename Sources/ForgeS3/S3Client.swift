// A small S3 client for S3-compatible stores where users keep their data (MinIO, Ceph, any
// endpoint): path-style requests signed with SigV4 (ForgeSigning), ListObjectsV2 with
// continuation, GetObject into a file, PutObject and multipart upload for large files. Ranks
// use it to fetch their channels and upload their models; the coordinator to upload what it
// packs. Calls block the calling thread.
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import ForgeSigning

/// Where a bucket lives and how to sign for it.
public struct S3Endpoint: Codable, Sendable, Equatable {
    /// The endpoint's base URL, e.g. `http://127.0.0.1:9000`.
    public var url: String
    public var region: String
    public var accessKeyID: String
    public var secretAccessKey: String
    public var sessionToken: String?

    public init(url: String, region: String = "us-east-1", accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil) {
        self.url = url
        self.region = region
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
    }
}

/// An S3 call that failed: the operation, the HTTP status and S3's error code and message.
public struct S3ClientError: Error, CustomStringConvertible {
    public let operation: String
    public let status: Int
    public let code: String
    public let message: String

    public var description: String {
        status == 0 ? "\(operation): \(message)" : "\(operation): HTTP \(status) \(code)\(message.isEmpty ? "" : ": \(message)")"
    }
}

/// One listed object.
public struct S3ObjectSummary: Sendable, Equatable {
    public var key: String
    public var size: Int
}

/// A client for one endpoint.
///
/// Concurrency: Sendable; it holds only immutable settings, and each call makes its own request.
public struct S3Client: Sendable {
    public let endpoint: S3Endpoint
    /// Files larger than this go up in parts of this size (S3's minimum part is 5 MiB).
    public let partBytes: Int

    public init(endpoint: S3Endpoint, partBytes: Int = 8 << 20) {
        self.endpoint = endpoint
        self.partBytes = max(partBytes, 5 << 20)
    }

    // MARK: Operations

    /// Every object under `prefix`, in key order (ListObjectsV2, all pages).
    public func list(bucket: String, prefix: String) throws(S3ClientError) -> [S3ObjectSummary] {
        var objects = [S3ObjectSummary]()
        var token: String?
        repeat {
            var query = [("list-type", "2"), ("prefix", prefix)]
            if let token { query.append(("continuation-token", token)) }
            let (_, body) = try send("ListObjectsV2 s3://\(bucket)/\(prefix)", method: "GET", bucket: bucket, key: "", query: query)
            let xml = String(decoding: body, as: UTF8.self)
            for contents in S3Client.elements("Contents", in: xml) {
                guard let key = S3Client.elements("Key", in: contents).first else { continue }
                objects.append(S3ObjectSummary(key: S3Client.unescape(key), size: Int(S3Client.elements("Size", in: contents).first ?? "") ?? 0))
            }
            let truncated = S3Client.elements("IsTruncated", in: xml).first == "true"
            token = truncated ? S3Client.elements("NextContinuationToken", in: xml).first.map(S3Client.unescape) : nil
        } while token != nil
        return objects
    }

    /// Downloads an object into `path` (written beside it, then renamed).
    public func get(bucket: String, key: String, to path: String) throws(S3ClientError) {
        let operation = "GetObject s3://\(bucket)/\(key)"
        do {
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        } catch {
            throw S3ClientError(operation: operation, status: 0, code: "", message: "cannot make the folder of \(path): \(error)")
        }
        // Streamed to a file, not held in memory: channels can be large.
        try send(operation, method: "GET", bucket: bucket, key: key, downloadTo: path + ".partial")
        do {
            _ = try? FileManager.default.removeItem(atPath: path)
            try FileManager.default.moveItem(atPath: path + ".partial", toPath: path)
        } catch {
            throw S3ClientError(operation: "GetObject s3://\(bucket)/\(key)", status: 0, code: "", message: "cannot write \(path): \(error)")
        }
    }

    /// Uploads a file: one PutObject, or a multipart upload when it is larger than a part.
    public func put(bucket: String, key: String, file path: String) throws(S3ClientError) {
        let operation = "PutObject s3://\(bucket)/\(key)"
        guard let data = FileManager.default.contents(atPath: path) else {
            throw S3ClientError(operation: operation, status: 0, code: "", message: "cannot read \(path)")
        }
        if data.count <= partBytes {
            _ = try send(operation, method: "PUT", bucket: bucket, key: key, body: data)
            return
        }
        let (_, created) = try send("CreateMultipartUpload s3://\(bucket)/\(key)", method: "POST", bucket: bucket, key: key, query: [("uploads", "")])
        guard let upload = S3Client.elements("UploadId", in: String(decoding: created, as: UTF8.self)).first.map(S3Client.unescape) else {
            throw S3ClientError(operation: "CreateMultipartUpload s3://\(bucket)/\(key)", status: 200, code: "", message: "no UploadId in the answer")
        }
        do throws(S3ClientError) {
            var parts = [(number: Int, etag: String)]()
            var offset = 0
            while offset < data.count {
                let number = parts.count + 1
                let chunk = data[offset..<min(data.count, offset + partBytes)]
                let (headers, _) = try send("UploadPart \(number) s3://\(bucket)/\(key)", method: "PUT", bucket: bucket, key: key,
                                            query: [("partNumber", String(number)), ("uploadId", upload)], body: Data(chunk))
                parts.append((number, headers["etag"] ?? ""))
                offset += partBytes
            }
            let manifest = "<CompleteMultipartUpload>" + parts.map { "<Part><PartNumber>\($0.number)</PartNumber><ETag>\(S3Client.escape($0.etag))</ETag></Part>" }
                .joined() + "</CompleteMultipartUpload>"
            let (_, completed) = try send("CompleteMultipartUpload s3://\(bucket)/\(key)", method: "POST", bucket: bucket, key: key,
                                          query: [("uploadId", upload)], body: Data(manifest.utf8))
            // S3 may answer 200 with an error document.
            let answer = String(decoding: completed, as: UTF8.self)
            if answer.contains("<Error>") {
                throw S3ClientError(operation: "CompleteMultipartUpload s3://\(bucket)/\(key)", status: 200,
                                    code: S3Client.elements("Code", in: answer).first ?? "", message: S3Client.elements("Message", in: answer).first ?? "")
            }
        } catch {
            _ = try? send("AbortMultipartUpload s3://\(bucket)/\(key)", method: "DELETE", bucket: bucket, key: key, query: [("uploadId", upload)])
            throw error
        }
    }

    /// Downloads the objects under `prefix` into `directory`, keeping the key below the prefix
    /// as the relative path (folder markers and keys that would leave the folder are skipped).
    /// `keeping` picks objects by their index among the objects in key order (a rank's share
    /// under ShardedByS3Key); by default all. Returns the files written.
    public func download(bucket: String, prefix: String, into directory: String,
                         keeping: (Int) -> Bool = { _ in true }) throws(S3ClientError) -> [String] {
        var written = [String]()
        let objects = try list(bucket: bucket, prefix: prefix).filter { !$0.key.hasSuffix("/") }.enumerated()
            .filter { keeping($0.offset) }.map(\.element)
        let base = prefix.isEmpty || prefix.hasSuffix("/") || objects.count != 1 || objects[0].key != prefix
            ? prefix : String(prefix[..<(prefix.lastIndex(of: "/").map { prefix.index(after: $0) } ?? prefix.startIndex)])
        for object in objects {
            var relative = String(object.key.dropFirst(base.count))
            while relative.hasPrefix("/") { relative.removeFirst() }
            let parts = relative.split(separator: "/", omittingEmptySubsequences: false)
            guard !relative.isEmpty, !parts.contains(".."), !parts.contains("."), !parts.contains("") else { continue }
            let path = (directory as NSString).appendingPathComponent(relative)
            try get(bucket: bucket, key: object.key, to: path)
            written.append(path)
        }
        return written
    }

    // MARK: Requests

    /// Sends one signed request; returns the response's headers (lowercased names) and body,
    /// or throws S3's error for a status outside 2xx.
    @discardableResult
    func send(_ operation: String, method: String, bucket: String, key: String, query: [(String, String)] = [],
              body: Data = Data(), downloadTo file: String? = nil) throws(S3ClientError) -> ([String: String], Data) {
        guard let base = URL(string: endpoint.url), let host = base.host else {
            throw S3ClientError(operation: operation, status: 0, code: "", message: "the endpoint \(endpoint.url) is not a URL")
        }
        let basePath = base.path.hasSuffix("/") ? String(base.path.dropLast()) : base.path
        let path = basePath + "/" + PercentEncoding.encode(bucket) + (key.isEmpty ? "" : "/" + PercentEncoding.encode(key, keepSlash: true))
        let queryString = query.sorted { $0.0 < $1.0 }.map { "\(PercentEncoding.encode($0.0))=\(PercentEncoding.encode($0.1))" }.joined(separator: "&")
        guard let url = URL(string: "\(base.scheme ?? "http")://\(base.host ?? host)\(base.port.map { ":\($0)" } ?? "")\(path)\(queryString.isEmpty ? "" : "?" + queryString)") else {
            throw S3ClientError(operation: operation, status: 0, code: "", message: "cannot make a URL for \(bucket)/\(key)")
        }
        let defaultPort = base.scheme == "https" ? 443 : 80
        let authority = base.port.map { $0 == defaultPort ? host : "\(host):\($0)" } ?? host
        let payloadHash = SigV4.hexSHA256(body)
        var fields = [SignableRequest.Field(name: "host", value: authority), SignableRequest.Field(name: "x-amz-content-sha256", value: payloadHash)]
        // Said outright: an HTTP client left alone calls a POST body a form, and some servers
        // then read it as one.
        if method == "PUT" || method == "POST" {
            fields.append(SignableRequest.Field(name: "content-type", value: method == "POST" ? "application/xml" : "application/octet-stream"))
        }
        var signable = SignableRequest(method: method, path: path, query: queryString, fields: fields)
        SigV4Signer(key: AccessKey(id: endpoint.accessKeyID, secret: endpoint.secretAccessKey, sessionToken: endpoint.sessionToken),
                    region: endpoint.region, service: "s3").sign(&signable, payloadHash: payloadHash, at: Date())
        var request = URLRequest(url: url)
        request.httpMethod = method
        request.timeoutInterval = 600
        for field in signable.fields where field.name != "host" { request.setValue(field.value, forHTTPHeaderField: field.name) }
        if method == "PUT" || method == "POST" {
            request.httpBody = body
            request.setValue(String(body.count), forHTTPHeaderField: "content-length")
        }
        let (data, response, error) = file.map { BlockingHTTP.download(request, to: $0) } ?? BlockingHTTP.send(request)
        if let error {
            throw S3ClientError(operation: operation, status: 0, code: "", message: "cannot reach \(endpoint.url): \(error.localizedDescription)")
        }
        let status = response?.statusCode ?? 0
        var headers = [String: String]()
        for (name, value) in response?.allHeaderFields ?? [:] {
            if let name = name as? String, let value = value as? String { headers[name.lowercased()] = value }
        }
        var payload = data ?? Data()
        if let file, !(200..<300).contains(status) {
            // An error document, not the object.
            payload = FileManager.default.contents(atPath: file) ?? Data()
            _ = try? FileManager.default.removeItem(atPath: file)
        }
        guard (200..<300).contains(status) else {
            let xml = String(decoding: payload, as: UTF8.self)
            throw S3ClientError(operation: operation, status: status, code: S3Client.elements("Code", in: xml).first ?? "",
                                message: S3Client.elements("Message", in: xml).first.map(S3Client.unescape) ?? "")
        }
        return (headers, payload)
    }

    // MARK: XML, as much as these answers need

    /// The text inside each `<name>…</name>` of `xml`, in order (elements of this name do not nest).
    static func elements(_ name: String, in xml: String) -> [String] {
        var found = [String]()
        var rest = xml[...]
        while let open = rest.range(of: "<\(name)>"), let close = rest[open.upperBound...].range(of: "</\(name)>") {
            found.append(String(rest[open.upperBound..<close.lowerBound]))
            rest = rest[close.upperBound...]
        }
        return found
    }

    static func unescape(_ text: String) -> String {
        text.replacingOccurrences(of: "&lt;", with: "<").replacingOccurrences(of: "&gt;", with: ">")
            .replacingOccurrences(of: "&quot;", with: "\"").replacingOccurrences(of: "&apos;", with: "'")
            .replacingOccurrences(of: "&#34;", with: "\"").replacingOccurrences(of: "&amp;", with: "&")
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    /// `s3://bucket/key` split, or nil for another kind of URI.
    public static func split(_ uri: String) -> (bucket: String, key: String)? {
        guard uri.hasPrefix("s3://") else { return nil }
        let rest = uri.dropFirst(5)
        let bucket = rest.prefix { $0 != "/" }
        guard !bucket.isEmpty else { return nil }
        return (String(bucket), String(rest.dropFirst(bucket.count + 1)))
    }
}

/// An HTTP exchange that blocks the calling thread (the forge clients and the S3 client are
/// synchronous programs).
public enum BlockingHTTP {
    /// Sends `request` and waits for its answer.
    public static func send(_ request: URLRequest) -> (data: Data?, response: HTTPURLResponse?, error: (any Error)?) {
        let box = ResponseBox()
        let done = DispatchSemaphore(value: 0)
        URLSession.shared.dataTask(with: request) { data, response, error in
            box.set(data, response as? HTTPURLResponse, error)
            done.signal()
        }.resume()
        done.wait()
        return box.get()
    }
}

extension BlockingHTTP {
    /// Sends `request` and streams its body into `path` (replacing what was there); the
    /// answer's data is nil.
    public static func download(_ request: URLRequest, to path: String) -> (data: Data?, response: HTTPURLResponse?, error: (any Error)?) {
        let box = ResponseBox()
        let done = DispatchSemaphore(value: 0)
        URLSession.shared.downloadTask(with: request) { location, response, error in
            var failure = error
            if let location {
                // The temporary file is gone once this handler returns.
                do {
                    _ = try? FileManager.default.removeItem(atPath: path)
                    try FileManager.default.moveItem(at: location, to: URL(fileURLWithPath: path))
                } catch {
                    failure = failure ?? error
                }
            }
            box.set(nil, response as? HTTPURLResponse, failure)
            done.signal()
        }.resume()
        done.wait()
        return box.get()
    }
}

/// One response, handed from URLSession's thread.
///
/// Concurrency: Sendable; guarded by a lock.
private final class ResponseBox: @unchecked Sendable {
    private let lock = NSLock()
    private var data: Data?
    private var response: HTTPURLResponse?
    private var error: (any Error)?

    func set(_ data: Data?, _ response: HTTPURLResponse?, _ error: (any Error)?) {
        lock.lock()
        (self.data, self.response, self.error) = (data, response, error)
        lock.unlock()
    }

    func get() -> (Data?, HTTPURLResponse?, (any Error)?) {
        lock.lock()
        defer { lock.unlock() }
        return (data, response, error)
    }
}
