// Tests of CSVReader: exact values, SageMaker conventions, every corrupt-record error with its
// file, line and reason, the skip policy, gzip, and a fuzz run over mutated files.
import ForgeData
import ForgeTestSupport
import Testing

@Suite struct CSVReaderTests {
    private func read(_ text: String, _ options: CSVOptions = CSVOptions()) throws(DataError) -> ReadResult {
        try CSVReader.read(bytes: Array(text.utf8), name: "t.csv", options: options)
    }

    private func error(_ text: String, _ options: CSVOptions = CSVOptions()) -> DataError? {
        do {
            _ = try read(text, options)
            return nil
        } catch {
            return error
        }
    }

    @Test func readsLabelFirstWithExactValues() throws {
        let result = try read("1,0.1,2.5\n0,-3e2, +4 \n7,1E-3,\t12345678\n")
        #expect(result.dataset.width == 2)
        #expect(result.dataset.labels == [1, 0, 7])
        #expect(result.dataset.features == [Float(0.1), 2.5, -300, 4, Float(0.001), 12_345_678])
        #expect(result.skipped.isEmpty)
    }

    @Test func parsesTypicalNumbersLikeTheStandardLibrary() throws {
        let texts = ["0.1", "-0.7316528958413613", "3.14159265358979", "1e-7", "16777217", "0.30000001192092896",
                     ".5", "5.", "-0", "123456789012345678901234567890", "1.17549435e-38", "3.4028234e38"]
        let result = try read(texts.map { "0,\($0)" }.joined(separator: "\n"))
        for (value, text) in zip(result.dataset.features, texts) {
            #expect(value.bitPattern == Float(text)?.bitPattern, "parsing \(text)")
        }
    }

    @Test func skipsTheHeaderWhenAsked() throws {
        let text = "label,a,b\n1,2,3\n"
        let result = try read(text, CSVOptions(hasHeader: true))
        #expect(result.dataset.labels == [1])
        #expect(result.dataset.features == [2, 3])
        #expect(error(text) == .malformedRecord(file: "t.csv", line: 1, reason: "column 1: 'label' is not a number"))
    }

    @Test func acceptsCRLFBlankLinesAndNoFinalNewline() throws {
        let result = try read("\u{FEFF}1,2\r\n\r\n  \t\n3,4\r\n\n5,6")
        #expect(result.dataset.labels == [1, 3, 5])
        #expect(result.dataset.features == [2, 4, 6])
    }

    @Test func takesTheLabelFromAnotherColumn() throws {
        let result = try read("1,2,9\n3,4,8\n", CSVOptions(labelColumn: 2))
        #expect(result.dataset.labels == [9, 8])
        #expect(result.dataset.features == [1, 2, 3, 4])
        #expect(error("1,2\n", CSVOptions(labelColumn: 2)) == .malformedRecord(
            file: "t.csv", line: 1, reason: "the label column 3 is past the 2 columns of the first record"))
        #expect(error("1,2\n", CSVOptions(labelColumn: -1)) == .invalidOption(
            name: "labelColumn", reason: "-1 is negative; columns count from 0"))
    }

    @Test func readsGzippedFiles() throws {
        let directory = try TemporaryDirectory()
        let gzipped: [UInt8] = [
            0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0x33, 0xd4, 0x31, 0xd0, 0x33, 0xd5, 0x31,
            0xe2, 0x32, 0xd0, 0x31, 0xd6, 0x31, 0xe1, 0x02, 0x00, 0xd1, 0xb8, 0x9f, 0x0f, 0x0e, 0x00, 0x00, 0x00,
        ]
        let expected = Dataset(features: [0.5, 2, 3, 4], labels: [1, 0], width: 2)
        let named = try directory.write(gzipped, to: "train.csv.gz")
        #expect(try CSVReader.read(file: named).dataset == expected)
        // The magic bytes are enough, whatever the name.
        let unnamed = try directory.write(gzipped, to: "train.csv")
        #expect(try CSVReader.read(file: unnamed).dataset == expected)
        let broken = try directory.write(Array(gzipped.prefix(20)), to: "broken.csv.gz")
        #expect(throws: DataError.corruptFile(file: broken, reason:
            "corrupt gzip data: stream ends early (truncated file?); check the download or re-create the file")) {
            try CSVReader.read(file: broken)
        }
    }

    @Test func reportsAWrongColumnCountWithItsLine() {
        let failure = error("1,2,3\n4,5,6\n7,8\n")
        #expect(failure == .inconsistentWidth(file: "t.csv", line: 3, expected: 3, found: 2))
        #expect(failure?.description == "t.csv:3: expected 3 columns as in the first record, found 2; "
            + "every record needs its label and the same number of features")
    }

    @Test func reportsBadFieldsByLineAndColumn() {
        let nonNumeric = error("1,2\n3,abc\n")
        #expect(nonNumeric == .malformedRecord(file: "t.csv", line: 2, reason: "column 2: 'abc' is not a number"))
        #expect(nonNumeric?.description == "t.csv:2: column 2: 'abc' is not a number")
        #expect(error("1,,3\n") == .malformedRecord(file: "t.csv", line: 1, reason: "column 2 is empty"))
        #expect(error("1,2,3\n1,2, \n") == .malformedRecord(file: "t.csv", line: 2, reason: "column 3 is empty"))
        #expect(error("1,nan\n") == .malformedRecord(file: "t.csv", line: 1, reason: "column 2: 'nan' is not a finite number"))
        #expect(error("1,2\n1,-Infinity\n") == .malformedRecord(
            file: "t.csv", line: 2, reason: "column 2: '-Infinity' is not a finite number"))
        #expect(error("INF,2\n") == .malformedRecord(file: "t.csv", line: 1, reason: "column 1: 'INF' is not a finite number"))
        #expect(error("1,1e39\n") == .malformedRecord(file: "t.csv", line: 1, reason: "column 2: '1e39' is outside Float's range"))
        #expect(error("1,1.2.3\n") == .malformedRecord(file: "t.csv", line: 1, reason: "column 2: '1.2.3' is not a number"))
        #expect(error("1,\"2\"\n") == .malformedRecord(file: "t.csv", line: 1, reason: "column 2: '\"2\"' is not a number"))
        #expect(error("1,0123456789abcdefghijklmnopqrstuvwxyz\n") == .malformedRecord(
            file: "t.csv", line: 1, reason: "column 2: '0123456789abcdefghijklmn…' is not a number"))
    }

    @Test func rejectsFilesWithoutRecords() {
        #expect(error("") == .noRecords(file: "t.csv", skipped: 0))
        #expect(error("\n \r\n\n") == .noRecords(file: "t.csv", skipped: 0))
        #expect(error("a,b\n", CSVOptions(hasHeader: true)) == .noRecords(file: "t.csv", skipped: 0))
        #expect(error("1,x\n", CSVOptions(corruptRecords: .skip)) == .noRecords(file: "t.csv", skipped: 1))
        #expect(error("5\n") == .malformedRecord(
            file: "t.csv", line: 1, reason: "only 1 column; a record needs its label and at least one feature"))
    }

    @Test func skipPolicyListsEverySkippedRecord() throws {
        let result = try read("1,2,3\n4,x,6\n\n7,8\n9,10,11\n12,13,\n", CSVOptions(corruptRecords: .skip))
        #expect(result.dataset.labels == [1, 9])
        #expect(result.dataset.features == [2, 3, 10, 11])
        #expect(result.skipped == [
            .malformedRecord(file: "t.csv", line: 2, reason: "column 2: 'x' is not a number"),
            .inconsistentWidth(file: "t.csv", line: 4, expected: 3, found: 2),
            .malformedRecord(file: "t.csv", line: 6, reason: "column 3 is empty"),
        ])
    }

    @Test func reportsUnreadableFiles() {
        #expect(throws: DataError.unreadable(file: "/nonexistent/x.csv", reason: "No such file or directory")) {
            try CSVReader.read(file: "/nonexistent/x.csv")
        }
    }

    @Test func survivesMutatedInput() {
        let valid = Array("1,0.5,-2e3,4\n0,1.25,+7,.5\r\n\n2,3,4,5\n1,1e-3,2E+2,0\n".utf8)
        let mutator = ByteMutator(interesting: ByteMutator.numericText)
        var random = SplitMix64(seed: 0xC5F)
        var parsed = 0
        for iteration in 0..<3000 {
            let input = mutator.mutate(valid, using: &random)
            let policy: CorruptRecordPolicy = iteration % 2 == 0 ? .fail : .skip
            do {
                let result = try CSVReader.read(bytes: input, name: "fuzz.csv", options: CSVOptions(corruptRecords: policy))
                let dataset = result.dataset
                #expect(dataset.features.count == dataset.count * dataset.width, "seed 0xC5F iteration \(iteration)")
                #expect(dataset.features.allSatisfy { $0.isFinite }, "seed 0xC5F iteration \(iteration)")
                parsed += 1
            } catch {
                #expect(!error.description.isEmpty)
            }
        }
        #expect(parsed > 0)
    }
}
