// The S3 face's object operations: PutObject, GetObject (ranges, conditionals), HeadObject,
// DeleteObject, DeleteObjects and CopyObject. Uploads stream into a temporary file that is
// renamed into place only when the body, its signature and its checksums are all right.
import ForgeSigning
import Foundation
import NIOCore
import NIOPosix

extension S3API {
    func putObject<Body: AsyncSequence>(_ r: S3Request, body: Body) async throws(S3Error) -> APIReply where Body.Element == ByteBuffer {
        var payload = try S3Payload(r.request, verified: r.verified)
        let temporary = try await S3API.offload { () throws(S3Error) in
            _ = try store.objectPath(r.bucket, r.key)
            return try store.temporaryFile()
        }
        let (md5, checksum) = try await receive(&payload, body, into: temporary)
        var checksums = [String: String]()
        if let algorithm = payload.digests.checksum?.algorithm, let checksum { checksums[algorithm.rawValue] = checksum }
        let record = S3ObjectRecord(etag: md5, size: payload.digests.byteCount, modified: 0, contentType: r.request.value("content-type"),
                                    metadata: S3API.userMetadata(r.request), checksums: checksums)
        try await S3API.offload { () throws(S3Error) in
            do throws(S3Error) {
                _ = try store.commit(temporary, to: r.bucket, r.key, record: record)
            } catch {
                try? FileManager.default.removeItem(atPath: temporary)
                throw error
            }
        }
        var headers = [("ETag", "\"\(md5)\"")]
        if let algorithm = payload.digests.checksum?.algorithm, let checksum { headers.append((algorithm.fieldName, checksum)) }
        return r.reply(headers: headers)
    }

    /// Streams the body into `path` (created here; removed again on any error).
    func receive<Body: AsyncSequence>(_ payload: inout S3Payload, _ body: Body, into path: String) async throws(S3Error)
        -> (md5: String, checksum: String?) where Body.Element == ByteBuffer {
        let handle = try await S3API.offload { () throws(S3Error) -> FileHandle in
            guard FileManager.default.createFile(atPath: path, contents: nil), let handle = FileHandle(forWritingAtPath: path) else {
                throw .internalError("cannot create \(path)")
            }
            return handle
        }
        do {
            let result = try await payload.read(body) { bytes in
                let data = Data(bytes)
                try await NIOThreadPool.singleton.runIfActive { try handle.write(contentsOf: data) }
            }
            try? handle.close()
            return result
        } catch {
            try? handle.close()
            try? FileManager.default.removeItem(atPath: path)
            throw error
        }
    }

    func getObject(_ r: S3Request, head: Bool) throws(S3Error) -> APIReply {
        let object = try store.object(r.bucket, r.key)
        let record = object.record
        let etag = "\"\(record.etag)\""
        var headers: [(String, String)] = [("ETag", etag), ("Last-Modified", S3XML.httpDate(object.modified)), ("Accept-Ranges", "bytes"),
                                           ("Content-Type", record.contentType ?? "binary/octet-stream")]
        headers += record.metadata.sorted { $0.key < $1.key }.map { ("x-amz-meta-\($0.key)", $0.value) }
        if let wanted = r.request.value("if-match"), !S3API.etagMatches(wanted, record.etag) {
            throw S3Error(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold", [("Condition", "If-Match")])
        }
        if let unwanted = r.request.value("if-none-match"), S3API.etagMatches(unwanted, record.etag) {
            return r.reply(status: 304, headers: headers.filter { $0.0 != "Content-Type" })
        }
        var status = 200
        var offset = 0
        var length = record.size
        if let range = r.request.value("range"), let (first, last) = try S3API.byteRange(range, size: record.size) {
            status = 206
            offset = first
            length = last - first + 1
            headers.append(("Content-Range", "bytes \(first)-\(last)/\(record.size)"))
        } else if r.request.value("x-amz-checksum-mode")?.uppercased() == "ENABLED" {
            // Only whole bodies carry the full-object checksum (botocore checks it against the body).
            for (algorithm, value) in record.checksums.sorted(by: { $0.key < $1.key }) {
                if let known = S3ChecksumAlgorithm(rawValue: algorithm) { headers.append((known.fieldName, value)) }
            }
        }
        headers.append(("Content-Length", String(length)))
        var reply = r.reply(status: status, headers: headers)
        if !head, length > 0 { reply.file = APIReply.FileRange(path: object.path, offset: offset, length: length) }
        return reply
    }

    /// `bytes=a-b`, `bytes=a-`, `bytes=-n` as an inclusive range within `size`; nil (the whole
    /// object) for forms S3 ignores; InvalidRange when it starts past the end.
    static func byteRange(_ text: String, size: Int) throws(S3Error) -> (Int, Int)? {
        let spec = text.trimmingCharacters(in: .whitespaces)
        guard spec.hasPrefix("bytes="), !spec.contains(",") else { return nil }
        let parts = spec.dropFirst("bytes=".count).split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2 else { return nil }
        let unsatisfiable = S3Error(416, "InvalidRange", "The requested range is not satisfiable",
                                    [("ActualObjectSize", String(size)), ("RangeRequested", text)])
        if parts[0].isEmpty {
            guard let suffix = Int(parts[1]), suffix > 0 else { return nil }
            guard size > 0 else { throw unsatisfiable }
            return (max(0, size - suffix), size - 1)
        }
        guard let first = Int(parts[0]), first >= 0 else { return nil }
        let last = parts[1].isEmpty ? Int.max : Int(parts[1])
        guard let last, last >= first else { return nil }
        guard first < size else { throw unsatisfiable }
        return (first, min(last, size - 1))
    }

    static func etagMatches(_ condition: String, _ etag: String) -> Bool {
        condition.split(separator: ",").contains { item in
            let value = item.trimmingCharacters(in: .whitespaces)
            return value == "*" || value.trimmingCharacters(in: CharacterSet(charactersIn: "\"")) == etag
        }
    }

    static func userMetadata(_ request: SignableRequest) -> [String: String] {
        var metadata = [String: String]()
        for field in request.fields where field.name.hasPrefix("x-amz-meta-") {
            metadata[String(field.name.dropFirst("x-amz-meta-".count))] = field.value
        }
        return metadata
    }

    func deleteObject(_ r: S3Request) throws(S3Error) -> APIReply {
        try store.deleteObject(r.bucket, r.key)
        return r.reply(status: 204)
    }

    func deleteObjects<Body: AsyncSequence>(_ r: S3Request, body: Body) async throws(S3Error) -> APIReply where Body.Element == ByteBuffer {
        try await S3API.offload { () throws(S3Error) in _ = try store.bucketPath(r.bucket) }
        var payload = try S3Payload(r.request, verified: r.verified)
        let document = try await payload.collect(body)
        let (objects, leaves) = try S3XML.records(document, named: "Object")
        guard objects.count <= 1000 else { throw S3Error(400, "MalformedXML", "DeleteObjects takes at most 1000 keys") }
        let quiet = leaves["Quiet"]?.lowercased() == "true"
        var keys = [String]()
        for object in objects {
            guard let key = object["Key"] else { throw S3Error(400, "MalformedXML", "an <Object> has no <Key>") }
            keys.append(key)
        }
        let result = try await S3API.offload { [keys] () throws(S3Error) -> String in
            var result = ""
            for key in keys {
                do throws(S3Error) {
                    try store.deleteObject(r.bucket, key)
                    if !quiet { result += "<Deleted>\(S3XML.element("Key", key))</Deleted>" }
                } catch {
                    result += "<Error>\(S3XML.element("Key", key))\(S3XML.element("Code", error.code))\(S3XML.element("Message", error.message))</Error>"
                }
            }
            return result
        }
        return r.reply(body: S3XML.document("DeleteResult", result))
    }

    /// The bucket and key of `x-amz-copy-source` (`bucket/key`, URL-encoded, maybe with a
    /// leading `/` and a `?versionId=`).
    static func copySource(_ value: String) throws(S3Error) -> (bucket: String, key: String) {
        var text = value.hasPrefix("/") ? String(value.dropFirst()) : value
        if let mark = text.firstIndex(of: "?") { text = String(text[..<mark]) }
        guard let slash = text.firstIndex(of: "/") else {
            throw S3Error(400, "InvalidArgument", "Copy Source must mention the source bucket and key: sourcebucket/sourcekey")
        }
        return (PercentEncoding.decode(text[..<slash]), PercentEncoding.decode(text[text.index(after: slash)...]))
    }

    func copyObject(_ r: S3Request) throws(S3Error) -> APIReply {
        let (sourceBucket, sourceKey) = try S3API.copySource(r.request.value("x-amz-copy-source") ?? "")
        let source = try store.object(sourceBucket, sourceKey)
        _ = try store.objectPath(r.bucket, r.key)
        let temporary = try store.temporaryFile()
        do {
            try FileManager.default.copyItem(atPath: source.path, toPath: temporary)
        } catch {
            throw .internalError("cannot copy \(sourceKey): \(error.localizedDescription)")
        }
        var record = source.record
        if r.request.value("x-amz-metadata-directive")?.uppercased() == "REPLACE" {
            record.contentType = r.request.value("content-type")
            record.metadata = S3API.userMetadata(r.request)
        }
        let stored: S3ObjectRecord
        do {
            stored = try store.commit(temporary, to: r.bucket, r.key, record: record)
        } catch {
            try? FileManager.default.removeItem(atPath: temporary)
            throw error
        }
        let body = S3XML.element("ETag", "\"\(stored.etag)\"") + S3XML.element("LastModified", S3XML.timestamp(Date(timeIntervalSince1970: stored.modified)))
        return r.reply(body: S3XML.document("CopyObjectResult", body))
    }
}
