// Byte-level helpers shared by the text readers: whitespace tests and quoting bad input in errors.

/// Small byte-level helpers for text records.
enum FieldText {
    /// True for the bytes that may pad a field: space and tab.
    @inline(__always)
    static func isSpace(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t")
    }

    /// The text in `[start, end)` quoted for an error message, cut to 24 bytes.
    static func excerpt(_ base: UnsafePointer<UInt8>, from start: Int, to end: Int) -> String {
        let limit = 24
        let shown = String(decoding: UnsafeBufferPointer(start: base + start, count: min(end - start, limit)),
                           as: UTF8.self)
        return end - start > limit ? "'\(shown)…'" : "'\(shown)'"
    }
}
