// `forge info` and the OpenBLAS core-type policy it reports: a user's OPENBLAS_CORETYPE is
// kept; when OpenBLAS falls back to an old kernel, forge re-executes itself with the best
// core type the CPU supports (FORGE_BLAS_FALLBACK_CORES makes the detected core count as a
// fallback, so the path runs on any CPU).
import Foundation
import Testing

@Suite struct InfoCommandTests {
    /// The first processor's flags, as forge reads them.
    private func cpuFlags() throws -> Set<String> {
        let text = try String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2, parts[0].trimmingCharacters(in: .whitespaces) == "flags" {
                return Set(parts[1].split(separator: " ").map(String.init))
            }
        }
        return []
    }

    /// What BLASRuntime.desiredCoreType picks for this CPU.
    private func desiredCoreType() throws -> String? {
        let flags = try cpuFlags()
        if ["avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd"].allSatisfy(flags.contains) { return "SkylakeX" }
        if flags.contains("avx2"), flags.contains("fma") { return "Haswell" }
        return nil
    }

    /// The value after `key: ` on its own line of `text`.
    private func field(_ key: String, in text: String) -> String? {
        text.split(separator: "\n").first { $0.hasPrefix(key + ": ") }.map { String($0.dropFirst(key.count + 2)) }
    }

    @Test func reportsTheCoreAndTheDecision() throws {
        let run = try ForgeProcess.run(["info"])
        try #require(run.status == 0, "\(run)")
        let core = try #require(field("openblas core", in: run.standardOutput), "\(run)")
        #expect(!core.isEmpty)
        let decision = try #require(field("core decision", in: run.standardOutput), "\(run)")
        if field("OPENBLAS_CORETYPE", in: run.standardOutput) == "<unset>" {
            // OpenBLAS's own pick stood: it recognised the CPU, or no better kernel exists.
            #expect(decision == "keep (OpenBLAS detected \(core))" || decision.contains("offers no AVX2/FMA"), "\(run)")
        } else {
            // OpenBLAS fell back on this CPU and forge re-executed itself with the best kernel.
            #expect(field("OPENBLAS_CORETYPE", in: run.standardOutput) == (try desiredCoreType()), "\(run)")
            #expect(decision.contains("chosen by forge"), "\(run)")
        }
        #expect(field("best core for this cpu", in: run.standardOutput) == (try desiredCoreType() ?? "none"))
        #expect(field("ftz/daz on main thread", in: run.standardOutput) == "on")
    }

    @Test func aCoreTypeFromTheEnvironmentIsKept() throws {
        let flags = try cpuFlags()
        let coreType = flags.contains("avx2") && flags.contains("fma") ? "Haswell" : "Prescott"
        let run = try ForgeProcess.run(["info"], environment: ["OPENBLAS_CORETYPE": coreType])
        try #require(run.status == 0, "\(run)")
        #expect(field("OPENBLAS_CORETYPE", in: run.standardOutput) == coreType)
        #expect(field("openblas core", in: run.standardOutput) == coreType)
        #expect(field("core decision", in: run.standardOutput) == "keep (OPENBLAS_CORETYPE=\(coreType) set by the environment)",
                "\(run)")
    }

    @Test func aFallbackCoreMakesForgeReexecuteWithTheBestCoreType() throws {
        let plain = try ForgeProcess.run(["info"])
        try #require(plain.status == 0, "\(plain)")
        let detected = try #require(field("openblas core", in: plain.standardOutput))
        let run = try ForgeProcess.run(["info"], environment: ["FORGE_BLAS_FALLBACK_CORES": "Prescott,\(detected)"])
        try #require(run.status == 0, "\(run)")
        guard let desired = try desiredCoreType() else {
            // Without AVX2/FMA no better kernel exists: forge keeps what it has.
            #expect(field("OPENBLAS_CORETYPE", in: run.standardOutput) == "<unset>", "\(run)")
            #expect(field("core decision", in: run.standardOutput)?.contains("offers no AVX2/FMA") == true, "\(run)")
            return
        }
        #expect(field("OPENBLAS_CORETYPE", in: run.standardOutput) == desired, "\(run)")
        #expect(field("openblas core", in: run.standardOutput) == desired, "\(run)")
        #expect(field("core decision", in: run.standardOutput)?.hasPrefix("keep (OPENBLAS_CORETYPE=\(desired) chosen by forge") == true,
                "\(run)")
    }
}
