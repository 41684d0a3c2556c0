// Trainable parameters: a named value with its gradient, both views into flat blocks so a
// whole model's gradients reduce (and optimizers update) as one buffer.
import ForgeRandom
import ForgeTensor

/// How a parameter's initial values are drawn.
public enum Initializer: Sendable, Hashable {
    case zeros
    case ones
    /// He (Kaiming) normal: N(0, 2/fanIn), for ReLU-family layers.
    case heNormal(fanIn: Int)
    /// He uniform: U(±√(6/fanIn)).
    case heUniform(fanIn: Int)
    /// Xavier (Glorot) uniform: U(±√(6/(fanIn + fanOut))), for tanh/sigmoid/linear layers.
    case xavierUniform(fanIn: Int, fanOut: Int)
    /// Xavier normal: N(0, 2/(fanIn + fanOut)).
    case xavierNormal(fanIn: Int, fanOut: Int)
    case normal(standardDeviation: Float)

    /// Draws `count` values from `random`.
    public func values(count: Int, random: inout RandomStream) -> [Float] {
        switch self {
        case .zeros: return [Float](repeating: 0, count: count)
        case .ones: return [Float](repeating: 1, count: count)
        case .heNormal(let fanIn):
            return Initializer.normal(count, std: (2 / Float(max(fanIn, 1))).squareRoot(), &random)
        case .heUniform(let fanIn):
            return Initializer.uniform(count, limit: (6 / Float(max(fanIn, 1))).squareRoot(), &random)
        case .xavierUniform(let fanIn, let fanOut):
            return Initializer.uniform(count, limit: (6 / Float(max(fanIn + fanOut, 1))).squareRoot(), &random)
        case .xavierNormal(let fanIn, let fanOut):
            return Initializer.normal(count, std: (2 / Float(max(fanIn + fanOut, 1))).squareRoot(), &random)
        case .normal(let std):
            return Initializer.normal(count, std: std, &random)
        }
    }

    private static func uniform(_ count: Int, limit: Float, _ random: inout RandomStream) -> [Float] {
        (0..<count).map { _ in (2 * random.nextUnit() - 1) * limit }
    }

    private static func normal(_ count: Int, std: Float, _ random: inout RandomStream) -> [Float] {
        (0..<count).map { _ in random.nextNormal() * std }
    }
}

/// A parameter a layer asks for, before memory exists.
public struct ParameterSpec: Sendable, Hashable {
    /// Name within the layer ("weight", "bias").
    public var name: String
    /// This rank's shape (under tensor parallelism, its part of the logical tensor).
    public var shape: [Int]
    public var initializer: Initializer
    /// How the logical tensor is split across tensor-parallel ranks.
    public var split: TensorSplit

    public init(name: String, shape: [Int], initializer: Initializer, split: TensorSplit = .replicated) {
        self.name = name
        self.shape = shape
        self.initializer = initializer
        self.split = split
    }
}

/// How a tensor-parallel rank's parameter relates to the logical (whole-model) tensor, so
/// initial values, checkpoints and final models are the same whatever the tensor degree.
public enum TensorSplit: Sendable, Hashable, Codable {
    /// Every rank holds the whole tensor (layer norms, biases added after a reduction).
    case replicated
    /// Dimension 0 is `groups` equal blocks, each cut into contiguous equal parts; rank r holds
    /// part r of every block, in block order (a QKV projection: groups 3, so each rank keeps
    /// the rows of its heads' queries, keys and values).
    case rows(groups: Int)
    /// Dimension 1 cut into contiguous equal parts; rank r holds part r.
    case columns

    /// The logical shape of a tensor whose part on one of `parts` ranks has shape `local`.
    public func logicalShape(local: [Int], parts: Int) -> [Int] {
        var shape = local
        switch self {
        case .replicated: break
        case .rows: shape[0] *= parts
        case .columns: shape[1] *= parts
        }
        return shape
    }

    /// For each contiguous run of the local tensor (row-major), where it lies in the logical
    /// tensor: (logical offset, local offset, count).
    public func runs(local: [Int], part: Int, parts: Int) -> [(logical: Int, local: Int, count: Int)] {
        let count = local.reduce(1, *)
        switch self {
        case .replicated:
            return [(0, 0, count)]
        case .rows(let groups):
            let rowWidth = local.dropFirst().reduce(1, *)
            let partRows = local[0] / groups
            let blockRows = partRows * parts
            return (0..<groups).map { group in
                ((group * blockRows + part * partRows) * rowWidth, group * partRows * rowWidth, partRows * rowWidth)
            }
        case .columns:
            let rows = local[0], columns = local.count > 1 ? local[1] : 1
            let inner = local.dropFirst(2).reduce(1, *)
            let logicalRow = columns * parts * inner
            return (0..<rows).map { row in (row * logicalRow + part * columns * inner, row * columns * inner, columns * inner) }
        }
    }

    /// Part `part` of `parts` of a logical tensor's values.
    public func slice(_ logical: [Float], local: [Int], part: Int, parts: Int) -> [Float] {
        guard parts > 1, self != .replicated else { return logical }
        var result = [Float](repeating: 0, count: local.reduce(1, *))
        for run in runs(local: local, part: part, parts: parts) {
            for i in 0..<run.count { result[run.local + i] = logical[run.logical + i] }
        }
        return result
    }
}

/// A parameter bound to memory: views into the block's value and gradient buffers.
public struct Parameter {
    /// Full name ("layers.0.weight").
    public let name: String
    public let value: Tensor
    public let gradient: Tensor
    /// Offset of this parameter in the flat block, in elements.
    public let offset: Int
}
