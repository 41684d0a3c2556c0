// Tests of the in-memory tar writer and reader, cross-checked against GNU tar and Python.
import ForgeArchive
import ForgeTestSupport
import Foundation
import Testing

/// Header offsets and checksum repair, for crafting archives other writers would produce.
private enum TarBytes {
    static let name = 0..<100
    static let size = 124..<136
    static let checksum = 148..<156
    static let typeflag = 156
    static let linkName = 157..<257

    /// Overwrites `field` of the header at `header` with `value`, NUL-padded, and fixes the checksum.
    static func set(_ value: [UInt8], in field: Range<Int>, of bytes: inout [UInt8], header: Int = 0) {
        precondition(value.count <= field.count)
        let padded = value + [UInt8](repeating: 0, count: field.count - value.count)
        bytes.replaceSubrange((header + field.lowerBound)..<(header + field.upperBound), with: padded)
        fixChecksum(&bytes, header: header)
    }

    static func fixChecksum(_ bytes: inout [UInt8], header: Int) {
        // Sum every byte, then count the checksum field as eight spaces instead.
        let sum = bytes.withUnsafeBufferPointer { raw in
            var sum = 8 * 32
            for index in header..<(header + 512) where index - header < 148 || index - header >= 156 {
                sum += Int(raw[index])
            }
            return sum
        }
        let digits = Array(String(sum, radix: 8).utf8)
        let field = [UInt8](repeating: UInt8(ascii: "0"), count: max(0, 6 - digits.count)) + digits + [0, 32]
        bytes.replaceSubrange((header + checksum.lowerBound)..<(header + checksum.upperBound), with: field.suffix(8))
    }

    /// An archive with one file named `name` (any bytes, even unsafe ones), written by patching.
    static func archive(named name: String, typeflag: UInt8 = UInt8(ascii: "0"), linkName: String = "") throws -> [UInt8] {
        var bytes = try TarArchive.write([.file("placeholder", bytes: Array("hi".utf8))])
        set(Array(name.utf8), in: self.name, of: &bytes)
        bytes[Self.typeflag] = typeflag
        set(Array(linkName.utf8), in: self.linkName, of: &bytes)
        return bytes
    }
}

@Suite struct TarArchiveTests {
    static let longName = "models/" + String(repeating: "layer", count: 20) + "/weights-" + String(repeating: "x", count: 60) + ".bin"

    static var sampleEntries: [TarEntry] {
        [
            .directory("models"),
            .file("models/config.json", bytes: Array("{\"layers\": 4}".utf8)),
            .file("models/empty.bin", bytes: []),
            TarEntry(name: "models/run.sh", mode: 0o755, modificationTime: 1_700_000_000, bytes: Array("#!/bin/sh\n".utf8)),
            .file(longName, bytes: (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 7) }),
            .directory("models/ünïcødé", mode: 0o700),
            .file("models/ünïcødé/π.txt", bytes: Array("3.14159".utf8), mode: 0o600),
        ]
    }

    // MARK: - Round trips

    @Test func roundTripKeepsEveryField() throws {
        #expect(Self.longName.utf8.count > 100)
        let bytes = try TarArchive.write(Self.sampleEntries)
        #expect(bytes.count % 512 == 0)
        #expect(bytes.suffix(1024).allSatisfy { $0 == 0 })
        #expect(try TarArchive.read(bytes) == Self.sampleEntries)
        #expect(try TarArchive.readGzipped(TarArchive.writeGzipped(Self.sampleEntries)) == Self.sampleEntries)
    }

    @Test func writingIsReproducible() throws {
        #expect(try TarArchive.write(Self.sampleEntries) == TarArchive.write(Self.sampleEntries))
        #expect(try TarArchive.write([]) == [UInt8](repeating: 0, count: 1024))
        #expect(try TarArchive.read(TarArchive.write([])) == [])
    }

    @Test func longNameUsesThePrefixField() throws {
        let bytes = try TarArchive.write([.file(Self.longName, bytes: [1])])
        let name = String(decoding: bytes[0..<100].prefix { $0 != 0 }, as: UTF8.self)
        let prefix = String(decoding: bytes[345..<500].prefix { $0 != 0 }, as: UTF8.self)
        #expect(!prefix.isEmpty)
        #expect(prefix + "/" + name == Self.longName)
        #expect(Array(bytes[257..<263]) == Array("ustar\0".utf8))
    }

    @Test func oneMebibyteFileRoundTrips() throws {
        var rng = SplitMix64(seed: 11)
        let payload = (0..<(1 << 20)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let entries = [TarEntry.file("big.bin", bytes: payload)]
        let bytes = try TarArchive.write(entries)
        #expect(bytes.count == 512 + (1 << 20) + 1024)
        #expect(try TarArchive.read(bytes) == entries)
    }

    @Test func numbersTooLargeForOctalUseBase256() throws {
        let entries = [
            TarEntry(name: "old", modificationTime: -86_400, bytes: [1]),
            TarEntry(name: "far", modificationTime: 1 << 40, bytes: [2]),
        ]
        #expect(try TarArchive.read(TarArchive.write(entries)) == entries)
    }

    @Test func namesAreNormalisedWhenRead() throws {
        var bytes = try TarArchive.write([.directory("placeholder"), .file("x", bytes: [7])])
        TarBytes.set(Array("./".utf8), in: TarBytes.name, of: &bytes)
        TarBytes.set(Array("./a//./b".utf8), in: TarBytes.name, of: &bytes, header: 512)
        #expect(try TarArchive.read(bytes) == [.file("a/b", bytes: [7])])
    }

    @Test func oldStyleDirectoryHasTrailingSlashAndNulTypeflag() throws {
        var bytes = try TarArchive.write([.file("d", bytes: [])])
        bytes[TarBytes.typeflag] = 0
        TarBytes.set(Array("d/".utf8), in: TarBytes.name, of: &bytes)
        #expect(try TarArchive.read(bytes) == [TarEntry(name: "d", kind: .directory, mode: 0o644)])
    }

    // MARK: - Names

    @Test(arguments: ["../evil", "/etc/passwd", "a/../../b", "a/..", "", ".", "./", "a\0b"])
    func unsafeNamesAreRefusedWhenWritten(name: String) {
        #expect(throws: ArchiveError.badEntryName(name)) { try TarArchive.write([.file(name, bytes: [1])]) }
    }

    @Test(arguments: ["../evil", "/etc/passwd", "a/../../b", "x/../.."])
    func unsafeNamesAreRefusedWhenRead(name: String) throws {
        let bytes = try TarBytes.archive(named: name)
        #expect(throws: ArchiveError.badEntryName(name)) { try TarArchive.read(bytes) }
    }

    @Test func namesThatCannotBeSplitAreRefused() throws {
        let component = String(repeating: "n", count: 101)
        #expect(throws: ArchiveError.badEntryName(component)) { try TarArchive.write([.file(component, bytes: [])]) }
        let deep = String(repeating: "d", count: 160) + "/file"
        #expect(throws: ArchiveError.badEntryName(deep)) { try TarArchive.write([.file(deep, bytes: [])]) }
        let exactly100 = String(repeating: "e", count: 100)
        #expect(try TarArchive.read(TarArchive.write([.file(exactly100, bytes: [])])).map(\.name) == [exactly100])
    }

    @Test func directoryWithBytesIsRefused() {
        let entry = TarEntry(name: "d", kind: .directory, bytes: [1])
        #expect(throws: ArchiveError.unsupportedEntry(name: "d", reason: "a directory cannot carry 1 bytes")) {
            try TarArchive.write([entry])
        }
    }

    // MARK: - Corruption

    @Test func badChecksumNamesTheHeaderOffset() throws {
        var bytes = try TarArchive.write([.file("a", bytes: [1]), .file("b", bytes: [2])])
        bytes[1024 + 10] ^= 0x20
        #expect {
            try TarArchive.read(bytes)
        } throws: { error in
            guard case ArchiveError.corruptTar(offset: 1024, let reason) = error else { return false }
            return reason.contains("checksum")
        }
    }

    @Test func truncatedArchivesAreRefused() throws {
        let bytes = try TarArchive.write([.file("a", bytes: [UInt8](repeating: 9, count: 700))])
        // Cut inside the data, inside the end marker, inside a header, and an empty file.
        for cut in [600, 512 + 1024 + 100, 100, 0] {
            #expect(throws: ArchiveError.self, "cut at \(cut)") { try TarArchive.read(Array(bytes.prefix(cut))) }
        }
        #expect(throws: ArchiveError.corruptTar(offset: 1536, reason: "archive ends without an end-of-archive block (truncated?)")) {
            try TarArchive.read(Array(bytes.prefix(1536)))
        }
        // One zero block is enough, as GNU tar and Python accept.
        #expect(try TarArchive.read(Array(bytes.prefix(2048))).count == 1)
    }

    @Test func sizePastTheEndIsRefused() throws {
        var bytes = try TarArchive.write([.file("a", bytes: [1, 2, 3])])
        TarBytes.set(Array("77777777777".utf8), in: TarBytes.size, of: &bytes)
        #expect {
            try TarArchive.read(bytes)
        } throws: { error in
            guard case ArchiveError.corruptTar(offset: 0, let reason) = error else { return false }
            return reason.contains("past the end")
        }
    }

    @Test func nonOctalSizeIsRefused() throws {
        var bytes = try TarArchive.write([.file("a", bytes: [1])])
        TarBytes.set(Array("00000000009".utf8), in: TarBytes.size, of: &bytes)
        #expect(throws: ArchiveError.corruptTar(offset: 0, reason: "size field is not octal")) { try TarArchive.read(bytes) }
    }

    @Test func symbolicLinksAndOtherKindsAreRefused() throws {
        let link = try TarBytes.archive(named: "link", typeflag: UInt8(ascii: "2"), linkName: "/etc/passwd")
        #expect {
            try TarArchive.read(link)
        } throws: { error in
            guard case ArchiveError.unsupportedEntry(name: "link", let reason) = error else { return false }
            return reason.contains("symbolic link") && reason.contains("/etc/passwd")
        }
        for flag in "1346V".utf8 {
            let bytes = try TarBytes.archive(named: "odd", typeflag: flag)
            #expect(throws: ArchiveError.self) { try TarArchive.read(bytes) }
        }
    }

    // MARK: - Real tools

    @Test(.enabled(if: ExternalTool.hasPython)) func pythonTarfileReadsOurGzippedArchive() throws {
        let directory = try TemporaryDirectory()
        try directory.write(TarArchive.writeGzipped(Self.sampleEntries), to: "ours.tar.gz")
        let script = """
            import base64, json, sys, tarfile
            out = []
            with tarfile.open(sys.argv[1], "r:gz") as archive:
                for m in archive.getmembers():
                    item = {"name": m.name, "dir": m.isdir(), "file": m.isfile(), "mode": m.mode, "mtime": m.mtime}
                    if m.isfile():
                        item["data"] = base64.b64encode(archive.extractfile(m).read()).decode()
                    out.append(item)
            print(json.dumps(out))
            """
        let listing = try #require(try ExternalTool.pythonJSON(script, [directory.path + "/ours.tar.gz"]) as? [[String: Any]])
        try #require(listing.count == Self.sampleEntries.count)
        for (item, entry) in zip(listing, Self.sampleEntries) {
            #expect(item["name"] as? String == entry.name)
            #expect(item["dir"] as? Bool == (entry.kind == .directory))
            #expect(item["file"] as? Bool == (entry.kind == .file))
            #expect(item["mode"] as? Int == Int(entry.mode))
            #expect(item["mtime"] as? Int == entry.modificationTime)
            if entry.kind == .file {
                let data = try #require(Data(base64Encoded: item["data"] as? String ?? ""))
                #expect([UInt8](data) == entry.bytes, "contents of \(entry.name)")
            }
        }
    }

    @Test(.enabled(if: ExternalTool.hasGNUTar)) func gnuTarExtractsOurArchive() throws {
        let directory = try TemporaryDirectory()
        try directory.write(TarArchive.writeGzipped(Self.sampleEntries), to: "ours.tar.gz")
        try FileManager.default.createDirectory(atPath: directory.path + "/out", withIntermediateDirectories: false)
        try ExternalTool.check(["tar", "-xzf", "ours.tar.gz", "-C", "out"], in: directory.path)
        for entry in Self.sampleEntries where entry.kind == .file {
            #expect(try directory.read("out/" + entry.name) == entry.bytes, "contents of \(entry.name)")
        }
    }

    @Test(.enabled(if: ExternalTool.hasGNUTar), arguments: ["gnu", "pax", "ustar"])
    func weReadWhatGNUTarWrites(format: String) throws {
        let directory = try TemporaryDirectory()
        let deepName = String(repeating: "deep-folder-name/", count: 4) + String(repeating: "f", count: 90) + ".txt"
        let files: [String: [UInt8]] = [
            "data/a.txt": Array("alpha".utf8),
            "data/empty": [],
            "data/sub/" + deepName: Array("deep".utf8),
        ]
        for (name, bytes) in files { try directory.write(bytes, to: "root/" + name) }
        try FileManager.default.setAttributes([.posixPermissions: 0o640], ofItemAtPath: directory.path + "/root/data/a.txt")
        try ExternalTool.check(["tar", "--format=" + format, "-czf", "../out.tgz", "data"], in: directory.path + "/root")
        let raw = try Gzip.decompress(directory.read("out.tgz"))
        // The long name must have taken the path under test: an `L` entry, a pax record, or the prefix field.
        let marker = ["gnu": "././@LongLink", "pax": "path=data/sub/", "ustar": "data/sub/deep-folder-name/"][format] ?? ""
        #expect(String(decoding: raw, as: UTF8.self).contains(marker))
        let entries = try TarArchive.read(raw)
        var expectedDirectories: Set<String> = ["data", "data/sub"]
        var path = "data/sub"
        for component in deepName.split(separator: "/").dropLast() {
            path += "/" + component
            expectedDirectories.insert(path)
        }
        #expect(Set(entries.filter { $0.kind == .directory }.map(\.name)) == expectedDirectories)
        let readFiles = Dictionary(uniqueKeysWithValues: entries.filter { $0.kind == .file }.map { ($0.name, $0.bytes) })
        #expect(readFiles == files)
        #expect(entries.first { $0.name == "data/a.txt" }?.mode == 0o640)
        #expect(entries.allSatisfy { $0.modificationTime > 1_000_000_000 })
    }

    @Test(.enabled(if: ExternalTool.hasGNUTar)) func gnuTarOfDotGivesNormalisedNames() throws {
        let directory = try TemporaryDirectory()
        try directory.write(Array("x".utf8), to: "root/f.txt")
        try ExternalTool.check(["tar", "-cf", "../dot.tar", "."], in: directory.path + "/root")
        let entries = try TarArchive.read(directory.read("dot.tar"))
        #expect(entries.map(\.name) == ["f.txt"])
    }

    @Test(.enabled(if: ExternalTool.hasGNUTar)) func gnuTarSymbolicLinkIsRefused() throws {
        let directory = try TemporaryDirectory()
        try directory.write(Array("x".utf8), to: "root/f.txt")
        try FileManager.default.createSymbolicLink(atPath: directory.path + "/root/link", withDestinationPath: "/etc/passwd")
        try ExternalTool.check(["tar", "-cf", "../link.tar", "link"], in: directory.path + "/root")
        let bytes = try directory.read("link.tar")
        #expect {
            try TarArchive.read(bytes)
        } throws: { error in
            guard case ArchiveError.unsupportedEntry(name: "link", _) = error else { return false }
            return true
        }
    }

    @Test(.enabled(if: ExternalTool.hasPython), arguments: ["GNU_FORMAT", "PAX_FORMAT"])
    func weReadWhatPythonTarfileWrites(format: String) throws {
        let directory = try TemporaryDirectory()
        let script = """
            import io, sys, tarfile
            with tarfile.open(sys.argv[1], "w:gz", format=tarfile.\(format)) as archive:
                d = tarfile.TarInfo("d"); d.type = tarfile.DIRTYPE; d.mode = 0o750; d.mtime = 1234567890
                archive.addfile(d)
                for name, data in [("d/" + "x" * 150, b"long"), ("d/ünïcødé.txt", "é".encode()), ("d/e", b"")]:
                    info = tarfile.TarInfo(name); info.size = len(data); info.mode = 0o600; info.mtime = 1234567890
                    archive.addfile(info, io.BytesIO(data))
            """
        try ExternalTool.python(script, [directory.path + "/py.tgz"])
        let entries = try TarArchive.readGzipped(directory.read("py.tgz"))
        let expected: [TarEntry] = [
            TarEntry(name: "d", kind: .directory, mode: 0o750, modificationTime: 1_234_567_890),
            TarEntry(name: "d/" + String(repeating: "x", count: 150), mode: 0o600, modificationTime: 1_234_567_890, bytes: Array("long".utf8)),
            TarEntry(name: "d/ünïcødé.txt", mode: 0o600, modificationTime: 1_234_567_890, bytes: Array("é".utf8)),
            TarEntry(name: "d/e", mode: 0o600, modificationTime: 1_234_567_890),
        ]
        #expect(entries == expected)
    }

    @Test(.enabled(if: ExternalTool.hasPython)) func paxPathEscapingTheRootIsRefused() throws {
        let directory = try TemporaryDirectory()
        let script = """
            import io, sys, tarfile
            with tarfile.open(sys.argv[1], "w", format=tarfile.PAX_FORMAT) as archive:
                info = tarfile.TarInfo("safe"); info.size = 1
                info.pax_headers = {"path": "../../escaped"}
                archive.addfile(info, io.BytesIO(b"!"))
            """
        try ExternalTool.python(script, [directory.path + "/pax.tar"])
        let bytes = try directory.read("pax.tar")
        #expect(throws: ArchiveError.badEntryName("../../escaped")) { try TarArchive.read(bytes) }
    }

    // MARK: - Fuzz

    /// A valid archive of each flavour the reader handles: plain ustar (with a prefix split and
    /// a base-256 time), a pax `x` header, and a GNU `L` long name.
    static func fuzzCorpus(_ flavour: String) throws -> [UInt8] {
        switch flavour {
        case "pax":
            let body = " path=dir/from-pax.txt\n"
            let record = "\(body.utf8.count + 2)" + body
            var bytes = try TarArchive.write([.file("pax", bytes: Array(record.utf8)), .file("f", bytes: [5, 6])])
            bytes[TarBytes.typeflag] = UInt8(ascii: "x")
            TarBytes.fixChecksum(&bytes, header: 0)
            return bytes
        case "gnu":
            let longName = Array(("dir/" + String(repeating: "l", count: 120)).utf8) + [0]
            var bytes = try TarArchive.write([.file("long", bytes: longName), .file("f", bytes: [5, 6])])
            bytes[TarBytes.typeflag] = UInt8(ascii: "L")
            TarBytes.fixChecksum(&bytes, header: 0)
            return bytes
        default:
            return try TarArchive.write(sampleEntries.filter { $0.bytes.count < 100 } + [
                TarEntry(name: "m", modificationTime: -5, bytes: [3]),
            ])
        }
    }

    @Test func fuzzCorpusIsValid() throws {
        #expect(try TarArchive.read(Self.fuzzCorpus("pax")).map(\.name) == ["dir/from-pax.txt"])
        #expect(try TarArchive.read(Self.fuzzCorpus("gnu")).map(\.name) == ["dir/" + String(repeating: "l", count: 120)])
        #expect(try TarArchive.read(Self.fuzzCorpus("ustar")).count == 7)
    }

    @Test(arguments: ["ustar", "pax", "gnu"]) func fuzzedArchivesDecodeOrThrow(flavour: String) throws {
        let valid = try Self.fuzzCorpus(flavour)
        let mutator = ByteMutator(interesting: ByteMutator.containerSyntax)
        let outcome = mutator.fuzz("tar-" + flavour, valid: valid, iterations: 3000, adjust: { bytes, rng in
            // Half the cases repair checksums so that mutations reach the field parsers. Only
            // blocks with a name or typeflag are touched, so end-of-archive blocks stay zero.
            guard Bool.random(using: &rng) else { return }
            for header in stride(from: 0, to: bytes.count - 511, by: 512)
            where bytes[header] != 0 || bytes[header + 156] != 0 {
                TarBytes.fixChecksum(&bytes, header: header)
            }
        }) { seed, bytes throws(ArchiveError) in
            for entry in try TarArchive.read(bytes) {
                let components = entry.name.split(separator: "/", omittingEmptySubsequences: false)
                #expect(!entry.name.hasPrefix("/") && !components.contains("..") && !components.contains(""),
                        "seed \(seed): unsafe name '\(entry.name)' decoded")
                #expect(entry.kind == .file || entry.bytes.isEmpty, "seed \(seed): directory with bytes")
            }
        }
        #expect(outcome.decoded > 0)
        #expect(outcome.rejected > 0)
    }
}
