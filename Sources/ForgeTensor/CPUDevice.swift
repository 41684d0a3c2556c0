// The built-in CPU device: host memory, GEMM through OpenBLAS's cblas_sgemm, other kernels in
// plain Swift loops over raw pointers that the compiler vectorises. It is the reference every
// other device's results are tested against.
import CBLAS
import Foundation

/// The CPU as a `Device`.
///
/// Concurrency: Sendable. Its only state is immutable configuration and a `ComputePool` that is
/// safe to share. Kernels run synchronously on the calling thread (and the pool's threads), so
/// `synchronize()` has nothing to wait for.
public final class CPUDevice: Device {
    public let name = "cpu"
    public let capabilities: DeviceCapabilities
    /// Threads for Forge's own kernels (the calling thread included).
    public let pool: ComputePool

    /// A CPU device computing with `threadCount` threads; OpenBLAS is set to the same count
    /// (a process-wide setting).
    public init(threadCount: Int = 1) {
        let threads = max(1, threadCount)
        BLASRuntime.setThreadCount(threads)
        pool = ComputePool(threadCount: threads)
        capabilities = DeviceCapabilities(dataTypes: [.float32], memoryBytes: nil, hostVisibleMemory: true, threadCount: threads)
    }

    // MARK: Memory

    public func allocate(count: Int) -> Storage {
        // 64-byte alignment: one cache line, and what AVX-512 loads prefer.
        let bytes = max(count, 1) * MemoryLayout<Float>.stride
        guard let raw = aligned_alloc(64, (bytes + 63) & ~63) else {
            preconditionFailure("out of memory allocating \(bytes) bytes")
        }
        memset(raw, 0, bytes)
        return Storage(device: self, count: count, address: raw, release: { free($0) })
    }

    public func copy(from source: UnsafeBufferPointer<Float>, to destination: Tensor) {
        precondition(destination.isContiguous && source.count == destination.count, "copy-in needs matching contiguous sizes")
        guard let base = source.baseAddress, source.count > 0 else { return }
        destination.hostPointer.update(from: base, count: source.count)
    }

    public func copy(from source: Tensor, to destination: UnsafeMutableBufferPointer<Float>) {
        precondition(source.isContiguous && source.count == destination.count, "copy-out needs matching contiguous sizes")
        guard let base = destination.baseAddress, source.count > 0 else { return }
        base.update(from: source.hostPointer, count: source.count)
    }

    public func copy(from source: Tensor, to destination: Tensor) {
        precondition(source.shape == destination.shape, "copy between shapes \(source.shape) and \(destination.shape)")
        if source.isContiguous && destination.isContiguous {
            destination.hostPointer.update(from: source.hostPointer, count: source.count)
            return
        }
        // General strided copy: walk the index space in row-major order.
        let shape = source.shape
        var index = [Int](repeating: 0, count: shape.count)
        let src = source.hostPointer, dst = destination.hostPointer
        for _ in 0..<source.count {
            var s = 0, d = 0
            for axis in 0..<shape.count {
                s += index[axis] * source.strides[axis]
                d += index[axis] * destination.strides[axis]
            }
            dst[d] = src[s]
            var axis = shape.count - 1
            while axis >= 0 {
                index[axis] += 1
                if index[axis] < shape[axis] { break }
                index[axis] = 0
                axis -= 1
            }
        }
    }

    public func synchronize() {}

    // MARK: GEMM

    public func gemm(_ a: Tensor, transposeA: Bool, _ b: Tensor, transposeB: Bool, into c: Tensor, alpha: Float, beta: Float) {
        precondition(a.rank == 2 && b.rank == 2 && c.rank == 2, "gemm needs matrices")
        let (aTrans, lda) = CPUDevice.blasLayout(a, transpose: transposeA)
        let (bTrans, ldb) = CPUDevice.blasLayout(b, transpose: transposeB)
        precondition(c.strides[1] == 1 || c.shape[1] == 1, "gemm output rows must be contiguous")
        let m = c.shape[0], n = c.shape[1]
        let k = transposeA ? a.shape[0] : a.shape[1]
        precondition((transposeA ? a.shape[1] : a.shape[0]) == m, "gemm: op(A) has \(transposeA ? a.shape[1] : a.shape[0]) rows, C has \(m)")
        precondition((transposeB ? b.shape[0] : b.shape[1]) == n, "gemm: op(B) has \(transposeB ? b.shape[0] : b.shape[1]) columns, C has \(n)")
        precondition((transposeB ? b.shape[1] : b.shape[0]) == k, "gemm: inner dimensions \(k) and \(transposeB ? b.shape[1] : b.shape[0]) differ")
        if m == 0 || n == 0 { return }
        let ldc = max(c.strides[0], n)
        if k == 0 {
            for row in 0..<m { CPUDevice.scale(c.hostPointer + row * ldc, count: n, by: beta) }
            return
        }
        cblas_sgemm(CblasRowMajor, aTrans, bTrans, Int32(m), Int32(n), Int32(k), alpha,
                    a.hostPointer, Int32(lda), b.hostPointer, Int32(ldb), beta, c.hostPointer, Int32(ldc))
    }

    /// The CBLAS transpose flag and leading dimension for a row-major or transposed view.
    private static func blasLayout(_ t: Tensor, transpose: Bool) -> (CBLAS_TRANSPOSE, Int) {
        let rows = t.shape[0], cols = t.shape[1]
        if t.strides[1] == 1 || cols == 1 {
            return (transpose ? CblasTrans : CblasNoTrans, max(t.strides[0], cols, 1))
        }
        precondition(t.strides[0] == 1 || rows == 1, "gemm operand must be row- or column-contiguous")
        return (transpose ? CblasNoTrans : CblasTrans, max(t.strides[1], rows, 1))
    }

    @inline(__always)
    static func scale(_ p: UnsafeMutablePointer<Float>, count: Int, by factor: Float) {
        if factor == 0 {
            p.update(repeating: 0, count: count)
        } else if factor != 1 {
            for i in 0..<count { p[i] *= factor }
        }
    }

    // MARK: helpers shared by the kernel files

    /// Rows, columns and row stride of a matrix whose rows are contiguous.
    @inline(__always)
    static func matrix(_ t: Tensor) -> (rows: Int, cols: Int, ld: Int) {
        precondition(t.rank == 2, "expected a matrix, got shape \(t.shape)")
        precondition(t.strides[1] == 1 || t.shape[1] <= 1, "matrix rows must be contiguous")
        return (t.shape[0], t.shape[1], max(t.strides[0], t.shape[1]))
    }

    @inline(__always)
    static func requireContiguous(_ tensors: Tensor...) {
        for t in tensors { precondition(t.isContiguous, "kernel needs contiguous tensors, got strides \(t.strides)") }
    }
}
