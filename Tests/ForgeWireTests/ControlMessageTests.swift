// Control-plane messages: every kind survives encoding and decoding; anything else is an error
// that names the problem, never a crash (fuzzed).
import ForgeTestSupport
import ForgeWire
import Foundation
import Testing

@Suite struct ControlMessageTests {
    static let samples: [ControlMessage] = [
        .register(worker: "w-1", resources: WorkerResources(host: "node-a", cores: 2, memoryBytes: 24 << 30,
                                                            instanceType: "ml.m5.xlarge", instanceGroup: nil, pid: 4242)),
        .register(worker: "w-2", resources: WorkerResources(host: "node-b", cores: 4, memoryBytes: 1 << 30, instanceType: nil, instanceGroup: "g",
                                                            pid: 7, running: ["job/2/1"],
                                                            ranks: [RankReport(assignment: "job/2/1", worldSize: 3, exit: nil),
                                                                    RankReport(assignment: "job/2/0", worldSize: 3,
                                                                               exit: RankExit(assignment: "job/2/0", status: 0, signaled: false, lastError: ""))],
                                                            devices: ["cpu", "neuron:0"])),
        .heartbeat(worker: "w-1", running: ["job/1/0", "job/1/1"]),
        .rankStarted(assignment: "job/1/0", pid: 777),
        .rankOutput(assignment: "job/1/0", lines: ["epoch=1 step=8 train:loss=0.5", "ünïcödé"]),
        .rankOutput(assignment: "job/1/0", lines: ["epoch=2 step=16 train:loss=0.4"], first: 2),
        .rankOutput(assignment: "job/1/0", lines: ["epoch=1 step=8 train:loss=0.5"], first: 1, oldestKept: true),
        .resendOutput(assignment: "job/1/0", from: 7),
        .rankExited(RankExit(assignment: "job/1/1", status: 9, signaled: true, lastError: "")),
        .registered(worker: "w-1", heartbeatMilliseconds: 1000),
        .assign(RankAssignment(id: "job/1/0", job: "job", attempt: 1, rank: 0, worldSize: 2, arguments: ["forge", "train"],
                               environment: ["RANK": "0"], workDirectory: "/tmp/w/job/1/0")),
        .stop(assignment: "job/1/0", graceSeconds: 120),
        .unknownWorker(worker: "w-9"),
    ]

    @Test func everyKindRoundTrips() throws {
        for message in Self.samples {
            #expect(try ControlMessage(decoding: message.encoded()) == message)
        }
    }

    @Test func heartbeatsReadTheSameWhicheverWayTheyAreWritten() throws {
        let expected = ControlMessage.heartbeat(worker: "w-1", running: ["job/1/0", "jöb/2/1"])
        #expect(String(decoding: expected.encoded(), as: UTF8.self).hasPrefix(#"{"v":1,"type":"heartbeat","worker":"w-1","running":["#),
                "the shape the byte scan reads")
        for text in [String(decoding: expected.encoded(), as: UTF8.self),
                     #"{"running":["job/1/0","jöb/2/1"],"worker":"w-1","type":"heartbeat","v":1}"#,
                     #"{"v":1,"type":"heartbeat","worker":"w\u002d1","running":["job\/1\/0", "j\u00f6b/2/1"]}"#,
                     #" {"v":1, "type":"heartbeat", "worker":"w-1", "running":["job/1/0","jöb/2/1"]} "#] {
            #expect(try ControlMessage(decoding: Array(text.utf8)) == expected, "\(text)")
        }
        #expect(try ControlMessage(decoding: Array(#"{"v":1,"type":"heartbeat","worker":"","running":[]}"#.utf8)) == .heartbeat(worker: "", running: []))
        #expect(try ControlMessage(decoding: ControlMessage.heartbeat(worker: "q\"\\\n", running: ["a\u{1}"]).encoded())
                == .heartbeat(worker: "q\"\\\n", running: ["a\u{1}"]), "escapes take the general path")
        for bad in [#"{"v":1,"type":"heartbeat","worker":"w","running":["a"]}x"#,
                    #"{"v":1,"type":"heartbeat","worker":"w","running":[1]}"#, #"{"v":1,"type":"heartbeat","worker":"w\q","running":[]}"#] {
            #expect(throws: ControlDecodingError.self, "\(bad)") { try ControlMessage(decoding: Array(bad.utf8)) }
        }
    }

    @Test func assignmentIdsNameTheirJobAttemptAndRank() {
        #expect(RankAssignment.parse(id: "digits-1/3/2").map { [$0.job, String($0.attempt), String($0.rank)] } == ["digits-1", "3", "2"])
        for bad in ["", "job", "job/1", "job/x/0", "job/0/0", "job/1/-1", "/1/0", "job/1/0/extra"] {
            #expect(RankAssignment.parse(id: bad) == nil, "\(bad)")
        }
    }

    @Test func badFramesSayWhatIsWrong() {
        let cases: [(String, ControlDecodingError)] = [
            (#"{"v":2,"type":"heartbeat","worker":"w","running":[]}"#, .unsupportedVersion(2)),
            (#"{"v":1,"type":"explode"}"#, .unknownType("explode")),
            (#"{"v":1,"type":"heartbeat","worker":"w"}"#, .missingField(type: "heartbeat", field: "running")),
        ]
        for (text, expected) in cases {
            #expect(throws: expected) { try ControlMessage(decoding: Array(text.utf8)) }
        }
        #expect(throws: ControlDecodingError.self) { try ControlMessage(decoding: Array("not json".utf8)) }
        #expect(throws: ControlDecodingError.tooLarge(ControlMessage.maximumBytes + 1)) {
            try ControlMessage(decoding: [UInt8](repeating: 32, count: ControlMessage.maximumBytes + 1))
        }
    }

    @Test func fuzzedFramesDecodeOrThrowNeverCrash() {
        var total = (decoded: 0, rejected: 0)
        for (index, message) in Self.samples.enumerated() {
            let outcome = ByteMutator(interesting: ByteMutator.containerSyntax).fuzz(
                "control message \(index)", valid: message.encoded(), iterations: 12_000
            ) { seed, bytes throws(ControlDecodingError) in
                let decoded = try ControlMessage(decoding: bytes)
                // Whatever decodes re-encodes to a frame that decodes to the same message.
                #expect(try ControlMessage(decoding: decoded.encoded()) == decoded, "seed \(seed)")
            }
            total.decoded += outcome.decoded
            total.rejected += outcome.rejected
        }
        #expect(total.decoded > 0 && total.rejected > 0, "\(total)")
    }
}
