// The seam between layers split across tensor-parallel ranks and whatever reduces between them.
import ForgeTensor

/// The ranks one tensor-parallel layer is spread over, as a layer sees them.
///
/// Layers call `allReduceSum` where Megatron-style parallelism needs a reduction (after a
/// row-parallel projection forward; on the input gradient of a column-parallel one backward).
/// Layer calls do not throw: an implementation that fails records the failure, turns later
/// calls into no-ops, and the trainer checks it after each forward and backward.
public protocol TensorParallelGroup: AnyObject {
    /// This rank's part, 0..<size.
    var rank: Int { get }
    var size: Int { get }
    /// Sums the contiguous `tensor` across the ranks, in place.
    func allReduceSum(_ tensor: Tensor)
}
