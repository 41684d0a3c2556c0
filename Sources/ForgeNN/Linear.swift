// A fully connected layer y = act(x · Wᵀ + b), with the activation fused into the bias pass.
import ForgeTensor

/// How a Linear layer is split across tensor-parallel ranks (Megatron's pairs).
public enum LinearSplit {
    /// The whole layer on every rank.
    case none
    /// Each rank computes its part of the outputs (the weight's rows); the input is whole, so
    /// the input gradient is a partial sum, all-reduced backward.
    case column(any TensorParallelGroup)
    /// Each rank reads its part of the inputs (the weight's columns, following a column
    /// split) and produces a partial sum of every output, all-reduced forward before the bias
    /// and activation.
    case row(any TensorParallelGroup)
}

/// Linear layer with weights [out, in] (PyTorch's layout, so safetensors files interoperate).
/// Under a `LinearSplit`, `inputWidth`/`outputWidth` are this rank's.
public final class Linear: Layer {
    public let inputWidth: Int
    public let outputWidth: Int
    public let activation: Activation
    public let useBias: Bool
    public let split: LinearSplit
    private var weight: Parameter?
    private var bias: Parameter?
    private var device: (any Device)?
    private var input: Tensor?
    private var preActivation: Tensor?   // only for GELU, whose derivative needs z
    private var output: Tensor?
    private var gradPre: Tensor?
    private var gradInput: Tensor?

    /// A layer of `inputWidth` → `outputWidth` (the whole layer's widths) with this rank's
    /// part under `split`.
    public init(_ inputWidth: Int, _ outputWidth: Int, activation: Activation = .identity, bias: Bool = true, split: LinearSplit = .none) {
        switch split {
        case .none:
            self.inputWidth = inputWidth
            self.outputWidth = outputWidth
        case .column(let group):
            precondition(outputWidth % group.size == 0, "\(outputWidth) outputs do not split over \(group.size) ranks")
            self.inputWidth = inputWidth
            self.outputWidth = outputWidth / group.size
        case .row(let group):
            precondition(inputWidth % group.size == 0, "\(inputWidth) inputs do not split over \(group.size) ranks")
            self.inputWidth = inputWidth / group.size
            self.outputWidth = outputWidth
        }
        self.activation = activation
        self.useBias = bias
        self.split = split
    }

    /// The whole layer's widths, whatever part this rank holds.
    private var logicalWidths: (inputs: Int, outputs: Int) {
        switch split {
        case .none: (inputWidth, outputWidth)
        case .column(let group): (inputWidth, outputWidth * group.size)
        case .row(let group): (inputWidth * group.size, outputWidth)
        }
    }

    public var parameterSpecs: [ParameterSpec] {
        let (fanIn, fanOut) = logicalWidths
        let initializer: Initializer = switch activation {
        case .relu, .gelu: .heNormal(fanIn: fanIn)
        case .identity, .tanh, .sigmoid: .xavierUniform(fanIn: fanIn, fanOut: fanOut)
        }
        let (weightSplit, biasSplit): (TensorSplit, TensorSplit) = switch split {
        case .none: (.replicated, .replicated)
        case .column: (.rows(groups: 1), .rows(groups: 1))
        case .row: (.columns, .replicated)
        }
        var specs = [ParameterSpec(name: "weight", shape: [outputWidth, inputWidth], initializer: initializer, split: weightSplit)]
        if useBias { specs.append(ParameterSpec(name: "bias", shape: [outputWidth], initializer: .zeros, split: biasSplit)) }
        return specs
    }

    /// The group a row split reduces its outputs over.
    private var rowGroup: (any TensorParallelGroup)? {
        if case .row(let group) = split { return group }
        return nil
    }

    public func bind(_ parameters: [Parameter]) {
        weight = parameters[0]
        bias = useBias ? parameters[1] : nil
    }

    public func prepare(maxBatch: Int, device: any Device) {
        self.device = device
        output = Tensor(zeros: [maxBatch, outputWidth], on: device)
        // A row split reduces before its bias and activation: it needs z apart from y.
        preActivation = activation == .gelu || (rowGroup != nil && activation != .identity) ? Tensor(zeros: [maxBatch, outputWidth], on: device) : nil
        gradPre = activation == .identity ? nil : Tensor(zeros: [maxBatch, outputWidth], on: device)
        gradInput = Tensor(zeros: [maxBatch, inputWidth], on: device)
    }

    public func forward(_ x: Tensor, context: ForwardContext) -> Tensor {
        guard let device, let weight, let output else { preconditionFailure("Linear used before prepare/bind") }
        let rows = x.shape[0]
        let y = output.rows(0..<rows)
        input = x
        if let preActivation {
            let z = preActivation.rows(0..<rows)
            device.gemm(x, transposeA: false, weight.value, transposeB: true, into: z, alpha: 1, beta: 0)
            rowGroup?.allReduceSum(z)
            device.biasActivation(z, bias: bias?.value, activation: .identity, into: z)
            device.biasActivation(z, bias: nil, activation: activation, into: y)
        } else {
            device.gemm(x, transposeA: false, weight.value, transposeB: true, into: y, alpha: 1, beta: 0)
            rowGroup?.allReduceSum(y)
            device.biasActivation(y, bias: bias?.value, activation: activation, into: y)
        }
        return y
    }

    public func backward(_ dy: Tensor, needInputGradient: Bool) -> Tensor? {
        guard let device, let weight, let input, let output, let gradInput else { preconditionFailure("Linear backward before forward") }
        let rows = dy.shape[0]
        var dz = dy
        if let gradPre {
            dz = gradPre.rows(0..<rows)
            let z = preActivation?.rows(0..<rows) ?? output.rows(0..<rows)
            device.activationBackward(activation, input: z, output: output.rows(0..<rows), gradOutput: dy, into: dz)
        }
        // dW = dzᵀ · x, db = Σ rows of dz, dx = dz · W.
        device.gemm(dz, transposeA: true, input, transposeB: false, into: weight.gradient, alpha: 1, beta: 0)
        if let bias { device.sumRows(dz, into: bias.gradient, beta: 0) }
        guard needInputGradient else { return nil }
        let dx = gradInput.rows(0..<rows)
        device.gemm(dz, transposeA: false, weight.value, transposeB: false, into: dx, alpha: 1, beta: 0)
        // A column split saw the whole input: its input gradient is this rank's share.
        if case .column(let group) = split { group.allReduceSum(dx) }
        return dx
    }
}
