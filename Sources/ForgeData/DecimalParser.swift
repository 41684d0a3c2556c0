// Decimal text to Float, correctly rounded. The fast path does one correctly rounded Double
// operation on an exact (or once-rounded) 19-digit mantissa and an exact power of ten, then
// rounds to Float; it hands the rare inputs it cannot settle to the standard library's parser.

/// What the text of one field parsed to.
enum ParsedNumber: Equatable {
    /// A finite Float, correctly rounded from the decimal text.
    case value(Float)
    /// The text is not decimal number syntax.
    case notANumber
    /// The text spells `nan`, `inf` or `infinity` (any case, optional sign).
    case nonFinite
    /// Valid syntax, but the magnitude is beyond `Float.greatestFiniteMagnitude`.
    case outOfRange
}

/// Parses `[+-] digits [. digits] [(e|E) [+-] digits]` (at least one mantissa digit) into a Float.
///
/// Why the fast path is exact: the mantissa `m` (at most 19 significant digits) converts to
/// Double exactly when `m ≤ 2^53`, else with at most half an ulp of error; `10^k` for
/// `k ≤ 22` is exact in Double, and one multiply or divide adds at most half an ulp. So the
/// Double `d` is within about one Double ulp of the true value. Rounding `d` to Float then gives
/// the correctly rounded Float unless the true value could lie on the other side of a Float
/// rounding midpoint, which can only happen when `d`'s 29 bits below the Float precision are
/// within a few units of the midpoint pattern `1 << 28`. Those inputs (about one in 10^7), and
/// those outside the fast path's range, go to `Float(String)`, which is correctly rounded.
enum DecimalParser {
    private static let powersOfTen: [Double] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
        1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
    ]

    /// Parses the `count` bytes at `start`, which hold no surrounding whitespace.
    static func parse(_ start: UnsafePointer<UInt8>, count: Int) -> ParsedNumber {
        var index = 0
        var negative = false
        if index < count && (start[index] == UInt8(ascii: "-") || start[index] == UInt8(ascii: "+")) {
            negative = start[index] == UInt8(ascii: "-")
            index += 1
        }
        var mantissa: UInt64 = 0
        var significantDigits = 0
        var droppedNonZero = false
        var exponent = 0
        var mantissaDigits = 0
        while index < count {
            let digit = start[index] &- UInt8(ascii: "0")
            guard digit < 10 else { break }
            mantissaDigits += 1
            if significantDigits < 19 {
                if mantissa != 0 || digit != 0 {
                    mantissa = mantissa &* 10 &+ UInt64(digit)
                    significantDigits += 1
                }
            } else {
                exponent += 1
                droppedNonZero = droppedNonZero || digit != 0
            }
            index += 1
        }
        if index < count && start[index] == UInt8(ascii: ".") {
            index += 1
            while index < count {
                let digit = start[index] &- UInt8(ascii: "0")
                guard digit < 10 else { break }
                mantissaDigits += 1
                if significantDigits < 19 {
                    if mantissa != 0 || digit != 0 {
                        mantissa = mantissa &* 10 &+ UInt64(digit)
                        significantDigits += 1
                    }
                    exponent -= 1
                } else {
                    droppedNonZero = droppedNonZero || digit != 0
                }
                index += 1
            }
        }
        guard mantissaDigits > 0 else { return spellsNonFinite(start, count: count) ? .nonFinite : .notANumber }
        if index < count && (start[index] == UInt8(ascii: "e") || start[index] == UInt8(ascii: "E")) {
            index += 1
            var exponentNegative = false
            if index < count && (start[index] == UInt8(ascii: "-") || start[index] == UInt8(ascii: "+")) {
                exponentNegative = start[index] == UInt8(ascii: "-")
                index += 1
            }
            var written = 0
            var exponentDigits = 0
            while index < count {
                let digit = start[index] &- UInt8(ascii: "0")
                guard digit < 10 else { break }
                // Clamped: anything past 10^6 is zero or out of range either way.
                if written < 1_000_000 { written = written * 10 + Int(digit) }
                exponentDigits += 1
                index += 1
            }
            guard exponentDigits > 0 else { return .notANumber }
            exponent += exponentNegative ? -written : written
        }
        guard index == count else { return .notANumber }
        if mantissa == 0 { return .value(negative ? -0.0 : 0.0) }

        if !droppedNonZero && exponent >= -22 && exponent <= 22 {
            let scaled = exponent < 0
                ? Double(mantissa) / powersOfTen[-exponent]
                : Double(mantissa) * powersOfTen[exponent]
            if scaled >= 2 * Double(Float.leastNormalMagnitude) && scaled <= Double(Float.greatestFiniteMagnitude) / 2 {
                let belowFloat = scaled.bitPattern & 0x1FFF_FFFF
                let midpoint: UInt64 = 0x1000_0000
                let distance = belowFloat > midpoint ? belowFloat - midpoint : midpoint - belowFloat
                if distance > 8 {
                    let rounded = Float(scaled)
                    return .value(negative ? -rounded : rounded)
                }
            }
        }
        return parseSlowly(start, count: count)
    }

    /// The standard library's correctly rounded parse, for text already known to be valid syntax.
    private static func parseSlowly(_ start: UnsafePointer<UInt8>, count: Int) -> ParsedNumber {
        let text = String(decoding: UnsafeBufferPointer(start: start, count: count), as: UTF8.self)
        guard let value = Float(text), value.isFinite else { return .outOfRange }
        return .value(value)
    }

    /// True for `nan`, `inf`, `infinity` in any case, with an optional sign.
    private static func spellsNonFinite(_ start: UnsafePointer<UInt8>, count: Int) -> Bool {
        var offset = 0
        if count > 0 && (start[0] == UInt8(ascii: "-") || start[0] == UInt8(ascii: "+")) { offset = 1 }
        let length = count - offset
        guard length == 3 || length == 8 else { return false }
        var lowered = [UInt8]()
        lowered.reserveCapacity(length)
        for i in offset..<count { lowered.append(start[i] | 0x20) }
        return lowered == Array("nan".utf8) || lowered == Array("inf".utf8) || lowered == Array("infinity".utf8)
    }
}
