// Exact comparison of trained parameters: bit patterns, not float equality (which would call
// -0 and 0 equal and NaN unequal to itself); a mismatch reports the largest difference per
// tensor, as llm.c's test_gpt2.c does.
import ForgeTraining
import Testing

/// The bit patterns of every parameter, by name.
func parameterBits(_ model: TrainedModel) -> [String: [UInt32]] {
    Dictionary(uniqueKeysWithValues: model.parameters.map { ($0.name, $0.values.map(\.bitPattern)) })
}

/// Records an issue naming each tensor that differs (and by how much) unless `a` and `b` hold
/// bit-identical parameters with the same names and shapes.
func expectBitIdentical(_ a: TrainedModel, _ b: TrainedModel, _ comment: String = "",
                        sourceLocation: SourceLocation = #_sourceLocation) {
    let shapesA = a.parameters.map { "\($0.name)\($0.shape)" }, shapesB = b.parameters.map { "\($0.name)\($0.shape)" }
    guard shapesA == shapesB else {
        Issue.record("parameter names/shapes differ: \(shapesA) vs \(shapesB) \(comment)", sourceLocation: sourceLocation)
        return
    }
    var differences = [String]()
    for (x, y) in zip(a.parameters, b.parameters) where x.values.map(\.bitPattern) != y.values.map(\.bitPattern) {
        let largest = zip(x.values, y.values).map { abs($0 - $1) }.max() ?? 0
        differences.append("\(x.name): max |a − b| = \(largest)")
    }
    if !differences.isEmpty {
        Issue.record("parameters differ \(comment): \(differences.joined(separator: "; "))", sourceLocation: sourceLocation)
    }
}

/// The metrics as (name, bit pattern) pairs, for exact comparison.
func metricBits(_ metrics: [MetricValue]) -> [String] {
    metrics.map { "\($0.name)=\($0.value.bitPattern)" }
}

/// Records an issue for each tensor where max|a − b| / max|a| exceeds `bound` (CONVENTIONS.md's
/// "matches"); returns the largest such ratio seen, for a test to report.
@discardableResult
func expectMatching(_ reference: [(name: String, shape: [Int], values: [Float])], _ other: [(name: String, shape: [Int], values: [Float])],
                    bound: Float = 1e-5, _ comment: String = "", sourceLocation: SourceLocation = #_sourceLocation) -> Float {
    let byName = Dictionary(uniqueKeysWithValues: other.map { ($0.name, $0) })
    var worst: Float = 0
    for tensor in reference {
        guard let peer = byName[tensor.name], peer.shape == tensor.shape else {
            Issue.record("\(tensor.name)\(tensor.shape) is missing or has another shape \(comment)", sourceLocation: sourceLocation)
            continue
        }
        let scale = tensor.values.map(abs).max() ?? 0
        let difference = zip(tensor.values, peer.values).map { abs($0 - $1) }.max() ?? 0
        let ratio = scale > 0 ? difference / scale : difference
        worst = max(worst, ratio)
        if !(ratio <= bound) {
            Issue.record("\(tensor.name): max|Δ|/max|ref| = \(ratio) > \(bound) \(comment)", sourceLocation: sourceLocation)
        }
    }
    if other.count != reference.count { Issue.record("\(other.count) tensors vs \(reference.count) \(comment)", sourceLocation: sourceLocation) }
    return worst
}
