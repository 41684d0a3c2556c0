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
