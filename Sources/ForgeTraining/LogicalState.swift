// A model's state as logical tensors, whatever layout holds it. Under pipeline and tensor
// parallelism each rank holds pieces: the parameters of its stage's layers, and of those its
// tensor-parallel part. Checkpoints store pieces with what they are a piece of, so any layout
// can reassemble the logical tensors and take its own pieces back.
import ForgeArchive
import ForgeNN
import ForgeTensor

/// One rank's piece of a logical tensor.
public struct TensorPiece: Sendable, Equatable {
    public var name: String
    /// The piece's shape (this rank's).
    public var shape: [Int]
    public var split: TensorSplit
    public var part: Int
    public var parts: Int

    public init(name: String, shape: [Int], split: TensorSplit, part: Int, parts: Int) {
        self.name = name
        self.shape = shape
        self.split = split
        self.part = part
        self.parts = parts
    }

    public var logicalShape: [Int] { split.logicalShape(local: shape, parts: parts) }
    public var count: Int { shape.reduce(1, *) }

    /// What a safetensors file's metadata says about a piece stored under `name`.
    public var metadataValue: String {
        let splitText: String = switch split {
        case .replicated: "replicated"
        case .rows(let groups): "rows:\(groups)"
        case .columns: "columns"
        }
        return "split=\(splitText);part=\(part);parts=\(parts)"
    }

    static let metadataPrefix = "piece:"

    /// Reads a piece's description back; nil for anything malformed.
    public init?(name: String, shape: [Int], metadata value: String) {
        var fields = [String: String]()
        for item in value.split(separator: ";") {
            let pair = item.split(separator: "=", maxSplits: 1)
            guard pair.count == 2 else { return nil }
            fields[String(pair[0])] = String(pair[1])
        }
        guard let part = fields["part"].flatMap(Int.init), let parts = fields["parts"].flatMap(Int.init),
              parts >= 1, parts <= 4096, part >= 0, part < parts, let splitText = fields["split"] else { return nil }
        let split: TensorSplit
        switch splitText {
        case "replicated": split = .replicated
        case "columns": split = .columns
        default:
            guard splitText.hasPrefix("rows:"), let groups = Int(splitText.dropFirst(5)), groups >= 1, groups <= 64 else { return nil }
            split = .rows(groups: groups)
        }
        self.init(name: name, shape: shape, split: split, part: part, parts: parts)
        // The split must fit the shape it is said to cut.
        switch split {
        case .replicated: break
        case .rows(let groups): guard shape.count >= 1, shape[0] % groups == 0 else { return nil }
        case .columns: guard shape.count >= 2 else { return nil }
        }
    }
}

/// Logical tensors by name, assembled from pieces.
public struct LogicalState: Sendable {
    public private(set) var tensors: [String: (shape: [Int], values: [Float])] = [:]
    /// Elements placed per tensor, to tell a complete tensor from one missing pieces.
    private var placed: [String: Int] = [:]

    public init() {}

    /// Adds `values` as `piece` of its logical tensor (a replicated piece is the whole tensor).
    public mutating func place(_ values: [Float], as piece: TensorPiece) throws(TrainingError) {
        // A piece cannot make a tensor larger than 2³¹ elements (a corrupt description must
        // not allocate without bound).
        guard piece.shape.allSatisfy({ $0 >= 0 }), piece.count.multipliedReportingOverflow(by: piece.parts).partialValue <= Int(Int32.max),
              !piece.count.multipliedReportingOverflow(by: piece.parts).overflow else {
            throw .badCheckpoint(path: piece.name, reason: "a piece of shape \(piece.shape) in \(piece.parts) parts is too large")
        }
        let logicalShape = piece.logicalShape
        let logicalCount = logicalShape.reduce(1, *)
        guard values.count == piece.count else {
            throw .badCheckpoint(path: piece.name, reason: "piece of \(values.count) values for shape \(piece.shape)")
        }
        if let existing = tensors[piece.name] {
            guard existing.shape == logicalShape else {
                throw .badCheckpoint(path: piece.name, reason: "pieces disagree on the shape: \(existing.shape) and \(logicalShape)")
            }
        } else {
            tensors[piece.name] = (logicalShape, [Float](repeating: 0, count: logicalCount))
        }
        if piece.split == .replicated || piece.parts == 1 {
            // Every tensor-parallel rank holds the same replicated values: one copy is the tensor.
            guard (placed[piece.name] ?? 0) == 0 else { return }
            tensors[piece.name]?.values = values
            placed[piece.name] = logicalCount
            return
        }
        for run in piece.split.runs(local: piece.shape, part: piece.part, parts: piece.parts) {
            tensors[piece.name]?.values.replaceSubrange(run.logical..<(run.logical + run.count), with: values[run.local..<(run.local + run.count)])
        }
        placed[piece.name, default: 0] += piece.count
    }

    /// The tensors that are missing pieces.
    public var incomplete: [String] {
        tensors.keys.filter { name in (placed[name] ?? 0) < (tensors[name]?.values.count ?? 0) }.sorted()
    }

    /// `piece`'s values out of its logical tensor.
    public func values(of piece: TensorPiece) throws(TrainingError) -> [Float] {
        guard let tensor = tensors[piece.name], tensor.shape == piece.logicalShape else {
            let found = tensors[piece.name].map { "shape \($0.shape)" } ?? "nothing"
            throw .badCheckpoint(path: piece.name, reason: "tensor '\(piece.name)' is missing or has the wrong size (found \(found), "
                + "the model needs \(piece.logicalShape))")
        }
        return piece.split.slice(tensor.values, local: piece.shape, part: piece.part, parts: piece.parts)
    }

    /// Adds every tensor of a checkpoint file: pieces described in its metadata, and whole
    /// tensors (files written by one process before pieces existed) as they are.
    public mutating func add(_ file: SafetensorsFile, path: String) throws(TrainingError) {
        do {
            try addTensors(of: file, path: path)
        } catch {
            guard case .badCheckpoint(_, let reason) = error else { throw error }
            throw .badCheckpoint(path: path, reason: reason)
        }
    }

    private mutating func addTensors(of file: SafetensorsFile, path: String) throws(TrainingError) {
        for tensor in file.tensors {
            guard let floats = tensor.floats else { throw .badCheckpoint(path: path, reason: "tensor '\(tensor.name)' is not float32") }
            if let text = file.metadata[TensorPiece.metadataPrefix + tensor.name] {
                guard let piece = TensorPiece(name: tensor.name, shape: tensor.shape, metadata: text) else {
                    throw .badCheckpoint(path: path, reason: "tensor '\(tensor.name)' has a malformed piece description '\(text)'")
                }
                try place(floats, as: piece)
            } else {
                try place(floats, as: TensorPiece(name: tensor.name, shape: tensor.shape, split: .replicated, part: 0, parts: 1))
            }
        }
    }

    /// A safetensors file of pieces, each described in the metadata.
    public static func file(_ pieces: [(piece: TensorPiece, values: [Float])], metadata: [String: String] = [:]) -> SafetensorsFile {
        var meta = metadata
        for (piece, _) in pieces where piece.parts > 1 && piece.split != .replicated {
            meta[TensorPiece.metadataPrefix + piece.name] = piece.metadataValue
        }
        return SafetensorsFile(tensors: pieces.map { SafeTensor(name: $0.piece.name, shape: $0.piece.shape, floats: $0.values) }, metadata: meta)
    }
}

extension ParameterBlock {
    /// Each parameter as a piece of its logical tensor, named `prefix` + its name, given the
    /// specs it was laid out from (in the same order) and this rank's tensor-parallel part.
    public func pieces(specs: [ParameterSpec], prefix: String = "", tensorRank: Int = 0, tensorDegree: Int = 1) -> [TensorPiece] {
        precondition(specs.count == parameters.count, "\(specs.count) specs for \(parameters.count) parameters")
        return zip(parameters, specs).map { parameter, spec in
            TensorPiece(name: prefix + parameter.name, shape: parameter.value.shape, split: spec.split, part: tensorRank, parts: tensorDegree)
        }
    }
}
