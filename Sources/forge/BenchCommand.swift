// `forge bench`: Forge's side of scripts/bench-compute. Each subcommand prints a human table
// and `RESULT {json}` lines that the script sets beside the anchors' figures.
import ArgumentParser
import ForgeData
import ForgeRandom
import ForgeTensor
import ForgeTraining
import Foundation

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure Forge's compute core (used by scripts/bench-compute).",
        subcommands: [GEMMBench.self, KernelBench.self, MLPBench.self, AllReduceBench.self, HeartbeatBench.self, PipelineBench.self, ZeroBench.self]
    )
}

/// Timing as the anchors do it: after a warm-up call, `repetitions` rounds of at least
/// `minimum` seconds each; returns the median round's seconds per call.
func medianTime(repetitions: Int, minimum: Double, _ body: () -> Void) -> Double {
    body()
    var calls = 1
    while true {
        let seconds = timeCalls(calls, body)
        if seconds >= minimum || calls > 1 << 20 { break }
        calls *= 2
    }
    let rounds = (0..<max(repetitions, 1)).map { _ in timeCalls(calls, body) / Double(calls) }.sorted()
    return rounds[rounds.count / 2]
}

private func timeCalls(_ calls: Int, _ body: () -> Void) -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    for _ in 0..<calls { body() }
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}

func emit(_ fields: [String: any Sendable]) {
    guard let data = try? JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys]),
          let text = String(data: data, encoding: .utf8) else { return }
    print("RESULT " + text)
}

struct GEMMBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "gemm", abstract: "sgemm GFLOP/s through the CPU device.")

    @Option(help: "Matrix sizes (n for n×n×n), comma-separated.") var sizes = "256,512,1024,2048"
    @Option(help: "Threads.") var threads = 1
    @Option(help: "Timed rounds; the median is reported.") var reps = 5
    @Option(help: "Minimum seconds per round.") var minTime = 0.2

    func run() throws {
        let device = CPUDevice(threadCount: threads)
        print("sgemm, Forge CPU device, \(threads) thread(s), OpenBLAS core \(BLASRuntime.coreName)")
        for n in sizes.split(separator: ",").compactMap({ Int($0) }) {
            var random = RandomStream(seed: 1)
            let a = Tensor((0..<n * n).map { _ in random.nextUnit() }, shape: [n, n], on: device)
            let b = Tensor((0..<n * n).map { _ in random.nextUnit() }, shape: [n, n], on: device)
            let c = Tensor(zeros: [n, n], on: device)
            let seconds = medianTime(repetitions: reps, minimum: minTime) {
                device.gemm(a, transposeA: false, b, transposeB: false, into: c, alpha: 1, beta: 0)
            }
            let gflops = 2 * Double(n) * Double(n) * Double(n) / seconds / 1e9
            print(String(format: "  n=%5d  %8.1f GFLOP/s", n, gflops))
            emit(["kind": "gemm", "n": n, "threads": threads, "gflops": gflops, "core": BLASRuntime.coreName])
        }
    }
}

struct KernelBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "kernels", abstract: "Elementwise kernels' GB/s beside memcpy.")

    @Option(help: "MiB per array.") var mib = 256
    @Option(help: "Threads.") var threads = 1
    @Option(help: "Timed rounds; the median is reported.") var reps = 5

    func run() throws {
        let device = CPUDevice(threadCount: threads)
        let count = mib << 18
        let x = Tensor(zeros: [count], on: device), y = Tensor(zeros: [count], on: device)
        let m = Tensor(zeros: [count], on: device), v = Tensor(zeros: [count], on: device)
        device.fill(x, value: 0.5)
        device.fill(y, value: 0.25)
        let matrixX = x.reshaped([count / 1024, 1024]), matrixY = y.reshaped([count / 1024, 1024])
        let bias = Tensor(zeros: [1024], on: device)
        var step = 0
        let bytes = Double(count * 4)
        // (name, bytes moved per call, body)
        let kernels: [(String, Double, () -> Void)] = [
            ("memcpy", 2 * bytes, { memcpy(y.hostPointer, x.hostPointer, count * 4) }),
            ("fill", bytes, { device.fill(y, value: 1) }),
            ("axpby", 3 * bytes, { device.axpby(alpha: 0.5, x, beta: 0.5, y) }),
            ("multiply", 3 * bytes, { device.multiply(x, y, into: y) }),
            ("bias_relu", 2 * bytes, { device.biasActivation(matrixX, bias: bias, activation: .relu, into: matrixY) }),
            ("adam", 7 * bytes, {
                step += 1
                device.adamStep(parameters: y, gradients: x, firstMoment: m, secondMoment: v, AdamParameters(learningRate: 1e-3, step: step))
            }),
        ]
        print("elementwise kernels, \(mib) MiB arrays, \(threads) thread(s) (GB/s counts bytes read + written; memcpy: read + write)")
        for (name, moved, body) in kernels {
            let seconds = medianTime(repetitions: reps, minimum: 0.3, body)
            let rate = moved / seconds / 1e9
            print(String(format: "  %-10@ %7.1f GB/s", name as NSString, rate))
            emit(["kind": "kernel", "name": name, "threads": threads, "gbps": rate, "mib": mib])
        }
    }
}

struct MLPBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mlp",
        abstract: "MLP 784-512-256-10 (ReLU, batch 128, Adam, float32) training samples/s through forge's trainer."
    )

    @Option(help: "Timed epochs (after one untimed warm-up epoch).") var epochs = 3
    @Option(help: "The global batch (under forge launch: split across the ranks).") var batch = 128
    @Option(help: "Threads.") var threads = 1
    @Option(help: "ZeRO stage (forge_zero_stage): 1 shards the optimizer's state and step across the ranks. (default: the trainer's choice)")
    var zeroStage: Int?
    @Option(help: "The IDX channel folder to train on (scripts/make-synthetic-mnist writes one).")
    var train: String

    func run() throws {
        let dataset = try Channel.load(path: train, format: .idx).combined()
        var hyperparameters = [
            "hidden_layer_sizes": "512,256", "activation": "relu", "mini_batch_size": String(batch), "optimizer": "adam",
            "learning_rate": "0.001", "wd": "0", "epochs": String(epochs + 1), "normalize_data": "false", "seed": "1",
        ]
        if let zeroStage { hyperparameters["forge_zero_stage"] = String(zeroStage) }
        let plan = try TrainingPlan.make(algorithm: .mlp, hyperparameters: hyperparameters)
        var scaled = dataset
        scaled.features = scaled.features.map { $0 / 255 }
        let data = try PreparedData(plan: plan, train: scaled, validation: nil)
        let device = CPUDevice(threadCount: threads)
        let timer = EpochTimer()
        let environment = ProcessInfo.processInfo.environment
        let group = RankEnvironment.isRank(environment)
            ? try RankEnvironment.joinGroup(environment, clusterKey: nil, logger: Log.logger()) : nil
        let overlap = RankEnvironment.overlapReduction(environment, threads: threads)
        let result = try Trainer(plan: plan, data: data, device: device, group: group, overlapReduction: overlap).run(observer: timer)
        guard (group?.rank ?? 0) == 0 else { return }
        let rates = zip(timer.seconds, timer.samples).map { Double($1) / $0 }
        let steady = Array(rates.dropFirst()).sorted()
        let median = steady.isEmpty ? rates.last ?? 0 : steady[steady.count / 2]
        let ranks = group?.worldSize ?? 1
        print("MLP 784-512-256-10, global batch \(batch), Adam, \(ranks) rank(s) × \(threads) thread(s), core \(BLASRuntime.coreName)")
        for (index, rate) in rates.enumerated() {
            print(String(format: "  epoch %d: %8.0f samples/s%@", index + 1, rate, index == 0 ? " (warm-up, not counted)" : ""))
        }
        print(String(format: "  median of steady-state epochs: %.0f samples/s", median))
        let steps = timer.stepSeconds.sorted()
        let quantile = { (q: Double) in steps.isEmpty ? 0 : steps[min(steps.count - 1, Int(q * Double(steps.count)))] * 1000 }
        let stepRate = quantile(0.5) > 0 ? Double(batch) / quantile(0.5) * 1000 : 0
        print(String(format: "  step time: p10 %.2f ms, median %.2f ms, p90 %.2f ms (%.0f samples/s at the median step)",
                     quantile(0.1), quantile(0.5), quantile(0.9), stepRate))
        emit(["kind": "mlp", "threads": threads, "ranks": ranks, "batch": batch, "samples_per_s": median, "epoch_sps": rates,
              "step_ms_p10": quantile(0.1), "step_ms_p50": quantile(0.5), "step_ms_p90": quantile(0.9), "samples_per_s_median_step": stepRate,
              "loss_last": result.metrics.first?.value ?? 0, "core": BLASRuntime.coreName])
    }
}

/// Times each epoch's steps (from its start to its last step, excluding evaluation).
final class EpochTimer: TrainingObserver {
    var seconds: [Double] = []
    var samples: [Int] = []
    /// Each timed step's wall time in seconds, from the end of the step before it (the first
    /// step of an epoch: from the epoch's start), over every epoch but the warm-up.
    var stepSeconds: [Double] = []
    private var start: UInt64 = 0
    private var last: UInt64 = 0
    private var batchesSeen = 0
    private var recordsPerEpoch = 0

    func trainingStarted(_ summary: RunSummary) { recordsPerEpoch = summary.trainRecords }

    func epochStarted(epoch: Int, batches: Int) {
        start = DispatchTime.now().uptimeNanoseconds
        last = start
    }

    func stepCompleted(epoch: Int, batch: Int, batches: Int, step: Int, loss: Double) {
        let now = DispatchTime.now().uptimeNanoseconds
        if !seconds.isEmpty { stepSeconds.append(Double(now - last) / 1e9) }
        last = now
        if batch == batches {
            seconds.append(Double(now - start) / 1e9)
            samples.append(recordsPerEpoch)
        }
    }
}
