// Losses: the summed loss over a batch and its gradient with respect to the model output.
import ForgeTensor

/// A loss over model outputs [n, k] and targets [n].
public protocol Loss: Sendable {
    /// Returns Σ loss over the rows; writes gradScale · ∂loss/∂output into `gradient` when given.
    /// With gradScale = 1/globalBatch the gradient is that of the mean loss.
    func evaluate(output: Tensor, targets: Tensor, gradient: Tensor?, gradScale: Float) -> Double
}

/// Softmax over the output row, then cross-entropy against class indices.
public struct SoftmaxCrossEntropy: Loss {
    public init() {}
    public func evaluate(output: Tensor, targets: Tensor, gradient: Tensor?, gradScale: Float) -> Double {
        output.device.softmaxCrossEntropy(logits: output, labels: targets, gradient: gradient, gradScale: gradScale)
    }
}

/// Binary logistic loss on one logit per row, labels in {0, 1}.
public struct BinaryLogistic: Loss {
    public init() {}
    public func evaluate(output: Tensor, targets: Tensor, gradient: Tensor?, gradScale: Float) -> Double {
        output.device.logisticLoss(logits: output, labels: targets, gradient: gradient, gradScale: gradScale)
    }
}

/// ½(prediction − target)², one output per row. Twice its mean is the mean squared error.
public struct MeanSquaredError: Loss {
    public init() {}
    public func evaluate(output: Tensor, targets: Tensor, gradient: Tensor?, gradScale: Float) -> Double {
        output.device.squaredError(predictions: output, targets: targets, gradient: gradient, gradScale: gradScale)
    }
}
