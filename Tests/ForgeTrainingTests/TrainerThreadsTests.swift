// A multi-threaded CPU device splits each batch across its threads: the result must match the
// single-threaded run up to float rounding, and repeat bit for bit at the same thread count.
import ForgeData
import ForgeTensor
import ForgeTraining
import Testing

@Suite struct TrainerThreadsTests {
    /// 300 records of 12 features in 3 classes; labels depend on the features.
    private func data(seed: UInt64) -> Dataset {
        SyntheticData.thresholdClasses(count: 300, width: 12, seed: seed)
    }

    private func train(threads: Int, dropout: String) throws -> (parameters: [Float], loss: Double) {
        let plan = try TrainingPlan.make(algorithm: .mlp, hyperparameters: [
            "hidden_layer_sizes": "32,16", "mini_batch_size": "64", "epochs": "4", "dropout": dropout, "seed": "3",
        ])
        let prepared = try PreparedData(plan: plan, train: data(seed: 1), validation: data(seed: 2))
        let result = try Trainer(plan: plan, data: prepared, device: CPUDevice(threadCount: threads)).run()
        return (result.model.parameters.flatMap(\.values), result.metrics.first { $0.name == "validation:loss" }?.value ?? .nan)
    }

    @Test(arguments: ["0", "0.3"])
    func twoThreadsMatchOneThread(dropout: String) throws {
        let one = try train(threads: 1, dropout: dropout)
        let two = try train(threads: 2, dropout: dropout)
        let scale = one.parameters.map { abs($0) }.max() ?? 1
        let difference = zip(one.parameters, two.parameters).map { abs($0 - $1) }.max() ?? 0
        // Only the order of the gradient sums differs (two partial sums added vs one sum), and
        // that rounding compounds over 20 Adam steps; measured ≈ 1e-6 relative.
        #expect(difference / scale <= 1e-4, "max |a − b| / max |a| = \(difference / scale)")
        #expect(abs(one.loss - two.loss) < 1e-3)
    }

    @Test func twoThreadsRepeatBitForBit() throws {
        let a = try train(threads: 2, dropout: "0.3")
        let b = try train(threads: 2, dropout: "0.3")
        #expect(a.parameters == b.parameters)
    }
}
