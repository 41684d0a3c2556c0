// `forge train --instance-count N` is a job on an embedded coordinator with N local `forge
// worker` processes: the job is in OUTPUT/cluster/forge.sqlite with its events and every
// rank's output, the flags reach the ranks (a CSV header, skipped corrupt records, threads),
// rank 0's metric lines are the command's standard output, and a rerun resumes.
import ForgeCoordinator
import ForgeTestSupport
import Foundation
import Testing

@Suite struct EmbeddedClusterTests {
    @Test func aTwoInstanceTrainIsAJobOnLocalWorkersAndARerunResumesIt() throws {
        let directory = try TemporaryDirectory()
        var csv = "label,a,b,c,d,e,f,g,h\n" + SyntheticCSV(count: 300, seed: 4).labelled
        csv += "1,oops,2,3,4,5,6,7,8\n"
        let train = try directory.write(csv, to: "train.csv")
        let output = directory.file("out")
        let arguments = ["train", "--algorithm", "mlp", "--train", train, "--output", output, "--instance-count", "2",
                         "--csv-header", "--skip-corrupt-records", "--threads", "1", "--quiet",
                         "-H", "epochs=4", "-H", "hidden_layer_sizes=8", "-H", "mini_batch_size=30"]
        let run = try ForgeProcess.run(arguments, timeout: .seconds(180))
        #expect(run.status == 0, "\(run)")
        #expect(run.outputLines.count == 4 && run.outputLines.allSatisfy { $0.hasPrefix("epoch=") }, "rank 0's metric lines alone: \(run)")
        #expect(run.standardError.contains("train.csv:302:"), "the skipped record is reported: \(run)")
        #expect(run.standardError.contains("300 records"), "\(run)")
        #expect(run.standardError.contains("device cpu: 1 thread(s)"), "\(run)")
        #expect(!run.standardError.contains("forge-progress"), "off a terminal there is no bar, and rank 0 reports none")
        for name in ["model.tar.gz", "metrics.json"] {
            #expect(FileManager.default.fileExists(atPath: "\(output)/\(name)"), "no \(name)")
        }

        let store = try JobStore(path: "\(output)/cluster/forge.sqlite")
        let jobs = try store.jobs()
        #expect(jobs.count == 1)
        let job = try #require(jobs.first)
        #expect(job.state.status == .completed, "\(job.state.transitions.map(\.message))")
        #expect(job.spec.instanceCount == 2)
        #expect(try store.events(of: job.name).map(\.kind) == ["Created", "Assigned", "TrainingStarted", "UploadStarted", "Succeeded"])
        for rank in 0..<2 {
            let log = try String(contentsOfFile: "\(output)/cluster/logs/\(job.name)-rank-\(rank).log", encoding: .utf8)
            #expect(log.contains("train.csv:302:"), "rank \(rank) read the whole channel and skipped the bad record: \(log)")
        }

        // The same command again resumes from the newest checkpoint, as a new job in the same store.
        let again = try ForgeProcess.run(arguments.map { $0 == "epochs=4" ? "epochs=5" : $0 }, timeout: .seconds(180))
        #expect(again.status != 0, "changing epochs changes the run: the checkpoint is refused by name: \(again)")
        #expect(again.standardError.contains("epochs"), "\(again)")
        let resumed = try ForgeProcess.run(arguments, timeout: .seconds(180))
        #expect(resumed.status == 0, "\(resumed)")
        #expect(resumed.standardError.contains("resuming from checkpoint"), "\(resumed)")
        #expect(try store.jobs().count == 3)
    }

    @Test func rank0ReportsItsStepsForTheBarWhenAsked() throws {
        let directory = try TemporaryDirectory()
        let train = try directory.write(SyntheticCSV(count: 200, seed: 4).labelled, to: "train.csv")
        let run = try ForgeProcess.run(["train", "--algorithm", "mlp", "--train", train, "--output", directory.file("out"), "--quiet",
                                        "-H", "epochs=2", "-H", "mini_batch_size=20"], environment: ["FORGE_PROGRESS": "report"])
        #expect(run.status == 0, "\(run)")
        let reports = run.standardError.split(separator: "\n").filter { $0.hasPrefix("forge-progress ") }
        #expect(reports.first == "forge-progress epoch=1 epochs=2 step=1 steps=20 first=0 loss=" + (reports.first?.split(separator: "=").last ?? ""),
                "\(reports)")
        #expect(reports.last?.contains("step=20 steps=20") == true, "the last step is always reported: \(reports)")
    }

    @Test func badHyperparametersAreRefusedBeforeAnyProcessStarts() throws {
        let directory = try TemporaryDirectory()
        let train = try directory.write(SyntheticCSV(count: 20, seed: 4).labelled, to: "train.csv")
        let run = try ForgeProcess.run(["train", "--algorithm", "mlp", "--train", train, "--output", directory.file("out"),
                                        "--instance-count", "2", "-H", "epochz=3", "-H", "forge_threads=0"], timeout: .seconds(60))
        #expect(run.status == 1, "\(run)")
        #expect(run.standardError.contains("forge_threads"), "\(run)")
        #expect(!FileManager.default.fileExists(atPath: directory.file("out/cluster")), "nothing was started")
    }
}
