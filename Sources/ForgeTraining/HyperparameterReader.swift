// Typed reads from a string-to-string hyperparameter map (as SageMaker passes them), that
// collect every problem instead of stopping at the first.
import Foundation

/// Reads typed values out of `values`, remembering which keys were used and what was wrong.
struct HyperparameterReader {
    let values: [String: String]
    private(set) var problems: [HyperparameterProblem] = []
    private(set) var consumed: Set<String> = []
    /// The resolved value of every known key (defaults included), as strings.
    private(set) var resolved: [String: String] = [:]

    init(_ values: [String: String]) {
        self.values = values
    }

    private mutating func raw(_ key: String) -> String? {
        consumed.insert(key)
        return values[key]?.trimmingCharacters(in: .whitespaces)
    }

    mutating func string(_ key: String, default defaultValue: String?) -> String? {
        let value = raw(key) ?? defaultValue
        if let value { resolved[key] = value }
        return value
    }

    mutating func choice<T: RawRepresentable>(_ key: String, default defaultValue: T?, aliases: [String: T] = [:]) -> T?
    where T.RawValue == String, T: CaseIterable {
        guard let text = raw(key) else {
            if let defaultValue { resolved[key] = defaultValue.rawValue }
            return defaultValue
        }
        if let value = T(rawValue: text.lowercased()) ?? aliases[text.lowercased()] {
            resolved[key] = value.rawValue
            return value
        }
        let options = T.allCases.map { "'\($0.rawValue)'" }.joined(separator: ", ")
        problems.append(.badValue(key: key, value: text, expected: "one of \(options)"))
        return defaultValue
    }

    mutating func int(_ key: String, default defaultValue: Int?, in range: ClosedRange<Int>) -> Int? {
        guard let text = raw(key) else {
            if let defaultValue { resolved[key] = String(defaultValue) }
            return defaultValue
        }
        // SageMaker tuners send integers as "10.0" at times; accept an integral float.
        let parsed = Int(text) ?? Double(text).flatMap { $0.rounded() == $0 && abs($0) < 1e15 ? Int($0) : nil }
        guard let value = parsed else {
            problems.append(.badValue(key: key, value: text, expected: "an integer"))
            return defaultValue
        }
        guard range.contains(value) else {
            problems.append(.outOfRange(key: key, value: text, range: "\(range.lowerBound)...\(range.upperBound)"))
            return defaultValue
        }
        resolved[key] = String(value)
        return value
    }

    mutating func float(_ key: String, default defaultValue: Double?, in range: ClosedRange<Double>, openLower: Bool = false) -> Double? {
        guard let text = raw(key) else {
            if let defaultValue { resolved[key] = String(defaultValue) }
            return defaultValue
        }
        guard let value = Double(text), value.isFinite else {
            problems.append(.badValue(key: key, value: text, expected: "a finite number"))
            return defaultValue
        }
        let below = openLower ? value <= range.lowerBound : value < range.lowerBound
        guard !below, value <= range.upperBound else {
            let lower = openLower ? "(\(range.lowerBound)" : "[\(range.lowerBound)"
            problems.append(.outOfRange(key: key, value: text, range: "\(lower), \(range.upperBound)]"))
            return defaultValue
        }
        resolved[key] = String(value)
        return value
    }

    mutating func bool(_ key: String, default defaultValue: Bool) -> Bool {
        guard let text = raw(key) else {
            resolved[key] = String(defaultValue)
            return defaultValue
        }
        switch text.lowercased() {
        case "true", "1", "yes": resolved[key] = "true"; return true
        case "false", "0", "no": resolved[key] = "false"; return false
        default:
            problems.append(.badValue(key: key, value: text, expected: "'true' or 'false'"))
            return defaultValue
        }
    }

    /// A comma-separated list of positive integers ("256,128"); empty means none.
    mutating func intList(_ key: String, default defaultValue: [Int], in range: ClosedRange<Int>) -> [Int] {
        guard let text = raw(key) else {
            resolved[key] = defaultValue.map(String.init).joined(separator: ",")
            return defaultValue
        }
        let cleaned = text.trimmingCharacters(in: CharacterSet(charactersIn: "[]() "))
        if cleaned.isEmpty { resolved[key] = ""; return [] }
        var result = [Int]()
        for part in cleaned.split(separator: ",", omittingEmptySubsequences: false) {
            let item = part.trimmingCharacters(in: .whitespaces)
            guard let value = Int(item) else {
                problems.append(.badValue(key: key, value: text, expected: "a comma-separated list of integers like \"256,128\""))
                return defaultValue
            }
            guard range.contains(value) else {
                problems.append(.outOfRange(key: key, value: item, range: "\(range.lowerBound)...\(range.upperBound)"))
                return defaultValue
            }
            result.append(value)
        }
        resolved[key] = result.map(String.init).joined(separator: ",")
        return result
    }

    mutating func report(_ problem: HyperparameterProblem) { problems.append(problem) }

    /// Adds an `unknown` problem for every key nobody read, with the closest known name.
    mutating func rejectUnknown(known: Set<String>, ignoredPrefixes: [String]) {
        for key in values.keys.sorted() where !consumed.contains(key) {
            if ignoredPrefixes.contains(where: { key.hasPrefix($0) }) { continue }
            let suggestion = known.min { editDistance(key, $0) < editDistance(key, $1) }
            let close = suggestion.map { editDistance(key, $0) <= max(2, key.count / 3) } ?? false
            problems.append(.unknown(key: key, suggestion: close ? suggestion : nil))
        }
    }
}

/// Levenshtein distance, for "did you mean" hints.
func editDistance(_ a: String, _ b: String) -> Int {
    let x = Array(a), y = Array(b)
    if x.isEmpty { return y.count }
    var previous = Array(0...y.count)
    for i in 1...x.count {
        var current = [i] + [Int](repeating: 0, count: y.count)
        for j in 1...max(y.count, 1) where !y.isEmpty {
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x[i - 1] == y[j - 1] ? 0 : 1))
        }
        previous = current
    }
    return previous[y.count]
}
