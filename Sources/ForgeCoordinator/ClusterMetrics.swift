// The coordinator's Prometheus metrics (swift-prometheus): what its loop counts as it goes
// (control messages, heartbeats, training steps and their rate, all-reduce payload bytes, rank
// exits), and what a scrape reads from the store (jobs by status, the queue, nodes by status).
import Foundation
import Prometheus

/// The metrics of one coordinator, served at `/metrics`.
///
/// Concurrency: Sendable; the registry and its metrics are thread-safe, and the per-job step
/// bookkeeping is only touched by the coordinator's loop thread through `observe`, guarded by
/// a lock all the same.
public final class ClusterMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    private let controlMessages: Counter
    private let heartbeats: Counter
    private let rankExits: Counter
    private let failedRankExits: Counter
    private let progress = NSLockedSteps()

    public init() {
        controlMessages = registry.makeCounter(descriptor: ClusterMetrics.metric("forge_control_messages_total", "Control messages received from workers"))
        heartbeats = registry.makeCounter(descriptor: ClusterMetrics.metric("forge_heartbeats_total", "Worker heartbeats received"))
        rankExits = registry.makeCounter(descriptor: ClusterMetrics.metric("forge_rank_exits_total", "Rank processes that ended"), labels: [("result", "succeeded")])
        failedRankExits = registry.makeCounter(descriptor: ClusterMetrics.metric("forge_rank_exits_total", "Rank processes that ended"), labels: [("result", "failed")])
    }

    func received(heartbeat: Bool) {
        controlMessages.increment()
        if heartbeat { heartbeats.increment() }
    }

    func rankExited(succeeded: Bool) {
        (succeeded ? rankExits : failedRankExits).increment()
    }

    /// Reads rank 0's lines of a job running on `worldSize` ranks: the parameter count
    /// (`training N parameters on …`) and each metric line's `step=`, which advance
    /// `forge_training_steps_total`, `forge_training_step_rate` and, with more than one rank,
    /// `forge_allreduce_bytes_total` (the float32 gradient payload all-reduced per step).
    func observe(job: String, rank: Int, worldSize: Int, lines: [String], at time: Date) {
        guard rank == 0 else { return }
        for line in lines {
            if let parameters = ClusterMetrics.number(after: "training ", before: " parameters", in: line) {
                progress.update(job) { $0.parameters = parameters }
            }
            guard line.hasPrefix("epoch="), let step = ClusterMetrics.number(after: " step=", before: " ", in: line) else { continue }
            var advanced = 0, rate: Double?, parameters = 0
            progress.update(job) { state in
                if let last = state.step, let at = state.time, step > last, time > at {
                    advanced = step - last
                    rate = Double(advanced) / time.timeIntervalSince(at)
                } else if state.step == nil {
                    advanced = step
                }
                state.step = step
                state.time = time
                parameters = state.parameters
            }
            let labels = [("job", job)]
            if advanced > 0 {
                registry.makeCounter(descriptor: ClusterMetrics.metric("forge_training_steps_total", "Optimizer steps taken by running jobs"), labels: labels).increment(by: Double(advanced))
                if worldSize > 1, parameters > 0 {
                    registry.makeCounter(descriptor: ClusterMetrics.metric("forge_allreduce_bytes_total", "Gradient bytes all-reduced (payload per step × steps)"), labels: labels)
                        .increment(by: Double(advanced) * Double(parameters) * 4)
                }
            }
            if let rate {
                registry.makeGauge(descriptor: ClusterMetrics.metric("forge_training_step_rate", "Steps per second between a job's last two metric lines"), labels: labels).set(rate)
            }
        }
    }

    /// Forgets a job that ended (its series stay as they are until the next start).
    func ended(job: String) {
        progress.update(job) { $0 = NSLockedSteps.State() }
    }

    /// Sets the gauges a scrape reads from the store, then writes every metric in Prometheus's
    /// text format.
    public func scrape(store: JobStore) -> [UInt8] {
        if let jobs = try? store.jobs() {
            for status in TrainingJobStatus.allCases {
                registry.makeGauge(descriptor: ClusterMetrics.metric("forge_jobs", "Training jobs by status"), labels: [("status", status.rawValue)])
                    .set(Double(jobs.filter { $0.state.status == status }.count))
            }
            let waiting = jobs.filter { $0.state.status == .inProgress && [.starting, .pending, .restarting].contains($0.state.secondaryStatus) }
            registry.makeGauge(descriptor: ClusterMetrics.metric("forge_queue_length", "Jobs waiting for workers")).set(Double(waiting.count))
        }
        if let nodes = try? store.nodes() {
            for status in ["Running", "Failure"] {
                registry.makeGauge(descriptor: ClusterMetrics.metric("forge_nodes", "Workers by health"), labels: [("status", status)])
                    .set(Double(nodes.filter { $0.status == status }.count))
            }
            registry.makeGauge(descriptor: ClusterMetrics.metric("forge_nodes_busy", "Workers running a rank")).set(Double(nodes.filter { $0.status == "Running" && $0.assignment != nil }.count))
        }
        return registry.emitToBuffer()
    }

    /// A metric's descriptor: its whole name and its help text.
    static func metric(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }

    /// The integer between `prefix` and `suffix` in `line`, if there is one.
    static func number(after prefix: String, before suffix: String, in line: String) -> Int? {
        guard let start = line.range(of: prefix) else { return nil }
        let rest = line[start.upperBound...]
        let digits = rest.prefix { $0.isNumber }
        guard !digits.isEmpty, rest.dropFirst(digits.count).hasPrefix(suffix) || (suffix == " " && digits.count == rest.count) else { return nil }
        return Int(digits)
    }
}

/// Per-job step bookkeeping behind a lock.
///
/// Concurrency: Sendable; every access holds `lock`.
final class NSLockedSteps: @unchecked Sendable {
    struct State {
        var step: Int?
        var time: Date?
        var parameters = 0
    }

    private let lock = NSLock()
    private var states: [String: State] = [:]

    func update(_ job: String, _ body: (inout State) -> Void) {
        lock.lock()
        defer { lock.unlock() }
        var state = states[job] ?? State()
        body(&state)
        states[job] = state
    }
}
