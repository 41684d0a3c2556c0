// Tests of the safetensors codec: round trips, layout, every rejection, Python interop, fuzzing.
import ForgeArchive
import ForgeTestSupport
import Foundation
import Testing

/// Builds safetensors files by hand, header text and all, to reach every decoder check.
enum SafetensorsBytes {
    /// An 8-byte little-endian length, `header` as UTF-8, then `data`.
    static func file(header: String, data: [UInt8] = []) -> [UInt8] {
        let headerBytes = Array(header.utf8)
        return withUnsafeBytes(of: UInt64(headerBytes.count).littleEndian) { Array($0) } + headerBytes + data
    }

    /// A file whose header is one F32 tensor entry `x` with the given shape and offsets.
    static func oneTensor(shape: String, offsets: String, dtype: String = "F32", data: [UInt8]) -> [UInt8] {
        file(header: "{\"x\":{\"dtype\":\"\(dtype)\",\"shape\":\(shape),\"data_offsets\":\(offsets)}}", data: data)
    }
}

@Suite struct SafetensorsFileTests {
    static var sample: SafetensorsFile {
        SafetensorsFile(
            tensors: [
                SafeTensor(name: "layer.0.weight", shape: [2, 3], floats: [1, -2, 3.5, 0, .infinity, -0.25]),
                SafeTensor(name: "scalar", shape: [], floats: [42]),
                SafeTensor(name: "empty", shape: [0, 4], floats: []),
                SafeTensor(name: "steps", dtype: .i64, shape: [2], bytes: [1, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
                SafeTensor(name: "mask", dtype: .bool, shape: [3], bytes: [1, 0, 1]),
                SafeTensor(name: "half \"quoted\" ü", dtype: .f16, shape: [1], bytes: [0x00, 0x3c]),
                SafeTensor(name: "bf", dtype: .bf16, shape: [2], bytes: [0x80, 0x3f, 0x00, 0xc0]),
            ],
            metadata: ["format": "pt", "step": "1200", "note": "line\nbreak \"quoted\" ∑"]
        )
    }

    // MARK: - Round trips and layout

    @Test func roundTripKeepsTensorsOrderAndMetadata() throws {
        let bytes = try Self.sample.encoded()
        #expect(try SafetensorsFile(decoding: bytes) == Self.sample)
        #expect(try Self.sample.encoded() == bytes)
    }

    @Test func zeroByteTensorsKeepTheirOrder() throws {
        let file = SafetensorsFile(tensors: [
            SafeTensor(name: "z2", shape: [0], floats: []),
            SafeTensor(name: "a", shape: [1], floats: [1]),
            SafeTensor(name: "z1", shape: [3, 0], floats: []),
            SafeTensor(name: "z0", shape: [0], floats: []),
        ])
        #expect(try SafetensorsFile(decoding: file.encoded()) == file)
        #expect(try SafetensorsFile(decoding: SafetensorsFile().encoded()) == SafetensorsFile())
    }

    @Test func headerIsPaddedSoDataStartsOnEightBytes() throws {
        for nameLength in 1...16 {
            let file = SafetensorsFile(tensors: [SafeTensor(name: String(repeating: "n", count: nameLength), shape: [1], floats: [1])])
            let bytes = try file.encoded()
            let headerLength = bytes[0..<8].reversed().reduce(0) { $0 << 8 | Int($1) }
            #expect((8 + headerLength) % 8 == 0)
            #expect(bytes.count == 8 + headerLength + 4)
            #expect(Array(bytes.suffix(4)) == [0, 0, 0x80, 0x3f])
            #expect(bytes[8] == UInt8(ascii: "{"))
        }
    }

    @Test func lookupByName() throws {
        let file = Self.sample
        #expect(file["scalar"]?.floats == [42])
        #expect(file["nope"] == nil)
        #expect(try file.tensor(named: "mask").bytes == [1, 0, 1])
        #expect(throws: ArchiveError.missing("nope")) { try file.tensor(named: "nope") }
    }

    // MARK: - Writer rejections

    @Test func writerRefusesBadTensors() {
        let good = SafeTensor(name: "g", shape: [1], floats: [1])
        let cases: [(SafeTensor, String)] = [
            (SafeTensor(name: "", dtype: .u8, shape: [1], bytes: [1]), "the name is empty"),
            (SafeTensor(name: "__metadata__", dtype: .u8, shape: [1], bytes: [1]), "reserved"),
            (SafeTensor(name: "__metadata__x", dtype: .u8, shape: [1], bytes: [1]), "reserved"),
            (SafeTensor(name: "short", dtype: .f32, shape: [2, 2], bytes: [0, 0, 0]), "needs 4 elements"),
            (SafeTensor(name: "negative", dtype: .u8, shape: [-1], bytes: []), "negative"),
            (SafeTensor(name: "g", dtype: .u8, shape: [1], bytes: [1]), "twice"),
        ]
        for (tensor, expected) in cases {
            #expect {
                try SafetensorsFile(tensors: [good, tensor]).encoded()
            } throws: { error in
                guard case ArchiveError.invalidTensor(let name, let reason) = error else { return false }
                return name == tensor.name && reason.contains(expected)
            }
        }
    }

    // MARK: - Decoder rejections

    static func expectCorrupt(_ bytes: [UInt8], _ expected: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(sourceLocation: sourceLocation) {
            try SafetensorsFile(decoding: bytes)
        } throws: { error in
            guard case ArchiveError.corruptSafetensors(let reason) = error else { return false }
            return expected.isEmpty || reason.contains(expected)
        }
    }

    @Test func truncatedFilesAreRefused() throws {
        let bytes = try Self.sample.encoded()
        Self.expectCorrupt([], "shorter than the 8-byte header length")
        Self.expectCorrupt(Array(bytes.prefix(7)), "shorter than the 8-byte header length")
        Self.expectCorrupt(Array(bytes.prefix(40)), "runs past the end")
        Self.expectCorrupt(Array(bytes.dropLast(1)), "")
        Self.expectCorrupt(bytes + [0], "belong to no tensor")
    }

    @Test func hugeHeaderLengthIsRefused() {
        var bytes = SafetensorsBytes.file(header: "{}")
        bytes.replaceSubrange(0..<8, with: [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
        Self.expectCorrupt(bytes, "exceeds the 100000000-byte limit")
        bytes.replaceSubrange(0..<8, with: [0x00, 0xe1, 0xf5, 0x05, 0, 0, 0, 0])
        Self.expectCorrupt(bytes, "runs past the end")
    }

    @Test func badJSONIsRefused() {
        for header in ["", "{", "{\"a\":}", "[]", "\"text\"", "{} x", "{\"a\":1,}", "{'a':1}", "{\"a\":{\"dtype\":\"F32\"", "nul"] {
            Self.expectCorrupt(SafetensorsBytes.file(header: header), "")
        }
        Self.expectCorrupt(SafetensorsBytes.file(header: "[]"), "header is not a JSON object")
    }

    @Test func malformedEntriesAreRefused() {
        let four: [UInt8] = [0, 0, 0x80, 0x3f]
        Self.expectCorrupt(SafetensorsBytes.oneTensor(shape: "[1]", offsets: "[0,4]", dtype: "Q4", data: four), "unknown dtype 'Q4'")
        Self.expectCorrupt(SafetensorsBytes.oneTensor(shape: "[2]", offsets: "[0,4]", data: four), "needs 2 elements")
        Self.expectCorrupt(SafetensorsBytes.oneTensor(shape: "[-1]", offsets: "[0,4]", data: four), "non-negative integer")
        Self.expectCorrupt(SafetensorsBytes.oneTensor(shape: "[1.0]", offsets: "[0,4]", data: four), "non-negative integer")
        Self.expectCorrupt(SafetensorsBytes.oneTensor(shape: "1", offsets: "[0,4]", data: four), "non-array shape")
        Self.expectCorrupt(SafetensorsBytes.oneTensor(shape: "[1]", offsets: "[0]", data: four), "pair of non-negative integers")
        Self.expectCorrupt(SafetensorsBytes.oneTensor(shape: "[1]", offsets: "[4,0]", data: four), "outside")
        Self.expectCorrupt(SafetensorsBytes.oneTensor(shape: "[1]", offsets: "[4,8]", data: four), "outside")
        Self.expectCorrupt(SafetensorsBytes.oneTensor(shape: "[1]", offsets: "[0,18446744073709551615]", data: four), "pair")
        Self.expectCorrupt(
            SafetensorsBytes.oneTensor(shape: "[4611686018427387904,4]", offsets: "[0,4]", data: four), "overflows"
        )
        Self.expectCorrupt(SafetensorsBytes.file(header: "{\"x\":{\"shape\":[],\"data_offsets\":[0,0]}}"), "missing or non-string dtype")
        Self.expectCorrupt(SafetensorsBytes.file(header: "{\"x\":[]}"), "not a JSON object")
        Self.expectCorrupt(SafetensorsBytes.file(header: "{\"\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}"), "empty or reserved")
    }

    @Test func offsetsMustTileTheBufferExactly() {
        func two(_ a: String, _ b: String, bytes: Int) -> [UInt8] {
            SafetensorsBytes.file(
                header: "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":\(a)},\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":\(b)}}",
                data: [UInt8](repeating: 7, count: bytes)
            )
        }
        Self.expectCorrupt(two("[0,2]", "[1,3]", bytes: 3), "overlaps")
        Self.expectCorrupt(two("[0,2]", "[0,2]", bytes: 2), "overlaps")
        Self.expectCorrupt(two("[0,2]", "[3,5]", bytes: 5), "leaves a hole")
        Self.expectCorrupt(two("[2,4]", "[4,6]", bytes: 6), "leaves a hole")
        Self.expectCorrupt(two("[0,2]", "[2,4]", bytes: 5), "1 bytes at the end")
        #expect(throws: Never.self) { try SafetensorsFile(decoding: two("[2,4]", "[0,2]", bytes: 4)) }
    }

    @Test func metadataMustBeStrings() throws {
        Self.expectCorrupt(SafetensorsBytes.file(header: "{\"__metadata__\":{\"a\":1}}"), "is not a string")
        Self.expectCorrupt(SafetensorsBytes.file(header: "{\"__metadata__\":[]}"), "is not a JSON object")
        #expect(try SafetensorsFile(decoding: SafetensorsBytes.file(header: " {\"__metadata__\":{\"a\":\"b\"}}   ")).metadata == ["a": "b"])
    }

    // MARK: - Python safetensors

    @Test(.enabled(if: ExternalTool.hasSafetensors)) func pythonLoadsOurFile() throws {
        let directory = try TemporaryDirectory()
        let file = SafetensorsFile(
            tensors: Self.sample.tensors.filter { $0.dtype != .bf16 },
            metadata: Self.sample.metadata
        )
        try directory.write(file.encoded(), to: "ours.safetensors")
        let script = """
            import json, sys, numpy as np
            from safetensors import safe_open
            from safetensors.numpy import load_file
            tensors = load_file(sys.argv[1])
            with safe_open(sys.argv[1], framework="np") as f:
                metadata = f.metadata()
            print(json.dumps({"metadata": metadata, "tensors": {
                k: {"dtype": str(v.dtype), "shape": list(v.shape), "values": [repr(x) for x in v.astype(np.float64).flatten().tolist()]}
                for k, v in tensors.items()}}))
            """
        let result = try #require(try ExternalTool.pythonJSON(script, [directory.path + "/ours.safetensors"]) as? [String: Any])
        #expect(result["metadata"] as? [String: String] == file.metadata)
        let tensors = try #require(result["tensors"] as? [String: [String: Any]])
        #expect(Set(tensors.keys) == Set(file.tensors.map(\.name)))
        let numpyType: [SafeTensorDType: String] = [.f32: "float32", .i64: "int64", .bool: "bool", .f16: "float16"]
        let expectedValues: [String: [String]] = [
            "layer.0.weight": ["1.0", "-2.0", "3.5", "0.0", "inf", "-0.25"],
            "scalar": ["42.0"], "empty": [], "steps": ["1.0", "-1.0"], "mask": ["1.0", "0.0", "1.0"],
            "half \"quoted\" ü": ["1.0"],
        ]
        for tensor in file.tensors {
            let loaded = try #require(tensors[tensor.name])
            #expect(loaded["dtype"] as? String == numpyType[tensor.dtype], "dtype of \(tensor.name)")
            #expect(loaded["shape"] as? [Int] == tensor.shape, "shape of \(tensor.name)")
            #expect(loaded["values"] as? [String] == expectedValues[tensor.name], "values of \(tensor.name)")
        }
    }

    @Test(.enabled(if: ExternalTool.hasSafetensors)) func weLoadPythonsFile() throws {
        let directory = try TemporaryDirectory()
        let script = """
            import sys, numpy as np
            from safetensors.numpy import save_file
            save_file({
                "w": (np.arange(6, dtype=np.float32) * 0.5 - 1).reshape(2, 3),
                "b": np.array([-1, 2], dtype=np.int64),
                "s": np.array(3.5, dtype=np.float32),
                "e": np.zeros((0, 4), dtype=np.float32),
                "m": np.array([True, False, True]),
                "u": np.array([[1, 2], [3, 255]], dtype=np.uint8),
            }, sys.argv[1], metadata={"format": "np", "step": "7"})
            """
        try ExternalTool.python(script, [directory.path + "/theirs.safetensors"])
        let file = try SafetensorsFile(decoding: directory.read("theirs.safetensors"))
        #expect(file.metadata == ["format": "np", "step": "7"])
        #expect(file.tensors.count == 6)
        let w = try file.tensor(named: "w")
        #expect(w.shape == [2, 3])
        #expect(try w.floatValues() == [-1, -0.5, 0, 0.5, 1, 1.5])
        #expect(try file.tensor(named: "s").shape == [])
        #expect(try file.tensor(named: "s").floatValues() == [3.5])
        #expect(try file.tensor(named: "e").shape == [0, 4])
        #expect(try file.tensor(named: "e").bytes.isEmpty)
        let b = try file.tensor(named: "b")
        #expect(b.dtype == .i64)
        #expect(b.bytes == [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 0, 0, 0])
        #expect(try file.tensor(named: "m").dtype == .bool)
        #expect(try file.tensor(named: "m").bytes == [1, 0, 1])
        #expect(try file.tensor(named: "u").bytes == [1, 2, 3, 255])
        // Re-encoding in our layout still decodes to the same tensors.
        #expect(try SafetensorsFile(decoding: file.encoded()) == file)
    }

    // MARK: - Fuzz

    @Test func fuzzedFilesDecodeOrThrow() throws {
        let valid = try SafetensorsFile(
            tensors: Array(Self.sample.tensors.prefix(5)),
            metadata: ["format": "pt", "escaped": "a\\u00e9\"b"]
        ).encoded()
        let mutator = ByteMutator(interesting: ByteMutator.containerSyntax)
        let outcome = mutator.fuzz("safetensors", valid: valid, iterations: 4000) { seed, bytes throws(ArchiveError) in
            let file = try SafetensorsFile(decoding: bytes)
            var total = 0
            for tensor in file.tensors {
                let expected = (tensor.elementCount ?? -1) * tensor.dtype.byteCount
                #expect(tensor.bytes.count == expected, "seed \(seed): \(tensor.name) has the wrong byte count")
                total += tensor.bytes.count
            }
            let headerLength = bytes[0..<8].reversed().reduce(0) { $0 << 8 | Int($1) }
            #expect(8 + headerLength + total == bytes.count, "seed \(seed): buffer not covered exactly")
        }
        #expect(outcome.decoded > 0)
        #expect(outcome.rejected > 0)
    }
}
