// A chain of layers sharing one parameter block.
import ForgeTensor

/// Layers applied in order. Parameters are named `layers.<index>.<name>`.
///
/// Concurrency: not Sendable; confined to the training thread.
public final class Sequential {
    public let layers: [any Layer]
    public let parameters: ParameterBlock
    public let device: any Device
    public let maxBatch: Int

    /// Builds the parameter block from `seed` and prepares buffers for batches up to `maxBatch`.
    public convenience init(_ layers: [any Layer], maxBatch: Int, seed: UInt64, device: any Device) {
        let parameters = ParameterBlock(specs: Sequential.parameterSpecs(of: layers), seed: seed, device: device)
        self.init(layers, parameters: parameters, maxBatch: maxBatch, device: device)
    }

    /// A replica of `model` for concurrent use: fresh `layers` of the same architecture that
    /// read `model`'s parameter values (shared memory) and write gradients of their own.
    public convenience init(replicaOf model: Sequential, layers: [any Layer], maxBatch: Int) {
        self.init(layers, parameters: ParameterBlock(sharingValuesOf: model.parameters), maxBatch: maxBatch, device: model.device)
    }

    /// Binds `layers` to an existing block (its parameters in `parameterSpecs(of:)` order, under
    /// any names) and prepares buffers for batches up to `maxBatch`. A pipeline stage uses it to
    /// run a slice of a larger model whose parameters keep their global names.
    public convenience init(_ layers: [any Layer], parameters: ParameterBlock, maxBatch: Int) {
        self.init(layers, parameters: parameters, maxBatch: maxBatch, device: parameters.device)
    }

    private init(_ layers: [any Layer], parameters: ParameterBlock, maxBatch: Int, device: any Device) {
        for (previous, next) in zip(layers, layers.dropFirst()) {
            precondition(previous.outputWidth == next.inputWidth, "layer widths \(previous.outputWidth) → \(next.inputWidth) do not chain")
        }
        precondition(parameters.parameters.map(\.value.shape) == Sequential.parameterSpecs(of: layers).map(\.spec.shape),
                     "parameter block does not fit these layers")
        self.layers = layers
        self.device = device
        self.maxBatch = maxBatch
        self.parameters = parameters
        var cursor = 0
        for layer in layers {
            let count = layer.parameterSpecs.count
            layer.bind(Array(parameters.parameters[cursor..<cursor + count]))
            cursor += count
            layer.prepare(maxBatch: maxBatch, device: device)
        }
    }

    /// Every layer's parameters with their full names, in order.
    public static func parameterSpecs(of layers: [any Layer]) -> [(name: String, spec: ParameterSpec)] {
        var specs = [(name: String, spec: ParameterSpec)]()
        for (index, layer) in layers.enumerated() {
            for spec in layer.parameterSpecs { specs.append(("layers.\(index).\(spec.name)", spec)) }
        }
        return specs
    }

    /// Which of `parameterSpecs(of: layers)` belong to `layers[layerRange]` (a pipeline
    /// stage's slice of a model).
    public static func parameterSpecRange(of layers: [any Layer], layerRange: Range<Int>) -> Range<Int> {
        let before = layers[..<layerRange.lowerBound].reduce(0) { $0 + $1.parameterSpecs.count }
        return before..<(before + layers[layerRange].reduce(0) { $0 + $1.parameterSpecs.count })
    }

    public var inputWidth: Int { layers.first?.inputWidth ?? 0 }
    public var outputWidth: Int { layers.last?.outputWidth ?? 0 }

    /// Runs every layer; the result is a view into the last layer's buffer.
    public func forward(_ input: Tensor, context: ForwardContext) -> Tensor {
        precondition(input.shape[0] <= maxBatch, "batch of \(input.shape[0]) exceeds the prepared \(maxBatch)")
        return layers.reduce(input) { $1.forward($0, context: context) }
    }

    /// Back-propagates `gradOutput` through every layer, writing all parameter gradients.
    /// The first layer's input gradient is not computed. `layerFinished(i)` runs as soon as layer
    /// i's parameter gradients are final (last layer first), so a caller can start reducing
    /// them while the earlier layers are still computing.
    public func backward(_ gradOutput: Tensor, layerFinished: ((Int) -> Void)? = nil) {
        _ = backward(gradOutput, needInputGradient: false, layerFinished: layerFinished)
    }

    /// Like `backward(_:layerFinished:)`, and with `needInputGradient` also returns the first
    /// layer's input gradient, [batch, inputWidth] (a view into that layer's buffer, valid until
    /// its next backward), as a pipeline stage sends back to the stage before it.
    public func backward(_ gradOutput: Tensor, needInputGradient: Bool, layerFinished: ((Int) -> Void)? = nil) -> Tensor? {
        var gradient = gradOutput
        for (index, layer) in layers.enumerated().reversed() {
            let next = layer.backward(gradient, needInputGradient: index > 0 || needInputGradient)
            layerFinished?(index)
            guard let next else { return nil }
            gradient = next
        }
        return needInputGradient ? gradient : nil
    }

    /// The range of the flat parameter block that layer `index` owns (empty for layers
    /// without parameters).
    public func parameterRange(ofLayer index: Int) -> Range<Int> {
        let before = layers[..<index].reduce(0) { $0 + $1.parameterSpecs.reduce(0) { $0 + $1.shape.reduce(1, *) } }
        let own = layers[index].parameterSpecs.reduce(0) { $0 + $1.shape.reduce(1, *) }
        return before..<(before + own)
    }
}
