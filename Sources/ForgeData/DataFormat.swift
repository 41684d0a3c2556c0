// The data formats a channel can hold, named by SageMaker content type or told from file names.

/// The format of a channel's files.
public enum DataFormat: String, Sendable, Hashable, CaseIterable {
    /// Numeric CSV, label first (`text/csv`).
    case csv
    /// LibSVM sparse text (`application/x-libsvm`).
    case libsvm
    /// IDX images/labels pairs, the MNIST format (`application/x-idx`).
    case idx

    /// The format named by a SageMaker `ContentType`: `text/csv` (with `label_size=1` or no
    /// `label_size`), `application/x-libsvm`, `text/libsvm`, `text/x-libsvm`,
    /// `application/x-idx`. Case and spaces around parameters do not matter; nil otherwise.
    public init?(contentType: String) {
        let parts = contentType.split(separator: ";", omittingEmptySubsequences: false).map {
            $0.trimmingSpaces().lowercased()
        }
        guard let mediaType = parts.first else { return nil }
        let parameters = parts.dropFirst()
        switch mediaType {
        case "text/csv":
            for parameter in parameters {
                let pair = parameter.split(separator: "=", maxSplits: 1).map { String($0.trimmingSpaces()) }
                // Built-in algorithms take exactly one label column.
                if pair.first == "label_size" && pair.last != "1" { return nil }
            }
            self = .csv
        case "application/x-libsvm", "text/libsvm", "text/x-libsvm":
            self = .libsvm
        case "application/x-idx":
            self = .idx
        default:
            return nil
        }
    }

    /// The format told from a file name: `.csv`, `.libsvm` or `.svm` (each optionally followed
    /// by `.gz`), or a name containing `idx` (as MNIST's `train-images-idx3-ubyte.gz`); nil otherwise.
    public init?(fileName: String) {
        var base = Substring(fileName.split(separator: "/").last ?? "").lowercased()
        if base.hasSuffix(".gz") { base.removeLast(3) }
        if base.hasSuffix(".csv") {
            self = .csv
        } else if base.hasSuffix(".libsvm") || base.hasSuffix(".svm") {
            self = .libsvm
        } else if base.contains("idx") {
            self = .idx
        } else {
            return nil
        }
    }

    /// The canonical content type of the format.
    public var contentType: String {
        switch self {
        case .csv: return "text/csv"
        case .libsvm: return "application/x-libsvm"
        case .idx: return "application/x-idx"
        }
    }
}

private extension Substring {
    func trimmingSpaces() -> Substring {
        var slice = self
        while let first = slice.first, first == " " || first == "\t" { slice.removeFirst() }
        while let last = slice.last, last == " " || last == "\t" { slice.removeLast() }
        return slice
    }
}
