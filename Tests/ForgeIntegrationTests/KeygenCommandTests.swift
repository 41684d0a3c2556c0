// `forge keygen` writes a cluster key that loads, and never overwrites one by accident.
import ForgeTestSupport
import ForgeTransport
import Foundation
import Testing

@Suite struct KeygenCommandTests {
    @Test func writesALoadableKeyAndKeepsAnExistingOne() throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("cluster.key")
        let first = try ForgeProcess.run(["keygen", "--out", path])
        #expect(first.status == 0, "\(first)")
        let key = try ClusterKey.load(path: path)
        #expect(first.standardOutput.contains(key.publicKey))
        let again = try ForgeProcess.run(["keygen", "--out", path])
        #expect(again.status == 1, "\(again)")
        #expect(again.standardError.contains("--force"))
        #expect(try ClusterKey.load(path: path) == key, "an existing key was replaced without --force")
        let forced = try ForgeProcess.run(["keygen", "--out", path, "--force"])
        #expect(forced.status == 0, "\(forced)")
        #expect(try ClusterKey.load(path: path) != key)
    }
}
