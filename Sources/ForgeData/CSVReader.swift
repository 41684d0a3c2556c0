// Reader of numeric CSV in SageMaker's built-in convention (`text/csv`: label first, no header),
// parsing bytes directly for speed and reporting every bad record by file, line and column.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads numeric CSV into a `Dataset`.
///
/// Format: one record per line, comma-separated numbers, the label in column
/// `options.labelColumn` (0 by default) and the features in the other columns, in order.
/// Accepted: LF or CRLF line ends, a missing final newline, a UTF-8 byte-order mark, blank
/// lines (skipped), spaces or tabs around fields, signs, exponents, integers. Gzipped input
/// (a `.gz` name or the gzip magic bytes) is decompressed first. Rejected, with file, 1-based
/// line and column: an empty field, non-numeric text, `nan` or `inf`, a number beyond Float's
/// range, a record whose column count differs from the first record's. The first record
/// fixes the column count even when its values are bad. Numbers are correctly rounded to Float.
public enum CSVReader {
    /// Reads the CSV file at `path` (gzipped or not).
    public static func read(
        file path: String, options: CSVOptions = CSVOptions()
    ) throws(DataError) -> ReadResult {
        try parse(FileBytes.readDecompressed(path), name: path, options: options)
    }

    /// Reads CSV from `bytes` (gzipped or not); `name` stands for the file in errors.
    public static func read(
        bytes: [UInt8], name: String, options: CSVOptions = CSVOptions()
    ) throws(DataError) -> ReadResult {
        try parse(FileBytes.decompressIfGzip(bytes, name: name), name: name, options: options)
    }

    private static func parse(_ bytes: [UInt8], name: String, options: CSVOptions) throws(DataError) -> ReadResult {
        guard options.labelColumn >= 0 else {
            throw .invalidOption(name: "labelColumn",
                                 reason: "\(options.labelColumn) is negative; columns count from 0")
        }
        return try bytes.withUnsafeBufferPointer { (buffer) throws(DataError) -> ReadResult in
            var parser = CSVParser(name: name, options: options)
            if let base = buffer.baseAddress { try parser.run(base, count: buffer.count) }
            return try parser.finish()
        }
    }
}

/// The state of one CSV parse: output buffers, the expected column count, skipped records.
private struct CSVParser {
    let name: String
    let options: CSVOptions
    var features: [Float] = []
    var labels: [Float] = []
    var skipped: [DataError] = []
    /// Column count of the first record; nil until it is seen.
    var columns: Int?

    init(name: String, options: CSVOptions) {
        self.name = name
        self.options = options
    }

    mutating func run(_ base: UnsafePointer<UInt8>, count: Int) throws(DataError) {
        var position = 0
        if count >= 3 && base[0] == 0xEF && base[1] == 0xBB && base[2] == 0xBF { position = 3 }
        var line = 0
        var headerPending = options.hasHeader
        while position < count {
            line += 1
            let lineStart = position
            var lineEnd: Int
            if let newline = memchr(base + position, Int32(UInt8(ascii: "\n")), count - position) {
                lineEnd = UnsafeRawPointer(newline) - UnsafeRawPointer(base)
                position = lineEnd + 1
            } else {
                lineEnd = count
                position = count
            }
            if lineEnd > lineStart && base[lineEnd - 1] == UInt8(ascii: "\r") { lineEnd -= 1 }
            if isBlank(base, from: lineStart, to: lineEnd) { continue }
            if headerPending {
                headerPending = false
                continue
            }
            if let error = parseRecord(base, from: lineStart, to: lineEnd, line: line, fileSize: count) {
                try report(error)
            }
        }
    }

    func finish() throws(DataError) -> ReadResult {
        guard !labels.isEmpty, let columns else { throw .noRecords(file: name, skipped: skipped.count) }
        let dataset = Dataset(features: features, labels: labels, width: columns - 1)
        return ReadResult(dataset: dataset, skipped: skipped)
    }

    private mutating func report(_ error: DataError) throws(DataError) {
        switch options.corruptRecords {
        case .fail: throw error
        case .skip: skipped.append(error)
        }
    }

    /// Appends the record in `[start, end)` to the output, or returns why it is corrupt
    /// (leaving the output as it was).
    private mutating func parseRecord(
        _ base: UnsafePointer<UInt8>, from start: Int, to end: Int, line: Int, fileSize: Int
    ) -> DataError? {
        let featureMark = features.count
        var label: Float = 0
        var column = 0
        var failure: String?
        var fieldStart = start
        while true {
            var fieldEnd = fieldStart
            while fieldEnd < end && base[fieldEnd] != UInt8(ascii: ",") { fieldEnd += 1 }
            if failure == nil {
                switch parseField(base, from: fieldStart, to: fieldEnd, column: column) {
                case .success(let value):
                    if column == options.labelColumn { label = value } else { features.append(value) }
                case .failure(let reason):
                    failure = reason
                }
            }
            column += 1
            if fieldEnd >= end { break }
            fieldStart = fieldEnd + 1
        }
        if columns == nil {
            if column < 2 || options.labelColumn >= column {
                features.removeSubrange(featureMark...)
                let reason = column < 2
                    ? "only \(column) column; a record needs its label and at least one feature"
                    : "the label column \(options.labelColumn + 1) is past the \(column) columns of the first record"
                return .malformedRecord(file: name, line: line, reason: reason)
            }
            columns = column
            // The first record's size gives a good estimate of the whole output.
            let estimate = fileSize / max(end - start + 1, 1) + 1
            features.reserveCapacity(estimate * (column - 1))
            labels.reserveCapacity(estimate)
        }
        if let columns, column != columns {
            features.removeSubrange(featureMark...)
            return .inconsistentWidth(file: name, line: line, expected: columns, found: column)
        }
        if let failure {
            features.removeSubrange(featureMark...)
            return .malformedRecord(file: name, line: line, reason: failure)
        }
        labels.append(label)
        return nil
    }

    /// The value of the field in `[start, end)` (0-based `column`), or the reason it is bad.
    private func parseField(
        _ base: UnsafePointer<UInt8>, from start: Int, to end: Int, column: Int
    ) -> FieldResult {
        var first = start
        var last = end
        while first < last && FieldText.isSpace(base[first]) { first += 1 }
        while last > first && FieldText.isSpace(base[last - 1]) { last -= 1 }
        guard last > first else { return .failure("column \(column + 1) is empty") }
        let problem: String
        switch DecimalParser.parse(base + first, count: last - first) {
        case .value(let value): return .success(value)
        case .notANumber: problem = "is not a number"
        case .nonFinite: problem = "is not a finite number"
        case .outOfRange: problem = "is outside Float's range"
        }
        return .failure("column \(column + 1): \(FieldText.excerpt(base, from: first, to: last)) \(problem)")
    }

    private func isBlank(_ base: UnsafePointer<UInt8>, from start: Int, to end: Int) -> Bool {
        var index = start
        while index < end {
            if !FieldText.isSpace(base[index]) { return false }
            index += 1
        }
        return true
    }
}

/// A parsed field: its value, or the reason (naming the 1-based column) it is bad.
private enum FieldResult {
    case success(Float)
    case failure(String)
}
