// OpenBLAS at run time: which kernel family ("core type") it chose, the one this CPU deserves,
// and the thread count. Debian's OpenBLAS 0.3.21 misdetects some CPUs (an AVX-512 Xeon ran as
// Prescott at a fifth of its speed); the fix must reach the library before it loads, so the
// decision here is pure and the executable applies it (environment for children, re-exec).
import CBLAS
import Foundation

/// CPU features that matter for choosing kernels, parsed from `/proc/cpuinfo` text.
public struct CPUFeatures: Sendable, Hashable {
    public var flags: Set<String>
    public var modelName: String

    public init(flags: Set<String>, modelName: String) {
        self.flags = flags
        self.modelName = modelName
    }

    /// Parses the first processor block of `/proc/cpuinfo`.
    public init(cpuinfo: String) {
        var flags = Set<String>()
        var model = "unknown"
        for line in cpuinfo.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let key = line[..<colon].trimmingCharacters(in: .whitespaces)
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            if key == "flags", flags.isEmpty { flags = Set(value.split(separator: " ").map(String.init)) }
            if key == "model name", model == "unknown" { model = value }
        }
        self.init(flags: flags, modelName: model)
    }

    public var hasAVX512: Bool {
        ["avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd"].allSatisfy(flags.contains)
    }

    public var hasAVX2FMA: Bool { flags.contains("avx2") && flags.contains("fma") }
}

/// What to do about OpenBLAS's kernel choice.
public enum CoreTypeDecision: Sendable, Hashable {
    /// Keep what OpenBLAS picked (or what the user set).
    case keep(reason: String)
    /// Re-run with `OPENBLAS_CORETYPE` set to this value.
    case override(coreType: String, reason: String)
}

/// Queries and settings of the OpenBLAS library this process loaded.
public enum BLASRuntime {
    /// Core types OpenBLAS falls back to when it does not recognise a CPU.
    public static let fallbackCores: Set<String> = [
        "prescott", "core2", "penryn", "dunnington", "nehalem", "atom", "katmai", "coppermine",
        "northwood", "banias", "opteron", "opteron_sse3", "barcelona", "unknown",
    ]

    /// The best core type this CPU can run, or nil when no override could help.
    public static func desiredCoreType(for cpu: CPUFeatures) -> String? {
        if cpu.hasAVX512 { return "SkylakeX" }
        if cpu.hasAVX2FMA { return "Haswell" }
        return nil
    }

    /// Decides whether to override the core type: only when OpenBLAS fell back to an old kernel,
    /// the user has not set `OPENBLAS_CORETYPE`, and the CPU can certainly run a better one
    /// (never a kernel it lacks the instructions for).
    public static func decide(cpu: CPUFeatures, loadedCore: String, environmentValue: String?) -> CoreTypeDecision {
        if let value = environmentValue, !value.isEmpty {
            return .keep(reason: "OPENBLAS_CORETYPE=\(value) set by the environment")
        }
        guard fallbackCores.contains(loadedCore.lowercased()) else {
            return .keep(reason: "OpenBLAS detected \(loadedCore)")
        }
        guard let desired = desiredCoreType(for: cpu) else {
            return .keep(reason: "OpenBLAS chose \(loadedCore) and the CPU offers no AVX2/FMA")
        }
        return .override(coreType: desired, reason: "OpenBLAS fell back to \(loadedCore) on a CPU with \(cpu.hasAVX512 ? "AVX-512" : "AVX2+FMA")")
    }

    /// The kernel family OpenBLAS is using ("Zen", "Haswell", "SkylakeX", "Prescott", …).
    public static var coreName: String { String(cString: openblas_get_corename()) }

    /// OpenBLAS's build configuration string.
    public static var configuration: String { String(cString: openblas_get_config()) }

    /// Threads OpenBLAS uses for one call (process-wide).
    public static var threadCount: Int {
        get { Int(openblas_get_num_threads()) }
    }

    /// Sets OpenBLAS's thread count for the whole process.
    public static func setThreadCount(_ count: Int) {
        openblas_set_num_threads(Int32(max(1, count)))
    }
}
