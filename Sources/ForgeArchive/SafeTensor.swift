// One named tensor of a safetensors file: dtype, shape and raw little-endian bytes.

/// A named tensor as stored in a safetensors file.
///
/// `bytes` holds `elementCount * dtype.byteCount` bytes, row-major, little-endian. The shape
/// `[]` is a scalar (one element); a shape with a 0 dimension has no bytes.
public struct SafeTensor: Sendable, Equatable {
    /// The tensor's key in the header; non-empty and not starting with `__metadata__`.
    public var name: String
    /// Element type.
    public var dtype: SafeTensorDType
    /// Dimensions, outermost first; each ≥ 0.
    public var shape: [Int]
    /// Row-major little-endian element bytes.
    public var bytes: [UInt8]

    /// Makes a tensor from raw bytes; consistency with `shape` is checked when encoding.
    public init(name: String, dtype: SafeTensorDType, shape: [Int], bytes: [UInt8]) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.bytes = bytes
    }

    /// Makes an `F32` tensor of `shape` from `floats` (row-major; `floats.count` must equal
    /// the product of `shape`).
    public init(name: String, shape: [Int], floats: [Float]) {
        precondition(Self.elementCount(of: shape) == floats.count, "\(floats.count) floats do not fill shape \(shape)")
        var bytes = [UInt8](repeating: 0, count: floats.count * 4)
        bytes.withUnsafeMutableBytes { raw in
            for (index, value) in floats.enumerated() {
                raw.storeBytes(of: value.bitPattern.littleEndian, toByteOffset: index * 4, as: UInt32.self)
            }
        }
        self.init(name: name, dtype: .f32, shape: shape, bytes: bytes)
    }

    /// The number of elements `shape` describes, or nil if a dimension is negative or the
    /// product overflows `Int`.
    public var elementCount: Int? {
        Self.elementCount(of: shape)
    }

    /// The elements as `Float`s when the tensor is `F32` with whole elements, else nil.
    public var floats: [Float]? {
        try? floatValues()
    }

    /// The elements as `Float`s. Throws `invalidTensor` unless the dtype is `F32` and the
    /// byte count is a multiple of 4.
    public func floatValues() throws(ArchiveError) -> [Float] {
        guard dtype == .f32 else {
            throw .invalidTensor(name: name, reason: "dtype is \(dtype.rawValue), not F32")
        }
        guard bytes.count % 4 == 0 else {
            throw .invalidTensor(name: name, reason: "\(bytes.count) bytes is not a whole number of F32 elements")
        }
        var values = [Float](repeating: 0, count: bytes.count / 4)
        bytes.withUnsafeBytes { raw in
            values.withUnsafeMutableBufferPointer { out in
                for index in out.indices {
                    let bits = raw.loadUnaligned(fromByteOffset: index * 4, as: UInt32.self)
                    out[index] = Float(bitPattern: UInt32(littleEndian: bits))
                }
            }
        }
        return values
    }

    /// The product of `shape` (1 for `[]`), or nil for a negative dimension or overflow.
    static func elementCount(of shape: [Int]) -> Int? {
        var count = 1
        for dimension in shape {
            guard dimension >= 0 else { return nil }
            let (product, overflow) = count.multipliedReportingOverflow(by: dimension)
            guard !overflow else { return nil }
            count = product
        }
        return count
    }
}
