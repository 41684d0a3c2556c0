// Kernels of sequence models on the CPU: the causal softmax of attention scores and its
// backward, a batch of GEMMs over strided views, and the gather and scatter-add of embedding
// rows.
import Foundation

extension CPUDevice {
    public func gemmBatched(_ a: [Tensor], transposeA: Bool, _ b: [Tensor], transposeB: Bool, into c: [Tensor], alpha: Float, beta: Float) {
        precondition(a.count == b.count && a.count == c.count, "gemmBatched needs as many A, B and C matrices")
        for index in a.indices {
            gemm(a[index], transposeA: transposeA, b[index], transposeB: transposeB, into: c[index], alpha: alpha, beta: beta)
        }
    }

    public func causalSoftmax(_ scores: Tensor) {
        let (rows, cols, ld) = CPUDevice.matrix(scores)
        precondition(cols >= rows, "causalSoftmax needs at least as many keys (\(cols)) as queries (\(rows))")
        // Query r is the (cols − rows + r)-th token: it sees keys 0 through that one.
        let shift = cols - rows
        for r in 0..<rows {
            let row = scores.hostPointer + r * ld
            let visible = shift + r + 1
            CPUDevice.softmaxRow(UnsafePointer(row), into: row, count: visible)
            for j in visible..<cols { row[j] = 0 }
        }
    }

    public func softmaxBackward(probabilities: Tensor, gradOutput: Tensor, into gradInput: Tensor) {
        let (rows, cols, ldp) = CPUDevice.matrix(probabilities)
        let (_, _, ldg) = CPUDevice.matrix(gradOutput)
        let (_, _, ldd) = CPUDevice.matrix(gradInput)
        precondition(gradOutput.shape == probabilities.shape && gradInput.shape == probabilities.shape, "softmaxBackward shapes")
        for r in 0..<rows {
            let p = probabilities.hostPointer + r * ldp, g = gradOutput.hostPointer + r * ldg, d = gradInput.hostPointer + r * ldd
            var dot: Float = 0
            for j in 0..<cols { dot += p[j] * g[j] }
            for j in 0..<cols { d[j] = p[j] * (g[j] - dot) }
        }
    }

    public func gatherRows(_ table: Tensor, indices: Tensor, into out: Tensor) {
        let (tableRows, cols, ldt) = CPUDevice.matrix(table)
        let (rows, outCols, ldo) = CPUDevice.matrix(out)
        CPUDevice.requireContiguous(indices)
        precondition(outCols == cols && indices.count == rows, "gatherRows: \(indices.count) indices into \(out.shape) from \(table.shape)")
        let ids = indices.hostPointer
        for r in 0..<rows {
            let index = Int(ids[r])
            precondition(index >= 0 && index < tableRows, "index \(ids[r]) outside 0..<\(tableRows)")
            (out.hostPointer + r * ldo).update(from: table.hostPointer + index * ldt, count: cols)
        }
    }

    public func scatterAddRows(_ source: Tensor, indices: Tensor, into table: Tensor) {
        let (tableRows, cols, ldt) = CPUDevice.matrix(table)
        let (rows, sourceCols, lds) = CPUDevice.matrix(source)
        CPUDevice.requireContiguous(indices)
        precondition(sourceCols == cols && indices.count == rows, "scatterAddRows: \(indices.count) indices from \(source.shape) into \(table.shape)")
        let ids = indices.hostPointer
        for r in 0..<rows {
            let index = Int(ids[r])
            precondition(index >= 0 && index < tableRows, "index \(ids[r]) outside 0..<\(tableRows)")
            let target = table.hostPointer + index * ldt, row = source.hostPointer + r * lds
            for j in 0..<cols { target[j] += row[j] }
        }
    }
}
