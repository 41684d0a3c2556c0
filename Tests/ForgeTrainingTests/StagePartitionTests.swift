// Stage partitions: balanced by parameter count (parameterless layers stay with the layer
// before them) and parsed from a user's forge_stage_map, with errors that name the key.
import ForgeTraining
import Testing

@Suite struct StagePartitionTests {
    @Test func balancesEqualLayers() throws {
        let partition = try StagePartition(balancing: Array(repeating: 100, count: 8), stages: 4)
        #expect(partition.ranges == [0..<2, 2..<4, 4..<6, 6..<8])
        #expect(partition.description == "0-1,2-3,4-5,6-7")
    }

    @Test func parameterlessLayersStayWithTheLayerBefore() throws {
        // Linear, Dropout, Linear, Dropout, Linear, Linear.
        let counts = [112, 0, 272, 0, 204, 39]
        let two = try StagePartition(balancing: counts, stages: 2)
        #expect(two.ranges == [0..<4, 4..<6])
        let four = try StagePartition(balancing: counts, stages: 4)
        #expect(four.ranges == [0..<2, 2..<4, 4..<5, 5..<6])
        // A leading parameterless layer goes with the first layer that has parameters.
        let leading = try StagePartition(balancing: [0, 10, 0, 10], stages: 2)
        #expect(leading.ranges == [0..<3, 3..<4])
    }

    @Test func minimisesTheLargestStage() throws {
        let partition = try StagePartition(balancing: [10, 10, 40, 10, 10, 10], stages: 3)
        let sums = partition.ranges.map { [10, 10, 40, 10, 10, 10][$0].reduce(0, +) }
        #expect(sums.max() == 40)
        #expect(partition.ranges.map(\.count).reduce(0, +) == 6)
        #expect(try StagePartition(balancing: [5, 5, 5], stages: 1).ranges == [0..<3])
    }

    @Test func tooFewLayersIsAnError() {
        #expect(throws: StagePartitionError.tooFewLayers(layersWithParameters: 2, stages: 3)) {
            try StagePartition(balancing: [10, 0, 10], stages: 3)
        }
        #expect(throws: StagePartitionError.badDegree(0)) { try StagePartition(balancing: [10], stages: 0) }
    }

    @Test func parsesAUserMap() throws {
        let partition = try StagePartition(map: "0-3, 4-6,7", layerCount: 8, stages: 3)
        #expect(partition.ranges == [0..<4, 4..<7, 7..<8])
    }

    @Test(arguments: [
        ("0-3", 2, "has 1 stage(s), the pipeline degree is 2"),
        ("0-3,5-7", 2, "skips layer(s) 4..<5"),
        ("0-4,4-7", 2, "repeats layer 4"),
        ("1-3,4-7", 2, "skips layer(s) 0..<1"),
        ("0-3,4-6", 2, "layers 7-7 are in no stage"),
        ("0-3,4-8", 2, "reaches layer 8"),
        ("0-3,x", 2, "'x' is not FIRST-LAST"),
        ("0-3,7-4", 2, "ends before it starts"),
        ("0-3,,4-7", 3, "'' is not FIRST-LAST"),
    ])
    func rejectsBadMaps(map: String, stages: Int, expected: String) {
        do {
            _ = try StagePartition(map: map, layerCount: 8, stages: stages)
            Issue.record("'\(map)' was accepted")
        } catch {
            #expect(error.description.contains("forge_stage_map"), "\(error)")
            #expect(error.description.contains(expected), "\(error)")
            #expect(error.problem.key == "forge_stage_map")
        }
    }
}
