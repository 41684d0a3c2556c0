// `forge launch` starts real rank processes that meet at a rendezvous and all-reduce over
// ZeroMQ; a failing rank stops the others and is named in the report.
import ForgeTestSupport
@testable import ForgeWorker
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
        #expect(run.standardError.contains(") on \(ProcessInfo.processInfo.hostName) "), "the report names the host: \(run)")
        #expect(run.standardError.contains("exited with status 3"), "\(run)")
        #expect(run.standardError.contains("stopped the other ranks"))
        #expect(!run.timedOut)
    }

    @Test func eachRankGetsTheTorchrunVariables() throws {
        // Two nodes of two ranks: RANK, LOCAL_RANK, GROUP_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE,
        // MASTER_ADDR and MASTER_PORT as torchrun sets them.
        let endpoint = "127.0.0.1:\(MultiNodeLaunchTests.freePort())"
        let port = endpoint.split(separator: ":").last.map(String.init) ?? ""
        let print = #"echo "vars $RANK $LOCAL_RANK $GROUP_RANK $WORLD_SIZE $LOCAL_WORLD_SIZE $MASTER_ADDR $MASTER_PORT""#
        func arguments(node: Int) -> [String] {
            ["launch", "--nproc", "2", "--nnodes", "2", "--node-rank", String(node), "--rdzv-endpoint", endpoint, "--node-addr", "127.0.0.1",
             "--", "/bin/sh", "-c", print]
        }
        let (first, second) = try MultiNodeLaunchTests.runTwoNodes { arguments(node: $0) }
        for (node, run) in [first, second].enumerated() {
            #expect(run.status == 0, "\(run)")
            for local in 0..<2 {
                let expected = "vars \(node * 2 + local) \(local) \(node) 4 2 127.0.0.1 \(port)"
                #expect(run.outputLines.contains { $0.hasSuffix(expected) }, "node \(node): \(run.outputLines)")
            }
        }
    }

    @Test func aRankOutsideLaunchSaysWhatIsMissing() throws {
        let run = try ForgeProcess.run(["bench", "allreduce"], environment: ["RANK": nil, "WORLD_SIZE": nil])
        #expect(run.status == 64, "\(run)")
        #expect(run.standardError.contains("forge launch"))
    }

    /// What a rank leaves running goes with the launch, as a container's processes end with it:
    /// a `sleep` in the rank's process group, and one in a session of its own (found by the
    /// rank's FORGE_RANK_TAG and, orphaned, reaped by the launcher, a subreaper).
    @Test func whatARankLeavesRunningEndsWithTheLaunch() throws {
        let directory = try TemporaryDirectory()
        let run = try ForgeProcess.run(["launch", "--nproc", "1", "--", "/bin/sh", "-c",
                                        // The second and third sleeps write their pids once in sessions of their own (the
                                        // third without the rank's environment, so without its tag); the rank waits for that.
                                        #"sleep 300 >/dev/null 2>&1 & echo $! > "$0/group.pid"; setsid sh -c 'echo $$ > "$0/session.pid"; exec sleep 301' "$0" >/dev/null 2>&1 & "#
                                            + #"setsid /usr/bin/env -i /bin/sh -c 'echo $$ > "$0/bare.pid"; exec /bin/sleep 302' "$0" >/dev/null 2>&1 & "#
                                            + #"while [ ! -s "$0/session.pid" ] || [ ! -s "$0/bare.pid" ]; do sleep 0.05; done"#,
                                        directory.path])
        #expect(run.status == 0, "\(run)")
        // Only a cgroup holds the one that cleared its environment: where this host gives ranks
        // none (no writable cgroup2), it escapes, and is killed here instead.
        let cgroups = RankCgroup.available
        for name in ["group", "session", "bare"] {
            let pid = try #require(Int32(try String(contentsOfFile: directory.file("\(name).pid"), encoding: .utf8)
                .trimmingCharacters(in: .whitespacesAndNewlines)))
            var state: Substring?
            for _ in 0..<100 {
                state = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8))?.split(separator: " ").dropFirst(2).first
                if state == nil || state == "Z" { break }
                usleep(50_000)
            }
            if state != nil && state != "Z" { kill(pid, SIGKILL) }
            guard name != "bare" || cgroups else { continue }
            #expect(state == nil || state == "Z", "the rank's leftover \(name) sleep \(pid) still runs after forge launch returned")
        }
    }

    @Test func aRankRunsInACgroupOfItsOwnWithItsEnvironmentWhole() throws {
        // Where this host gives ranks cgroups, the rank is in one of its own (below the
        // launcher's), entered before its program ran; either way the environment reaches it
        // whole, names that are not shell identifiers included.
        let run = try ForgeProcess.run(["launch", "--nproc", "1", "--", "/bin/bash", "-c", "cat /proc/self/cgroup; exec /usr/bin/env"],
                                       environment: ["ODD.NAME-1": "kept"])
        #expect(run.status == 0, "\(run)")
        #expect(run.outputLines.contains("ODD.NAME-1=kept"), "\(run.outputLines)")
        #expect(run.outputLines.contains("RANK=0") && run.outputLines.contains("WORLD_SIZE=1"))
        let cgroup = run.outputLines.first { $0.hasPrefix("0::") } ?? ""
        if RankCgroup.available {
            #expect(cgroup.contains(/\/forge-\d+-launch-/) && cgroup.hasSuffix("_rank_0"), "\(cgroup)")
        }
    }

    /// What a killed launcher or worker left: an empty cgroup named with its pid, over a minute
    /// old. Nothing else goes: not another program's `forge-…` cgroup, not a live maker's, not a
    /// young one, not one with a process in it.
    @Test(.enabled(if: RankCgroup.available)) func theSweepTakesOnlyEmptyCgroupsOfMakersThatAreGone() throws {
        let parent = try #require(RankCgroup.usableParent)
        let ended = Process()
        ended.executableURL = URL(fileURLWithPath: "/bin/true")
        try ended.run()
        ended.waitUntilExit()
        let gone = ended.processIdentifier, unique = UInt32.random(in: 0...UInt32.max)
        let names = ["orphan": "forge-\(gone)-sweep-\(unique)", "young": "forge-\(gone)-sweep-young-\(unique)",
                     "busy": "forge-\(gone)-sweep-busy-\(unique)", "live": "forge-\(getpid())-sweep-\(unique)",
                     "foreign": "forge-other-\(unique)"]
        let old = Date(timeIntervalSinceNow: -120)
        for (kind, name) in names {
            #expect(mkdir("\(parent)/\(name)", 0o755) == 0, "mkdir \(name): errno \(errno)")
            if kind != "young" { try FileManager.default.setAttributes([.modificationDate: old], ofItemAtPath: "\(parent)/\(name)") }
        }
        let busy = "\(parent)/\(names["busy"]!)"
        let member = Process()
        member.executableURL = URL(fileURLWithPath: "/bin/sh")
        member.arguments = ["-c", #"echo 0 > "$0/cgroup.procs" && exec sleep 30"#, busy]
        try member.run()
        defer {
            kill(member.processIdentifier, SIGKILL)
            member.waitUntilExit()
            for name in names.values { _ = rmdir("\(parent)/\(name)") }
        }
        for _ in 0..<200 where RankCgroup.members(of: busy).isEmpty { usleep(10_000) }
        #expect(!RankCgroup.members(of: busy).isEmpty)
        #expect(RankCgroup.owner(ofCgroupNamed: names["orphan"]!) == gone)
        #expect(RankCgroup.owner(ofCgroupNamed: names["foreign"]!) == nil && RankCgroup.owner(ofCgroupNamed: "forge-12x-a") == nil)
        RankCgroup.sweep(parent)
        for (kind, name) in names {
            #expect(FileManager.default.fileExists(atPath: "\(parent)/\(name)") == (kind != "orphan"), "\(kind) \(name)")
        }
    }

    @Test(arguments: [["SHLVL": nil, "_": nil], ["SHLVL": "7", "_": "/the/launchers/own"]] as [[String: String?]])
    func aRankSeesTheLaunchersShellVariablesAsTheyWere(_ shellVariables: [String: String?]) throws {
        // The shell that moves a rank into its cgroup adds `_` (and bash `SHLVL`) to what it
        // execs; the rank must see the launcher's values, or none where it had none.
        let run = try ForgeProcess.run(["launch", "--nproc", "1", "--", "/usr/bin/env"], environment: shellVariables)
        #expect(run.status == 0, "\(run)")
        #expect(run.outputLines.contains("RANK=0"), "\(run.outputLines)")
        for (name, value) in shellVariables {
            let seen = run.outputLines.filter { $0.hasPrefix("\(name)=") }
            #expect(seen == (value.map { ["\(name)=\($0)"] } ?? []), "\(name): \(seen)")
        }
    }

    @Test func aProgramTheKernelWouldRefuseIsRefusedWithOrWithoutACgroup() throws {
        // An executable text file with no #! line: execve fails with an exec format error. The
        // shell that moves a rank into its cgroup would run it as a script instead, so it must
        // not stand in for the kernel here.
        let directory = try TemporaryDirectory()
        let program = directory.file("no-shebang")
        let marker = directory.file("ran")
        try "touch '\(marker)'\n".write(toFile: program, atomically: true, encoding: .utf8)
        chmod(program, 0o755)
        let run = try ForgeProcess.run(["launch", "--nproc", "1", "--", program])
        #expect(run.status != 0, "\(run)")
        #expect(!FileManager.default.fileExists(atPath: marker), "the file ran as a shell script")
        #expect(run.standardError.contains("cannot start rank 0") && run.standardError.contains("exec format error"), "\(run.standardError)")
    }

    @Test func aProgramNamedRelativeToTheDirectoryRunsWithOrWithoutACgroup() throws {
        // Not on PATH: the name means the file in the launcher's directory, as it does to a
        // plain start; the shell that moves a rank into its cgroup would look it up on PATH.
        let directory = try TemporaryDirectory()
        let program = directory.file("local-rank")
        try "#!/bin/sh\necho \"local rank $RANK ran\"\n".write(toFile: program, atomically: true, encoding: .utf8)
        chmod(program, 0o755)
        let run = try ForgeProcess.run(["launch", "--nproc", "1", "--", "local-rank"], in: directory.path)
        #expect(run.status == 0, "\(run)")
        #expect(run.outputLines.contains { $0.hasSuffix("local rank 0 ran") }, "\(run.outputLines)")
    }

    @Test func launchNeedsACommand() throws {
        let run = try ForgeProcess.run(["launch", "--nproc", "2"])
        #expect(run.status == 64, "\(run)")
        #expect(run.standardError.contains("after --"))
    }
}

/// Two launchers, one per "node", meeting at node 0's rendezvous: four ranks in one group.
@Suite struct MultiNodeLaunchTests {
    /// A TCP port the kernel says is free right now.
    static func freePort() -> Int { freeLoopbackPort() }

    final class Box: @unchecked Sendable {
        var run: ForgeRun?
        var failure: (any Error)?
    }

    /// Runs node 1's launcher on a thread of its own and node 0's here (`arguments(node)`), and
    /// returns both runs once both have ended.
    static func runTwoNodes(_ arguments: (Int) -> [String], timeout: Duration = .seconds(120)) throws -> (first: ForgeRun, second: ForgeRun) {
        let second = Box()
        let done = DispatchSemaphore(value: 0)
        let secondArguments = arguments(1)
        Thread {
            do { second.run = try ForgeProcess.run(secondArguments, timeout: timeout) } catch { second.failure = error }
            done.signal()
        }.start()
        let first = try ForgeProcess.run(arguments(0), timeout: timeout)
        done.wait()
        return (first, try #require(second.run, "node 1's launcher did not run: \(String(describing: second.failure))"))
    }

    @Test func twoNodesOfTwoRanksFormOneGroup() throws {
        let endpoint = "127.0.0.1:\(MultiNodeLaunchTests.freePort())"
        func arguments(node: Int) -> [String] {
            ["launch", "--nproc", "2", "--nnodes", "2", "--node-rank", String(node), "--rdzv-endpoint", endpoint,
             "--node-addr", "127.0.0.1", "--", "forge", "bench", "allreduce", "--sizes", "4096,40000", "--iterations", "2",
             "--timeout", "30"]
        }
        let (first, other) = try MultiNodeLaunchTests.runTwoNodes { arguments(node: $0) }
        #expect(first.status == 0, "\(first)")
        #expect(other.status == 0, "\(other)")
        #expect(first.standardOutput.contains("4 ranks"))
        for rank in 0..<2 { #expect(first.standardOutput.contains("rank \(rank): verified"), "\(first)") }
        for rank in 2..<4 { #expect(other.standardOutput.contains("rank \(rank): verified"), "\(other)") }
    }

    /// Rank 1 (alone on "node 1") dies after its first all-reduce, while rank 0 (on "node 0",
    /// whose launcher knows nothing of it) waits in the next one: rank 0 must fail by itself
    /// with an error naming rank 1 within its timeout. Over tcp silence is all it sees (the
    /// timeout) over ZeroMQ; over plain TCP the closed connection names it; through shared memory
    /// (rings, or a shared region reduced in place: "direct") it notices that rank 1's process is
    /// gone.
    @Test(arguments: ["tcp", "zmq", "shm", "direct"])
    func aRankThatDiesMidJobIsAnErrorOnItsPeerWithinTheTimeout(transport: String) throws {
        let endpoint = "127.0.0.1:\(MultiNodeLaunchTests.freePort())"
        let plane = transport == "direct" ? ["--transport", "shm", "--shared-buffer"] : ["--transport", transport]
        func arguments(node: Int) -> [String] {
            ["launch", "--nproc", "1", "--nnodes", "2", "--node-rank", String(node), "--rdzv-endpoint", endpoint,
             "--node-addr", "127.0.0.1", "--", "forge", "bench", "allreduce", "--sizes", "4096,1048576", "--iterations", "20",
             "--fail-rank", "1", "--timeout", "4"] + plane
        }
        let started = Date()
        let (first, other) = try MultiNodeLaunchTests.runTwoNodes({ arguments(node: $0) }, timeout: .seconds(60))
        let elapsed = Date().timeIntervalSince(started)
        #expect(other.standardError.contains("exited with status 3"), "\(other)")
        #expect(first.status == 76, "node 0 only lost a peer: \(first)")
        let named = ["zmq": "no data from rank 1 within 4000 ms", "tcp": "rank 1 closed its connection"][transport] ?? "rank 1 (pid"
        #expect(first.standardError.contains("error: rank 0:") && first.standardError.contains(named), "\(first)")
        // Rank 0 is all node 0 has; its launcher says it failed because another rank did.
        #expect(first.standardError.contains("rank 0 (pid") && first.standardError.contains("exited with status 76 (another rank failed first)"), "\(first)")
        #expect(elapsed < 30, "rank 0 took \(elapsed) s to give up")
    }

    @Test func moreThanOneNodeNeedsARendezvousEndpoint() throws {
        let run = try ForgeProcess.run(["launch", "--nproc", "1", "--nnodes", "2", "--", "true"])
        #expect(run.status == 64, "\(run)")
        #expect(run.standardError.contains("--rdzv-endpoint"))
        let outside = try ForgeProcess.run(["launch", "--nproc", "1", "--nnodes", "2", "--node-rank", "2", "--", "true"])
        #expect(outside.status == 64)
        #expect(outside.standardError.contains("--node-rank 2 is outside"))
    }
}

@Suite struct LaunchSignalTests {
    @Test func terminatingTheLauncherStopsItsRanks() throws {
        let marker = "37.\(Int.random(in: 100...999))"  // a sleep length no other process uses
        let launcher = Process()
        launcher.executableURL = URL(fileURLWithPath: try ForgeProcess.binary())
        launcher.arguments = ["launch", "--nproc", "2", "--", "sleep", marker]
        launcher.standardError = FileHandle.nullDevice
        try launcher.run()
        func sleepers() -> Int {
            let pgrep = Process()
            pgrep.executableURL = URL(fileURLWithPath: "/usr/bin/pgrep")
            pgrep.arguments = ["-f", "^[^ ]*sleep \(marker)"]  // the ranks, not the launcher
            let pipe = Pipe()
            pgrep.standardOutput = pipe
            try? pgrep.run()
            pgrep.waitUntilExit()
            return String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).split(separator: "\n").count
        }
        let started = Date().addingTimeInterval(10)
        while sleepers() < 2 && Date() < started { usleep(50_000) }
        #expect(sleepers() == 2, "the ranks did not start")
        launcher.terminate()
        launcher.waitUntilExit()
        #expect(launcher.terminationStatus == 143)
        #expect(sleepers() == 0, "ranks outlived their launcher")
    }
}
