// Script mode's pure parts: hyperparameters become the arguments SageMaker's training toolkit
// gives a script (decoded as JSON where they parse, written as Python's str() writes them),
// reserved keys stay out, and image URIs pick a framework environment.
import ForgeCoordinator
import ForgeTestSupport
import Foundation
import Testing

@Suite struct ScriptModeUnitTests {
    @Test func hyperparametersBecomeTheToolkitsArguments() {
        let hyperparameters = [
            "epochs": "3", "learning-rate": "0.01", "optimizer": "\"adam\"", "layers": "[64, 32]", "verbose": "true",
            "plain": "not json", "k": "5", "scale": "1.0", "tiny": "1e-05", "nested": "{\"b\": 2, \"a\": \"x\"}", "nothing": "null",
            "sagemaker_program": "\"train.py\"", "sagemaker_submit_directory": "\"s3://b/k.tar.gz\"", "_tuning_objective_metric": "loss",
        ]
        #expect(ScriptHyperparameters.arguments(hyperparameters) == [
            "--epochs", "3", "-k", "5", "--layers", "[64, 32]", "--learning-rate", "0.01", "--nested", "a=x,b=2", "--nothing", "None",
            "--optimizer", "adam", "--plain", "not json", "--scale", "1.0", "--tiny", "1e-05", "--verbose", "True",
        ])
        #expect(ScriptHyperparameters.reserved("sagemaker_program", in: hyperparameters) == "train.py")
        #expect(ScriptHyperparameters.reserved("sagemaker_program", in: ["sagemaker_program": "train.py"]) == "train.py", "a raw string too")
        #expect(ScriptHyperparameters.argument(ScriptHyperparameters.decode(#"["a", "it's", true]"#)) == #"['a', 'it\'s', True]"#)
    }

    @Test func imagesPickTheirFramework() {
        #expect(ScriptFramework(image: "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3") == .sklearn)
        #expect(ScriptFramework(image: "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1") == .xgboost)
        #expect(ScriptFramework(image: "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.1-cpu-py310") == .pytorch)
        #expect(ScriptFramework(image: "my-registry/my-image:1") == .python)
        #expect(ScriptFramework.sklearn.packages.contains("pandas"))
    }

    @Test func packingNeverFollowsALinkOutOfTheModelFolder() throws {
        let directory = try TemporaryDirectory()
        _ = try directory.write("weights", to: "model/weights.bin")
        _ = try directory.write("secret", to: "outside/secret.txt")
        try FileManager.default.createSymbolicLink(atPath: directory.file("model/leak.txt"), withDestinationPath: directory.file("outside/secret.txt"))
        try FileManager.default.createSymbolicLink(atPath: directory.file("model/tree"), withDestinationPath: directory.file("outside"))
        let contents = ScriptArtifacts.contents(of: directory.file("model"))
        #expect(contents.map(\.name) == ["weights.bin"], "links and what lies behind them stay out: \(contents)")
        try ScriptArtifacts.pack(directory.file("model"), to: directory.file("model.tar.gz"))
        let listed = try ExternalTool.run(["tar", "-tzf", directory.file("model.tar.gz")])
        #expect(listed.text.split(separator: "\n") == ["weights.bin"], "\(listed.text)")
    }
}
