// Sub-groups over the in-process transport: collectives inside data- and tensor-parallel groups
// of a 2×2 world, alternately; every operation inside uneven and overlapping sub-groups of 3 and
// 5 ranks; a program that uses two groups in a different order on two ranks is an error.
import ForgeCollectives
import Foundation
import Testing

@Suite struct SubgroupTransportTests {
    /// Rank `rank`'s input for round `round`: exact in Float, so sums have a closed form.
    private static func input(rank: Int, round: Int, count: Int) -> [Float] {
        (0..<count).map { Float((rank + 1) * (round + 1)) + Float($0 % 13) }
    }

    /// Runs `body(rank, group)` on every rank of an in-process world; returns each rank's
    /// result or error.
    private static func world<T: Sendable>(_ worldSize: Int, timeoutMilliseconds: Int = 10_000, chunkElements: Int = 5,
                                           _ body: @escaping @Sendable (Int, ProcessGroup) throws -> T) -> [Result<T, CollectiveError>] {
        let hub = InProcessHub(worldSize: worldSize, timeoutMilliseconds: timeoutMilliseconds)
        let transports = Handed(value: (0..<worldSize).map { hub.transport(rank: $0) })
        return onRanks(worldSize) { rank in
            let group = ProcessGroup(transport: transports.value[rank], chunkElements: chunkElements)
            do {
                return .success(try body(rank, group))
            } catch let error as CollectiveError {
                return .failure(error)
            } catch {
                return .failure(.invalidArgument("\(error)"))
            }
        }
    }

    @Test func dataAndTensorGroupsOfATwoByTwoWorldReduceAlternately() throws {
        let layout = try ParallelLayout(worldSize: 4, tensorDegree: 2)
        // 3 and 17 elements go by recursive doubling, 20 000 (80 KB) by the ring in chunks of 5.
        let counts = [1, 3, 17, 20_000]
        let outcomes = Self.world(4) { rank, group -> [[Float]] in
            let groups = try group.parallelGroups(layout)
            var results: [[Float]] = []
            for round in 0..<8 {
                let subgroup = round % 2 == 0 ? groups.dataParallel : groups.tensorParallel
                var values = Self.input(rank: rank, round: round, count: counts[round % counts.count])
                try values.withUnsafeMutableBufferPointer { try subgroup.allReduce($0, op: .sum) }
                results.append(values)
            }
            return results
        }
        for (rank, outcome) in outcomes.enumerated() {
            let results = try outcome.get()
            for round in 0..<8 {
                let members = round % 2 == 0 ? layout.dataParallelRanks(of: rank) : layout.tensorParallelRanks(of: rank)
                let count = counts[round % counts.count]
                let inputs = members.map { Self.input(rank: $0, round: round, count: count) }
                let expected = (0..<count).map { i in inputs.reduce(Float(0)) { $0 + $1[i] } }
                #expect(results[round] == expected, "rank \(rank), round \(round) in \(members)")
            }
        }
    }

    /// Uneven sub-groups: 3 ranks as [0, 2] and [1]; 5 ranks as [0, 2, 3] and [1, 4], then the
    /// overlapping [1, 2, 4] and [0, 1, 2] (which share the pair 1–2, used in one order).
    @Test(arguments: [3, 5])
    func everyOperationRunsInsideUnevenSubgroups(worldSize: Int) throws {
        let partitions: [[[Int]]] = worldSize == 3 ? [[[0, 2], [1]]] : [[[0, 2, 3], [1, 4]], [[1, 2, 4], [0, 1, 2]]]
        let count = 23
        let outcomes = Self.world(worldSize) { rank, group -> [String: [Float]] in
            var results: [String: [Float]] = [:]
            for partition in partitions {
                for members in partition where members.contains(rank) {
                    let subgroup = try group.subgroup(ranks: members)
                    var values = Self.input(rank: rank, round: 0, count: count)
                    try values.withUnsafeMutableBufferPointer { try subgroup.reduceScatter($0, op: .sum) }
                    results["reduceScatter \(members)"] = Array(values[subgroup.segment(of: count)])
                    values = Self.input(rank: rank, round: 1, count: count)
                    try values.withUnsafeMutableBufferPointer { try subgroup.allGather($0) }
                    results["allGather \(members)"] = values
                    values = Self.input(rank: rank, round: 2, count: count)
                    try values.withUnsafeMutableBufferPointer { try subgroup.broadcast($0, root: subgroup.worldSize - 1) }
                    results["broadcast \(members)"] = values
                    // A ring of sends inside the sub-group (a rank alone keeps its broadcast).
                    let right = (subgroup.rank + 1) % subgroup.worldSize
                    let left = (subgroup.rank + subgroup.worldSize - 1) % subgroup.worldSize
                    let outgoing = Self.input(rank: rank, round: 3, count: count)
                    if subgroup.worldSize > 1 {
                        try outgoing.withUnsafeBufferPointer { try subgroup.send($0, to: right, tag: 9) }
                        try values.withUnsafeMutableBufferPointer { try subgroup.receive($0, from: left, tag: 9) }
                    } else {
                        values = outgoing
                    }
                    results["ring \(members)"] = values
                    try subgroup.barrier()
                }
            }
            // The whole group still works afterwards, in step with the sub-groups.
            var values = Self.input(rank: rank, round: 4, count: count)
            try values.withUnsafeMutableBufferPointer { try group.allReduce($0, op: .sum) }
            results["whole"] = values
            return results
        }
        for (rank, outcome) in outcomes.enumerated() {
            let results = try outcome.get()
            for members in partitions.joined() where members.contains(rank) {
                let index = members.firstIndex(of: rank) ?? 0
                let size = members.count
                let mine = RingAllReduce.segment(index, of: count, ranks: size)
                let inputs = members.map { Self.input(rank: $0, round: 0, count: count) }
                let sums = (0..<count).map { i in inputs.reduce(Float(0)) { $0 + $1[i] } }
                #expect(results["reduceScatter \(members)"] == Array(sums[mine]), "rank \(rank) in \(members)")
                let gathered = (0..<count).map { i in
                    let owner = (0..<size).first { RingAllReduce.segment($0, of: count, ranks: size).contains(i) } ?? 0
                    return Self.input(rank: members[owner], round: 1, count: count)[i]
                }
                #expect(results["allGather \(members)"] == gathered, "rank \(rank) in \(members)")
                #expect(results["broadcast \(members)"] == Self.input(rank: members[size - 1], round: 2, count: count),
                        "rank \(rank) in \(members)")
                #expect(results["ring \(members)"] == Self.input(rank: members[(index + size - 1) % size], round: 3, count: count),
                        "rank \(rank) in \(members)")
            }
            let whole = (0..<count).map { i in (0..<worldSize).reduce(Float(0)) { $0 + Self.input(rank: $1, round: 4, count: count)[i] } }
            #expect(results["whole"] == whole, "rank \(rank)")
        }
    }

    @Test func groupsUsedInADifferentOrderAreAProtocolViolation() throws {
        // Rank 0 reduces in the sub-group first, rank 1 in the whole group first: the first
        // message each receives carries the other group's tag.
        let outcomes = Self.world(2, timeoutMilliseconds: 2_000) { rank, group -> Bool in
            let subgroup = try group.subgroup(ranks: [0, 1])
            var values: [Float] = [1, 2, 3]
            try values.withUnsafeMutableBufferPointer { buffer in
                try (rank == 0 ? subgroup : group).allReduce(buffer, op: .sum)
                try (rank == 0 ? group : subgroup).allReduce(buffer, op: .sum)
            }
            return true
        }
        for (rank, outcome) in outcomes.enumerated() {
            guard case .failure(let error) = outcome, case .protocolViolation = error else {
                Issue.record("rank \(rank): expected a protocol violation, got \(outcome)")
                continue
            }
        }
    }

    @Test func aFailureInASubgroupBreaksTheWholeGroup() throws {
        let hub = InProcessHub(worldSize: 2, timeoutMilliseconds: 100)
        let group = ProcessGroup(transport: hub.transport(rank: 0))
        let subgroup = try group.subgroup(ranks: [0, 1])
        #expect(throws: CollectiveError.timedOut(peer: 1, milliseconds: 100)) { try subgroup.barrier() }
        #expect(group.broken == .timedOut(peer: 1, milliseconds: 100))
        #expect(throws: CollectiveError.timedOut(peer: 1, milliseconds: 100)) { try group.subgroup(ranks: [0]) }
    }

    @Test func badMemberListsAreRefused() throws {
        let hub = InProcessHub(worldSize: 4, timeoutMilliseconds: 100)
        let group = ProcessGroup(transport: hub.transport(rank: 1))
        for ranks in [[], [0, 2], [2, 1], [1, 1, 3], [1, 4], [-1, 1]] {
            #expect(throws: CollectiveError.self, "\(ranks)") { try group.subgroup(ranks: ranks) }
        }
        let alone = try group.subgroup(ranks: [1])
        #expect(alone.rank == 0 && alone.worldSize == 1)
        var values: [Float] = [5]
        try values.withUnsafeMutableBufferPointer { try alone.allReduce($0, op: .sum) }
        #expect(values == [5])
        let nested = try group.subgroup(ranks: [0, 1, 3]).subgroup(ranks: [1, 2])
        #expect(nested.rank == 0 && nested.worldSize == 2)
    }
}

@Suite struct ParallelLayoutTests {
    @Test func coordinatesFollowTheRankFormula() throws {
        let layout = try ParallelLayout(worldSize: 8, pipelineDegree: 2, tensorDegree: 2)
        #expect(layout.dataDegree == 2)
        for rank in 0..<8 {
            let at = layout.coordinates(of: rank)
            #expect((at.stage * 2 + at.dataIndex) * 2 + at.tensorIndex == rank)
            #expect(layout.rank(at) == rank)
        }
        #expect(layout.coordinates(of: 5) == .init(stage: 1, dataIndex: 0, tensorIndex: 1))
        #expect(layout.dataParallelRanks(of: 5) == [5, 7])
        #expect(layout.tensorParallelRanks(of: 5) == [4, 5])
        #expect(layout.pipelineRanks(of: 5) == [1, 5])
        #expect(layout.previousStage(of: 5) == 1 && layout.nextStage(of: 5) == nil)
        #expect(layout.previousStage(of: 2) == nil && layout.nextStage(of: 2) == 6)
        let flat = try ParallelLayout(worldSize: 3)
        #expect(flat.dataDegree == 3 && flat.dataParallelRanks(of: 1) == [0, 1, 2] && flat.tensorParallelRanks(of: 1) == [1])
    }

    @Test func degreesThatDoNotDivideTheWorldAreAClearError() {
        #expect(throws: ParallelLayoutError.notDivisible(worldSize: 6, pipelineDegree: 4, tensorDegree: 1)) {
            try ParallelLayout(worldSize: 6, pipelineDegree: 4)
        }
        #expect(throws: ParallelLayoutError.notDivisible(worldSize: 5, pipelineDegree: 1, tensorDegree: 2)) {
            try ParallelLayout(worldSize: 5, tensorDegree: 2)
        }
        #expect(throws: ParallelLayoutError.notPositive(name: "tensor degree", value: 0)) {
            try ParallelLayout(worldSize: 4, tensorDegree: 0)
        }
        let message = ParallelLayoutError.notDivisible(worldSize: 6, pipelineDegree: 2, tensorDegree: 2).description
        #expect(message.contains("6 ranks") && message.contains("2 pipeline stages × 2 tensor shards"), "\(message)")
    }

    @Test func stagesPassActivationsToTheirNeighboursWhileReplicasReduce() throws {
        // 8 ranks as 2 stages × 2 replicas × 2 shards: each stage sends its rank to the next,
        // then every data- and tensor-parallel group sums the ranks it received.
        let layout = try ParallelLayout(worldSize: 8, pipelineDegree: 2, tensorDegree: 2)
        let hub = InProcessHub(worldSize: 8, timeoutMilliseconds: 10_000)
        let transports = Handed(value: (0..<8).map { hub.transport(rank: $0) })
        let outcomes = onRanks(8) { rank -> Result<[Float], CollectiveError> in
            let group = ProcessGroup(transport: transports.value[rank])
            do {
                let groups = try group.parallelGroups(layout)
                var activation: [Float] = [Float(rank)]
                if let next = groups.nextStage { try activation.withUnsafeBufferPointer { try group.send($0, to: next) } }
                if let previous = groups.previousStage {
                    try activation.withUnsafeMutableBufferPointer { try group.receive($0, from: previous) }
                }
                var data = activation, tensor = activation
                try data.withUnsafeMutableBufferPointer { try groups.dataParallel.allReduce($0, op: .sum) }
                try tensor.withUnsafeMutableBufferPointer { try groups.tensorParallel.allReduce($0, op: .sum) }
                return .success(data + tensor + [Float(groups.dataParallel.rank), Float(groups.tensorParallel.rank)])
            } catch let error as CollectiveError {
                return .failure(error)
            } catch {
                return .failure(.invalidArgument("\(error)"))
            }
        }
        for (rank, outcome) in outcomes.enumerated() {
            let at = layout.coordinates(of: rank)
            // What each rank holds after the hand-over: its previous stage's rank, or its own.
            let held = { (r: Int) in Float(layout.previousStage(of: r) ?? r) }
            let data = layout.dataParallelRanks(of: rank).map(held).reduce(0, +)
            let tensor = layout.tensorParallelRanks(of: rank).map(held).reduce(0, +)
            #expect(try outcome.get() == [data, tensor, Float(at.dataIndex), Float(at.tensorIndex)], "rank \(rank)")
        }
    }
}
