// The C shims link the libraries Forge needs, with the features it relies on.
import CBLAS
import CFloatEnv
import CZeroMQ
import Testing

@Suite struct ShimTests {
    @Test func zeroMQIsBuiltWithCurve() {
        var major: Int32 = 0, minor: Int32 = 0, patch: Int32 = 0
        zmq_version(&major, &minor, &patch)
        #expect(major == 4)
        #expect(zmq_has("curve") == 1, "cluster keys need libzmq with CURVE")
    }

    @Test func cblasIsOpenBLAS() {
        let config = String(cString: openblas_get_config())
        #expect(config.contains("OpenBLAS"))
        var c: [Float] = [0]
        let a: [Float] = [2], b: [Float] = [3]
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 1, 1, 1, 1, a, 1, b, 1, 0, &c, 1)
        #expect(c == [6])
    }

    @Test func flushToZeroOnThisThread() {
        _ = forge_enable_ftz_daz()
        #expect(forge_get_mxcsr() & 0x8040 == 0x8040)
    }
}
