// A minimal JSON value tree for the safetensors header, and JSON string quoting for the writer.

/// A parsed JSON value. Objects keep their members in document order (keys are unique: the
/// parser refuses duplicates). Numbers keep their literal text so that integers are read
/// exactly, with no round trip through `Double`.
public enum JSONValue: Sendable {
    case object([(key: String, value: JSONValue)])
    case array([JSONValue])
    case string(String)
    /// The number's literal text, already checked against the JSON number grammar.
    case number(String)
    case bool(Bool)
    case null

    /// The value as a non-negative integer, or nil when it is anything else (fractions,
    /// exponents, negatives, values past `Int.max`).
    var nonNegativeInteger: Int? {
        guard case .number(let literal) = self, let value = Int(literal), value >= 0 else { return nil }
        return value
    }

    /// `text` as a JSON string literal, quotes included. Control characters, `"` and `\` are
    /// escaped; everything else stays as UTF-8.
    public static func quoted(_ text: String) -> String {
        var result = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                result += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default:
                result.unicodeScalars.append(scalar)
            }
        }
        return result + "\""
    }

    /// `text` parsed as one JSON value (strictly, as the safetensors reader parses), or nil.
    public static func parse(_ text: String) -> JSONValue? {
        try? JSONParser.parse(Array(text.utf8)[...])
    }

    /// The value as compact JSON, object members in key order.
    public var compact: String {
        switch self {
        case .object(let members):
            return "{" + members.sorted { $0.key < $1.key }.map { JSONValue.quoted($0.key) + ":" + $0.value.compact }.joined(separator: ",") + "}"
        case .array(let items): return "[" + items.map(\.compact).joined(separator: ",") + "]"
        case .string(let text): return JSONValue.quoted(text)
        case .number(let literal): return literal
        case .bool(let flag): return flag ? "true" : "false"
        case .null: return "null"
        }
    }
}
