// The SigV4 timestamp, `YYYYMMDDTHHMMSSZ` in UTC, parsed and formatted without a formatter
// object (DateFormatter is neither cheap nor thread-safe to share).
import Foundation

/// A second-precision UTC time as SigV4 writes it.
public struct AmzDate: Equatable, Sendable, CustomStringConvertible {
    /// Seconds since 1970-01-01T00:00:00Z.
    public let epochSeconds: Int64

    public init(_ date: Date) {
        epochSeconds = Int64(date.timeIntervalSince1970.rounded(.down))
    }

    /// Parses `YYYYMMDDTHHMMSSZ`; nil for anything else (a wrong length, a non-digit, a month 13).
    public init?(parsing text: String) {
        let bytes = Array(text.utf8)
        guard bytes.count == 16, bytes[8] == UInt8(ascii: "T"), bytes[15] == UInt8(ascii: "Z") else { return nil }
        func number(_ range: Range<Int>) -> Int? {
            var value = 0
            for byte in bytes[range] {
                guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
            }
            return value
        }
        guard let year = number(0..<4), let month = number(4..<6), let day = number(6..<8),
              let hour = number(9..<11), let minute = number(11..<13), let second = number(13..<15),
              (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61 else { return nil }
        let days = AmzDate.daysFromCivil(year: year, month: month, day: day)
        epochSeconds = Int64(days) * 86_400 + Int64(hour * 3600 + minute * 60 + second)
    }

    public var date: Date { Date(timeIntervalSince1970: TimeInterval(epochSeconds)) }

    /// `YYYYMMDDTHHMMSSZ`.
    public var description: String {
        let days = Int(epochSeconds >= 0 ? epochSeconds / 86_400 : (epochSeconds - 86_399) / 86_400)
        let seconds = Int(epochSeconds - Int64(days) * 86_400)
        let (year, month, day) = AmzDate.civil(fromDays: days)
        func two(_ value: Int) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(year)\(two(month))\(two(day))T\(two(seconds / 3600))\(two(seconds / 60 % 60))\(two(seconds % 60))Z"
    }

    /// `YYYYMMDD`, the date of a credential scope.
    public var day: String { String(description.prefix(8)) }

    // Howard Hinnant's days-from-civil and its inverse (proleptic Gregorian calendar).
    private static func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    private static func civil(fromDays days: Int) -> (Int, Int, Int) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }
}
