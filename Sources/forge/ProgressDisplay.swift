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
    /// Progress as plain `forge-progress …` lines for a `forge train` that draws the bar for
    /// this rank (the embedded cluster's front at a terminal).
    private let report: Bool
    private var lastReported: (epoch: Int, step: Int, loss: Double)?
    /// The prefix of those lines.
    static let reportPrefix = "forge-progress "

    init(logger: Logger, quiet: Bool, report: Bool = false) {
        self.interactive = isatty(STDERR_FILENO) == 1 && !quiet
        self.logger = logger
        self.quiet = quiet
        self.report = report
    }

    func trainingStarted(_ summary: RunSummary) {
        stepsPerEpoch = summary.stepsPerEpoch
        epochs = summary.epochs
        totalSteps = summary.totalSteps
        started = Date()
        let records = summary.contextLength.map { "\(summary.trainRecords) windows of \($0) bytes" }
            ?? "\(summary.trainRecords) records (\(summary.features) features, \(summary.classes) outputs)"
        let steps = summary.totalSteps < summary.stepsPerEpoch * summary.epochs
            ? "\(summary.totalSteps) steps (max_steps; \(summary.stepsPerEpoch) per epoch)" : "\(summary.epochs) epochs × \(summary.stepsPerEpoch) steps"
        logger.info("training \(summary.parameterCount) parameters on \(records): \(steps)")
        if let layout = summary.layout { logger.info("model split across the ranks: \(layout)") }
    }

    func resumed(fromStep step: Int, epoch: Int, path: String) {
        firstStep = step
        logger.info("resuming from checkpoint \(path) at step \(step) (epoch \(epoch))")
    }

    func stepCompleted(epoch: Int, batch: Int, batches: Int, step: Int, loss: Double) {
        lastLoss = loss
        if report {
            let now = Date()
            guard now.timeIntervalSince(lastDraw) > 0.25 || step == totalSteps else { return }
            lastDraw = now
            let line = String(format: "%@epoch=%d epochs=%d step=%d steps=%d first=%d loss=%.6f\n",
                              ProgressDisplay.reportPrefix, epoch, epochs, step, totalSteps, firstStep, loss)
            FileHandle.standardError.write(Data(line.utf8))
            return
        }
        guard interactive else { return }
        let now = Date()
        guard now.timeIntervalSince(lastDraw) > 0.1 || step == totalSteps else { return }
        lastDraw = now
        draw(epoch: epoch, step: step, loss: loss, now: now)
    }

    /// Draws a step another process reported (a `forge-progress` line); false for a line of
    /// another kind.
    func drawReported(_ line: String) -> Bool {
        guard line.hasPrefix(ProgressDisplay.reportPrefix) else { return false }
        var values = [String: String]()
        for pair in line.dropFirst(ProgressDisplay.reportPrefix.count).split(separator: " ") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            if parts.count == 2 { values[String(parts[0])] = String(parts[1]) }
        }
        guard interactive, let epoch = values["epoch"].flatMap(Int.init), let step = values["step"].flatMap(Int.init),
              let steps = values["steps"].flatMap(Int.init), let loss = values["loss"].flatMap(Double.init) else { return true }
        if totalSteps != steps {
            totalSteps = steps
            epochs = values["epochs"].flatMap(Int.init) ?? epochs
            firstStep = values["first"].flatMap(Int.init) ?? 0
            started = Date()
        }
        lastReported = (epoch, step, loss)
        draw(epoch: epoch, step: step, loss: loss, now: Date())
        return true
    }

    /// Draws the last reported step again (after plain lines were written over the bar).
    func redrawReported() {
        guard interactive, let (epoch, step, loss) = lastReported else { return }
        draw(epoch: epoch, step: step, loss: loss, now: Date())
    }

    /// Clears the bar so that a plain line can be written.
    func clearForLine() { clearBar() }

    private func draw(epoch: Int, step: Int, loss: Double, now: Date) {
        let fraction = totalSteps > 0 ? min(max(Double(step) / Double(totalSteps), 0), 1) : 1
        let width = 30
        let filled = min(width, max(0, Int(fraction * Double(width))))
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
        lastReported = nil
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
