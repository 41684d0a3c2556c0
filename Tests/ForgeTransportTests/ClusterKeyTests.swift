// Cluster key files: generated, written owner-only, read back; damaged files refused.
import ForgeTestSupport
import ForgeTransport
import Foundation
import Testing

@Suite struct ClusterKeyTests {
    @Test func roundTripsThroughAFileReadableByItsOwnerOnly() throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("cluster.key")
        let key = try ClusterKey.generate()
        #expect(key.publicKey.count == 40 && key.secretKey.count == 40)
        #expect(key != (try ClusterKey.generate()))
        try key.write(to: path)
        #expect(try ClusterKey.load(path: path) == key)
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
        #expect(mode == 0o600)
    }

    @Test func theSecretKeyDeterminesThePublicKey() throws {
        let key = try ClusterKey.generate()
        #expect(try ClusterKey(secretKey: key.secretKey) == key)
    }

    @Test func damagedFilesAreRefused() throws {
        let directory = try TemporaryDirectory()
        let key = try ClusterKey.generate()
        let other = try ClusterKey.generate()
        let cases: [(String, String)] = [
            ("public = \(other.publicKey)\nsecret = \(key.secretKey)\n", "does not belong"),
            ("public = \(key.publicKey)\n", "no 'secret"),
            ("secret = tooShort\n", "not 40 Z85"),
            ("secret: none here\n", "not key = value"),
        ]
        for (index, (text, expected)) in cases.enumerated() {
            let path = try directory.write(text, to: "k\(index).key")
            do {
                _ = try ClusterKey.load(path: path)
                Issue.record("accepted a damaged key file: \(text)")
            } catch {
                #expect(error.description.contains(expected), "\(error)")
                #expect(error.description.contains("forge keygen"))
            }
        }
        #expect(throws: TransportError.self) { try ClusterKey.load(path: directory.file("missing.key")) }
    }
}
