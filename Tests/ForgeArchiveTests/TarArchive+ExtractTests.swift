// Tests of extracting tar entries to disk, above all that nothing lands outside the root.
import ForgeArchive
import ForgeTestSupport
import Foundation
import Testing

@Suite struct TarArchiveExtractTests {
    private static func permissions(_ path: String) throws -> Int {
        try #require(FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int)
    }

    @Test func extractsFilesDirectoriesModesAndTimes() throws {
        let directory = try TemporaryDirectory()
        let entries: [TarEntry] = [
            .directory("a"),
            .file("a/b/c.txt", bytes: Array("nested".utf8), mode: 0o600),
            TarEntry(name: "top.bin", mode: 0o755, modificationTime: 1_000_000_000, bytes: [0, 1, 2]),
            .file("empty", bytes: []),
            .directory("locked", mode: 0o555),
            .file("locked/inside", bytes: [9]),
        ]
        let root = directory.path + "/out/deeper"
        try TarArchive.extract(entries, into: root)
        #expect(try directory.read("out/deeper/a/b/c.txt") == Array("nested".utf8))
        #expect(try directory.read("out/deeper/top.bin") == [0, 1, 2])
        #expect(try directory.read("out/deeper/empty") == [])
        #expect(try directory.read("out/deeper/locked/inside") == [9])
        #expect(try Self.permissions(root + "/a/b/c.txt") == 0o600)
        #expect(try Self.permissions(root + "/top.bin") == 0o755)
        #expect(try Self.permissions(root + "/locked") == 0o555)
        let modified = try FileManager.default.attributesOfItem(atPath: root + "/top.bin")[.modificationDate] as? Date
        #expect(modified == Date(timeIntervalSince1970: 1_000_000_000))
        // Let the temporary directory clean up after itself.
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: root + "/locked")
    }

    @Test func replacesAnExistingFile() throws {
        let directory = try TemporaryDirectory()
        try directory.write([1, 2, 3, 4], to: "f")
        try TarArchive.extract([.file("f", bytes: [7])], into: directory.path)
        #expect(try directory.read("f") == [7])
    }

    @Test(arguments: ["../evil", "/etc/passwd", "a/../../evil", ".."])
    func refusesNamesThatEscape(name: String) throws {
        let directory = try TemporaryDirectory()
        let root = directory.path + "/root"
        #expect(throws: ArchiveError.badEntryName(name)) {
            try TarArchive.extract([.file("ok", bytes: [1]), .file(name, bytes: [2])], into: root)
        }
        let outside = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        #expect(outside == ["root"])
        #expect(!FileManager.default.fileExists(atPath: directory.path + "/evil"))
    }

    @Test func refusesToWriteThroughASymbolicLinkedFolder() throws {
        let directory = try TemporaryDirectory()
        let root = directory.path + "/root"
        let outside = directory.path + "/outside"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: root + "/link", withDestinationPath: outside)
        #expect {
            try TarArchive.extract([.file("link/planted", bytes: [1])], into: root)
        } throws: { error in
            guard case ArchiveError.fileSystem(let path, let reason) = error else { return false }
            return path == root + "/link" && reason.contains("symbolic link")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: outside).isEmpty)
    }

    @Test func refusesToOverwriteASymbolicLinkedFile() throws {
        let directory = try TemporaryDirectory()
        let root = directory.path + "/root"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        try directory.write([42], to: "target")
        try FileManager.default.createSymbolicLink(atPath: root + "/f", withDestinationPath: directory.path + "/target")
        #expect(throws: ArchiveError.self) { try TarArchive.extract([.file("f", bytes: [1])], into: root) }
        #expect(try directory.read("target") == [42])
    }

    @Test func refusesAFileWhereADirectoryIsNeeded() throws {
        let directory = try TemporaryDirectory()
        #expect {
            try TarArchive.extract([.file("a", bytes: [1]), .file("a/b", bytes: [2])], into: directory.path)
        } throws: { error in
            guard case ArchiveError.fileSystem(let path, _) = error else { return false }
            return path == directory.path + "/a"
        }
    }
}
