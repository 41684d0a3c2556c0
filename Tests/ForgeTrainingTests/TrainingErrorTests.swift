// A group's failure becomes a training error that says whether another rank failed first: a
// rank exits 76 for those, and launchers and coordinators name the rank that did not.
import ForgeCollectives
import ForgeTraining
import Testing

@Suite struct TrainingErrorTests {
    @Test func peerFailuresAreToldApartFromTheRanksOwn() {
        let lost = CollectiveError.peerLost(peer: 1, reason: "rank 1 closed its connection (has it exited?)")
        let silent = CollectiveError.timedOut(peer: 2, milliseconds: 500)
        #expect(TrainingError.group(lost) == .peerFailed("rank 1 closed its connection (has it exited?)"))
        #expect(TrainingError.group(silent) == .peerFailed(silent.description))
        for own in [CollectiveError.transport(peer: 1, reason: "send failed"), .protocolViolation(peer: 1, reason: "expected 16 bytes, got 32"),
                    .invalidArgument("buffers of different sizes")] {
            #expect(!own.peerFailedFirst)
            #expect(TrainingError.group(own) == .collective(own.description))
        }
        #expect(TrainingError.group(lost).description == "the ranks' group failed: rank 1 closed its connection (has it exited?)")
    }
}
