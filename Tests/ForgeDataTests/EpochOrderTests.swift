// Tests of EpochOrder: determinism per (seed, epoch), independence of epochs, permutations,
// batch cuts, and a pinned order so checkpoints stay resumable across releases.
import ForgeData
import Testing

@Suite struct EpochOrderTests {
    @Test func sameSeedAndEpochGiveTheSameOrder() {
        let order = EpochOrder(count: 1000, seed: 42)
        #expect(order.permutation(epoch: 3) == EpochOrder(count: 1000, seed: 42).permutation(epoch: 3))
        #expect(order.permutation(epoch: 3) != order.permutation(epoch: 4))
        #expect(order.permutation(epoch: 3) != EpochOrder(count: 1000, seed: 43).permutation(epoch: 3))
    }

    @Test(arguments: [0, 1, 2, 17, 1000])
    func visitsEveryRecordOnce(count: Int) {
        let order = EpochOrder(count: count, seed: 7)
        for epoch in 0..<3 {
            #expect(order.permutation(epoch: epoch).sorted() == Array(0..<count))
        }
    }

    @Test func keepsFileOrderWithoutShuffle() {
        #expect(EpochOrder(count: 5, seed: 1, shuffle: false).permutation(epoch: 9) == [0, 1, 2, 3, 4])
    }

    @Test func pinsTheOrderOfAGivenSeed() {
        // A change here breaks resuming checkpoints written by earlier builds.
        #expect(EpochOrder(count: 10, seed: 42).permutation(epoch: 0) == PinnedOrder.seed42Epoch0)
        #expect(EpochOrder(count: 10, seed: 42).permutation(epoch: 5) == PinnedOrder.seed42Epoch5)
    }

    @Test func cutsBatchesKeepingTheLastPartialOne() {
        let order = EpochOrder(count: 10, seed: 5)
        #expect(order.batchCount(batchSize: 4) == 3)
        #expect(order.batchRanges(batchSize: 4) == [0..<4, 4..<8, 8..<10])
        #expect(order.batchRanges(batchSize: 5) == [0..<5, 5..<10])
        #expect(order.batchRanges(batchSize: 64) == [0..<10])
        #expect(EpochOrder(count: 0, seed: 5).batchRanges(batchSize: 4).isEmpty)
        let batches = order.batches(epoch: 2, batchSize: 4)
        #expect(batches.map(\.count) == [4, 4, 2])
        #expect(Array(batches.joined()) == order.permutation(epoch: 2))
    }
}

/// Orders computed by this implementation when it was written.
private enum PinnedOrder {
    static let seed42Epoch0 = [2, 0, 8, 7, 5, 3, 4, 6, 1, 9]
    static let seed42Epoch5 = [4, 3, 9, 8, 0, 1, 7, 5, 6, 2]
}
