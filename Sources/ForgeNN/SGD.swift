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
    private let block: ParameterBlock
    private let velocity: Tensor?

    public init(_ block: ParameterBlock, learningRate: Float, momentum: Float = 0, weightDecay: Float = 0, nesterov: Bool = false) {
        self.block = block
        self.learningRate = learningRate
        self.momentum = momentum
        self.weightDecay = weightDecay
        self.nesterov = nesterov
        velocity = momentum != 0 ? Tensor(zeros: [block.count], on: block.device) : nil
    }

    public func step() {
        stepCount += 1
        block.device.sgdStep(parameters: block.values, gradients: block.gradients, velocity: velocity,
                             SGDParameters(learningRate: learningRate, momentum: momentum, weightDecay: weightDecay, nesterov: nesterov))
    }

    public var stateTensors: [(name: String, tensor: Tensor)] {
        velocity.map { [("velocity", $0)] } ?? []
    }

    public func restore(stepCount: Int) { self.stepCount = stepCount }
}
