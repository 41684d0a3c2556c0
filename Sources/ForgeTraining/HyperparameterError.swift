// What can be wrong with a set of hyperparameters; every problem names its key.

/// One problem with one hyperparameter.
public enum HyperparameterProblem: Sendable, Equatable, CustomStringConvertible {
    case unknown(key: String, suggestion: String?)
    case badValue(key: String, value: String, expected: String)
    case outOfRange(key: String, value: String, range: String)
    case missing(key: String, why: String)
    case conflict(key: String, reason: String)

    public var key: String {
        switch self {
        case .unknown(let key, _), .badValue(let key, _, _), .outOfRange(let key, _, _),
             .missing(let key, _), .conflict(let key, _):
            return key
        }
    }

    public var description: String {
        switch self {
        case .unknown(let key, let suggestion):
            let hint = suggestion.map { " (did you mean '\($0)'?)" } ?? ""
            return "unknown hyperparameter '\(key)'\(hint)"
        case .badValue(let key, let value, let expected):
            return "hyperparameter '\(key)': '\(value)' is not \(expected)"
        case .outOfRange(let key, let value, let range):
            return "hyperparameter '\(key)': \(value) is outside \(range)"
        case .missing(let key, let why):
            return "hyperparameter '\(key)' is required: \(why)"
        case .conflict(let key, let reason):
            return "hyperparameter '\(key)': \(reason)"
        }
    }
}

/// Every problem found in one set of hyperparameters (validation reports them all at once).
public struct HyperparameterError: Error, Equatable, CustomStringConvertible {
    public var algorithm: String
    public var problems: [HyperparameterProblem]

    public init(algorithm: String, problems: [HyperparameterProblem]) {
        self.algorithm = algorithm
        self.problems = problems
    }

    public var description: String {
        let lines = problems.map { "  - \($0)" }.joined(separator: "\n")
        return "invalid hyperparameters for \(algorithm):\n\(lines)\nSee `forge train --help` or docs/hyperparameters.md for the accepted names and values."
    }
}
