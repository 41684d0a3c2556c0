// Writer of u8 IDX files (the MNIST format), for synthetic data sets and tests.
import ForgeArchive

/// Writes IDX files of unsigned bytes (type code 0x08).
public enum IDXWriter {
    /// The IDX encoding of `bytes` with shape `dims` (1 to 255 dimensions, each below 2^32,
    /// whose product is `bytes.count`).
    public static func encode(dims: [Int], bytes: [UInt8]) throws(DataError) -> [UInt8] {
        guard (1...255).contains(dims.count) else {
            throw .invalidOption(name: "IDX dims", reason: "\(dims.count) dimensions; IDX holds 1 to 255")
        }
        if let bad = dims.first(where: { $0 < 0 || $0 > Int(UInt32.max) }) {
            throw .invalidOption(name: "IDX dims", reason: "dimension \(bad) is outside 0...\(UInt32.max)")
        }
        var elements = 1
        for dim in dims {
            let (product, overflow) = elements.multipliedReportingOverflow(by: dim)
            guard !overflow else {
                throw .invalidOption(name: "IDX dims", reason: "\(dims) hold more elements than fit in memory")
            }
            elements = product
        }
        guard elements == bytes.count else {
            throw .invalidOption(name: "IDX dims",
                                 reason: "\(dims) hold \(elements) elements but \(bytes.count) bytes were given")
        }
        var output = [UInt8]()
        output.reserveCapacity(4 + 4 * dims.count + bytes.count)
        output.append(contentsOf: [0, 0, IDXElementType.unsignedByte.rawValue, UInt8(dims.count)])
        for dim in dims {
            let value = UInt32(dim)
            output.append(contentsOf: [UInt8(value >> 24), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF),
                                       UInt8(value & 0xFF)])
        }
        output.append(contentsOf: bytes)
        return output
    }

    /// Writes `bytes` with shape `dims` as an IDX file at `path`, gzipped when the name ends
    /// in `.gz`.
    public static func write(dims: [Int], bytes: [UInt8], to path: String) throws(DataError) {
        var encoded = try encode(dims: dims, bytes: bytes)
        if path.hasSuffix(".gz") {
            do {
                encoded = try Gzip.compress(encoded)
            } catch {
                throw .unwritable(file: path, reason: "gzip compression failed: \(error)")
            }
        }
        try FileBytes.writeFile(encoded, to: path)
    }
}
