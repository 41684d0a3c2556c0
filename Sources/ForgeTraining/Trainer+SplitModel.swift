// A Trainer whose model is split across ranks: pipeline stages, tensor-parallel parts, and the
// data-parallel replicas of each piece.
import ForgeArchive
import ForgeCollectives
import ForgeData
import ForgeNN
import ForgeRandom
import ForgeTensor

extension Trainer {
    /// One optimizer step when this rank holds a piece of the model: forward and backward over
    /// this replica's slice (through the pipeline's micro-batches, or through the tensor-split
    /// layers), the gradients summed over the replicas of this piece, the loss and the stop
    /// request agreed over every rank, the gradient's global norm clipped, one update.
    func splitModelStep(local: ArraySlice<Int>, globalRows: Int, firstSample: Int) throws(TrainingError) -> Double {
        guard let parallel, let group else { preconditionFailure("a split model runs on a group") }
        let length = sequenceLength
        let wantsStop: Float = shouldStop() ? 1 : 0
        var lossSum = 0.0
        let isLastStage = stage?.isLast ?? true
        if local.isEmpty {
            // A batch smaller than the replicas leaves this one nothing: it adds zero.
            device.fill(parameters.gradients, value: 0)
        } else {
            let x = load(data.train, indices: local)
            let rows = local.count * length
            do {
                if let stage {
                    let samples = PipelineMicroBatch.split(rows: local.count, into: min(microBatches, local.count), firstSample: firstSample)
                    let batches = samples.map {
                        PipelineMicroBatch(rows: ($0.rows.lowerBound * length)..<($0.rows.upperBound * length), firstSample: $0.firstSample * length)
                    }
                    let result = try stage.forwardBackward(batches, inputs: stage.isFirst ? x : nil,
                                                           targets: stage.isLast ? targets.rows(0..<rows) : nil,
                                                           globalRows: globalRows * length, step: state.step)
                    lossSum = result.lossSum
                    lastPipelineStats = result.stats
                } else if let model {
                    let job = StepJob(replicas: [model], gradients: [outputGradient], inputs: x, targets: targets.rows(0..<rows), loss: loss,
                                      rows: local.count, globalRows: globalRows, firstSample: firstSample, step: state.step,
                                      seed: plan.seed, sequenceLength: length)
                    lossSum = job.run(part: 0)
                }
            } catch {
                throw .group(error)
            }
            try tensorParallel?.check()
        }
        // A tied table on two stages: each copy gets the sum of both gradients.
        try tiedTable?.exchangeGradients(group)
        // The loss counts once per replica (its last stage, tensor part 0); a stop counts anywhere.
        let counts = isLastStage && parallel.coordinates.tensorIndex == 0
        lossBuffer[0] = counts ? Float(lossSum) : 0
        lossBuffer[1] = wantsStop
        do {
            if zero == nil, parallel.dataParallel.worldSize > 1 {
                try parallel.dataParallel.allReduce(UnsafeMutableBufferPointer(start: parameters.gradients.hostPointer, count: parameters.count), op: .sum)
            }
            try group.allReduce(lossBuffer, op: .sum)
        } catch {
            throw .group(error)
        }
        lossSum = Double(lossBuffer[0])
        stopAgreed = lossBuffer[1] > 0
        optimizer.learningRate = plan.learningRate(atStep: state.step, totalSteps: totalSteps)
        if let zero {
            // The piece's state sharded over its replicas: reduce-scatter, clip by the whole
            // model's norm (every rank's segment of the parameters that count, summed over the
            // job), update the segment, all-gather.
            let tensorIndex = parallel.coordinates.tensorIndex
            let splits = Dictionary(uniqueKeysWithValues: zip(parameters.parameters.map(\.name), parameterSplits))
            let copy = tiedTable.flatMap { $0.isCopy ? $0.parameter.name : nil }
            let buffer = lossBuffer
            do {
                try zero.step(maxGradientNorm: plan.gradientClip > 0 ? plan.gradientClip : nil,
                              counted: { parameter in parameter.name != copy && (splits[parameter.name] != .replicated || tensorIndex == 0) },
                              sumAcrossPieces: { squares throws(CollectiveError) in try Trainer.sum(squares, over: group, buffer: buffer) })
            } catch {
                throw .group(error)
            }
            return lossSum
        }
        if plan.gradientClip > 0 {
            if let scale = ZeroRedundancyOptimizer.clipScale(norm: try globalGradientNorm(), maxNorm: plan.gradientClip) {
                device.axpby(alpha: scale, parameters.gradients, beta: 0, parameters.gradients)
            }
        }
        optimizer.step()
        return lossSum
    }

    /// The L2 norm of the whole model's gradient: every piece's sum of squares, a replicated
    /// parameter counted on tensor part 0 only, summed over all ranks and divided by the
    /// replicas (they hold the same sums).
    func globalGradientNorm() throws(TrainingError) -> Double {
        guard let parallel, let group else { return device.sumOfSquares(parameters.gradients).squareRoot() }
        var squares = 0.0
        for (parameter, split) in zip(parameters.parameters, parameterSplits) where split != .replicated || parallel.coordinates.tensorIndex == 0 {
            // A tied table's second copy is the same tensor: counted on the embedding's stage.
            if let tiedTable, tiedTable.isCopy, tiedTable.parameter.name == parameter.name { continue }
            squares += device.sumOfSquares(parameter.gradient)
        }
        let total: Double
        do {
            total = try Trainer.sum(squares, over: group, buffer: lossBuffer) / Double(parallel.layout.dataDegree)
        } catch {
            throw .group(error)
        }
        return total.squareRoot()
    }

    /// `value` summed over every rank of `group`, carried in two floats of `buffer` (a high
    /// and a low part) so its low digits survive.
    static func sum(_ value: Double, over group: ProcessGroup, buffer: UnsafeMutableBufferPointer<Float>) throws(CollectiveError) -> Double {
        let high = Float(value)
        buffer[0] = high
        buffer[1] = Float(value - Double(high))
        try group.allReduce(UnsafeMutableBufferPointer(rebasing: buffer[0..<2]), op: .sum)
        return Double(buffer[0]) + Double(buffer[1])
    }

    /// Loss and metric on `dataset` through the pipeline: micro-batches flow forward through
    /// every stage; the last stage of the first replica scores them, and every rank gets the
    /// result.
    func evaluateThroughPipeline(_ dataset: Dataset, stage: PipelineStage) throws(TrainingError) -> [MetricValue] {
        guard let parallel, let group else { preconditionFailure("a pipeline runs on a group") }
        let length = sequenceLength
        let chunk = max(1, inputs.shape[0] / length)
        let perBatch = max(1, stage.maxMicroBatchRows / length)
        var lossSum = 0.0, correct = 0
        var start = 0
        while start < dataset.count {
            let end = min(start + chunk, dataset.count)
            let x = load(dataset, indices: start..<end)
            let batches = PipelineMicroBatch.split(rows: end - start, into: (end - start + perBatch - 1) / perBatch).map {
                PipelineMicroBatch(rows: ($0.rows.lowerBound * length)..<($0.rows.upperBound * length), firstSample: 0)
            }
            let first = start
            do {
                try stage.forward(batches, inputs: stage.isFirst ? x : nil) { batch, output in
                    let rows = batch.rows
                    lossSum += loss.evaluate(output: output, targets: targets.rows(rows), gradient: nil, gradScale: 1)
                    guard length == 1 else { return }
                    correct += correctPredictions(output, labels: dataset.labels[(first + rows.lowerBound)..<(first + rows.upperBound)])
                }
            } catch {
                throw .group(error)
            }
            try tensorParallel?.check()
            start = end
        }
        let scores = stage.isLast && parallel.coordinates.tensorIndex == 0 && parallel.coordinates.dataIndex == 0
        let high = Float(lossSum)
        var totals: [Float] = scores ? [high, Float(lossSum - Double(high)), Float(correct)] : [0, 0, 0]
        do {
            try totals.withUnsafeMutableBufferPointer { buffer throws(CollectiveError) in try group.allReduce(buffer, op: .sum) }
        } catch {
            throw .group(error)
        }
        return metrics(lossSum: Double(totals[0]) + Double(totals[1]), correct: Int(totals[2]), count: dataset.count)
    }

    /// The whole model's parameters in the single-process order and shapes, on rank 0 (the
    /// first replica's pieces sent to it); other ranks get their own pieces.
    func gatheredParameters() throws(TrainingError) -> [(name: String, shape: [Int], values: [Float])] {
        guard let parallel, let group else { return parameters.namedValues() }
        let layout = parallel.layout, at = parallel.coordinates
        let tag: UInt32 = 0x4D4F_4445
        do {
            if group.rank != 0 {
                if at.dataIndex == 0 {
                    try group.send(UnsafeBufferPointer(start: parameters.values.hostPointer, count: parameters.count), to: 0, tag: tag)
                }
                return parameters.namedValues()
            }
            var state = LogicalState()
            for stageIndex in 0..<layout.pipelineDegree {
                for part in 0..<layout.tensorDegree {
                    let rank = layout.rank(ParallelLayout.Coordinates(stage: stageIndex, dataIndex: 0, tensorIndex: part))
                    let layers = spec.makeLayers(tensorGroup: layout.tensorDegree > 1 ? TensorPart(rank: part, size: layout.tensorDegree) : nil,
                                                 separateTiedHead: layout.pipelineDegree > 1 && (plan.transformer?.tieEmbeddings ?? false))
                    let range = stage?.partition.ranges[stageIndex] ?? layers.indices
                    let specs = Array(Sequential.parameterSpecs(of: layers)[Sequential.parameterSpecRange(of: layers, layerRange: range)])
                    let count = specs.reduce(0) { $0 + $1.spec.shape.reduce(1, *) }
                    var values = [Float](repeating: 0, count: count)
                    if rank == 0 {
                        values = parameters.values.toArray()
                    } else {
                        try values.withUnsafeMutableBufferPointer { buffer throws(CollectiveError) in try group.receive(buffer, from: rank, tag: tag) }
                    }
                    var offset = 0
                    for (name, spec) in specs {
                        let size = spec.shape.reduce(1, *)
                        try state.place(Array(values[offset..<(offset + size)]),
                                        as: TensorPiece(name: name, shape: spec.shape, split: spec.split, part: part, parts: layout.tensorDegree))
                        offset += size
                    }
                }
            }
            return try Sequential.parameterSpecs(of: spec.makeLayers()).map { (name, _) throws(TrainingError) in
                guard let tensor = state.tensors[name] else { throw TrainingError.badModel(path: name, reason: "no rank sent it") }
                return (name, tensor.shape, tensor.values)
            }
        } catch let error as CollectiveError {
            throw .group(error)
        } catch let error as TrainingError {
            throw error
        } catch {
            throw .collective("\(error)")
        }
    }
}

/// The two copies of a tied embedding table when pipeline stages hold the embedding (first
/// stage) and the output head (last stage) on different ranks, as Megatron keeps them: the
/// head's copy starts as the embedding's, and before every update each side adds the other's
/// gradient, so both take the same step from the same sum the single process computes.
///
/// Concurrency: not Sendable; confined to the rank's training thread, like its group.
struct TiedTable {
    let parameter: Parameter
    /// The other copy's rank (the same replica's first or last stage).
    let partner: Int
    /// True on the head's side: its copy is not part of the model's logical state.
    let isCopy: Bool
    /// Where the partner's gradient arrives (allocated once, not every step).
    private let received: Tensor

    init(parameter: Parameter, partner: Int, isCopy: Bool) {
        self.parameter = parameter
        self.partner = partner
        self.isCopy = isCopy
        received = Tensor(zeros: [parameter.gradient.count], on: parameter.gradient.device)
    }

    private static let valuesTag: UInt32 = 0x7469_0001
    private static let gradientTag: UInt32 = 0x7469_0002

    /// Sends the embedding's table to the head's copy.
    func synchronizeValues(_ group: ProcessGroup) throws(TrainingError) {
        let values = UnsafeMutableBufferPointer(start: parameter.value.hostPointer, count: parameter.value.count)
        do {
            if isCopy {
                try group.receive(values, from: partner, tag: Self.valuesTag)
            } else {
                try group.send(UnsafeBufferPointer(values), to: partner, tag: Self.valuesTag)
            }
        } catch {
            throw .group(error)
        }
    }

    /// Adds the partner's gradient to this copy's (both sides end with the sum).
    func exchangeGradients(_ group: ProcessGroup) throws(TrainingError) {
        let count = parameter.gradient.count
        let own = UnsafeBufferPointer(start: parameter.gradient.hostPointer, count: count)
        let theirs = received.hostPointer
        do {
            // Sends queue without waiting, so both sides can send first.
            try group.send(own, to: partner, tag: Self.gradientTag)
            try group.receive(UnsafeMutableBufferPointer(start: theirs, count: count), from: partner, tag: Self.gradientTag)
        } catch {
            throw .group(error)
        }
        // The embedding's part first, as one process adds them (the head writes, the embedding adds).
        let gradient = parameter.gradient.hostPointer
        if isCopy {
            for index in 0..<count { gradient[index] = theirs[index] + gradient[index] }
        } else {
            for index in 0..<count { gradient[index] = gradient[index] + theirs[index] }
        }
    }
}
