// A float32 tensor: a view (offset, shape, strides) into a device's storage.

/// A strided view into a `Storage`. Copying a Tensor copies the view, not the data.
///
/// Concurrency: not Sendable, like its storage.
public struct Tensor {
    public let storage: Storage
    /// Offset of element [0, …, 0] in the storage, in elements.
    public let offset: Int
    public let shape: [Int]
    /// Elements to step per index in each dimension.
    public let strides: [Int]

    /// A view; the caller guarantees it lies inside the storage.
    public init(storage: Storage, offset: Int = 0, shape: [Int], strides: [Int]? = nil) {
        let strides = strides ?? Tensor.contiguousStrides(shape)
        precondition(shape.count == strides.count, "shape \(shape) and strides \(strides) differ in rank")
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        if let last = Tensor.lastElement(offset: offset, shape: shape, strides: strides) {
            precondition(offset >= 0 && last < storage.count, "view \(shape) at \(offset) exceeds storage of \(storage.count)")
        }
        self.storage = storage
        self.offset = offset
        self.shape = shape
        self.strides = strides
    }

    /// A fresh zero-filled tensor on `device`.
    public init(zeros shape: [Int], on device: any Device) {
        let count = shape.reduce(1, *)
        self.init(storage: device.allocate(count: count), shape: shape)
    }

    /// A fresh tensor holding `values` (row-major for `shape`).
    public init(_ values: [Float], shape: [Int], on device: any Device) {
        precondition(values.count == shape.reduce(1, *), "\(values.count) values do not fill shape \(shape)")
        self.init(zeros: shape, on: device)
        values.withUnsafeBufferPointer { device.copy(from: $0, to: self) }
    }

    public var device: any Device { storage.device }
    public var rank: Int { shape.count }
    /// Number of elements.
    public var count: Int { shape.reduce(1, *) }
    /// True when the elements are laid out densely in row-major order.
    public var isContiguous: Bool { strides == Tensor.contiguousStrides(shape) || count <= 1 }

    /// Rows `range` of a tensor (first dimension), as a view.
    public func rows(_ range: Range<Int>) -> Tensor {
        precondition(rank >= 1 && range.lowerBound >= 0 && range.upperBound <= shape[0], "rows \(range) outside \(shape)")
        var newShape = shape
        newShape[0] = range.count
        return Tensor(storage: storage, offset: offset + range.lowerBound * strides[0], shape: newShape, strides: strides)
    }

    /// The same elements with another shape; the tensor must be contiguous.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        precondition(isContiguous, "reshape needs a contiguous tensor")
        precondition(newShape.reduce(1, *) == count, "cannot reshape \(shape) to \(newShape)")
        return Tensor(storage: storage, offset: offset, shape: newShape)
    }

    /// The transpose of a 2-D tensor, as a view (no copy).
    public var transposed: Tensor {
        precondition(rank == 2, "transpose needs a matrix")
        return Tensor(storage: storage, offset: offset, shape: [shape[1], shape[0]], strides: [strides[1], strides[0]])
    }

    /// Copies the elements to a host array (row-major).
    public func toArray() -> [Float] {
        let source = isContiguous ? self : contiguousCopy()
        return [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            device.copy(from: source, to: buffer)
            initialized = source.count
        }
    }

    /// A dense copy on the same device.
    public func contiguousCopy() -> Tensor {
        let copy = Tensor(zeros: shape, on: device)
        device.copy(from: self, to: copy)
        return copy
    }

    /// Host pointer to element [0, …]; host-visible devices only.
    public var hostPointer: UnsafeMutablePointer<Float> { storage.floats + offset }

    static func contiguousStrides(_ shape: [Int]) -> [Int] {
        var strides = [Int](repeating: 1, count: shape.count)
        var step = 1
        for index in stride(from: shape.count - 1, through: 0, by: -1) {
            strides[index] = step
            step *= max(shape[index], 1)
        }
        return strides
    }

    static func lastElement(offset: Int, shape: [Int], strides: [Int]) -> Int? {
        if shape.contains(0) { return nil }
        return zip(shape, strides).reduce(offset) { $0 + ($1.0 - 1) * $1.1 }
    }
}
