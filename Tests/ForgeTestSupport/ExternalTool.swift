// Runs real tools (python3, GNU tar) for the cross-checks, and says which ones are installed.
import Foundation

/// External programs the tests compare against. Output goes to temporary files, not pipes, so
/// a chatty tool can never block on a full pipe.
public enum ExternalTool {
    /// What a finished tool left behind.
    public struct Result: Sendable {
        /// The exit status.
        public let status: Int32
        /// Everything written to standard output.
        public let standardOutput: [UInt8]
        /// Everything written to standard error, as UTF-8.
        public let standardError: String

        /// Standard output as UTF-8.
        public var text: String { String(decoding: standardOutput, as: UTF8.self) }
    }

    /// A tool that could not be started or that exited non-zero.
    public struct Failure: Error, CustomStringConvertible {
        /// What failed, with the tool's standard error.
        public let description: String
    }

    /// Runs `arguments` through `/usr/bin/env` (so `PATH` finds the tool) in `directory`.
    public static func run(_ arguments: [String], in directory: String? = nil) throws -> Result {
        let scratch = try TemporaryDirectory()
        let outPath = scratch.file("stdout"), errPath = scratch.file("stderr")
        try Data().write(to: URL(fileURLWithPath: outPath))
        try Data().write(to: URL(fileURLWithPath: errPath))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        try process.run()
        process.waitUntilExit()
        let output = try [UInt8](Data(contentsOf: URL(fileURLWithPath: outPath)))
        let error = try String(decoding: Data(contentsOf: URL(fileURLWithPath: errPath)), as: UTF8.self)
        return Result(status: process.terminationStatus, standardOutput: output, standardError: error)
    }

    /// Runs `arguments` and throws unless it exits 0.
    @discardableResult
    public static func check(_ arguments: [String], in directory: String? = nil) throws -> Result {
        let result = try run(arguments, in: directory)
        guard result.status == 0 else {
            throw Failure(description: "\(arguments.prefix(2)) exited \(result.status): \(result.standardError)")
        }
        return result
    }

    /// Runs a Python script with `arguments` (as `sys.argv[1...]`); throws unless it exits 0.
    @discardableResult
    public static func python(_ script: String, _ arguments: [String] = []) throws -> Result {
        try check(["python3", "-c", script] + arguments)
    }

    /// Runs a Python script that prints one JSON document, and parses it.
    public static func pythonJSON(_ script: String, _ arguments: [String] = []) throws -> Any {
        try JSONSerialization.jsonObject(with: Data(python(script, arguments).standardOutput))
    }

    /// True when `python3` runs.
    public static let hasPython: Bool = (try? run(["python3", "-c", "pass"]).status) == 0

    /// True when `python3` can import numpy and safetensors.
    public static let hasSafetensors: Bool =
        (try? run(["python3", "-c", "import numpy, safetensors.numpy"]).status) == 0

    /// True when `tar` is GNU tar (needed for `--format=gnu|pax`).
    public static let hasGNUTar: Bool = (try? run(["tar", "--version"]).text.contains("GNU tar")) == true
}
