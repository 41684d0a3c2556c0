// Tests of the header JSON parser, reached through safetensors decoding (the parser is internal).
import ForgeArchive
import Testing

@Suite struct JSONParserTests {
    /// The metadata of a file whose header is `{"__metadata__": <object>}`.
    static func metadata(_ object: String) throws -> [String: String] {
        try SafetensorsFile(decoding: SafetensorsBytes.file(header: "{\"__metadata__\":" + object + "}")).metadata
    }

    static func isRejected(_ header: String) -> Bool {
        (try? SafetensorsFile(decoding: SafetensorsBytes.file(header: header))) == nil
    }

    @Test func escapesDecode() throws {
        let decoded = try Self.metadata(#"{"k":"q\" s\\ sl\/ \b\f\n\r\t \u00e9 \u20AC \ud83d\ude00"}"#)
        #expect(decoded == ["k": "q\" s\\ sl/ \u{8}\u{c}\n\r\t é € 😀"])
        #expect(try Self.metadata(#"{"":""}"#) == ["": ""])
        #expect(try Self.metadata("\t{ \"a\" :\n\"b\" ,\"c\":\"d\" }\r") == ["a": "b", "c": "d"])
    }

    @Test func ourWriterRoundTripsAwkwardStrings() throws {
        let awkward = "ctl\u{1}\u{1f} quote\" slash\\ tab\t é 😀"
        let file = SafetensorsFile(tensors: [SafeTensor(name: awkward, dtype: .u8, shape: [1], bytes: [1])], metadata: [awkward: awkward])
        #expect(try SafetensorsFile(decoding: file.encoded()) == file)
    }

    @Test(arguments: [
        #"{"k":"\ud83d"}"#, #"{"k":"\ude00"}"#, #"{"k":"\ud83dx"}"#, #"{"k":"\u12"}"#, #"{"k":"\q"}"#,
        "{\"k\":\"raw\ttab\"}", "{\"k\":\"unterminated}", #"{"k":"v","k":"w"}"#,
    ])
    func badStringsAndDuplicateKeysAreRejected(object: String) {
        #expect(Self.isRejected("{\"__metadata__\":" + object + "}"))
    }

    @Test func invalidUTF8IsRejected() {
        var bytes = SafetensorsBytes.file(header: #"{"__metadata__":{"k":"ab"}}"#)
        bytes[8 + 23] = 0xff
        #expect((try? SafetensorsFile(decoding: bytes)) == nil)
    }

    @Test(arguments: ["01", "-", "1.", ".5", "1e", "+1", "0x10", "1e+", "--1", "Infinity", "NaN"])
    func malformedNumbersAreRejected(number: String) {
        #expect(Self.isRejected("{\"x\":{\"dtype\":\"U8\",\"shape\":[\(number)],\"data_offsets\":[0,0]}}"))
    }

    @Test func wellFormedButNonIntegerNumbersParseThenFailTheShapeCheck() {
        for number in ["1.5", "1e2", "-0.0", "2E-1"] {
            let bytes = SafetensorsBytes.file(header: "{\"x\":{\"dtype\":\"U8\",\"shape\":[\(number)],\"data_offsets\":[0,0]}}")
            #expect {
                try SafetensorsFile(decoding: bytes)
            } throws: { error in
                guard case ArchiveError.corruptSafetensors(let reason) = error else { return false }
                return reason.contains("not a non-negative integer")
            }
        }
    }

    @Test func deepNestingIsRejectedNotRecursedInto() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(Self.isRejected("{\"x\":" + deep + "}"))
        let ok = String(repeating: "[", count: 30) + String(repeating: "]", count: 30)
        let header = "{\"x\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"extra\":\(ok)}}"
        #expect(throws: Never.self) { try SafetensorsFile(decoding: SafetensorsBytes.file(header: header, data: [1])) }
    }

    @Test func literalsParse() {
        let header = "{\"x\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"t\":true,\"f\":false,\"n\":null}}"
        #expect((try? SafetensorsFile(decoding: SafetensorsBytes.file(header: header, data: [1]))) != nil)
        #expect(Self.isRejected("{\"__metadata__\":{},\"t\":tru}"))
    }
}
