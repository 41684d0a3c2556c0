// Tests of IDXReader: every element type, header and size validation with exact messages,
// image/label pairing, the real Fashion-MNIST test files when installed, and a fuzz run.
import ForgeData
import ForgeTestSupport
import Foundation
import Testing

@Suite struct IDXReaderTests {
    /// An IDX file of `type` with `dims` and the big-endian `payload`.
    private func idx(_ type: UInt8, _ dims: [UInt32], _ payload: [UInt8]) -> [UInt8] {
        var bytes: [UInt8] = [0, 0, type, UInt8(dims.count)]
        for dim in dims { bytes += withUnsafeBytes(of: dim.bigEndian, Array.init) }
        return bytes + payload
    }

    private func error(_ bytes: [UInt8]) -> DataError? {
        do {
            _ = try IDXReader.read(bytes: bytes, name: "x.idx")
            return nil
        } catch {
            return error
        }
    }

    @Test func readsEveryElementType() throws {
        let u8 = try IDXReader.read(bytes: idx(0x08, [2, 2], [0, 1, 128, 255]), name: "u8")
        #expect(u8 == IDXArray(dims: [2, 2], elementType: .unsignedByte, values: [0, 1, 128, 255]))
        let i8 = try IDXReader.read(bytes: idx(0x09, [3], [0x80, 0xFF, 0x7F]), name: "i8")
        #expect(i8.values == [-128, -1, 127])
        let i16 = try IDXReader.read(bytes: idx(0x0B, [2], [0x80, 0x00, 0x01, 0x02]), name: "i16")
        #expect(i16.values == [-32768, 258])
        let i32 = try IDXReader.read(bytes: idx(0x0C, [1], [0xFF, 0xFF, 0xFF, 0xFE]), name: "i32")
        #expect(i32.values == [-2])
        let f32 = try IDXReader.read(bytes: idx(0x0D, [1], withUnsafeBytes(of: Float(0.1).bitPattern.bigEndian, Array.init)),
                                     name: "f32")
        #expect(f32.values == [0.1])
        let f64 = try IDXReader.read(bytes: idx(0x0E, [1], withUnsafeBytes(of: (-2.5).bitPattern.bigEndian, Array.init)),
                                     name: "f64")
        #expect(f64 == IDXArray(dims: [1], elementType: .float64, values: [-2.5]))
    }

    @Test func rejectsBadHeaders() {
        #expect(error([0, 0, 8]) == .corruptFile(file: "x.idx", reason: "3 bytes is too short for the 4-byte IDX magic"))
        let magic = error([0x01, 0x00, 0x08, 0x01, 0, 0, 0, 1, 7])
        #expect(magic == .corruptFile(file: "x.idx", reason: "magic 01 00 08 01 does not start with 00 00; this is not an IDX file"))
        #expect(magic?.description == "'x.idx' is corrupt: magic 01 00 08 01 does not start with 00 00; this is not an IDX file")
        #expect(error(idx(0x0A, [1], [7])) == .corruptFile(file: "x.idx", reason:
            "unknown IDX element type 0x0A in magic 00 00 0A 01; known: 08 u8, 09 i8, 0B i16, 0C i32, 0D f32, 0E f64"))
        #expect(error([0, 0, 8, 0]) == .corruptFile(file: "x.idx", reason: "the magic declares 0 dimensions"))
        #expect(error([0, 0, 8, 3, 0, 0, 0, 1]) == .corruptFile(file: "x.idx", reason:
            "header of 3 dimensions needs 16 bytes, the file has 8 (truncated file?)"))
    }

    @Test func rejectsPayloadsOfTheWrongSize() {
        #expect(error(idx(0x08, [2, 3], [1, 2, 3, 4, 5])) == .corruptFile(file: "x.idx", reason:
            "dims 2×3 of u8 need 6 bytes of data, found 5 (truncated file?)"))
        #expect(error(idx(0x08, [2, 3], [1, 2, 3, 4, 5, 6, 7])) == .corruptFile(file: "x.idx", reason:
            "dims 2×3 of u8 need 6 bytes of data, found 7 (trailing bytes?)"))
        #expect(error(idx(0x0C, [2], [0, 0, 0, 1])) == .corruptFile(file: "x.idx", reason:
            "dims 2 of i32 need 8 bytes of data, found 4 (truncated file?)"))
        let huge = idx(0x0E, [0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF], [])
        #expect(error(huge) == .corruptFile(file: "x.idx", reason:
            "dims 4294967295×4294967295×4294967295 of f64 need more data bytes than fit in memory, found 0 (truncated file?)"))
    }

    @Test func rejectsNonFiniteFloats() {
        let nan = withUnsafeBytes(of: Float.nan.bitPattern.bigEndian, Array.init)
        #expect(error(idx(0x0D, [2], [0, 0, 0, 0] + nan)) == .corruptFile(file: "x.idx", reason:
            "element 1 is nan, which is not a finite Float; training data must be finite"))
    }

    @Test func pairsImagesWithLabels() throws {
        let directory = try TemporaryDirectory()
        let images = directory.file("a-images-idx3-ubyte")
        let labels = directory.file("a-labels-idx1-ubyte.gz")
        try IDXWriter.write(dims: [3, 2, 2], bytes: Array(0..<12), to: images)
        try IDXWriter.write(dims: [3], bytes: [7, 8, 9], to: labels)
        let dataset = try IDXReader.dataset(images: images, labels: labels)
        #expect(dataset == Dataset(features: (0..<12).map(Float.init), labels: [7, 8, 9], width: 4))

        let short = directory.file("short-labels-idx1-ubyte")
        try IDXWriter.write(dims: [2], bytes: [1, 2], to: short)
        let mismatch = DataError.labelMismatch(images: images, labels: short,
                                               reason: "2 labels for 3 images; check that the files belong together")
        #expect(throws: mismatch) { try IDXReader.dataset(images: images, labels: short) }
        #expect(mismatch.description == "IDX labels '\(short)' do not fit images '\(images)': "
            + "2 labels for 3 images; check that the files belong together")
        #expect(throws: DataError.labelMismatch(images: images, labels: images,
                                                reason: "labels must be 1-D (one per image), found dims 3×2×2")) {
            try IDXReader.dataset(images: images, labels: images)
        }
    }

    @Test(.enabled(if: FileManager.default.fileExists(atPath: "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")))
    func readsFashionMNISTTestSet() throws {
        let folder = "/usr/share/datasets/fashion-mnist/"
        let images = try IDXReader.read(file: folder + "t10k-images-idx3-ubyte.gz")
        #expect(images.dims == [10000, 28, 28])
        #expect(images.elementType == .unsignedByte)
        #expect(images.values.allSatisfy { $0 >= 0 && $0 <= 255 && $0 == $0.rounded() })
        let dataset = try IDXReader.dataset(images: folder + "t10k-images-idx3-ubyte.gz",
                                            labels: folder + "t10k-labels-idx1-ubyte.gz")
        #expect(dataset.count == 10000)
        #expect(dataset.width == 784)
        var perClass = [Int](repeating: 0, count: 10)
        for label in dataset.labels { perClass[Int(label)] += 1 }
        #expect(perClass == [Int](repeating: 1000, count: 10))
    }

    @Test func survivesMutatedInput() throws {
        let plain = try IDXWriter.encode(dims: [3, 4, 4], bytes: (0..<48).map { UInt8($0 * 5) })
        let floats = idx(0x0D, [2, 2], (0..<4).flatMap { withUnsafeBytes(of: Float($0).bitPattern.bigEndian, Array.init) })
        let directory = try TemporaryDirectory()
        let gzPath = directory.file("g-images-idx3-ubyte.gz")
        try IDXWriter.write(dims: [3, 4, 4], bytes: Array(repeating: 9, count: 48), to: gzPath)
        let gzipped = Array(try Data(contentsOf: URL(fileURLWithPath: gzPath)))
        let mutator = ByteMutator(interesting: ByteMutator.numericText)
        var random = SplitMix64(seed: 0x1D8)
        var parsed = 0
        for iteration in 0..<3000 {
            let source = [plain, floats, gzipped][iteration % 3]
            let input = mutator.mutate(source, using: &random)
            do {
                let array = try IDXReader.read(bytes: input, name: "fuzz-idx")
                #expect(array.values.count == array.dims.reduce(1, *), "seed 0x1D8 iteration \(iteration)")
                parsed += 1
            } catch {
                #expect(!error.description.isEmpty)
            }
        }
        #expect(parsed > 0)
    }
}
