// The data-plane frame header: exact layout, every rejection, and 200,000 fuzzed frames.
import ForgeTestSupport
import ForgeWire
import Testing

@Suite struct FrameHeaderTests {
    let header = FrameHeader(kind: .tensorChunk, elementType: .float32, collectiveID: 0x0102_0304_0506_0708, step: 42,
                             chunkIndex: 3, chunkCount: 8, sourceRank: 5, payloadByteCount: 4096)

    @Test func layoutIsLittleEndianAndFixed() throws {
        let bytes = header.encoded()
        #expect(bytes.count == FrameHeader.byteCount)
        #expect(Array(bytes[0..<8]) == [0x46, 0x47, 0x57, 0, 1, 1, 1, 0])
        #expect(Array(bytes[8..<16]) == [8, 7, 6, 5, 4, 3, 2, 1])
        #expect(Array(bytes[16..<24]) == [42, 0, 0, 0, 0, 0, 0, 0])
        #expect(Array(bytes[36..<40]) == [0, 16, 0, 0])
        #expect(try FrameHeader(decoding: bytes) == header)
    }

    @Test func everyKindAndTypeRoundTrips() throws {
        for kind in MessageKind.allCases {
            for type in ElementType.allCases {
                let h = FrameHeader(kind: kind, elementType: type, collectiveID: 1, step: 2, chunkIndex: 0, chunkCount: 1,
                                    sourceRank: 3, payloadByteCount: UInt32(type.size * 10))
                #expect(try FrameHeader(decoding: h.encoded()) == h)
            }
        }
    }

    @Test func malformedHeadersAreRejectedPrecisely() throws {
        func mutated(_ change: (inout [UInt8]) -> Void) -> [UInt8] {
            var bytes = header.encoded()
            change(&bytes)
            return bytes
        }
        let cases: [([UInt8], WireDecodingError)] = [
            (Array(header.encoded()[0..<39]), .shortHeader(byteCount: 39, needed: 40)),
            ([], .shortHeader(byteCount: 0, needed: 40)),
            (mutated { $0[0] = 0x47 }, .badMagic([0x47, 0x47, 0x57, 0])),
            (mutated { $0[4] = 2 }, .unsupportedVersion(2, supported: 1)),
            (mutated { $0[5] = 99 }, .unknownKind(99)),
            (mutated { $0[6] = 0 }, .unknownElementType(0)),
            (mutated { $0[7] = 1 }, .reservedNotZero),
            (mutated { $0.append(0) }, .lengthMismatch(declared: 40, actual: 41)),
            (mutated { $0[24] = 8 }, .chunkOutOfRange(index: 8, count: 8)),
            (mutated { $0[36] = 2 }, .partialElement(byteCount: 4098, elementSize: 4)),
        ]
        for (bytes, expected) in cases {
            #expect(throws: expected) { try FrameHeader(decoding: bytes) }
        }
        #expect(throws: WireDecodingError.lengthMismatch(declared: 4096, actual: 4092)) {
            try header.validate(payloadByteCount: 4092)
        }
        try header.validate(payloadByteCount: 4096)
    }

    @Test func fuzzedFramesDecodeOrThrowNeverCrash() throws {
        // 100,000 mutations of a valid header (every decoded one must re-encode to itself) …
        let outcome = ByteMutator().fuzz("frame header", valid: header.encoded(), iterations: 100_000) { seed, bytes throws(WireDecodingError) in
            let decoded = try FrameHeader(decoding: bytes)
            #expect(decoded.encoded() == bytes, "seed \(seed): decoded header does not re-encode to its bytes")
        }
        #expect(outcome.decoded + outcome.rejected == 100_000)
        #expect(outcome.rejected > 0 && outcome.decoded > 0)
        // … and 100,000 random byte strings of random length.
        var random = SplitMix64(seed: 7)
        var accepted = 0
        for _ in 0..<100_000 {
            let bytes = (0..<Int.random(in: 0...48, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
            if (try? FrameHeader(decoding: bytes)) != nil { accepted += 1 }
        }
        #expect(accepted == 0, "random bytes passed the magic and version checks")
    }
}
