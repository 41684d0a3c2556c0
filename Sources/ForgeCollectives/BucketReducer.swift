// All-reduces of gradient buckets, in the order they are submitted (which every rank must
// share). Threaded, they run on a thread of their own, so a trainer can hand over buckets as
// the backward pass finishes them and keep computing: the reduction of the last layers
// overlaps the backward pass of the first ones. That pays when the reduction has a core (or a
// device) to itself; when every core already computes, the extra thread only takes turns with
// the compute threads, and inline reduction on the caller's thread is faster (measured in
// docs/collectives.md).
import Foundation

/// Runs a group's all-reduces in submission order, on a worker thread or inline.
///
/// Concurrency: `@unchecked Sendable`; `submit` and `wait` are called from the one thread that
/// owns the rank, and everything they share with the worker thread is guarded by `condition`.
/// While buckets are outstanding the group belongs to the worker thread: the owner must not use
/// it until `wait` returns. A submitted buffer must stay valid and untouched until then.
public final class BucketReducer: @unchecked Sendable {
    public let group: ProcessGroup
    /// Whether all-reduces run on the worker thread (else inline, in `submit`).
    public let threaded: Bool
    private let condition = NSCondition()
    private var queue: [(buffer: UnsafeMutableBufferPointer<Float>, op: ReduceOp)] = []
    private var submitted = 0
    private var completed = 0
    private var failure: CollectiveError?
    private var stopping = false
    private var finished = false
    /// Between `computeBegan` and `computeEnded`: the owner is still computing.
    private var computing = false
    private var started = 0
    private var startedWhileComputing = 0

    /// With `threaded`, starts the worker thread; it runs `prepare` first (e.g. to set the float
    /// environment the rank's compute threads use).
    public init(group: ProcessGroup, threaded: Bool, prepare: @escaping @Sendable () -> Void = {}) {
        self.group = group
        self.threaded = threaded
        guard threaded else {
            finished = true
            return
        }
        let thread = Thread { [self] in
            prepare()
            work()
        }
        thread.name = "forge-allreduce"
        thread.start()
    }

    /// Queues an all-reduce of `buffer` (inline: runs it now, unless an earlier one failed).
    public func submit(_ buffer: UnsafeMutableBufferPointer<Float>, op: ReduceOp = .sum) {
        guard threaded else {
            guard failure == nil else { return }
            started += 1
            if computing { startedWhileComputing += 1 }
            do {
                try group.allReduce(buffer, op: op)
            } catch {
                failure = error
            }
            return
        }
        condition.lock()
        queue.append((buffer, op))
        submitted += 1
        condition.signal()
        condition.unlock()
    }

    /// The owner starts computing what later buckets will hold (a backward pass): all-reduces
    /// that start from now until `computeEnded` overlap it.
    public func computeBegan() {
        condition.lock()
        computing = true
        condition.unlock()
    }

    /// The owner has finished computing (see `computeBegan`).
    public func computeEnded() {
        condition.lock()
        computing = false
        condition.unlock()
    }

    /// All-reduces started so far, and how many of them started while the owner was still
    /// computing (between `computeBegan` and `computeEnded`): the overlap actually achieved.
    public var overlap: (started: Int, whileComputing: Int) {
        condition.lock()
        defer { condition.unlock() }
        return (started, startedWhileComputing)
    }

    /// Waits for every submitted all-reduce; throws the first failure (after which the group
    /// is broken and later calls fail at once).
    public func wait() throws(CollectiveError) {
        guard threaded else {
            if let failure { throw failure }
            return
        }
        condition.lock()
        defer { condition.unlock() }
        while completed < submitted && failure == nil { condition.wait() }
        if let failure { throw failure }
    }

    /// Stops the worker once the queue is empty and waits for it to exit.
    public func stop() {
        condition.lock()
        stopping = true
        condition.broadcast()
        while !finished { condition.wait() }
        condition.unlock()
    }

    private func work() {
        condition.lock()
        while true {
            while queue.isEmpty && !stopping { condition.wait() }
            if queue.isEmpty { break }
            let (buffer, op) = queue.removeFirst()
            let skip = failure != nil
            if !skip {
                started += 1
                if computing { startedWhileComputing += 1 }
            }
            condition.unlock()
            var error: CollectiveError?
            if !skip {
                do {
                    try group.allReduce(buffer, op: op)
                } catch let thrown {
                    error = thrown
                }
            }
            condition.lock()
            if let error, failure == nil { failure = error }
            completed += 1
            condition.broadcast()
        }
        finished = true
        condition.broadcast()
        condition.unlock()
    }
}
