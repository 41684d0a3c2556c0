// A fixed set of compute threads, each with flush-to-zero set, that split one loop between them.
import CFloatEnv
import Foundation

/// Runs a loop body over disjoint ranges on `threadCount` threads (the caller is one of them).
///
/// Concurrency: Sendable; its state is guarded by `shared.condition`. `run` calls are serialised
/// by `callerLock`, so the pool serves one loop at a time; a call made while it is busy (such
/// as a kernel called from inside a job) runs all its parts on the calling thread instead.
/// Every pool thread enables FTZ/DAZ when it starts, because MXCSR is per thread and denormals
/// slow Adam several-fold.
public final class ComputePool: @unchecked Sendable {
    public let threadCount: Int
    private let shared = Shared()
    private let callerLock = NSLock()

    /// What the helper threads see. They hold this, never the pool itself, so releasing the pool
    /// runs `deinit`, which stops them (a thread that referred to the pool would either keep it
    /// alive forever or, starting after it was freed, crash on a dangling reference).
    private final class Shared: @unchecked Sendable {
        let condition = NSCondition()
        var generation = 0
        var pending = 0
        var job: (@Sendable (Int) -> Void)?
        var stopping = false
    }

    /// Starts `threadCount - 1` helper threads.
    public init(threadCount: Int) {
        self.threadCount = max(1, threadCount)
        let shared = self.shared
        for worker in 1..<self.threadCount {
            let thread = Thread { ComputePool.workerLoop(shared, index: worker) }
            thread.name = "forge-compute-\(worker)"
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    deinit {
        shared.condition.lock()
        shared.stopping = true
        shared.condition.broadcast()
        shared.condition.unlock()
    }

    /// Calls `body(part)` for part in 0..<threadCount, one part per thread, and returns when all ran.
    public func run(_ body: @escaping @Sendable (Int) -> Void) {
        // One thread, or a call from inside a running job (a kernel called by a job's body, or
        // another thread while the pool is busy): run every part here, in order.
        guard threadCount > 1, callerLock.try() else {
            for part in 0..<threadCount { body(part) }
            return
        }
        defer { callerLock.unlock() }
        let condition = shared.condition
        condition.lock()
        shared.job = body
        shared.pending = threadCount - 1
        shared.generation += 1
        condition.broadcast()
        condition.unlock()
        body(0)
        condition.lock()
        while shared.pending > 0 { condition.wait() }
        shared.job = nil
        condition.unlock()
    }

    /// Splits 0..<count into at most `threadCount` ranges of at least `minimumChunk` elements
    /// (rounded to multiples of 16 so vector loops stay aligned) and runs them in parallel.
    public func parallelFor(count: Int, minimumChunk: Int = 1 << 15, _ body: @escaping @Sendable (Range<Int>) -> Void) {
        let parts = min(threadCount, max(1, count / max(minimumChunk, 1)))
        if parts <= 1 { body(0..<count); return }
        let chunk = ((count + parts - 1) / parts + 15) & ~15
        run { part in
            let start = min(part * chunk, count)
            let end = min(start + chunk, count)
            if start < end { body(start..<end) }
        }
    }

    private static func workerLoop(_ shared: Shared, index: Int) {
        _ = forge_enable_ftz_daz()
        let condition = shared.condition
        var seen = 0
        while true {
            condition.lock()
            while shared.generation == seen && !shared.stopping { condition.wait() }
            if shared.stopping { condition.unlock(); return }
            seen = shared.generation
            let body = shared.job
            condition.unlock()
            body?(index)
            condition.lock()
            shared.pending -= 1
            if shared.pending == 0 { condition.broadcast() }
            condition.unlock()
        }
    }
}

/// Carries a raw pointer into a pool job. The job's caller guarantees that parts touch
/// disjoint elements and that the memory outlives the `run` call.
public struct SendablePointer<Pointee>: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<Pointee>
    public init(_ pointer: UnsafeMutablePointer<Pointee>) { self.pointer = pointer }
}
