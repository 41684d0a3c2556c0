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
    public var shape: [Int]
    public var initializer: Initializer

    public init(name: String, shape: [Int], initializer: Initializer) {
        self.name = name
        self.shape = shape
        self.initializer = initializer
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
