// Ring all-reduce over the in-process transport: closed-form results for every op, world
// sizes 1–5, counts smaller than the world size, uneven counts and multi-chunk segments; a
// silent rank turns into an error on the others within the timeout.
import ForgeCollectives
import ForgeTestSupport
import ForgeTransport
import Foundation
import Testing

/// Hands one rank's transport to the thread that runs the rank (each thread touches only its own).
struct Handed<T>: @unchecked Sendable {
    let value: T
}

/// The transports the suite runs over: the in-process reference, ZeroMQ over tcp:// and ipc://,
/// plain TCP connections each rank polls itself (socket),
/// shared-memory rings (small, so records wrap and large messages fragment), and a routed mix
/// where pairs of ranks share memory and reach the others over tcp://.
enum TransportKind: String, CaseIterable, Sendable {
    case inProcess, tcp, ipc, sharedMemory, mixed, socket, sealed

    /// One transport per rank, connected into a group.
    func make(_ worldSize: Int, timeoutMilliseconds: Int = 10_000, keys: [ClusterKey?]? = nil,
              directory: TemporaryDirectory? = nil) throws -> [any CollectiveTransport] {
        switch self {
        case .inProcess:
            let hub = InProcessHub(worldSize: worldSize, timeoutMilliseconds: timeoutMilliseconds)
            return (0..<worldSize).map { hub.transport(rank: $0) }
        case .sharedMemory:
            return try TransportKind.sharedMemory(worldSize, timeoutMilliseconds: timeoutMilliseconds) { _, _ in true }
        case .mixed:
            let near: @Sendable (Int, Int) -> Bool = { $0 / 2 == $1 / 2 }
            let shm = try TransportKind.sharedMemory(worldSize, timeoutMilliseconds: timeoutMilliseconds, near)
            let zmq = try TransportKind.tcp.make(worldSize, timeoutMilliseconds: timeoutMilliseconds)
            return (0..<worldSize).map { rank in
                RoutedTransport(routes: (0..<worldSize).map { near(rank, $0) ? shm[rank] : zmq[rank] }, rank: rank)
            }
        case .socket, .sealed:
            let key = self == .sealed ? try ClusterKey.generate() : nil
            let transports = try (0..<worldSize).map {
                try SocketTransport(rank: $0, worldSize: worldSize, host: "127.0.0.1", timeoutMilliseconds: timeoutMilliseconds, sealedWith: key)
            }
            let endpoints = transports.map(\.endpoint)
            let secrets = self == .sealed ? transports.map { $0.sealingSecret ?? [] } : nil
            let handed = Handed(value: transports)
            // Each rank connects to the lower ranks and accepts the higher ones: all at once.
            let failures = onRanks(worldSize) { rank -> CollectiveError? in
                do throws(CollectiveError) {
                    try handed.value[rank].connect(to: endpoints, secrets: secrets)
                    return nil
                } catch {
                    return error
                }
            }
            if let failure = failures.compactMap({ $0 }).first { throw failure }
            return transports
        case .tcp, .ipc:
            let context = try ZMQContext()
            let transports = try (0..<worldSize).map { rank in
                let endpoint = self == .tcp ? "tcp://127.0.0.1:*" : "ipc://" + (directory?.file("r\(rank)") ?? "/tmp/forge-r\(rank)")
                return try ZMQTransport(context: context, rank: rank, worldSize: worldSize, bind: endpoint,
                                        key: keys?[rank] ?? nil, timeoutMilliseconds: timeoutMilliseconds)
            }
            for transport in transports { try transport.connect(to: transports.map(\.endpoint)) }
            return transports
        }
    }

    /// Shared-memory transports with 8 KiB rings, rank r attached to each peer p with `attach(r, p)`.
    static func sharedMemory(_ worldSize: Int, timeoutMilliseconds: Int,
                             _ attach: (Int, Int) -> Bool) throws -> [SharedMemoryTransport] {
        let transports = try (0..<worldSize).map {
            try SharedMemoryTransport(rank: $0, worldSize: worldSize, capacity: 8192, timeoutMilliseconds: timeoutMilliseconds)
        }
        for transport in transports {
            for peer in 0..<worldSize where peer != transport.rank && attach(transport.rank, peer) {
                try transport.attach(peer: peer, mailbox: transports[peer].mailbox)
            }
        }
        for transport in transports { transport.unlinkMailbox() }
        return transports
    }
}

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

    @Test(arguments: TransportKind.allCases, [1, 2, 3, 4, 5])
    func everyOpMatchesTheClosedForm(transport kind: TransportKind, worldSize: Int) throws {
        let directory = try TemporaryDirectory()
        for count in [0, 1, 3, 7, 1000, 10_007] {
            for op in ReduceOp.allCases {
                let transports = Handed(value: try kind.make(worldSize, directory: directory))
                let outcomes = onRanks(worldSize) { rank -> Result<[Float], CollectiveError> in
                    var values = RingAllReduceTests.input(rank: rank, count: count)
                    let ring = RingAllReduce(transport: transports.value[rank], chunkElements: 64)
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
                    #expect(values == expected, "\(kind): \(op) on \(worldSize) ranks, \(count) elements, rank \(rank)")
                }
            }
        }
    }

    /// Values whose sums round differently in different orders.
    static func unevenInput(rank: Int, index: Int) -> Float {
        let whole = Float(rank + 1) * Float(index % 7 + 1)
        return whole + Float(rank) * 0.001
    }

    /// Runs `algorithm` (made over each rank's transport; it reduces a buffer with an op)
    /// `calls` times in a row on inputs whose sums round differently in different orders; the
    /// last call's results must match the closed form and be bit-identical on every rank.
    private static func expectClosedFormOnEveryRank(_ kind: TransportKind, _ worldSize: Int, counts: [Int], calls: Int = 1,
                                                    _ algorithm: @escaping @Sendable (any CollectiveTransport)
                                                        -> (UnsafeMutableBufferPointer<Float>, ReduceOp) throws -> Void) throws {
        let directory = try TemporaryDirectory()
        for count in counts {
            for op in ReduceOp.allCases {
                let transports = Handed(value: try kind.make(worldSize, directory: directory))
                let outcomes = onRanks(worldSize) { rank -> Result<[Float], CollectiveError> in
                    let run = algorithm(transports.value[rank])
                    var values: [Float] = []
                    do {
                        for _ in 0..<calls {
                            values = (0..<count).map { RingAllReduceTests.unevenInput(rank: rank, index: $0) }
                            try values.withUnsafeMutableBufferPointer { try run($0, op) }
                        }
                        return .success(values)
                    } catch let error as CollectiveError {
                        return .failure(error)
                    } catch {
                        return .failure(.invalidArgument("\(error)"))
                    }
                }
                let results = try outcomes.map { try $0.get() }
                for i in 0..<count {
                    let inputs = (0..<worldSize).map { Double(RingAllReduceTests.unevenInput(rank: $0, index: i)) }
                    let expected: Double
                    switch op {
                    case .sum: expected = inputs.reduce(0, +)
                    case .mean: expected = inputs.reduce(0, +) / Double(worldSize)
                    case .max: expected = inputs.max() ?? 0
                    }
                    #expect(abs(Double(results[0][i]) - expected) <= 1e-5 * abs(expected), "\(kind) \(op) \(worldSize) ranks, element \(i)")
                }
                for rank in 1..<worldSize {
                    #expect(results[rank].map(\.bitPattern) == results[0].map(\.bitPattern), "\(kind) \(op) \(worldSize) ranks: rank \(rank) differs from rank 0")
                }
            }
        }
    }

    @Test(arguments: TransportKind.allCases, [1, 2, 3, 4, 5, 6, 7])
    func recursiveDoublingMatchesTheClosedFormAndLeavesRanksIdentical(transport kind: TransportKind, worldSize: Int) throws {
        try Self.expectClosedFormOnEveryRank(kind, worldSize, counts: [0, 1, 3, 7, 1000]) { transport in
            let doubling = RecursiveDoublingAllReduce(transport: transport, chunkElements: 64)
            return { buffer, op in try doubling.run(buffer, op: op) }
        }
    }

    @Test(arguments: TransportKind.allCases, [2, 3, 4, 5, 6, 7, 8])
    func halvingAndDoublingMatchesTheClosedFormAndLeavesRanksIdentical(transport kind: TransportKind, worldSize: Int) throws {
        // Counts below the world size (empty halves), odd counts (halves differing by one),
        // several chunks per half (chunks of 64), two calls in a row (the second call's messages
        // must not meet the first's), and world sizes that fold into a power of two (3, 5, 6, 7).
        try Self.expectClosedFormOnEveryRank(kind, worldSize, counts: [0, 1, 3, 7, 1000, 4099], calls: 2) { transport in
            let halving = HalvingDoublingAllReduce(transport: transport, chunkElements: 64)
            return { buffer, op in try halving.run(buffer, op: op) }
        }
    }

    @Test(arguments: [TransportKind.inProcess, .sharedMemory], [2, 3, 5])
    func theGroupPicksAnAlgorithmBySizeAndBothAgree(transport kind: TransportKind, worldSize: Int) throws {
        // With a 64-byte threshold, 16 elements go by recursive doubling and 17 by the ring; an
        // interleaved sequence of both keeps every rank's calls in step.
        let transports = Handed(value: try kind.make(worldSize))
        let outcomes = onRanks(worldSize) { rank -> Result<[[Float]], CollectiveError> in
            let group = ProcessGroup(transport: transports.value[rank], chunkElements: 4, smallAllReduceBytes: 64)
            var results: [[Float]] = []
            do {
                for count in [16, 17, 1, 100, 16] {
                    var values = RingAllReduceTests.input(rank: rank, count: count)
                    try values.withUnsafeMutableBufferPointer { try group.allReduce($0, op: .sum) }
                    results.append(values)
                }
                return .success(results)
            } catch let error as CollectiveError {
                return .failure(error)
            } catch {
                return .failure(.invalidArgument("\(error)"))
            }
        }
        let rankSum = Float(worldSize * (worldSize + 1) / 2)
        for outcome in outcomes {
            for values in try outcome.get() {
                #expect(values == (0..<values.count).map { rankSum * Float($0 % 7 + 1) })
            }
        }
    }

    @Test(arguments: [TransportKind.tcp, .ipc, .mixed, .socket, .sealed], [2, 3])
    func largeChunksSentWithoutACopyArriveIntactCallAfterCall(transport kind: TransportKind, worldSize: Int) throws {
        // 256 KiB chunks go zero-copy over ZeroMQ; each call rewrites the buffer the moment the
        // previous one returns, so a payload still read after the call would show up as wrong sums.
        let directory = try TemporaryDirectory()
        let transports = Handed(value: try kind.make(worldSize, directory: directory))
        let count = 300_007
        let outcomes = onRanks(worldSize) { rank -> Result<Bool, CollectiveError> in
            let group = ProcessGroup(transport: transports.value[rank])
            var values = [Float](repeating: 0, count: count)
            do {
                for round in 0..<4 {
                    for i in 0..<count { values[i] = Float(rank + 1) * Float((i + round) % 7 + 1) }
                    try values.withUnsafeMutableBufferPointer { try group.allReduce($0, op: .sum) }
                    let rankSum = Float(worldSize * (worldSize + 1) / 2)
                    guard (0..<count).allSatisfy({ values[$0] == rankSum * Float(($0 + round) % 7 + 1) }) else { return .success(false) }
                    for i in 0..<count { values[i] = Float(rank * 10 + round) }
                    try values.withUnsafeMutableBufferPointer { try group.broadcast($0, root: round % worldSize) }
                    guard values.allSatisfy({ $0 == Float((round % worldSize) * 10 + round) }) else { return .success(false) }
                }
                return .success(true)
            } catch let error as CollectiveError {
                return .failure(error)
            } catch {
                return .failure(.invalidArgument("\(error)"))
            }
        }
        for (rank, outcome) in outcomes.enumerated() { #expect(try outcome.get(), "\(kind), \(worldSize) ranks: rank \(rank) saw a wrong result") }
    }

    @Test func aRankWithoutTheClusterKeyCannotJoin() throws {
        let key = try ClusterKey.generate()
        let intruder = try ClusterKey.generate()
        // Ranks 0 and 1 share the cluster key; rank 2 holds another: nothing it sends is
        // accepted, so its neighbour times out instead of reducing its data.
        let transports = Handed(value: try TransportKind.tcp.make(3, timeoutMilliseconds: 500, keys: [key, key, intruder]))
        let outcomes: [CollectiveError?] = onRanks(3) { rank -> CollectiveError? in
            var values = [Float](repeating: 1, count: 30)
            return allReduce(RingAllReduce(transport: transports.value[rank], chunkElements: 8), &values, op: .sum)
        }
        #expect(outcomes[0] == CollectiveError.timedOut(peer: 2, milliseconds: 500))
        #expect(outcomes.allSatisfy { $0 != nil }, "a group with an intruder completed: \(outcomes)")
    }

    @Test(arguments: TransportKind.allCases)
    func aSilentRankIsAnErrorOnTheOthers(transport kind: TransportKind) throws {
        let directory = try TemporaryDirectory()
        let transports = Handed(value: try kind.make(3, timeoutMilliseconds: 300, directory: directory))
        let outcomes: [CollectiveError?] = onRanks(2) { rank -> CollectiveError? in
            var values = [Float](repeating: 1, count: 100)
            return allReduce(RingAllReduce(transport: transports.value[rank], chunkElements: 16), &values, op: .sum)
        }
        // Rank 2 never runs: rank 0 waits on it (its left neighbour) and times out; rank 1
        // waits on rank 0, which stops sending once it has failed.
        #expect(outcomes[0] == CollectiveError.timedOut(peer: 2, milliseconds: 300))
        #expect(outcomes[1] == CollectiveError.timedOut(peer: 0, milliseconds: 300))
    }

    @Test(arguments: TransportKind.allCases)
    func aDesynchronisedPeerIsAProtocolViolation(transport kind: TransportKind) throws {
        let directory = try TemporaryDirectory()
        let transports = Handed(value: try kind.make(2, timeoutMilliseconds: 2000, directory: directory))
        let outcomes: [CollectiveError?] = onRanks(2) { rank -> CollectiveError? in
            // Rank 1 sends 8 elements, rank 0 expects 4 per segment of a 8-element buffer.
            var values = [Float](repeating: 1, count: rank == 0 ? 8 : 16)
            let ring = RingAllReduce(transport: transports.value[rank], chunkElements: 64)
            return allReduce(ring, &values, op: .sum)
        }
        #expect(outcomes[0] == CollectiveError.protocolViolation(peer: 1, reason: "expected 16 bytes, got 32"))
    }
}
