// A data set together with the file it came from, so errors about it can name the file.

/// The records read from one file (or one IDX images/labels pair, named by the images file).
public struct NamedDataset: Sendable, Equatable {
    /// Path of the file the records came from.
    public var name: String
    /// The records.
    public var dataset: Dataset

    public init(name: String, dataset: Dataset) {
        self.name = name
        self.dataset = dataset
    }
}
