// Text channels for language models: windows, entropy, and what a too-short text says.
import ForgeData
import ForgeTestSupport
import Foundation
import Testing

@Suite struct TextCorpusTests {
    @Test func windowsOverlapByOneByteAndDropTheRagged() throws {
        let corpus = TextCorpus(bytes: Array("abcdefghij".utf8))
        let windows = try corpus.windows(contextLength: 3, channel: "c")
        // (10 − 1) / 3 = 3 windows: abcd, defg, ghij.
        #expect(windows.count == 3 && windows.width == 4)
        #expect(String(decoding: windows.row(1).map { UInt8($0) }, as: UTF8.self) == "defg")
        #expect(String(decoding: windows.row(2).map { UInt8($0) }, as: UTF8.self) == "ghij")
    }

    @Test func aTextShorterThanOneWindowIsAClearError() {
        #expect {
            try TextCorpus(bytes: Array("abc".utf8)).windows(contextLength: 3, channel: "tiny")
        } throws: { error in
            "\(error)".contains("context_length") && "\(error)".contains("tiny")
        }
    }

    @Test func unigramEntropy() {
        #expect(abs(TextCorpus(bytes: Array("abab".utf8)).unigramEntropy - log(2)) < 1e-12)
        #expect(TextCorpus(bytes: Array("aaaa".utf8)).unigramEntropy == 0)
    }

    @Test func aFolderIsReadInOrderAndGzipIsUnpacked() throws {
        let scratch = try TemporaryDirectory()
        try Data("first ".utf8).write(to: URL(fileURLWithPath: scratch.file("a.txt")))
        try Data("second".utf8).write(to: URL(fileURLWithPath: scratch.file("b.txt")))
        let corpus = try TextCorpus.load(path: scratch.path)
        #expect(String(decoding: corpus.bytes, as: UTF8.self) == "first second")
        #expect(corpus.files.count == 2)
    }
}
