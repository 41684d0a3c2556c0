// Token and position embeddings: the first layer of a language model.
import ForgeTensor

/// Maps token ids to vectors: out[r] = token[id_r] + position[r mod L], where L is the
/// sequence length of the pass (`ForwardContext.sequenceLength`, at most `contextLength`).
///
/// Input: a [rows, 1] matrix of token ids stored as floats. No input gradient exists.
public final class Embedding: Layer {
    public let vocabulary: Int
    public let width: Int
    public let contextLength: Int
    /// Set when an output head shares the token table: the head writes its gradient into the
    /// table's gradient first (it runs backward earlier), and this layer adds to it.
    public var sharesTokenGradient = false
    public var inputWidth: Int { 1 }
    public var outputWidth: Int { width }
    public private(set) var token: Parameter?
    private var position: Parameter?
    private var device: (any Device)?
    private var input: Tensor?
    private var output: Tensor?
    private var sequenceLength = 1

    public init(vocabulary: Int, width: Int, contextLength: Int) {
        self.vocabulary = vocabulary
        self.width = width
        self.contextLength = contextLength
    }

    public var parameterSpecs: [ParameterSpec] {
        [ParameterSpec(name: "token.weight", shape: [vocabulary, width], initializer: .normal(standardDeviation: 0.02)),
         ParameterSpec(name: "position.weight", shape: [contextLength, width], initializer: .normal(standardDeviation: 0.01))]
    }

    public func bind(_ parameters: [Parameter]) {
        token = parameters[0]
        position = parameters[1]
    }

    public func prepare(maxBatch: Int, device: any Device) {
        self.device = device
        output = Tensor(zeros: [maxBatch, width], on: device)
    }

    public func forward(_ x: Tensor, context: ForwardContext) -> Tensor {
        guard let device, let token, let position, let output else { preconditionFailure("Embedding used before prepare/bind") }
        let rows = x.shape[0], length = context.sequenceLength
        precondition(length >= 1 && length <= contextLength && rows % length == 0,
                     "\(rows) rows are not whole sequences of \(length) tokens (context \(contextLength))")
        input = x
        sequenceLength = length
        let y = output.rows(0..<rows)
        device.gatherRows(token.value, indices: x.reshaped([rows]), into: y)
        let positions = position.value.rows(0..<length)
        for start in stride(from: 0, to: rows, by: length) {
            device.axpby(alpha: 1, positions, beta: 1, y.rows(start..<(start + length)))
        }
        return y
    }

    public func backward(_ dy: Tensor, needInputGradient: Bool) -> Tensor? {
        guard let device, let token, let position, let input else { preconditionFailure("Embedding backward before forward") }
        let rows = dy.shape[0], length = sequenceLength
        if !sharesTokenGradient { device.fill(token.gradient, value: 0) }
        device.scatterAddRows(dy, indices: input.reshaped([rows]), into: token.gradient)
        device.fill(position.gradient, value: 0)
        let positions = position.gradient.rows(0..<length)
        for start in stride(from: 0, to: rows, by: length) {
            device.axpby(alpha: 1, dy.rows(start..<(start + length)), beta: 1, positions)
        }
        return nil
    }
}

/// The language model's last layer: a final layer norm, then logits over the vocabulary from
/// its own projection or from the token embedding's table (tied weights).
public final class OutputHead: Layer {
    public let width: Int
    public let vocabulary: Int
    public var inputWidth: Int { width }
    public var outputWidth: Int { vocabulary }
    /// The embedding whose table this head reads, when tied.
    public let tiedTo: Embedding?
    private let norm: LayerNorm
    private var projection: Parameter?
    private var device: (any Device)?
    private var normalized: Tensor?
    private var output: Tensor?
    private var gradNormalized: Tensor?

    /// A head with a projection of its own (`tiedTo` nil) or sharing `tiedTo`'s token table.
    public init(width: Int, vocabulary: Int, tiedTo: Embedding? = nil) {
        self.width = width
        self.vocabulary = vocabulary
        self.tiedTo = tiedTo
        norm = LayerNorm(width: width)
        tiedTo?.sharesTokenGradient = true
    }

    public var parameterSpecs: [ParameterSpec] {
        var specs = norm.parameterSpecs.map { ParameterSpec(name: "norm.\($0.name)", shape: $0.shape, initializer: $0.initializer) }
        if tiedTo == nil {
            specs.append(ParameterSpec(name: "weight", shape: [vocabulary, width], initializer: .normal(standardDeviation: 0.02)))
        }
        return specs
    }

    public func bind(_ parameters: [Parameter]) {
        norm.bind(Array(parameters[0..<2]))
        projection = tiedTo == nil ? parameters[2] : nil
    }

    public func prepare(maxBatch: Int, device: any Device) {
        self.device = device
        norm.prepare(maxBatch: maxBatch, device: device)
        output = Tensor(zeros: [maxBatch, vocabulary], on: device)
        gradNormalized = Tensor(zeros: [maxBatch, width], on: device)
    }

    private var weight: Parameter? { projection ?? tiedTo?.token }

    public func forward(_ x: Tensor, context: ForwardContext) -> Tensor {
        guard let device, let weight, let output else { preconditionFailure("OutputHead used before prepare/bind") }
        let h = norm.forward(x, context: context)
        normalized = h
        let y = output.rows(0..<x.shape[0])
        device.gemm(h, transposeA: false, weight.value, transposeB: true, into: y, alpha: 1, beta: 0)
        return y
    }

    public func backward(_ dy: Tensor, needInputGradient: Bool) -> Tensor? {
        guard let device, let weight, let normalized, let gradNormalized else { preconditionFailure("OutputHead backward before forward") }
        let rows = dy.shape[0]
        // Tied: this writes the table's gradient first; the embedding adds its part later.
        device.gemm(dy, transposeA: true, normalized, transposeB: false, into: weight.gradient, alpha: 1, beta: 0)
        let dh = gradNormalized.rows(0..<rows)
        device.gemm(dy, transposeA: false, weight.value, transposeB: false, into: dh, alpha: 1, beta: 0)
        return norm.backward(dh, needInputGradient: needInputGradient)
    }
}
