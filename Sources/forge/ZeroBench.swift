// `forge bench zero`: run as one rank under `forge launch --nproc N`, build the transformer-lm
// trainer with the optimizer state replicated (forge_zero_stage 0) and sharded (1), time a few
// steps of each, and print each rank's optimizer memory beside the replicated figure (used by
// scripts/bench-pipeline).
import ArgumentParser
import ForgeCollectives
import ForgeData
import ForgeTensor
import ForgeTraining
import Foundation

struct ZeroBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "zero",
        abstract: "Per-rank optimizer memory and step time of transformer-lm with and without ZeRO-1 (under forge launch).",
        shouldDisplay: false
    )

    @Option(help: "Transformer blocks.") var layers = 4
    @Option(help: "Residual width (d_model).") var width = 256
    @Option(help: "Timed steps per setting.") var steps = 3

    func run() throws {
        let environment = ProcessInfo.processInfo.environment
        let group = try RankEnvironment.joinGroup(environment, clusterKey: nil, logger: Log.logger())
        var text = [UInt8]()
        text.reserveCapacity(200_000)
        for index in 0..<200_000 {
            let letter = (index * 7 + index / 13) % 26
            text.append(UInt8(97 + letter))
        }
        var results = [(stage: Int, bytes: Int, seconds: Double)]()
        for stage in [0, 1] {
            let plan = try TrainingPlan.make(algorithm: .transformerLM, hyperparameters: [
                "num_layers": String(layers), "d_model": String(width), "num_heads": "4", "context_length": "32",
                "mini_batch_size": String(4 * group.worldSize), "max_steps": String(steps), "forge_zero_stage": String(stage),
            ])
            let windows = try TextCorpus(bytes: text).windows(contextLength: 32, channel: "generated")
            let data = try PreparedData(plan: plan, train: windows, validation: nil)
            let trainer = try Trainer(plan: plan, data: data, device: CPUDevice(threadCount: 1), group: group)
            let clock = ContinuousClock()
            let start = clock.now
            _ = try trainer.run()
            let elapsed = clock.now - start
            results.append((stage, trainer.optimizerStateBytes, Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18))
        }
        // Every rank's figures, to rank 0: the largest shard is what a rank must fit.
        var figures = results.flatMap { [Float($0.bytes), Float($0.seconds)] }
        try figures.withUnsafeMutableBufferPointer { buffer throws(CollectiveError) in try group.allReduce(buffer, op: .max) }
        guard group.rank == 0 else { return }
        let replicated = Double(figures[0]), sharded = Double(figures[2])
        let row: [String: Any] = ["ranks": group.worldSize, "parameters_mib": replicated / 2 / 1_048_576,
                                  "replicated_mib": replicated / 1_048_576, "sharded_mib": sharded / 1_048_576,
                                  "ratio": sharded / replicated, "ideal": 1 / Double(group.worldSize),
                                  "replicated_step_s": Double(figures[1]) / Double(steps), "sharded_step_s": Double(figures[3]) / Double(steps)]
        let json = try JSONSerialization.data(withJSONObject: row, options: [.sortedKeys])
        print("RESULT " + String(decoding: json, as: UTF8.self))
    }
}
