// Ranks as threads: each gets its own ProcessGroup over one in-process hub (or over real
// shared-memory mailboxes, as co-located rank processes do), the way the multi-process tests
// give each rank process a group over ZeroMQ.
import ForgeCollectives
import Foundation

/// Runs `body` on `worldSize` threads, rank r with a group over an in-process hub (collectives
/// cut into chunks of `chunkElements`); returns the results in rank order, or throws the first
/// rank's error. With `sharedMemory` the ranks talk through /dev/shm mailboxes, every peer
/// attached, so groups can also make shared regions (`ProcessGroup.sharedBuffer`).
func onRankThreads<T>(_ worldSize: Int, timeoutMilliseconds: Int = 30_000, chunkElements: Int = 1 << 16, sharedMemory: Bool = false,
                      _ body: @escaping @Sendable (ProcessGroup) throws -> T) throws -> [T] {
    let transports: [any CollectiveTransport]
    if sharedMemory {
        let mailboxes = try (0..<worldSize).map {
            try SharedMemoryTransport(rank: $0, worldSize: worldSize, capacity: 1 << 20, timeoutMilliseconds: timeoutMilliseconds)
        }
        for mailbox in mailboxes {
            for peer in 0..<worldSize where peer != mailbox.rank { try mailbox.attach(peer: peer, mailbox: mailboxes[peer].mailbox) }
        }
        for mailbox in mailboxes { mailbox.unlinkMailbox() }
        transports = mailboxes
    } else {
        let hub = InProcessHub(worldSize: worldSize, timeoutMilliseconds: timeoutMilliseconds)
        transports = (0..<worldSize).map { hub.transport(rank: $0) }
    }
    let slots = RankSlots<T>(count: worldSize)
    let done = DispatchGroup()
    for rank in 0..<worldSize {
        done.enter()
        let transport = RankHandoff(value: transports[rank])
        Thread {
            defer { done.leave() }
            slots.set(rank, Result { try body(ProcessGroup(transport: transport.value, chunkElements: chunkElements)) })
        }.start()
    }
    done.wait()
    return try slots.values().map { try $0.get() }
}

/// Hands a value to a rank thread.
///
/// Concurrency: `@unchecked Sendable`; each value is handed to exactly one thread.
private struct RankHandoff<T>: @unchecked Sendable {
    let value: T
}

/// Per-rank outcomes written from the rank threads.
///
/// Concurrency: `@unchecked Sendable`; `lock` guards `slots`.
private final class RankSlots<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var slots: [Result<T, any Error>?]
    init(count: Int) { slots = Array(repeating: nil, count: count) }
    func set(_ index: Int, _ value: Result<T, any Error>) {
        lock.lock()
        slots[index] = value
        lock.unlock()
    }
    func values() -> [Result<T, any Error>] {
        lock.lock()
        defer { lock.unlock() }
        return slots.compactMap { $0 }
    }
}
