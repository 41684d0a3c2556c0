// Pinning rank processes to CPUs (forge launch --cpu-bind cores): with as many busy ranks as
// cores, the scheduler otherwise sometimes stacks two on one core for a while, and collective
// timings turn bimodal. mpirun binds ranks to cores by default for the same reason.
import ArgumentParser
import CForgeSystem

enum CPUBinding: String, ExpressibleByArgument, CaseIterable {
    case none, cores

    /// The CPUs this thread may run on, in order.
    static func allowedCPUs() -> [Int] {
        var cpus = [Int32](repeating: 0, count: 1024)
        let count = forge_allowed_cpus(&cpus, Int32(cpus.count))
        return count > 0 ? cpus[0..<Int(count)].map(Int.init) : []
    }

    /// Rank `index`'s contiguous share of `cpus` among `count` ranks (shares differ by at most
    /// one CPU; with more ranks than CPUs, ranks share them round robin).
    static func share(_ index: Int, of count: Int, cpus: [Int]) -> [Int] {
        guard count > cpus.count else {
            let base = cpus.count / count, extra = cpus.count % count
            let start = index * base + min(index, extra)
            return Array(cpus[start..<(start + base + (index < extra ? 1 : 0))])
        }
        return [cpus[index % cpus.count]]
    }

    /// Restricts the calling thread (and what it spawns from now on) to `cpus`.
    static func pinCallingThread(to cpus: [Int]) {
        let list = cpus.map(Int32.init)
        _ = forge_pin_thread(list, Int32(list.count))
    }
}
