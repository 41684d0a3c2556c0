// The local object store: s3://bucket/key maps under the root, and nothing maps outside it:
// no '..' or '.' segment, no bucket-less URI, no symbolic link that leads out.
import ForgeCoordinator
import ForgeTestSupport
import Foundation
import Testing

@Suite struct LocalObjectStoreTests {
    @Test func keysMapUnderTheRootAndNothingEscapes() throws {
        let directory = try TemporaryDirectory()
        let root = directory.file("objects")
        try FileManager.default.createDirectory(atPath: root + "/data/train", withIntermediateDirectories: true)
        let store = LocalObjectStore(root: root)
        #expect(try store.path(of: "s3://data/train/part-0.csv") == root + "/data/train/part-0.csv")
        #expect(try store.path(of: "s3://data/models/job/output") == root + "/data/models/job/output")
        #expect(try store.path(of: "/srv/data/train.csv") == "/srv/data/train.csv")
        for uri in ["s3://data/../../etc/passwd", "s3://../etc", "s3://data/./x", "s3:///key", "/srv/../etc/passwd"] {
            #expect(throws: ObjectPathError.self, "\(uri)") { try store.path(of: uri) }
        }
        #expect(throws: ObjectPathError.unsupported("https://example.com/x")) { try store.path(of: "https://example.com/x") }
        // A link inside the store that points outside it is refused, whatever lies beyond it.
        try FileManager.default.createSymbolicLink(atPath: root + "/data/escape", withDestinationPath: "/etc")
        #expect(throws: ObjectPathError.escapes("s3://data/escape/passwd")) { try store.path(of: "s3://data/escape/passwd") }
        #expect(throws: ObjectPathError.escapes("s3://data/escape/not/yet/there")) { try store.path(of: "s3://data/escape/not/yet/there") }
        // One that stays inside is fine.
        try FileManager.default.createSymbolicLink(atPath: root + "/data/alias", withDestinationPath: root + "/data/train")
        #expect(try store.path(of: "s3://data/alias/part-0.csv") == root + "/data/alias/part-0.csv")
    }
}
