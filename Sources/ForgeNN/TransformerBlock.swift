// One pre-LayerNorm transformer block: causal multi-head self-attention and a GELU MLP, each
// on a residual branch, Megatron-style splittable across tensor-parallel ranks.
import ForgeTensor

/// x → x + Dropout(Attention(LN₁(x))) → r + Dropout(MLP(LN₂(r))).
///
/// With a tensor-parallel group of T ranks, this rank holds H/T heads (the QKV projection is
/// split by columns of the logical layer, the output projection by rows) and 1/T of the MLP's
/// hidden units (first Linear column-parallel, second row-parallel). Each branch then needs one
/// all-reduce forward (the row-parallel projection's partial sums, before its bias) and one
/// backward (the branch's input gradient, before its layer norm's backward). Dropout masks are
/// drawn on whole rows after those reductions, so every layout draws the same masks.
///
/// Concurrency: not Sendable; confined to the training thread, like every layer.
public final class TransformerBlock: Layer {
    public let width: Int
    public let heads: Int
    public let hiddenWidth: Int
    public let dropoutRate: Float
    public let contextLength: Int
    public var inputWidth: Int { width }
    public var outputWidth: Int { width }
    private let group: (any TensorParallelGroup)?
    private let localHeads: Int
    private let localWidth: Int
    private let localHidden: Int
    private let headWidth: Int
    private let residualStd: Float

    private let norm1: LayerNorm
    private let qkv: Linear
    private let projection: Linear
    private let dropout1: Dropout
    private let norm2: LayerNorm
    private let fc1: Linear
    private let fc2: Linear
    private let dropout2: Dropout
    private var qkvBias: Parameter?
    private var projectionBias: Parameter?
    private var fc2Bias: Parameter?

    private var device: (any Device)?
    private var attended: Tensor?       // [maxBatch, localWidth]: softmax(QKᵀ)V of this rank's heads
    private var queryKeyValue: Tensor?  // the QKV projection's output of the latest forward
    private var probabilities: Tensor?  // per sequence and head, a [L, L] block
    private var residual: Tensor?       // x + attention branch
    private var output: Tensor?
    private var gradQKV: Tensor?
    private var gradAttended: Tensor?
    private var gradScores: Tensor?     // one [L, L] scratch block
    private var gradResidual: Tensor?
    private var gradInput: Tensor?
    private var rows = 0
    private var sequenceLength = 1

    /// A block of `width` with `heads` heads, an MLP of `hiddenWidth`, dropout `dropout` (keyed
    /// by `salt` and `salt + 1`); `layers` (the model's depth) scales the residual projections'
    /// initial values by 1/√(2·layers), as GPT-2 does.
    public init(width: Int, heads: Int, hiddenWidth: Int, contextLength: Int, dropout: Float, layers: Int, salt: UInt64,
                group: (any TensorParallelGroup)? = nil) {
        let parts = group?.size ?? 1
        precondition(width % heads == 0, "width \(width) is not a multiple of \(heads) heads")
        precondition(heads % parts == 0 && hiddenWidth % parts == 0, "\(heads) heads and \(hiddenWidth) hidden units do not split over \(parts) ranks")
        self.width = width
        self.heads = heads
        self.hiddenWidth = hiddenWidth
        self.dropoutRate = dropout
        self.contextLength = contextLength
        self.group = parts > 1 ? group : nil
        localHeads = heads / parts
        headWidth = width / heads
        localWidth = localHeads * headWidth
        localHidden = hiddenWidth / parts
        residualStd = 0.02 / (2 * Float(max(layers, 1))).squareRoot()
        norm1 = LayerNorm(width: width)
        qkv = Linear(width, 3 * localWidth)
        projection = Linear(localWidth, width, bias: false)
        dropout1 = Dropout(rate: dropout, width: width, salt: salt)
        norm2 = LayerNorm(width: width)
        fc1 = Linear(width, localHidden, activation: .gelu)
        fc2 = Linear(localHidden, width, bias: false)
        dropout2 = Dropout(rate: dropout, width: width, salt: salt + 1)
    }

    public var parameterSpecs: [ParameterSpec] {
        let normal = Initializer.normal(standardDeviation: 0.02), residual = Initializer.normal(standardDeviation: residualStd)
        return [
            ParameterSpec(name: "norm1.weight", shape: [width], initializer: .ones),
            ParameterSpec(name: "norm1.bias", shape: [width], initializer: .zeros),
            ParameterSpec(name: "attention.qkv.weight", shape: [3 * localWidth, width], initializer: normal, split: .rows(groups: 3)),
            ParameterSpec(name: "attention.qkv.bias", shape: [3 * localWidth], initializer: .zeros, split: .rows(groups: 3)),
            ParameterSpec(name: "attention.projection.weight", shape: [width, localWidth], initializer: residual, split: .columns),
            ParameterSpec(name: "attention.projection.bias", shape: [width], initializer: .zeros),
            ParameterSpec(name: "norm2.weight", shape: [width], initializer: .ones),
            ParameterSpec(name: "norm2.bias", shape: [width], initializer: .zeros),
            ParameterSpec(name: "mlp.fc1.weight", shape: [localHidden, width], initializer: normal, split: .rows(groups: 1)),
            ParameterSpec(name: "mlp.fc1.bias", shape: [localHidden], initializer: .zeros, split: .rows(groups: 1)),
            ParameterSpec(name: "mlp.fc2.weight", shape: [width, localHidden], initializer: residual, split: .columns),
            ParameterSpec(name: "mlp.fc2.bias", shape: [width], initializer: .zeros),
        ]
    }

    public func bind(_ parameters: [Parameter]) {
        norm1.bind(Array(parameters[0..<2]))
        qkv.bind(Array(parameters[2..<4]))
        qkvBias = parameters[3]
        projection.bind([parameters[4]])
        projectionBias = parameters[5]
        norm2.bind(Array(parameters[6..<8]))
        fc1.bind(Array(parameters[8..<10]))
        fc2.bind([parameters[10]])
        fc2Bias = parameters[11]
    }

    public func prepare(maxBatch: Int, device: any Device) {
        self.device = device
        for layer: any Layer in [norm1, qkv, projection, dropout1, norm2, fc1, fc2, dropout2] {
            layer.prepare(maxBatch: maxBatch, device: device)
        }
        attended = Tensor(zeros: [maxBatch, localWidth], on: device)
        // Sequences of L tokens need L·L scores per head; L ≤ context, so rows·context bounds it.
        probabilities = Tensor(zeros: [maxBatch * contextLength * localHeads], on: device)
        residual = Tensor(zeros: [maxBatch, width], on: device)
        output = Tensor(zeros: [maxBatch, width], on: device)
        gradQKV = Tensor(zeros: [maxBatch, 3 * localWidth], on: device)
        gradScores = Tensor(zeros: [contextLength, contextLength], on: device)
        gradResidual = Tensor(zeros: [maxBatch, width], on: device)
        gradInput = Tensor(zeros: [maxBatch, width], on: device)
    }

    /// Head h of sequence s inside a [rows, stride] matrix whose columns start at `column`.
    private func headView(_ t: Tensor, sequence s: Int, column: Int) -> Tensor {
        let length = sequenceLength, ld = t.strides[0]
        return Tensor(storage: t.storage, offset: t.offset + s * length * ld + column, shape: [length, headWidth], strides: [ld, 1])
    }

    private func probabilityBlock(sequence s: Int, head h: Int) -> Tensor {
        let length = sequenceLength
        guard let probabilities else { preconditionFailure("TransformerBlock used before prepare") }
        return Tensor(storage: probabilities.storage, offset: (s * localHeads + h) * length * length, shape: [length, length])
    }

    public func forward(_ x: Tensor, context: ForwardContext) -> Tensor {
        guard let device, let attended, let residual, let output, let projectionBias, let fc2Bias else {
            preconditionFailure("TransformerBlock used before prepare/bind")
        }
        rows = x.shape[0]
        sequenceLength = context.sequenceLength
        precondition(rows % sequenceLength == 0 && sequenceLength <= contextLength, "\(rows) rows are not whole sequences of \(sequenceLength)")
        let sequences = rows / sequenceLength
        // Attention branch.
        let q = qkv.forward(norm1.forward(x, context: context), context: context)
        queryKeyValue = q
        let o = attended.rows(0..<rows)
        let scale = 1 / Float(headWidth).squareRoot()
        var queries = [Tensor](), keys = [Tensor](), values = [Tensor](), scores = [Tensor](), outputs = [Tensor]()
        for s in 0..<sequences {
            for h in 0..<localHeads {
                queries.append(headView(q, sequence: s, column: h * headWidth))
                keys.append(headView(q, sequence: s, column: localWidth + h * headWidth))
                values.append(headView(q, sequence: s, column: 2 * localWidth + h * headWidth))
                scores.append(probabilityBlock(sequence: s, head: h))
                outputs.append(headView(o, sequence: s, column: h * headWidth))
            }
        }
        device.gemmBatched(queries, transposeA: false, keys, transposeB: true, into: scores, alpha: scale, beta: 0)
        for block in scores { device.causalSoftmax(block) }
        device.gemmBatched(scores, transposeA: false, values, transposeB: false, into: outputs, alpha: 1, beta: 0)
        let attention = projection.forward(o, context: context)
        group?.allReduceSum(attention)
        device.biasActivation(attention, bias: projectionBias.value, activation: .identity, into: attention)
        let r = residual.rows(0..<rows)
        device.copy(from: x, to: r)
        device.axpby(alpha: 1, dropout1.forward(attention, context: context), beta: 1, r)
        // MLP branch.
        let m = fc2.forward(fc1.forward(norm2.forward(r, context: context), context: context), context: context)
        group?.allReduceSum(m)
        device.biasActivation(m, bias: fc2Bias.value, activation: .identity, into: m)
        let y = output.rows(0..<rows)
        device.copy(from: r, to: y)
        device.axpby(alpha: 1, dropout2.forward(m, context: context), beta: 1, y)
        return y
    }

    public func backward(_ dy: Tensor, needInputGradient: Bool) -> Tensor? {
        guard let device, let q = queryKeyValue, let gradQKV, let gradScores, let gradResidual, let gradInput, let projectionBias, let fc2Bias else {
            preconditionFailure("TransformerBlock backward before forward")
        }
        precondition(dy.shape[0] == rows, "backward of \(dy.shape[0]) rows after a forward of \(rows)")
        let sequences = rows / sequenceLength
        // MLP branch: dr = dy + LN₂ᵀ(fc1ᵀ(fc2ᵀ(dropout₂ᵀ dy))).
        guard let dm = dropout2.backward(dy, needInputGradient: true) else { preconditionFailure("dropout returns its input gradient") }
        device.sumRows(dm, into: fc2Bias.gradient, beta: 0)
        guard let dHidden = fc2.backward(dm, needInputGradient: true),
              let dNormed2 = fc1.backward(dHidden, needInputGradient: true) else { preconditionFailure("linear input gradients") }
        group?.allReduceSum(dNormed2)
        guard let dBranch2 = norm2.backward(dNormed2, needInputGradient: true) else { preconditionFailure("layer norm input gradient") }
        let dr = gradResidual.rows(0..<rows)
        device.copy(from: dy, to: dr)
        device.axpby(alpha: 1, dBranch2, beta: 1, dr)
        // Attention branch.
        guard let da = dropout1.backward(dr, needInputGradient: true) else { preconditionFailure("dropout returns its input gradient") }
        device.sumRows(da, into: projectionBias.gradient, beta: 0)
        guard let dO = projection.backward(da, needInputGradient: true) else { preconditionFailure("linear input gradient") }
        let dq = gradQKV.rows(0..<rows)
        let scale = 1 / Float(headWidth).squareRoot()
        let length = sequenceLength
        let dS = Tensor(storage: gradScores.storage, offset: gradScores.offset, shape: [length, length])
        for s in 0..<sequences {
            for h in 0..<localHeads {
                let p = probabilityBlock(sequence: s, head: h)
                let query = headView(q, sequence: s, column: h * headWidth)
                let key = headView(q, sequence: s, column: localWidth + h * headWidth)
                let value = headView(q, sequence: s, column: 2 * localWidth + h * headWidth)
                let gradOut = headView(dO, sequence: s, column: h * headWidth)
                // dV = Pᵀ dO; dP = dO Vᵀ; dS = softmax'(dP); dQ = scale · dS K; dK = scale · dSᵀ Q.
                device.gemm(p, transposeA: true, gradOut, transposeB: false, into: headView(dq, sequence: s, column: 2 * localWidth + h * headWidth), alpha: 1, beta: 0)
                device.gemm(gradOut, transposeA: false, value, transposeB: true, into: dS, alpha: 1, beta: 0)
                device.softmaxBackward(probabilities: p, gradOutput: dS, into: dS)
                device.gemm(dS, transposeA: false, key, transposeB: false, into: headView(dq, sequence: s, column: h * headWidth), alpha: scale, beta: 0)
                device.gemm(dS, transposeA: true, query, transposeB: false, into: headView(dq, sequence: s, column: localWidth + h * headWidth), alpha: scale, beta: 0)
            }
        }
        guard let dNormed1 = qkv.backward(dq, needInputGradient: true) else { preconditionFailure("linear input gradient") }
        // The key bias adds q·b to every score of a query, which its softmax ignores: its true
        // gradient is zero and the computed one rounding noise, which Adam would scale up into
        // a random walk that differs with the summation order. It stays at zero instead.
        if let qkvBias {
            device.fill(Tensor(storage: qkvBias.gradient.storage, offset: qkvBias.gradient.offset + localWidth, shape: [localWidth]), value: 0)
        }
        group?.allReduceSum(dNormed1)
        guard let dBranch1 = norm1.backward(dNormed1, needInputGradient: true) else { preconditionFailure("layer norm input gradient") }
        let dx = gradInput.rows(0..<rows)
        device.copy(from: dr, to: dx)
        device.axpby(alpha: 1, dBranch1, beta: 1, dx)
        return needInputGradient ? dx : nil
    }
}
