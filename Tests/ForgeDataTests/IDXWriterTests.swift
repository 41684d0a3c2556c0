// Tests of IDXWriter: the exact header bytes, byte-exact round trips (plain and gzipped), and
// its checks on the shape.
import ForgeData
import ForgeTestSupport
import Foundation
import Testing

@Suite struct IDXWriterTests {
    @Test func writesTheMNISTHeader() throws {
        let images = try IDXWriter.encode(dims: [60000, 28, 28], bytes: [UInt8](repeating: 1, count: 60000 * 784))
        #expect(Array(images.prefix(16)) == [0x00, 0x00, 0x08, 0x03, 0x00, 0x00, 0xEA, 0x60,
                                             0x00, 0x00, 0x00, 0x1C, 0x00, 0x00, 0x00, 0x1C])
        #expect(images.count == 47_040_016)
        let labels = try IDXWriter.encode(dims: [60000], bytes: [UInt8](repeating: 3, count: 60000))
        #expect(Array(labels.prefix(8)) == [0x00, 0x00, 0x08, 0x01, 0x00, 0x00, 0xEA, 0x60])
        #expect(labels.count == 60008)
    }

    @Test(arguments: ["r-images-idx3-ubyte", "r-images-idx3-ubyte.gz"])
    func roundTripsThroughTheReader(name: String) throws {
        let directory = try TemporaryDirectory()
        let path = directory.file(name)
        let bytes = (0..<(5 * 3 * 2)).map { UInt8(($0 * 37) % 256) }
        try IDXWriter.write(dims: [5, 3, 2], bytes: bytes, to: path)
        let onDisk = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        #expect(onDisk.starts(with: [0x1F, 0x8B]) == name.hasSuffix(".gz"))
        let array = try IDXReader.read(file: path)
        #expect(array == IDXArray(dims: [5, 3, 2], elementType: .unsignedByte, values: bytes.map(Float.init)))
        if !name.hasSuffix(".gz") {
            #expect(onDisk == (try IDXWriter.encode(dims: [5, 3, 2], bytes: bytes)))
        }
    }

    @Test func rejectsShapesThatDoNotFit() {
        #expect(throws: DataError.invalidOption(name: "IDX dims", reason: "[2, 2] hold 4 elements but 3 bytes were given")) {
            try IDXWriter.encode(dims: [2, 2], bytes: [1, 2, 3])
        }
        #expect(throws: DataError.invalidOption(name: "IDX dims", reason: "0 dimensions; IDX holds 1 to 255")) {
            try IDXWriter.encode(dims: [], bytes: [1])
        }
        #expect(throws: DataError.invalidOption(name: "IDX dims", reason: "dimension -1 is outside 0...4294967295")) {
            try IDXWriter.encode(dims: [-1], bytes: [])
        }
        #expect(throws: DataError.unwritable(file: "/nonexistent/x-images-idx3-ubyte", reason: "No such file or directory")) {
            try IDXWriter.write(dims: [1], bytes: [1], to: "/nonexistent/x-images-idx3-ubyte")
        }
    }
}
