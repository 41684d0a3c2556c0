// Pieces of logical tensors: every split cuts a tensor into parts that reassemble to it,
// through a safetensors file and back, and a missing or garbled piece is reported.
import ForgeArchive
import ForgeNN
import ForgeTestSupport
import ForgeTraining
import Testing

@Suite struct LogicalStateTests {
    /// A [6, 4] tensor (QKV-like: 3 groups of 2 rows) or [2, 6] (columns), values 0, 1, 2, …
    static let logical = (0..<24).map(Float.init)

    @Test(arguments: [(TensorSplit.rows(groups: 3), [6, 4]), (.rows(groups: 1), [6, 4]), (.columns, [2, 12]), (.replicated, [6, 4])])
    func partsReassembleToTheTensor(split: TensorSplit, shape: [Int]) throws {
        for parts in [1, 2] {
            var local = shape
            if parts == 2 {
                switch split {
                case .rows: local[0] /= 2
                case .columns: local[1] /= 2
                case .replicated: break
                }
            }
            var state = LogicalState()
            var pieces = [(piece: TensorPiece, values: [Float])]()
            for part in 0..<parts {
                let piece = TensorPiece(name: "w", shape: local, split: split, part: part, parts: parts)
                let values = split.slice(Self.logical, local: local, part: part, parts: parts)
                pieces.append((piece, values))
            }
            // Through one file per rank: the pieces' descriptions travel in their metadata.
            for piece in pieces {
                try state.add(try SafetensorsFile(decoding: try LogicalState.file([piece]).encoded()), path: "test")
            }
            #expect(state.incomplete.isEmpty)
            #expect(state.tensors["w"]?.shape == shape)
            #expect(state.tensors["w"]?.values == Self.logical, "\(split) in \(parts)")
            for (piece, values) in pieces { #expect(try state.values(of: piece) == values) }
        }
    }

    @Test func qkvRowsKeepEachRanksHeads() {
        // Rows 0–5 are Q (0,1), K (2,3), V (4,5) of two heads; rank 1 of 2 holds rows 1, 3, 5.
        let values = TensorSplit.rows(groups: 3).slice((0..<6).map(Float.init), local: [3], part: 1, parts: 2)
        #expect(values == [1, 3, 5])
    }

    @Test func aMissingPieceIsReported() throws {
        var state = LogicalState()
        try state.place([1, 2, 3, 4], as: TensorPiece(name: "w", shape: [2, 2], split: .columns, part: 0, parts: 2))
        #expect(state.incomplete == ["w"])
    }

    @Test func aGarbledDescriptionIsAClearError() throws {
        let file = SafetensorsFile(tensors: [SafeTensor(name: "w", shape: [2], floats: [1, 2])], metadata: ["piece:w": "split=rows:3;part=0;parts=2"])
        var state = LogicalState()
        #expect(throws: TrainingError.self) { try state.add(file, path: "f") }
        let other = SafetensorsFile(tensors: [SafeTensor(name: "w", shape: [2], floats: [1, 2])], metadata: ["piece:w": "nonsense"])
        #expect(throws: TrainingError.self) { try state.add(other, path: "f") }
    }

    @Test func garbledPieceDescriptionsAreRefusedNeverACrash() throws {
        // 100,000 mutated and random descriptions of a [6, 4] tensor: each is refused or, when
        // it parses, places or throws; the library never traps or allocates without bound.
        var random = SplitMix64(seed: 77)
        let mutator = ByteMutator(interesting: Array("split=rows:columns;replicated part=parts=0123456789-;".utf8) + [0, 0xFF])
        let seeds = ["split=rows:3;part=1;parts=2", "split=columns;part=0;parts=2", "split=replicated;part=0;parts=1"].map { Array($0.utf8) }
        var parsed = 0
        for index in 0..<100_000 {
            let bytes = index % 10 == 0
                ? (0..<random.below(40)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
                : mutator.mutate(seeds[index % seeds.count], using: &random)
            let text = String(decoding: bytes, as: UTF8.self)
            guard let piece = TensorPiece(name: "w", shape: [6, 4], metadata: text) else { continue }
            parsed += 1
            var state = LogicalState()
            do {
                try state.place([Float](repeating: 1, count: 24), as: piece)
                _ = try state.values(of: piece)
            } catch {
                // Refused with an error: fine.
            }
        }
        #expect(parsed > 0, "some mutations keep a valid description")
    }
}
