// The S3 face: path-style requests (`/bucket/key`) over the local object store. This file
// routes each request to its operation and serves the bucket operations and listings; objects
// and multipart uploads are in S3API+Objects.swift and S3API+Multipart.swift.
//   GET /                       ListBuckets
//   PUT|HEAD|DELETE /b          CreateBucket, HeadBucket (404 without a body when missing), DeleteBucket
//   GET /b?list-type=2          ListObjectsV2 (GET /b: ListObjects), GET /b?location
//   POST /b?delete              DeleteObjects
//   PUT|GET|HEAD|DELETE /b/k    PutObject (CopyObject with x-amz-copy-source), GetObject, HeadObject, DeleteObject
//   POST /b/k?uploads, PUT /b/k?partNumber&uploadId, POST|DELETE /b/k?uploadId   multipart uploads
import ForgeSigning
import Foundation
import NIOCore
import NIOPosix

/// Serves S3 operations over a store root.
///
/// Concurrency: Sendable; immutable (the file system serialises what it must).
public struct S3API: Sendable {
    let store: S3Store

    /// The face over the local object store at `root` (`s3://bucket/key` is `root/bucket/key`).
    public init(root: String) {
        store = S3Store(root: root)
    }

    /// One S3 request, already authenticated (`verified` is nil when signatures are not checked).
    func handle<Body: AsyncSequence>(_ request: SignableRequest, verified: VerifiedSignature?, body: Body,
                                     requestID: String) async -> APIReply where Body.Element == ByteBuffer {
        let rawPath = request.path.hasPrefix("/") ? String(request.path.dropFirst()) : request.path
        let slash = rawPath.firstIndex(of: "/")
        let bucket = PercentEncoding.decode(slash.map { rawPath[..<$0] } ?? rawPath[...])
        let key = slash.map { PercentEncoding.decode(rawPath[rawPath.index(after: $0)...]) } ?? ""
        var query = [String: String]()
        for item in request.queryItems where query[item.name] == nil { query[item.name] = item.value }
        let context = S3Request(request: request, bucket: bucket, key: key, query: query, verified: verified, requestID: requestID)
        do {
            return try await route(context, body: body)
        } catch {
            return error.reply(requestID: requestID, method: request.method)
        }
    }

    /// Operations that touch the file system run on NIO's pool for blocking work (`offload`);
    /// those that read a body stream it and offload each write.
    private func route<Body: AsyncSequence>(_ r: S3Request, body: Body) async throws(S3Error) -> APIReply where Body.Element == ByteBuffer {
        let method = r.request.method
        if r.bucket.isEmpty {
            guard method == "GET" else { throw notImplemented(r) }
            return try await S3API.offload { listBuckets(r) }
        }
        if r.key.isEmpty {
            switch method {
            case "PUT" where r.query.isEmpty: return try await S3API.offload { () throws(S3Error) in try createBucket(r) }
            case "HEAD": return try await S3API.offload { () throws(S3Error) in try headBucket(r) }
            case "DELETE" where r.query.isEmpty:
                return try await S3API.offload { () throws(S3Error) in
                    try store.deleteBucket(r.bucket)
                    return r.reply(status: 204)
                }
            case "GET" where r.query["location"] != nil:
                return try await S3API.offload { () throws(S3Error) in
                    _ = try store.bucketPath(r.bucket)
                    return r.reply(body: S3XML.document("LocationConstraint", ""))
                }
            case "GET" where r.query["list-type"] == "2": return try await S3API.offload { () throws(S3Error) in try list(r, version: 2) }
            case "GET" where r.query["uploads"] == nil && r.query["versions"] == nil && r.query["policy"] == nil:
                return try await S3API.offload { () throws(S3Error) in try list(r, version: 1) }
            case "POST" where r.query["delete"] != nil: return try await deleteObjects(r, body: body)
            default: throw notImplemented(r)
            }
        }
        switch method {
        case "PUT" where r.query["uploadId"] != nil: return try await uploadPart(r, body: body)
        case "PUT" where r.request.value("x-amz-copy-source") != nil: return try await S3API.offload { () throws(S3Error) in try copyObject(r) }
        case "PUT" where r.query.isEmpty: return try await putObject(r, body: body)
        case "GET" where r.query["uploadId"] == nil: return try await S3API.offload { () throws(S3Error) in try getObject(r, head: false) }
        case "HEAD": return try await S3API.offload { () throws(S3Error) in try getObject(r, head: true) }
        case "DELETE" where r.query["uploadId"] != nil: return try await S3API.offload { () throws(S3Error) in try abortUpload(r) }
        case "DELETE": return try await S3API.offload { () throws(S3Error) in try deleteObject(r) }
        case "POST" where r.query["uploads"] != nil: return try await S3API.offload { () throws(S3Error) in try createUpload(r) }
        case "POST" where r.query["uploadId"] != nil: return try await completeUpload(r, body: body)
        default: throw notImplemented(r)
        }
    }

    /// Runs blocking file-system work on NIO's thread pool, never on the cooperative pool.
    static func offload<T: Sendable>(_ work: @escaping @Sendable () throws(S3Error) -> T) async throws(S3Error) -> T {
        do {
            return try await NIOThreadPool.singleton.runIfActive { () throws -> T in try work() }
        } catch let error as S3Error {
            throw error
        } catch {
            throw .internalError("file-system work failed: \(error)")
        }
    }

    private func notImplemented(_ r: S3Request) -> S3Error {
        let subresources = r.query.keys.sorted().joined(separator: ", ")
        return S3Error(501, "NotImplemented", "Forge's S3 face does not serve \(r.request.method) \(r.key.isEmpty ? "on a bucket" : "on an object")"
                       + (subresources.isEmpty ? "" : " with \(subresources)"))
    }

    // MARK: Buckets

    private func listBuckets(_ r: S3Request) -> APIReply {
        let buckets = store.buckets().map { bucket in
            "<Bucket>\(S3XML.element("Name", bucket.name))\(S3XML.element("CreationDate", S3XML.timestamp(bucket.created)))</Bucket>"
        }.joined()
        return r.reply(body: S3XML.document("ListAllMyBucketsResult", "<Buckets>\(buckets)</Buckets><Owner><ID>forge</ID><DisplayName>forge</DisplayName></Owner>"))
    }

    private func createBucket(_ r: S3Request) throws(S3Error) -> APIReply {
        // Re-creating one's own bucket succeeds, as in us-east-1.
        if (try? store.bucketPath(r.bucket)) == nil { try store.createBucket(r.bucket) }
        return r.reply(headers: [("Location", "/\(r.bucket)")])
    }

    private func headBucket(_ r: S3Request) throws(S3Error) -> APIReply {
        _ = try store.bucketPath(r.bucket)
        var headers = [(String, String)]()
        if let region = r.region { headers.append(("x-amz-bucket-region", region)) }
        return r.reply(headers: headers)
    }

    // MARK: Listing

    /// ListObjectsV2 (`version` 2: continuation tokens, start-after) and ListObjects (1: marker).
    private func list(_ r: S3Request, version: Int) throws(S3Error) -> APIReply {
        let prefix = r.query["prefix"] ?? ""
        let delimiter = r.query["delimiter"].flatMap { $0.isEmpty ? nil : $0 }
        let encode = r.query["encoding-type"] == "url"
        guard let maxKeys = Int(r.query["max-keys"] ?? "1000"), maxKeys >= 0 else {
            throw S3Error(400, "InvalidArgument", "max-keys must be a non-negative integer")
        }
        var after = ""
        if version == 2 {
            after = r.query["start-after"] ?? ""
            if let token = r.query["continuation-token"] {
                guard let data = Data(base64Encoded: token), let last = String(data: data, encoding: .utf8) else {
                    throw S3Error(400, "InvalidArgument", "The continuation token provided is incorrect")
                }
                if Array(after.utf8).lexicographicallyPrecedes(Array(last.utf8)) { after = last }
            }
        } else {
            after = r.query["marker"] ?? ""
        }
        let limit = min(maxKeys, 1000)
        var contents = [String]()
        var prefixes = [String]()
        var last = ""
        var truncated = false
        for key in try store.keys(r.bucket) where key.hasPrefix(prefix) {
            if !after.isEmpty {
                if !Array(after.utf8).lexicographicallyPrecedes(Array(key.utf8)) { continue }
                // After a common prefix, every key under it was already rolled up.
                if let delimiter, after.hasSuffix(delimiter), key.hasPrefix(after) { continue }
            }
            var rolledUp: String?
            if let delimiter, let range = key.dropFirst(prefix.count).range(of: delimiter) {
                rolledUp = String(key[..<range.upperBound])
                if rolledUp == prefixes.last { continue }
            }
            if contents.count + prefixes.count == limit {
                // max-keys=0 asks for nothing and gets no token (a token would restart the listing).
                truncated = limit > 0
                break
            }
            if let rolledUp {
                prefixes.append(rolledUp)
                last = rolledUp
            } else {
                guard let object = try? store.object(r.bucket, key) else { continue }
                contents.append("<Contents>\(S3XML.element("Key", encode ? S3API.urlEncode(key) : key))"
                                + S3XML.element("LastModified", S3XML.timestamp(object.modified))
                                + S3XML.element("ETag", "\"\(object.record.etag)\"") + "<Size>\(object.record.size)</Size>"
                                + "<StorageClass>STANDARD</StorageClass></Contents>")
                last = key
            }
        }
        func text(_ value: String) -> String { encode ? S3API.urlEncode(value) : value }
        var body = S3XML.element("Name", r.bucket) + S3XML.element("Prefix", text(prefix)) + "<MaxKeys>\(maxKeys)</MaxKeys>"
        if let delimiter { body += S3XML.element("Delimiter", text(delimiter)) }
        if encode { body += "<EncodingType>url</EncodingType>" }
        body += "<IsTruncated>\(truncated)</IsTruncated>"
        if version == 2 {
            body += "<KeyCount>\(contents.count + prefixes.count)</KeyCount>"
            if let token = r.query["continuation-token"] { body += S3XML.element("ContinuationToken", token) }
            if let start = r.query["start-after"] { body += S3XML.element("StartAfter", text(start)) }
            if truncated { body += S3XML.element("NextContinuationToken", Data(last.utf8).base64EncodedString()) }
        } else {
            body += S3XML.element("Marker", text(after))
            if truncated { body += S3XML.element("NextMarker", text(last)) }
        }
        body += contents.joined() + prefixes.map { "<CommonPrefixes>\(S3XML.element("Prefix", text($0)))</CommonPrefixes>" }.joined()
        return r.reply(body: S3XML.document("ListBucketResult", body))
    }

    /// Keys in `encoding-type=url` listings: botocore unquotes them (with `+` as a space).
    static func urlEncode(_ text: String) -> String { PercentEncoding.encode(text, keepSlash: true) }
}

/// One S3 request with its parts decoded.
struct S3Request: Sendable {
    let request: SignableRequest
    let bucket: String
    let key: String
    /// Query parameters, decoded (the first of each name).
    let query: [String: String]
    let verified: VerifiedSignature?
    let requestID: String

    /// The client's region, from its signature (never another one: that would redirect botocore).
    var region: String? { verified?.scope.region ?? SigV4Verifier.claimedScope(of: request)?.region }

    func reply(status: Int = 200, headers: [(String, String)] = [], body: [UInt8] = []) -> APIReply {
        var all = headers.map { (name: $0.0, value: $0.1) }
        if !body.isEmpty { all.append(("Content-Type", "application/xml")) }
        all += [("x-amz-request-id", requestID), ("x-amz-id-2", "forge")]
        return APIReply(status: status, headers: all, body: body)
    }
}
