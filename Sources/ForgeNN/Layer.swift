// The layer protocol: explicit forward and backward over batches of rows.
import ForgeTensor

/// What a forward pass needs to know besides its input.
public struct ForwardContext: Sendable, Hashable {
    /// Training (dropout active, activations kept for backward) or inference.
    public var training: Bool
    /// The optimizer step this pass belongs to (keys dropout masks).
    public var step: Int
    /// Global index of the batch's first row in this step's global batch (keys dropout masks,
    /// so any split of the batch across ranks draws the same masks). For sequence models it
    /// counts tokens: the first sequence's index times the sequence length.
    public var firstSample: Int
    /// The run's seed.
    public var seed: UInt64
    /// Rows per sequence for sequence models (a batch's rows are its sequences' tokens, one
    /// sequence after another); 1 for models of independent rows.
    public var sequenceLength: Int

    public init(training: Bool, step: Int = 0, firstSample: Int = 0, seed: UInt64 = 0, sequenceLength: Int = 1) {
        self.training = training
        self.step = step
        self.firstSample = firstSample
        self.seed = seed
        self.sequenceLength = sequenceLength
    }
}

/// A layer maps a matrix [batch, inputWidth] to [batch, outputWidth].
///
/// Life cycle: `parameterSpecs` are declared, the model binds the allocated `Parameter`s with
/// `bind`, `prepare` allocates activation buffers for the largest batch, then forward and
/// backward alternate. `backward` follows the latest `forward` with the same batch and
/// overwrites (not accumulates) parameter gradients.
public protocol Layer: AnyObject {
    var inputWidth: Int { get }
    var outputWidth: Int { get }
    var parameterSpecs: [ParameterSpec] { get }
    func bind(_ parameters: [Parameter])
    func prepare(maxBatch: Int, device: any Device)
    func forward(_ input: Tensor, context: ForwardContext) -> Tensor
    /// Returns the input gradient, or nil when `needInputGradient` is false.
    func backward(_ gradOutput: Tensor, needInputGradient: Bool) -> Tensor?
}

extension Layer {
    public var parameterSpecs: [ParameterSpec] { [] }
    public func bind(_ parameters: [Parameter]) {}
}
