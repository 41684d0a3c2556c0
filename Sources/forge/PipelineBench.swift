// `forge bench pipeline`: run as one stage of a pipeline under `forge launch --nproc P`, time
// GPipe and 1F1B steps over a stack of equal layers for several micro-batch counts, and print
// each configuration's measured bubble beside the theoretical one (used by scripts/bench-pipeline).
import ArgumentParser
import ForgeCollectives
import ForgeNN
import ForgeTensor
import ForgeTraining
import ForgeTransport
import Foundation

struct PipelineBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pipeline",
        abstract: "Time pipeline-parallel steps (one stage per rank of `forge launch`): bubble fraction and stashed activations.",
        shouldDisplay: false
    )

    @Option(help: "Micro-batch counts M, comma-separated.") var microBatches = "1,2,4,8"
    @Option(help: "Schedules, comma-separated: gpipe, 1f1b.") var schedules = "gpipe,1f1b"
    @Option(help: "Linear GELU layers in the model (all width × width).") var layers = 8
    @Option(help: "Layer width.") var width = 512
    @Option(help: "Rows per micro-batch.") var rows = 64
    @Option(help: "Untimed steps per configuration.") var warmup = 2
    @Option(help: "Timed steps per configuration (their times are summed).") var steps = 5
    @Option(help: "Compute threads per rank.") var threads = 1
    @Option(help: "Data plane: tcp (ZeroMQ) or shm (shared-memory rings between ranks on one host).") var transport = "shm"
    @Option(help: "Seconds a rank waits for a peer before failing.") var timeout = 60

    func run() throws {
        let environment = ProcessInfo.processInfo.environment
        guard let rank = environment["RANK"].flatMap(Int.init), let worldSize = environment["WORLD_SIZE"].flatMap(Int.init),
              let address = environment["MASTER_ADDR"], let port = environment["MASTER_PORT"] else {
            throw ValidationError("run me under forge launch (RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT are not set)")
        }
        let counts = microBatches.split(separator: ",").compactMap { Int($0) }
        let kinds = try schedules.split(separator: ",").map { name in
            guard let kind = PipelineScheduleKind(rawValue: String(name)) else {
                throw ValidationError("--schedules takes gpipe and 1f1b, not \(name)")
            }
            return kind
        }
        guard ["tcp", "shm"].contains(transport) else { throw ValidationError("--transport must be tcp or shm, not \(transport)") }
        guard !counts.isEmpty, counts.allSatisfy({ $0 >= 1 }), layers >= worldSize, rows >= 1 else {
            throw ValidationError("need micro-batch counts ≥ 1, rows ≥ 1 and at least one layer per rank")
        }
        do {
            let configuration = RendezvousConfiguration(rank: rank, worldSize: worldSize, master: "tcp://\(address):\(port)",
                                                        timeoutMilliseconds: timeout * 1000)
            let group = try ProcessGroup.join(configuration, bind: "tcp://127.0.0.1:*", key: nil, timeoutMilliseconds: timeout * 1000,
                                              sharedMemory: transport == "shm")
            let device = CPUDevice(threadCount: threads)
            let makeLayers = { [layers, width] () -> [any Layer] in (0..<layers).map { _ in Linear(width, width, activation: .gelu) } }
            let partition = try StagePartition(balancing: Array(repeating: width * width + width, count: layers), stages: worldSize)
            let cores = ProcessInfo.processInfo.activeProcessorCount
            let oversubscribed = worldSize * threads > cores
            if rank == 0 {
                print("pipeline: \(worldSize) stages (\(partition)), \(layers) × Linear \(width)→\(width) GELU, \(rows) rows per micro-batch, "
                      + "\(threads) thread(s) per rank over \(transport)"
                      + (oversubscribed ? ", oversubscribed (\(worldSize) ranks on \(cores) cores)" : ""))
                print(" P   M  schedule  bubble(measured)  bubble(theory)  stash(µb)  stash(MiB)  step(ms)")
            }
            for (index, (kind, count)) in kinds.flatMap({ kind in counts.map { (kind, $0) } }).enumerated() {
                let stage = PipelineStage(makeLayers: makeLayers, partition: partition, stage: rank, group: group, schedule: kind,
                                          microBatches: count, maxMicroBatchRows: rows, loss: SoftmaxCrossEntropy(), seed: 1, device: device)
                let globalRows = rows * count
                let inputs = stage.isFirst
                    ? Tensor((0..<(globalRows * width)).map { Float(($0 * 7919) % 2003) / 1001.5 - 1 }, shape: [globalRows, width], on: device)
                    : nil
                let targets = stage.isLast ? Tensor((0..<globalRows).map { Float(($0 * 31) % width) }, shape: [globalRows], on: device) : nil
                let split = PipelineMicroBatch.split(rows: globalRows, into: count)
                var wait = Duration.zero, total = Duration.zero, peakMicroBatches = 0, peakBytes = 0
                for step in 0..<(warmup + steps) {
                    let stats = try stage.forwardBackward(split, inputs: inputs, targets: targets, globalRows: globalRows, step: step).stats
                    guard step >= warmup else { continue }
                    wait += stats.receiveWait
                    total += stats.stepTime
                    peakMicroBatches = max(peakMicroBatches, stats.peakStashedMicroBatches)
                    peakBytes = max(peakBytes, stats.peakStashedBytes)
                }
                // Every stage's figures go to rank 0: [wait s, step s, peak micro-batches, peak bytes].
                var mine = [Float(wait / .seconds(1)), Float(total / .seconds(1)), Float(peakMicroBatches), Float(peakBytes)]
                let tag = UInt32(0x0400_0000 + index)
                if rank != 0 {
                    try mine.withUnsafeBufferPointer { try group.send($0, to: 0, tag: tag) }
                    continue
                }
                var all = [mine]
                for peer in 1..<worldSize {
                    try mine.withUnsafeMutableBufferPointer { try group.receive($0, from: peer, tag: tag) }
                    all.append(mine)
                }
                let bubble = all.map { $0[1] > 0 ? Double($0[0] / $0[1]) : 0 }.reduce(0, +) / Double(worldSize)
                let theory = PipelineSchedule.idealBubbleFraction(stages: worldSize, microBatches: count)
                let stashMicroBatches = Int(all.map { $0[2] }.max() ?? 0)
                let stashMiB = Double(all.map { $0[3] }.max() ?? 0) / Double(1 << 20)
                let stepMilliseconds = Double(all.map { $0[1] }.max() ?? 0) / Double(steps) * 1000
                let name = kind.rawValue.padding(toLength: 8, withPad: " ", startingAt: 0)
                print(String(format: "%2d %3d  ", worldSize, count) + name
                      + String(format: "  %16.3f  %14.3f  %9d  %10.2f  %8.1f", bubble, theory, stashMicroBatches, stashMiB, stepMilliseconds))
                emit(["kind": "pipeline", "stages": worldSize, "micro_batches": count, "schedule": kind.rawValue,
                      "bubble": bubble, "theory": theory, "stash_micro_batches": stashMicroBatches, "stash_mib": stashMiB,
                      "step_ms": stepMilliseconds, "oversubscribed": oversubscribed, "cores": cores,
                      "stage_bubbles": all.map { $0[1] > 0 ? Double($0[0] / $0[1]) : 0 }])
            }
        } catch {
            FileHandle.standardError.write(Data("error: rank \(rank): \(error)\n".utf8))
            throw ExitCode.failure
        }
    }
}
