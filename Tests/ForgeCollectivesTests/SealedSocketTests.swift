// Sealed socket connections (a cluster key): a raw peer that holds the group's secrets and
// speaks the handshake itself, so each way of breaking a sealed message can be tried on a real
// rank: altered ciphertext, tag or header, a replay, a gap, the wrong direction's key. Each
// must be a protocol violation, never data. A peer without the secrets, or unsealed, is refused
// when it connects. (The collective suites run every algorithm over sealed connections too:
// TransportKind.sealed.)
import Crypto
@testable import ForgeCollectives
import ForgeTestSupport
import ForgeTransport
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite struct SealedSocketTests {
    /// The cluster key rank 0 seals with.
    static let clusterKey = try! ClusterKey.generate()

    /// A raw TCP client playing rank 1 of a group of 2 against a real, sealed rank 0.
    private final class SealedPeer: @unchecked Sendable {
        let descriptor: Int32
        /// The pair's keys as this peer derived them (nil until the handshake).
        var keys: (lowToHigh: SymmetricKey, highToLow: SymmetricKey)?
        /// Whether rank 0's proof held under those keys.
        var rankZeroProved = false
        /// The two greetings as they went over the wire (this peer's, rank 0's).
        var greetings: (connecting: [UInt8], accepting: [UInt8])?
        var sent: UInt64 = 1

        init(endpoint: String) throws {
            guard let descriptor = loopbackConnection(to: endpoint) else { throw CollectiveError.invalidArgument("connect failed: errno \(errno)") }
            self.descriptor = descriptor
            var limit = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        }

        deinit { close(descriptor) }

        func send(_ bytes: [UInt8]) {
            _ = bytes.withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        }

        func read(_ count: Int) -> [UInt8]? {
            var bytes = [UInt8](repeating: 0, count: count)
            let got = bytes.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, count, Int32(MSG_WAITALL)) }
            return got == count ? bytes : nil
        }

        static func little<T: FixedWidthInteger>(_ value: T) -> [UInt8] { withUnsafeBytes(of: value.littleEndian) { Array($0) } }

        static func hello(flags: UInt16) -> [UInt8] {
            little(UInt32(0x4853_4746)) + little(UInt16(1)) + little(flags) + little(UInt32(1)) + little(UInt32(2))
        }

        /// The connecting side of the handshake with `secrets` (rank 0's, this peer's) and the
        /// cluster key `key`.
        func handshake(secrets: [[UInt8]], key: ClusterKey = SealedSocketTests.clusterKey) {
            let hello = SealedPeer.hello(flags: 1)
            let ours = SocketTransport.Greeting()
            send(hello + ours.bytes)
            guard let answer = read(SocketTransport.greetingBytes + 16) else { return }
            let theirs = Array(answer.prefix(SocketTransport.greetingBytes))
            guard let agreed = ours.agreement(with: theirs) else { return }
            let pair = SocketTransport.pairKeys(low: 0, high: 1, worldSize: 2, clusterSecret: Array(key.secretKey.utf8), secrets: secrets,
                                                agreed: agreed, connecting: ours.bytes, accepting: theirs)
            keys = pair
            greetings = (ours.bytes, theirs)
            let transcript = hello + ours.bytes + theirs
            rankZeroProved = SocketTransport.proofHolds(Array(answer.suffix(16)), key: pair.lowToHigh, transcript: transcript, role: 0x41)
            send(SocketTransport.proof(key: pair.highToLow, transcript: transcript, role: 0x43))
        }

        /// A sealed message as rank 1 sends it (message number `counter`, default the next one;
        /// `key` default the right direction's): the header, then each 64 KiB record's
        /// ciphertext and tag.
        func frame(tag: UInt64, payload: [UInt8], counter: UInt64? = nil, key: SymmetricKey? = nil) throws -> [UInt8] {
            let header = SealedPeer.little(UInt32(0x4B53_4746)) + SealedPeer.little(UInt16(1)) + SealedPeer.little(UInt16(1))
                + SealedPeer.little(tag) + SealedPeer.little(UInt64(payload.count))
            let number = counter ?? sent
            if counter == nil { sent += 1 }
            var wire = header, offset = 0, record: UInt32 = 0
            repeat {
                let piece = payload[offset..<min(payload.count, offset + (64 << 10))]
                let box = try AES.GCM.seal(piece, using: try #require(key ?? keys?.highToLow), nonce: SocketTransport.nonce(number, record: record),
                                           authenticating: header)
                wire += Array(box.ciphertext) + Array(box.tag)
                offset += piece.count
                record += 1
            } while offset < payload.count
            return wire
        }
    }

    /// Rank 0 of 2 (sealed), connected to a raw peer that does `greet` with the socket; returns
    /// rank 0's transport (or its connect's error) and the peer.
    private func rankZero(timeoutMilliseconds: Int = 2000, peerSecret: [UInt8] = Array(repeating: 7, count: 32),
                          greet: @escaping @Sendable (SealedPeer, [UInt8]) -> Void) throws -> (Result<SocketTransport, CollectiveError>, SealedPeer) {
        let transport = try SocketTransport(rank: 0, worldSize: 2, host: "127.0.0.1", timeoutMilliseconds: timeoutMilliseconds,
                                            sealedWith: SealedSocketTests.clusterKey)
        let secret = try #require(transport.sealingSecret)
        let handed = Handed(value: transport)
        let endpoint = transport.endpoint
        let outcome = onRanks(2) { index -> Result<SealedPeer?, CollectiveError> in
            if index == 0 {
                do throws(CollectiveError) {
                    try handed.value.connect(to: [endpoint, "tcp://127.0.0.1:1"], secrets: [secret, peerSecret])
                    return .success(nil)
                } catch {
                    return .failure(error)
                }
            }
            do {
                let peer = try SealedPeer(endpoint: endpoint)
                greet(peer, secret)
                return .success(peer)
            } catch {
                return .failure(.invalidArgument("\(error)"))
            }
        }
        let peer = try #require(try outcome[1].get())
        return (outcome[0].map { _ in transport }, peer)
    }

    private func receive(_ transport: SocketTransport, byteCount: Int = 8) -> Result<[UInt8], CollectiveError> {
        do throws(CollectiveError) {
            var got: [UInt8] = []
            try transport.receive(from: 1, tag: 7, byteCount: byteCount) { got = Array($0) }
            return .success(got)
        } catch {
            return .failure(error)
        }
    }

    @Test func sealedMessagesArriveInOrderAndDecrypted() throws {
        let secret: [UInt8] = Array(repeating: 7, count: 32)
        let (connected, peer) = try rankZero { peer, rankZeroSecret in peer.handshake(secrets: [rankZeroSecret, secret]) }
        let transport = try connected.get()
        #expect(peer.rankZeroProved, "rank 0's proof did not hold under the keys the peer derived")
        for round in 0..<3 {
            let payload = (0..<8).map { UInt8(round * 10 + $0) }
            let frame = try peer.frame(tag: 7, payload: payload)
            // What travels is not the payload.
            #expect(!frame.dropFirst(24).starts(with: payload))
            peer.send(frame)
            #expect(try receive(transport).get() == payload)
        }
        // And back: rank 0's message opens with the other direction's key.
        let outgoing: [UInt8] = [9, 8, 7, 6]
        try outgoing.withUnsafeBytes { bytes in try transport.send(bytes, to: 1, tag: 11) }
        let wire = try #require(peer.read(24 + 4 + 16))
        let box = try AES.GCM.SealedBox(nonce: SocketTransport.nonce(1), ciphertext: wire[24..<28], tag: wire[28...])
        #expect(Array(try AES.GCM.open(box, using: try #require(peer.keys?.lowToHigh), authenticating: wire[0..<24])) == outgoing)
        // An observer holding every long-lived secret (the cluster key, both ranks' secrets) and
        // everything on the wire, but neither side's ephemeral key, derives other keys.
        let seen = try #require(peer.greetings)
        let observed = SocketTransport.pairKeys(low: 0, high: 1, worldSize: 2, clusterSecret: Array(SealedSocketTests.clusterKey.secretKey.utf8),
                                                secrets: [try #require(transport.sealingSecret), Array(repeating: 7, count: 32)], agreed: [],
                                                connecting: seen.connecting, accepting: seen.accepting)
        #expect(throws: (any Error).self) { try AES.GCM.open(box, using: observed.lowToHigh, authenticating: wire[0..<24]) }
    }

    /// Each way a sealed message can be broken, on a fresh connection.
    enum Breakage: String, CaseIterable, Sendable {
        case ciphertextByte, tagByte, headerTag, replay, gap, wrongDirection
    }

    @Test(arguments: Breakage.allCases)
    func aBrokenSealedMessageIsAViolationNeverData(_ breakage: Breakage) throws {
        let secret: [UInt8] = Array(repeating: 7, count: 32)
        let (connected, peer) = try rankZero { peer, rankZeroSecret in peer.handshake(secrets: [rankZeroSecret, secret]) }
        let transport = try connected.get()
        let payload: [UInt8] = [1, 2, 3, 4, 5, 6, 7, 8]
        let first = try peer.frame(tag: 7, payload: payload)
        peer.send(first)
        #expect(try receive(transport).get() == payload)
        var second = try peer.frame(tag: 7, payload: payload)
        switch breakage {
        case .ciphertextByte: second[24 + 3] ^= 0x10
        case .tagByte: second[second.count - 1] ^= 0x01
        case .headerTag: second[8] ^= 0x01  // the receiver awaits tag 7: it reads the frame, whose header no longer authenticates
        case .replay: second = first
        case .gap: second = try peer.frame(tag: 7, payload: payload, counter: 3)
        case .wrongDirection: second = try peer.frame(tag: 7, payload: payload, counter: 2, key: try #require(peer.keys?.lowToHigh))
        }
        peer.send(second)
        let outcome = receive(transport)
        guard case .failure(.protocolViolation(peer: 1, let reason)) = outcome else {
            Issue.record("\(breakage): \(outcome)")
            return
        }
        #expect(reason.contains("failed authentication"), "\(breakage): \(reason)")
    }

    @Test func aLargeMessageGoesAsRecordsThatCannotBeSwappedOrAltered() throws {
        // 3 × 64 KiB + 5 bytes: four records. Delivered whole; with two records swapped, or a
        // byte of the third altered, it fails to open.
        let secret: [UInt8] = Array(repeating: 7, count: 32)
        let payload = (0..<((3 << 16) + 5)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 3) }
        let record = (64 << 10) + 16
        for variant in ["whole", "swapped", "altered"] {
            let (connected, peer) = try rankZero { peer, rankZeroSecret in peer.handshake(secrets: [rankZeroSecret, secret]) }
            let transport = try connected.get()
            var frame = try peer.frame(tag: 7, payload: payload)
            #expect(frame.count == 24 + payload.count + 4 * 16)
            if variant == "swapped" {
                let first = Array(frame[24..<(24 + record)]), second = Array(frame[(24 + record)..<(24 + 2 * record)])
                frame.replaceSubrange(24..<(24 + 2 * record), with: second + first)
            } else if variant == "altered" {
                frame[24 + 2 * record + 100] ^= 0x80
            }
            peer.send(frame)
            let outcome = receive(transport, byteCount: payload.count)
            switch (variant, outcome) {
            case ("whole", .success(let got)): #expect(got == payload)
            case (_, .failure(.protocolViolation(peer: 1, let reason))) where variant != "whole":
                #expect(reason.contains("failed authentication"), "\(variant): \(reason)")
            default: Issue.record("\(variant): \(outcome)")
            }
        }
    }

    @Test func sealedRanksExchangeMessagesOfEverySizeBothWays() throws {
        // Empty, under, at and over a record, and several records, each way, in one stream.
        let transports = Handed(value: try TransportKind.sealed.make(2))
        let sizes = [0, 1, 16, (64 << 10) - 1, 64 << 10, (64 << 10) + 1, 128 << 10, 200_003, 1 << 20]
        let outcomes = onRanks(2) { rank -> Result<Bool, CollectiveError> in
            let transport = transports.value[rank]
            do throws(CollectiveError) {
                for (index, size) in sizes.enumerated() {
                    let outgoing = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 8)
                    defer { outgoing.deallocate() }
                    for i in 0..<size { outgoing[i] = UInt8(truncatingIfNeeded: i &+ rank &* 7 &+ index) }
                    try transport.send(UnsafeRawBufferPointer(outgoing), to: 1 - rank, tag: UInt64(index))
                    var got: [UInt8] = []
                    try transport.receive(from: 1 - rank, tag: UInt64(index), byteCount: size) { got = Array($0) }
                    guard got == (0..<size).map({ UInt8(truncatingIfNeeded: $0 &+ (1 - rank) &* 7 &+ index) }) else { return .success(false) }
                }
                try transport.flush()
                return .success(true)
            } catch {
                return .failure(error)
            }
        }
        for outcome in outcomes { #expect(try outcome.get()) }
    }

    /// A peer whose keys come from secrets that are not the group's, or from the ranks'
    /// secrets with another cluster key (were the secrets, which travel through the rendezvous,
    /// to leak, they would not be enough): its proof fails at rank 0, and rank 0's at the peer.
    @Test(arguments: ["other secrets", "another cluster key"])
    func aPeerWithoutTheGroupsKeysIsRefused(_ lacking: String) throws {
        let other = try ClusterKey.generate()
        let (connected, peer) = try rankZero(timeoutMilliseconds: 1000) { peer, rankZeroSecret in
            if lacking == "other secrets" {
                peer.handshake(secrets: [Array(repeating: 1, count: 32), Array(repeating: 7, count: 32)])
            } else {
                peer.handshake(secrets: [rankZeroSecret, Array(repeating: 7, count: 32)], key: other)
            }
        }
        #expect(!peer.rankZeroProved)
        guard case .failure(.protocolViolation(peer: 1, let reason)) = connected else {
            Issue.record("rank 0 accepted a peer with \(lacking): \(connected)")
            return
        }
        #expect(reason.contains("failed the sealed handshake"), "\(reason)")
    }

    @Test func anUnsealedPeerIsRefusedBySealedRanks() throws {
        let (connected, _) = try rankZero(timeoutMilliseconds: 1000) { peer, _ in peer.send(SealedPeer.hello(flags: 0)) }
        #expect(throws: CollectiveError.self) { try connected.get() }
    }

    @Test func aKeyedGroupTalksOverSealedSockets() throws {
        // ProcessGroup.join with a cluster key: the rendezvous under CURVE hands out the
        // secrets, and ranks on "other hosts" (no shared memory) get sealed connections.
        let key = try ClusterKey.generate()
        let master = "tcp://127.0.0.1:\(freeLoopbackPort())"
        let outcomes = onRanks(3) { rank -> Result<[Float], CollectiveError> in
            do throws(CollectiveError) {
                let group = try ProcessGroup.join(RendezvousConfiguration(rank: rank, worldSize: 3, master: master, timeoutMilliseconds: 20_000),
                                                  bind: "tcp://127.0.0.1:*", key: key, timeoutMilliseconds: 10_000, sharedMemory: false)
                guard let sockets = group.transport as? SocketTransport, sockets.sealed else {
                    return .failure(.invalidArgument("rank \(rank) talks over \(type(of: group.transport))"))
                }
                var values = (0..<100_003).map { Float(rank * 3 + $0 % 5) }
                try values.withUnsafeMutableBufferPointer { buffer throws(CollectiveError) in try group.allReduce(buffer, op: .sum) }
                return .success(values)
            } catch {
                return .failure(error)
            }
        }
        let expected: [Float] = (0..<100_003).map { (i: Int) -> Float in Float(9 + 3 * (i % 5)) }
        for outcome in outcomes {
            let values = try outcome.get()
            #expect(values == expected)
        }
    }
}

extension SealedSocketTests {
    @Test func aRankWithAnotherClusterKeyCannotJoinAndBothSidesSayWhy() throws {
        // Rank 1 holds a key of its own: its CURVE handshake with the rendezvous fails without
        // a word, so both sides time out; each error names the likely cause.
        let keys = [try ClusterKey.generate(), try ClusterKey.generate()]
        let master = "tcp://127.0.0.1:\(freeLoopbackPort())"
        let outcomes = onRanks(2) { rank -> String in
            do throws(CollectiveError) {
                _ = try ProcessGroup.join(RendezvousConfiguration(rank: rank, worldSize: 2, master: master, timeoutMilliseconds: 1500),
                                          bind: "tcp://127.0.0.1:*", key: keys[rank], timeoutMilliseconds: 1500, sharedMemory: false)
                return "joined"
            } catch {
                return error.description
            }
        }
        #expect(outcomes[0].contains("rank 1 did not join the rendezvous") && outcomes[0].contains("does it hold the same one"), "\(outcomes[0])")
        #expect(outcomes[1].contains("no answer from the rendezvous") && outcomes[1].contains("does it hold the same one"), "\(outcomes[1])")
    }
}

extension SealedSocketTests {
    @Test func aConnectingRankRefusesAnAcceptorWithoutTheKeys() throws {
        // Something else listens where rank 0 should (a hijacked port, a man in the middle):
        // it reads the hello and answers with a nonce and a made-up proof. Rank 1 must not
        // go on.
        let (listener, port) = loopbackSocket(listening: true)
        defer { close(listener) }
        let endpoint = "tcp://127.0.0.1:\(port)"
        let rank1 = try SocketTransport(rank: 1, worldSize: 2, host: "127.0.0.1", timeoutMilliseconds: 2000, sealedWith: SealedSocketTests.clusterKey)
        let handed = Handed(value: rank1)
        let secrets = [Array(repeating: UInt8(3), count: 32), try #require(rank1.sealingSecret)]
        let outcomes = onRanks(2) { index -> String in
            if index == 0 {
                let connection = accept(listener, nil, nil)
                // The hello and greeting; a greeting of its own (a real X25519 key) and a made-up proof.
                var greeting = [UInt8](repeating: 0, count: 80)
                _ = greeting.withUnsafeMutableBytes { recv(connection, $0.baseAddress, 80, Int32(MSG_WAITALL)) }
                let answer = SocketTransport.Greeting().bytes + (0..<16).map { _ in UInt8.random(in: 0...255) }
                _ = answer.withUnsafeBytes { send(connection, $0.baseAddress, 80, Int32(MSG_NOSIGNAL)) }
                usleep(300_000)
                close(connection)
                return "answered"
            }
            do throws(CollectiveError) {
                try handed.value.connect(to: [endpoint, handed.value.endpoint], secrets: secrets)
                return "connected"
            } catch {
                return error.description
            }
        }
        #expect(outcomes[1].contains("failed the sealed handshake"), "\(outcomes[1])")
    }
}

extension SealedSocketTests {
    @Test func aBadFirstRecordFailsAtOnceWhateverLengthTheHeaderClaims() throws {
        // The header claims 2 GiB; the first record is garbage. Records open as they arrive,
        // so this fails after 64 KiB, not after a timeout waiting for (and holding) the rest.
        let (connected, peer) = try rankZero(timeoutMilliseconds: 20_000) { peer, rankZeroSecret in
            peer.handshake(secrets: [rankZeroSecret, Array(repeating: 7, count: 32)])
        }
        let transport = try connected.get()
        let claimed = 1 << 31
        let header = SealedPeer.little(UInt32(0x4B53_4746)) + SealedPeer.little(UInt16(1)) + SealedPeer.little(UInt16(1))
            + SealedPeer.little(UInt64(7)) + SealedPeer.little(UInt64(claimed))
        peer.send(header + [UInt8](repeating: 0x5A, count: (64 << 10) + 16))
        let outcome = receive(transport, byteCount: claimed)
        guard case .failure(.protocolViolation(peer: 1, let reason)) = outcome else {
            Issue.record("\(outcome)")
            return
        }
        // A violation, not the timeout that waiting for the claimed 2 GiB would end in.
        #expect(reason.contains("failed authentication"), "\(reason)")
    }
}
