// The life of a training job, as a pure function of (state, event): SageMaker's statuses and
// secondary statuses, each change recorded as a transition with its time and message. No I/O
// here; the store applies the result in one transaction.
import Foundation

/// SageMaker's `TrainingJobStatus` (the subset a job can be in; `Deleting` is never used).
public enum TrainingJobStatus: String, Codable, Sendable, CaseIterable {
    case inProgress = "InProgress"
    case completed = "Completed"
    case failed = "Failed"
    case stopping = "Stopping"
    case stopped = "Stopped"

    /// Whether the job can change no more.
    public var isTerminal: Bool { self == .completed || self == .failed || self == .stopped }
}

/// SageMaker's `SecondaryStatus`: what an in-progress job is doing, or how it ended.
public enum SecondaryStatus: String, Codable, Sendable, CaseIterable {
    case starting = "Starting"
    case pending = "Pending"
    case downloading = "Downloading"
    case training = "Training"
    case uploading = "Uploading"
    case restarting = "Restarting"
    case stopping = "Stopping"
    case stopped = "Stopped"
    case maxRuntimeExceeded = "MaxRuntimeExceeded"
    case completed = "Completed"
    case failed = "Failed"
}

/// One entry of a job's `SecondaryStatusTransitions`.
public struct StatusTransition: Codable, Sendable, Equatable {
    public var status: SecondaryStatus
    public var startTime: Date
    public var endTime: Date?
    public var message: String

    public init(status: SecondaryStatus, startTime: Date, endTime: Date? = nil, message: String) {
        self.status = status
        self.startTime = startTime
        self.endTime = endTime
        self.message = message
    }
}

/// What happens to a job.
public enum JobEvent: Sendable, Equatable {
    /// Waiting for workers (the gang is not free yet).
    case queued(reason: String)
    /// Workers were assigned: ranks start and fetch their data.
    case assigned(workers: Int)
    /// Every rank has its data and trains.
    case trainingStarted
    /// Training ended well; rank 0 uploads the model.
    case uploadStarted
    /// The model is in place.
    case succeeded
    /// An attempt failed (`reason` names the rank, host and cause). With retries left the job
    /// restarts from its latest checkpoint; otherwise it fails.
    case attemptFailed(reason: String)
    /// The attempt was cut short by Forge itself (the coordinator restarted under it): it
    /// restarts from the latest checkpoint without using up one of the job's retries.
    case attemptInterrupted(reason: String)
    /// A user asked to stop it.
    case stopRequested
    /// Every rank has exited after a stop (or the runtime limit).
    case ranksStopped
    /// `MaxRuntimeInSeconds` passed.
    case maxRuntimeExceeded
}

/// A job's state: its statuses, its transitions, its attempts.
public struct JobState: Codable, Sendable, Equatable {
    public var status: TrainingJobStatus
    public var secondaryStatus: SecondaryStatus
    public var transitions: [StatusTransition]
    public var failureReason: String?
    /// Attempts started so far (the first is 1); retries are attempts beyond the first.
    public var attempt: Int
    public var maxRetries: Int
    public var trainingStartTime: Date?
    public var trainingEndTime: Date?
    /// Set when a stop was the runtime limit's doing rather than a user's.
    public var stoppedByRuntimeLimit: Bool

    /// A job just created: `InProgress`, `Starting`.
    public init(createdAt time: Date, maxRetries: Int) {
        status = .inProgress
        secondaryStatus = .starting
        transitions = [StatusTransition(status: .starting, startTime: time, message: "Preparing the instances for training")]
        failureReason = nil
        attempt = 1
        self.maxRetries = maxRetries
        trainingStartTime = nil
        trainingEndTime = nil
        stoppedByRuntimeLimit = false
    }
}

/// Why an event cannot apply.
public struct JobTransitionError: Error, Equatable, CustomStringConvertible {
    public let status: TrainingJobStatus
    public let secondaryStatus: SecondaryStatus
    public let event: String

    public var description: String {
        "a job that is \(status.rawValue) (\(secondaryStatus.rawValue)) cannot take the event \(event)"
    }
}

public enum JobStateMachine {
    /// The state after `event` at `time`, or why it cannot happen. Pure: the same input gives
    /// the same output.
    public static func apply(_ event: JobEvent, to state: JobState, at time: Date) -> Result<JobState, JobTransitionError> {
        var next = state
        func refuse() -> Result<JobState, JobTransitionError> {
            .failure(JobTransitionError(status: state.status, secondaryStatus: state.secondaryStatus, event: "\(event)"))
        }
        func move(_ secondary: SecondaryStatus, _ message: String, status: TrainingJobStatus? = nil) {
            if let last = next.transitions.indices.last, next.transitions[last].endTime == nil {
                next.transitions[last].endTime = time
            }
            next.transitions.append(StatusTransition(status: secondary, startTime: time, message: message))
            next.secondaryStatus = secondary
            if let status { next.status = status }
            if status?.isTerminal == true, let last = next.transitions.indices.last { next.transitions[last].endTime = time }
        }
        switch (state.status, event) {
        case (.inProgress, .queued(let reason)):
            guard [.starting, .restarting, .pending].contains(state.secondaryStatus) else { return refuse() }
            guard state.secondaryStatus != .pending else { return .success(state) }
            move(.pending, reason)
        case (.inProgress, .assigned(let workers)):
            guard [.starting, .restarting, .pending].contains(state.secondaryStatus) else { return refuse() }
            move(.downloading, "Downloading input data to \(workers) instance\(workers == 1 ? "" : "s")")
        case (.inProgress, .trainingStarted):
            guard state.secondaryStatus == .downloading else { return refuse() }
            move(.training, "Training image download completed. Training in progress.")
            if next.trainingStartTime == nil { next.trainingStartTime = time }
        case (.inProgress, .uploadStarted):
            guard state.secondaryStatus == .training else { return refuse() }
            move(.uploading, "Uploading generated training model")
        case (.inProgress, .succeeded):
            guard state.secondaryStatus == .uploading || state.secondaryStatus == .training else { return refuse() }
            next.trainingEndTime = time
            move(.completed, "Training job completed", status: .completed)
        case (.inProgress, .attemptFailed(let reason)):
            if state.attempt <= state.maxRetries {
                next.attempt += 1
                move(.restarting, "Attempt \(state.attempt) failed: \(reason). Restarting from the latest checkpoint (attempt \(next.attempt) of \(state.maxRetries + 1))")
            } else {
                next.failureReason = String(reason.prefix(1024))
                next.trainingEndTime = time
                move(.failed, "Training job failed", status: .failed)
            }
        case (.inProgress, .attemptInterrupted(let reason)):
            guard [.downloading, .training, .uploading].contains(state.secondaryStatus) else { return refuse() }
            next.attempt += 1
            next.maxRetries += 1
            move(.restarting, "Attempt \(state.attempt) was interrupted: \(reason). Restarting from the latest checkpoint")
        case (.inProgress, .stopRequested):
            move(.stopping, "Stopping the training job", status: .stopping)
        case (.inProgress, .maxRuntimeExceeded):
            next.stoppedByRuntimeLimit = true
            move(.stopping, "Stopping the training job: MaxRuntimeInSeconds exceeded", status: .stopping)
        case (.stopping, .stopRequested), (.stopping, .maxRuntimeExceeded):
            return .success(state)
        case (.stopping, .ranksStopped), (.stopping, .attemptFailed), (.stopping, .succeeded), (.stopping, .attemptInterrupted):
            // Whatever the ranks did while stopping, the job ends as stopped.
            next.trainingEndTime = time
            if state.stoppedByRuntimeLimit {
                move(.maxRuntimeExceeded, "Training job stopped: MaxRuntimeInSeconds exceeded", status: .stopped)
            } else {
                move(.stopped, "Training job stopped", status: .stopped)
            }
        default:
            return refuse()
        }
        return .success(next)
    }
}
