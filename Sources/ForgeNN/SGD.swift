// Stochastic gradient descent with momentum, Nesterov momentum and weight decay.
import ForgeTensor

/// SGD: v = μv + g + λw; w −= η·v (or η·(g + λw + μv) with Nesterov).
/// Weight decay applies to the whole block (biases included), as in PyTorch's default.
public final class SGD: Optimizer {
    public var learningRate: Float
    public let momentum: Float
    public let weightDecay: Float
    public let nesterov: Bool
    public private(set) var stepCount = 0
    private let values: Tensor
    private let gradients: Tensor
    private let velocity: Tensor?

    public convenience init(_ block: ParameterBlock, learningRate: Float, momentum: Float = 0, weightDecay: Float = 0,
                            nesterov: Bool = false) {
        self.init(values: block.values, gradients: block.gradients, learningRate: learningRate, momentum: momentum,
                  weightDecay: weightDecay, nesterov: nesterov)
    }

    /// SGD over flat `values` and their `gradients` (contiguous, the same count, on one
    /// device): a whole block, or one rank's segment of it (ZeRO), whose velocity is then that
    /// segment's only.
    public init(values: Tensor, gradients: Tensor, learningRate: Float, momentum: Float = 0, weightDecay: Float = 0,
                nesterov: Bool = false) {
        precondition(values.count == gradients.count && values.isContiguous && gradients.isContiguous,
                     "sgd needs contiguous values and gradients of one size")
        self.values = values
        self.gradients = gradients
        self.learningRate = learningRate
        self.momentum = momentum
        self.weightDecay = weightDecay
        self.nesterov = nesterov
        velocity = momentum != 0 ? Tensor(zeros: [values.count], on: values.device) : nil
    }

    public func step() {
        stepCount += 1
        values.device.sgdStep(parameters: values, gradients: gradients, velocity: velocity,
                             SGDParameters(learningRate: learningRate, momentum: momentum, weightDecay: weightDecay, nesterov: nesterov))
    }

    public var stateTensors: [(name: String, tensor: Tensor)] {
        velocity.map { [("velocity", $0)] } ?? []
    }

    public func restore(stepCount: Int) { self.stepCount = stepCount }
}
