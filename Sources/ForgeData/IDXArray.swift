// The contents of one IDX file: its shape, element type and values.

/// An n-dimensional array read from an IDX file: `values` row-major, shape `dims`, converted
/// to Float without scaling (u8 pixels stay 0...255).
public struct IDXArray: Sendable, Equatable {
    /// The dimensions, outermost first (for MNIST images `[N, 28, 28]`).
    public var dims: [Int]
    /// The element type stored in the file.
    public var elementType: IDXElementType
    /// `dims.reduce(1, *)` values, row-major.
    public var values: [Float]

    public init(dims: [Int], elementType: IDXElementType, values: [Float]) {
        precondition(values.count == dims.reduce(1, *), "\(values.count) values do not fill dims \(dims)")
        self.dims = dims
        self.elementType = elementType
        self.values = values
    }
}
