// The Device protocol: the seam between the NN layer and whatever computes (the built-in CPU,
// later accelerator plugins behind the C ABI). A device owns memory and runs a fixed set of
// kernels; callers never touch device memory except through these calls.

/// What a device can do, declared once, so optional features are checked before use instead of
/// being tried and failing.
public struct DeviceCapabilities: Sendable, Hashable {
    /// Element types the device computes in (Forge's core uses `float32`).
    public var dataTypes: Set<DataType>
    /// Bytes of memory the device offers, or nil when it is the host's memory.
    public var memoryBytes: Int?
    /// True when device memory is host memory (copies are plain memcpy and `hostPointer` works).
    public var hostVisibleMemory: Bool
    /// Threads the device computes with.
    public var threadCount: Int

    public init(dataTypes: Set<DataType>, memoryBytes: Int?, hostVisibleMemory: Bool, threadCount: Int) {
        self.dataTypes = dataTypes
        self.memoryBytes = memoryBytes
        self.hostVisibleMemory = hostVisibleMemory
        self.threadCount = threadCount
    }
}

/// Element types a device may offer.
public enum DataType: String, Sendable, Hashable, CaseIterable {
    case float32, bfloat16
}

/// Pointwise nonlinearities the kernels know.
public enum Activation: String, Sendable, Hashable, CaseIterable {
    case identity, relu, gelu, tanh, sigmoid
}

/// Parameters of one Adam/AdamW update (all in the units of the parameters they update).
public struct AdamParameters: Sendable, Hashable {
    public var learningRate: Float
    public var beta1: Float
    public var beta2: Float
    public var epsilon: Float
    public var weightDecay: Float
    /// AdamW: weight decay applied to the weights directly instead of added to the gradient.
    public var decoupledWeightDecay: Bool
    /// 1-based step number, for the bias corrections.
    public var step: Int

    public init(learningRate: Float, beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8,
                weightDecay: Float = 0, decoupledWeightDecay: Bool = false, step: Int) {
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        self.decoupledWeightDecay = decoupledWeightDecay
        self.step = step
    }
}

/// Parameters of one SGD update with momentum (PyTorch's formulation: v = μv + g + λw; w -= ηv).
public struct SGDParameters: Sendable, Hashable {
    public var learningRate: Float
    public var momentum: Float
    public var weightDecay: Float
    public var nesterov: Bool

    public init(learningRate: Float, momentum: Float = 0, weightDecay: Float = 0, nesterov: Bool = false) {
        self.learningRate = learningRate
        self.momentum = momentum
        self.weightDecay = weightDecay
        self.nesterov = nesterov
    }
}

/// A compute device. Implementations are reference types shared by every tensor they own.
///
/// Shapes: "matrix" arguments are 2-D tensors whose rows are contiguous (`strides[1] == 1`);
/// `gemm` also accepts transposed views. Every kernel may run asynchronously; `synchronize()`
/// waits for all of them. Kernels that return host values (losses, arg-max) synchronise first.
public protocol Device: AnyObject, Sendable {
    /// A short human name ("cpu", "neuron:0").
    var name: String { get }
    var capabilities: DeviceCapabilities { get }

    // MARK: Memory
    /// Allocates `count` float32 elements, zero-filled.
    func allocate(count: Int) -> Storage
    /// Copies host floats into `destination` (contiguous).
    func copy(from source: UnsafeBufferPointer<Float>, to destination: Tensor)
    /// Copies `source` (contiguous) to host memory.
    func copy(from source: Tensor, to destination: UnsafeMutableBufferPointer<Float>)
    /// Copies between two tensors of the same shape on this device.
    func copy(from source: Tensor, to destination: Tensor)
    /// Waits for every kernel issued so far.
    func synchronize()

    // MARK: Dense algebra
    /// C = alpha · op(A) · op(B) + beta · C for 2-D tensors; op transposes when asked.
    func gemm(_ a: Tensor, transposeA: Bool, _ b: Tensor, transposeB: Bool, into c: Tensor, alpha: Float, beta: Float)

    // MARK: Elementwise
    /// Sets every element to `value`.
    func fill(_ tensor: Tensor, value: Float)
    /// y = alpha · x + beta · y (same element count).
    func axpby(alpha: Float, _ x: Tensor, beta: Float, _ y: Tensor)
    /// out = a ⊙ b (same element count).
    func multiply(_ a: Tensor, _ b: Tensor, into out: Tensor)
    /// out[i, j] = activation(x[i, j] + bias[j]); `bias` nil means zero; out may be x.
    func biasActivation(_ x: Tensor, bias: Tensor?, activation: Activation, into out: Tensor)
    /// gradIn = gradOut ⊙ activation'(…), from the pre-activation `input` and/or the `output`.
    func activationBackward(_ activation: Activation, input: Tensor, output: Tensor, gradOutput: Tensor, into gradInput: Tensor)

    // MARK: Reductions
    /// out[j] = beta · out[j] + Σ_i x[i, j] (column sums of a matrix).
    func sumRows(_ x: Tensor, into out: Tensor, beta: Float)
    /// Σ x² over all elements, accumulated in Float64.
    func sumOfSquares(_ x: Tensor) -> Double
    /// Row-wise softmax of a matrix.
    func softmax(_ x: Tensor, into out: Tensor)
    /// The index of each row's largest element.
    func argmaxRows(_ x: Tensor) -> [Int]

    // MARK: Losses (sums over rows; gradients scaled by `gradScale`)
    /// Softmax cross-entropy of logits [n, k] against class indices `labels` [n] (stored as floats).
    /// Returns the summed loss; writes gradScale · (softmax − onehot) when `gradient` is given.
    func softmaxCrossEntropy(logits: Tensor, labels: Tensor, gradient: Tensor?, gradScale: Float) -> Double
    /// Binary logistic loss of logits [n, 1] against labels in {0, 1}.
    func logisticLoss(logits: Tensor, labels: Tensor, gradient: Tensor?, gradScale: Float) -> Double
    /// Squared error ½(p − y)² summed; gradient gradScale · (p − y).
    func squaredError(predictions: Tensor, targets: Tensor, gradient: Tensor?, gradScale: Float) -> Double

    // MARK: Normalisation and regularisation
    /// Row-wise layer norm: out = (x − μ)/σ · gamma + beta; saves μ and 1/σ per row for backward.
    func layerNorm(_ x: Tensor, gamma: Tensor, beta: Tensor, epsilon: Float, into out: Tensor, mean: Tensor, inverseStd: Tensor)
    /// Layer-norm backward: writes dx and adds into dgamma, dbeta.
    func layerNormBackward(_ x: Tensor, gamma: Tensor, mean: Tensor, inverseStd: Tensor, gradOutput: Tensor,
                           gradInput: Tensor, gradGamma: Tensor, gradBeta: Tensor)
    /// Writes an inverted-dropout mask: 0 or 1/(1 − rate), keyed by (seed, step, firstRow + row, column)
    /// through `CounterRandom`-style hashing so every layout draws the same mask.
    /// `firstColumn` is the global index of the mask's first column (a tensor-parallel rank's
    /// part of a wider layer draws its columns of the whole layer's mask).
    func dropoutMask(_ mask: Tensor, rate: Float, seed: UInt64, step: UInt64, firstRow: Int, firstColumn: Int)

    // MARK: Sequence models
    /// C[i] = alpha · op(A[i]) · op(B[i]) + beta · C[i] for every i (the matrices may be strided
    /// views into larger buffers, such as one head of one sequence in a QKV projection).
    func gemmBatched(_ a: [Tensor], transposeA: Bool, _ b: [Tensor], transposeB: Bool, into c: [Tensor], alpha: Float, beta: Float)
    /// In place, row-wise softmax over the causal prefix of a [queries, keys] score matrix: query
    /// r is token keys − queries + r and sees keys 0 through that one; the rest become 0.
    func causalSoftmax(_ scores: Tensor)
    /// gradInput = p ⊙ (gradOutput − Σ_j p ⊙ gradOutput) per row: the softmax's backward from
    /// its output `probabilities`.
    func softmaxBackward(probabilities: Tensor, gradOutput: Tensor, into gradInput: Tensor)
    /// out[r] = table[indices[r]] (indices stored as floats).
    func gatherRows(_ table: Tensor, indices: Tensor, into out: Tensor)
    /// table[indices[r]] += source[r] for every r (repeated indices add up).
    func scatterAddRows(_ source: Tensor, indices: Tensor, into table: Tensor)

    // MARK: Optimizers (in place over flat parameter, gradient and state buffers)
    func adamStep(parameters: Tensor, gradients: Tensor, firstMoment: Tensor, secondMoment: Tensor, _ options: AdamParameters)
    func sgdStep(parameters: Tensor, gradients: Tensor, velocity: Tensor?, _ options: SGDParameters)
}

extension Device {
    /// A dropout mask whose columns start at column 0.
    public func dropoutMask(_ mask: Tensor, rate: Float, seed: UInt64, step: UInt64, firstRow: Int) {
        dropoutMask(mask, rate: rate, seed: seed, step: step, firstRow: firstRow, firstColumn: 0)
    }
}
