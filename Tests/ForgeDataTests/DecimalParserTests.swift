// Tests of the decimal parser behind the text readers (through CSVReader, so no @testable
// import is needed): correct rounding against the standard library's parser over many seeded
// random decimal strings, and the classification of non-numbers.
import ForgeData
import ForgeTestSupport
import Testing

@Suite struct DecimalParserTests {
    /// The feature parsed from `text`, or the reason the reader gave for rejecting it.
    private func parse(_ text: String) -> Result<Float, DataError> {
        do {
            let result = try CSVReader.read(bytes: Array("0,\(text)\n".utf8), name: "n.csv")
            return .success(result.dataset.features[0])
        } catch {
            return .failure(error)
        }
    }

    private func rejection(_ text: String, _ problem: String) -> Result<Float, DataError> {
        .failure(.malformedRecord(file: "n.csv", line: 1, reason: "column 2: '\(text)' \(problem)"))
    }

    private func isOutOfRange(_ result: Result<Float, DataError>) -> Bool {
        guard case .failure(.malformedRecord(_, _, let reason)) = result else { return false }
        return reason.hasSuffix("is outside Float's range")
    }

    @Test func parsesExactly() {
        #expect(parse("0.1") == .success(Float(0.1)))
        #expect(parse("-0").map(\.bitPattern) == .success((-0.0 as Float).bitPattern))
        #expect(parse("00000000000000000000000000000012.5e-1") == .success(1.25))
        #expect(parse("1e-50") == .success(0))
        #expect(parse("16777217") == .success(16_777_216))
        #expect(parse("16777219") == .success(16_777_220))
    }

    @Test func classifiesNonNumbers() {
        for text in ["-", ".", "e5", "1e", "1e+", "1..2", "0x10", "1 2", "--1", "+-1", "1f", "½"] {
            #expect(parse(text) == rejection(text, "is not a number"))
        }
        for text in ["nan", "NaN", "-inf", "+Infinity", "INF"] {
            #expect(parse(text) == rejection(text, "is not a finite number"))
        }
        for text in ["1e39", "-3.5e38", "1e1000000000"] {
            #expect(parse(text) == rejection(text, "is outside Float's range"))
        }
    }

    @Test func roundsLikeTheStandardLibrary() {
        var random = SplitMix64(seed: 0xF10A7)
        var mismatches = [String]()
        for _ in 0..<10_000 {
            var text = random.below(2) == 0 ? "-" : ""
            let digits = 1 + random.below(24)
            let point = random.below(digits + 1)
            for position in 0..<digits {
                if position == point && position > 0 { text += "." }
                text += String(random.below(10))
            }
            if random.below(2) == 0 { text += "e" + String(random.below(90) - 45) }
            guard let expected = Float(text) else {
                mismatches.append(text)
                continue
            }
            let actual = parse(text)
            if expected.isFinite ? actual.map(\.bitPattern) == .success(expected.bitPattern)
                                 : isOutOfRange(actual) {
                continue
            }
            mismatches.append(text)
        }
        #expect(mismatches.isEmpty, "seed 0xF10A7: \(mismatches.prefix(10))")
        // Random Floats printed in shortest form must come back bit for bit.
        for _ in 0..<10_000 {
            let value = Float(bitPattern: UInt32(truncatingIfNeeded: random.next()))
            guard value.isFinite else { continue }
            #expect(parse(value.description).map(\.bitPattern) == .success(value.bitPattern),
                    "seed 0xF10A7: \(value.description)")
        }
    }
}
