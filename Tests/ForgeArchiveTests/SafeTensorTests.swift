// Tests of one tensor's value type: float conversion, byte order, element counts.
import ForgeArchive
import Testing

@Suite struct SafeTensorTests {
    @Test func floatsAreLittleEndianF32() throws {
        let tensor = SafeTensor(name: "t", shape: [3], floats: [1, -2, 0.5])
        #expect(tensor.dtype == .f32)
        #expect(tensor.bytes == [0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0, 0, 0, 0, 0x3f])
        #expect(tensor.floats == [1, -2, 0.5])
        #expect(try tensor.floatValues() == [1, -2, 0.5])
    }

    @Test func nanAndSignedZeroSurviveBitForBit() throws {
        let values: [Float] = [.nan, -0.0, .leastNonzeroMagnitude, .greatestFiniteMagnitude]
        let back = try SafeTensor(name: "t", shape: [2, 2], floats: values).floatValues()
        #expect(back.map(\.bitPattern) == values.map(\.bitPattern))
    }

    @Test func floatValuesRefusesOtherDTypesAndRaggedBytes() {
        let ints = SafeTensor(name: "i", dtype: .i32, shape: [1], bytes: [1, 0, 0, 0])
        #expect(ints.floats == nil)
        #expect(throws: ArchiveError.invalidTensor(name: "i", reason: "dtype is I32, not F32")) { try ints.floatValues() }
        let ragged = SafeTensor(name: "r", dtype: .f32, shape: [1], bytes: [1, 2, 3])
        #expect(ragged.floats == nil)
        #expect(throws: ArchiveError.self) { try ragged.floatValues() }
    }

    @Test func elementCounts() {
        #expect(SafeTensor(name: "s", shape: [], floats: [7]).elementCount == 1)
        #expect(SafeTensor(name: "z", shape: [3, 0, 2], floats: []).elementCount == 0)
        #expect(SafeTensor(name: "m", dtype: .u8, shape: [2, 3, 4], bytes: []).elementCount == 24)
        #expect(SafeTensor(name: "n", dtype: .u8, shape: [2, -1], bytes: []).elementCount == nil)
        #expect(SafeTensor(name: "o", dtype: .u8, shape: [1 << 32, 1 << 32], bytes: []).elementCount == nil)
    }
}
