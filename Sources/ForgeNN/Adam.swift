// Adam and AdamW.
import ForgeTensor

/// Adam (L2 weight decay added to the gradient) or AdamW (decoupled weight decay), with
/// bias-corrected moments. Weight decay applies to the whole block, as in PyTorch's default.
public final class Adam: Optimizer {
    public var learningRate: Float
    public let beta1: Float
    public let beta2: Float
    public let epsilon: Float
    public let weightDecay: Float
    public let decoupled: Bool
    public private(set) var stepCount = 0
    private let values: Tensor
    private let gradients: Tensor
    private let firstMoment: Tensor
    private let secondMoment: Tensor

    public convenience init(_ block: ParameterBlock, learningRate: Float, beta1: Float = 0.9, beta2: Float = 0.999,
                            epsilon: Float = 1e-8, weightDecay: Float = 0, decoupled: Bool = false) {
        self.init(values: block.values, gradients: block.gradients, learningRate: learningRate, beta1: beta1, beta2: beta2,
                  epsilon: epsilon, weightDecay: weightDecay, decoupled: decoupled)
    }

    /// Adam over flat `values` and their `gradients` (contiguous, the same count, on one
    /// device): a whole block, or one rank's segment of it (ZeRO), whose moments are then
    /// that segment's only.
    public init(values: Tensor, gradients: Tensor, learningRate: Float, beta1: Float = 0.9, beta2: Float = 0.999,
                epsilon: Float = 1e-8, weightDecay: Float = 0, decoupled: Bool = false) {
        precondition(values.count == gradients.count && values.isContiguous && gradients.isContiguous,
                     "adam needs contiguous values and gradients of one size")
        self.values = values
        self.gradients = gradients
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        self.decoupled = decoupled
        firstMoment = Tensor(zeros: [values.count], on: values.device)
        secondMoment = Tensor(zeros: [values.count], on: values.device)
    }

    /// AdamW with decoupled weight decay.
    public static func adamW(_ block: ParameterBlock, learningRate: Float, weightDecay: Float = 0.01) -> Adam {
        Adam(block, learningRate: learningRate, weightDecay: weightDecay, decoupled: true)
    }

    public func step() {
        stepCount += 1
        values.device.adamStep(parameters: values, gradients: gradients, firstMoment: firstMoment, secondMoment: secondMoment,
                              AdamParameters(learningRate: learningRate, beta1: beta1, beta2: beta2, epsilon: epsilon,
                                             weightDecay: weightDecay, decoupledWeightDecay: decoupled, step: stepCount))
    }

    public var stateTensors: [(name: String, tensor: Tensor)] {
        [("exp_avg", firstMoment), ("exp_avg_sq", secondMoment)]
    }

    public func restore(stepCount: Int) { self.stepCount = stepCount }
}
