// Tests of ComputePool's lifetime: a pool released before (or right after) its helper threads
// start must neither crash nor leave them behind, and a released pool's threads stop.
import ForgeTensor
import Foundation
import Testing

@Suite struct ComputePoolTests {
    /// Regression: helper threads held the pool through an `unowned` reference, so a pool freed
    /// before a helper started crashed the process ("Attempted to read an unowned reference but
    /// object was already destroyed"), as `forge train` did on every early error.
    @Test func poolsReleasedAtOnceDoNotCrash() {
        for _ in 0..<200 {
            _ = ComputePool(threadCount: 3)
        }
        for _ in 0..<50 {
            _ = CPUDevice(threadCount: 2)
        }
    }

    @Test func aPoolSplitsWorkAndCanBeReleasedAfterUse() {
        let counts = Counts(parts: 4)
        do {
            let pool = ComputePool(threadCount: 4)
            for _ in 0..<100 {
                pool.run { part in counts.add(part) }
            }
        }
        #expect(counts.values == [100, 100, 100, 100])
    }
}

/// Per-part counters that pool threads bump under a lock.
private final class Counts: @unchecked Sendable {
    private let lock = NSLock()
    private var storage: [Int]

    init(parts: Int) {
        storage = [Int](repeating: 0, count: parts)
    }

    func add(_ part: Int) {
        lock.withLock { storage[part] += 1 }
    }

    var values: [Int] {
        lock.withLock { storage }
    }
}
