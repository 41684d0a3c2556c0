// A real `forge worker` process against a test that plays the coordinator on a real ZeroMQ
// ROUTER socket: the worker numbers each rank's output lines, sends the lines it still has again
// from the line asked for (a coordinator that lost some on their way asks so), and sends all it
// kept when it registers again (a restarted coordinator does not know it).
import ForgeTestSupport
import ForgeTransport
import ForgeWire
import ForgeWorker
import Foundation
import Testing

@Suite struct WorkerOutputTests {
    /// The test's side of the control plane.
    final class FakeCoordinator {
        let context: ZMQContext
        let socket: ZMQSocket
        let endpoint: String
        var worker: [UInt8] = []

        init() throws {
            context = try ZMQContext()
            socket = try ZMQSocket(context, kind: .router)
            try socket.setReceiveTimeout(30_000)
            endpoint = try socket.bind("tcp://127.0.0.1:\(MultiNodeLaunchTests.freePort())")
        }

        /// The next message from the worker (remembering who sent it).
        func receive() throws -> ControlMessage {
            let frames = try socket.receive()
            try #require(frames.count == 2, "a ROUTER receives identity and payload")
            worker = frames[0]
            return try ControlMessage(decoding: frames[1])
        }

        /// Messages until `done` says the last one ends the wait; heartbeats are skipped.
        func receive(until done: (ControlMessage) -> Bool) throws -> [ControlMessage] {
            var seen: [ControlMessage] = []
            while true {
                let message = try receive()
                if case .heartbeat = message { continue }
                seen.append(message)
                if done(message) { return seen }
            }
        }

        func send(_ message: ControlMessage) throws {
            try socket.send([worker, message.encoded()])
        }
    }

    /// The numbered lines among `messages`: (first index, lines, whether it starts at the oldest line kept) of each output message.
    private static func output(_ messages: [ControlMessage]) -> [(first: Int?, lines: [String], oldestKept: Bool)] {
        messages.compactMap { message in
            guard case .rankOutput(_, let lines, let first, let oldestKept) = message else { return nil }
            return (first, lines, oldestKept)
        }
    }

    @Test func aWorkerSendsKeptOutputAgainWhenAskedAndWhenItRegistersAgain() throws {
        let directory = try TemporaryDirectory()
        let coordinator = try FakeCoordinator()
        let worker = Process()
        worker.executableURL = URL(fileURLWithPath: try ForgeProcess.binary())
        worker.arguments = ["worker", "--coordinator", coordinator.endpoint, "--work-dir", directory.file("work"), "--node-addr", "127.0.0.1"]
        worker.standardOutput = FileHandle.nullDevice
        worker.standardError = FileHandle.nullDevice
        try worker.run()
        defer {
            // SIGTERM, then wait until it has exited (a zombie, or gone): not waitUntilExit,
            // which hangs on Foundation's dispatch threads while parallel tests hold them.
            worker.terminate()
            for _ in 0..<200 {
                let state = (try? String(contentsOfFile: "/proc/\(worker.processIdentifier)/stat", encoding: .utf8))?
                    .split(separator: " ").dropFirst(2).first
                if state == nil || state == "Z" { break }
                usleep(50_000)
            }
            // The rank's children, left running on purpose, should the test stop before the
            // worker ended them (and only while the pid is still a `sleep`).
            for name in ["sleeper", "daemon", "bare"] {
                if let pid = (try? String(contentsOfFile: directory.file("work/echo/\(name).pid"), encoding: .utf8)).flatMap({ Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }),
                   (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8))?.hasPrefix("sleep") == true {
                    kill(pid, SIGKILL)
                }
            }
        }
        guard case .register(let id, _) = try coordinator.receive() else {
            Issue.record("a worker starts by registering")
            return
        }
        try coordinator.send(.registered(worker: id, heartbeatMilliseconds: 200))
        let assignment = "echo/1/0"
        try coordinator.send(.assign(RankAssignment(id: assignment, job: "echo", attempt: 1, rank: 0, worldSize: 1,
                                                    arguments: ["/bin/sh", "-c", "for i in 1 2 3 4 5; do echo line$i; done; sleep 120 & echo $! > sleeper.pid; setsid sleep 121 & echo $! > daemon.pid; "
                                                                + "setsid /usr/bin/env -i /bin/sh -c 'echo $$ > bare.pid; exec /bin/sleep 122' & wait"],
                                                    environment: [:], workDirectory: directory.file("work/echo"))))
        // The five lines, numbered from 0 in the order written, however they are batched.
        var received: [String] = []
        _ = try coordinator.receive { message in
            guard case .rankOutput(let name, let lines, let first, let oldestKept) = message, name == assignment else { return false }
            #expect(first == received.count && !oldestKept, "\(message)")
            received += lines
            return received.count >= 5
        }
        #expect(received == ["line1", "line2", "line3", "line4", "line5"])
        // Lines from index 2 on went missing: asked, the worker sends them again (not flagged as
        // its oldest: it still has line 0).
        try coordinator.send(.resendOutput(assignment: assignment, from: 2))
        let again = Self.output(try coordinator.receive { if case .rankOutput = $0 { return true } else { return false } })
        #expect(again.count == 1 && again[0].first == 2 && again[0].lines == ["line3", "line4", "line5"] && !again[0].oldestKept, "\(again)")
        // A coordinator that does not know the worker: it registers again and sends all it kept.
        try coordinator.send(.unknownWorker(worker: id))
        let registering = try coordinator.receive { if case .rankOutput = $0 { return true } else { return false } }
        guard case .register(_, let resources)? = registering.first else {
            Issue.record("registers first: \(registering)")
            return
        }
        #expect(resources.running == [assignment])
        let kept = Self.output(registering)
        #expect(kept.count == 1 && kept[0].first == 0 && kept[0].lines == received && kept[0].oldestKept, "\(kept)")
        // Asked for the output of an assignment it never ran, it sends nothing. Stopped, the
        // shell ends (SIGTERM, or SIGKILL after the grace second) and its exit is reported at
        // once, though the `sleep` it started holds the output pipes and Foundation's
        // descriptor open (the receive would time out if the worker waited for either).
        try coordinator.send(.resendOutput(assignment: "other/1/0", from: 0))
        try coordinator.send(.stop(assignment: assignment, graceSeconds: 1))
        let ending = try coordinator.receive { if case .rankExited = $0 { return true } else { return false } }
        #expect(Self.output(ending).isEmpty, "no output for an assignment the worker never ran, nor new lines: \(ending)")
        guard case .rankExited(let exit)? = ending.last else { return }
        #expect(exit.signaled && [SIGTERM, SIGKILL].contains(exit.status), "\(exit)")
        // And the `sleep` went with it, as what a container runs ends with the container; so did
        // the one in a session of its own, which, orphaned, became the worker's child and was
        // reaped by it (gone, not a zombie: a zombie's parent is the worker, still running).
        func state(_ pid: Int32) -> Substring? {
            (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8))?.split(separator: " ").dropFirst(2).first
        }
        func pid(_ name: String) throws -> Int32 {
            try #require(Int32(try String(contentsOfFile: directory.file("work/echo/\(name).pid"), encoding: .utf8)
                .trimmingCharacters(in: .whitespacesAndNewlines)))
        }
        // One that also cleared its environment (no tag) is held by the rank's cgroup, where the
        // host gives ranks one (a writable cgroup2); elsewhere it escapes.
        let sleeper = try pid("sleeper"), daemon = try pid("daemon"), bare = try pid("bare")
        let cgroups = RankCgroup.available
        var gone = false
        for _ in 0..<100 where !gone {
            gone = [nil, "Z"].contains(state(sleeper)) && state(daemon) == nil && (!cgroups || state(bare) == nil)
            if !gone { usleep(100_000) }
        }
        let states = "\(sleeper) is \(state(sleeper) ?? "gone"), \(daemon) (own session) is \(state(daemon) ?? "gone"), "
            + "\(bare) (own session, no environment) is \(state(bare) ?? "gone")"
        #expect(gone, "the rank's leftovers still run: \(states)")
    }
}
