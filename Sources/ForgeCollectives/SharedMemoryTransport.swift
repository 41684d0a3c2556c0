// The collective transport for ranks on one host: every rank maps a mailbox file (in /dev/shm)
// holding one single-producer, single-consumer byte ring per source rank, and writes into its
// peers' mailboxes directly. A message costs one copy into the ring; the receiver combines
// straight out of the ring, with no copy on its side and no system call when both sides are
// busy. A side that must wait spins briefly, then sleeps on a futex in the ring that the other
// side wakes, so a waiting rank leaves its core to the compute threads.
//
// Mailbox file: a 4 KiB header (magic, version, world size, owner rank and pid, ring capacity,
// a random nonce peers check), then per source rank a 4 KiB control block and `capacity` bytes
// of ring. The control block keeps the producer's and the consumer's words on separate cache
// lines. Records are a 32-byte header (tag, message length, fragment length, flags) and the
// payload, padded to 64 bytes; a record that would straddle the end of the ring is preceded by
// a wrap marker. Messages larger than a quarter of the ring travel as several fragments.
import CForgeSystem
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Where a rank's mailbox is, as its peers learn it in the rendezvous.
public struct SharedMemoryMailbox: Codable, Sendable, Hashable {
    public var path: String
    public var nonce: UInt64

    public init(path: String, nonce: UInt64) {
        self.path = path
        self.nonce = nonce
    }
}

/// A rank's shared-memory endpoint: its own mailbox, and the mailboxes of the peers it attached.
///
/// Concurrency: not Sendable; it belongs to the thread that runs this rank. The rings it shares
/// with other processes are synchronised through acquire/release atomics and futexes on the
/// mapping (CForgeSystem): each ring has exactly one producer and one consumer.
public final class SharedMemoryTransport: CollectiveTransport {
    public let rank: Int
    public let worldSize: Int
    public let timeoutMilliseconds: Int
    public let mailbox: SharedMemoryMailbox
    /// Bytes of ring per source rank.
    public let capacity: Int
    private let own: SharedMemoryMapping
    private var unlinked = false
    /// The mailbox of each attached peer (where this rank produces).
    private var outgoing: [SharedMemoryMapping?]
    /// Producer and consumer positions; the shared copies are what the other side reads.
    private var produced: [UInt64]
    private var consumed: [UInt64]
    /// Whole messages taken off a ring while this rank waited to send, and fragments of a
    /// message not yet complete, per source rank.
    private var pending: [[(tag: UInt64, bytes: [UInt8])]]
    private var assembling: [(tag: UInt64, bytes: [UInt8])?]

    static let magic: UInt64 = 0x4D48_5345_4752_4F46  // "FORGESHM", little-endian
    static let version: UInt32 = 1
    static let headerBytes = 4096
    static let controlBytes = 4096
    static let recordHeaderBytes = 32
    static let wrapFlag: UInt32 = 1
    static let lastFragmentFlag: UInt32 = 2
    /// How long a waiting side yields before it sleeps on the futex.
    static let yieldNanoseconds: UInt64 = 100_000

    /// The ring size for a group of `worldSize` ranks: 4 MiB, or less where the tmpfs at
    /// `directory` is small (Docker gives containers 64 MiB), so that the rings of a whole
    /// group on one host take at most half of it: its size / 2 / worldSize², in 64 KiB steps,
    /// at least 64 KiB. The ranks on a host see the same tmpfs, so they all choose alike (and a
    /// pair whose sizes differ does not share memory).
    public static func ringCapacity(worldSize: Int, directory: String = "/dev/shm") -> Int {
        var stats = statvfs()
        guard statvfs(directory, &stats) == 0 else { return 4 << 20 }
        let total = Int(stats.f_blocks) * Int(stats.f_frsize)
        let share = total / 2 / max(1, worldSize * worldSize)
        return min(4 << 20, max(64 << 10, share / (64 << 10) * (64 << 10)))
    }

    /// Creates this rank's mailbox in `directory` (a tmpfs such as /dev/shm; the file is sparse,
    /// so only the rings peers use take memory).
    public init(rank: Int, worldSize: Int, capacity: Int = 4 << 20, timeoutMilliseconds: Int = 30_000,
                directory: String = "/dev/shm") throws(CollectiveError) {
        precondition(rank >= 0 && rank < worldSize, "rank \(rank) outside 0..<\(worldSize)")
        precondition(capacity >= 1 << 12 && capacity % 64 == 0, "a ring holds at least 4 KiB, in 64-byte units")
        self.rank = rank
        self.worldSize = worldSize
        self.capacity = capacity
        self.timeoutMilliseconds = timeoutMilliseconds
        let nonce = UInt64.random(in: 1...UInt64.max)
        let path = "\(directory)/\(SharedMemoryTransport.mailboxPrefix(of: getpid()))r\(rank)-\(String(nonce, radix: 16))"
        mailbox = SharedMemoryMailbox(path: path, nonce: nonce)
        let size = SharedMemoryTransport.headerBytes + worldSize * (SharedMemoryTransport.controlBytes + capacity)
        // Kept open to give a ring memory when a peer attaches, after the name may be gone.
        own = try SharedMemoryMapping(creating: path, size: size, peer: rank, backing: 0..<SharedMemoryTransport.headerBytes, keepOpen: true)
        outgoing = Array(repeating: nil, count: worldSize)
        produced = Array(repeating: 0, count: worldSize)
        consumed = Array(repeating: 0, count: worldSize)
        pending = Array(repeating: [], count: worldSize)
        assembling = Array(repeating: nil, count: worldSize)
        let header = own.base
        header.storeBytes(of: SharedMemoryTransport.magic, toByteOffset: 0, as: UInt64.self)
        header.storeBytes(of: SharedMemoryTransport.version, toByteOffset: 8, as: UInt32.self)
        header.storeBytes(of: UInt32(worldSize), toByteOffset: 12, as: UInt32.self)
        header.storeBytes(of: UInt32(rank), toByteOffset: 16, as: UInt32.self)
        header.storeBytes(of: UInt32(getpid()), toByteOffset: 20, as: UInt32.self)
        header.storeBytes(of: UInt64(capacity), toByteOffset: 24, as: UInt64.self)
        header.storeBytes(of: nonce, toByteOffset: 32, as: UInt64.self)
    }

    deinit { unlinkMailbox() }

    /// Maps `mailbox` of rank `peer` for sending. Fails when the file is not that rank's mailbox
    /// of this group (another host's path, a stale file, a different capacity).
    public func attach(peer: Int, mailbox: SharedMemoryMailbox) throws(CollectiveError) {
        guard peer >= 0, peer < worldSize, peer != rank else { throw .invalidArgument("cannot attach rank \(peer)") }
        let size = SharedMemoryTransport.headerBytes + worldSize * (SharedMemoryTransport.controlBytes + capacity)
        let mapping = try SharedMemoryMapping(opening: mailbox.path, size: size, peer: peer, keepOpen: true)
        // The header is read from the file, not the mapping: a file that is not the peer's
        // mailbox may have no memory behind its first page.
        let header = try mapping.prefix(40, peer: peer)
        func field<T: FixedWidthInteger>(_ offset: Int, _ type: T.Type) -> T {
            header.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: T.self) }
        }
        guard field(0, UInt64.self) == SharedMemoryTransport.magic,
              field(8, UInt32.self) == SharedMemoryTransport.version,
              field(12, UInt32.self) == UInt32(worldSize),
              field(16, UInt32.self) == UInt32(peer),
              field(24, UInt64.self) == UInt64(capacity),
              field(32, UInt64.self) == mailbox.nonce else {
            throw .transport(peer: peer, reason: "\(mailbox.path) is not rank \(peer)'s mailbox of this group")
        }
        // Both rings of the pair get their memory before either is touched: the one this rank
        // writes into (in the peer's file) and the one it reads from (in its own). Whichever
        // side gets there first backs it; a full /dev/shm is an error, and the pair talks over
        // sockets instead (ProcessGroup.join).
        try mapping.back(ringBytes(source: rank), peer: peer)
        do {
            try own.back(ringBytes(source: peer), peer: peer)
        } catch {
            mapping.release(ringBytes(source: rank))
            throw error
        }
        // Tell the consumer who produces into its ring, for its liveness checks.
        let ring = control(mapping, source: rank)
        ring.storeBytes(of: UInt32(getpid()), toByteOffset: Control.producerPID, as: UInt32.self)
        outgoing[peer] = mapping
        // Fault the ring's pages in now: a fresh tmpfs page costs a fault and a zeroing on first
        // touch, which on the data path would cost more than the copy itself.
        SharedMemoryTransport.touchPages(ring + SharedMemoryTransport.controlBytes, count: capacity, write: true)
        SharedMemoryTransport.touchPages(control(own, source: peer), count: SharedMemoryTransport.controlBytes + capacity, write: false)
    }

    /// Touches one byte per page (writing zero into a ring nobody reads yet, or reading).
    private static func touchPages(_ base: UnsafeMutableRawPointer, count: Int, write: Bool) {
        var sink: UInt8 = 0
        for offset in stride(from: 0, to: count, by: 4096) {
            if write {
                base.storeBytes(of: 0, toByteOffset: offset, as: UInt8.self)
            } else {
                sink &+= base.load(fromByteOffset: offset, as: UInt8.self)
            }
        }
        withExtendedLifetime(sink) {}
    }

    /// Every mailbox file of process `pid` starts with this.
    static func mailboxPrefix(of pid: Int32) -> String { "forge-\(pid)-" }

    /// Removes the mailboxes of process `pid`, which has exited: one that dies before its group
    /// formed (and the files were unlinked) leaves them behind.
    public static func removeMailboxes(ofProcess pid: Int32, directory: String = "/dev/shm") {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return }
        for name in names where name.hasPrefix(mailboxPrefix(of: pid)) { unlink("\(directory)/\(name)") }
    }

    /// Removes this rank's mailbox file once every peer has mapped it (the mappings stay).
    public func unlinkMailbox() {
        guard !unlinked else { return }
        unlinked = true
        unlink(mailbox.path)
    }

    /// Whether `peer` was attached (its messages go through shared memory).
    public func isAttached(_ peer: Int) -> Bool { outgoing[peer] != nil }

    /// Unmaps `peer`'s mailbox, and hands both rings of the pair back to the tmpfs: the pair
    /// talks another way (the peer could not map this one's).
    public func detach(peer: Int) {
        guard let mapping = outgoing[peer] else { return }
        mapping.release(ringBytes(source: rank))
        own.release(ringBytes(source: peer))
        outgoing[peer] = nil
    }

    // MARK: Sending

    public func send(_ bytes: UnsafeRawBufferPointer, to peer: Int, tag: UInt64) throws(CollectiveError) {
        guard peer >= 0, peer < worldSize, peer != rank, let mapping = outgoing[peer] else {
            throw .invalidArgument("cannot send to rank \(peer) (attached?)")
        }
        let ring = Ring(control: control(mapping, source: rank), capacity: capacity)
        let fragmentLimit = capacity / 4 - SharedMemoryTransport.recordHeaderBytes
        var offset = 0
        repeat {
            let length = min(fragmentLimit, bytes.count - offset)
            let record = SharedMemoryTransport.recordSize(length)
            var head = produced[peer]
            let position = Int(head % UInt64(capacity))
            let toEnd = capacity - position
            let needed = record <= toEnd ? record : toEnd + record
            try waitUntil(peer: peer, producer: true, ring: ring, signal: ring.spaceSignal, waiting: ring.producerWaiting) {
                // The tail is the peer's to write: a garbled one (ahead of the head, or too far
                // behind) never makes room, and the send times out.
                let used = head &- forge_load_acquire_u64(ring.tail)
                return used <= UInt64(capacity) && Int(used) + needed <= capacity
            }
            var at = position
            if record > toEnd {
                ring.data.storeBytes(of: SharedMemoryTransport.wrapFlag, toByteOffset: at + 20, as: UInt32.self)
                head += UInt64(toEnd)
                at = 0
            }
            let isLast = offset + length == bytes.count
            ring.data.storeBytes(of: tag, toByteOffset: at, as: UInt64.self)
            ring.data.storeBytes(of: UInt64(bytes.count), toByteOffset: at + 8, as: UInt64.self)
            ring.data.storeBytes(of: UInt32(length), toByteOffset: at + 16, as: UInt32.self)
            ring.data.storeBytes(of: isLast ? SharedMemoryTransport.lastFragmentFlag : 0, toByteOffset: at + 20, as: UInt32.self)
            if length > 0, let source = bytes.baseAddress {
                (ring.data + at + SharedMemoryTransport.recordHeaderBytes).copyMemory(from: source + offset, byteCount: length)
            }
            head += UInt64(record)
            produced[peer] = head
            forge_store_release_u64(ring.head, head)
            ring.signal(ring.dataSignal, waiter: ring.consumerWaiting)
            offset += length
        } while offset < bytes.count
    }

    // MARK: Receiving

    public func receive(from peer: Int, tag: UInt64, byteCount: Int, _ consume: (UnsafeRawBufferPointer) -> Void) throws(CollectiveError) {
        guard peer >= 0, peer < worldSize, peer != rank else { throw .invalidArgument("cannot receive from rank \(peer)") }
        if !pending[peer].isEmpty {
            let message = pending[peer].removeFirst()
            try SharedMemoryTransport.check(message.tag, message.bytes.count, tag: tag, byteCount: byteCount, peer: peer)
            message.bytes.withUnsafeBytes(consume)
            return
        }
        let ring = Ring(control: control(own, source: peer), capacity: capacity)
        while true {
            guard let record = try nextRecord(from: peer, ring: ring) else {
                try waitUntil(peer: peer, producer: false, ring: ring, signal: ring.dataSignal, waiting: ring.consumerWaiting) {
                    forge_load_acquire_u64(ring.head) != consumed[peer]
                }
                continue
            }
            if assembling[peer] == nil, record.isLast, record.length == record.total {
                // The usual case: a whole message in one record, consumed in place.
                defer { release(record, from: peer, ring: ring) }
                try SharedMemoryTransport.check(record.tag, record.length, tag: tag, byteCount: byteCount, peer: peer)
                consume(UnsafeRawBufferPointer(start: record.payload, count: record.length))
                return
            }
            if let message = try assemble(record, from: peer, ring: ring) {
                try SharedMemoryTransport.check(message.tag, message.bytes.count, tag: tag, byteCount: byteCount, peer: peer)
                message.bytes.withUnsafeBytes(consume)
                return
            }
        }
    }

    /// A record at the consumer's position of `peer`'s ring, or nil when the ring is empty.
    private struct Record {
        let tag: UInt64
        let total: Int
        let length: Int
        let isLast: Bool
        let payload: UnsafeRawPointer
        let size: Int
    }

    private func nextRecord(from peer: Int, ring: Ring) throws(CollectiveError) -> Record? {
        // Everything in the ring is the other process's to write: check before trusting it.
        let head = forge_load_acquire_u64(ring.head)
        var tail = consumed[peer]
        guard head != tail else { return nil }
        guard head &- tail <= UInt64(capacity) else {
            throw .protocolViolation(peer: peer, reason: "its ring's head \(head) is not within \(capacity) bytes after the tail \(tail)")
        }
        var position = Int(tail % UInt64(capacity))
        if ring.data.load(fromByteOffset: position + 20, as: UInt32.self) & SharedMemoryTransport.wrapFlag != 0 {
            tail += UInt64(capacity - position)
            consumed[peer] = tail
            position = 0
            guard head != tail, head &- tail <= UInt64(capacity) else {
                throw .protocolViolation(peer: peer, reason: "a wrap marker without a record after it")
            }
        }
        let total = ring.data.load(fromByteOffset: position + 8, as: UInt64.self)
        let length = Int(ring.data.load(fromByteOffset: position + 16, as: UInt32.self))
        let flags = ring.data.load(fromByteOffset: position + 20, as: UInt32.self)
        let size = SharedMemoryTransport.recordSize(length)
        guard size <= capacity - position, UInt64(size) <= head &- tail, UInt64(length) <= total, total <= UInt64(UInt32.max) << 8 else {
            throw .protocolViolation(peer: peer, reason: "a ring record of \(length) bytes at offset \(position) that does not fit")
        }
        return Record(tag: ring.data.load(fromByteOffset: position, as: UInt64.self), total: Int(total), length: length,
                      isLast: flags & SharedMemoryTransport.lastFragmentFlag != 0,
                      payload: UnsafeRawPointer(ring.data + position + SharedMemoryTransport.recordHeaderBytes), size: size)
    }

    /// Hands the record's space back to the producer.
    private func release(_ record: Record, from peer: Int, ring: Ring) {
        consumed[peer] += UInt64(record.size)
        forge_store_release_u64(ring.tail, consumed[peer])
        ring.signal(ring.spaceSignal, waiter: ring.producerWaiting)
    }

    /// Copies a record into the message being assembled from `peer`; returns the message once
    /// its last fragment is in.
    private func assemble(_ record: Record, from peer: Int, ring: Ring) throws(CollectiveError) -> (tag: UInt64, bytes: [UInt8])? {
        defer { release(record, from: peer, ring: ring) }
        var message = assembling[peer] ?? (record.tag, [])
        if message.bytes.isEmpty { message.bytes.reserveCapacity(min(record.total, 64 << 20)) }
        guard message.tag == record.tag, message.bytes.count + record.length <= record.total else {
            throw .protocolViolation(peer: peer, reason: "a fragment that does not continue the message before it")
        }
        message.bytes.append(contentsOf: UnsafeRawBufferPointer(start: record.payload, count: record.length))
        guard record.isLast else {
            assembling[peer] = message
            return nil
        }
        assembling[peer] = nil
        guard message.bytes.count == record.total else {
            throw .protocolViolation(peer: peer, reason: "a message of \(message.bytes.count) bytes announced as \(record.total)")
        }
        return message
    }

    /// Moves whatever has arrived from every attached peer into `pending`, so a producer that
    /// waits for ring space never blocks a peer that waits for it (sends queue, as the
    /// protocol says).
    private func drainIncoming() throws(CollectiveError) {
        for peer in 0..<worldSize where outgoing[peer] != nil {
            let ring = Ring(control: control(own, source: peer), capacity: capacity)
            while let record = try nextRecord(from: peer, ring: ring) {
                if let message = try assemble(record, from: peer, ring: ring) { pending[peer].append(message) }
            }
        }
    }

    private static func check(_ got: UInt64, _ count: Int, tag: UInt64, byteCount: Int, peer: Int) throws(CollectiveError) {
        guard got == tag else {
            throw .protocolViolation(peer: peer, reason: "expected tag \(String(tag, radix: 16)), got \(String(got, radix: 16))")
        }
        guard count == byteCount else { throw .protocolViolation(peer: peer, reason: "expected \(byteCount) bytes, got \(count)") }
    }

    // MARK: Waiting

    /// Waits until `ready()`: spins a little, yields a little, then sleeps on `signal` (the other
    /// side increments it and wakes us when it sees `waiting` set). Checks every few
    /// milliseconds that the peer process still exists, and gives up after the timeout.
    private func waitUntil(peer: Int, producer: Bool, ring: Ring, signal: UnsafeMutablePointer<UInt32>,
                           waiting: UnsafeMutablePointer<UInt32>, _ ready: () -> Bool) throws(CollectiveError) {
        for _ in 0..<256 {
            if ready() { return }
            forge_cpu_relax()
        }
        // Then yield for a while: a sleeping rank takes tens to hundreds of microseconds to wake
        // (far more in a VM), longer than a peer usually needs to copy a chunk, and yielding
        // still lets another thread on this core (the compute threads) run.
        let start = DispatchTime.now().uptimeNanoseconds
        while DispatchTime.now().uptimeNanoseconds - start < SharedMemoryTransport.yieldNanoseconds {
            if ready() { return }
            sched_yield()
        }
        let limit = UInt64(timeoutMilliseconds) * 1_000_000
        var slice: Int64 = 200
        while true {
            let seen = forge_load_u32(signal)
            forge_store_u32(waiting, 1)
            if ready() {
                forge_store_u32(waiting, 0)
                return
            }
            _ = forge_futex_wait(signal, seen, slice)
            forge_store_u32(waiting, 0)
            if ready() { return }
            if producer { try drainIncoming() }
            let elapsed = DispatchTime.now().uptimeNanoseconds - start
            if elapsed >= limit { throw .timedOut(peer: peer, milliseconds: timeoutMilliseconds) }
            if slice >= 10_000, let pid = peerPID(peer, producer: producer, ring: ring), kill(pid_t(pid), 0) != 0, errno == ESRCH {
                throw .peerLost(peer: peer, reason: "rank \(peer) (pid \(pid)) has exited")
            }
            slice = min(slice * 2, 20_000)
        }
    }

    /// The process on the other side of `ring`: the mailbox owner for a producer, the
    /// producer recorded in the control block for a consumer.
    private func peerPID(_ peer: Int, producer: Bool, ring: Ring) -> UInt32? {
        let pid = producer
            ? outgoing[peer]?.base.load(fromByteOffset: 20, as: UInt32.self)
            : ring.control.load(fromByteOffset: Control.producerPID, as: UInt32.self)
        return pid == 0 ? nil : pid
    }

    // MARK: Layout

    /// Byte offsets in a control block (each written by one side, on its own cache line).
    enum Control {
        static let head = 0
        static let dataSignal = 64
        static let consumerWaiting = 128
        static let tail = 192
        static let spaceSignal = 256
        static let producerWaiting = 320
        static let producerPID = 384
    }

    /// Where, in a mailbox file, the ring from rank `source` lies (its control block and data).
    private func ringBytes(source: Int) -> Range<Int> {
        let start = SharedMemoryTransport.headerBytes + source * (SharedMemoryTransport.controlBytes + capacity)
        return start..<(start + SharedMemoryTransport.controlBytes + capacity)
    }

    private func control(_ mapping: SharedMemoryMapping, source: Int) -> UnsafeMutableRawPointer {
        mapping.base + SharedMemoryTransport.headerBytes + source * (SharedMemoryTransport.controlBytes + capacity)
    }

    static func recordSize(_ length: Int) -> Int { (recordHeaderBytes + length + 63) & ~63 }

    /// Typed views of one ring's control block and data.
    private struct Ring {
        let control: UnsafeMutableRawPointer
        let data: UnsafeMutableRawPointer
        init(control: UnsafeMutableRawPointer, capacity: Int) {
            self.control = control
            data = control + SharedMemoryTransport.controlBytes
        }
        var head: UnsafeMutablePointer<UInt64> { (control + Control.head).assumingMemoryBound(to: UInt64.self) }
        var tail: UnsafeMutablePointer<UInt64> { (control + Control.tail).assumingMemoryBound(to: UInt64.self) }
        var dataSignal: UnsafeMutablePointer<UInt32> { (control + Control.dataSignal).assumingMemoryBound(to: UInt32.self) }
        var spaceSignal: UnsafeMutablePointer<UInt32> { (control + Control.spaceSignal).assumingMemoryBound(to: UInt32.self) }
        var consumerWaiting: UnsafeMutablePointer<UInt32> { (control + Control.consumerWaiting).assumingMemoryBound(to: UInt32.self) }
        var producerWaiting: UnsafeMutablePointer<UInt32> { (control + Control.producerWaiting).assumingMemoryBound(to: UInt32.self) }

        /// Bumps `signal` and wakes the other side if it sleeps on it.
        func signal(_ signal: UnsafeMutablePointer<UInt32>, waiter: UnsafeMutablePointer<UInt32>) {
            _ = forge_increment_u32(signal)
            if forge_load_u32(waiter) != 0 { _ = forge_futex_wake(signal) }
        }
    }
}

/// A shared mapping of a whole file, unmapped when released.
///
/// Concurrency: not Sendable; owned by one transport. Other processes map the same file.
final class SharedMemoryMapping {
    let base: UnsafeMutableRawPointer
    let size: Int
    let path: String
    /// The file, kept open to give parts of it memory later (`back`), or -1.
    private let descriptor: Int32

    /// Creates `path` (it must not exist), sizes it (sparse, with the bytes in `backing` given
    /// memory now, so that a full tmpfs is an error here rather than a SIGBUS on first touch)
    /// and maps it.
    convenience init(creating path: String, size: Int, peer: Int, backing: Range<Int>, keepOpen: Bool = false) throws(CollectiveError) {
        let descriptor = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw SharedMemoryMapping.failure("open(\(path))", peer: peer) }
        do throws(CollectiveError) {
            guard ftruncate(descriptor, off_t(size)) == 0 else { throw SharedMemoryMapping.failure("ftruncate(\(path))", peer: peer) }
            try SharedMemoryMapping.back(descriptor, backing, path: path, peer: peer)
            try self.init(descriptor: descriptor, size: size, path: path, peer: peer, keepOpen: keepOpen)
        } catch {
            close(descriptor)
            unlink(path)
            throw error
        }
    }

    /// Maps an existing `path` of exactly `size` bytes.
    convenience init(opening path: String, size: Int, peer: Int, keepOpen: Bool = false) throws(CollectiveError) {
        let descriptor = open(path, O_RDWR | O_CLOEXEC)
        guard descriptor >= 0 else { throw SharedMemoryMapping.failure("open(\(path))", peer: peer) }
        do throws(CollectiveError) {
            var status = stat()
            guard fstat(descriptor, &status) == 0 else { throw SharedMemoryMapping.failure("fstat(\(path))", peer: peer) }
            guard Int(status.st_size) == size else {
                throw CollectiveError.transport(peer: peer, reason: "\(path) holds \(status.st_size) bytes, expected \(size)")
            }
            try self.init(descriptor: descriptor, size: size, path: path, peer: peer, keepOpen: keepOpen)
        } catch {
            close(descriptor)
            throw error
        }
    }

    private init(descriptor: Int32, size: Int, path: String, peer: Int, keepOpen: Bool) throws(CollectiveError) {
        guard let address = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, descriptor, 0),
              address != UnsafeMutableRawPointer(bitPattern: -1) else {
            throw SharedMemoryMapping.failure("mmap(\(path))", peer: peer)
        }
        base = address
        self.size = size
        self.path = path
        if keepOpen {
            self.descriptor = descriptor
        } else {
            close(descriptor)
            self.descriptor = -1
        }
    }

    deinit {
        munmap(base, size)
        if descriptor >= 0 { close(descriptor) }
    }

    /// The first `count` bytes of the file, read without touching the mapping (a page of a
    /// sparse file that nobody gave memory reads as zeros here, where a touch could SIGBUS).
    func prefix(_ count: Int, peer: Int) throws(CollectiveError) -> [UInt8] {
        guard descriptor >= 0 else { throw .invalidArgument("\(path) is not kept open") }
        var bytes = [UInt8](repeating: 0, count: count)
        let read = bytes.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, count, 0) }
        guard read == count else { throw SharedMemoryMapping.failure("pread(\(path))", peer: peer) }
        return bytes
    }

    /// Gives the bytes in `range` memory now (see the static `back`); needs `keepOpen`.
    func back(_ range: Range<Int>, peer: Int) throws(CollectiveError) {
        try SharedMemoryMapping.back(descriptor, range, path: path, peer: peer)
    }

    /// Hands the whole pages inside `range` back to the tmpfs (MADV_REMOVE): a ring the pair
    /// will not use stops holding room others may need. They read as zeros after.
    func release(_ range: Range<Int>) {
        let start = (range.lowerBound + 4095) / 4096 * 4096, end = range.upperBound / 4096 * 4096
        guard end > start else { return }
        _ = madvise(base + start, end - start, MADV_REMOVE)
    }

    /// Gives the bytes in `range` of the file open as `descriptor` memory now (posix_fallocate).
    /// A page of a sparse tmpfs file gets memory on first touch, and when the tmpfs is full that
    /// touch is a SIGBUS; backed first, a full tmpfs is this error instead.
    static func back(_ descriptor: Int32, _ range: Range<Int>, path: String, peer: Int) throws(CollectiveError) {
        guard !range.isEmpty else { return }
        guard descriptor >= 0 else { throw .invalidArgument("\(path) is not kept open") }
        let code = posix_fallocate(descriptor, off_t(range.lowerBound), off_t(range.count))
        guard code == 0 else {
            let hint = code == ENOSPC ? " (\((path as NSString).deletingLastPathComponent) is full: give it more room, e.g. docker run --shm-size)" : ""
            throw .transport(peer: peer, reason: "posix_fallocate(\(path), \(range.count) bytes at \(range.lowerBound)) failed: \(String(cString: strerror(code))) (errno \(code))\(hint)")
        }
    }

    private static func failure(_ call: String, peer: Int) -> CollectiveError {
        let code = errno
        return .transport(peer: peer, reason: "\(call) failed: \(String(cString: strerror(code))) (errno \(code))")
    }
}
