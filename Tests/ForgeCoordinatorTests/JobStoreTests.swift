// The job store on a real SQLite file: jobs survive reopening, transitions and their events are
// written together, and every refused request (duplicate name, unknown job, impossible event)
// leaves the store exactly as it was.
import ForgeCoordinator
import ForgeTestSupport
import Foundation
import Testing

@Suite struct JobStoreTests {
    private func spec(_ name: String) throws -> TrainingJobSpec {
        var spec = try TrainingJobSpec.decode(json: Data(TrainingJobSpecTests.valid.utf8))
        spec.name = name
        return spec
    }

    private let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    @Test func jobsAndTheirHistorySurviveReopening() throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("state/forge.sqlite")
        do {
            let store = try JobStore(path: path)
            let created = try store.create(try spec("a"), at: t0)
            #expect(created.arn == "arn:aws:sagemaker:us-east-1:000000000000:training-job/a")
            try store.create(try spec("b"), at: t0.addingTimeInterval(1), priority: 5)
            try store.apply(.assigned(workers: 2), to: "a", at: t0.addingTimeInterval(2))
            try store.apply(.trainingStarted, to: "a", at: t0.addingTimeInterval(3))
        }
        let reopened = try JobStore(path: path)
        let a = try reopened.job(named: "a")
        #expect(a.state.secondaryStatus == .training)
        #expect(a.state.transitions.map(\.status) == [.starting, .downloading, .training])
        #expect(a.modifiedAt == t0.addingTimeInterval(3))
        #expect(try reopened.job(named: "b").priority == 5)
        #expect(try reopened.jobs().map(\.name) == ["b", "a"])
        #expect(try reopened.jobs(status: .inProgress).count == 2)
        #expect(try reopened.events(of: "a").map(\.kind) == ["Created", "Assigned", "TrainingStarted"])
        #expect(try reopened.events(of: "a").last?.message.hasPrefix("Training:") == true)
    }

    @Test func metricsKeepTheirSeriesAndTheNewestValueOfEach() throws {
        let directory = try TemporaryDirectory()
        let store = try JobStore(path: directory.file("forge.sqlite"))
        try store.create(try spec("m"), at: t0)
        let before = store.jobsRevision
        try store.recordMetrics(job: "m", values: [("loss", 0.9), ("accuracy", 0.5)], at: t0)
        try store.recordMetrics(job: "m", values: [("loss", 0.4)], at: t0.addingTimeInterval(5))
        #expect(store.jobsRevision == before, "metrics are not job changes: the scheduler need not look")
        let latest = try store.latestMetrics(of: "m")
        #expect(latest.map(\.name) == ["accuracy", "loss"])
        #expect(latest.map(\.value) == [0.5, 0.4])
        #expect(try store.metricSeries(of: "m", name: "loss").map(\.value) == [0.9, 0.4])
        try store.apply(.assigned(workers: 1), to: "m", at: t0)
        #expect(store.jobsRevision == before + 1)
        #expect(throws: JobStoreError.self) { try store.apply(.succeeded, to: "m", at: t0) }
        #expect(store.jobsRevision == before + 1, "a refused event changes nothing, the revision neither")
    }

    @Test func numberedOutputIsStoredOnceAndInOrderAcrossResendsAndReopening() throws {
        // A worker sends what it kept again when it re-registers: lines a stream holds are
        // skipped (also after the store is reopened, as by a restarted coordinator). Lines after
        // a gap are refused until the gap is sent; the oldest lines a worker still has are
        // taken, the gap before them becoming one line saying so.
        let directory = try TemporaryDirectory()
        let path = directory.file("forge.sqlite")
        let stream = "o/algo-1-7"
        do {
            let store = try JobStore(path: path)
            try store.create(try spec("o"), at: t0)
            #expect(try store.appendOutput(job: "o", stream: stream, first: 0, lines: ["a", "b", "c"], at: t0) == .appended(["a", "b", "c"]))
            #expect(try store.appendOutput(job: "o", stream: stream, first: 1, lines: ["b", "c", "d"], at: t0) == .appended(["d"]))
            #expect(try store.appendOutput(job: "o", stream: stream, first: 0, lines: ["a", "b"], at: t0) == .appended([]))
            // Another stream of the job counts on its own; a stream from before numbering (its
            // lines stored without indices) counts what it holds.
            #expect(try store.appendOutput(job: "o", stream: "o/algo-2-7", first: 0, lines: ["x"], at: t0) == .appended(["x"]))
            try store.appendLog(job: "o", stream: "o/algo-3-7", lines: ["p", "q"], at: t0)
            #expect(try store.appendOutput(job: "o", stream: "o/algo-3-7", first: 0, lines: ["p", "q", "r"], at: t0) == .appended(["r"]))
        }
        let store = try JobStore(path: path)
        #expect(try store.appendOutput(job: "o", stream: stream, first: 2, lines: ["c", "d", "e"], at: t0) == .appended(["e"]))
        // Lines 5 and 6 went missing: 7 on waits for them.
        #expect(try store.appendOutput(job: "o", stream: stream, first: 7, lines: ["h", "i"], at: t0) == .missing(from: 5))
        #expect(try store.appendOutput(job: "o", stream: stream, first: 5, lines: ["f", "g", "h", "i"], oldestKept: true, at: t0)
                == .appended(["f", "g", "h", "i"]))
        // A worker that no longer has 9 and 10: what it has is taken, with a line for the gap.
        guard case .appended(let gap) = try store.appendOutput(job: "o", stream: stream, first: 11, lines: ["l", "m"], oldestKept: true, at: t0) else {
            Issue.record("a gap the worker cannot fill is taken")
            return
        }
        #expect(gap.count == 3 && gap.first?.contains("2 line(s) of this rank's output were lost") == true && gap.suffix(2) == ["l", "m"], "\(gap)")
        #expect(try store.appendOutput(job: "o", stream: stream, first: 12, lines: ["m", "n"], at: t0) == .appended(["n"]))
        let lines = try store.logLines(of: "o", stream: stream)
        #expect(Array(lines.prefix(9)) == ["a", "b", "c", "d", "e", "f", "g", "h", "i"] && lines.suffix(3) == ["l", "m", "n"], "\(lines)")
        #expect(try store.logLines(of: "o", stream: "o/algo-2-7") == ["x"])
        #expect(try store.logLines(of: "o", stream: "o/algo-3-7") == ["p", "q", "r"])
    }

    @Test func refusedRequestsChangeNothing() throws {
        let directory = try TemporaryDirectory()
        let store = try JobStore(path: directory.file("forge.sqlite"))
        try store.create(try spec("a"), at: t0)
        let before = try store.job(named: "a")
        #expect(throws: JobStoreError.duplicate("a")) { try store.create(try spec("a"), at: t0.addingTimeInterval(5)) }
        #expect(throws: JobStoreError.notFound("missing")) { try store.job(named: "missing") }
        #expect(throws: JobStoreError.notFound("missing")) { try store.apply(.stopRequested, to: "missing", at: t0) }
        #expect(throws: JobStoreError.notFound("missing")) { try store.events(of: "missing") }
        // Training cannot start before the job has workers.
        #expect(throws: JobStoreError.self) { try store.apply(.trainingStarted, to: "a", at: t0.addingTimeInterval(6)) }
        #expect(try store.job(named: "a") == before)
        #expect(try store.events(of: "a").map(\.kind) == ["Created"])
        #expect(try store.jobs().count == 1)
    }

    @Test func aFinishedJobKeepsItsEndAndRefusesMore() throws {
        let directory = try TemporaryDirectory()
        let store = try JobStore(path: directory.file("forge.sqlite"))
        try store.create(try spec("a"), at: t0)
        for (index, event) in [JobEvent.assigned(workers: 1), .trainingStarted, .uploadStarted, .succeeded].enumerated() {
            try store.apply(event, to: "a", at: t0.addingTimeInterval(Double(index + 1)))
        }
        let done = try store.job(named: "a")
        #expect(done.state.status == .completed && done.state.trainingEndTime == t0.addingTimeInterval(4))
        #expect(throws: JobStoreError.self) { try store.apply(.stopRequested, to: "a", at: t0.addingTimeInterval(9)) }
        #expect(try store.job(named: "a") == done)
    }
}
