// A fully connected layer y = act(x · Wᵀ + b), with the activation fused into the bias pass.
import ForgeTensor

/// Linear layer with weights [out, in] (PyTorch's layout, so safetensors files interoperate).
public final class Linear: Layer {
    public let inputWidth: Int
    public let outputWidth: Int
    public let activation: Activation
    public let useBias: Bool
    private var weight: Parameter?
    private var bias: Parameter?
    private var device: (any Device)?
    private var input: Tensor?
    private var preActivation: Tensor?   // only for GELU, whose derivative needs z
    private var output: Tensor?
    private var gradPre: Tensor?
    private var gradInput: Tensor?

    public init(_ inputWidth: Int, _ outputWidth: Int, activation: Activation = .identity, bias: Bool = true) {
        self.inputWidth = inputWidth
        self.outputWidth = outputWidth
        self.activation = activation
        self.useBias = bias
    }

    public var parameterSpecs: [ParameterSpec] {
        let initializer: Initializer = switch activation {
        case .relu, .gelu: .heNormal(fanIn: inputWidth)
        case .identity, .tanh, .sigmoid: .xavierUniform(fanIn: inputWidth, fanOut: outputWidth)
        }
        var specs = [ParameterSpec(name: "weight", shape: [outputWidth, inputWidth], initializer: initializer)]
        if useBias { specs.append(ParameterSpec(name: "bias", shape: [outputWidth], initializer: .zeros)) }
        return specs
    }

    public func bind(_ parameters: [Parameter]) {
        weight = parameters[0]
        bias = useBias ? parameters[1] : nil
    }

    public func prepare(maxBatch: Int, device: any Device) {
        self.device = device
        output = Tensor(zeros: [maxBatch, outputWidth], on: device)
        preActivation = activation == .gelu ? Tensor(zeros: [maxBatch, outputWidth], on: device) : nil
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
            device.biasActivation(z, bias: bias?.value, activation: .identity, into: z)
            device.biasActivation(z, bias: nil, activation: activation, into: y)
        } else {
            device.gemm(x, transposeA: false, weight.value, transposeB: true, into: y, alpha: 1, beta: 0)
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
        return dx
    }
}
