// Inverted dropout whose mask is a pure function of (seed, step, global sample, column).
import ForgeTensor

/// Zeroes each element with probability `rate` during training and scales the rest by
/// 1/(1 − rate); the identity at inference.
public final class Dropout: Layer {
    public let rate: Float
    public let inputWidth: Int
    public var outputWidth: Int { inputWidth }
    /// Distinguishes several dropout layers in one model.
    public let salt: UInt64
    /// The global index of this layer's first column (a tensor-parallel part of a wider layer).
    public let firstColumn: Int
    private var device: (any Device)?
    private var mask: Tensor?
    private var output: Tensor?
    private var gradInput: Tensor?
    private var active = false

    public init(rate: Float, width: Int, salt: UInt64 = 0, firstColumn: Int = 0) {
        precondition(rate >= 0 && rate < 1, "dropout rate must be in [0, 1)")
        self.rate = rate
        self.inputWidth = width
        self.salt = salt
        self.firstColumn = firstColumn
    }

    public func prepare(maxBatch: Int, device: any Device) {
        self.device = device
        mask = Tensor(zeros: [maxBatch, inputWidth], on: device)
        output = Tensor(zeros: [maxBatch, inputWidth], on: device)
        gradInput = Tensor(zeros: [maxBatch, inputWidth], on: device)
    }

    public func forward(_ x: Tensor, context: ForwardContext) -> Tensor {
        active = context.training && rate > 0
        guard active else { return x }
        guard let device, let mask, let output else { preconditionFailure("dropout used before prepare") }
        let rows = x.shape[0]
        let m = mask.rows(0..<rows), y = output.rows(0..<rows)
        device.dropoutMask(m, rate: rate, seed: context.seed ^ (salt &* 0x9E37_79B9), step: UInt64(context.step), firstRow: context.firstSample,
                           firstColumn: firstColumn)
        device.multiply(x, m, into: y)
        return y
    }

    public func backward(_ dy: Tensor, needInputGradient: Bool) -> Tensor? {
        guard needInputGradient else { return nil }
        guard active else { return dy }
        guard let device, let mask, let gradInput else { preconditionFailure("dropout backward before forward") }
        let rows = dy.shape[0]
        let dx = gradInput.rows(0..<rows)
        device.multiply(dy, mask.rows(0..<rows), into: dx)
        return dx
    }
}
