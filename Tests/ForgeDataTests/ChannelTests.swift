// Tests of Channel: file listing order and hiding, format detection, loading CSV, LibSVM and
// IDX folders, and the errors for empty, mixed, unpaired and differently wide channels.
import ForgeData
import ForgeTestSupport
import Testing

@Suite struct ChannelTests {
    @Test func listsAFileAsItself() throws {
        let directory = try TemporaryDirectory()
        let file = try directory.write("1,2\n", to: "one.csv")
        #expect(try Channel.files(at: file) == [file])
    }

    @Test func listsFolderFilesSortedRecursivelyWithoutHiddenOnes() throws {
        let directory = try TemporaryDirectory()
        for name in ["b.csv", "a.csv", "sub/c.csv", "A.csv", ".hidden.csv", ".git/d.csv", "sub/.e.csv"] {
            try directory.write("1,2\n", to: name)
        }
        let files = try Channel.files(at: directory.path)
        #expect(files == ["A.csv", "a.csv", "b.csv", "sub/c.csv"].map(directory.file))
        #expect(try Channel.files(at: directory.path + "/") == ["A.csv", "a.csv", "b.csv", "sub/c.csv"].map {
            directory.path + "/" + $0
        })
    }

    @Test func rejectsEmptyAndMissingChannels() throws {
        let directory = try TemporaryDirectory()
        try directory.write("1,2\n", to: ".only-hidden")
        let empty = DataError.emptyChannel(path: directory.path)
        #expect(throws: empty) { try Channel.files(at: directory.path) }
        #expect(empty.description.hasSuffix("holds no data files (hidden files are ignored); put at least one data file in it"))
        #expect(throws: DataError.unreadable(file: directory.file("nope"), reason: "no such file or folder")) {
            try Channel.files(at: directory.file("nope"))
        }
    }

    @Test func loadsACSVFolderInOrder() throws {
        let directory = try TemporaryDirectory()
        try directory.write("2,20,21\n", to: "part-2.csv")
        try directory.write("1,10,11\nx,1,1\n", to: "part-1.csv")
        let data = try Channel.load(path: directory.path, csv: CSVOptions(corruptRecords: .skip))
        #expect(data.format == .csv)
        #expect(data.files.map(\.name) == [directory.file("part-1.csv"), directory.file("part-2.csv")])
        #expect(data.recordCount == 2)
        #expect(data.skipped == [.malformedRecord(file: directory.file("part-1.csv"), line: 2,
                                                  reason: "column 1: 'x' is not a number")])
        #expect(try data.combined() == Dataset(features: [10, 11, 20, 21], labels: [1, 2], width: 2))
    }

    @Test func rejectsFilesOfDifferentWidths() throws {
        let directory = try TemporaryDirectory()
        let narrow = try directory.write("1,2\n", to: "a.csv")
        let wide = try directory.write("1,2,3\n", to: "b.csv")
        let mismatch = DataError.widthMismatch(file: narrow, width: 1, otherFile: wide, otherWidth: 2)
        #expect(throws: mismatch) { try Channel.load(path: directory.path) }
        #expect(mismatch.description == "'\(narrow)' has 1 features per record but '\(wide)' has 2; "
            + "all files of a channel need the same width")
    }

    @Test func givesLibSVMFilesTheChannelWidth() throws {
        let directory = try TemporaryDirectory()
        try directory.write("1 1:1\n", to: "a.libsvm")
        try directory.write("0 3:3\n", to: "b.svm")
        let data = try Channel.load(path: directory.path)
        #expect(data.format == .libsvm)
        #expect(try data.combined() == Dataset(features: [1, 0, 0, 0, 0, 3], labels: [1, 0], width: 3))
        let wider = try Channel.load(path: directory.path, libsvmWidth: 4)
        #expect(wider.files.allSatisfy { $0.dataset.width == 4 })
    }

    @Test func pairsIDXFilesInAFolder() throws {
        let directory = try TemporaryDirectory()
        try IDXWriter.write(dims: [2, 2, 2], bytes: Array(0..<8), to: directory.file("train-images-idx3-ubyte.gz"))
        try IDXWriter.write(dims: [2], bytes: [4, 5], to: directory.file("train-labels-idx1-ubyte.gz"))
        try IDXWriter.write(dims: [1, 2, 2], bytes: [9, 9, 9, 9], to: directory.file("extra-images-idx3-ubyte"))
        try IDXWriter.write(dims: [1], bytes: [6], to: directory.file("extra-labels-idx1-ubyte.gz"))
        let data = try Channel.load(path: directory.path)
        #expect(data.format == .idx)
        #expect(data.files.map(\.name) == [directory.file("extra-images-idx3-ubyte"),
                                           directory.file("train-images-idx3-ubyte.gz")])
        #expect(try data.combined() == Dataset(features: [9, 9, 9, 9, 0, 1, 2, 3, 4, 5, 6, 7], labels: [6, 4, 5], width: 4))
    }

    @Test func rejectsUnpairedIDXFiles() throws {
        let directory = try TemporaryDirectory()
        try IDXWriter.write(dims: [1, 2], bytes: [1, 2], to: directory.file("a-images-idx3-ubyte"))
        #expect(throws: DataError.unpairedFile(path: directory.file("a-images-idx3-ubyte"), reason:
            "no labels file pairs with this images file; expected one named like it with 'labels' for 'images'")) {
            try Channel.load(path: directory.path)
        }
        try IDXWriter.write(dims: [1], bytes: [1], to: directory.file("a-labels-idx1-ubyte"))
        try IDXWriter.write(dims: [1], bytes: [1], to: directory.file("b-labels-idx1-ubyte"))
        #expect(throws: DataError.unpairedFile(path: directory.file("b-labels-idx1-ubyte"), reason:
            "no images file pairs with this labels file; expected one named like it with 'images' for 'labels'")) {
            try Channel.load(path: directory.path)
        }
        #expect(throws: DataError.unpairedFile(path: directory.file("a-images-idx3-ubyte"), reason:
            "an IDX channel must be a folder holding images and labels files; this is a single file")) {
            try Channel.load(path: directory.file("a-images-idx3-ubyte"))
        }
    }

    @Test func tellsTheFormatFromNamesOrTheContentType() throws {
        let directory = try TemporaryDirectory()
        let data = try directory.write("1,2\n", to: "data.txt")
        #expect(throws: DataError.unknownFormat(path: data, hint: "the name ends in neither .csv, .libsvm nor .svm "
            + "and does not contain 'idx'; pass a content type (text/csv, application/x-libsvm or application/x-idx)")) {
            try Channel.load(path: data)
        }
        #expect(try Channel.load(path: data, format: .csv).files.first?.dataset.features == [2])
        let sparse = try directory.write("1 2:5\n", to: "sparse.txt")
        #expect(try Channel.load(path: sparse, format: DataFormat(contentType: "text/libsvm")).files.first?.dataset
            == Dataset(features: [0, 5], labels: [1], width: 2))
        try directory.write("1,2\n", to: "more.csv")
        try directory.write("1 1:2\n", to: "other.svm")
        let mixed = directory.path
        #expect(throws: DataError.unknownFormat(path: data, hint: "the name ends in neither .csv, .libsvm nor .svm "
            + "and does not contain 'idx'; pass a content type (text/csv, application/x-libsvm or application/x-idx)")) {
            try Channel.load(path: mixed)
        }
        let twoFormats = try Channel.files(at: mixed).filter { !$0.hasSuffix(".txt") }
        #expect(throws: DataError.unknownFormat(path: mixed, hint: "it mixes csv ('\(directory.file("more.csv"))') and "
            + "libsvm ('\(directory.file("other.svm"))') files; keep one format per channel or pass a content type")) {
            try Channel.load(files: twoFormats, channel: mixed)
        }
    }

    @Test func loadsAGivenSubsetOfFiles() throws {
        let directory = try TemporaryDirectory()
        for index in 0..<4 { try directory.write("\(index),\(index)\n", to: "part-\(index).csv") }
        let shard = try Shard(rank: 1, worldSize: 2)
        let mine = try shard.files(Channel.files(at: directory.path))
        let data = try Channel.load(files: mine, channel: directory.path)
        #expect(try data.combined().labels == [1, 3])
        #expect(throws: DataError.emptyChannel(path: directory.path)) {
            try Channel.load(files: [], channel: directory.path)
        }
    }
}
