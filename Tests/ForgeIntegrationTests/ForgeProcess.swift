// Runs the real `forge` executable as a subprocess with arguments, environment and a deadline,
// and captures its exit status, standard output and standard error.
import ForgeArchive
import ForgeTestSupport
import Foundation
import Testing

/// One finished `forge` run.
struct ForgeRun: CustomStringConvertible {
    let arguments: [String]
    let status: Int32
    let standardOutput: String
    let standardError: String
    /// True when the deadline passed and the process was killed.
    let timedOut: Bool

    /// Standard output split into lines, without the empty tail.
    var outputLines: [String] {
        standardOutput.split(separator: "\n", omittingEmptySubsequences: false).map(String.init).filter { !$0.isEmpty }
    }

    var description: String {
        "forge \(arguments.joined(separator: " ")) → exit \(status)\(timedOut ? " (killed at the deadline)" : "")\n"
            + "stdout:\n\(standardOutput)\nstderr:\n\(standardError)"
    }
}

/// Starts `forge` processes. Output goes to temporary files rather than pipes, so a chatty
/// process can never block on a full pipe, and a deadline kills a hung one.
enum ForgeProcess {
    /// Why the binary cannot be run.
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// Variables that steer forge's OpenBLAS bootstrap; removed from every child's environment
    /// unless a test sets them, so the parent's settings never leak into a check.
    static let blasVariables = ["OPENBLAS_CORETYPE", "FORGE_BLAS_REEXEC", "FORGE_BLAS_FALLBACK_CORES"]

    /// Where the binary is looked for: `FORGE_BIN`, else beside the running test bundle (SwiftPM
    /// puts `forge` and `ForgePackageTests.xctest` in the same `<scratch>/<triple>/debug` folder,
    /// whatever the scratch path).
    static func candidates() -> [String] {
        if let explicit = ProcessInfo.processInfo.environment["FORGE_BIN"], !explicit.isEmpty {
            return [explicit]
        }
        var folders = [String]()
        if let executable = Bundle.main.executableURL {
            folders.append(executable.resolvingSymlinksInPath().deletingLastPathComponent().path)
        }
        if let first = CommandLine.arguments.first {
            folders.append(URL(fileURLWithPath: first).resolvingSymlinksInPath().deletingLastPathComponent().path)
        }
        folders.append(Bundle.main.bundleURL.resolvingSymlinksInPath().deletingLastPathComponent().path)
        folders.append(Bundle.main.bundleURL.resolvingSymlinksInPath().path)
        var seen = Set<String>()
        return folders.map { ($0 as NSString).appendingPathComponent("forge") }.filter { seen.insert($0).inserted }
    }

    /// The path of the `forge` executable; throws a message saying where it looked.
    static func binary() throws -> String {
        let searched = candidates()
        if let found = searched.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) {
            return found
        }
        throw Failure(description: "the forge executable was not found (looked at \(searched.joined(separator: ", "))); "
            + "build it with `swift build --build-tests` (swift test does) or point FORGE_BIN at it")
    }

    /// Runs `forge arguments…` in `directory` and waits for it, killing it after `timeout`.
    /// `environment` entries are added to (or, with nil, removed from) the inherited environment.
    static func run(_ arguments: [String], environment: [String: String?] = [:], in directory: String? = nil,
                    timeout: Duration = .seconds(120)) throws -> ForgeRun {
        let executable = try binary()
        let scratch = try TemporaryDirectory()
        let outPath = scratch.file("stdout"), errPath = scratch.file("stderr")
        try Data().write(to: URL(fileURLWithPath: outPath))
        try Data().write(to: URL(fileURLWithPath: errPath))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var childEnvironment = ProcessInfo.processInfo.environment
        for name in blasVariables { childEnvironment[name] = nil }
        for (name, value) in environment { childEnvironment[name] = value }
        process.environment = childEnvironment
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        process.standardInput = FileHandle.nullDevice
        let stdout = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
        let stderr = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        process.standardOutput = stdout
        process.standardError = stderr
        let exited = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in exited.signal() }
        try process.run()
        let seconds = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18
        var timedOut = false
        if exited.wait(timeout: .now() + seconds) == .timedOut {
            timedOut = true
            kill(process.processIdentifier, SIGKILL)
            exited.wait()
        }
        try stdout.close()
        try stderr.close()
        return ForgeRun(arguments: arguments, status: process.terminationStatus,
                        standardOutput: try String(contentsOfFile: outPath, encoding: .utf8),
                        standardError: try String(contentsOfFile: errPath, encoding: .utf8),
                        timedOut: timedOut)
    }
}

/// Parameter tensors of a model.tar.gz that `forge train` wrote, by name.
func modelParameters(_ path: String) throws -> [String: [Float]] {
    let entries = try TarArchive.readGzipped([UInt8](Data(contentsOf: URL(fileURLWithPath: path))))
    let weights = try #require(entries.first { $0.name == "model.safetensors" })
    var result = [String: [Float]]()
    for tensor in try SafetensorsFile(decoding: weights.bytes).tensors { result[tensor.name] = try tensor.floatValues() }
    return result
}
