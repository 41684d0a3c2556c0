// How a training run reports what happens, without printing anything itself: the command
// line turns these calls into a progress bar, metric lines and log lines.

/// One reported metric.
public struct MetricValue: Sendable, Equatable {
    public var name: String
    public var value: Double

    public init(_ name: String, _ value: Double) {
        self.name = name
        self.value = value
    }
}

/// The metrics at the end of one epoch.
public struct EpochReport: Sendable, Equatable {
    /// 1-based epoch number.
    public var epoch: Int
    /// Optimizer steps taken so far.
    public var step: Int
    public var metrics: [MetricValue]

    /// The stable metric line, e.g. `epoch=3 step=420 train:loss=0.123400 validation:accuracy=0.971200`.
    public var line: String {
        MetricLine.format(epoch: epoch, step: step, metrics: metrics)
    }
}

/// What a run is about to do.
public struct RunSummary: Sendable, Equatable {
    public var trainRecords: Int
    public var validationRecords: Int
    public var features: Int
    public var classes: Int
    /// The whole model's parameters (whatever piece of it this rank holds).
    public var parameterCount: Int
    public var stepsPerEpoch: Int
    public var epochs: Int
    /// Optimizer steps the run takes in all (`max_steps` may end it within an epoch).
    public var totalSteps: Int
    /// A language model's context: its records are windows of that many bytes plus one.
    public var contextLength: Int?
    /// How the model is split across ranks ("2 pipeline stages × 2 tensor-parallel parts × 1
    /// replica"); nil when every rank holds all of it.
    public var layout: String?
}

/// Receives a run's events. Every method has an empty default.
public protocol TrainingObserver: AnyObject {
    func trainingStarted(_ summary: RunSummary)
    func resumed(fromStep step: Int, epoch: Int, path: String)
    func epochStarted(epoch: Int, batches: Int)
    func stepCompleted(epoch: Int, batch: Int, batches: Int, step: Int, loss: Double)
    func epochCompleted(_ report: EpochReport)
    func checkpointSaved(path: String, step: Int)
    func stoppedEarly(epoch: Int, bestEpoch: Int)
}

extension TrainingObserver {
    public func trainingStarted(_ summary: RunSummary) {}
    public func resumed(fromStep step: Int, epoch: Int, path: String) {}
    public func epochStarted(epoch: Int, batches: Int) {}
    public func stepCompleted(epoch: Int, batch: Int, batches: Int, step: Int, loss: Double) {}
    public func epochCompleted(_ report: EpochReport) {}
    public func checkpointSaved(path: String, step: Int) {}
    public func stoppedEarly(epoch: Int, bestEpoch: Int) {}
}

/// An observer that ignores everything.
public final class SilentObserver: TrainingObserver {
    public init() {}
}
