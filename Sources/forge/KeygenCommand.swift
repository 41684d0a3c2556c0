// `forge keygen`: make a cluster key for ZeroMQ CURVE.
import ArgumentParser
import ForgeTransport
import Foundation

struct KeygenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keygen",
        abstract: "Make a cluster key (a ZeroMQ CURVE key pair) for --cluster-key.",
        discussion: "Give every coordinator, worker and rank of a cluster the same file; it is written readable by its owner only."
    )

    @Option(name: .long, help: "Where to write the key.")
    var out: String

    @Flag(name: .long, help: "Replace an existing file.")
    var force = false

    func run() throws {
        if FileManager.default.fileExists(atPath: out), !force {
            FileHandle.standardError.write(Data("error: \(out) exists; pass --force to replace it\n".utf8))
            throw ExitCode.failure
        }
        do {
            let key = try ClusterKey.generate()
            if force { try? FileManager.default.removeItem(atPath: out) }
            try key.write(to: out)
            print("wrote cluster key \(out) (public key \(key.publicKey))")
        } catch {
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            throw ExitCode.failure
        }
    }
}
