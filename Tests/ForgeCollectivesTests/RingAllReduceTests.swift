// Ring all-reduce over the in-process transport: closed-form results for every op, world
// sizes 1–5, counts smaller than the world size, uneven counts and multi-chunk segments; a
// silent rank turns into an error on the others within the timeout.
import ForgeCollectives
import Foundation
import Testing

/// Runs `body(rank)` on one thread per rank and returns each rank's result.
func onRanks<T: Sendable>(_ worldSize: Int, _ body: @escaping @Sendable (Int) -> T) -> [T] {
    let results = ResultBox<T>(count: worldSize)
    let group = DispatchGroup()
    for rank in 0..<worldSize {
        group.enter()
        Thread {
            results.set(rank, body(rank))
            group.leave()
        }.start()
    }
    group.wait()
    return results.values()
}

/// Runs `ring` over `values`; returns the error it threw, if any.
func allReduce(_ ring: RingAllReduce, _ values: inout [Float], op: ReduceOp) -> CollectiveError? {
    do {
        try values.withUnsafeMutableBufferPointer { try ring.run($0, op: op) }
        return nil
    } catch let error as CollectiveError {
        return error
    } catch {
        return .invalidArgument("unexpected error \(error)")
    }
}

/// Per-rank results written from the rank threads.
final class ResultBox<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var slots: [T?]
    init(count: Int) { slots = Array(repeating: nil, count: count) }
    func set(_ index: Int, _ value: T) { lock.lock(); slots[index] = value; lock.unlock() }
    func values() -> [T] { lock.lock(); defer { lock.unlock() }; return slots.compactMap { $0 } }
}

@Suite struct RingAllReduceTests {
    /// Rank r contributes (r + 1) · (i mod 7 + 1) at index i: sums, means and maxima are exact.
    static func input(rank: Int, count: Int) -> [Float] {
        (0..<count).map { Float(rank + 1) * Float($0 % 7 + 1) }
    }

    @Test(arguments: [1, 2, 3, 4, 5], [0, 1, 3, 7, 1000, 10_007])
    func everyOpMatchesTheClosedForm(worldSize: Int, count: Int) throws {
        for op in ReduceOp.allCases {
            let hub = InProcessHub(worldSize: worldSize)
            let outcomes = onRanks(worldSize) { rank -> Result<[Float], CollectiveError> in
                var values = RingAllReduceTests.input(rank: rank, count: count)
                let ring = RingAllReduce(transport: hub.transport(rank: rank), chunkElements: 64)
                if let error = allReduce(ring, &values, op: op) { return .failure(error) }
                return .success(values)
            }
            let rankSum = Float(worldSize * (worldSize + 1) / 2)
            let expected: [Float] = (0..<count).map { i in
                let unit = Float(i % 7 + 1)
                switch op {
                case .sum: return rankSum * unit
                case .mean: return rankSum * unit * (1 / Float(worldSize))
                case .max: return Float(worldSize) * unit
                }
            }
            for (rank, outcome) in outcomes.enumerated() {
                let values = try outcome.get()
                #expect(values == expected, "\(op) on \(worldSize) ranks, \(count) elements, rank \(rank)")
            }
        }
    }

    @Test func aSilentRankIsAnErrorOnTheOthers() throws {
        let hub = InProcessHub(worldSize: 3, timeoutMilliseconds: 300)
        let outcomes: [CollectiveError?] = onRanks(2) { rank -> CollectiveError? in
            var values = [Float](repeating: 1, count: 100)
            let ring = RingAllReduce(transport: hub.transport(rank: rank), chunkElements: 16)
            return allReduce(ring, &values, op: .sum)
        }
        // Rank 2 never runs: rank 0 waits on it (its left neighbour) and times out; rank 1
        // waits on rank 0, which stops sending once it has failed.
        #expect(outcomes[0] == CollectiveError.timedOut(peer: 2, milliseconds: 300))
        #expect(outcomes[1] == CollectiveError.timedOut(peer: 0, milliseconds: 300))
    }

    @Test func aDesynchronisedPeerIsAProtocolViolation() throws {
        let hub = InProcessHub(worldSize: 2, timeoutMilliseconds: 2000)
        let outcomes: [CollectiveError?] = onRanks(2) { rank -> CollectiveError? in
            // Rank 1 sends 8 elements, rank 0 expects 4 per segment of a 8-element buffer.
            var values = [Float](repeating: 1, count: rank == 0 ? 8 : 16)
            let ring = RingAllReduce(transport: hub.transport(rank: rank), chunkElements: 64)
            return allReduce(ring, &values, op: .sum)
        }
        #expect(outcomes[0] == CollectiveError.protocolViolation(peer: 1, reason: "expected 16 bytes, got 32"))
    }
}
