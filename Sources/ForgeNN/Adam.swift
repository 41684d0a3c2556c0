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
    private let block: ParameterBlock
    private let firstMoment: Tensor
    private let secondMoment: Tensor

    public init(_ block: ParameterBlock, learningRate: Float, beta1: Float = 0.9, beta2: Float = 0.999,
                epsilon: Float = 1e-8, weightDecay: Float = 0, decoupled: Bool = false) {
        self.block = block
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        self.decoupled = decoupled
        firstMoment = Tensor(zeros: [block.count], on: block.device)
        secondMoment = Tensor(zeros: [block.count], on: block.device)
    }

    /// AdamW with decoupled weight decay.
    public static func adamW(_ block: ParameterBlock, learningRate: Float, weightDecay: Float = 0.01) -> Adam {
        Adam(block, learningRate: learningRate, weightDecay: weightDecay, decoupled: true)
    }

    public func step() {
        stepCount += 1
        block.device.adamStep(parameters: block.values, gradients: block.gradients, firstMoment: firstMoment, secondMoment: secondMoment,
                              AdamParameters(learningRate: learningRate, beta1: beta1, beta2: beta2, epsilon: epsilon,
                                             weightDecay: weightDecay, decoupledWeightDecay: decoupled, step: stepCount))
    }

    public var stateTensors: [(name: String, tensor: Tensor)] {
        [("exp_avg", firstMoment), ("exp_avg_sq", secondMoment)]
    }

    public func restore(stepCount: Int) { self.stepCount = stepCount }
}
