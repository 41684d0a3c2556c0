// Before anything computes: make sure OpenBLAS runs the kernels this CPU deserves. The core
// type is read when the library loads, so a fix means re-executing ourselves with
// OPENBLAS_CORETYPE set; the same environment then reaches every process we spawn.
import ForgeTensor
import Foundation

enum BLASBootstrap {
    /// Set in the re-executed process so a second misdetection cannot loop.
    static let guardVariable = "FORGE_BLAS_REEXEC"
    /// Extra core names to treat as fallbacks (comma-separated). It lets tests exercise the
    /// re-exec path on CPUs that OpenBLAS detects correctly.
    static let extraFallbackVariable = "FORGE_BLAS_FALLBACK_CORES"

    /// What was decided, for `forge info` and logs.
    nonisolated(unsafe) static var decision: CoreTypeDecision = .keep(reason: "not checked")

    static func cpuFeatures() -> CPUFeatures {
        let text = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        return CPUFeatures(cpuinfo: text)
    }

    /// Re-executes the process with a better `OPENBLAS_CORETYPE` when OpenBLAS fell back to an
    /// old kernel; returns otherwise.
    static func ensureCoreType() {
        let environment = ProcessInfo.processInfo.environment
        let loaded = BLASRuntime.coreName
        let extra = Set((environment[extraFallbackVariable] ?? "").split(separator: ",").map { $0.lowercased() })
        let treatedLoaded = extra.contains(loaded.lowercased()) ? "Prescott" : loaded
        var decided = BLASRuntime.decide(cpu: cpuFeatures(), loadedCore: treatedLoaded, environmentValue: environment["OPENBLAS_CORETYPE"])
        if case .override(let coreType, let reason) = decided {
            guard environment[guardVariable] == nil else {
                decision = .keep(reason: "\(reason), but a re-exec with \(coreType) did not take; keeping \(loaded)")
                return
            }
            setenv("OPENBLAS_CORETYPE", coreType, 1)
            setenv(guardVariable, "1", 1)
            let arguments = CommandLine.arguments
            var cArguments = arguments.map { strdup($0) } + [nil]
            execv("/proc/self/exe", &cArguments)
            // execv returns only on failure: go on with the slow kernel rather than not at all.
            decided = .keep(reason: "\(reason); re-exec failed (errno \(errno)), keeping \(loaded)")
            unsetenv(guardVariable)
        }
        if environment[guardVariable] != nil, let value = environment["OPENBLAS_CORETYPE"] {
            decided = .keep(reason: "OPENBLAS_CORETYPE=\(value) chosen by forge (OpenBLAS had fallen back)")
        }
        decision = decided
    }
}
