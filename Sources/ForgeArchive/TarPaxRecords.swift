// Parsing of POSIX.1-2001 (pax) extended header records, the payload of `x` and `g` entries.

/// The `key=value` records of a pax extended header.
///
/// Each record is `"<length> <key>=<value>\n"`, where `length` is the decimal byte count of the
/// whole record including the length digits and the newline. Keys and values are UTF-8.
enum TarPaxRecords {
    /// Parses every record in `data` (the payload of the header at byte `offset`); later
    /// records win over earlier ones with the same key. NUL padding after the last record is
    /// ignored.
    static func parse(_ data: ArraySlice<UInt8>, at offset: Int) throws(ArchiveError) -> [String: String] {
        var records: [String: String] = [:]
        var start = data.startIndex
        while start < data.endIndex {
            if data[start...].allSatisfy({ $0 == 0 }) { break }
            var cursor = start
            var length = 0
            while cursor < data.endIndex, let digit = decimalDigit(data[cursor]), length <= data.count {
                length = length * 10 + digit
                cursor += 1
            }
            let digitCount = cursor - start
            // A record needs its digits, a space, at least `=` and the newline.
            guard digitCount > 0, cursor < data.endIndex, data[cursor] == UInt8(ascii: " "),
                  length >= digitCount + 3, length <= data.endIndex - start else {
                let position = start - data.startIndex
                throw .corruptTar(offset: offset, reason: "malformed pax record length at payload byte \(position)")
            }
            let body = data[(cursor + 1)..<(start + length - 1)]
            guard data[start + length - 1] == UInt8(ascii: "\n"),
                  let equals = body.firstIndex(of: UInt8(ascii: "=")),
                  let key = String(validating: body[..<equals], as: UTF8.self),
                  let value = String(validating: body[(equals + 1)...], as: UTF8.self) else {
                throw .corruptTar(offset: offset, reason: "malformed pax record at payload byte \(start - data.startIndex)")
            }
            records[key] = value
            start += length
        }
        return records
    }

    private static func decimalDigit(_ byte: UInt8) -> Int? {
        byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") ? Int(byte - UInt8(ascii: "0")) : nil
    }
}
