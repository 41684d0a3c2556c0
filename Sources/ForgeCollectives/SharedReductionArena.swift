// Direct all-reduce for ranks that all share one host. Every rank maps every other rank's
// region of floats, so instead of passing segments round a ring, each rank reduces its own
// segment by reading every region in place, and then copies the other ranks' finished
// segments: three counter handshakes per call, no messages, and for a buffer that lives in the
// region (a trainer's gradients) no copy in or out at all. This is what Open MPI's
// shared-memory collectives and NCCL's single-node kernels do with registered memory.
//
// A region is used one of two ways:
// - registered: the caller's buffer lies inside this rank's region (`base`); the reduction
//   works in place and ends with a handshake after which no rank reads the others' buffers.
// - scratch: any buffer is copied in piece by piece, in halves of the region used in turn, so
//   a piece never overwrites a half a peer may still read (two handshakes per piece).
// One arena serves one of the two uses, never both.
//
// File layout (one per rank, in /dev/shm): a 4 KiB header (magic, version, world size, owner
// rank and pid, capacity, nonce; then the owner's handshake counter and the count of ranks
// sleeping on it, each on a cache line of its own), then `capacity` floats.
import CForgeSystem
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The regions of floats that the ranks of an all-local group map from one another.
///
/// Concurrency: not Sendable; it belongs to the thread that runs this rank's collectives. Other
/// processes read this rank's region and counter; every access across processes is ordered by
/// the counters (seq-cst atomics in CForgeSystem), and futexes on them let a waiting rank sleep.
public final class SharedReductionArena {
    public let rank: Int
    public let worldSize: Int
    /// Floats in each rank's region.
    public let capacity: Int
    public let timeoutMilliseconds: Int
    private let mappings: [SharedMemoryMapping]
    private let regions: [UnsafeMutablePointer<Float>]
    private let counters: [UnsafeMutablePointer<UInt32>]
    private let sleepers: [UnsafeMutablePointer<UInt32>]
    private let pids: [Int32]
    /// Handshakes this rank has published.
    private var passed: UInt32 = 0
    /// Scratch pieces so far (which half the next one uses).
    private var pieces = 0

    static let magic: UInt64 = 0x414E_4552_4147_4F46  // "FOGARENA", little-endian
    static let version: UInt32 = 1
    static let headerBytes = 4096
    static let counterOffset = 64
    static let sleepersOffset = 128

    /// This rank's region: a buffer inside it is reduced in place.
    public var base: UnsafeMutablePointer<Float> { regions[rank] }

    /// Whether `buffer` lies inside this rank's region.
    public func contains(_ buffer: UnsafeMutableBufferPointer<Float>) -> Bool {
        guard let start = buffer.baseAddress else { return false }
        return start >= regions[rank] && start + buffer.count <= regions[rank] + capacity
    }

    /// Makes the arena across `transport`'s ranks, which must all reach one another through
    /// shared memory; every rank calls it. Returns nil on every rank when any rank could not
    /// create or map a region (no room in /dev/shm): callers then use the message algorithms.
    ///
    /// The last `rankZeroOnlyTail` floats get memory in rank 0's region alone: the others' stay
    /// sparse files that take no room, for what only rank 0's copy of holds (values the ranks
    /// share, `counterpart(of:in:)`). Nothing may touch them on another rank: a page first
    /// touched there takes room then, or raises SIGBUS in a full tmpfs.
    static func make(transport: SharedMemoryTransport, capacity: Int, tag: UInt64, rankZeroOnlyTail: Int = 0,
                     directory: String = "/dev/shm") throws(CollectiveError) -> SharedReductionArena? {
        precondition((0...capacity).contains(rankZeroOnlyTail), "a tail of \(rankZeroOnlyTail) floats in a region of \(capacity)")
        let (rank, worldSize) = (transport.rank, transport.worldSize)
        let nonce = UInt64.random(in: 1...UInt64.max)
        let path = "\(directory)/\(SharedMemoryTransport.mailboxPrefix(of: getpid()))a\(rank)-\(String(nonce, radix: 16))"
        let size = headerBytes + (capacity * 4 + 4095) / 4096 * 4096
        // Whole pages only: the page the tail starts in may hold floats before it.
        let backed = rank == 0 ? size : min(size, headerBytes + ((capacity - rankZeroOnlyTail) * 4 + 4095) / 4096 * 4096)
        var own = try? SharedMemoryMapping(creating: path, size: size, peer: rank, backing: 0..<backed)
        defer { unlink(path) }
        if let own {
            let header = own.base
            header.storeBytes(of: magic, toByteOffset: 0, as: UInt64.self)
            header.storeBytes(of: version, toByteOffset: 8, as: UInt32.self)
            header.storeBytes(of: UInt32(worldSize), toByteOffset: 12, as: UInt32.self)
            header.storeBytes(of: UInt32(rank), toByteOffset: 16, as: UInt32.self)
            header.storeBytes(of: UInt32(getpid()), toByteOffset: 20, as: UInt32.self)
            header.storeBytes(of: UInt64(capacity), toByteOffset: 24, as: UInt64.self)
            header.storeBytes(of: nonce, toByteOffset: 32, as: UInt64.self)
            // Fault the region in now, not on the data path.
            for offset in stride(from: headerBytes, to: backed, by: 4096) { header.storeBytes(of: 0, toByteOffset: offset, as: UInt8.self) }
        }
        // Tell every peer where the region is: nonce, path length, path (a fixed 256 bytes).
        var message = [UInt8](repeating: 0, count: 256)
        let pathBytes = Array(path.utf8)
        guard pathBytes.count <= 244 else { throw .invalidArgument("shared-memory path \(path) is too long") }
        withUnsafeBytes(of: (own == nil ? 0 : nonce).littleEndian) { message.replaceSubrange(0..<8, with: $0) }
        withUnsafeBytes(of: UInt32(pathBytes.count).littleEndian) { message.replaceSubrange(8..<12, with: $0) }
        message.replaceSubrange(12..<(12 + pathBytes.count), with: pathBytes)
        for peer in 0..<worldSize where peer != rank {
            try send(message, over: transport, to: peer, tag: tag)
        }
        var mappings = [SharedMemoryMapping?](repeating: nil, count: worldSize)
        mappings[rank] = own
        var usable = own != nil
        for peer in 0..<worldSize where peer != rank {
            var peerNonce: UInt64 = 0
            var peerPath = ""
            try transport.receive(from: peer, tag: tag, byteCount: 256) { bytes in
                peerNonce = bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self).littleEndian
                let length = min(244, Int(bytes.loadUnaligned(fromByteOffset: 8, as: UInt32.self).littleEndian))
                peerPath = String(decoding: bytes[12..<(12 + length)], as: UTF8.self)
            }
            guard usable, peerNonce != 0 else {
                usable = false
                continue
            }
            guard let mapping = try? SharedMemoryMapping(opening: peerPath, size: size, peer: peer) else {
                usable = false
                continue
            }
            let header = mapping.base
            guard header.load(fromByteOffset: 0, as: UInt64.self) == magic,
                  header.load(fromByteOffset: 8, as: UInt32.self) == version,
                  header.load(fromByteOffset: 12, as: UInt32.self) == UInt32(worldSize),
                  header.load(fromByteOffset: 16, as: UInt32.self) == UInt32(peer),
                  header.load(fromByteOffset: 24, as: UInt64.self) == UInt64(capacity),
                  header.load(fromByteOffset: 32, as: UInt64.self) == peerNonce else {
                throw .protocolViolation(peer: peer, reason: "\(peerPath) is not rank \(peer)'s reduction region of this group")
            }
            mappings[peer] = mapping
        }
        // Every rank learns whether all could map all (this is also the barrier after which
        // the files can go: the mappings stay).
        let verdict: [UInt8] = [usable ? 1 : 0, 0, 0, 0, 0, 0, 0, 0]
        for peer in 0..<worldSize where peer != rank {
            try send(verdict, over: transport, to: peer, tag: tag | 1 << 32)
        }
        for peer in 0..<worldSize where peer != rank {
            try transport.receive(from: peer, tag: tag | 1 << 32, byteCount: 8) { bytes in
                if bytes.loadUnaligned(as: UInt64.self) == 0 { usable = false }
            }
        }
        guard usable else {
            // Nobody keeps a region. Every rank lets go of its own and of those it mapped, and
            // waits until all have: what the caller tries next (a smaller region) finds the
            // room they held free, on every rank alike.
            mappings = []
            own = nil
            unlink(path)
            for peer in 0..<worldSize where peer != rank {
                try send([UInt8](repeating: 0, count: 8), over: transport, to: peer, tag: tag | 2 << 32)
            }
            for peer in 0..<worldSize where peer != rank {
                try transport.receive(from: peer, tag: tag | 2 << 32, byteCount: 8) { _ in }
            }
            return nil
        }
        return SharedReductionArena(rank: rank, worldSize: worldSize, capacity: capacity, rankZeroOnlyTail: rankZeroOnlyTail,
                                    timeoutMilliseconds: transport.timeoutMilliseconds, mappings: mappings.map { $0! })
    }

    private static func send(_ bytes: [UInt8], over transport: SharedMemoryTransport, to peer: Int, tag: UInt64) throws(CollectiveError) {
        var failure: CollectiveError?
        bytes.withUnsafeBytes { raw in
            do throws(CollectiveError) {
                try transport.send(raw, to: peer, tag: tag)
            } catch {
                failure = error
            }
        }
        if let failure { throw failure }
    }

    private init(rank: Int, worldSize: Int, capacity: Int, rankZeroOnlyTail: Int, timeoutMilliseconds: Int, mappings: [SharedMemoryMapping]) {
        self.rank = rank
        self.worldSize = worldSize
        self.capacity = capacity
        self.timeoutMilliseconds = timeoutMilliseconds
        self.mappings = mappings
        regions = mappings.map { ($0.base + SharedReductionArena.headerBytes).assumingMemoryBound(to: Float.self) }
        counters = mappings.map { ($0.base + SharedReductionArena.counterOffset).assumingMemoryBound(to: UInt32.self) }
        sleepers = mappings.map { ($0.base + SharedReductionArena.sleepersOffset).assumingMemoryBound(to: UInt32.self) }
        pids = mappings.map { Int32(bitPattern: $0.base.load(fromByteOffset: 20, as: UInt32.self)) }
        // Read the peers' regions once, so their pages are mapped here before the data path;
        // not a tail that only rank 0 backs: reading a page of a shared tmpfs mapping gives it
        // memory too.
        var sink: Float = 0
        for (owner, region) in regions.enumerated() {
            for offset in stride(from: 0, to: owner == 0 ? capacity : capacity - rankZeroOnlyTail, by: 1024) { sink += region[offset] }
        }
        withExtendedLifetime(sink) {}
    }

    // MARK: All-reduce

    /// Reduces `buffer` across the ranks; every rank passes the same count. In place when the
    /// buffer lies inside `base`'s region, else through the region as scratch.
    public func allReduce(_ buffer: UnsafeMutableBufferPointer<Float>, op: ReduceOp) throws(CollectiveError) {
        guard worldSize > 1, buffer.count > 0, let start = buffer.baseAddress else { return }
        if contains(buffer) {
            let offset = start - regions[rank]
            try handshake()  // every rank's input is in place
            reduceOwnSegment(at: offset, count: buffer.count, op)
            try handshake()  // every segment is reduced
            gatherSegments(at: offset, count: buffer.count, into: start)
            try handshake()  // no rank reads this rank's buffer any more
            return
        }
        let half = capacity / 2
        precondition(half > 0, "a scratch arena needs at least two floats")
        var done = 0
        while done < buffer.count {
            let count = min(half, buffer.count - done)
            let offset = (pieces % 2) * half
            pieces += 1
            let piece = start + done
            (regions[rank] + offset).update(from: piece, count: count)
            try handshake()
            reduceOwnSegment(at: offset, count: count, op)
            let own = segment(rank, of: count)
            (piece + own.lowerBound).update(from: regions[rank] + offset + own.lowerBound, count: own.count)
            try handshake()
            // No third handshake: the next piece writes the other half, and this half is written
            // again only after the next piece's second handshake, which every rank reaches only
            // once it has finished reading this one.
            gatherSegments(at: offset, count: count, into: piece)
            done += count
        }
    }

    /// Reduce-scatter of a buffer inside this rank's region: afterwards this rank's segment of
    /// it (`RingAllReduce.segment`) holds the reduction; the rest keeps this rank's own input.
    public func reduceScatter(_ buffer: UnsafeMutableBufferPointer<Float>, op: ReduceOp) throws(CollectiveError) {
        guard worldSize > 1, buffer.count > 0, let start = buffer.baseAddress else { return }
        precondition(contains(buffer), "reduce-scatter through a shared region needs a buffer inside it")
        try handshake()  // every rank's input is in place
        reduceOwnSegment(at: start - regions[rank], count: buffer.count, op)
        try handshake()  // no rank reads this rank's buffer any more
    }

    /// All-gather of a buffer inside this rank's region: every rank's segment of it reaches every
    /// rank.
    public func allGather(_ buffer: UnsafeMutableBufferPointer<Float>) throws(CollectiveError) {
        guard worldSize > 1, buffer.count > 0, let start = buffer.baseAddress else { return }
        precondition(contains(buffer), "all-gather through a shared region needs a buffer inside it")
        try handshake()  // every segment is final
        gatherSegments(at: start - regions[rank], count: buffer.count, into: start)
        try handshake()  // no rank reads this rank's buffer any more
    }

    /// A sharded optimizer step over three buffers inside this rank's region, in one pass:
    /// every rank reduces (sums) its segment of `gradients` straight from the others' memory,
    /// `update` then writes this rank's segment of `values` from it, and every rank copies the
    /// other ranks' segments of `values`. `scalars` (a few floats: a step's loss, a stop flag)
    /// are summed along the way, in rank order, so every rank ends with the same bits.
    ///
    /// Reduce-scatter, update and all-gather as separate calls take four handshakes and a
    /// message exchange for the scalars; this takes three, and each one waits for the slowest
    /// rank. Afterwards `gradients` holds the reduction in this rank's segment only.
    public func reduceScatterUpdateGather(gradients: UnsafeMutableBufferPointer<Float>, values: UnsafeMutableBufferPointer<Float>,
                                          scalars: UnsafeMutableBufferPointer<Float>,
                                          update: () -> Void) throws(CollectiveError) {
        precondition(gradients.count == values.count, "gradients and values differ in size")
        precondition(contains(values), "a sharded step through a shared region needs its values inside it")
        guard worldSize > 1, gradients.baseAddress != nil, let valueStart = values.baseAddress else {
            update()
            return
        }
        let sums = try reduceAndUpdate(gradients: gradients, scalars: scalars, update: update)
        gatherSegments(at: valueStart - regions[rank], count: values.count, into: valueStart)
        for i in sums.indices { scalars[i] = sums[i] }
        try handshake()  // no rank reads this rank's buffers any more
    }

    /// A sharded optimizer step over values that all ranks share: one copy, which every rank
    /// maps (`counterpart(of:in:)`, in one rank's region). Every rank reduces its segment of
    /// `gradients` (inside this rank's region) straight from the others' memory and `update`
    /// writes that segment of the shared values; `scalars` are summed in rank order. Two
    /// handshakes and nothing copied: after the second every segment is updated, and each rank
    /// reads the whole model where it lies.
    ///
    /// No third handshake: the peers read this rank's gradients and scalars only between the
    /// two, and the caller writes them again only after the second; the values change only in
    /// `update`, which no rank enters before every rank has passed the first handshake, that is,
    /// has finished with the values of the step before. So a caller may write the shared values
    /// outside `update` only behind a barrier, or with the same bytes on every rank.
    public func reduceScatterUpdate(gradients: UnsafeMutableBufferPointer<Float>, scalars: UnsafeMutableBufferPointer<Float>,
                                    update: () -> Void) throws(CollectiveError) {
        guard worldSize > 1 else {
            update()
            return
        }
        let sums = try reduceAndUpdate(gradients: gradients, scalars: scalars, update: update)
        for i in sums.indices { scalars[i] = sums[i] }
    }

    /// The first two handshakes of a sharded step, the reduction of this rank's segment between
    /// them and `update`; returns the scalars' sums (for the caller to store once no peer reads
    /// this rank's scalars: after the second handshake).
    private func reduceAndUpdate(gradients: UnsafeMutableBufferPointer<Float>, scalars: UnsafeMutableBufferPointer<Float>,
                                 update: () -> Void) throws(CollectiveError) -> [Float] {
        precondition(contains(gradients) && (scalars.isEmpty || contains(scalars)),
                     "a sharded step through a shared region needs its gradients and scalars inside it")
        try handshake()  // every rank's gradients and scalars are in place
        // Into a local copy first: the peers read this rank's scalars until the next handshake.
        var sums = [Float](repeating: 0, count: scalars.count)
        if let scalarStart = scalars.baseAddress {
            let offset = scalarStart - regions[rank]
            for peer in 0..<worldSize {
                let theirs = regions[peer] + offset
                for i in sums.indices { sums[i] += theirs[i] }
            }
        }
        reduceOwnSegment(at: gradients.baseAddress.map { $0 - regions[rank] } ?? 0, count: gradients.count, .sum)
        update()
        try handshake()  // every segment is reduced and updated
        return sums
    }

    /// The floats at `buffer`'s place (a buffer inside this rank's region) in `peer`'s region,
    /// which every rank maps: memory all the ranks can share.
    public func counterpart(of buffer: UnsafeMutableBufferPointer<Float>, in peer: Int) -> UnsafeMutableBufferPointer<Float> {
        precondition(contains(buffer) && (0..<worldSize).contains(peer), "a counterpart of a buffer outside this rank's region")
        let offset = buffer.baseAddress.map { $0 - regions[rank] } ?? 0
        return UnsafeMutableBufferPointer(start: regions[peer] + offset, count: buffer.count)
    }

    /// Reduces this rank's segment of the `count` floats at `offset` of every region into its
    /// own region.
    private func reduceOwnSegment(at offset: Int, count: Int, _ op: ReduceOp) {
        let own = segment(rank, of: count)
        guard !own.isEmpty else { return }
        let target = regions[rank] + offset + own.lowerBound
        for peer in 0..<worldSize where peer != rank {
            RingAllReduce.combine(target, UnsafeRawPointer(regions[peer] + offset + own.lowerBound), count: own.count,
                                  op == .max ? .max : .sum)
        }
        if op == .mean {
            let scale = 1 / Float(worldSize)
            for i in 0..<own.count { target[i] *= scale }
        }
    }

    /// Copies every other rank's reduced segment of the floats at `offset` into `target`.
    private func gatherSegments(at offset: Int, count: Int, into target: UnsafeMutablePointer<Float>) {
        for peer in 0..<worldSize where peer != rank {
            let part = segment(peer, of: count)
            (target + part.lowerBound).update(from: regions[peer] + offset + part.lowerBound, count: part.count)
        }
    }

    private func segment(_ index: Int, of count: Int) -> Range<Int> {
        RingAllReduce.segment(index, of: count, ranks: worldSize)
    }

    // MARK: Handshakes

    /// Publishes this rank's next handshake and waits until every peer has published it too.
    private func handshake() throws(CollectiveError) {
        passed &+= 1
        forge_store_u32(counters[rank], passed)
        if forge_load_u32(sleepers[rank]) != 0 { _ = forge_futex_wake(counters[rank]) }
        for peer in 0..<worldSize where peer != rank { try wait(for: peer) }
    }

    /// Whether `peer` has published handshake `passed` (counters wrap; a peer is never more
    /// than a few handshakes ahead).
    private func reached(_ peer: Int) -> Bool {
        Int32(bitPattern: forge_load_u32(counters[peer]) &- passed) >= 0
    }

    /// How long a waiting rank yields before it sleeps. Longer than the rings' wait: a handshake
    /// waits for the slowest rank's whole share of a training step, which on a shared VM often
    /// runs a few hundred microseconds late, and waking from a futex costs ~80 µs there. Yielding
    /// still hands the core to any other runnable thread (oversubscribed ranks).
    static let yieldNanoseconds: UInt64 = 1_000_000

    /// Spins, then yields, then sleeps on the peer's counter, as the shared-memory transport's
    /// rings do; checks that the peer process lives, and gives up after the timeout.
    private func wait(for peer: Int) throws(CollectiveError) {
        for _ in 0..<1024 {
            if reached(peer) { return }
            forge_cpu_relax()
        }
        let start = DispatchTime.now().uptimeNanoseconds
        while DispatchTime.now().uptimeNanoseconds - start < SharedReductionArena.yieldNanoseconds {
            if reached(peer) { return }
            sched_yield()
        }
        let limit = UInt64(timeoutMilliseconds) * 1_000_000
        var slice: Int64 = 200
        while true {
            _ = forge_increment_u32(sleepers[peer])
            let seen = forge_load_u32(counters[peer])
            if Int32(bitPattern: seen &- passed) >= 0 {
                _ = forge_decrement_u32(sleepers[peer])
                return
            }
            _ = forge_futex_wait(counters[peer], seen, slice)
            _ = forge_decrement_u32(sleepers[peer])
            if reached(peer) { return }
            if DispatchTime.now().uptimeNanoseconds - start >= limit {
                throw .timedOut(peer: peer, milliseconds: timeoutMilliseconds)
            }
            if slice >= 10_000, kill(pids[peer], 0) != 0, errno == ESRCH {
                throw .peerLost(peer: peer, reason: "rank \(peer) (pid \(pids[peer])) has exited")
            }
            slice = min(slice * 2, 20_000)
        }
    }
}
