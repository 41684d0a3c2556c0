// Checkpoints and the final model of a Trainer: the state as pieces of logical tensors, written
// by one rank or, for a split model, one file per piece; read back under any layout.
import ForgeArchive
import ForgeCollectives
import ForgeData
import ForgeNN
import ForgeRandom
import ForgeTensor

extension Trainer {
    // MARK: Checkpoints

    /// This rank's tensors as pieces of the logical state: parameters (`model.`), optimizer
    /// state per parameter (`optimizer.<buffer>.`), and the best epoch's values (`best.`).
    func checkpointPieces(optimizerState: [(name: String, values: [Float])]) -> [(piece: TensorPiece, values: [Float])] {
        let tensorRank = parallel?.coordinates.tensorIndex ?? 0, tensorDegree = parallel?.layout.tensorDegree ?? 1
        // A tied table's second copy (the head's, on the last stage) is not part of the state.
        let copy = tiedTable.flatMap { $0.isCopy ? $0.parameter.name : nil }
        func pieces(_ prefix: String, _ flat: [Float]) -> [(piece: TensorPiece, values: [Float])] {
            zip(parameters.parameters, parameterSplits).filter { $0.0.name != copy }.map { parameter, split in
                (TensorPiece(name: prefix + parameter.name, shape: parameter.value.shape, split: split, part: tensorRank, parts: tensorDegree),
                 Array(flat[parameter.offset..<(parameter.offset + parameter.value.count)]))
            }
        }
        var result = pieces("model.", parameters.values.toArray())
        for (name, values) in optimizerState { result += pieces("optimizer.\(name).", values) }
        if let best { result += pieces("best.", best.values.toArray()) }
        return result
    }

    /// Writes a checkpoint of the current step; returns its folder on rank 0, nil on others.
    /// A replicated model is written by rank 0 alone; a split one by the first data-parallel
    /// replica of each piece, one file per piece, which rank 0 commits with trainer.json once
    /// every piece is written.
    func saveCheckpoint(to store: CheckpointStore) throws(TrainingError) -> String? {
        // The optimizer state whole: gathered from every replica's segment under ZeRO.
        let optimizerState: [(name: String, values: [Float])]
        if let zero {
            do {
                optimizerState = try zero.fullStateTensors()
            } catch {
                throw .group(error)
            }
        } else {
            optimizerState = optimizer.stateTensors.map { ($0.name, $0.tensor.toArray()) }
        }
        guard let parallel, let group else {
            guard writesCheckpoints else { return nil }
            let file = LogicalState.file(checkpointPieces(optimizerState: optimizerState))
            return try store.save(Checkpoint(state: state, tensors: file.tensors))
        }
        let folders = store.shardedFolders(step: state.step)
        try barrier()
        if group.rank == 0 { try store.prepareShards(in: folders.temporary) }
        try barrier()
        let at = parallel.coordinates
        if at.dataIndex == 0 {
            try store.writeShard(LogicalState.file(checkpointPieces(optimizerState: optimizerState)), named: "state-s\(at.stage)-t\(at.tensorIndex).safetensors",
                                 in: folders.temporary)
        }
        try barrier()
        guard group.rank == 0 else { return nil }
        let names = (0..<parallel.layout.pipelineDegree).flatMap { s in (0..<parallel.layout.tensorDegree).map { "state-s\(s)-t\($0).safetensors" } }
        return try store.commitShards(state: state, files: names, temporary: folders.temporary, final: folders.final)
    }

    func restore(_ checkpoint: Checkpoint, path: String) throws(TrainingError) {
        let saved = checkpoint.state
        guard saved.hyperparameters == plan.resolved else {
            let changed = Set(saved.hyperparameters.keys).union(plan.resolved.keys)
                .filter { saved.hyperparameters[$0] != plan.resolved[$0] }.sorted()
            throw .badCheckpoint(path: path, reason: "it was written with other hyperparameters (\(changed.joined(separator: ", ")))")
        }
        guard saved.trainRecords == data.totalTrainCount, saved.features == data.train.width else {
            throw .badCheckpoint(path: path, reason: "it was written for \(saved.trainRecords) records × \(saved.features) features, "
                + "this data has \(data.totalTrainCount) × \(data.train.width)")
        }
        var logical = LogicalState()
        try logical.add(SafetensorsFile(tensors: checkpoint.tensors), path: path)
        for shard in checkpoint.shards { try logical.add(shard, path: path) }
        guard logical.incomplete.isEmpty else {
            throw .badCheckpoint(path: path, reason: "pieces of \(logical.incomplete.prefix(3).joined(separator: ", ")) are missing")
        }
        // Checkpoints of one process before pieces existed hold each optimizer buffer flat,
        // over the whole model in parameter order: cut them into per-parameter tensors.
        let whole = Sequential.parameterSpecs(of: spec.makeLayers())
        for (name, _) in optimizer.stateTensors {
            guard let flat = logical.tensors["optimizer.\(name)"] else { continue }
            var offset = 0
            for (parameter, entry) in whole {
                let count = entry.shape.reduce(1, *)
                guard offset + count <= flat.values.count else {
                    throw .badCheckpoint(path: path, reason: "optimizer state '\(name)' has \(flat.values.count) values, the model needs more")
                }
                try logical.place(Array(flat.values[offset..<(offset + count)]),
                                  as: TensorPiece(name: "optimizer.\(name).\(parameter)", shape: entry.shape, split: .replicated, part: 0, parts: 1))
                offset += count
            }
        }
        let tensorRank = parallel?.coordinates.tensorIndex ?? 0, tensorDegree = parallel?.layout.tensorDegree ?? 1
        func fill(_ destination: Tensor, prefix: String) throws(TrainingError) {
            for (parameter, split) in zip(parameters.parameters, parameterSplits) {
                // The head's copy of a tied table reads the embedding's.
                let name = tiedTable.flatMap { $0.isCopy && $0.parameter.name == parameter.name ? "layers.0.token.weight" : nil } ?? parameter.name
                let piece = TensorPiece(name: prefix + name, shape: parameter.value.shape, split: split, part: tensorRank, parts: tensorDegree)
                let values: [Float]
                do {
                    values = try logical.values(of: piece)
                } catch {
                    guard case .badCheckpoint(_, let reason) = error else { throw error }
                    throw .badCheckpoint(path: path, reason: reason)
                }
                let target = Tensor(storage: destination.storage, offset: destination.offset + parameter.offset, shape: parameter.value.shape)
                values.withUnsafeBufferPointer { device.copy(from: $0, to: target) }
            }
        }
        try fill(parameters.values, prefix: "model.")
        if let zero {
            // Each replica keeps its segment of the whole state.
            var full = [(name: String, values: [Float])]()
            for (name, _) in optimizer.stateTensors {
                let whole = Tensor(zeros: [parameters.count], on: device)
                try fill(whole, prefix: "optimizer.\(name).")
                full.append((name, whole.toArray()))
            }
            do {
                try zero.loadFullState(full)
            } catch {
                throw .badCheckpoint(path: path, reason: error.description)
            }
        } else {
            for (name, tensor) in optimizer.stateTensors { try fill(tensor, prefix: "optimizer.\(name).") }
        }
        if let best { try fill(best.values, prefix: "best.") }
        optimizer.restore(stepCount: saved.step)
        state = saved
    }

    // MARK: Result

    func trainedModel() throws(TrainingError) -> TrainedModel {
        TrainedModel(plan: plan, spec: spec, parameters: try gatheredParameters(),
                     featureScaling: data.featureScaling, labelScaling: data.labelScaling)
    }
}
