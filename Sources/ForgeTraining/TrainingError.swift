// Errors of a training run that are not about hyperparameters: data that does not fit the
// task, unreadable checkpoints or artifacts, files that cannot be written.

import ForgeCollectives

/// Why a training or prediction run could not go on.
public enum TrainingError: Error, Equatable, CustomStringConvertible {
    /// A label that does not suit the predictor type.
    case badLabel(channel: String, record: Int, value: Float, expected: String)
    /// The channel has no records.
    case emptyChannel(String)
    /// Train and validation (or model and input) widths differ.
    case widthMismatch(channel: String, expected: Int, found: Int)
    /// A checkpoint that cannot be used.
    case badCheckpoint(path: String, reason: String)
    /// A model artifact that cannot be used.
    case badModel(path: String, reason: String)
    /// A file or folder could not be written or read.
    case io(path: String, reason: String)
    /// The ranks' group failed here (a broken connection, a bad call).
    case collective(String)
    /// Another rank died or went silent first, and this one cannot go on without it: the
    /// failure to look for is that rank's (see `group(_:)`).
    case peerFailed(String)
    /// A stop was asked for (SIGTERM, SIGINT): training ended after `step`, every rank at the
    /// same step, and `checkpoint` (if any) holds it for a resume.
    case stopped(step: Int, checkpoint: String?)
    /// The parallel layout does not fit the ranks or the model.
    case layout(String)

    /// `error` of the ranks' group, as `.peerFailed` when it says a peer was lost first.
    public static func group(_ error: CollectiveError) -> TrainingError {
        error.peerFailedFirst ? .peerFailed(error.description) : .collective(error.description)
    }

    public var description: String {
        switch self {
        case .badLabel(let channel, let record, let value, let expected):
            return "\(channel) channel, record \(record + 1): label \(value) is not \(expected)"
        case .emptyChannel(let channel):
            return "the \(channel) channel has no records"
        case .widthMismatch(let channel, let expected, let found):
            return "the \(channel) data has \(found) features per record, the model expects \(expected)"
        case .badCheckpoint(let path, let reason):
            return "cannot resume from checkpoint \(path): \(reason) (delete it to start afresh)"
        case .badModel(let path, let reason):
            return "cannot use model \(path): \(reason)"
        case .io(let path, let reason):
            return "\(path): \(reason)"
        case .collective(let reason), .peerFailed(let reason):
            return "the ranks' group failed: \(reason)"
        case .stopped(let step, let checkpoint):
            return "stopped on request after step \(step)" + (checkpoint.map { "; checkpoint \($0) holds it (run again to resume)" } ?? "")
        case .layout(let reason):
            return "parallel layout: \(reason)"
        }
    }
}
