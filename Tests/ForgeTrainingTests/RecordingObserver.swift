// A TrainingObserver that remembers every event, so tests can check what a run reported
// (and how many steps it really took after a resume).
import ForgeTraining

/// Records a run's events. Confined: one test drives it on one thread.
final class RecordingObserver: TrainingObserver {
    private(set) var summary: RunSummary?
    private(set) var resumedAt: (step: Int, epoch: Int, path: String)?
    private(set) var steps: [Int] = []
    private(set) var reports: [EpochReport] = []
    private(set) var checkpointSteps: [Int] = []
    private(set) var stopped: (epoch: Int, bestEpoch: Int)?

    func trainingStarted(_ summary: RunSummary) { self.summary = summary }
    func resumed(fromStep step: Int, epoch: Int, path: String) { resumedAt = (step, epoch, path) }
    func stepCompleted(epoch: Int, batch: Int, batches: Int, step: Int, loss: Double) { steps.append(step) }
    func epochCompleted(_ report: EpochReport) { reports.append(report) }
    func checkpointSaved(path: String, step: Int) { checkpointSteps.append(step) }
    func stoppedEarly(epoch: Int, bestEpoch: Int) { stopped = (epoch, bestEpoch) }
}
