// Tests of DataError's messages: each says what, where, and what to do next.
import ForgeData
import Testing

@Suite struct DataErrorTests {
    @Test func messagesNameTheFileAndWhatToDo() {
        #expect(DataError.malformedRecord(file: "a.csv", line: 7, reason: "column 2 is empty").description
            == "a.csv:7: column 2 is empty")
        #expect(DataError.unreadable(file: "a.csv", reason: "Permission denied").description
            == "cannot read 'a.csv': Permission denied")
        #expect(DataError.unwritable(file: "a.idx", reason: "No space left on device").description
            == "cannot write 'a.idx': No space left on device")
        #expect(DataError.noRecords(file: "a.csv", skipped: 0).description
            == "'a.csv' holds no records; check that it is not empty or header-only")
        #expect(DataError.noRecords(file: "a.csv", skipped: 3).description
            == "'a.csv' holds no usable records: all 3 were skipped as corrupt")
        #expect(DataError.unknownFormat(path: "x", hint: "pass a content type").description
            == "cannot tell the data format of 'x': pass a content type")
        #expect(DataError.unpairedFile(path: "x", reason: "no partner").description == "'x': no partner")
        #expect(DataError.invalidOption(name: "width", reason: "0 is below 1").description == "invalid width: 0 is below 1")
    }
}
