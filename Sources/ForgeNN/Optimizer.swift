// Optimizers update a whole parameter block in one kernel call over its flat buffers.
import ForgeTensor

/// An optimizer over one `ParameterBlock`.
public protocol Optimizer: AnyObject {
    var learningRate: Float { get set }
    /// Steps taken so far.
    var stepCount: Int { get }
    /// Applies one update from the block's gradients.
    func step()
    /// Named state buffers (for checkpoints), in a fixed order.
    var stateTensors: [(name: String, tensor: Tensor)] { get }
    /// Restores the step counter after loading `stateTensors` from a checkpoint.
    func restore(stepCount: Int)
}

