// How a model's layers split into pipeline stages: balanced by parameter count, or as the
// user's `--stage-map` (`forge_stage_map`) says.

/// Contiguous, in-order ranges of layer indices, one per pipeline stage, together covering
/// every layer exactly once.
///
/// Concurrency: a Sendable value.
public struct StagePartition: Sendable, Hashable, CustomStringConvertible {
    /// Layer indices of each stage.
    public let ranges: [Range<Int>]

    public var stages: Int { ranges.count }
    public var layerCount: Int { ranges.last?.upperBound ?? 0 }

    /// In the map's own syntax ("0-3,4-7").
    public var description: String {
        ranges.map { $0.count == 1 ? "\($0.lowerBound)" : "\($0.lowerBound)-\($0.upperBound - 1)" }.joined(separator: ",")
    }

    /// Splits layers whose parameter counts are `parameterCounts` into `stages` contiguous
    /// stages so that the largest stage's parameter count is as small as it can be.
    ///
    /// A layer without parameters (dropout, an activation) stays with the layer before it (a
    /// leading one with the first layer that has parameters), so no stage starts with one;
    /// each stage therefore needs a layer with parameters. Among equally balanced splits the
    /// one whose later stages are smaller wins. Dynamic programming over the U units
    /// (a layer with parameters and the parameterless layers after it): O(P · U²).
    public init(balancing parameterCounts: [Int], stages: Int) throws(StagePartitionError) {
        guard stages >= 1 else { throw .badDegree(stages) }
        // Units: [start, end) of layers, each but possibly the first starting at a layer with parameters.
        var starts = [Int]()
        for (index, count) in parameterCounts.enumerated() where count > 0 {
            starts.append(starts.isEmpty ? 0 : index)
        }
        guard starts.count >= stages else {
            throw .tooFewLayers(layersWithParameters: starts.count, stages: stages)
        }
        let ends = Array(starts.dropFirst()) + [parameterCounts.count]
        let weights = zip(starts, ends).map { parameterCounts[$0..<$1].reduce(0, +) }
        var prefix = [0]
        for weight in weights { prefix.append(prefix[prefix.count - 1] + weight) }
        let units = weights.count
        // cost[k][u]: the smallest possible largest stage when units 0..<u form k stages.
        var cost = Array(repeating: Array(repeating: Int.max, count: units + 1), count: stages + 1)
        var cut = Array(repeating: Array(repeating: 0, count: units + 1), count: stages + 1)
        cost[0][0] = 0
        for k in 1...stages {
            for u in k...units {
                for j in (k - 1)..<u where cost[k - 1][j] != Int.max {
                    let candidate = max(cost[k - 1][j], prefix[u] - prefix[j])
                    // On ties the cut moves right: later stages take no more than they must (the
                    // last one also computes the loss).
                    if candidate < cost[k][u] || (candidate == cost[k][u] && j > cut[k][u]) {
                        cost[k][u] = candidate
                        cut[k][u] = j
                    }
                }
            }
        }
        var bounds = [units]
        var u = units
        for k in stride(from: stages, to: 0, by: -1) {
            u = cut[k][u]
            bounds.append(u)
        }
        bounds.reverse()
        ranges = (0..<stages).map { stage in
            let first = starts[bounds[stage]]
            let last = bounds[stage + 1] == units ? parameterCounts.count : starts[bounds[stage + 1]]
            return first..<last
        }
    }

    /// Parses a user's map, e.g. "0-3,4-7": one entry per stage, each `FIRST-LAST` (inclusive)
    /// or a single index, in order, contiguous, covering layers 0..<`layerCount` exactly once.
    public init(map: String, layerCount: Int, stages: Int) throws(StagePartitionError) {
        guard stages >= 1 else { throw .badDegree(stages) }
        let entries = map.split(separator: ",", omittingEmptySubsequences: false)
            .map { String($0.filter { !$0.isWhitespace }) }
        guard entries.count == stages else {
            throw .badMap(map, reason: "it has \(entries.count) stage(s), the pipeline degree is \(stages)")
        }
        var ranges = [Range<Int>]()
        var next = 0
        for (stage, entry) in entries.enumerated() {
            let bounds = entry.split(separator: "-", omittingEmptySubsequences: false)
            guard (1...2).contains(bounds.count), let first = Int(bounds[0]), let last = Int(bounds[bounds.count - 1]),
                  first >= 0 else {
                throw .badMap(map, reason: "stage \(stage)'s entry '\(entry)' is not FIRST-LAST or a layer index")
            }
            guard first <= last else {
                throw .badMap(map, reason: "stage \(stage)'s entry '\(entry)' ends before it starts")
            }
            guard first == next else {
                let problem = first > next ? "skips layer(s) \(next)..<\(first)" : "repeats layer \(first)"
                throw .badMap(map, reason: "stage \(stage) starts at layer \(first) and \(problem): stages must be contiguous and in order")
            }
            guard last < layerCount else {
                throw .badMap(map, reason: "stage \(stage) reaches layer \(last), the model has layers 0-\(layerCount - 1)")
            }
            ranges.append(first..<(last + 1))
            next = last + 1
        }
        guard next == layerCount else {
            throw .badMap(map, reason: "layers \(next)-\(layerCount - 1) are in no stage (the model has \(layerCount) layers)")
        }
        self.ranges = ranges
    }
}

/// Why layers could not be split into stages. Messages name `forge_stage_map` /
/// `forge_pipeline_degree`, the keys a user sets.
public enum StagePartitionError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The pipeline degree is below 1.
    case badDegree(Int)
    /// Balancing needs a layer with parameters in every stage.
    case tooFewLayers(layersWithParameters: Int, stages: Int)
    /// The user's map is malformed or does not cover the model.
    case badMap(String, reason: String)

    public var description: String {
        switch self {
        case .badDegree(let degree):
            return "forge_pipeline_degree must be at least 1, not \(degree)"
        case .tooFewLayers(let count, let stages):
            return "cannot balance \(count) layer(s) with parameters over \(stages) pipeline stages: "
                + "lower forge_pipeline_degree or give forge_stage_map"
        case .badMap(let map, let reason):
            return "forge_stage_map '\(map)': \(reason) (expected e.g. '0-3,4-7', layers per stage)"
        }
    }

    /// The same problem as a hyperparameter problem, for validation reports.
    public var problem: HyperparameterProblem {
        switch self {
        case .badDegree(let degree):
            return .outOfRange(key: "forge_pipeline_degree", value: "\(degree)", range: "1 or more")
        case .tooFewLayers:
            return .conflict(key: "forge_pipeline_degree", reason: description)
        case .badMap(let map, let reason):
            return .badValue(key: "forge_stage_map", value: map, expected: "a layers-per-stage map like '0-3,4-7' (\(reason))")
        }
    }
}
