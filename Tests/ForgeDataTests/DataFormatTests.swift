// Tests of DataFormat: SageMaker content types and detection from file names.
import ForgeData
import Testing

@Suite struct DataFormatTests {
    @Test(arguments: [
        ("text/csv", DataFormat.csv), ("text/csv;label_size=1", .csv), ("Text/CSV; label_size = 1", .csv),
        ("text/csv; charset=utf-8", .csv), ("application/x-libsvm", .libsvm), ("text/libsvm", .libsvm),
        ("text/x-libsvm", .libsvm), ("application/x-idx", .idx),
    ])
    func acceptsContentTypes(contentType: String, format: DataFormat) {
        #expect(DataFormat(contentType: contentType) == format)
    }

    @Test(arguments: ["text/csv;label_size=2", "application/json", "csv", "", "application/x-recordio-protobuf"])
    func rejectsOtherContentTypes(contentType: String) {
        #expect(DataFormat(contentType: contentType) == nil)
    }

    @Test func roundTripsItsCanonicalContentType() {
        for format in DataFormat.allCases {
            #expect(DataFormat(contentType: format.contentType) == format)
        }
    }

    @Test func tellsFormatsFromFileNames() {
        #expect(DataFormat(fileName: "/data/train/part-0001.csv") == .csv)
        #expect(DataFormat(fileName: "TRAIN.CSV.GZ") == .csv)
        #expect(DataFormat(fileName: "a.libsvm") == .libsvm)
        #expect(DataFormat(fileName: "a.svm.gz") == .libsvm)
        #expect(DataFormat(fileName: "train-images-idx3-ubyte.gz") == .idx)
        #expect(DataFormat(fileName: "t10k-labels-idx1-ubyte") == .idx)
        #expect(DataFormat(fileName: "/idx/data.txt") == nil)
        #expect(DataFormat(fileName: "data.txt") == nil)
        #expect(DataFormat(fileName: "csv") == nil)
    }
}
