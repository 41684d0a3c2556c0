// Every ProcessGroup operation on 1–5 ranks over the in-process and ZeroMQ transports, with
// counts smaller than the world size and counts that do not divide: rank r's input is built
// from r, so each result has a closed form.
@testable import ForgeCollectives
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
        for op in ReduceOp.allCases {
            for count in [0, 2, 13] {
                let results = try run(kind, worldSize, count: count) { group, buffer in try group.reduceScatter(buffer, op: op) }
                for (rank, values) in results.enumerated() {
                    for i in RingAllReduce.segment(rank, of: count, ranks: worldSize) {
                        let sum = (0..<worldSize).reduce(Float(0)) { $0 + Float($1 * 1000 + i) }
                        let expected = switch op {
                        case .sum: sum
                        case .mean: sum / Float(worldSize)
                        case .max: Float((worldSize - 1) * 1000 + i)
                        }
                        // The mean may divide or multiply by 1/n: one rounding apart at most.
                        #expect(abs(values[i] - expected) <= (op == .mean ? expected.ulp : 0),
                                "\(kind) \(op) \(worldSize) ranks, rank \(rank), element \(i): \(values[i]) vs \(expected)")
                    }
                }
            }
        }
    }

    /// A transport that notes the algorithm kind (a tag's top four bits) of every message sent,
    /// and checks the promise of `sendWithoutCopy`: memory handed to it stays unchanged until
    /// the next `flush` (it sends a copy, and compares the memory with it at the flush).
    private final class KindRecorder: CollectiveTransport, @unchecked Sendable {
        let inner: any CollectiveTransport
        var kinds = Set<UInt64>()
        /// Sends without a copy whose memory changed before the flush.
        var broken = 0
        private var lent: [(memory: UnsafeRawBufferPointer, bytes: [UInt8])] = []
        init(_ inner: any CollectiveTransport) { self.inner = inner }
        var rank: Int { inner.rank }
        var worldSize: Int { inner.worldSize }
        func send(_ bytes: UnsafeRawBufferPointer, to peer: Int, tag: UInt64) throws(CollectiveError) {
            kinds.insert(tag >> 60)
            try inner.send(bytes, to: peer, tag: tag)
        }
        func sendWithoutCopy(_ bytes: UnsafeRawBufferPointer, to peer: Int, tag: UInt64) throws(CollectiveError) {
            kinds.insert(tag >> 60)
            lent.append((bytes, Array(bytes)))
            try inner.send(bytes, to: peer, tag: tag)
        }
        func receive(from peer: Int, tag: UInt64, byteCount: Int, _ consume: (UnsafeRawBufferPointer) -> Void) throws(CollectiveError) {
            try inner.receive(from: peer, tag: tag, byteCount: byteCount, consume)
        }
        func flush() throws(CollectiveError) {
            broken += lent.filter { !$0.memory.elementsEqual($0.bytes) }.count
            lent.removeAll()
            try inner.flush()
        }
    }

    @Test(arguments: [TransportKind.socket, .sealed, .tcp], [3, 4])
    func allReduceAboveTheDoublingSizeTakesHalvingAndDoublingOnPowersOfTwo(transport kind: TransportKind, worldSize: Int) throws {
        // 300 KiB, above the recursive-doubling size, in chunks of 16 KiB (ZeroMQ sends those
        // without a copy): on 4 ranks it goes by halving and doubling (kind 6) when the group
        // allows it, on 3, or with it off, by the ring (kind 1). All give the closed form.
        let count = 300 << 8
        for halving in [true, false] {
            let transports = Handed(value: try kind.make(worldSize).map { KindRecorder($0) })
            let outcomes = onRanks(worldSize) { rank -> Result<[Float], CollectiveError> in
                let group = ProcessGroup(transport: transports.value[rank], chunkElements: 4096)
                group.halvingDoublingBytes = halving ? Int.max : nil
                var values = (0..<count).map { Float(rank * 1000 + $0) }
                do throws(CollectiveError) {
                    try values.withUnsafeMutableBufferPointer { buffer throws(CollectiveError) in try group.allReduce(buffer, op: .sum) }
                    return .success(values)
                } catch {
                    return .failure(error)
                }
            }
            for (rank, outcome) in outcomes.enumerated() {
                let values = try outcome.get()
                let wrong = (0..<count).first { i in values[i] != (0..<worldSize).reduce(Float(0)) { $0 + Float($1 * 1000 + i) } }
                #expect(wrong == nil, "\(kind) \(worldSize) ranks, halving \(halving), rank \(rank), element \(wrong ?? -1)")
                let expected: UInt64 = halving && worldSize == 4 ? 6 : 1
                #expect(transports.value[rank].kinds == [expected], "\(kind) \(worldSize) ranks, halving \(halving): kinds \(transports.value[rank].kinds)")
                #expect(transports.value[rank].broken == 0, "memory lent to the transport changed before the flush")
            }
        }
    }

    @Test func theAlgorithmSizesFollowTheTransport() throws {
        // Sockets: doubling to 256 KiB, halving and doubling above; shared memory and threads:
        // doubling to 64 KiB, never halving; a sub-group: its parent's.
        let socket = try TransportKind.socket.make(1)[0], shared = try TransportKind.sharedMemory.make(1)[0]
        #expect(ProcessGroup.defaultHalvingDoublingBytes(for: socket) == Int.max)
        #expect(ProcessGroup.defaultSmallAllReduceBytes(for: socket) == 256 << 10)
        #expect(ProcessGroup.defaultHalvingDoublingBytes(for: shared) == nil)
        #expect(ProcessGroup.defaultSmallAllReduceBytes(for: shared) == 64 << 10)
        #expect(ProcessGroup.defaultHalvingDoublingBytes(for: try SubgroupTransport(parent: socket, ranks: [0])) == Int.max)
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

    @Test(arguments: TransportKind.allCases, [2, 3, 4, 5])
    func barrierAndPointToPoint(transport kind: TransportKind, worldSize: Int) throws {
        let results = try run(kind, worldSize, count: 4) { group, buffer in
            try group.barrier()
            // A ring of sends: each rank sends its buffer right and keeps what comes from the left.
            let right = (group.rank + 1) % worldSize, left = (group.rank + worldSize - 1) % worldSize
            let outgoing = Array(buffer)
            try outgoing.withUnsafeBufferPointer { try group.send($0, to: right, tag: 7) }
            try group.receive(buffer, from: left, tag: 7)
            try group.barrier()
        }
        for (rank, values) in results.enumerated() {
            let left = (rank + worldSize - 1) % worldSize
            #expect(values == (0..<4).map { Float(left * 1000 + $0) }, "\(kind) \(worldSize) ranks, rank \(rank)")
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

/// What only the shared-memory transport can get wrong: rings that wrap, messages larger than a
/// ring, two ranks that both send before receiving, a mailbox that is not the peer's.
@Suite struct SharedMemoryTransportTests {
    @Test func messagesLargerThanTheRingCrossWhileBothRanksSendFirst() throws {
        let transports = Handed(value: try TransportKind.sharedMemory(2, timeoutMilliseconds: 5_000) { _, _ in true })
        let outcomes = onRanks(2) { rank -> Result<[[Float]], CollectiveError> in
            let transport = transports.value[rank]
            let peer = 1 - rank
            // 100 KiB messages through 8 KiB rings: each travels as many fragments, and each rank
            // can only finish sending because the other drains its ring while it waits.
            let sizes = [0, 1, 2047, 25_600, 3]
            do {
                for (index, size) in sizes.enumerated() {
                    let outgoing = (0..<size).map { Float(rank * 100_000 + index * 1000 + $0) }
                    try outgoing.withUnsafeBytes { try transport.send($0, to: peer, tag: UInt64(index)) }
                }
                var received: [[Float]] = []
                for (index, size) in sizes.enumerated() {
                    var incoming = [Float](repeating: -1, count: size)
                    try transport.receive(from: peer, tag: UInt64(index), byteCount: size * 4) { bytes in
                        incoming.withUnsafeMutableBytes { $0.copyMemory(from: bytes) }
                    }
                    received.append(incoming)
                }
                return .success(received)
            } catch let error as CollectiveError {
                return .failure(error)
            } catch {
                return .failure(.invalidArgument("\(error)"))
            }
        }
        for (rank, outcome) in outcomes.enumerated() {
            let received = try outcome.get()
            let peer = 1 - rank
            for (index, values) in received.enumerated() {
                #expect(values == (0..<values.count).map { Float(peer * 100_000 + index * 1000 + $0) }, "rank \(rank), message \(index)")
            }
        }
    }

    @Test func aFileThatIsNotThePeersMailboxIsRefused() throws {
        let transports = try TransportKind.sharedMemory(2, timeoutMilliseconds: 1000) { _, _ in false }
        var wrongNonce = transports[1].mailbox
        wrongNonce.nonce &+= 1
        #expect(throws: CollectiveError.self) { try transports[0].attach(peer: 1, mailbox: wrongNonce) }
        // Rank 1's real mailbox claimed as rank 1 attaches; claimed as another rank it does not.
        let three = try TransportKind.sharedMemory(3, timeoutMilliseconds: 1000) { _, _ in false }
        let fresh = try SharedMemoryTransport(rank: 1, worldSize: 3, capacity: 8192, timeoutMilliseconds: 1000)
        #expect(throws: CollectiveError.self) { try three[0].attach(peer: 2, mailbox: fresh.mailbox) }
        try three[0].attach(peer: 1, mailbox: fresh.mailbox)
        #expect(throws: CollectiveError.self) {
            try three[0].attach(peer: 1, mailbox: SharedMemoryMailbox(path: "/dev/shm/forge-missing", nonce: 1))
        }
    }

    @Test func aSenderIntoAFullRingOfASilentPeerTimesOut() throws {
        let transports = try TransportKind.sharedMemory(2, timeoutMilliseconds: 300) { _, _ in true }
        let block = [UInt8](repeating: 7, count: 1000)
        #expect(throws: CollectiveError.timedOut(peer: 1, milliseconds: 300)) {
            for index in 0..<100 { try block.withUnsafeBytes { try transports[0].send($0, to: 1, tag: UInt64(index)) } }
        }
    }
}

/// A shared-memory ring is written by another process: whatever it holds, the receiver must
/// answer with data or an error, never a crash, a hang or an out-of-bounds read.
@Suite struct SharedMemoryRingFuzzTests {
    @Test func garbledRingsAreErrorsNotCrashes() throws {
        var random = SplitMix64(seed: 77)
        let capacity = 8192
        var outcomes = [String: Int]()
        for round in 0..<2000 {
            let transports = try (0..<2).map {
                try SharedMemoryTransport(rank: $0, worldSize: 2, capacity: capacity, timeoutMilliseconds: 50)
            }
            try transports[0].attach(peer: 1, mailbox: transports[1].mailbox)
            try transports[1].attach(peer: 0, mailbox: transports[0].mailbox)
            // A few valid messages from rank 0 to rank 1 …
            let sizes = (0..<3).map { _ in Int(random.next() % 2000) }  // all three fit in the ring
            for (index, size) in sizes.enumerated() {
                let payload = [UInt8](repeating: UInt8(truncatingIfNeeded: index + round), count: size)
                try payload.withUnsafeBytes { try transports[0].send($0, to: 1, tag: UInt64(index)) }
            }
            // … then some bytes of rank 1's ring from rank 0 (control block and data) overwritten.
            let ring = UInt64(4096 + 0 * (4096 + capacity))
            let handle = try #require(FileHandle(forUpdatingAtPath: transports[1].mailbox.path))
            for _ in 0..<Int(1 + random.next() % 6) {
                let inControl = random.next() % 4 == 0
                let offset = inControl ? ring + (random.next() % 512) : ring + 4096 + random.next() % UInt64(capacity)
                try handle.seek(toOffset: offset)
                let width = Int(1 + random.next() % 8)
                try handle.write(contentsOf: (0..<width).map { _ in UInt8(truncatingIfNeeded: random.next()) })
            }
            try handle.close()
            for (index, size) in sizes.enumerated() {
                do {
                    try transports[1].receive(from: 0, tag: UInt64(index), byteCount: size) { bytes in
                        _ = bytes.reduce(0 as UInt8, &+)  // every byte handed over must be readable
                    }
                    outcomes["delivered", default: 0] += 1
                } catch let error {
                    switch error {
                    case .protocolViolation: outcomes["protocol violation", default: 0] += 1
                    case .timedOut: outcomes["timed out", default: 0] += 1
                    default: Issue.record("unexpected error \(error)")
                    }
                    break
                }
            }
            for transport in transports { transport.unlinkMailbox() }
        }
        // Both kinds of outcome occur, so the mutations reach the decoder's checks.
        #expect((outcomes["protocol violation"] ?? 0) > 0 && (outcomes["delivered"] ?? 0) > 0, "\(outcomes)")
    }
}

/// Groups made by `ProcessGroup.join`, ranks on threads of this process meeting at a real
/// rendezvous over loopback: what the group decides must be the same on every rank.
@Suite struct JoinedGroupTests {
    @Test func theSharingDecisionLooksAtEveryPairNotOneRanksOwn() {
        #expect(ProcessGroup.everyPairShares([[1, 2], [0, 2], [0, 1]]))
        #expect(ProcessGroup.everyPairShares([[]]))
        // Rank 0 mapped both peers and both mapped it, but ranks 1 and 2 do not share.
        #expect(!ProcessGroup.everyPairShares([[1, 2], [0], [0]]))
        // A pair counts only when both sides mapped each other.
        #expect(!ProcessGroup.everyPairShares([[1], []]))
    }

    @Test func aGroupWhereOnlySomeRanksShareMemoryPicksOneAlgorithmPerCall() throws {
        // Three ranks on one host; ranks 1 and 2 decline each other's mailboxes (as a full
        // /dev/shm would make them), so they talk over sockets while rank 0 reaches both through
        // shared memory: rank 0's own pairs all share, the group's do not. Every rank must take
        // the sockets' sizes (doubling up to 256 KiB, then the ring) and no rank the direct
        // shared-memory reduction; a rank deciding from its own pairs would run another
        // algorithm than its peers for the 80 KB call (or wait for a region they never make),
        // and the group would time out or differ.
        let worldSize = 3
        let master = "tcp://127.0.0.1:\(freeLoopbackPort())"
        struct Seen: Sendable, Equatable {
            var small: Int
            var halving: Int?
            var direct: Bool
            var sharedPeers: Int
            var results: [[UInt32]]
        }
        let counts = [16, 20_000, 70_000, 300_003]  // 64 B; 80 KB (between the two doubling sizes); 280 KB; 1.2 MB
        let outcomes = onRanks(worldSize) { rank -> Result<Seen, CollectiveError> in
            do throws(CollectiveError) {
                let declining: Set<Int> = rank == 1 ? [2] : rank == 2 ? [1] : []
                let group = try ProcessGroup.join(RendezvousConfiguration(rank: rank, worldSize: worldSize, master: master, timeoutMilliseconds: 30_000),
                                                  bind: "tcp://127.0.0.1:*", advertisedHost: nil, key: nil, timeoutMilliseconds: 15_000,
                                                  sharedMemory: true, plainSockets: true, chunkElements: 1 << 12,
                                                  smallAllReduceBytes: nil, declining: declining)
                var results: [[UInt32]] = []
                for count in counts {
                    var values = (0..<count).map { RingAllReduceTests.unevenInput(rank: rank, index: $0) }
                    try values.withUnsafeMutableBufferPointer { buffer throws(CollectiveError) in try group.allReduce(buffer, op: .sum) }
                    results.append(values.map(\.bitPattern))
                }
                return .success(Seen(small: group.smallAllReduceBytes, halving: group.halvingDoublingBytes, direct: group.directReduction,
                                     sharedPeers: group.sharedMemoryPeers, results: results))
            } catch {
                return .failure(error)
            }
        }
        let seen = try outcomes.map { try $0.get() }
        #expect(seen.map(\.sharedPeers) == [2, 1, 1])
        for (rank, view) in seen.enumerated() {
            #expect(view.small == 256 << 10, "rank \(rank)")
            #expect(view.halving == Int.max, "rank \(rank)")
            #expect(!view.direct, "rank \(rank)")
            #expect(view.results == seen[0].results, "rank \(rank) ended with other sums than rank 0")
        }
        for (index, count) in counts.enumerated() {
            for i in stride(from: 0, to: count, by: max(1, count / 997)) {
                let expected = (0..<worldSize).reduce(0.0) { $0 + Double(RingAllReduceTests.unevenInput(rank: $1, index: i)) }
                let got = Double(Float(bitPattern: seen[0].results[index][i]))
                #expect(abs(got - expected) <= 1e-5 * abs(expected), "\(count) floats, element \(i)")
            }
        }
    }
}
