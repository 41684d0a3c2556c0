// The local object store seen as S3: each bucket is a folder under the store's root and each
// object the file at its key (so jobs read and write the same files as plain paths). Forge's
// own bookkeeping lives in `ROOT/.forge-s3` (no bucket name starts with a dot): a metadata
// record per object (ETag, content type, user metadata, checksum), multipart uploads in
// progress, and temporary files, which are renamed into place only once complete, so a
// refused or broken upload leaves nothing behind. Every path comes from LocalObjectStore,
// which refuses keys that would lead outside the root.
import Crypto
import ForgeCoordinator
import ForgeSigning
import Foundation

/// What S3 knows of an object beyond its bytes.
struct S3ObjectRecord: Codable, Sendable {
    var etag: String
    var size: Int
    /// The file's modification time when the record was written (seconds since 1970).
    var modified: Double
    var contentType: String?
    var metadata: [String: String]
    /// Algorithm name (`CRC32`, …) → base64 value, for single-part uploads that sent one.
    var checksums: [String: String]
}

/// An object as found on disk.
struct S3Object: Sendable {
    let path: String
    let record: S3ObjectRecord
    var modified: Date { Date(timeIntervalSince1970: record.modified) }
}

/// Buckets, objects and uploads under one root.
///
/// Concurrency: Sendable; immutable. Concurrent writers of one key race as on S3: the last
/// rename wins.
struct S3Store: Sendable {
    let root: String
    private let store: LocalObjectStore

    init(root: String) {
        store = LocalObjectStore(root: root)
        self.root = store.root
    }

    var internalRoot: String { root + "/.forge-s3" }

    // MARK: Buckets

    static func isValidNewBucketName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard (3...63).contains(bytes.count), let first = bytes.first, let last = bytes.last else { return false }
        func alphanumeric(_ byte: UInt8) -> Bool {
            (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
        }
        return alphanumeric(first) && alphanumeric(last)
            && bytes.allSatisfy { alphanumeric($0) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: ".") }
            && !name.contains("..")
    }

    /// The folder of an existing bucket; throws NoSuchBucket.
    func bucketPath(_ bucket: String) throws(S3Error) -> String {
        guard !bucket.hasPrefix("."), !bucket.contains("/"), !bucket.isEmpty else { throw .noSuchBucket(bucket) }
        let path = root + "/" + bucket
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw .noSuchBucket(bucket)
        }
        return path
    }

    /// Every bucket with its creation time (the folder's), by name.
    func buckets() -> [(name: String, created: Date)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
        return names.sorted().compactMap { name in
            guard !name.hasPrefix("."), let path = try? bucketPath(name) else { return nil }
            let attributes = try? FileManager.default.attributesOfItem(atPath: path)
            let created = (attributes?[.creationDate] as? Date) ?? (attributes?[.modificationDate] as? Date) ?? Date()
            return (name, created)
        }
    }

    func createBucket(_ bucket: String) throws(S3Error) {
        guard S3Store.isValidNewBucketName(bucket) else {
            throw S3Error(400, "InvalidBucketName", "The specified bucket is not valid: 3 to 63 characters of a-z, 0-9, '.' and '-'", [("BucketName", bucket)])
        }
        do {
            try FileManager.default.createDirectory(atPath: root + "/" + bucket, withIntermediateDirectories: true)
        } catch {
            throw .internalError("cannot create the bucket folder: \(error.localizedDescription)")
        }
    }

    func deleteBucket(_ bucket: String) throws(S3Error) {
        let path = try bucketPath(bucket)
        guard keys(in: path).isEmpty else {
            throw S3Error(409, "BucketNotEmpty", "The bucket you tried to delete is not empty", [("BucketName", bucket)])
        }
        do {
            try FileManager.default.removeItem(atPath: path)
            try? FileManager.default.removeItem(atPath: metadataFolder(bucket))
        } catch {
            throw .internalError("cannot remove the bucket folder: \(error.localizedDescription)")
        }
    }

    // MARK: Objects

    /// The file of `key` in an existing bucket. Keys that would leave the store, or that have
    /// no file of their own (empty, `.`/`..` or empty segments, a trailing `/`), are refused.
    func objectPath(_ bucket: String, _ key: String) throws(S3Error) -> String {
        _ = try bucketPath(bucket)
        let segments = key.split(separator: "/", omittingEmptySubsequences: false)
        guard !key.isEmpty, key.utf8.count <= 1024, !segments.contains(where: { $0.isEmpty }) else {
            throw S3Error(400, "InvalidArgument", "Forge stores objects as files: the key '\(key)' must be non-empty, at most 1024 bytes, "
                          + "without empty segments ('//', a leading or trailing '/')", [("Key", key)])
        }
        do {
            return try store.path(of: "s3://\(bucket)/\(key)")
        } catch {
            throw S3Error(400, "InvalidArgument", "the key '\(key)' leads outside the object store (\(error))", [("Key", key)])
        }
    }

    /// The object at `key`; throws NoSuchKey. A file written without S3 (a job's output) gets
    /// its record computed now and kept.
    func object(_ bucket: String, _ key: String) throws(S3Error) -> S3Object {
        let path = try objectPath(bucket, key)
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
              attributes[.type] as? FileAttributeType == .typeRegular else { throw .noSuchKey(key) }
        let size = (attributes[.size] as? NSNumber)?.intValue ?? 0
        let modified = (attributes[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
        if let data = FileManager.default.contents(atPath: recordPath(bucket, key)),
           let record = try? JSONDecoder().decode(S3ObjectRecord.self, from: data),
           record.size == size, abs(record.modified - modified) < 0.001 {
            return S3Object(path: path, record: record)
        }
        guard let etag = S3Store.md5(ofFile: path) else { throw .noSuchKey(key) }
        let record = S3ObjectRecord(etag: etag, size: size, modified: modified, contentType: nil, metadata: [:], checksums: [:])
        try? writeRecord(record, bucket, key)
        return S3Object(path: path, record: record)
    }

    /// Moves the finished file `temporary` to `key` and records it; the record's time and size
    /// are taken from the file in place.
    func commit(_ temporary: String, to bucket: String, _ key: String, record: S3ObjectRecord) throws(S3Error) -> S3ObjectRecord {
        let path = try objectPath(bucket, key)
        let manager = FileManager.default
        var isDirectory: ObjCBool = false
        if manager.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            throw S3Error(400, "InvalidArgument", "Forge stores objects as files: '\(key)' is already a prefix of other keys", [("Key", key)])
        }
        do {
            try manager.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            if manager.fileExists(atPath: path) { try manager.removeItem(atPath: path) }
            try manager.moveItem(atPath: temporary, toPath: path)
        } catch {
            throw S3Error(400, "InvalidArgument", "cannot store '\(key)' (a file stands where a prefix of it should be a folder?): \(error.localizedDescription)", [("Key", key)])
        }
        var stored = record
        let attributes = try? manager.attributesOfItem(atPath: path)
        stored.modified = (attributes?[.modificationDate] as? Date)?.timeIntervalSince1970 ?? Date().timeIntervalSince1970
        stored.size = (attributes?[.size] as? NSNumber)?.intValue ?? record.size
        do {
            try writeRecord(stored, bucket, key)
        } catch {
            throw .internalError("cannot write the object's record: \(error.localizedDescription)")
        }
        return stored
    }

    /// Removes `key` (nothing to do when it is absent) and the folders it leaves empty.
    func deleteObject(_ bucket: String, _ key: String) throws(S3Error) {
        let path = try objectPath(bucket, key)
        let manager = FileManager.default
        var isDirectory: ObjCBool = false
        guard manager.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue else { return }
        do {
            try manager.removeItem(atPath: path)
        } catch {
            throw .internalError("cannot remove '\(key)': \(error.localizedDescription)")
        }
        try? manager.removeItem(atPath: recordPath(bucket, key))
        let bucketFolder = root + "/" + bucket
        var folder = (path as NSString).deletingLastPathComponent
        while folder.count > bucketFolder.count, (try? manager.contentsOfDirectory(atPath: folder))?.isEmpty == true {
            try? manager.removeItem(atPath: folder)
            folder = (folder as NSString).deletingLastPathComponent
        }
    }

    /// Every key of a bucket, in S3's order (UTF-8 bytes). Only regular files count; links
    /// are not followed.
    func keys(_ bucket: String) throws(S3Error) -> [String] {
        keys(in: try bucketPath(bucket))
    }

    private func keys(in folder: String) -> [String] {
        var found = [String]()
        var pending = [""]
        let manager = FileManager.default
        while let relative = pending.popLast() {
            let absolute = relative.isEmpty ? folder : folder + "/" + relative
            for name in (try? manager.contentsOfDirectory(atPath: absolute)) ?? [] {
                let child = relative.isEmpty ? name : relative + "/" + name
                guard let type = (try? manager.attributesOfItem(atPath: folder + "/" + child))?[.type] as? FileAttributeType else { continue }
                if type == .typeDirectory {
                    pending.append(child)
                } else if type == .typeRegular {
                    found.append(child)
                }
            }
        }
        return found.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
    }

    // MARK: Records and scratch space

    private func metadataFolder(_ bucket: String) -> String { internalRoot + "/objects/" + bucket }

    private func recordPath(_ bucket: String, _ key: String) -> String {
        metadataFolder(bucket) + "/" + SigV4.hexSHA256(Array(key.utf8)) + ".json"
    }

    private func writeRecord(_ record: S3ObjectRecord, _ bucket: String, _ key: String) throws {
        try FileManager.default.createDirectory(atPath: metadataFolder(bucket), withIntermediateDirectories: true)
        try JSONEncoder().encode(record).write(to: URL(fileURLWithPath: recordPath(bucket, key)), options: .atomic)
    }

    /// A fresh path for a file being written (its folder exists).
    func temporaryFile() throws(S3Error) -> String {
        let folder = internalRoot + "/tmp"
        do {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        } catch {
            throw .internalError("cannot create \(folder): \(error.localizedDescription)")
        }
        return folder + "/" + UUID().uuidString
    }

    /// The hex MD5 of a file, read in 1 MiB pieces.
    static func md5(ofFile path: String) -> String? {
        guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        var hash = Insecure.MD5()
        while let data = try? handle.read(upToCount: 1 << 20), !data.isEmpty { hash.update(data: data) }
        return SigV4.hex(hash.finalize())
    }
}
