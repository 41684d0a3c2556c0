// The standard layout of data, pipeline and tensor parallelism over a world of ranks, and the
// sub-groups each rank joins under it.

/// How W ranks split into P pipeline stages × D data-parallel replicas × T tensor-parallel
/// shards, with `rank = (stage · D + dataIndex) · T + tensorIndex`: the ranks of one
/// tensor-parallel group are adjacent (on one host where hosts hold consecutive ranks, since
/// tensor parallelism talks most), then the replicas of a stage, then the stages.
public struct ParallelLayout: Sendable, Equatable, CustomStringConvertible {
    public let worldSize: Int
    public let dataDegree: Int
    public let pipelineDegree: Int
    public let tensorDegree: Int

    /// Where one rank sits in the layout.
    public struct Coordinates: Sendable, Equatable {
        public var stage: Int
        public var dataIndex: Int
        public var tensorIndex: Int

        public init(stage: Int, dataIndex: Int, tensorIndex: Int) {
            self.stage = stage
            self.dataIndex = dataIndex
            self.tensorIndex = tensorIndex
        }
    }

    /// The layout of `worldSize` ranks with `pipelineDegree` stages and `tensorDegree`-way
    /// tensor parallelism; the data-parallel degree is what is left, W / (P × T).
    public init(worldSize: Int, pipelineDegree: Int = 1, tensorDegree: Int = 1) throws(ParallelLayoutError) {
        guard worldSize >= 1 else { throw .notPositive(name: "world size", value: worldSize) }
        guard pipelineDegree >= 1 else { throw .notPositive(name: "pipeline degree", value: pipelineDegree) }
        guard tensorDegree >= 1 else { throw .notPositive(name: "tensor degree", value: tensorDegree) }
        let (product, overflow) = pipelineDegree.multipliedReportingOverflow(by: tensorDegree)
        guard !overflow, worldSize % product == 0 else {
            throw .notDivisible(worldSize: worldSize, pipelineDegree: pipelineDegree, tensorDegree: tensorDegree)
        }
        self.worldSize = worldSize
        self.pipelineDegree = pipelineDegree
        self.tensorDegree = tensorDegree
        dataDegree = worldSize / product
    }

    public var description: String {
        "\(worldSize) ranks = \(dataDegree) data × \(pipelineDegree) pipeline × \(tensorDegree) tensor"
    }

    /// The rank at `coordinates`.
    public func rank(_ coordinates: Coordinates) -> Int {
        precondition((0..<pipelineDegree).contains(coordinates.stage) && (0..<dataDegree).contains(coordinates.dataIndex)
                     && (0..<tensorDegree).contains(coordinates.tensorIndex), "\(coordinates) is outside \(self)")
        return (coordinates.stage * dataDegree + coordinates.dataIndex) * tensorDegree + coordinates.tensorIndex
    }

    /// Where `rank` sits.
    public func coordinates(of rank: Int) -> Coordinates {
        precondition((0..<worldSize).contains(rank), "rank \(rank) is outside \(self)")
        return Coordinates(stage: rank / (dataDegree * tensorDegree), dataIndex: rank / tensorDegree % dataDegree,
                           tensorIndex: rank % tensorDegree)
    }

    /// The ranks that hold the same shard of the same stage as `rank` (its gradients are summed
    /// across them), ascending.
    public func dataParallelRanks(of rank: Int) -> [Int] {
        let at = coordinates(of: rank)
        return (0..<dataDegree).map { self.rank(Coordinates(stage: at.stage, dataIndex: $0, tensorIndex: at.tensorIndex)) }
    }

    /// The ranks that split the layers of `rank`'s stage and replica between them, ascending.
    public func tensorParallelRanks(of rank: Int) -> [Int] {
        let at = coordinates(of: rank)
        return (0..<tensorDegree).map { self.rank(Coordinates(stage: at.stage, dataIndex: at.dataIndex, tensorIndex: $0)) }
    }

    /// The ranks of every stage of `rank`'s replica and shard, first stage first.
    public func pipelineRanks(of rank: Int) -> [Int] {
        let at = coordinates(of: rank)
        return (0..<pipelineDegree).map { self.rank(Coordinates(stage: $0, dataIndex: at.dataIndex, tensorIndex: at.tensorIndex)) }
    }

    /// The rank of the stage before `rank`'s (same replica and shard); nil on the first stage.
    public func previousStage(of rank: Int) -> Int? {
        let at = coordinates(of: rank)
        guard at.stage > 0 else { return nil }
        return self.rank(Coordinates(stage: at.stage - 1, dataIndex: at.dataIndex, tensorIndex: at.tensorIndex))
    }

    /// The rank of the stage after `rank`'s (same replica and shard); nil on the last stage.
    public func nextStage(of rank: Int) -> Int? {
        let at = coordinates(of: rank)
        guard at.stage < pipelineDegree - 1 else { return nil }
        return self.rank(Coordinates(stage: at.stage + 1, dataIndex: at.dataIndex, tensorIndex: at.tensorIndex))
    }
}

/// One rank's groups under a `ParallelLayout`.
///
/// Concurrency: not Sendable (it holds process groups); it belongs to the thread that runs
/// this rank.
public struct ParallelGroups {
    public let layout: ParallelLayout
    public let coordinates: ParallelLayout.Coordinates
    /// The ranks of `dataParallelRanks(of:)`, renumbered 0..<D by data index.
    public let dataParallel: ProcessGroup
    /// The ranks of `tensorParallelRanks(of:)`, renumbered 0..<T by tensor index.
    public let tensorParallel: ProcessGroup
    /// The previous and next stage's rank in the whole group (nil at either end): activations
    /// and their gradients travel by `send` and `receive` on the whole group.
    public let previousStage: Int?
    public let nextStage: Int?
}

extension ProcessGroup {
    /// This rank's place in `layout` and its data- and tensor-parallel sub-groups. Every rank
    /// of the group calls it with the same layout, whose world size must be this group's.
    /// The two sub-groups share only this rank, so their operations need no common order.
    public func parallelGroups(_ layout: ParallelLayout) throws(CollectiveError) -> ParallelGroups {
        guard layout.worldSize == worldSize else {
            throw .invalidArgument("the layout (\(layout)) is for \(layout.worldSize) ranks, the group has \(worldSize)")
        }
        return ParallelGroups(layout: layout, coordinates: layout.coordinates(of: rank),
                              dataParallel: try subgroup(ranks: layout.dataParallelRanks(of: rank)),
                              tensorParallel: try subgroup(ranks: layout.tensorParallelRanks(of: rank)),
                              previousStage: layout.previousStage(of: rank), nextStage: layout.nextStage(of: rank))
    }
}

/// Why a parallel layout cannot be built.
public enum ParallelLayoutError: Error, Equatable, CustomStringConvertible {
    /// W is not a multiple of P × T.
    case notDivisible(worldSize: Int, pipelineDegree: Int, tensorDegree: Int)
    /// A degree or the world size is below 1.
    case notPositive(name: String, value: Int)

    public var description: String {
        switch self {
        case .notDivisible(let worldSize, let pipelineDegree, let tensorDegree):
            return "\(worldSize) ranks do not divide into \(pipelineDegree) pipeline stages × \(tensorDegree) tensor shards "
                + "(\(pipelineDegree.multipliedReportingOverflow(by: tensorDegree).partialValue) ranks per replica): choose degrees whose product divides the world size"
        case .notPositive(let name, let value):
            return "the \(name) must be at least 1, not \(value)"
        }
    }
}
