// Reader of the LibSVM sparse text format (`application/x-libsvm`): `label index:value ...`
// per line, reporting every bad record by file, line and the index or token at fault.

/// Reads LibSVM text into a dense `Dataset`.
///
/// Format: one record per line, `label index:value index:value ...`, separated by spaces or
/// tabs; indices are 1-based and strictly increasing; absent indices are 0; an optional
/// `# comment` runs to the end of the line. Blank and comment-only lines are skipped; LF or
/// CRLF line ends; gzipped input is decompressed first. The width is the largest index in the
/// file unless `width` is given, in which case a larger index is an error. Rejected, with file
/// and 1-based line: a missing or non-numeric label, a token that is not `index:value`, index
/// 0, an index not above the one before it, a bad, `nan` or `inf` value.
public enum LibSVMReader {
    /// Reads the LibSVM file at `path` (gzipped or not), `width` features per record (or the
    /// largest index when nil).
    public static func read(
        file path: String, width: Int? = nil, corruptRecords: CorruptRecordPolicy = .fail
    ) throws(DataError) -> ReadResult {
        let records = try parse(FileBytes.readDecompressed(path), name: path, width: width, policy: corruptRecords)
        return try result(records, width: width)
    }

    /// Reads LibSVM text from `bytes` (gzipped or not); `name` stands for the file in errors.
    public static func read(
        bytes: [UInt8], name: String, width: Int? = nil, corruptRecords: CorruptRecordPolicy = .fail
    ) throws(DataError) -> ReadResult {
        let text = try FileBytes.decompressIfGzip(bytes, name: name)
        return try result(parse(text, name: name, width: width, policy: corruptRecords), width: width)
    }

    private static func result(_ records: SparseRecords, width: Int?) throws(DataError) -> ReadResult {
        let dense = try records.dense(width: resolvedWidth(of: [records], given: width))
        return ReadResult(dataset: dense, skipped: records.skipped)
    }

    /// The width of a channel of `parts`: `given`, or the largest index of all of them.
    static func resolvedWidth(of parts: [SparseRecords], given: Int?) throws(DataError) -> Int {
        if let given { return given }
        let largest = parts.map(\.maxIndex).max() ?? 0
        guard largest > 0 else {
            throw .corruptFile(file: parts.first?.name ?? "", reason: "no record has an index:value pair, "
                + "so the width is unknown; pass the width")
        }
        return largest
    }

    /// Parses LibSVM text into sparse records. An index above `width` (when given) is an error.
    static func parse(
        _ bytes: [UInt8], name: String, width: Int?, policy: CorruptRecordPolicy
    ) throws(DataError) -> SparseRecords {
        if let width, width < 1 {
            throw .invalidOption(name: "LibSVM width", reason: "\(width) is below 1; pass the feature count")
        }
        return try bytes.withUnsafeBufferPointer { (buffer) throws(DataError) -> SparseRecords in
            var parser = LibSVMParser(name: name, width: width, policy: policy)
            if let base = buffer.baseAddress { try parser.run(base, count: buffer.count) }
            guard !parser.records.labels.isEmpty else {
                throw .noRecords(file: name, skipped: parser.records.skipped.count)
            }
            return parser.records
        }
    }
}

/// The state of one LibSVM parse.
private struct LibSVMParser {
    let width: Int?
    let policy: CorruptRecordPolicy
    var records: SparseRecords

    init(name: String, width: Int?, policy: CorruptRecordPolicy) {
        self.width = width
        self.policy = policy
        self.records = SparseRecords(name: name)
    }

    mutating func run(_ base: UnsafePointer<UInt8>, count: Int) throws(DataError) {
        var position = 0
        if count >= 3 && base[0] == 0xEF && base[1] == 0xBB && base[2] == 0xBF { position = 3 }
        var line = 0
        while position < count {
            line += 1
            let lineStart = position
            var lineEnd = lineStart
            while lineEnd < count && base[lineEnd] != UInt8(ascii: "\n") && base[lineEnd] != UInt8(ascii: "#") {
                lineEnd += 1
            }
            position = lineEnd
            while position < count && base[position] != UInt8(ascii: "\n") { position += 1 }
            position += 1
            if lineEnd > lineStart && base[lineEnd - 1] == UInt8(ascii: "\r") { lineEnd -= 1 }
            if let reason = parseRecord(base, from: lineStart, to: lineEnd) {
                let error = DataError.malformedRecord(file: records.name, line: line, reason: reason)
                switch policy {
                case .fail: throw error
                case .skip: records.skipped.append(error)
                }
            }
        }
    }

    /// Appends the record in `[start, end)` (comment already cut off), skips it when blank, or
    /// returns why it is corrupt (leaving the records as they were).
    private mutating func parseRecord(_ base: UnsafePointer<UInt8>, from start: Int, to end: Int) -> String? {
        var cursor = start
        guard let labelToken = nextToken(base, cursor: &cursor, end: end) else { return nil }
        if base.contains(UInt8(ascii: ":"), in: labelToken) {
            return "missing label: the first token \(quote(base, labelToken)) "
                + "is an index:value pair; each line starts with its label"
        }
        let label: Float
        switch DecimalParser.parse(base + labelToken.lowerBound, count: labelToken.count) {
        case .value(let value): label = value
        case .notANumber: return "label \(quote(base, labelToken)) is not a number"
        case .nonFinite: return "label \(quote(base, labelToken)) is not a finite number"
        case .outOfRange: return "label \(quote(base, labelToken)) is outside Float's range"
        }
        let mark = records.indices.count
        var previous = 0
        var largest = records.maxIndex
        while let token = nextToken(base, cursor: &cursor, end: end) {
            if let reason = parsePair(base, token, previous: &previous) {
                records.indices.removeSubrange(mark...)
                records.values.removeSubrange(mark...)
                return reason
            }
            largest = max(largest, previous)
        }
        records.maxIndex = largest
        records.labels.append(label)
        records.starts.append(records.indices.count)
        return nil
    }

    /// Appends the pair `index:value` in `token`, or returns why it is bad. `previous` is the
    /// index before it on the line and becomes this one.
    private mutating func parsePair(_ base: UnsafePointer<UInt8>, _ token: Range<Int>, previous: inout Int) -> String? {
        guard let colon = base.firstIndex(of: UInt8(ascii: ":"), in: token) else {
            return "token \(quote(base, token)) is not index:value"
        }
        var index = 0
        var position = token.lowerBound
        while position < colon {
            let digit = base[position] &- UInt8(ascii: "0")
            guard digit < 10 else { break }
            index = index * 10 + Int(digit)
            position += 1
            if index > Int(Int32.max) {
                return "index in \(quote(base, token)) is above the largest supported index \(Int32.max)"
            }
        }
        guard position == colon, colon > token.lowerBound else {
            return "index in \(quote(base, token)) is not a positive integer"
        }
        guard index > 0 else { return "index 0 in \(quote(base, token)): indices are 1-based" }
        guard index > previous else {
            return "index \(index) follows index \(previous): indices must be strictly increasing"
        }
        if let width, index > width {
            return "index \(index) exceeds the width \(width) given for this data"
        }
        let valueRange = (colon + 1) ..< token.upperBound
        guard !valueRange.isEmpty else { return "value of index \(index) is empty" }
        switch DecimalParser.parse(base + valueRange.lowerBound, count: valueRange.count) {
        case .value(let value):
            records.indices.append(Int32(index))
            records.values.append(value)
            previous = index
            return nil
        case .notANumber: return "value \(quote(base, valueRange)) of index \(index) is not a number"
        case .nonFinite: return "value \(quote(base, valueRange)) of index \(index) is not a finite number"
        case .outOfRange: return "value \(quote(base, valueRange)) of index \(index) is outside Float's range"
        }
    }

    /// The next run of non-space bytes in `[cursor, end)`, advancing `cursor` past it.
    private func nextToken(_ base: UnsafePointer<UInt8>, cursor: inout Int, end: Int) -> Range<Int>? {
        while cursor < end && FieldText.isSpace(base[cursor]) { cursor += 1 }
        guard cursor < end else { return nil }
        let start = cursor
        while cursor < end && !FieldText.isSpace(base[cursor]) { cursor += 1 }
        return start ..< cursor
    }

    private func quote(_ base: UnsafePointer<UInt8>, _ range: Range<Int>) -> String {
        FieldText.excerpt(base, from: range.lowerBound, to: range.upperBound)
    }
}

private extension UnsafePointer<UInt8> {
    func firstIndex(of byte: UInt8, in range: Range<Int>) -> Int? {
        var index = range.lowerBound
        while index < range.upperBound {
            if self[index] == byte { return index }
            index += 1
        }
        return nil
    }

    func contains(_ byte: UInt8, in range: Range<Int>) -> Bool {
        firstIndex(of: byte, in: range) != nil
    }
}
