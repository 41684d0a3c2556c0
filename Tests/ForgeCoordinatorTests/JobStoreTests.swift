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
