// A text channel for byte-level language models: every file's bytes, in channel order, cut
// into fixed windows of `contextLength + 1` bytes (inputs and their next-byte targets).
import Foundation

/// The bytes of a text channel and the training windows over them.
public struct TextCorpus: Sendable, Equatable {
    /// Every file's bytes (gzip files decompressed), concatenated in the channel's order.
    public var bytes: [UInt8]
    public var files: [String]

    public init(bytes: [UInt8], files: [String] = []) {
        self.bytes = bytes
        self.files = files
    }

    /// Reads the channel at `path` (a file or a folder; `Channel.files` order).
    public static func load(path: String) throws(DataError) -> TextCorpus {
        try load(files: Channel.files(at: path), channel: path)
    }

    /// Reads `files` (for instance one rank's `Shard.files`) in the order given.
    public static func load(files: [String], channel: String) throws(DataError) -> TextCorpus {
        guard !files.isEmpty else { throw .emptyChannel(path: channel) }
        var bytes = [UInt8]()
        for file in files { bytes += try FileBytes.readDecompressed(file) }
        guard !bytes.isEmpty else { throw .noRecords(file: channel, skipped: 0) }
        return TextCorpus(bytes: bytes, files: files)
    }

    /// Non-overlapping windows of `contextLength + 1` bytes (window i starts at byte
    /// i · contextLength, so consecutive windows share one byte and every byte but the first is
    /// a target once), as a data set of width `contextLength + 1` whose labels are unused.
    /// Throws when the text is shorter than one window.
    public func windows(contextLength: Int, channel: String) throws(DataError) -> Dataset {
        precondition(contextLength >= 1, "a context of at least one byte")
        let count = bytes.count > contextLength ? (bytes.count - 1) / contextLength : 0
        guard count > 0 else {
            throw .invalidOption(name: "context_length", reason: "channel '\(channel)' holds \(bytes.count) bytes, fewer than one "
                + "window of \(contextLength + 1); give it more text or lower context_length")
        }
        let width = contextLength + 1
        var features = [Float](repeating: 0, count: count * width)
        for window in 0..<count {
            let start = window * contextLength
            for offset in 0..<width { features[window * width + offset] = Float(bytes[start + offset]) }
        }
        return Dataset(features: features, labels: [Float](repeating: 0, count: count), width: width)
    }

    /// The entropy of the corpus's byte frequencies, in nats per byte: the loss of the best
    /// model that ignores context, which a language model must beat.
    public var unigramEntropy: Double {
        var counts = [Int](repeating: 0, count: 256)
        for byte in bytes { counts[Int(byte)] += 1 }
        let total = Double(bytes.count)
        return counts.reduce(0.0) { sum, count in
            guard count > 0 else { return sum }
            let p = Double(count) / total
            return sum - p * log(p)
        }
    }
}
