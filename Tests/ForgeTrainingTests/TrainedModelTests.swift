// Tests of the model artifact: model.tar.gz round trips exactly, other tools read it (Python's
// tarfile and safetensors, with PyTorch's names and layouts), and every kind of bad archive
// is TrainingError.badModel.
import ForgeArchive
import ForgeData
import ForgeTensor
import ForgeTestSupport
import ForgeTraining
import Foundation
import Testing

@Suite struct TrainedModelTests {
    private func trainedModel(_ algorithm: AlgorithmKind = .mlp, _ values: [String: String] = ["hidden_layer_sizes": "6,5", "epochs": "2"],
                              data: Dataset = SyntheticData.blobs(count: 30, width: 4, classes: 3, seed: 1)) throws -> TrainedModel {
        let plan = try TrainingPlan.make(algorithm: algorithm, hyperparameters: values)
        let prepared = try PreparedData(plan: plan, train: data, validation: nil)
        return try Trainer(plan: plan, data: prepared, device: CPUDevice(threadCount: 1)).run().model
    }

    private func archiveError(_ bytes: [UInt8]) -> TrainingError? {
        do {
            _ = try TrainedModel(archive: bytes, path: "m.tar.gz")
            return nil
        } catch {
            return error
        }
    }

    private func expectBadModel(_ error: TrainingError?, mentioning text: String, sourceLocation: SourceLocation = #_sourceLocation) {
        guard case .badModel(path: "m.tar.gz", let reason)? = error else {
            Issue.record("expected badModel, got \(String(describing: error))", sourceLocation: sourceLocation)
            return
        }
        #expect(reason.contains(text), "\(reason)", sourceLocation: sourceLocation)
    }

    /// The archive's model.json as a mutable JSON object.
    private func modelJSON(_ archive: [UInt8]) throws -> (entries: [TarEntry], json: [String: Any]) {
        let entries = try TarArchive.readGzipped(archive)
        let json = try #require(entries.first { $0.name == "model.json" })
        return (entries, try #require(try JSONSerialization.jsonObject(with: Data(json.bytes)) as? [String: Any]))
    }

    private func replacing(_ name: String, with bytes: [UInt8], in entries: [TarEntry]) throws -> [UInt8] {
        try TarArchive.writeGzipped(entries.map { $0.name == name ? .file(name, bytes: bytes) : $0 })
    }

    @Test func archiveRoundTripIsExact() throws {
        let model = try trainedModel()
        let archive = try model.archive()
        #expect(archive.prefix(2) == [0x1F, 0x8B])
        #expect(try TarArchive.readGzipped(archive).map(\.name) == ["model.safetensors", "model.json"])
        let reloaded = try TrainedModel(archive: archive, path: "m.tar.gz")
        #expect(reloaded.description == model.description)
        expectBitIdentical(model, reloaded)
        // Writing is deterministic: the same model gives the same bytes.
        #expect(try reloaded.archive() == archive)
    }

    @Test func modelJSONDescribesTheModel() throws {
        let model = try trainedModel()
        let description = model.description
        #expect(description.formatVersion == 1)
        #expect(description.algorithm == .mlp)
        #expect(description.predictorType == .multiclassClassifier)
        #expect(description.inputWidth == 4)
        #expect(description.classes == [0, 1, 2])
        #expect(description.model.layers == [.linear(4, 6, .relu), .linear(6, 5, .relu), .linear(5, 3, .identity)])
        #expect(description.hyperparameters["hidden_layer_sizes"] == "6,5")
        #expect(description.hyperparameters["epochs"] == "2")
        #expect(description.featureScaling?.width == 4)
        #expect(model.parameters.map(\.name) == ["layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias",
                                                  "layers.2.weight", "layers.2.bias"])
        #expect(model.parameters.map(\.shape) == [[6, 4], [6], [5, 6], [5], [3, 5], [3]])
        let (_, json) = try modelJSON(model.archive())
        #expect(json["input_width"] as? Int == 4)
        #expect(json["predictor_type"] as? String == "multiclass_classifier")
        #expect(json["algorithm"] as? String == "mlp")
        #expect(json["format_version"] as? Int == 1)
    }

    @Test func pythonReadsTheArchiveAndWeights() throws {
        let scratch = try TemporaryDirectory()
        let model = try trainedModel()
        try scratch.write(model.archive(), to: "model.tar.gz")
        let script = """
        import io, json, sys, tarfile
        from safetensors.numpy import load
        with tarfile.open(sys.argv[1], "r:gz") as archive:
            names = archive.getnames()
            weights = load(archive.extractfile("model.safetensors").read())
            description = json.load(archive.extractfile("model.json"))
        print(json.dumps({"names": names, "input_width": description["input_width"],
                          "tensors": {k: {"shape": list(v.shape), "dtype": str(v.dtype), "values": v.ravel().tolist()}
                                      for k, v in weights.items()}}))
        """
        let object = try #require(try ExternalTool.pythonJSON(script, [scratch.file("model.tar.gz")]) as? [String: Any])
        #expect(Set(object["names"] as? [String] ?? []) == ["model.safetensors", "model.json"])
        #expect(object["input_width"] as? Int == 4)
        let tensors = try #require(object["tensors"] as? [String: [String: Any]])
        #expect(Set(tensors.keys) == Set(model.parameters.map(\.name)))
        for parameter in model.parameters {
            let tensor = try #require(tensors[parameter.name])
            #expect(tensor["shape"] as? [Int] == parameter.shape, "\(parameter.name)")
            #expect(tensor["dtype"] as? String == "float32")
            let values = (tensor["values"] as? [Double] ?? []).map(Float.init)
            #expect(values.map(\.bitPattern) == parameter.values.map(\.bitPattern), "\(parameter.name)")
        }
    }

    @Test func notAnArchiveIsBadModel() throws {
        expectBadModel(archiveError(Array("label,a,b\n1,2,3\n".utf8)), mentioning: "is it a model.tar.gz written by forge train?")
        expectBadModel(archiveError([]), mentioning: "missing gzip magic bytes")
        let archive = try trainedModel().archive()
        expectBadModel(archiveError(Array(archive.prefix(archive.count / 2))), mentioning: "stream ends early")
        // A gzipped tar without the model's files.
        expectBadModel(archiveError(try TarArchive.writeGzipped([.file("README", bytes: [0x41])])),
                       mentioning: "model.json is missing from the archive")
        let entries = try TarArchive.readGzipped(archive)
        expectBadModel(archiveError(try TarArchive.writeGzipped(entries.filter { $0.name != "model.safetensors" })),
                       mentioning: "model.safetensors is missing from the archive")
    }

    @Test func inconsistentModelJSONIsBadModel() throws {
        let archive = try trainedModel().archive()
        let (entries, json) = try modelJSON(archive)
        func with(_ change: (inout [String: Any]) -> Void) throws -> [UInt8] {
            var edited = json
            change(&edited)
            return try replacing("model.json", with: [UInt8](JSONSerialization.data(withJSONObject: edited)), in: entries)
        }
        expectBadModel(archiveError(try replacing("model.json", with: Array("{".utf8), in: entries)), mentioning: "model.json is malformed")
        expectBadModel(archiveError(try with { $0["input_width"] = 5 }), mentioning: "inconsistent network")
        expectBadModel(archiveError(try with { $0["format_version"] = 2 }), mentioning: "unknown format_version 2")
        expectBadModel(archiveError(try with { $0["predictor_type"] = "ranker" }), mentioning: "model.json is malformed")
        expectBadModel(archiveError(try with { json in
            var model = json["model"] as? [String: Any] ?? [:]
            var layers = model["layers"] as? [[String: Any]] ?? []
            layers[1]["inputs"] = 7
            model["layers"] = layers
            json["model"] = model
        }), mentioning: "inconsistent network")
        expectBadModel(archiveError(try with { json in
            var scaling = json["feature_scaling"] as? [String: Any] ?? [:]
            scaling["offset"] = [0, 0]
            json["feature_scaling"] = scaling
        }), mentioning: "feature scaling has the wrong width")
        expectBadModel(archiveError(try replacing("model.safetensors", with: [1, 2, 3], in: entries)), mentioning: "model.safetensors")
        // Classes that do not match the output layer (prediction indexes them by output column).
        expectBadModel(archiveError(try with { $0["classes"] = [0] }), mentioning: "predictor_type or classes do not match")
        expectBadModel(archiveError(try with { $0["predictor_type"] = "binary_classifier" }),
                       mentioning: "predictor_type or classes do not match")
        // Only the classes' labels may differ from 0..<n.
        let relabelled = try TrainedModel(archive: with { $0["classes"] = [5, 6, 7] }, path: "m.tar.gz")
        #expect(relabelled.description.classes == [5, 6, 7])
    }

    @Test func wrongTensorsAreBadModelWhenBuilt() throws {
        let model = try trainedModel()
        let entries = try TarArchive.readGzipped(model.archive())
        func withTensors(_ tensors: [SafeTensor]) throws -> TrainedModel {
            let weights = try SafetensorsFile(tensors: tensors).encoded()
            return try TrainedModel(archive: replacing("model.safetensors", with: weights, in: entries), path: "m.tar.gz")
        }
        func predictorError(_ model: TrainedModel) -> TrainingError? {
            do {
                _ = try Predictor(model: model, device: CPUDevice(threadCount: 1), path: "m.tar.gz")
                return nil
            } catch {
                return error
            }
        }
        let transposed = try withTensors(model.parameters.map {
            SafeTensor(name: $0.name, shape: $0.name == "layers.0.weight" ? [4, 6] : $0.shape, floats: $0.values)
        })
        expectBadModel(predictorError(transposed), mentioning: "layers.0.weight")
        // A missing tensor: the parameter count no longer matches model.json, refused on reading.
        let missing = try SafetensorsFile(tensors: model.parameters.filter { $0.name != "layers.2.bias" }.map {
            SafeTensor(name: $0.name, shape: $0.shape, floats: $0.values)
        }).encoded()
        expectBadModel(archiveError(try replacing("model.safetensors", with: missing, in: entries)), mentioning: "declares")
        // The same count under a wrong name is refused when the network is built.
        let renamed = try withTensors(model.parameters.map {
            SafeTensor(name: $0.name == "layers.2.bias" ? "layers.2.offset" : $0.name, shape: $0.shape, floats: $0.values)
        })
        expectBadModel(predictorError(renamed), mentioning: "layers.2.bias")
        let halves = SafeTensor(name: "layers.0.weight", dtype: .f16, shape: [6, 4], bytes: [UInt8](repeating: 0, count: 48))
        let notFloat = try SafetensorsFile(tensors: [halves]).encoded()
        expectBadModel(archiveError(try replacing("model.safetensors", with: notFloat, in: entries)), mentioning: "not float32")
    }
}
