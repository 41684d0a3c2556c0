// All of a model's parameters in one flat value buffer and one flat gradient buffer.
import ForgeRandom
import ForgeTensor

/// One contiguous block of parameters and their gradients.
///
/// Concurrency: not Sendable (it owns tensors); confined to the training thread.
public final class ParameterBlock {
    public let device: any Device
    /// Every parameter value, flat, in declaration order.
    public let values: Tensor
    /// Every gradient, flat, in the same order.
    public let gradients: Tensor
    public let parameters: [Parameter]

    public var count: Int { values.count }

    /// Lays out `specs` (full names → spec) in order and fills them from `seed`.
    ///
    /// Under tensor parallelism (`tensorRank` of `tensorDegree`) each spec is this rank's part of
    /// a logical tensor: the logical values are drawn, as one process draws them, and this
    /// rank's part kept, so every layout starts from the same model.
    public convenience init(specs: [(name: String, spec: ParameterSpec)], seed: UInt64, device: any Device,
                            tensorRank: Int = 0, tensorDegree: Int = 1, valueMemory: UnsafeMutableBufferPointer<Float>? = nil,
                            gradientMemory: UnsafeMutableBufferPointer<Float>? = nil) {
        self.init(specs: specs, seed: seed, device: device, keeping: specs.indices, tensorRank: tensorRank, tensorDegree: tensorDegree,
                  valueMemory: valueMemory, gradientMemory: gradientMemory)
    }

    /// Draws every spec's initial values from `seed` exactly as `init(specs:seed:device:)` does,
    /// but lays out only `specs[keeping]`: the values a model's slice (a pipeline stage) has
    /// when the whole model is built from the same seed.
    ///
    /// `gradientMemory` and `valueMemory` (host-visible devices only; at least as many floats as
    /// the block holds, zeroed, outliving the block) hold the gradients or the values instead of
    /// memory of the block's own: regions other processes map, so that co-located ranks reduce
    /// gradients (and, sharding the optimizer, gather values) where they lie.
    public init(specs: [(name: String, spec: ParameterSpec)], seed: UInt64, device: any Device, keeping: Range<Int>,
                tensorRank: Int = 0, tensorDegree: Int = 1, valueMemory: UnsafeMutableBufferPointer<Float>? = nil,
                gradientMemory: UnsafeMutableBufferPointer<Float>? = nil) {
        precondition(keeping.lowerBound >= 0 && keeping.upperBound <= specs.count, "kept specs \(keeping) outside 0..<\(specs.count)")
        self.device = device
        let total = specs[keeping].reduce(0) { $0 + $1.spec.shape.reduce(1, *) }
        values = ParameterBlock.tensor(total, on: device, in: valueMemory)
        gradients = ParameterBlock.tensor(total, on: device, in: gradientMemory)
        var random = CounterRandom(seed: seed).stream(0x1417)
        var offset = 0
        var bound = [Parameter]()
        // The draws before the kept range still run: they advance the stream.
        for (index, (name, spec)) in specs[..<keeping.upperBound].enumerated() {
            let count = spec.shape.reduce(1, *)
            let logicalCount = spec.split.logicalShape(local: spec.shape, parts: tensorDegree).reduce(1, *)
            let logical = spec.initializer.values(count: logicalCount, random: &random)
            guard keeping.contains(index) else { continue }
            let initial = spec.split.slice(logical, local: spec.shape, part: tensorRank, parts: tensorDegree)
            let value = Tensor(storage: values.storage, offset: offset, shape: spec.shape)
            let gradient = Tensor(storage: gradients.storage, offset: offset, shape: spec.shape)
            initial.withUnsafeBufferPointer { device.copy(from: $0, to: value) }
            bound.append(Parameter(name: name, value: value, gradient: gradient, offset: offset))
            offset += count
        }
        parameters = bound
    }

    /// A flat tensor of `count` floats: over `memory` when given, else of its own (zeroed).
    private static func tensor(_ count: Int, on device: any Device, in memory: UnsafeMutableBufferPointer<Float>?) -> Tensor {
        guard let memory, let address = memory.baseAddress else { return Tensor(zeros: [count], on: device) }
        precondition(device.capabilities.hostVisibleMemory && memory.count >= count,
                     "external parameter memory needs a host-visible device and room for \(count) floats")
        return Tensor(storage: Storage(device: device, count: count, address: UnsafeMutableRawPointer(address), release: { _ in }), shape: [count])
    }

    /// A block laid out like `other` (names, shapes, offsets) with values and gradients of its
    /// own, all zero: room to keep a copy of `other`'s values.
    public init(zerosLike other: ParameterBlock) {
        device = other.device
        let values = Tensor(zeros: [other.count], on: other.device), gradients = Tensor(zeros: [other.count], on: other.device)
        self.values = values
        self.gradients = gradients
        parameters = other.parameters.map {
            Parameter(name: $0.name, value: Tensor(storage: values.storage, offset: $0.offset, shape: $0.value.shape),
                      gradient: Tensor(storage: gradients.storage, offset: $0.offset, shape: $0.value.shape), offset: $0.offset)
        }
    }

    /// A block over `other`'s values (the same memory) with gradients of its own, so several
    /// replicas of one model can back-propagate concurrently and their gradients be summed.
    public init(sharingValuesOf other: ParameterBlock) {
        device = other.device
        values = other.values
        let gradients = Tensor(zeros: [other.count], on: other.device)
        self.gradients = gradients
        parameters = other.parameters.map {
            Parameter(name: $0.name, value: $0.value,
                      gradient: Tensor(storage: gradients.storage, offset: $0.offset, shape: $0.value.shape), offset: $0.offset)
        }
    }

    /// The parameter called `name`.
    public subscript(name: String) -> Parameter? { parameters.first { $0.name == name } }

    /// Name, shape and host values of every parameter, in order.
    public func namedValues() -> [(name: String, shape: [Int], values: [Float])] {
        parameters.map { ($0.name, $0.value.shape, $0.value.toArray()) }
    }

    /// Replaces all values from host data; throws a description of the first mismatch.
    public func load(_ named: [String: (shape: [Int], values: [Float])]) throws(ParameterLoadError) {
        for parameter in parameters {
            guard let entry = named[parameter.name] else { throw .missing(parameter.name) }
            guard entry.shape == parameter.value.shape, entry.values.count == parameter.value.count else {
                throw .shapeMismatch(name: parameter.name, expected: parameter.value.shape, found: entry.shape)
            }
            entry.values.withUnsafeBufferPointer { device.copy(from: $0, to: parameter.value) }
        }
    }

    /// Copies all values from another block of the same layout.
    public func copyValues(from other: ParameterBlock) {
        device.copy(from: other.values, to: values)
    }
}

/// Why parameters could not be loaded.
public enum ParameterLoadError: Error, Equatable, CustomStringConvertible {
    case missing(String)
    case shapeMismatch(name: String, expected: [Int], found: [Int])

    public var description: String {
        switch self {
        case .missing(let name): return "parameter '\(name)' is missing from the file"
        case .shapeMismatch(let name, let expected, let found):
            return "parameter '\(name)' has shape \(found) in the file, the model needs \(expected)"
        }
    }
}
