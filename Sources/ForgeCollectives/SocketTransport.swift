// The collective transport for plain (keyless) tcp between hosts: one TCP connection per pair
// of ranks, non-blocking, driven by the rank's own thread. libzmq hands every message to an I/O
// thread that sleeps in epoll; on a VM each of those wake-ups costs tens of microseconds, which
// is what separated a ZeroMQ all-reduce from Open MPI's (whose TCP transport polls its sockets
// from the calling thread). Here a waiting rank reads its peer's socket itself: it spins
// (yielding the core) for a while, then sleeps in poll(2).
//
// A message is a 24-byte header (magic "FGSK", version 1, flags 0, tag, payload length, all
// little-endian) and the payload. Sends queue: a send writes what the kernel takes at once and
// keeps the rest (a copy, or the caller's memory for `sendWithoutCopy`, until `flush`). A rank
// that waits keeps writing its queues and reads whatever its other peers have sent into memory
// of its own (up to `readAheadLimit` bytes per peer), so two ranks that both send large
// messages before receiving never deadlock.
// With a cluster key the connections are sealed: every message's payload goes as 64 KiB
// records, each encrypted and, with the message's header, authenticated (AES-256-GCM,
// swift-crypto), under keys only this group's ranks can derive. Each rank draws a random
// 32-byte secret and hands it to the others through the rendezvous, which CURVE protects with
// the cluster key; a pair's two keys (one per direction) come from the cluster key's secret,
// both ranks' secrets and the X25519 agreement of two greetings exchanged when they connect
// (HKDF-SHA256). Nonces count the messages and their records each way, so a replayed,
// reordered, dropped or altered record fails to open: a protocol violation, never data.
//
// Connection set-up: rank r connects to every lower rank and sends a hello (magic "FGSH",
// version, flags (1: sealed), its rank, the world size); it accepts one connection from every
// higher rank and checks that hello. Sealed, the hello is followed by the connecting rank's
// greeting (a nonce and an ephemeral X25519 key); the accepting rank answers with its own and
// a tag proving it derived the keys, and the connecting rank answers with its tag: a peer that
// cannot derive them is refused.
import CForgeSystem
import Crypto
import ForgeTransport
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Point-to-point TCP connections between the ranks of a group, polled by the rank's thread.
///
/// Concurrency: not Sendable; it belongs to the thread that runs this rank, and its sockets
/// are used by no other thread.
public final class SocketTransport: CollectiveTransport {
    public let rank: Int
    public let worldSize: Int
    public let timeoutMilliseconds: Int
    /// `tcp://HOST:PORT` as peers connect to it.
    public let endpoint: String
    private var listener: Int32
    private var sockets: [Int32]
    private var outbox: [[Outgoing]]
    private var inbox: [Inbound]
    /// Whole messages read while another peer was awaited, per source rank.
    private var pending: [[(tag: UInt64, bytes: [UInt8])]]
    /// Bytes held in `pending`, per source rank: payloads plus `pendingEntryBytes` a message
    /// (so a flood of empty messages counts too).
    private var pendingBytes: [Int]
    static let pendingEntryBytes = 64
    /// Reading ahead stops taking a peer's messages once this many of its bytes wait here: its
    /// further messages stay in its socket and its queue (back-pressure on the sender), so a
    /// peer that sends far ahead of what this rank receives cannot grow this rank's memory
    /// without bound. The message under way is always finished, so at most one message more is
    /// held. A protocol that needs more than this read ahead ends in a timeout naming the peer,
    /// not in an out-of-memory kill (two ranks that each send more than the limit to the other
    /// before either receives, in several messages, now time out); the collectives send in
    /// chunks and never come near it.
    public var readAheadLimit = 256 << 20
    /// Peers whose connection ended while nothing was awaited from them (a rank that finished
    /// first): an error only if something more is awaited from them.
    private var closed: [CollectiveError?]
    /// Whether the connections are sealed (a cluster key).
    public var sealed: Bool { clusterSecret != nil }
    /// The cluster key's secret (its Z85 text), mixed into every pair's keys: the ranks'
    /// secrets alone (had they leaked) derive nothing.
    private let clusterSecret: [UInt8]?
    /// This rank's secret for deriving its pairs' keys (32 random bytes; sealed only): peers
    /// get it through the CURVE-protected rendezvous, and nobody else may.
    public let sealingSecret: [UInt8]?
    /// Each sealed pair's keys and message counters.
    private var seals: [Seal?]

    /// One sealed connection's keys (one per direction) and the number of the next message
    /// each way (the nonce; 0 was the handshake's tag).
    private struct Seal {
        let sending: SymmetricKey
        let receiving: SymmetricKey
        var sent: UInt64 = 1
        var received: UInt64 = 1
    }

    /// Bytes of the authentication tag a sealed record carries after its ciphertext.
    static let tagBytes = 16
    /// A sealed payload goes as records of this many bytes (the last one shorter), each with its
    /// tag, as TLS does: the buffers AES-GCM allocates stay small enough to be reused rather
    /// than mapped afresh (and faulted in) for every message.
    static let recordBytes = 64 << 10

    /// Bytes on the wire for a sealed payload of `length` bytes: its records and their tags
    /// (an empty payload is one empty record).
    static func sealedLength(_ length: Int) -> Int {
        length + tagBytes * max(1, (length + recordBytes - 1) / recordBytes)
    }
    /// Sealed payload buffers written out, kept for the next messages (a few).
    private var spareCopies: [OwnedBytes] = []
    /// A handshake greeting: a fresh nonce and an ephemeral X25519 public key.
    static let greetingBytes = 64

    /// One side's part of a sealed handshake: a fresh nonce and an ephemeral X25519 key pair,
    /// whose agreement with the other side's goes into the pair's keys (forward secrecy: the
    /// long-lived secrets alone cannot open recorded traffic).
    struct Greeting {
        let key = Curve25519.KeyAgreement.PrivateKey()
        /// What goes on the wire: the nonce, then the public key.
        let bytes: [UInt8]

        init() { bytes = SocketTransport.randomNonce() + Array(key.publicKey.rawRepresentation) }

        /// The X25519 agreement with the other side's greeting; nil for a key that is not one
        /// (or a low-order point, whose agreement BoringSSL refuses).
        func agreement(with theirs: [UInt8]) -> [UInt8]? {
            guard theirs.count == SocketTransport.greetingBytes,
                  let publicKey = try? Curve25519.KeyAgreement.PublicKey(rawRepresentation: theirs.suffix(32)),
                  let shared = try? key.sharedSecretFromKeyAgreement(with: publicKey) else { return nil }
            return shared.withUnsafeBytes { Array($0) }
        }
    }

    static let magic: UInt32 = 0x4B53_4746  // "FGSK"
    static let helloMagic: UInt32 = 0x4853_4746  // "FGSH"
    static let version: UInt16 = 1
    static let headerBytes = 24
    /// An inbound buffer grows by at most this much beyond the bytes already read, so memory
    /// follows the bytes that actually arrive, not a length a garbled header claims.
    static let growthStep = 16 << 20
    /// How long a waiting rank polls its sockets without sleeping.
    static let spinNanoseconds: UInt64 = 1_000_000

    /// A queued message: the header, then the payload (the caller's memory, or `sealedCopy`'s).
    private struct Outgoing {
        var header: [UInt8]
        var payload: UnsafeRawPointer?
        var count: Int
        /// Sealed: the ciphertext and tag, which `payload` points into.
        var sealedCopy: OwnedBytes?
        /// Bytes of header and payload written so far.
        var written = 0
    }

    /// Memory of our own for a sealed payload, freed with the last message that holds it (or
    /// kept in `spareCopies`).
    private final class OwnedBytes {
        let pointer: UnsafeMutableRawPointer
        let capacity: Int
        init(count: Int) {
            capacity = max(64, count)
            pointer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 64)
        }
        deinit { pointer.deallocate() }
    }

    /// A buffer of at least `count` bytes: the smallest spare one large enough, if any.
    private func ownedBytes(_ count: Int) -> OwnedBytes {
        let fits = spareCopies.indices.filter { spareCopies[$0].capacity >= count }
        if let index = fits.min(by: { spareCopies[$0].capacity < spareCopies[$1].capacity }) { return spareCopies.remove(at: index) }
        return OwnedBytes(count: count)
    }

    /// Keeps a written-out buffer for reuse: up to 8, of at most 8 MiB each (a rare large
    /// message's buffer goes, rather than pinning its memory).
    private func recycle(_ copy: OwnedBytes) {
        guard copy.capacity <= 8 << 20, spareCopies.count < 8 else { return }
        spareCopies.append(copy)
    }

    /// The message being read from one peer.
    private final class Inbound {
        var header = [UInt8](repeating: 0, count: SocketTransport.headerBytes)
        var headerFilled = 0
        var tag: UInt64 = 0
        /// The payload's length, and what comes on the wire for it (sealed: plus the tag).
        var length = 0
        var wireLength = 0
        /// Sealed: nonce, ciphertext and tag, laid out as one buffer for AES-GCM to open (kept
        /// and reused: opening from freshly allocated memory runs at a quarter of the speed).
        var sealedScratch = Data()
        /// Sealed: plaintext bytes opened so far, and the wire bytes they came from.
        var opened = 0
        var openedWire = 0
        var buffer = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 64)
        var capacity = 64
        var filled = 0
        var complete = false

        deinit { buffer.deallocate() }

        /// Room for `count` bytes, keeping the `filled` already read.
        func reserve(_ count: Int) {
            guard count > capacity else { return }
            let grown = UnsafeMutableRawPointer.allocate(byteCount: max(count, capacity * 2), alignment: 64)
            grown.copyMemory(from: buffer, byteCount: filled)
            buffer.deallocate()
            buffer = grown
            capacity = max(count, capacity * 2)
        }

        func reset() {
            headerFilled = 0
            filled = 0
            wireLength = 0
            opened = 0
            openedWire = 0
            complete = false
        }
    }

    /// Listens on `host` (an address, or `*` for every interface) at a port the kernel picks;
    /// peers are told `advertisedHost` (default: `host`).
    /// `sealedWith`: encrypt and authenticate every connection under keys derived from this
    /// cluster key and the ranks' secrets (`connect` then needs every peer's `sealingSecret`).
    public init(rank: Int, worldSize: Int, host: String, advertisedHost: String? = nil,
                timeoutMilliseconds: Int = 30_000, sealedWith key: ClusterKey? = nil) throws(CollectiveError) {
        precondition(rank >= 0 && rank < worldSize, "rank \(rank) outside 0..<\(worldSize)")
        clusterSecret = key.map { Array($0.secretKey.utf8) }
        sealingSecret = key == nil ? nil : SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) }
        seals = Array(repeating: nil, count: worldSize)
        self.rank = rank
        self.worldSize = worldSize
        self.timeoutMilliseconds = timeoutMilliseconds
        sockets = Array(repeating: -1, count: worldSize)
        outbox = Array(repeating: [], count: worldSize)
        inbox = (0..<worldSize).map { _ in Inbound() }
        pending = Array(repeating: [], count: worldSize)
        pendingBytes = Array(repeating: 0, count: worldSize)
        closed = Array(repeating: nil, count: worldSize)
        let (descriptor, port) = try SocketTransport.listen(host: host == "*" ? nil : host, rank: rank)
        listener = descriptor
        let shown = advertisedHost ?? (host == "*" ? "127.0.0.1" : host)
        endpoint = "tcp://\(shown.contains(":") ? "[\(shown)]" : shown):\(port)"
    }

    deinit {
        if listener >= 0 { close(listener) }
        for descriptor in sockets where descriptor >= 0 { close(descriptor) }
    }

    // MARK: Connecting

    /// Connects to every peer (`endpoints[rank]` is this rank's own), except those in
    /// `skipping`, which another transport reaches. Every rank calls it with the same lists.
    /// Sealed, `secrets` holds every rank's `sealingSecret` (from the rendezvous).
    public func connect(to endpoints: [String], secrets: [[UInt8]]? = nil, skipping: Set<Int> = []) throws(CollectiveError) {
        guard endpoints.count == worldSize else { throw .invalidArgument("\(endpoints.count) endpoints for a group of \(worldSize)") }
        if sealed {
            guard let secrets, secrets.count == worldSize,
                  (0..<worldSize).allSatisfy({ skipping.contains($0) || secrets[$0].count == 32 }) else {
                throw .invalidArgument("sealed connections need every peer's 32-byte secret")
            }
        }
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(timeoutMilliseconds) * 1_000_000
        for peer in 0..<rank where !skipping.contains(peer) {
            let descriptor = try SocketTransport.connect(endpoints[peer], peer: peer, deadline: deadline)
            sockets[peer] = descriptor
            var hello = [UInt8]()
            SocketTransport.append(SocketTransport.helloMagic, to: &hello)
            SocketTransport.append(SocketTransport.version, to: &hello)
            SocketTransport.append(UInt16(sealed ? 1 : 0), to: &hello)
            SocketTransport.append(UInt32(rank), to: &hello)
            SocketTransport.append(UInt32(worldSize), to: &hello)
            guard sealed, let secrets else {
                try writeAll(hello, to: descriptor, peer: peer)
                continue
            }
            // Sealed: our greeting; the peer's greeting and proof; our proof.
            let ours = Greeting()
            try writeAll(hello + ours.bytes, to: descriptor, peer: peer)
            let answer = try readExactly(SocketTransport.greetingBytes + SocketTransport.tagBytes, from: descriptor, peer: peer, deadline: deadline)
            let theirs = Array(answer.prefix(SocketTransport.greetingBytes))
            let refused = CollectiveError.protocolViolation(peer: peer, reason: "rank \(peer)'s data socket failed the sealed handshake: it does not hold this group's keys")
            guard let agreed = ours.agreement(with: theirs) else { throw refused }
            let keys = SocketTransport.pairKeys(low: peer, high: rank, worldSize: worldSize, clusterSecret: clusterSecret ?? [], secrets: secrets,
                                                agreed: agreed, connecting: ours.bytes, accepting: theirs)
            let transcript = hello + ours.bytes + theirs
            guard SocketTransport.proofHolds(Array(answer.suffix(SocketTransport.tagBytes)), key: keys.lowToHigh, transcript: transcript, role: 0x41) else {
                throw refused
            }
            try writeAll(SocketTransport.proof(key: keys.highToLow, transcript: transcript, role: 0x43), to: descriptor, peer: peer)
            seals[peer] = Seal(sending: keys.highToLow, receiving: keys.lowToHigh)
        }
        var expected = Set((rank + 1)..<worldSize).subtracting(skipping)
        // A connection that is not a peer of this group (a port scanner, another job) is closed
        // and accepting goes on; it is named only if the peers never all arrive.
        var stranger: String?
        while !expected.isEmpty {
            let descriptor: Int32
            do {
                descriptor = try acceptOne(deadline: deadline)
            } catch {
                if let stranger { throw .protocolViolation(peer: expected.min() ?? rank, reason: stranger) }
                throw error
            }
            // A peer says hello (and, sealed, proves its keys) at once: a connection gets 2 s for
            // all of it, never past the deadline, so strangers cannot hold the peers off long.
            let greeting = min(deadline, DispatchTime.now().uptimeNanoseconds + 2_000_000_000)
            let hello = try? readExactly(16, from: descriptor, peer: rank, deadline: greeting)
            guard let hello, let peer = SocketTransport.decodeHello(hello, worldSize: worldSize, sealed: sealed), expected.contains(peer) else {
                close(descriptor)
                stranger = "a connection to rank \(rank)'s data socket did not say hello as a peer of this group, and rank \(expected.min() ?? rank) never connected"
                continue
            }
            if sealed, let secrets {
                // The hello's greeting; ours and our proof; the peer's proof.
                let ours = Greeting()
                var sealedPair: (lowToHigh: SymmetricKey, highToLow: SymmetricKey)?
                if let theirs = try? readExactly(SocketTransport.greetingBytes, from: descriptor, peer: peer, deadline: greeting),
                   let agreed = ours.agreement(with: theirs) {
                    let pair = SocketTransport.pairKeys(low: rank, high: peer, worldSize: worldSize, clusterSecret: clusterSecret ?? [], secrets: secrets,
                                                        agreed: agreed, connecting: theirs, accepting: ours.bytes)
                    let transcript = hello + theirs + ours.bytes
                    if (try? writeAll(ours.bytes + SocketTransport.proof(key: pair.lowToHigh, transcript: transcript, role: 0x41), to: descriptor, peer: peer)) != nil,
                       let proof = try? readExactly(SocketTransport.tagBytes, from: descriptor, peer: peer, deadline: greeting),
                       SocketTransport.proofHolds(proof, key: pair.highToLow, transcript: transcript, role: 0x43) {
                        sealedPair = pair
                    }
                }
                guard let sealedPair else {
                    close(descriptor)
                    stranger = "a connection claiming to be rank \(peer) failed the sealed handshake (it does not hold this group's keys)"
                    continue
                }
                seals[peer] = Seal(sending: sealedPair.lowToHigh, receiving: sealedPair.highToLow)
            }
            expected.remove(peer)
            sockets[peer] = descriptor
        }
        close(listener)
        listener = -1
        for descriptor in sockets where descriptor >= 0 {
            var one: Int32 = 1
            setsockopt(descriptor, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) | O_NONBLOCK)
        }
    }

    /// Whether `peer` has a connection here.
    public func isConnected(_ peer: Int) -> Bool { peer >= 0 && peer < worldSize && sockets[peer] >= 0 }

    private static func listen(host: String?, rank: Int) throws(CollectiveError) -> (Int32, Int) {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_PASSIVE
        var found: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, "0", &hints, &found)
        guard status == 0, let first = found else {
            throw .transport(peer: rank, reason: "getaddrinfo(\(host ?? "*")) failed: \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(found) }
        let descriptor = socket(first.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw failure("socket", peer: rank) }
        var one: Int32 = 1
        setsockopt(descriptor, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        guard bind(descriptor, first.pointee.ai_addr, first.pointee.ai_addrlen) == 0, Glibc.listen(descriptor, 128) == 0 else {
            let error = failure("bind/listen(\(host ?? "*"))", peer: rank)
            close(descriptor)
            throw error
        }
        var address = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        let port: UInt16 = withUnsafeBytes(of: &address) { bytes in
            // sin_port and sin6_port sit at the same offset, in network order.
            UInt16(bigEndian: bytes.loadUnaligned(fromByteOffset: 2, as: UInt16.self))
        }
        return (descriptor, Int(port))
    }

    private static func connect(_ endpoint: String, peer: Int, deadline: UInt64) throws(CollectiveError) -> Int32 {
        guard endpoint.hasPrefix("tcp://"), let colon = endpoint.lastIndex(of: ":"), colon > endpoint.index(endpoint.startIndex, offsetBy: 6) else {
            throw .invalidArgument("rank \(peer)'s data endpoint \(endpoint) is not tcp://HOST:PORT")
        }
        var host = String(endpoint[endpoint.index(endpoint.startIndex, offsetBy: 6)..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        let port = String(endpoint[endpoint.index(after: colon)...])
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var found: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, port, &hints, &found)
        guard status == 0, let first = found else {
            throw .transport(peer: peer, reason: "getaddrinfo(\(endpoint)) failed: \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(found) }
        while true {
            let descriptor = socket(first.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard descriptor >= 0 else { throw failure("socket", peer: peer) }
            if Glibc.connect(descriptor, first.pointee.ai_addr, first.pointee.ai_addrlen) == 0 { return descriptor }
            let error = failure("connect(\(endpoint))", peer: peer)
            close(descriptor)
            // A peer's listener exists before the rendezvous; refusal means it is gone, but
            // retrying until the deadline costs nothing and rides out a full backlog.
            guard DispatchTime.now().uptimeNanoseconds < deadline else { throw error }
            usleep(10_000)
        }
    }

    private func acceptOne(deadline: UInt64) throws(CollectiveError) -> Int32 {
        while true {
            var entry = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
            let now = DispatchTime.now().uptimeNanoseconds
            guard now < deadline else { throw .timedOut(peer: rank, milliseconds: timeoutMilliseconds) }
            _ = poll(&entry, 1, Int32(min(1000, (deadline - now) / 1_000_000 + 1)))
            guard entry.revents & Int16(POLLIN) != 0 else { continue }
            let descriptor = Glibc.accept(listener, nil, nil)
            if descriptor >= 0 {
                _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC)
                return descriptor
            }
            guard errno == EINTR || errno == EAGAIN || errno == ECONNABORTED else { throw SocketTransport.failure("accept", peer: rank) }
        }
    }

    private func writeAll(_ bytes: [UInt8], to descriptor: Int32, peer: Int) throws(CollectiveError) {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes.withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            guard sent > 0 else { throw SocketTransport.failure("send", peer: peer) }
            offset += sent
        }
    }

    // MARK: Sending

    /// Returns once the kernel holds the whole message (reading ahead from every peer while it
    /// waits, so two ranks sending to each other cannot block each other): after a collective
    /// that ends in sends, a rank may exit and the kernel still delivers them.
    public func send(_ bytes: UnsafeRawBufferPointer, to peer: Int, tag: UInt64) throws(CollectiveError) {
        try enqueue(bytes, to: peer, tag: tag)
        try wait(for: nil) { outbox[peer].isEmpty }
    }

    /// Like `send`, but what the kernel does not take at once is written later straight from
    /// `bytes`: leave them unchanged until `flush` returns.
    public func sendWithoutCopy(_ bytes: UnsafeRawBufferPointer, to peer: Int, tag: UInt64) throws(CollectiveError) {
        try enqueue(bytes, to: peer, tag: tag)
    }

    private func enqueue(_ bytes: UnsafeRawBufferPointer, to peer: Int, tag: UInt64) throws(CollectiveError) {
        guard peer >= 0, peer < worldSize, peer != rank, sockets[peer] >= 0 else {
            throw .invalidArgument("cannot send to rank \(peer) (connected?)")
        }
        guard bytes.count <= Int(UInt32.max) else { throw .invalidArgument("a message of \(bytes.count) bytes is too large") }
        var header = [UInt8]()
        header.reserveCapacity(SocketTransport.headerBytes)
        SocketTransport.append(SocketTransport.magic, to: &header)
        SocketTransport.append(SocketTransport.version, to: &header)
        SocketTransport.append(UInt16(sealed ? 1 : 0), to: &header)
        SocketTransport.append(tag, to: &header)
        SocketTransport.append(UInt64(bytes.count), to: &header)
        guard !sealed || seals[peer] != nil else { throw .invalidArgument("no keys for rank \(peer) on a sealed connection") }
        if var seal = seals[peer] {
            // Encrypted into memory of our own (the caller's may change once this returns),
            // record by record, the header authenticated with each.
            let wire = SocketTransport.sealedLength(bytes.count)
            let copy = ownedBytes(wire)
            do {
                var offset = 0, record: UInt32 = 0, out = copy.pointer
                repeat {
                    let count = min(SocketTransport.recordBytes, bytes.count - offset)
                    let plain = UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + count)])
                    let box = try AES.GCM.seal(plain, using: seal.sending, nonce: SocketTransport.nonce(seal.sent, record: record), authenticating: header)
                    box.ciphertext.withUnsafeBytes { if $0.count > 0 { out.copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
                    box.tag.withUnsafeBytes { (out + count).copyMemory(from: $0.baseAddress!, byteCount: SocketTransport.tagBytes) }
                    out += count + SocketTransport.tagBytes
                    offset += count
                    record += 1
                } while offset < bytes.count
            } catch {
                throw .transport(peer: peer, reason: "sealing a message failed: \(error)")
            }
            seal.sent += 1
            seals[peer] = seal
            outbox[peer].append(Outgoing(header: header, payload: UnsafeRawPointer(copy.pointer), count: wire, sealedCopy: copy))
        } else {
            outbox[peer].append(Outgoing(header: header, payload: bytes.count > 0 ? bytes.baseAddress : nil, count: bytes.count))
        }
        try writeQueued(to: peer)
    }

    /// Writes queued messages to `peer` until the queue is empty or the kernel takes no more;
    /// returns whether anything was written.
    @discardableResult
    private func writeQueued(to peer: Int) throws(CollectiveError) -> Bool {
        var progressed = false
        while var message = outbox[peer].first {
            let total = SocketTransport.headerBytes + message.count
            let written = SocketTransport.write(message.header, message.payload, message, to: sockets[peer])
            if written < 0 {
                if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { return progressed }
                throw closedOrFailed(peer, "sendmsg")
            }
            progressed = progressed || written > 0
            message.written += written
            if message.written < total {
                outbox[peer][0] = message
                return progressed
            }
            outbox[peer].removeFirst()
            if let copy = message.sealedCopy { recycle(copy) }
        }
        return progressed
    }

    /// One non-blocking sendmsg of what is left of `message`'s header and of `body`.
    private static func write(_ header: [UInt8], _ body: UnsafeRawPointer?, _ message: Outgoing, to descriptor: Int32) -> Int {
        header.withUnsafeBytes { head in
            var vectors = [iovec]()
            if message.written < headerBytes {
                vectors.append(iovec(iov_base: UnsafeMutableRawPointer(mutating: head.baseAddress! + message.written),
                                     iov_len: headerBytes - message.written))
            }
            let payloadDone = max(0, message.written - headerBytes)
            if message.count > payloadDone, let body {
                vectors.append(iovec(iov_base: UnsafeMutableRawPointer(mutating: body + payloadDone), iov_len: message.count - payloadDone))
            }
            return vectors.withUnsafeMutableBufferPointer { list in
                var header = msghdr()
                header.msg_iov = list.baseAddress
                header.msg_iovlen = list.count
                return sendmsg(descriptor, &header, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
            }
        }
    }

    public func flush() throws(CollectiveError) {
        try wait(for: nil) { outbox.allSatisfy(\.isEmpty) }
    }

    // MARK: Receiving

    public func receive(from peer: Int, tag: UInt64, byteCount: Int, _ consume: (UnsafeRawBufferPointer) -> Void) throws(CollectiveError) {
        guard peer >= 0, peer < worldSize, peer != rank, sockets[peer] >= 0 else {
            throw .invalidArgument("cannot receive from rank \(peer) (connected?)")
        }
        if !pending[peer].isEmpty {
            let message = pending[peer].removeFirst()
            pendingBytes[peer] -= message.bytes.count + SocketTransport.pendingEntryBytes
            try SocketTransport.check(message.tag, message.bytes.count, tag: tag, byteCount: byteCount, peer: peer)
            message.bytes.withUnsafeBytes(consume)
            return
        }
        if let ended = closed[peer] { throw ended }
        let inbound = inbox[peer]
        try wait(for: peer, expecting: byteCount) { inbound.complete }
        defer { inbound.reset() }
        try SocketTransport.check(inbound.tag, inbound.length, tag: tag, byteCount: byteCount, peer: peer)
        consume(UnsafeRawBufferPointer(start: inbound.buffer, count: inbound.length))
    }

    /// Reads what `peer` has sent into its inbound message, without blocking; returns whether
    /// anything was read. `expecting` (the awaited message's length) is checked as soon as the
    /// header is in (or at once, when an earlier read-ahead already read it).
    @discardableResult
    private func readAvailable(from peer: Int, expecting: Int?) throws(CollectiveError) -> Bool {
        let inbound = inbox[peer]
        var progressed = false
        while !inbound.complete {
            if inbound.headerFilled < SocketTransport.headerBytes {
                let got = inbound.header.withUnsafeMutableBytes {
                    recv(sockets[peer], $0.baseAddress! + inbound.headerFilled, SocketTransport.headerBytes - inbound.headerFilled, Int32(MSG_DONTWAIT))
                }
                guard try accept(got, from: peer) else { return progressed }
                progressed = true
                inbound.headerFilled += got
                guard inbound.headerFilled == SocketTransport.headerBytes else { continue }
                (inbound.tag, inbound.length) = try SocketTransport.decodeHeader(inbound.header, from: peer, expecting: expecting, sealed: sealed)
                inbound.wireLength = sealed ? SocketTransport.sealedLength(inbound.length) : inbound.length
            }
            if let expecting, inbound.length != expecting {
                throw .protocolViolation(peer: peer, reason: "expected \(expecting) bytes, got \(inbound.length)")
            }
            if inbound.filled < inbound.wireLength {
                inbound.reserve(min(inbound.wireLength, inbound.filled + SocketTransport.growthStep))
                let room = min(inbound.wireLength, inbound.capacity) - inbound.filled
                let got = recv(sockets[peer], inbound.buffer + inbound.filled, room, Int32(MSG_DONTWAIT))
                guard try accept(got, from: peer) else { return progressed }
                progressed = true
                inbound.filled += got
            }
            // Sealed, each record opens as soon as it is in: a bad one fails within 64 KiB, not
            // after a whole message the header only claimed, and decryption keeps pace with
            // the bytes.
            if sealed { try openRecords(inbound, from: peer) }
            if inbound.filled == inbound.wireLength && (!sealed || inbound.openedWire == inbound.wireLength) { inbound.complete = true }
        }
        return progressed
    }

    /// Decrypts, in place, the records of a sealed message that have arrived whole and are not
    /// open yet, checking each (and the header) against `peer`'s key and the message number;
    /// after the last, the next message number is due. Each record's plaintext lands at or
    /// before where its ciphertext lay, after that ciphertext was copied out, and before any
    /// unread byte, so nothing is lost.
    private func openRecords(_ inbound: Inbound, from peer: Int) throws(CollectiveError) {
        guard var seal = seals[peer] else { throw .protocolViolation(peer: peer, reason: "a sealed message on a connection without keys") }
        let scratchBytes = 12 + SocketTransport.recordBytes + SocketTransport.tagBytes
        if inbound.sealedScratch.count < scratchBytes { inbound.sealedScratch = Data(count: scratchBytes) }
        while inbound.openedWire < inbound.wireLength {
            let count = min(SocketTransport.recordBytes, inbound.length - inbound.opened)
            guard inbound.filled - inbound.openedWire >= count + SocketTransport.tagBytes else { return }
            let record = UInt32(inbound.openedWire / (SocketTransport.recordBytes + SocketTransport.tagBytes))
            do {
                let nonce = SocketTransport.nonce(seal.received, record: record)
                inbound.sealedScratch.withUnsafeMutableBytes { scratch in
                    nonce.withUnsafeBytes { scratch.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: 12) }
                    (scratch.baseAddress! + 12).copyMemory(from: inbound.buffer + inbound.openedWire, byteCount: count + SocketTransport.tagBytes)
                }
                let box = try AES.GCM.SealedBox(combined: inbound.sealedScratch.prefix(12 + count + SocketTransport.tagBytes))
                let plain = try AES.GCM.open(box, using: seal.receiving, authenticating: inbound.header)
                plain.withUnsafeBytes { if $0.count > 0 { (inbound.buffer + inbound.opened).copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
            } catch {
                throw .protocolViolation(peer: peer, reason: "message \(seal.received) from rank \(peer) failed authentication (altered, replayed or out of order)")
            }
            inbound.opened += count
            inbound.openedWire += count + SocketTransport.tagBytes
            if inbound.openedWire == inbound.wireLength {
                seal.received += 1
                seals[peer] = seal
            }
        }
    }

    // MARK: Sealing

    /// 32 random bytes (a handshake nonce).
    static func randomNonce() -> [UInt8] { SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) } }

    /// The AES-GCM nonce of record `record` of message number `counter` on one direction of a
    /// connection.
    static func nonce(_ counter: UInt64, record: UInt32 = 0) -> AES.GCM.Nonce {
        var bytes = [UInt8](repeating: 0, count: 12)
        withUnsafeBytes(of: counter.littleEndian) { bytes.replaceSubrange(0..<8, with: $0) }
        withUnsafeBytes(of: record.littleEndian) { bytes.replaceSubrange(8..<12, with: $0) }
        // 12 bytes is always a valid GCM nonce.
        return try! AES.GCM.Nonce(data: bytes)
    }

    /// The keys of the pair (`low` < `high`) for one connection: HKDF-SHA256 over the cluster
    /// key's secret, both ranks' secrets and the greetings' X25519 agreement, salted with both
    /// greetings, bound to the ranks and the world size.
    static func pairKeys(low: Int, high: Int, worldSize: Int, clusterSecret: [UInt8], secrets: [[UInt8]], agreed: [UInt8],
                         connecting: [UInt8], accepting: [UInt8]) -> (lowToHigh: SymmetricKey, highToLow: SymmetricKey) {
        var info = Array("forge sealed sockets v1".utf8)
        for value in [low, high, worldSize] { append(UInt32(value), to: &info) }
        let material = SymmetricKey(data: clusterSecret + secrets[low] + secrets[high] + agreed)
        let both = HKDF<SHA256>.deriveKey(inputKeyMaterial: material, salt: connecting + accepting,
                                          info: info, outputByteCount: 64)
        return both.withUnsafeBytes { bytes in
            (SymmetricKey(data: UnsafeRawBufferPointer(rebasing: bytes[0..<32])), SymmetricKey(data: UnsafeRawBufferPointer(rebasing: bytes[32..<64])))
        }
    }

    /// A handshake proof: the tag of an empty message (number 0) sealed with `key`, the
    /// handshake's bytes and the prover's role (A: accepting, C: connecting) authenticated.
    static func proof(key: SymmetricKey, transcript: [UInt8], role: UInt8) -> [UInt8] {
        // Sealing an empty message with a valid key and nonce cannot fail.
        let box = try! AES.GCM.seal([UInt8](), using: key, nonce: nonce(0), authenticating: transcript + [role])
        return Array(box.tag)
    }

    static func proofHolds(_ tag: [UInt8], key: SymmetricKey, transcript: [UInt8], role: UInt8) -> Bool {
        guard tag.count == tagBytes, let box = try? AES.GCM.SealedBox(nonce: nonce(0), ciphertext: [UInt8](), tag: tag) else { return false }
        return (try? AES.GCM.open(box, using: key, authenticating: transcript + [role])) != nil
    }

    /// Reads exactly `count` bytes from a blocking `descriptor` before `deadline`.
    private func readExactly(_ count: Int, from descriptor: Int32, peer: Int, deadline: UInt64) throws(CollectiveError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var filled = 0
        while filled < count {
            let now = DispatchTime.now().uptimeNanoseconds
            guard now < deadline else { throw .timedOut(peer: peer, milliseconds: timeoutMilliseconds) }
            var entry = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            _ = poll(&entry, 1, Int32(min(1000, (deadline - now) / 1_000_000 + 1)))
            guard entry.revents != 0 else { continue }
            let got = bytes.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress! + filled, count - filled, Int32(MSG_DONTWAIT)) }
            if got > 0 {
                filled += got
            } else if got == 0 {
                throw .peerLost(peer: peer, reason: "rank \(peer) closed its connection during the sealed handshake (does it hold this group's keys?)")
            } else if errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR {
                throw closedOrFailed(peer, "recv")
            }
        }
        return bytes
    }

    /// The tag and payload length a data frame's header (`headerBytes` bytes) announces; a
    /// protocol violation naming `peer` when it is not Forge's (magic, version 1, flags 1 on a
    /// sealed connection and 0 on another), or announces more than 4 GiB, or other than
    /// `expecting` bytes.
    static func decodeHeader(_ header: [UInt8], from peer: Int, expecting: Int?, sealed: Bool = false) throws(CollectiveError) -> (tag: UInt64, length: Int) {
        guard header.count == headerBytes else {
            throw .protocolViolation(peer: peer, reason: "a data frame header of \(header.count) bytes, not \(headerBytes)")
        }
        guard load(UInt32.self, header, at: 0) == magic, load(UInt16.self, header, at: 4) == version,
              load(UInt16.self, header, at: 6) == (sealed ? 1 : 0) else {
            throw .protocolViolation(peer: peer, reason: sealed ? "a data frame without Forge's sealed socket header (magic, version 1, flags 1)"
                                                                : "a data frame without Forge's socket header (magic, version 1, no flags)")
        }
        let length = load(UInt64.self, header, at: 16)
        guard length <= UInt64(UInt32.max) else {
            throw .protocolViolation(peer: peer, reason: "a data frame announcing \(length) bytes")
        }
        if let expecting, Int(length) != expecting {
            throw .protocolViolation(peer: peer, reason: "expected \(expecting) bytes, got \(length)")
        }
        return (load(UInt64.self, header, at: 8), Int(length))
    }

    /// The rank a connecting peer's hello (16 bytes: magic, version, flags (1: sealed), rank,
    /// world size) names, when it is a hello of a group of `worldSize` sealed as this one is;
    /// nil for anything else.
    static func decodeHello(_ hello: [UInt8], worldSize: Int, sealed: Bool = false) -> Int? {
        guard hello.count == 16, load(UInt32.self, hello, at: 0) == helloMagic, load(UInt16.self, hello, at: 4) == version,
              load(UInt16.self, hello, at: 6) == (sealed ? 1 : 0), load(UInt32.self, hello, at: 12) == UInt32(worldSize) else { return nil }
        let rank = Int(load(UInt32.self, hello, at: 8))
        return rank < worldSize ? rank : nil
    }

    /// True when `got` bytes arrived; false when none are there yet; throws when the
    /// connection closed or failed.
    private func accept(_ got: Int, from peer: Int) throws(CollectiveError) -> Bool {
        if got > 0 { return true }
        if got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) { return false }
        throw got == 0 ? .peerLost(peer: peer, reason: "rank \(peer) closed its connection (has it exited?)") : closedOrFailed(peer, "recv")
    }

    /// Bytes of `peer`'s messages read ahead and not yet received.
    public func readAheadBytes(from peer: Int) -> Int { pendingBytes[peer] }

    /// Whether reading ahead may take more from `peer`: below `readAheadLimit`, or to finish the
    /// message under way.
    private func readsAhead(from peer: Int) -> Bool {
        pendingBytes[peer] < readAheadLimit || inbox[peer].headerFilled > 0
    }

    /// Moves every whole message other peers have sent into `pending` (all but `except`), up to
    /// `readAheadLimit` bytes per peer.
    private func readAhead(except awaited: Int?) throws(CollectiveError) -> Bool {
        var progressed = false
        for peer in 0..<worldSize where peer != rank && peer != awaited && sockets[peer] >= 0 && closed[peer] == nil {
            while readsAhead(from: peer) {
                let read: Bool
                do {
                    read = try readAvailable(from: peer, expecting: nil)
                } catch where error.endsConnection(to: peer) {
                    closed[peer] = error
                    break
                }
                guard read || inbox[peer].complete else { break }
                progressed = true
                let inbound = inbox[peer]
                guard inbound.complete else { continue }
                pending[peer].append((inbound.tag, Array(UnsafeRawBufferPointer(start: inbound.buffer, count: inbound.length))))
                pendingBytes[peer] += inbound.length + SocketTransport.pendingEntryBytes
                inbound.reset()
            }
        }
        return progressed
    }

    /// Drives every socket (writes queued messages, reads `peer`'s, reads ahead from the others)
    /// until `ready()`: polling without sleeping for `spinNanoseconds` (yielding the core), then
    /// sleeping in poll(2). Fails after the timeout without progress, naming `peer` (or the first
    /// peer whose queue has not drained).
    private func wait(for peer: Int?, expecting: Int? = nil, _ ready: () -> Bool) throws(CollectiveError) {
        var lastProgress = DispatchTime.now().uptimeNanoseconds
        while true {
            var progressed = false
            if let peer { progressed = try readAvailable(from: peer, expecting: expecting) }
            if ready() { return }
            for other in 0..<worldSize where !outbox[other].isEmpty {
                if try writeQueued(to: other) { progressed = true }
            }
            if ready() { return }
            if try readAhead(except: peer) { progressed = true }
            let now = DispatchTime.now().uptimeNanoseconds
            if progressed {
                lastProgress = now
                continue
            }
            if now - lastProgress >= UInt64(timeoutMilliseconds) * 1_000_000 {
                let silent = peer ?? (0..<worldSize).first { !outbox[$0].isEmpty } ?? rank
                throw .timedOut(peer: silent, milliseconds: timeoutMilliseconds)
            }
            if now - lastProgress < SocketTransport.spinNanoseconds {
                sched_yield()
                continue
            }
            var entries = [pollfd]()
            for other in 0..<worldSize where sockets[other] >= 0 {
                // Not the sockets of peers read ahead to the limit: their bytes wait there.
                let reads = closed[other] == nil && (other == peer || readsAhead(from: other))
                let events = (reads ? Int16(POLLIN) : 0) | (outbox[other].isEmpty ? 0 : Int16(POLLOUT))
                if events != 0 { entries.append(pollfd(fd: sockets[other], events: events, revents: 0)) }
            }
            _ = poll(&entries, nfds_t(entries.count), 20)
        }
    }

    // MARK: Helpers

    private static func check(_ got: UInt64, _ count: Int, tag: UInt64, byteCount: Int, peer: Int) throws(CollectiveError) {
        guard got == tag else {
            throw .protocolViolation(peer: peer, reason: "expected tag \(String(tag, radix: 16)), got \(String(got, radix: 16))")
        }
        guard count == byteCount else { throw .protocolViolation(peer: peer, reason: "expected \(byteCount) bytes, got \(count)") }
    }

    private func closedOrFailed(_ peer: Int, _ call: String) -> CollectiveError {
        let code = errno
        if code == ECONNRESET || code == EPIPE {
            return .peerLost(peer: peer, reason: "rank \(peer) closed its connection (has it exited?)")
        }
        return .transport(peer: peer, reason: "\(call) failed: \(String(cString: strerror(code))) (errno \(code))")
    }

    private static func failure(_ call: String, peer: Int) -> CollectiveError {
        let code = errno
        return .transport(peer: peer, reason: "\(call) failed: \(String(cString: strerror(code))) (errno \(code))")
    }

    private static func append<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    private static func load<T: FixedWidthInteger>(_: T.Type, _ bytes: [UInt8], at offset: Int) -> T {
        bytes.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: T.self)) }
    }
}
