// `forge info`: what this machine offers Forge and what Forge decided about it.
import ArgumentParser
import ForgeTensor
import Foundation

struct InfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info",
        abstract: "Show the CPU, the OpenBLAS kernel in use and why, and the float environment."
    )

    func run() throws {
        let cpu = BLASBootstrap.cpuFeatures()
        let environment = ProcessInfo.processInfo.environment
        let simd = ["avx512f", "avx2", "fma", "avx"].filter(cpu.flags.contains).joined(separator: " ")
        print("cpu: \(cpu.modelName) (\(ProcessInfo.processInfo.activeProcessorCount) cores; \(simd))")
        print("openblas: \(BLASRuntime.configuration)")
        print("openblas core: \(BLASRuntime.coreName)")
        print("OPENBLAS_CORETYPE: \(environment["OPENBLAS_CORETYPE"] ?? "<unset>")")
        switch BLASBootstrap.decision {
        case .keep(let reason): print("core decision: keep (\(reason))")
        case .override(let core, let reason): print("core decision: override to \(core) (\(reason))")
        }
        print("best core for this cpu: \(BLASRuntime.desiredCoreType(for: cpu) ?? "none")")
        print("ftz/daz on main thread: \(FloatEnvironment.flushesToZero ? "on" : "off")")
    }
}
