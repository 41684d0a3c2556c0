// What only the plain-TCP transport can get wrong: a stranger at its data socket, frames that
// are not Forge's (fuzzed), a peer that disconnects, and two ranks that both send more than the
// kernel buffers hold before either receives. The collective suites run every algorithm over it
// too (TransportKind.socket).
@testable import ForgeCollectives
import ForgeTestSupport
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite struct SocketTransportTests {
    /// A raw TCP client playing rank 1 of a group of 2 against a real rank 0.
    private final class RawPeer: @unchecked Sendable {
        let descriptor: Int32

        init(endpoint: String) throws {
            guard let descriptor = loopbackConnection(to: endpoint) else { throw CollectiveError.invalidArgument("connect failed: errno \(errno)") }
            self.descriptor = descriptor
        }

        deinit { close(descriptor) }

        func send(_ bytes: [UInt8]) {
            _ = bytes.withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        }

        static func hello(rank: UInt32, worldSize: UInt32, magic: UInt32 = 0x4853_4746) -> [UInt8] {
            var bytes = [UInt8]()
            for value in [magic] { withUnsafeBytes(of: value.littleEndian) { bytes += $0 } }
            withUnsafeBytes(of: UInt16(1).littleEndian) { bytes += $0 }
            withUnsafeBytes(of: UInt16(0).littleEndian) { bytes += $0 }
            withUnsafeBytes(of: rank.littleEndian) { bytes += $0 }
            withUnsafeBytes(of: worldSize.littleEndian) { bytes += $0 }
            return bytes
        }

        static func frame(tag: UInt64, payload: [UInt8]) -> [UInt8] {
            var bytes = [UInt8]()
            withUnsafeBytes(of: UInt32(0x4B53_4746).littleEndian) { bytes += $0 }
            withUnsafeBytes(of: UInt16(1).littleEndian) { bytes += $0 }
            withUnsafeBytes(of: UInt16(0).littleEndian) { bytes += $0 }
            withUnsafeBytes(of: tag.littleEndian) { bytes += $0 }
            withUnsafeBytes(of: UInt64(payload.count).littleEndian) { bytes += $0 }
            return bytes + payload
        }
    }

    /// Rank 0 of 2, connected to a raw peer that said `hello`; returns the transport (or the
    /// error its connect threw) and the peer.
    private func rankZero(hello: [UInt8], timeoutMilliseconds: Int = 2000) throws -> (Result<SocketTransport, CollectiveError>, RawPeer) {
        let transport = try SocketTransport(rank: 0, worldSize: 2, host: "127.0.0.1", timeoutMilliseconds: timeoutMilliseconds)
        let handed = Handed(value: transport)
        let endpoint = transport.endpoint
        let outcome = onRanks(2) { index -> Result<RawPeer?, CollectiveError> in
            if index == 0 {
                do throws(CollectiveError) {
                    try handed.value.connect(to: [endpoint, "tcp://127.0.0.1:1"])
                    return .success(nil)
                } catch {
                    return .failure(error)
                }
            }
            do {
                let peer = try RawPeer(endpoint: endpoint)
                peer.send(hello)
                return .success(peer)
            } catch {
                return .failure(.invalidArgument("\(error)"))
            }
        }
        let peer = try #require(try outcome[1].get())
        return (outcome[0].map { _ in transport }, peer)
    }

    private func receive(_ transport: SocketTransport, byteCount: Int = 8) -> CollectiveError? {
        do throws(CollectiveError) {
            try transport.receive(from: 1, tag: 7, byteCount: byteCount) { _ in }
            return nil
        } catch {
            return error
        }
    }

    @Test func aWellFormedFrameFromARawPeerArrives() throws {
        let (connected, peer) = try rankZero(hello: RawPeer.hello(rank: 1, worldSize: 2))
        let transport = try connected.get()
        peer.send(RawPeer.frame(tag: 7, payload: [1, 2, 3, 4, 5, 6, 7, 8]))
        var got: [UInt8] = []
        try transport.receive(from: 1, tag: 7, byteCount: 8) { got = Array($0) }
        #expect(got == [1, 2, 3, 4, 5, 6, 7, 8])
    }

    @Test func aStrangerAtTheDataSocketIsRefused() throws {
        let (connected, _) = try rankZero(hello: RawPeer.hello(rank: 1, worldSize: 2, magic: 0x5445_4720))
        #expect(throws: CollectiveError.self) { try connected.get() }
        let (wrongWorld, _) = try rankZero(hello: RawPeer.hello(rank: 1, worldSize: 3))
        #expect(throws: CollectiveError.self) { try wrongWorld.get() }
    }

    @Test func aPeerThatDisconnectsIsNamedAtOnce() throws {
        let (connected, peer) = try rankZero(hello: RawPeer.hello(rank: 1, worldSize: 2), timeoutMilliseconds: 30_000)
        let transport = try connected.get()
        shutdown(peer.descriptor, Int32(SHUT_RDWR))
        let started = Date()
        #expect(receive(transport) == .peerLost(peer: 1, reason: "rank 1 closed its connection (has it exited?)"))
        #expect(Date().timeIntervalSince(started) < 5)
    }

    @Test func framesThatAreNotForgesAreErrorsNeverCrashesOrHangs() throws {
        // 400 rounds: a valid frame's header with random bytes replaced, or a random header; the
        // transport must answer with a protocol violation, a timeout (a frame announcing more
        // than arrives) or the message itself (a mutation that left it valid), and nothing else.
        var random = SystemRandomNumberGenerator()
        var outcomes = [String: Int]()
        for round in 0..<400 {
            var bytes = RawPeer.frame(tag: 7, payload: [UInt8](repeating: 9, count: 8))
            if round % 4 == 3 {
                for i in 0..<24 { bytes[i] = UInt8.random(in: 0...255, using: &random) }
            } else {
                for _ in 0..<(1 + round % 3) { bytes[Int.random(in: 0..<24, using: &random)] = UInt8.random(in: 0...255, using: &random) }
            }
            let (connected, peer) = try rankZero(hello: RawPeer.hello(rank: 1, worldSize: 2), timeoutMilliseconds: 100)
            let transport = try connected.get()
            peer.send(bytes)
            let outcome: String
            switch receive(transport) {
            case nil: outcome = "delivered"
            case .protocolViolation(peer: 1, _): outcome = "violation"
            case .timedOut(peer: 1, _): outcome = "timeout"
            case let other: outcome = "unexpected \(String(describing: other))"
            }
            outcomes[outcome, default: 0] += 1
        }
        #expect(Set(outcomes.keys).isSubset(of: ["delivered", "violation", "timeout"]), "\(outcomes)")
        #expect((outcomes["violation"] ?? 0) > 200, "\(outcomes)")
    }

    @Test func fuzzedHeadersAndHellosDecodeExactlyAsTheFormatSays() {
        // 200,000 data-frame headers (valid ones with 1–4 bytes replaced, wholly random ones,
        // and ones cut short or run long) and 100,000 hellos, checked against a reading of the
        // format written out here: a decoder must accept exactly what the format allows and
        // return what the bytes say, or throw a protocol violation; never crash.
        func little(_ bytes: [UInt8], _ offset: Int, _ count: Int) -> UInt64 {
            (0..<count).reduce(UInt64(0)) { $0 | UInt64(bytes[offset + $1]) << (8 * UInt64($1)) }
        }
        var random = SplitMix64(seed: 0x5EED_F00D)
        var accepted = 0, refused = 0
        for round in 0..<200_000 {
            var bytes = Array(RawPeer.frame(tag: UInt64.random(in: 0...UInt64.max, using: &random), payload: []).prefix(24))
            withUnsafeBytes(of: UInt64.random(in: 0...64, using: &random).littleEndian) { bytes.replaceSubrange(16..<24, with: $0) }
            switch round % 8 {
            case 0: bytes = (0..<24).map { _ in UInt8.random(in: 0...255, using: &random) }
            case 1: bytes = Array(bytes.prefix(Int.random(in: 0..<24, using: &random)))
            case 2: bytes += [UInt8.random(in: 0...255, using: &random)]
            case 3: break
            default:
                for _ in 0..<(1 + round % 4) { bytes[Int.random(in: 0..<24, using: &random)] = UInt8.random(in: 0...255, using: &random) }
            }
            let expecting: Int? = round % 3 == 0 ? nil : Int.random(in: 0...64, using: &random)
            let wellFormed = bytes.count == 24 && little(bytes, 0, 4) == 0x4B53_4746 && little(bytes, 4, 2) == 1 && little(bytes, 6, 2) == 0
                && little(bytes, 16, 8) <= UInt64(UInt32.max) && (expecting.map { UInt64($0) == little(bytes, 16, 8) } ?? true)
            do throws(CollectiveError) {
                let (tag, length) = try SocketTransport.decodeHeader(bytes, from: 1, expecting: expecting)
                #expect(wellFormed && tag == little(bytes, 8, 8) && UInt64(length) == little(bytes, 16, 8), "round \(round): \(bytes)")
                accepted += 1
            } catch {
                guard case .protocolViolation(peer: 1, _) = error else {
                    Issue.record("round \(round): \(error)")
                    continue
                }
                #expect(!wellFormed, "round \(round): a well-formed header refused: \(bytes)")
                refused += 1
            }
        }
        #expect(accepted > 10_000 && refused > 100_000, "\(accepted) accepted, \(refused) refused")
        var greeted = 0
        for round in 0..<100_000 {
            let worldSize = Int.random(in: 1...9, using: &random)
            // Half claim this group's size (a rank at most one past its end), half any size.
            let claimed = round % 2 == 0 ? UInt32(worldSize) : UInt32.random(in: 1...9, using: &random)
            var bytes = RawPeer.hello(rank: UInt32.random(in: 0...claimed, using: &random), worldSize: claimed)
            if round % 4 == 0 {
                bytes = (0..<Int.random(in: 0...20, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
            } else if round % 4 == 1 {
                bytes[Int.random(in: 0..<16, using: &random)] = UInt8.random(in: 0...255, using: &random)
            }
            let wellFormed = bytes.count == 16 && little(bytes, 0, 4) == 0x4853_4746 && little(bytes, 4, 2) == 1 && little(bytes, 6, 2) == 0
                && little(bytes, 12, 4) == UInt64(worldSize) && little(bytes, 8, 4) < UInt64(worldSize)
            let rank = SocketTransport.decodeHello(bytes, worldSize: worldSize)
            #expect(rank == (wellFormed ? Int(little(bytes, 8, 4)) : nil), "round \(round): \(bytes) in a group of \(worldSize)")
            if rank != nil { greeted += 1 }
        }
        #expect(greeted > 10_000, "\(greeted) hellos accepted")
    }

    @Test func twoRanksThatBothSendMoreThanTheKernelHoldsDoNotDeadlock() throws {
        // 40 MiB each way before either receives: a send waits for the kernel to take its
        // message and meanwhile reads the other's ahead, growing its buffer as bytes arrive.
        let transports = Handed(value: try TransportKind.socket.make(2, timeoutMilliseconds: 10_000))
        let count = 40 << 20
        let outcomes = onRanks(2) { rank -> Result<Bool, CollectiveError> in
            let transport = transports.value[rank]
            let outgoing = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 64)
            defer { outgoing.deallocate() }
            outgoing.initializeMemory(as: UInt8.self, repeating: UInt8(rank + 1))
            var received = 0
            do throws(CollectiveError) {
                try transport.send(UnsafeRawBufferPointer(outgoing), to: 1 - rank, tag: 5)
                try transport.receive(from: 1 - rank, tag: 5, byteCount: count) { bytes in
                    received = bytes.allSatisfy { $0 == UInt8(2 - rank) } ? bytes.count : -1
                }
                try transport.flush()
                return .success(received == count)
            } catch {
                return .failure(error)
            }
        }
        for outcome in outcomes { #expect(try outcome.get()) }
    }

    @Test func readingAheadStopsAtItsLimitAndLosesNothing() throws {
        // Rank 1 queues 24 messages of 1 MiB for rank 0, which first waits for rank 2's. Rank 0
        // reads rank 1's ahead meanwhile, but only up to its limit (2 MiB, plus the message
        // under way); the rest waits in rank 1's socket and queue. Then every message arrives,
        // whole and in order.
        let transports = Handed(value: try TransportKind.socket.make(3, timeoutMilliseconds: 10_000))
        let (messages, size, limit) = (24, 1 << 20, 2 << 20)
        // Rank 2 sends half a second after rank 1 has queued everything and rank 0 waits.
        let queued = DispatchSemaphore(value: 0), waiting = DispatchSemaphore(value: 0)
        let outcomes = onRanks(3) { rank -> Result<Int, CollectiveError> in
            let transport = transports.value[rank] as! SocketTransport
            transport.readAheadLimit = limit
            do throws(CollectiveError) {
                switch rank {
                case 1:
                    let outgoing = UnsafeMutableRawBufferPointer.allocate(byteCount: messages * size, alignment: 64)
                    defer { outgoing.deallocate() }
                    for index in 0..<messages {
                        let message = UnsafeMutableRawBufferPointer(rebasing: outgoing[(index * size)..<((index + 1) * size)])
                        message.initializeMemory(as: UInt8.self, repeating: UInt8(index))
                        try transport.sendWithoutCopy(UnsafeRawBufferPointer(message), to: 0, tag: UInt64(index))
                    }
                    queued.signal()
                    try transport.flush()
                    return .success(0)
                case 2:
                    queued.wait()
                    waiting.wait()
                    Thread.sleep(forTimeInterval: 0.5)
                    let word = UnsafeMutableRawBufferPointer.allocate(byteCount: 8, alignment: 8)
                    defer { word.deallocate() }
                    word.initializeMemory(as: UInt8.self, repeating: 9)
                    try transport.send(UnsafeRawBufferPointer(word), to: 0, tag: 99)
                    return .success(0)
                default:
                    waiting.signal()
                    try transport.receive(from: 2, tag: 99, byteCount: 8) { _ in }
                    let held = transport.readAheadBytes(from: 1)
                    var intact = 0
                    for index in 0..<messages {
                        try transport.receive(from: 1, tag: UInt64(index), byteCount: size) { bytes in
                            if bytes.allSatisfy({ $0 == UInt8(index) }) { intact += 1 }
                        }
                    }
                    #expect(intact == messages)
                    #expect(transport.readAheadBytes(from: 1) == 0)
                    return .success(held)
                }
            } catch {
                return .failure(error)
            }
        }
        let held = try outcomes[0].get()
        // The limit, plus at most the message under way when it was reached (and 64 bytes a message).
        #expect(held >= limit && held <= limit + size + 64 * 3, "rank 0 held \(held) bytes of rank 1's read ahead (limit \(limit))")
        for outcome in outcomes { _ = try outcome.get() }
    }
}
