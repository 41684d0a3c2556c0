// Tests of Shard and ShardingMode: validation, balanced contiguous slices for many (n, W),
// per-record ranges, and ShardedByS3Key file assignment.
import ForgeData
import Testing

@Suite struct ShardTests {
    @Test func validatesRankAndWorldSize() throws {
        #expect(throws: DataError.invalidShard(rank: 2, worldSize: 2)) { try Shard(rank: 2, worldSize: 2) }
        #expect(throws: DataError.invalidShard(rank: -1, worldSize: 2)) { try Shard(rank: -1, worldSize: 2) }
        #expect(throws: DataError.invalidShard(rank: 0, worldSize: 0)) { try Shard(rank: 0, worldSize: 0) }
        #expect(DataError.invalidShard(rank: 0, worldSize: 0).description == "world size 0 must be at least 1")
        #expect(DataError.invalidShard(rank: 3, worldSize: 2).description == "rank 3 is outside 0..<2")
        let shard = try Shard(rank: 1, worldSize: 3)
        #expect(shard.rank == 1 && shard.worldSize == 3)
    }

    @Test(arguments: 1...9)
    func slicesCoverEachBatchExactly(worldSize: Int) throws {
        let shards = try (0..<worldSize).map { rank throws(DataError) in try Shard(rank: rank, worldSize: worldSize) }
        for start in [0, 13] {
            for count in 0...50 {
                let batch = start ..< start + count
                let slices = shards.map { $0.slice(ofBatch: batch) }
                #expect(slices.first?.lowerBound == batch.lowerBound)
                #expect(slices.last?.upperBound == batch.upperBound)
                for (left, right) in zip(slices, slices.dropFirst()) { #expect(left.upperBound == right.lowerBound) }
                let sizes = slices.map(\.count)
                #expect((sizes.max() ?? 0) - (sizes.min() ?? 0) <= 1, "n \(count) W \(worldSize)")
                #expect(sizes == sizes.sorted(by: >), "the larger slices go to the first ranks")
            }
        }
    }

    @Test func givesEachRankAContiguousRecordRange() throws {
        let ranges = try (0..<4).map { rank throws(DataError) in try Shard(rank: rank, worldSize: 4).records(count: 10) }
        #expect(ranges == [0..<3, 3..<6, 6..<8, 8..<10])
    }

    @Test func assignsFilesRoundRobinInSortedOrder() throws {
        let files = ["f3", "f0", "f5", "f1", "f4", "f2", "f6"]
        #expect(try Shard(rank: 0, worldSize: 3).files(files) == ["f0", "f3", "f6"])
        #expect(try Shard(rank: 1, worldSize: 3).files(files) == ["f1", "f4"])
        #expect(try Shard(rank: 2, worldSize: 3).files(files) == ["f2", "f5"])
        let underfilled = DataError.shardUnderfilled(fileCount: 2, worldSize: 3)
        #expect(throws: underfilled) { try Shard(rank: 0, worldSize: 3).files(["a", "b"]) }
        #expect(underfilled.description == "ShardedByS3Key needs at least one file per rank, but the channel has 2 "
            + "file(s) for 3 ranks; split the data into at least 3 files or use FullyReplicated")
    }

    @Test func usesSageMakerNamesForShardingModes() {
        #expect(ShardingMode(rawValue: "FullyReplicated") == .fullyReplicated)
        #expect(ShardingMode(rawValue: "ShardedByS3Key") == .shardedByS3Key)
        #expect(ShardingMode.byRecord.rawValue == "ShardedByRecord")
    }
}
