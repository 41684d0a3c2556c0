// `forge predict`: batch prediction with a trained built-in model.
import ArgumentParser
import ForgeData
import ForgeTensor
import ForgeTraining
import Foundation

struct PredictCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "predict",
        abstract: "Predict with a trained model.tar.gz on CSV records.",
        discussion: """
        Input rows hold the features only (SageMaker inference CSV), or a label first and then \
        the features (a training CSV); with labels, the accuracy or MSE is reported on stderr. \
        Each output line is the predicted label (classifiers) or value (regressors), followed by \
        the class probabilities with --probabilities.
        """
    )

    @Option(name: .long, help: "The model.tar.gz written by forge train.")
    var model: String

    @Option(name: .long, help: "CSV input: a file or a folder of files.")
    var input: String

    @Option(name: .long, help: "Output CSV (default: standard output).")
    var output: String?

    @Flag(name: .long, help: "CSV files start with a header line.")
    var csvHeader = false

    @Flag(name: .long, help: "Append class probabilities to each line.")
    var probabilities = false

    @Option(name: .long, help: "Compute threads.")
    var threads: Int = 1

    func run() throws {
        let logger = Log.logger()
        do {
            guard let bytes = FileManager.default.contents(atPath: model) else {
                throw TrainingError.io(path: model, reason: "cannot read the model file")
            }
            let trained = try TrainedModel(archive: [UInt8](bytes), path: model)
            let width = trained.description.inputWidth
            let channel = try Channel.load(path: input, format: .csv, csv: CSVOptions(hasHeader: csvHeader))
            let data = try channel.combined()
            // The reader takes the first column as a label; without labels, put it back.
            let labelled: Bool
            var features: [Float]
            if data.width == width {
                labelled = true
                features = data.features
            } else if data.width + 1 == width {
                labelled = false
                features = []
                features.reserveCapacity(data.count * width)
                for row in 0..<data.count {
                    features.append(data.labels[row])
                    features.append(contentsOf: data.row(row))
                }
            } else {
                throw TrainingError.widthMismatch(channel: "input", expected: width, found: data.width)
            }
            let predictor = try Predictor(model: trained, device: CPUDevice(threadCount: threads), path: model)
            let predictions = try predictor.predict(features: features, width: width)
            var text = ""
            text.reserveCapacity(predictions.count * 8)
            let isClassifier = trained.description.predictorType.isClassifier
            for prediction in predictions {
                text += isClassifier ? String(Int(prediction.label)) : String(prediction.label)
                if probabilities, !prediction.probabilities.isEmpty {
                    text += "," + prediction.probabilities.map { String(format: "%.6f", $0) }.joined(separator: ",")
                }
                text += "\n"
            }
            if let output {
                try Data(text.utf8).write(to: URL(fileURLWithPath: output))
            } else {
                FileHandle.standardOutput.write(Data(text.utf8))
            }
            if labelled {
                let n = Double(predictions.count)
                if isClassifier {
                    let correct = zip(predictions, data.labels).filter { $0.label == $1 }.count
                    logger.info("accuracy=\(MetricLine.fixed(Double(correct) / n)) on \(predictions.count) labelled records")
                } else {
                    let sse = zip(predictions, data.labels).reduce(0.0) { $0 + pow(Double($1.0.label - $1.1), 2) }
                    logger.info("mse=\(MetricLine.fixed(sse / n)) on \(predictions.count) labelled records")
                }
            }
        } catch {
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            throw ExitCode.failure
        }
    }
}
