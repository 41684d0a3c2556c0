// A fixed set of compute threads, each with flush-to-zero set, that split one loop between them.
import CFloatEnv
import Foundation

/// Runs a loop body over disjoint ranges on `threadCount` threads (the caller is one of them).
///
/// Concurrency: Sendable; its state is guarded by `condition`. `run` calls are serialised by
/// `callerLock`, so the pool serves one loop at a time. Every pool thread enables FTZ/DAZ when
/// it starts, because MXCSR is per thread and denormals slow Adam several-fold.
public final class ComputePool: @unchecked Sendable {
    public let threadCount: Int
    private let condition = NSCondition()
    private let callerLock = NSLock()
    private var generation = 0
    private var pending = 0
    private var job: (@Sendable (Int) -> Void)?
    private var stopping = false

    /// Starts `threadCount - 1` helper threads.
    public init(threadCount: Int) {
        self.threadCount = max(1, threadCount)
        for worker in 1..<self.threadCount {
            let thread = Thread { [unowned self] in self.workerLoop(index: worker) }
            thread.name = "forge-compute-\(worker)"
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    deinit {
        condition.lock()
        stopping = true
        condition.broadcast()
        condition.unlock()
    }

    /// Calls `body(part)` for part in 0..<threadCount, one part per thread, and returns when all ran.
    public func run(_ body: @escaping @Sendable (Int) -> Void) {
        if threadCount == 1 { body(0); return }
        callerLock.lock()
        defer { callerLock.unlock() }
        condition.lock()
        job = body
        pending = threadCount - 1
        generation += 1
        condition.broadcast()
        condition.unlock()
        body(0)
        condition.lock()
        while pending > 0 { condition.wait() }
        job = nil
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

    private func workerLoop(index: Int) {
        _ = forge_enable_ftz_daz()
        var seen = 0
        while true {
            condition.lock()
            while generation == seen && !stopping { condition.wait() }
            if stopping { condition.unlock(); return }
            seen = generation
            let body = job
            condition.unlock()
            body?(index)
            condition.lock()
            pending -= 1
            if pending == 0 { condition.broadcast() }
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
