// Tests of the safetensors dtype table.
import ForgeArchive
import Testing

@Suite struct SafeTensorDTypeTests {
    @Test func namesAndSizesMatchTheFormat() {
        let expected: [String: Int] = [
            "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
            "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1,
        ]
        #expect(SafeTensorDType.allCases.count == expected.count)
        for dtype in SafeTensorDType.allCases {
            #expect(expected[dtype.rawValue] == dtype.byteCount, "\(dtype.rawValue)")
        }
        #expect(SafeTensorDType(rawValue: "f32") == nil)
    }
}
