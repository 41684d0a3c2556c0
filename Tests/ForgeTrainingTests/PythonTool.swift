// Runs python3 for the cross-checks against the reference readers (tarfile, safetensors).
// Output goes to temporary files, not pipes, so a chatty script can never block on a full pipe.
import Foundation

enum PythonTool {
    /// A script that could not be started or that exited non-zero.
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// Runs `script` with `arguments` as `sys.argv[1...]`, returns its standard output, and
    /// throws unless it exits 0.
    static func run(_ script: String, _ arguments: [String] = []) throws -> String {
        let scratch = try TemporaryDirectory()
        let outPath = scratch.file("stdout"), errPath = scratch.file("stderr")
        try Data().write(to: URL(fileURLWithPath: outPath))
        try Data().write(to: URL(fileURLWithPath: errPath))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script] + arguments
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        try process.run()
        process.waitUntilExit()
        let output = try String(decoding: Data(contentsOf: URL(fileURLWithPath: outPath)), as: UTF8.self)
        let error = try String(decoding: Data(contentsOf: URL(fileURLWithPath: errPath)), as: UTF8.self)
        guard process.terminationStatus == 0 else {
            throw Failure(description: "python3 exited \(process.terminationStatus): \(error)"
                + " (the check needs python3 with numpy and safetensors: pip install safetensors)")
        }
        return output
    }
}
