// What a person sees while training: at a terminal, one progress bar redrawn in place on
// standard error; otherwise nothing but plain log lines. Metric lines always go to standard
// output, one per epoch, in the stable format.
import ForgeTraining
import Foundation
import Logging

final class ProgressDisplay: TrainingObserver {
    private let interactive: Bool
    private let logger: Logger
    private let quiet: Bool
    private var totalSteps = 0
    private var stepsPerEpoch = 0
    private var epochs = 0
    private var started = Date()
    private var lastDraw = Date.distantPast
    private var firstStep = 0
    private var barVisible = false
    private var lastLoss = 0.0

    init(logger: Logger, quiet: Bool) {
        self.interactive = isatty(STDERR_FILENO) == 1 && !quiet
        self.logger = logger
        self.quiet = quiet
    }

    func trainingStarted(_ summary: RunSummary) {
        stepsPerEpoch = summary.stepsPerEpoch
        epochs = summary.epochs
        totalSteps = summary.stepsPerEpoch * summary.epochs
        started = Date()
        logger.info("training \(summary.parameterCount) parameters on \(summary.trainRecords) records (\(summary.features) features, \(summary.classes) outputs): \(summary.epochs) epochs × \(summary.stepsPerEpoch) steps")
    }

    func resumed(fromStep step: Int, epoch: Int, path: String) {
        firstStep = step
        logger.info("resuming from checkpoint \(path) at step \(step) (epoch \(epoch))")
    }

    func stepCompleted(epoch: Int, batch: Int, batches: Int, step: Int, loss: Double) {
        lastLoss = loss
        guard interactive else { return }
        let now = Date()
        guard now.timeIntervalSince(lastDraw) > 0.1 || step == totalSteps else { return }
        lastDraw = now
        let fraction = totalSteps > 0 ? Double(step) / Double(totalSteps) : 1
        let width = 30
        let filled = min(width, Int(fraction * Double(width)))
        let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
        let elapsed = now.timeIntervalSince(started)
        let done = Double(step - firstStep)
        let remaining = done > 0 ? elapsed / done * Double(totalSteps - step) : 0
        let line = String(format: "\r\u{1B}[K%@ %3.0f%% epoch %d/%d step %d/%d loss %.4f eta %@",
                          bar, fraction * 100, epoch, epochs, step, totalSteps, loss, ProgressDisplay.duration(remaining))
        FileHandle.standardError.write(Data(line.utf8))
        barVisible = true
    }

    func epochCompleted(_ report: EpochReport) {
        clearBar()
        FileHandle.standardOutput.write(Data((report.line + "\n").utf8))
    }

    func checkpointSaved(path: String, step: Int) {
        logger.debug("checkpoint at step \(step): \(path)")
    }

    func stoppedEarly(epoch: Int, bestEpoch: Int) {
        clearBar()
        logger.info("early stopping after epoch \(epoch): validation loss has not improved since epoch \(bestEpoch); keeping that epoch's model")
    }

    func finish() {
        clearBar()
    }

    private func clearBar() {
        guard barVisible else { return }
        FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
        barVisible = false
    }

    static func duration(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return s >= 3600 ? "\(s / 3600)h\(s % 3600 / 60)m" : s >= 60 ? "\(s / 60)m\(s % 60)s" : "\(s)s"
    }
}
