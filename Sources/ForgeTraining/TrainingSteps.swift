// The pieces of one training step: a replica's forward and backward on its slice, the gradient
// buckets of data-parallel reduction, and which records each step trains on.
import ForgeArchive
import ForgeCollectives
import ForgeData
import ForgeNN
import ForgeRandom
import ForgeTensor

/// One step's forward and backward for each replica on its contiguous slice of the batch.
///
/// Concurrency: `@unchecked Sendable` because it carries tensors and models into pool jobs.
/// Part p touches only replica p, rows `slice(p)` of the inputs and targets, and its own
/// gradient buffers; the shared parameter values are only read until every part returns.
struct StepJob: @unchecked Sendable {
    let replicas: [Sequential]
    let gradients: [Tensor]
    let inputs: Tensor
    let targets: Tensor
    let loss: any Loss
    /// This process's rows, the whole step's rows (all ranks), and the global index of the first.
    let rows: Int
    let globalRows: Int
    let firstSample: Int
    let step: Int
    let seed: UInt64
    /// Model rows per sample (tokens per window for a language model).
    let sequenceLength: Int

    /// Samples of part `part`: contiguous, sizes differing by at most one, as ranks split a batch.
    func slice(_ part: Int) -> Range<Int> {
        (try? Shard(rank: part, worldSize: replicas.count))?.slice(ofBatch: 0..<rows) ?? 0..<0
    }

    /// Runs part `part`; returns its summed loss (0 for an empty slice). `lossComputed` gets the
    /// loss as soon as it is known, `layerFinished` each layer whose gradients are final.
    func run(part: Int, lossComputed: ((Double) -> Void)? = nil, layerFinished: ((Int) -> Void)? = nil) -> Double {
        let rows = slice(part)
        guard !rows.isEmpty else { return 0 }
        let model = replicas[part]
        let length = sequenceLength
        let modelRows = (rows.lowerBound * length)..<(rows.upperBound * length)
        // Dropout masks are keyed by the row's index in the global batch, so any split draws
        // the masks one thread would.
        let context = ForwardContext(training: true, step: step, firstSample: (firstSample + rows.lowerBound) * length, seed: seed,
                                     sequenceLength: length)
        let output = model.forward(inputs.rows(modelRows), context: context)
        let gradient = gradients[part].rows(0..<modelRows.count)
        let lossSum = loss.evaluate(output: output, targets: targets.rows(modelRows), gradient: gradient,
                                    gradScale: 1 / Float(globalRows * length))
        lossComputed?(lossSum)
        model.backward(gradient, layerFinished: layerFinished)
        return lossSum
    }
}

/// The gradient buckets of data-parallel training: contiguous ranges of the flat parameter
/// block, formed from the last layer back until each holds at least `bucketBytes`, in the order
/// backward completes them. A bucket is complete once its first (lowest) layer has finished.
struct GradientBuckets {
    /// Ranges of the flat block, last layers first.
    let ranges: [Range<Int>]
    /// The layer whose completion completes each bucket.
    let firstLayers: [Int]

    init(model: Sequential, bucketBytes: Int) {
        var ranges: [Range<Int>] = [], firstLayers: [Int] = []
        var open: Range<Int>?
        var openLayer = 0
        for layer in model.layers.indices.reversed() {
            let range = model.parameterRange(ofLayer: layer)
            guard !range.isEmpty else { continue }
            open = range.lowerBound..<(open?.upperBound ?? range.upperBound)
            openLayer = layer
            if let bucket = open, bucket.count * 4 >= bucketBytes {
                ranges.append(bucket)
                firstLayers.append(layer)
                open = nil
            }
        }
        if let open {
            ranges.append(open)
            firstLayers.append(openLayer)
        }
        self.ranges = ranges
        self.firstLayers = firstLayers
    }

    /// The buckets that layer `layer` completes.
    func completed(byLayer layer: Int) -> [Int] {
        firstLayers.indices.filter { firstLayers[$0] == layer }
    }
}

/// Which records each step of an epoch trains on, on this rank.
///
/// A replicated channel (or one process): one seeded shuffle of all records per epoch, cut into
/// global batches, each split into contiguous per-rank slices (CONVENTIONS.md), so any world
/// size takes the steps one process takes. A sharded channel (ShardedByS3Key): each rank
/// shuffles its own records (seeded by rank) and takes its slice's worth of them per step,
/// wrapping around its shard; every rank takes ⌈total records / global batch⌉ steps per epoch,
/// so the ranks stay in step however unevenly the files split.
struct BatchSchedule {
    let steps: Int
    private let order: EpochOrder
    private let ranges: [Range<Int>]
    private let sharded: Bool
    /// Nil for one process (the whole batch is this rank's).
    private let shard: Shard?
    private let batchSize: Int
    private let localCount: Int

    init(data: PreparedData, batchSize: Int, seed: UInt64, rank: Int, worldSize: Int) {
        sharded = data.trainIsSharded && worldSize > 1
        shard = try? Shard(rank: rank, worldSize: worldSize)
        self.batchSize = batchSize
        localCount = data.train.count
        if sharded {
            order = EpochOrder(count: data.train.count, seed: mix64(seed ^ 0x5348_4152_4400_0000 &+ UInt64(rank)))
            ranges = []
            steps = (data.totalTrainCount + batchSize - 1) / batchSize
        } else {
            order = EpochOrder(count: data.train.count, seed: seed)
            ranges = order.batchRanges(batchSize: batchSize)
            steps = ranges.count
        }
    }

    func permutation(epoch: Int) -> [Int] { order.permutation(epoch: epoch) }

    /// Step `step`'s records on this rank, the global batch's size, and the place of this
    /// rank's first row in it (dropout is keyed by it).
    func batch(_ step: Int, of permutation: [Int]) -> (local: ArraySlice<Int>, globalRows: Int, firstSample: Int) {
        if sharded {
            let mine = shard?.slice(ofBatch: 0..<batchSize) ?? 0..<batchSize
            let records = (0..<mine.count).map { permutation[(step * mine.count + $0) % localCount] }
            return (records[...], batchSize, mine.lowerBound)
        }
        let global = permutation[ranges[step]]
        let mine = shard?.slice(ofBatch: 0..<global.count) ?? 0..<global.count
        return (global[(global.startIndex + mine.lowerBound)..<(global.startIndex + mine.upperBound)], global.count, mine.lowerBound)
    }
}
