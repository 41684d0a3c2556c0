// The S3 face's file layout: keys map to files under the bucket, and no key, however spelled
// and whatever links lie in the store, reaches a file outside it.
@testable import ForgeAPI
import ForgeTestSupport
import Foundation
import Testing

@Suite struct S3StoreTests {
    @Test func keysMapToFilesAndEscapesAreRefused() throws {
        let scratch = try TemporaryDirectory()
        let root = scratch.file("objects")
        _ = try scratch.write("secret", to: "outside/secret.txt")
        let store = S3Store(root: root)
        try store.createBucket("bkt")
        #expect(try store.objectPath("bkt", "a/b.txt") == root + "/bkt/a/b.txt")
        for key in ["../x", "a/../../x", "..", ".", "a/./b", "a//b", "/a", "a/", ""] {
            #expect(throws: S3Error.self, "\(key)") { try store.objectPath("bkt", key) }
        }
        #expect(throws: S3Error.self) { try store.objectPath("missing", "k") }
        #expect(throws: S3Error.self) { try store.objectPath(".forge-s3", "tmp/x") }
        // A link inside a bucket that leads out: neither readable nor writable through it.
        try FileManager.default.createSymbolicLink(atPath: root + "/bkt/link", withDestinationPath: scratch.file("outside"))
        #expect(throws: S3Error.self) { try store.objectPath("bkt", "link/secret.txt") }
        #expect(throws: S3Error.self) { try store.object("bkt", "link/secret.txt") }
        #expect(try store.keys("bkt").isEmpty, "links are not listed")
    }

    @Test func commitDeleteAndRecords() throws {
        let scratch = try TemporaryDirectory()
        let store = S3Store(root: scratch.file("objects"))
        try store.createBucket("bkt")
        let temporary = try store.temporaryFile()
        try Data("hello world".utf8).write(to: URL(fileURLWithPath: temporary))
        let record = S3ObjectRecord(etag: "5eb63bbbe01eeed093cb22bb8f5acdc3", size: 11, modified: 0, contentType: "text/plain",
                                    metadata: ["a": "b"], checksums: ["CRC32": "DUoRhQ=="])
        _ = try store.commit(temporary, to: "bkt", "deep/er/k.txt", record: record)
        let object = try store.object("bkt", "deep/er/k.txt")
        #expect(object.record.contentType == "text/plain" && object.record.metadata == ["a": "b"] && object.record.size == 11)
        // A key that is a prefix of another cannot also be an object.
        let second = try store.temporaryFile()
        try Data().write(to: URL(fileURLWithPath: second))
        #expect(throws: S3Error.self) { try store.commit(second, to: "bkt", "deep/er", record: record) }
        // A file written behind S3's back gets a fresh record with its MD5.
        try Data("changed".utf8).write(to: URL(fileURLWithPath: object.path))
        let recomputed = try store.object("bkt", "deep/er/k.txt").record
        #expect(recomputed.etag == S3Store.md5(ofFile: object.path) && recomputed.contentType == nil && recomputed.size == 7)
        try store.deleteObject("bkt", "deep/er/k.txt")
        #expect(!FileManager.default.fileExists(atPath: scratch.file("objects/bkt/deep")), "emptied folders go")
        #expect(try store.keys("bkt").isEmpty)
        try store.deleteBucket("bkt")
        #expect(store.buckets().isEmpty)
    }
}
