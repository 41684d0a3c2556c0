// The tensor-parallel group as layers see it, over a ProcessGroup.
import ForgeCollectives
import ForgeNN
import ForgeTensor

/// Sums tensors across a tensor-parallel `ProcessGroup` for the layers split over it.
///
/// Layers cannot throw, so the first failure is kept in `failure`, later reductions are
/// skipped (the group is broken anyway), and the trainer checks `failure` after each forward
/// and backward and throws it.
///
/// Concurrency: not Sendable; confined to the rank's training thread, like its group.
public final class TensorParallelAdapter: TensorParallelGroup {
    public let group: ProcessGroup
    public private(set) var failure: CollectiveError?

    public init(group: ProcessGroup) {
        self.group = group
    }

    public var rank: Int { group.rank }
    public var size: Int { group.worldSize }

    public func allReduceSum(_ tensor: Tensor) {
        guard failure == nil else { return }
        precondition(tensor.isContiguous && tensor.device.capabilities.hostVisibleMemory, "tensor-parallel reductions need contiguous host memory")
        do {
            try group.allReduce(UnsafeMutableBufferPointer(start: tensor.hostPointer, count: tensor.count), op: .sum)
        } catch {
            failure = error
        }
    }

    /// Throws the first failure, if any.
    public func check() throws(TrainingError) {
        if let failure { throw .group(failure) }
    }
}

/// A stand-in that only says which part a rank holds: for building another rank's layers to
/// learn their parameter shapes (no reduction ever runs on it).
final class TensorPart: TensorParallelGroup {
    let rank: Int
    let size: Int

    init(rank: Int, size: Int) {
        self.rank = rank
        self.size = size
    }

    func allReduceSum(_ tensor: Tensor) {
        preconditionFailure("TensorPart describes shapes; it does not compute")
    }
}
