// `forge bench heartbeats`: many simulated workers on one process, for the coordinator's load
// benchmark. Each is its own DEALER socket with its own identity; each registers (labelled
// with an instance type no job asks for, so nothing is scheduled on it) and heartbeats once
// per period, spread evenly over the period.
import ArgumentParser
import ForgeTransport
import ForgeWire
import Foundation

struct HeartbeatBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "heartbeats",
        abstract: "Simulate many workers heartbeating to a coordinator (for scripts/bench-coordinator)."
    )

    @Option(help: "The coordinator's control endpoint.") var coordinator: String
    @Option(help: "Simulated workers.") var workers = 1000
    @Option(help: "Seconds to run.") var seconds = 30
    @Option(help: "Heartbeat period in milliseconds.") var period = 1000

    func run() throws {
        let context = try ZMQContext(maxSockets: workers + 64)
        var sockets: [ZMQSocket] = []
        var ids: [String] = []
        for index in 0..<workers {
            let id = "sim-\(getpid())-\(index)"
            let socket = try ZMQSocket(context, kind: .dealer)
            try socket.setIdentity(Array(id.utf8))
            try socket.setSendTimeout(0)
            try socket.connect(coordinator)
            let resources = WorkerResources(host: "sim-\(index)", cores: 1, memoryBytes: 1 << 30, instanceType: "ml.bench.simulated",
                                            instanceGroup: "simulated", pid: getpid())
            try socket.send(ControlMessage.register(worker: id, resources: resources).encoded(), more: false)
            sockets.append(socket)
            ids.append(id)
        }
        print("simulating \(workers) workers against \(coordinator) for \(seconds) s")
        let start = Date()
        var sent = 0, dropped = 0
        var next = 0
        while Date().timeIntervalSince(start) < Double(seconds) {
            // Worker i beats at i/workers of each period.
            let elapsed = Date().timeIntervalSince(start) * 1000
            let due = Int(elapsed / Double(period) * Double(workers))
            while next < due {
                let index = next % workers
                do {
                    try sockets[index].send(ControlMessage.heartbeat(worker: ids[index], running: []).encoded(), more: false)
                    sent += 1
                } catch {
                    dropped += 1
                }
                // Replies (registered, unknownWorker) are read and dropped so queues stay short.
                while (try? sockets[index].receiveMessageIfReady()) != nil {}
                next += 1
            }
            usleep(1000)
        }
        print("sent \(sent) heartbeats, \(dropped) could not be queued")
    }
}
