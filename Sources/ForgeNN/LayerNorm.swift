// Layer normalisation over each row, with a learned gain and shift.
import ForgeTensor

/// y = (x − mean(x)) / √(var(x) + ε) · gamma + beta, per row.
public final class LayerNorm: Layer {
    public let inputWidth: Int
    public var outputWidth: Int { inputWidth }
    public let epsilon: Float
    private var gamma: Parameter?
    private var beta: Parameter?
    private var device: (any Device)?
    private var input: Tensor?
    private var output: Tensor?
    private var mean: Tensor?
    private var inverseStd: Tensor?
    private var gradInput: Tensor?

    public init(width: Int, epsilon: Float = 1e-5) {
        self.inputWidth = width
        self.epsilon = epsilon
    }

    public var parameterSpecs: [ParameterSpec] {
        [ParameterSpec(name: "weight", shape: [inputWidth], initializer: .ones),
         ParameterSpec(name: "bias", shape: [inputWidth], initializer: .zeros)]
    }

    public func bind(_ parameters: [Parameter]) {
        gamma = parameters[0]
        beta = parameters[1]
    }

    public func prepare(maxBatch: Int, device: any Device) {
        self.device = device
        output = Tensor(zeros: [maxBatch, inputWidth], on: device)
        gradInput = Tensor(zeros: [maxBatch, inputWidth], on: device)
        mean = Tensor(zeros: [maxBatch], on: device)
        inverseStd = Tensor(zeros: [maxBatch], on: device)
    }

    public func forward(_ x: Tensor, context: ForwardContext) -> Tensor {
        guard let device, let gamma, let beta, let output, let mean, let inverseStd else { preconditionFailure("LayerNorm used before prepare") }
        let y = output.rows(0..<x.shape[0])
        input = x
        device.layerNorm(x, gamma: gamma.value, beta: beta.value, epsilon: epsilon, into: y, mean: mean, inverseStd: inverseStd)
        return y
    }

    public func backward(_ dy: Tensor, needInputGradient: Bool) -> Tensor? {
        guard let device, let gamma, let beta, let input, let mean, let inverseStd, let gradInput else {
            preconditionFailure("LayerNorm backward before forward")
        }
        device.fill(gamma.gradient, value: 0)
        device.fill(beta.gradient, value: 0)
        let dx = gradInput.rows(0..<dy.shape[0])
        device.layerNormBackward(input, gamma: gamma.value, mean: mean, inverseStd: inverseStd, gradOutput: dy,
                                 gradInput: dx, gradGamma: gamma.gradient, gradBeta: beta.gradient)
        return needInputGradient ? dx : nil
    }
}
