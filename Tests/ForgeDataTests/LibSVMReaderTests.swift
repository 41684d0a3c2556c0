// Tests of LibSVMReader: dense expansion, width rules, comments, every corrupt-record error
// with its file, line and reason, the skip policy, gzip, and a fuzz run over mutated files.
import ForgeData
import ForgeTestSupport
import Testing

@Suite struct LibSVMReaderTests {
    private func read(
        _ text: String, width: Int? = nil, policy: CorruptRecordPolicy = .fail
    ) throws(DataError) -> ReadResult {
        try LibSVMReader.read(bytes: Array(text.utf8), name: "t.svm", width: width, corruptRecords: policy)
    }

    private func error(_ text: String, width: Int? = nil) -> DataError? {
        do {
            _ = try read(text, width: width)
            return nil
        } catch {
            return error
        }
    }

    @Test func expandsSparseRecords() throws {
        let result = try read("1 1:0.5 3:2\n0 2:-1 # a comment\n# only a comment\n\n-1\n+1\t3:0.1\r\n")
        #expect(result.dataset.width == 3)
        #expect(result.dataset.labels == [1, 0, -1, 1])
        #expect(result.dataset.features == [0.5, 0, 2, 0, -1, 0, 0, 0, 0, 0, 0, Float(0.1)])
        #expect(result.skipped.isEmpty)
    }

    @Test func honoursAGivenWidth() throws {
        let result = try read("1 2:3\n", width: 4)
        #expect(result.dataset.width == 4)
        #expect(result.dataset.features == [0, 3, 0, 0])
        #expect(error("1 2:3\n0 5:1\n", width: 4) == .malformedRecord(
            file: "t.svm", line: 2, reason: "index 5 exceeds the width 4 given for this data"))
        #expect(error("1 2:3\n", width: 0) == .invalidOption(
            name: "LibSVM width", reason: "0 is below 1; pass the feature count"))
    }

    @Test func reportsBadIndices() {
        let zero = error("1 1:2\n0 0:1 2:3\n")
        #expect(zero == .malformedRecord(file: "t.svm", line: 2, reason: "index 0 in '0:1': indices are 1-based"))
        #expect(zero?.description == "t.svm:2: index 0 in '0:1': indices are 1-based")
        #expect(error("1 3:1 2:1\n") == .malformedRecord(
            file: "t.svm", line: 1, reason: "index 2 follows index 3: indices must be strictly increasing"))
        #expect(error("1 3:1 3:1\n") == .malformedRecord(
            file: "t.svm", line: 1, reason: "index 3 follows index 3: indices must be strictly increasing"))
        #expect(error("1 -3:1\n") == .malformedRecord(
            file: "t.svm", line: 1, reason: "index in '-3:1' is not a positive integer"))
        #expect(error("1 :1\n") == .malformedRecord(
            file: "t.svm", line: 1, reason: "index in ':1' is not a positive integer"))
        #expect(error("1 99999999999:1\n") == .malformedRecord(
            file: "t.svm", line: 1, reason: "index in '99999999999:1' is above the largest supported index 2147483647"))
    }

    @Test func reportsBadTokensLabelsAndValues() {
        #expect(error("1 abc\n") == .malformedRecord(file: "t.svm", line: 1, reason: "token 'abc' is not index:value"))
        #expect(error("\n1:2 3:4\n") == .malformedRecord(file: "t.svm", line: 2, reason:
            "missing label: the first token '1:2' is an index:value pair; each line starts with its label"))
        #expect(error("yes 1:2\n") == .malformedRecord(file: "t.svm", line: 1, reason: "label 'yes' is not a number"))
        #expect(error("nan 1:2\n") == .malformedRecord(file: "t.svm", line: 1, reason: "label 'nan' is not a finite number"))
        #expect(error("1 1:x\n") == .malformedRecord(file: "t.svm", line: 1, reason: "value 'x' of index 1 is not a number"))
        #expect(error("1 1:\n") == .malformedRecord(file: "t.svm", line: 1, reason: "value of index 1 is empty"))
        #expect(error("1 4:inf\n") == .malformedRecord(
            file: "t.svm", line: 1, reason: "value 'inf' of index 4 is not a finite number"))
        #expect(error("1 4:1e40\n") == .malformedRecord(
            file: "t.svm", line: 1, reason: "value '1e40' of index 4 is outside Float's range"))
    }

    @Test func rejectsFilesWithoutRecordsOrIndices() {
        #expect(error("# nothing\n\n") == .noRecords(file: "t.svm", skipped: 0))
        #expect(error("1\n0\n") == .corruptFile(file: "t.svm", reason:
            "no record has an index:value pair, so the width is unknown; pass the width"))
        #expect((try? read("1\n0\n", width: 2))?.dataset == Dataset(features: [0, 0, 0, 0], labels: [1, 0], width: 2))
    }

    @Test func skipPolicyListsEverySkippedRecord() throws {
        let result = try read("1 1:1\n0 0:1\n1 2:2 1:1\n0 2:5\n", policy: .skip)
        #expect(result.dataset.labels == [1, 0])
        #expect(result.dataset.features == [1, 0, 0, 5])
        #expect(result.skipped == [
            .malformedRecord(file: "t.svm", line: 2, reason: "index 0 in '0:1': indices are 1-based"),
            .malformedRecord(file: "t.svm", line: 3, reason: "index 1 follows index 2: indices must be strictly increasing"),
        ])
    }

    @Test func readsGzippedFiles() throws {
        let directory = try TemporaryDirectory()
        let gzipped: [UInt8] = [
            0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0x33, 0x54, 0x30, 0xb4, 0x32, 0xd0, 0x33,
            0x55, 0x30, 0xb6, 0x32, 0xe2, 0x32, 0x50, 0x30, 0xb2, 0xd2, 0x35, 0xe4, 0x02, 0x00, 0x77, 0x89, 0x51,
            0xb4, 0x13, 0x00, 0x00, 0x00,
        ]
        let path = try directory.write(gzipped, to: "train.libsvm.gz")
        let result = try LibSVMReader.read(file: path)
        #expect(result.dataset == Dataset(features: [0.5, 0, 2, 0, -1, 0], labels: [1, 0], width: 3))
    }

    @Test func survivesMutatedInput() {
        let valid = Array("1 1:0.5 3:-2e3 # c\n0 2:1.25\r\n\n-1 1:3 2:4 4:.5\n1\n".utf8)
        let mutator = ByteMutator(interesting: ByteMutator.numericText)
        var random = SplitMix64(seed: 0x5B3)
        var parsed = 0
        for iteration in 0..<3000 {
            let input = mutator.mutate(valid, using: &random)
            let width: Int? = iteration % 3 == 0 ? 8 : nil
            let policy: CorruptRecordPolicy = iteration % 2 == 0 ? .fail : .skip
            do {
                let result = try LibSVMReader.read(bytes: input, name: "fuzz.svm", width: width, corruptRecords: policy)
                let dataset = result.dataset
                #expect(dataset.features.count == dataset.count * dataset.width, "seed 0x5B3 iteration \(iteration)")
                #expect(dataset.features.allSatisfy { $0.isFinite }, "seed 0x5B3 iteration \(iteration)")
                parsed += 1
            } catch {
                #expect(!error.description.isEmpty)
            }
        }
        #expect(parsed > 0)
    }
}
