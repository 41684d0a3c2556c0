// Tests of whole-buffer gzip: round trips, corruption, multi-member streams, Python interop.
import ForgeArchive
import ForgeTestSupport
import Foundation
import Testing

@Suite struct GzipTests {
    static func randomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
        var rng = SplitMix64(seed: seed)
        return (0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) }
    }

    static let text = Array(String(repeating: "forge gzip round trip. ", count: 400).utf8)

    @Test(arguments: [0, 1, 100, 1 << 20])
    func roundTrip(byteCount: Int) throws {
        let bytes = Self.randomBytes(byteCount, seed: UInt64(byteCount))
        let compressed = try Gzip.compress(bytes)
        #expect(Gzip.isGzip(compressed))
        #expect(try Gzip.decompress(compressed) == bytes)
    }

    @Test(arguments: [Int32(1), 6, 9])
    func levelsRoundTripAndCompressText(level: Int32) throws {
        let compressed = try Gzip.compress(Self.text, level: level)
        #expect(compressed.count < Self.text.count / 10)
        #expect(try Gzip.decompress(compressed) == Self.text)
    }

    @Test func notGzipIsRefused() {
        #expect(!Gzip.isGzip(Array("plain".utf8)))
        #expect(throws: ArchiveError.corruptGzip(reason: "missing gzip magic bytes 1f 8b")) {
            try Gzip.decompress(Array("plain text".utf8))
        }
        #expect(throws: ArchiveError.self) { try Gzip.decompress([]) }
        #expect(throws: ArchiveError.self) { try Gzip.decompress([0x1f]) }
    }

    @Test func truncatedStreamsAreRefused() throws {
        let compressed = try Gzip.compress(Self.text)
        for cut in [2, 10, compressed.count / 2, compressed.count - 4, compressed.count - 1] {
            #expect(throws: ArchiveError.self, "cut at \(cut)") { try Gzip.decompress(Array(compressed.prefix(cut))) }
        }
    }

    @Test func corruptedBytesAreRefused() throws {
        let compressed = try Gzip.compress(Self.text)
        var badPayload = compressed
        badPayload[compressed.count / 2] ^= 0x55
        #expect(throws: ArchiveError.self) { try Gzip.decompress(badPayload) }
        var badCRC = compressed
        badCRC[compressed.count - 6] ^= 0x01
        #expect(throws: ArchiveError.self) { try Gzip.decompress(badCRC) }
        var badLength = compressed
        badLength[compressed.count - 1] ^= 0x01
        #expect(throws: ArchiveError.self) { try Gzip.decompress(badLength) }
    }

    @Test func trailingGarbageIsRefusedButZeroPaddingIsNot() throws {
        let compressed = try Gzip.compress(Self.text)
        #expect(throws: ArchiveError.corruptGzip(reason: "3 bytes of garbage after the gzip stream")) {
            try Gzip.decompress(compressed + [1, 2, 3])
        }
        #expect(try Gzip.decompress(compressed + [0, 0, 0, 0]) == Self.text)
    }

    @Test func concatenatedMembersReadAsOne() throws {
        let first = Array("first member\n".utf8)
        let second = Self.randomBytes(5000, seed: 2)
        let joined = try Gzip.compress(first) + Gzip.compress([]) + Gzip.compress(second)
        #expect(try Gzip.decompress(joined) == first + second)
        #expect(throws: ArchiveError.self) { try Gzip.decompress(Array(joined.dropLast(3))) }
    }

    @Test(.enabled(if: ExternalTool.hasPython)) func pythonReadsOursAndWeReadPythons() throws {
        let directory = try TemporaryDirectory()
        let payload = Self.text + Self.randomBytes(3000, seed: 3)
        try directory.write(Gzip.compress(payload), to: "ours.gz")
        let script = """
            import gzip, sys
            data = gzip.decompress(open(sys.argv[1], "rb").read())
            open(sys.argv[2], "wb").write(data)
            open(sys.argv[3], "wb").write(gzip.compress(data, mtime=0) + gzip.compress(b"tail", mtime=0))
            """
        let path = directory.path
        try ExternalTool.python(script, [path + "/ours.gz", path + "/plain", path + "/theirs.gz"])
        #expect(try directory.read("plain") == payload)
        #expect(try Gzip.decompress(directory.read("theirs.gz")) == payload + Array("tail".utf8))
    }

    @Test func fuzzedStreamsDecodeOrThrow() throws {
        let valid = try Gzip.compress(Array("short".utf8)) + Gzip.compress(Self.text)
        let mutator = ByteMutator(interesting: ByteMutator.containerSyntax)
        let outcome = mutator.fuzz("gzip", valid: valid, iterations: 3000) { _, bytes throws(ArchiveError) in
            _ = try Gzip.decompress(bytes)
        }
        #expect(outcome.decoded > 0)
        #expect(outcome.rejected > 0)
    }
}
