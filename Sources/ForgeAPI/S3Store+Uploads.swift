// Multipart uploads in progress: `ROOT/.forge-s3/uploads/<id>/` holds the upload's record and
// one file per part with its own record. Completing concatenates the listed parts into a
// temporary file that the store then renames into place.
import Crypto
import ForgeSigning
import Foundation

/// What CreateMultipartUpload fixed for the object to be.
struct S3UploadRecord: Codable, Sendable {
    var bucket: String
    var key: String
    var contentType: String?
    var metadata: [String: String]
    var initiated: Double
}

/// One uploaded part.
struct S3PartRecord: Codable, Sendable {
    var number: Int
    /// Hex MD5 of the part, unquoted.
    var etag: String
    var size: Int
}

extension S3Store {
    /// The smallest part S3 accepts before the last one, in bytes.
    static let smallestPart = 5 << 20

    private func uploadFolder(_ id: String) -> String { internalRoot + "/uploads/" + id }

    func createUpload(_ record: S3UploadRecord) throws(S3Error) -> String {
        let id = UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        do {
            try FileManager.default.createDirectory(atPath: uploadFolder(id), withIntermediateDirectories: true)
            try JSONEncoder().encode(record).write(to: URL(fileURLWithPath: uploadFolder(id) + "/upload.json"), options: .atomic)
        } catch {
            throw .internalError("cannot record the upload: \(error.localizedDescription)")
        }
        return id
    }

    /// The upload `id` of `bucket`/`key`; throws NoSuchUpload.
    func upload(_ id: String, bucket: String, key: String) throws(S3Error) -> S3UploadRecord {
        guard !id.isEmpty, id.utf8.allSatisfy({ AuthorizationHeader.isLowerHex($0) }),
              let data = FileManager.default.contents(atPath: uploadFolder(id) + "/upload.json"),
              let record = try? JSONDecoder().decode(S3UploadRecord.self, from: data),
              record.bucket == bucket, record.key == key else { throw .noSuchUpload(id) }
        return record
    }

    /// Moves a finished part file into the upload.
    func storePart(_ temporary: String, upload id: String, record: S3PartRecord) throws(S3Error) {
        let base = uploadFolder(id) + "/part-\(record.number)"
        do {
            if FileManager.default.fileExists(atPath: base) { try FileManager.default.removeItem(atPath: base) }
            try FileManager.default.moveItem(atPath: temporary, toPath: base)
            try JSONEncoder().encode(record).write(to: URL(fileURLWithPath: base + ".json"), options: .atomic)
        } catch {
            throw .internalError("cannot store part \(record.number): \(error.localizedDescription)")
        }
    }

    func part(_ number: Int, upload id: String) -> S3PartRecord? {
        guard let data = FileManager.default.contents(atPath: uploadFolder(id) + "/part-\(number).json") else { return nil }
        return try? JSONDecoder().decode(S3PartRecord.self, from: data)
    }

    /// Concatenates `parts` (number, ETag as sent) into a temporary file; returns it with the
    /// multipart ETag (MD5 of the parts' binary MD5s, `-N`) and the size.
    func assemble(upload id: String, parts: [(number: Int, etag: String)]) throws(S3Error) -> (path: String, etag: String, size: Int) {
        guard !parts.isEmpty else { throw S3Error(400, "MalformedXML", "CompleteMultipartUpload lists no part") }
        var records = [S3PartRecord]()
        for (index, listed) in parts.enumerated() {
            if index > 0, listed.number <= parts[index - 1].number {
                throw S3Error(400, "InvalidPartOrder", "The list of parts was not in ascending order. Parts must be ordered by part number.")
            }
            let etag = listed.etag.trimmingCharacters(in: CharacterSet(charactersIn: "\" "))
            guard let record = part(listed.number, upload: id), record.etag == etag else {
                throw S3Error(400, "InvalidPart", "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag.",
                              [("PartNumber", String(listed.number)), ("ETag", listed.etag)])
            }
            if index < parts.count - 1, record.size < S3Store.smallestPart {
                throw S3Error(400, "EntityTooSmall", "Your proposed upload is smaller than the minimum allowed size: part \(listed.number) has \(record.size) bytes, parts but the last need 5 MiB",
                              [("PartNumber", String(listed.number))])
            }
            records.append(record)
        }
        let output = try temporaryFile()
        guard FileManager.default.createFile(atPath: output, contents: nil), let writer = FileHandle(forWritingAtPath: output) else {
            throw .internalError("cannot create \(output)")
        }
        defer { try? writer.close() }
        var etags = Insecure.MD5()
        var size = 0
        do {
            for record in records {
                guard let reader = FileHandle(forReadingAtPath: uploadFolder(id) + "/part-\(record.number)") else {
                    throw S3Error.internalError("part \(record.number) vanished")
                }
                defer { try? reader.close() }
                while let data = try reader.read(upToCount: 4 << 20), !data.isEmpty {
                    try writer.write(contentsOf: data)
                    size += data.count
                }
                etags.update(data: S3Store.bytes(fromHex: record.etag))
            }
        } catch let error as S3Error {
            try? FileManager.default.removeItem(atPath: output)
            throw error
        } catch {
            try? FileManager.default.removeItem(atPath: output)
            throw .internalError("cannot assemble the upload: \(error.localizedDescription)")
        }
        return (output, "\(SigV4.hex(etags.finalize()))-\(records.count)", size)
    }

    func removeUpload(_ id: String) {
        try? FileManager.default.removeItem(atPath: uploadFolder(id))
    }

    static func bytes(fromHex hex: String) -> [UInt8] {
        var bytes = [UInt8]()
        var high: UInt8?
        for byte in hex.utf8 {
            guard let value = PercentEncoding.hexValue(byte) else { continue }
            if let first = high {
                bytes.append(first << 4 | value)
                high = nil
            } else {
                high = value
            }
        }
        return bytes
    }
}
