// A standalone pointwise nonlinearity (ReLU, GELU, Tanh, Sigmoid) as a layer.
import ForgeTensor

/// Applies an activation to every element. `Linear(…, activation:)` fuses the same thing.
public final class ActivationLayer: Layer {
    public let activation: Activation
    public let inputWidth: Int
    public var outputWidth: Int { inputWidth }
    private var device: (any Device)?
    private var input: Tensor?
    private var output: Tensor?
    private var gradInput: Tensor?

    public init(_ activation: Activation, width: Int) {
        self.activation = activation
        self.inputWidth = width
    }

    public static func relu(_ width: Int) -> ActivationLayer { ActivationLayer(.relu, width: width) }
    public static func gelu(_ width: Int) -> ActivationLayer { ActivationLayer(.gelu, width: width) }
    public static func tanh(_ width: Int) -> ActivationLayer { ActivationLayer(.tanh, width: width) }
    public static func sigmoid(_ width: Int) -> ActivationLayer { ActivationLayer(.sigmoid, width: width) }

    public func prepare(maxBatch: Int, device: any Device) {
        self.device = device
        output = Tensor(zeros: [maxBatch, inputWidth], on: device)
        gradInput = Tensor(zeros: [maxBatch, inputWidth], on: device)
    }

    public func forward(_ x: Tensor, context: ForwardContext) -> Tensor {
        guard let device, let output else { preconditionFailure("activation used before prepare") }
        let y = output.rows(0..<x.shape[0])
        input = x
        device.biasActivation(x, bias: nil, activation: activation, into: y)
        return y
    }

    public func backward(_ dy: Tensor, needInputGradient: Bool) -> Tensor? {
        guard needInputGradient else { return nil }
        guard let device, let input, let output, let gradInput else { preconditionFailure("activation backward before forward") }
        let rows = dy.shape[0]
        let dx = gradInput.rows(0..<rows)
        device.activationBackward(activation, input: input, output: output.rows(0..<rows), gradOutput: dy, into: dx)
        return dx
    }
}
