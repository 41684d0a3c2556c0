// Flush-to-zero for compute threads: Adam drives values into float32 denormals, which cost
// 1.1–2.9× on every framework measured unless FTZ/DAZ is set on the computing thread.
import CFloatEnv

/// The calling thread's floating-point environment.
public enum FloatEnvironment {
    /// Sets flush-to-zero and denormals-are-zero on the calling thread. Call it once, first,
    /// in every thread that computes, before any floating-point work (LLVM may otherwise reuse
    /// values computed under the old mode).
    public static func enableFlushToZero() {
        _ = forge_enable_ftz_daz()
    }

    /// True when the calling thread flushes denormals (always false off x86-64).
    public static var flushesToZero: Bool {
        forge_get_mxcsr() & 0x8040 == 0x8040
    }
}
