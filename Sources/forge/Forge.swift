// The root command.
import ArgumentParser
import Logging

struct Forge: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "forge",
        abstract: "Forge: distributed training for your own machines.",
        discussion: """
        Train a built-in model on one machine:
          forge train --algorithm mlp --train data/train.csv --validation data/test.csv --output out
        Predict with it:
          forge predict --model out/model.tar.gz --input data/test.csv
        """,
        version: "0.1.0",
        subcommands: [TrainCommand.self, PredictCommand.self, GenerateCommand.self, LaunchCommand.self, CoordinatorCommand.self, WorkerCommand.self, SubmitCommand.self, JobsCommand.self, DescribeCommand.self, LogsCommand.self, StopCommand.self, NodesCommand.self, KeygenCommand.self, InfoCommand.self, BenchCommand.self, ContainerCommand.self, ContainerExecCommand.self]
    )
}

/// Logging to standard error, set up once per process.
enum Log {
    nonisolated(unsafe) private static var ready = false

    static func logger(verbose: Bool = false) -> Logger {
        if !ready {
            LoggingSystem.bootstrap { label in
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = .info
                return handler
            }
            ready = true
        }
        var logger = Logger(label: "forge")
        logger.logLevel = verbose ? .debug : .info
        return logger
    }
}
