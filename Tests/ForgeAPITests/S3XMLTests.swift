// The request documents the S3 face reads (DeleteObjects, CompleteMultipartUpload): what they
// yield, and a fuzz run of mutated documents that must parse or throw MalformedXML.
@testable import ForgeAPI
import ForgeTestSupport
import Testing

@Suite struct S3XMLTests {
    static let complete = Array("""
    <CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Part><ETag>"a&amp;b"</ETag><PartNumber>1</PartNumber></Part>\
    <Part><PartNumber>2</PartNumber><ETag>"cd"</ETag><ChecksumCRC32>AAAAAA==</ChecksumCRC32></Part></CompleteMultipartUpload>
    """.utf8)

    @Test func recordsAndLeaves() throws {
        let (parts, _) = try S3XML.records(Self.complete, named: "Part")
        #expect(parts == [["ETag": "\"a&b\"", "PartNumber": "1"], ["PartNumber": "2", "ETag": "\"cd\"", "ChecksumCRC32": "AAAAAA=="]])
        let (objects, leaves) = try S3XML.records(Array("<Delete><Object><Key>a &lt; b</Key></Object><Object><Key>c</Key></Object><Quiet>true</Quiet></Delete>".utf8),
                                                  named: "Object")
        #expect(objects.map { $0["Key"] } == ["a < b", "c"])
        #expect(leaves["Quiet"] == "true")
        let declared = try S3XML.records(Array("<?xml version=\"1.0\"?>\n<!-- c --><Delete a='x>/'><Object><Key><![CDATA[<k>]]>&#x41;&#66;</Key></Object><Quiet/></Delete>\n".utf8),
                                         named: "Object")
        #expect(declared.records == [["Key": "<k>AB"]] && declared.leaves["Quiet"] == "")
    }

    @Test(arguments: ["", "<Delete><Object>", "<Delete></Object>", "<!DOCTYPE x [<!ENTITY e \"x\">]><Delete/>", "<Delete>&e;</Delete>",
                      "x<Delete/>", "<Delete/><Delete/>", "<Delete>&#0;</Delete>", "<Delete><</Delete>", "< Delete/>", "<Delete a='1></Delete>"])
    func refuses(_ text: String) {
        #expect(throws: S3Error.self) { try S3XML.records(Array(text.utf8), named: "Object") }
    }

    @Test func fuzz() {
        let mutator = ByteMutator(interesting: Array("<>/&;\"'=![]CDATA?xml ".utf8) + [0, 0xff])
        let outcome = mutator.fuzz("s3-xml", valid: Self.complete, iterations: 20_000) { _, bytes throws(S3Error) in
            _ = try S3XML.records(bytes, named: "Part")
        }
        #expect(outcome.decoded > 0 && outcome.rejected > 0, "\(outcome)")
        var random = SplitMix64(seed: 3)
        for _ in 0..<3000 {
            let bytes = (0..<Int.random(in: 0...300, using: &random)).map { _ in Array("<>/&;#x!-[]?ab ".utf8).randomElement(using: &random) ?? 0 }
            _ = try? S3XML.records(bytes, named: "a")
        }
    }
}
