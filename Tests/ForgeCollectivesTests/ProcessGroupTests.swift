// Every ProcessGroup operation on 1–5 ranks over the in-process and ZeroMQ transports, with
// counts smaller than the world size and counts that do not divide: rank r's input is built
// from r, so each result has a closed form.
import ForgeCollectives
import ForgeTestSupport
import Foundation
import Testing

@Suite struct ProcessGroupTests {
    /// Runs `body` on every rank's group; returns each rank's buffer (or its error).
    private func run(_ kind: TransportKind, _ worldSize: Int, count: Int,
                     _ body: @escaping @Sendable (ProcessGroup, UnsafeMutableBufferPointer<Float>) throws -> Void) throws -> [[Float]] {
        let directory = try TemporaryDirectory()
        let transports = Handed(value: try kind.make(worldSize, directory: directory))
        let outcomes = onRanks(worldSize) { rank -> Result<[Float], CollectiveError> in
            let group = ProcessGroup(transport: transports.value[rank], chunkElements: 5)
            var values = (0..<count).map { Float(rank * 1000 + $0) }
            do {
                try values.withUnsafeMutableBufferPointer { try body(group, $0) }
                return .success(values)
            } catch let error as CollectiveError {
                return .failure(error)
            } catch {
                return .failure(.invalidArgument("\(error)"))
            }
        }
        return try outcomes.map { try $0.get() }
    }

    @Test(arguments: TransportKind.allCases, [1, 2, 3, 4, 5])
    func reduceScatterLeavesEachRankItsReducedSegment(transport kind: TransportKind, worldSize: Int) throws {
        for count in [0, 2, 13] {
            let results = try run(kind, worldSize, count: count) { group, buffer in try group.reduceScatter(buffer, op: .sum) }
            for (rank, values) in results.enumerated() {
                for i in RingAllReduce.segment(rank, of: count, ranks: worldSize) {
                    let expected = (0..<worldSize).reduce(Float(0)) { $0 + Float($1 * 1000 + i) }
                    #expect(values[i] == expected, "\(kind) \(worldSize) ranks, rank \(rank), element \(i)")
                }
            }
        }
    }

    @Test(arguments: TransportKind.allCases, [1, 2, 3, 4, 5])
    func allGatherCollectsEverySegment(transport kind: TransportKind, worldSize: Int) throws {
        for count in [0, 3, 17] {
            let results = try run(kind, worldSize, count: count) { group, buffer in try group.allGather(buffer) }
            let expected = (0..<count).map { i in
                let owner = (0..<worldSize).first { RingAllReduce.segment($0, of: count, ranks: worldSize).contains(i) } ?? 0
                return Float(owner * 1000 + i)
            }
            for values in results { #expect(values == expected, "\(kind) \(worldSize) ranks, \(count) elements") }
        }
    }

    @Test(arguments: TransportKind.allCases, [1, 2, 3, 4, 5])
    func broadcastCopiesTheRootEverywhere(transport kind: TransportKind, worldSize: Int) throws {
        let root = worldSize - 1
        for count in [0, 1, 23] {
            let results = try run(kind, worldSize, count: count) { group, buffer in try group.broadcast(buffer, root: root) }
            let expected = (0..<count).map { Float(root * 1000 + $0) }
            for values in results { #expect(values == expected, "\(kind) \(worldSize) ranks, \(count) elements") }
        }
    }

    @Test(arguments: TransportKind.allCases)
    func barrierAndPointToPoint(transport kind: TransportKind) throws {
        let results = try run(kind, 3, count: 4) { group, buffer in
            try group.barrier()
            // A ring of sends: each rank sends its buffer right and keeps what comes from the left.
            let right = (group.rank + 1) % 3, left = (group.rank + 2) % 3
            let outgoing = Array(buffer)
            try outgoing.withUnsafeBufferPointer { try group.send($0, to: right, tag: 7) }
            try group.receive(buffer, from: left, tag: 7)
            try group.barrier()
        }
        for (rank, values) in results.enumerated() {
            let left = (rank + 2) % 3
            #expect(values == (0..<4).map { Float(left * 1000 + $0) })
        }
    }

    @Test func aBrokenGroupStaysBroken() throws {
        let hub = InProcessHub(worldSize: 2, timeoutMilliseconds: 100)
        let group = ProcessGroup(transport: hub.transport(rank: 0))
        var values: [Float] = [1, 2]
        let first = values.withUnsafeMutableBufferPointer { buffer in Result { () throws(CollectiveError) in try group.allReduce(buffer, op: .sum) } }
        #expect(throws: CollectiveError.timedOut(peer: 1, milliseconds: 100)) { try first.get() }
        #expect(group.broken == .timedOut(peer: 1, milliseconds: 100))
        #expect(throws: CollectiveError.timedOut(peer: 1, milliseconds: 100)) { try group.barrier() }
    }
}
