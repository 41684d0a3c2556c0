// The job state machine, without sockets or storage: SageMaker's typical run, retries, stops,
// the runtime limit, and the events a job in each state must refuse.
import ForgeCoordinator
import Foundation
import Testing

@Suite struct JobStateMachineTests {
    private let start = Date(timeIntervalSince1970: 1_800_000_000)

    /// Applies `events` one second apart; fails the test on a refusal.
    private func run(_ events: [JobEvent], retries: Int = 0) throws -> JobState {
        var state = JobState(createdAt: start, maxRetries: retries)
        for (index, event) in events.enumerated() {
            state = try JobStateMachine.apply(event, to: state, at: start.addingTimeInterval(Double(index + 1))).get()
        }
        return state
    }

    @Test func aTypicalRunWalksSageMakersSecondaryStatuses() throws {
        let state = try run([.queued(reason: "Waiting for 2 free workers"), .assigned(workers: 2), .trainingStarted, .uploadStarted, .succeeded])
        #expect(state.status == .completed)
        #expect(state.transitions.map(\.status) == [.starting, .pending, .downloading, .training, .uploading, .completed])
        // Each transition ends when the next starts; the terminal one ends when it starts.
        for (a, b) in zip(state.transitions, state.transitions.dropFirst()) { #expect(a.endTime == b.startTime) }
        #expect(state.transitions.last?.endTime == state.transitions.last?.startTime)
        #expect(state.trainingStartTime == start.addingTimeInterval(3))
        #expect(state.trainingEndTime == start.addingTimeInterval(5))
        #expect(state.failureReason == nil)
    }

    @Test func aFailedAttemptRestartsWhileRetriesLastThenFailsWithItsReason() throws {
        let reason = "rank 1 on node-b was killed by signal 9"
        let retried = try run([.assigned(workers: 2), .trainingStarted, .attemptFailed(reason: reason), .assigned(workers: 2), .trainingStarted],
                              retries: 1)
        #expect(retried.status == .inProgress && retried.secondaryStatus == .training)
        #expect(retried.attempt == 2)
        let restart = try #require(retried.transitions.first { $0.status == .restarting })
        #expect(restart.message.contains(reason) && restart.message.contains("attempt 2 of 2"))
        let failed = try JobStateMachine.apply(.attemptFailed(reason: "rank 0 timed out"), to: retried, at: start.addingTimeInterval(9)).get()
        #expect(failed.status == .failed && failed.secondaryStatus == .failed)
        #expect(failed.failureReason == "rank 0 timed out")
        // Without retries the first failure is final.
        let once = try run([.assigned(workers: 1), .attemptFailed(reason: "exit status 1")])
        #expect(once.status == .failed && once.failureReason == "exit status 1")
    }

    @Test func anInterruptionRestartsWithoutUsingARetry() throws {
        // No retries allowed, yet a coordinator restart under the job restarts it; a real
        // failure after that is still final.
        let interrupted = try run([.assigned(workers: 1), .trainingStarted, .attemptInterrupted(reason: "the coordinator restarted while it ran"),
                                   .assigned(workers: 1), .trainingStarted])
        #expect(interrupted.status == .inProgress && interrupted.attempt == 2)
        #expect(interrupted.transitions.contains { $0.status == .restarting && $0.message.contains("was interrupted") })
        let failed = try JobStateMachine.apply(.attemptFailed(reason: "exit status 1"), to: interrupted, at: start.addingTimeInterval(9)).get()
        #expect(failed.status == .failed)
        #expect(throws: JobTransitionError.self) {
            try JobStateMachine.apply(.attemptInterrupted(reason: "x"), to: JobState(createdAt: start, maxRetries: 0), at: start).get()
        }
    }

    @Test func stopsAndTheRuntimeLimitEndStopped() throws {
        let stopped = try run([.queued(reason: "no free worker"), .stopRequested, .stopRequested, .ranksStopped])
        #expect(stopped.status == .stopped && stopped.secondaryStatus == .stopped)
        #expect(stopped.transitions.map(\.status) == [.starting, .pending, .stopping, .stopped])
        let limited = try run([.assigned(workers: 1), .trainingStarted, .maxRuntimeExceeded, .attemptFailed(reason: "SIGTERM")])
        #expect(limited.status == .stopped && limited.secondaryStatus == .maxRuntimeExceeded)
        #expect(limited.failureReason == nil)
    }

    @Test func eventsThatCannotHappenAreRefusedAndNameTheState() throws {
        let fresh = JobState(createdAt: start, maxRetries: 0)
        #expect(throws: JobTransitionError.self) { try JobStateMachine.apply(.trainingStarted, to: fresh, at: start).get() }
        #expect(throws: JobTransitionError.self) { try JobStateMachine.apply(.ranksStopped, to: fresh, at: start).get() }
        let done = try run([.assigned(workers: 1), .trainingStarted, .succeeded])
        for event in [JobEvent.stopRequested, .assigned(workers: 1), .attemptFailed(reason: "x"), .queued(reason: "y"), .succeeded] {
            let result = JobStateMachine.apply(event, to: done, at: start)
            guard case .failure(let error) = result else {
                Issue.record("a completed job took \(event)")
                continue
            }
            #expect(error.description.contains("Completed"))
        }
    }
}
