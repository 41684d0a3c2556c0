// The metric line format and the final metrics file (CONVENTIONS.md, "Outputs").
import Foundation

/// Formats metric lines: `key=value` pairs, values in fixed point with six decimals and never
/// an exponent, so `train:loss=([0-9.]+)` matches (negative values keep their sign).
public enum MetricLine {
    public static func format(epoch: Int, step: Int, metrics: [MetricValue]) -> String {
        (["epoch=\(epoch)", "step=\(step)"] + metrics.map { "\($0.name)=\(fixed($0.value))" }).joined(separator: " ")
    }

    /// Six decimals, no exponent; non-finite values print as `nan`/`inf`.
    public static func fixed(_ value: Double) -> String {
        guard value.isFinite else { return value.isNaN ? "nan" : (value > 0 ? "inf" : "-inf") }
        return String(format: "%.6f", value)
    }

    /// `metrics.json`: a flat JSON object from metric name to number, keys sorted.
    public static func json(_ metrics: [MetricValue]) -> String {
        let body = metrics.sorted { $0.name < $1.name }.map { metric -> String in
            let value = metric.value.isFinite ? String(format: "%.8g", metric.value) : "null"
            return "  \"\(metric.name)\": \(value)"
        }
        return "{\n" + body.joined(separator: ",\n") + "\n}\n"
    }
}
