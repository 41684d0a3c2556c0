// The S3 face's multipart uploads: CreateMultipartUpload, UploadPart (and UploadPartCopy, which
// `aws s3 cp` uses between buckets from 8 MiB), CompleteMultipartUpload and
// AbortMultipartUpload. Parts wait in the store's upload folder; completing assembles them
// into the object in one rename.
import ForgeSigning
import Foundation
import NIOCore

extension S3API {
    func createUpload(_ r: S3Request) throws(S3Error) -> APIReply {
        _ = try store.objectPath(r.bucket, r.key)
        let id = try store.createUpload(S3UploadRecord(bucket: r.bucket, key: r.key, contentType: r.request.value("content-type"),
                                                       metadata: S3API.userMetadata(r.request), initiated: Date().timeIntervalSince1970))
        let body = S3XML.element("Bucket", r.bucket) + S3XML.element("Key", r.key) + S3XML.element("UploadId", id)
        return r.reply(body: S3XML.document("InitiateMultipartUploadResult", body))
    }

    private func partNumber(_ r: S3Request) throws(S3Error) -> Int {
        guard let number = r.query["partNumber"].flatMap(Int.init), (1...10_000).contains(number) else {
            throw S3Error(400, "InvalidArgument", "Part number must be an integer between 1 and 10000, inclusive")
        }
        return number
    }

    func uploadPart<Body: AsyncSequence>(_ r: S3Request, body: Body) async throws(S3Error) -> APIReply where Body.Element == ByteBuffer {
        let id = r.query["uploadId"] ?? ""
        let number = try partNumber(r)
        try await S3API.offload { () throws(S3Error) in
            _ = try store.objectPath(r.bucket, r.key)
            _ = try store.upload(id, bucket: r.bucket, key: r.key)
        }
        if r.request.value("x-amz-copy-source") != nil {
            return try await S3API.offload { () throws(S3Error) in try copyPart(r, upload: id, number: number) }
        }
        var payload = try S3Payload(r.request, verified: r.verified)
        let temporary = try await S3API.offload { () throws(S3Error) in try store.temporaryFile() }
        let (md5, checksum) = try await receive(&payload, body, into: temporary)
        let part = S3PartRecord(number: number, etag: md5, size: payload.digests.byteCount)
        try await S3API.offload { () throws(S3Error) in
            do throws(S3Error) {
                try store.storePart(temporary, upload: id, record: part)
            } catch {
                try? FileManager.default.removeItem(atPath: temporary)
                throw error
            }
        }
        var headers = [("ETag", "\"\(md5)\"")]
        if let algorithm = payload.digests.checksum?.algorithm, let checksum { headers.append((algorithm.fieldName, checksum)) }
        return r.reply(headers: headers)
    }

    /// UploadPartCopy: a byte range (`x-amz-copy-source-range`, default all) of another object.
    private func copyPart(_ r: S3Request, upload id: String, number: Int) throws(S3Error) -> APIReply {
        let (sourceBucket, sourceKey) = try S3API.copySource(r.request.value("x-amz-copy-source") ?? "")
        let source = try store.object(sourceBucket, sourceKey)
        if let wanted = r.request.value("x-amz-copy-source-if-match"), !S3API.etagMatches(wanted, source.record.etag) {
            throw S3Error(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold",
                          [("Condition", "x-amz-copy-source-If-Match")])
        }
        var first = 0
        var last = source.record.size - 1
        if let range = r.request.value("x-amz-copy-source-range") {
            guard let (from, to) = try S3API.byteRange(range, size: source.record.size) else {
                throw S3Error(400, "InvalidArgument", "The x-amz-copy-source-range value must be of the form bytes=first-last")
            }
            first = from
            last = to
        }
        let temporary = try store.temporaryFile()
        var hash = UploadDigests(checksum: nil)
        do {
            guard FileManager.default.createFile(atPath: temporary, contents: nil), let writer = FileHandle(forWritingAtPath: temporary),
                  let reader = FileHandle(forReadingAtPath: source.path) else { throw S3Error.internalError("cannot open the part's files") }
            defer {
                try? writer.close()
                try? reader.close()
            }
            try reader.seek(toOffset: UInt64(first))
            var remaining = max(0, last - first + 1)
            while remaining > 0, let data = try reader.read(upToCount: min(remaining, 4 << 20)), !data.isEmpty {
                hash.update(Array(data)[...])
                try writer.write(contentsOf: data)
                remaining -= data.count
            }
        } catch {
            try? FileManager.default.removeItem(atPath: temporary)
            throw (error as? S3Error) ?? .internalError("cannot copy the part: \(error.localizedDescription)")
        }
        let md5 = hash.finish().md5
        try store.storePart(temporary, upload: id, record: S3PartRecord(number: number, etag: md5, size: hash.byteCount))
        let body = S3XML.element("ETag", "\"\(md5)\"") + S3XML.element("LastModified", S3XML.timestamp(Date()))
        return r.reply(body: S3XML.document("CopyPartResult", body))
    }

    func completeUpload<Body: AsyncSequence>(_ r: S3Request, body: Body) async throws(S3Error) -> APIReply where Body.Element == ByteBuffer {
        let id = r.query["uploadId"] ?? ""
        let upload = try await S3API.offload { () throws(S3Error) in try store.upload(id, bucket: r.bucket, key: r.key) }
        var payload = try S3Payload(r.request, verified: r.verified)
        let document = try await payload.collect(body)
        let (listed, _) = try S3XML.records(document, named: "Part")
        var parts = [(number: Int, etag: String)]()
        for part in listed {
            guard let number = part["PartNumber"].flatMap(Int.init), let etag = part["ETag"] else {
                throw S3Error(400, "MalformedXML", "each <Part> needs a <PartNumber> and an <ETag>")
            }
            parts.append((number, etag))
        }
        let listedParts = parts
        let assembled = try await S3API.offload { () throws(S3Error) in
            let assembled = try store.assemble(upload: id, parts: listedParts)
            let record = S3ObjectRecord(etag: assembled.etag, size: assembled.size, modified: 0, contentType: upload.contentType,
                                        metadata: upload.metadata, checksums: [:])
            do throws(S3Error) {
                _ = try store.commit(assembled.path, to: r.bucket, r.key, record: record)
            } catch {
                try? FileManager.default.removeItem(atPath: assembled.path)
                throw error
            }
            store.removeUpload(id)
            return assembled
        }
        let body = S3XML.element("Location", "/\(r.bucket)/\(r.key)") + S3XML.element("Bucket", r.bucket) + S3XML.element("Key", r.key)
            + S3XML.element("ETag", "\"\(assembled.etag)\"")
        return r.reply(body: S3XML.document("CompleteMultipartUploadResult", body))
    }

    func abortUpload(_ r: S3Request) throws(S3Error) -> APIReply {
        let id = r.query["uploadId"] ?? ""
        _ = try store.upload(id, bucket: r.bucket, key: r.key)
        store.removeUpload(id)
        return r.reply(status: 204)
    }
}
