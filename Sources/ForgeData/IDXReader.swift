// Reader of IDX files (the MNIST format), gzipped or not, and the pairing of an images file
// with its labels file into a `Dataset`.

/// Reads IDX files.
///
/// Layout: a 4-byte magic `00 00 TT DD` (`TT` the element type, `DD` the number of
/// dimensions, at least 1), `DD` big-endian u32 dimensions, then exactly
/// `product(dims) × size(TT)` bytes of row-major, big-endian data. Anything else (a magic
/// whose first two bytes are not zero, an unknown type, a payload too short or with trailing
/// bytes, NaN or infinite floats) is `corruptFile` with what was expected and what was found.
public enum IDXReader {
    /// Reads the IDX file at `path` (gzipped or not).
    public static func read(file path: String) throws(DataError) -> IDXArray {
        try decode(FileBytes.readDecompressed(path), name: path)
    }

    /// Reads an IDX file from `bytes` (gzipped or not); `name` stands for the file in errors.
    public static func read(bytes: [UInt8], name: String) throws(DataError) -> IDXArray {
        try decode(FileBytes.decompressIfGzip(bytes, name: name), name: name)
    }

    /// A data set from an images file (shape `N × d1 × d2 × …`, each image a record of width
    /// `d1 · d2 · …`) and a labels file (shape `N`). Values are raw (0...255 for u8).
    public static func dataset(images: String, labels: String) throws(DataError) -> Dataset {
        try dataset(images: read(file: images), imagesName: images, labels: read(file: labels), labelsName: labels)
    }

    /// A data set from decoded images and labels; the names stand for the files in errors.
    public static func dataset(
        images: IDXArray, imagesName: String, labels: IDXArray, labelsName: String
    ) throws(DataError) -> Dataset {
        guard labels.dims.count == 1 else {
            throw .labelMismatch(images: imagesName, labels: labelsName,
                                 reason: "labels must be 1-D (one per image), found dims \(shape(labels.dims))")
        }
        guard let imageCount = images.dims.first else {
            throw .labelMismatch(images: imagesName, labels: labelsName, reason: "the images array has no dimensions")
        }
        guard labels.dims[0] == imageCount else {
            throw .labelMismatch(images: imagesName, labels: labelsName,
                                 reason: "\(labels.dims[0]) labels for \(imageCount) images; "
                                    + "check that the files belong together")
        }
        let width = images.dims.dropFirst().reduce(1, *)
        return Dataset(features: images.values, labels: labels.values, width: width)
    }

    private static func decode(_ bytes: [UInt8], name: String) throws(DataError) -> IDXArray {
        guard bytes.count >= 4 else {
            throw .corruptFile(file: name, reason: "\(bytes.count) bytes is too short for the 4-byte IDX magic")
        }
        guard bytes[0] == 0, bytes[1] == 0 else {
            throw .corruptFile(file: name, reason: "magic \(hex(bytes[0..<4])) does not start with 00 00; "
                + "this is not an IDX file")
        }
        guard let type = IDXElementType(rawValue: bytes[2]) else {
            throw .corruptFile(file: name, reason: "unknown IDX element type 0x\(hex(bytes[2...2])) in magic "
                + "\(hex(bytes[0..<4])); known: 08 u8, 09 i8, 0B i16, 0C i32, 0D f32, 0E f64")
        }
        let rank = Int(bytes[3])
        guard rank > 0 else { throw .corruptFile(file: name, reason: "the magic declares 0 dimensions") }
        let headerSize = 4 + 4 * rank
        guard bytes.count >= headerSize else {
            throw .corruptFile(file: name, reason: "header of \(rank) dimensions needs \(headerSize) bytes, "
                + "the file has \(bytes.count) (truncated file?)")
        }
        var dims = [Int]()
        var elements = 1
        var overflow = false
        for d in 0..<rank {
            let offset = 4 + 4 * d
            let dim = Int(bytes[offset]) << 24 | Int(bytes[offset + 1]) << 16 | Int(bytes[offset + 2]) << 8
                | Int(bytes[offset + 3])
            dims.append(dim)
            let (product, over) = elements.multipliedReportingOverflow(by: dim)
            elements = product
            overflow = overflow || over
        }
        let (expected, over) = elements.multipliedReportingOverflow(by: type.byteCount)
        let actual = bytes.count - headerSize
        guard !overflow, !over, expected == actual else {
            let need = overflow || over ? "more data bytes than fit in memory" : "\(expected) bytes of data"
            let hint = !overflow && !over && actual > expected ? "trailing bytes?" : "truncated file?"
            throw .corruptFile(file: name, reason: "dims \(shape(dims)) of \(type.name) need \(need), "
                + "found \(actual) (\(hint))")
        }
        let values = try convert(bytes, from: headerSize, count: elements, type: type, name: name)
        return IDXArray(dims: dims, elementType: type, values: values)
    }

    /// The `count` elements of `type` at byte `offset` of `bytes`, as Float.
    private static func convert(
        _ bytes: [UInt8], from offset: Int, count: Int, type: IDXElementType, name: String
    ) throws(DataError) -> [Float] {
        var nonFinite: Int?
        let values = [Float](unsafeUninitializedCapacity: count) { out, initialized in
            bytes.withUnsafeBytes { raw in
                let data = UnsafeRawBufferPointer(rebasing: raw[offset...])
                switch type {
                case .unsignedByte:
                    for i in 0..<count { out[i] = Float(data[i]) }
                case .signedByte:
                    for i in 0..<count { out[i] = Float(Int8(bitPattern: data[i])) }
                case .int16:
                    for i in 0..<count {
                        out[i] = Float(Int16(bigEndian: data.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self)))
                    }
                case .int32:
                    for i in 0..<count {
                        out[i] = Float(Int32(bigEndian: data.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)))
                    }
                case .float32:
                    for i in 0..<count {
                        let bits = UInt32(bigEndian: data.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))
                        out[i] = Float(bitPattern: bits)
                        if nonFinite == nil && !out[i].isFinite { nonFinite = i }
                    }
                case .float64:
                    for i in 0..<count {
                        let bits = UInt64(bigEndian: data.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))
                        out[i] = Float(Double(bitPattern: bits))
                        if nonFinite == nil && !out[i].isFinite { nonFinite = i }
                    }
                }
            }
            initialized = count
        }
        if let nonFinite {
            throw .corruptFile(file: name, reason: "element \(nonFinite) is \(values[nonFinite]), "
                + "which is not a finite Float; training data must be finite")
        }
        return values
    }

    private static func hex(_ bytes: ArraySlice<UInt8>) -> String {
        bytes.map { byte in
            let digits = String(byte, radix: 16, uppercase: true)
            return digits.count == 1 ? "0" + digits : digits
        }.joined(separator: " ")
    }

    private static func shape(_ dims: [Int]) -> String {
        dims.map(String.init).joined(separator: "×")
    }
}
