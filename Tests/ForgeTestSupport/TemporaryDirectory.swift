// A temporary directory that removes itself, for tests that read and write files.
import Foundation

/// A fresh directory under the system temporary folder, deleted with everything in it when
/// the last reference goes away.
///
/// `Sendable`: its only state is the immutable path; concurrent writes to different names are
/// as safe as the file system makes them.
public final class TemporaryDirectory: Sendable {
    /// Absolute path of the directory.
    public let path: String

    /// Creates an empty directory with a unique name.
    public init() throws {
        path = FileManager.default.temporaryDirectory
            .appendingPathComponent("forge-tests-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit {
        try? FileManager.default.removeItem(atPath: path)
    }

    /// The absolute path of `name` (relative to the directory; may contain `/`).
    public func file(_ name: String) -> String {
        (path as NSString).appendingPathComponent(name)
    }

    /// Writes `bytes` to `name`, creating parent folders; returns the file's absolute path.
    @discardableResult
    public func write(_ bytes: [UInt8], to name: String) throws -> String {
        let url = URL(fileURLWithPath: file(name))
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(bytes).write(to: url)
        return url.path
    }

    /// Writes `text` as UTF-8 to `name`, creating parent folders; returns the file's absolute path.
    @discardableResult
    public func write(_ text: String, to name: String) throws -> String {
        try write(Array(text.utf8), to: name)
    }

    /// The bytes of `name`.
    public func read(_ name: String) throws -> [UInt8] {
        try [UInt8](Data(contentsOf: URL(fileURLWithPath: file(name))))
    }
}
