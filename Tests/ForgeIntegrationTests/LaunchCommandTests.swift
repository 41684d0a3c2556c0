// `forge launch` starts real rank processes that meet at a rendezvous and all-reduce over
// ZeroMQ; a failing rank stops the others and is named in the report.
import ForgeTestSupport
import Foundation
import Testing

@Suite struct LaunchCommandTests {
    @Test func threeRanksAllReduceAndVerifyOverTCP() throws {
        let run = try ForgeProcess.run(["launch", "--nproc", "3", "--", "forge", "bench", "allreduce",
                                        "--sizes", "4,4096,100004", "--iterations", "2", "--timeout", "20"])
        #expect(run.status == 0, "\(run)")
        for rank in 0..<3 { #expect(run.standardOutput.contains("rank \(rank): verified"), "\(run)") }
        #expect(run.standardOutput.contains("busbw"))
    }

    @Test func twoRanksOverIPCWithAClusterKey() throws {
        let directory = try TemporaryDirectory()
        let key = directory.file("cluster.key")
        #expect(try ForgeProcess.run(["keygen", "--out", key]).status == 0)
        let run = try ForgeProcess.run(["launch", "--nproc", "2", "--cluster-key", key, "--", "forge", "bench", "allreduce",
                                        "--sizes", "65536", "--iterations", "2", "--transport", "ipc", "--timeout", "20"])
        #expect(run.status == 0, "\(run)")
        #expect(run.standardOutput.contains("with CURVE"), "\(run)")
        for rank in 0..<2 { #expect(run.standardOutput.contains("rank \(rank): verified"), "\(run)") }
    }

    @Test func aFailingRankStopsTheOthersAndIsNamed() throws {
        let run = try ForgeProcess.run(["launch", "--nproc", "3", "--", "forge", "bench", "allreduce",
                                        "--sizes", "4096", "--iterations", "50", "--fail-rank", "1", "--timeout", "10"],
                                       timeout: .seconds(60))
        #expect(run.status == 1, "\(run)")
        #expect(run.standardError.contains("rank 1 (pid"), "\(run)")
        #expect(run.standardError.contains("exited with status 3"), "\(run)")
        #expect(run.standardError.contains("stopped the other ranks"))
        #expect(!run.timedOut)
    }

    @Test func aRankOutsideLaunchSaysWhatIsMissing() throws {
        let run = try ForgeProcess.run(["bench", "allreduce"], environment: ["RANK": nil, "WORLD_SIZE": nil])
        #expect(run.status == 64, "\(run)")
        #expect(run.standardError.contains("forge launch"))
    }

    @Test func launchNeedsACommand() throws {
        let run = try ForgeProcess.run(["launch", "--nproc", "2"])
        #expect(run.status == 64, "\(run)")
        #expect(run.standardError.contains("after --"))
    }
}
