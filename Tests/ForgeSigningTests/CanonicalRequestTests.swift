// The canonical request and signature against published vectors: AWS's Signature Version 4
// test suite (get-vanilla, get-vanilla-query-order-key-case, post-vanilla; service `service`)
// and the captures of boto3 in shared/reference (SageMaker JSON 1.1, S3 PutObject, a presigned
// S3 GET).
import Foundation
@testable import ForgeSigning
import Testing

let exampleKey = AccessKey(id: "AKIDEXAMPLE", secret: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")

/// Signs with the example key as the verifier would recompute it.
func exampleSignature(_ request: SignableRequest, signed: [String], payloadHash: String, time: String,
                      region: String = "us-east-1", service: String) throws -> (canonical: CanonicalRequest, signature: String) {
    let stamp = try #require(AmzDate(parsing: time))
    let scope = CredentialScope(date: stamp.day, region: region, service: service)
    let canonical = CanonicalRequest(request, signedHeaders: signed, payloadHash: payloadHash, service: service)
    let signature = SigV4.signature(key: SigV4.signingKey(secret: exampleKey.secret, scope: scope),
                                    stringToSign: canonical.stringToSign(time: stamp, scope: scope))
    return (canonical, signature)
}

@Suite struct CanonicalRequestTests {
    static let suiteFields = [SignableRequest.Field(name: "Host", value: "example.amazonaws.com"),
                              SignableRequest.Field(name: "X-Amz-Date", value: "20150830T123600Z")]

    @Test(arguments: [
        // get-vanilla
        ("GET", "/", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
        // get-vanilla-query-order-key-case: parameters are sorted before signing.
        ("GET", "/?Param2=value2&Param1=value1", "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"),
        // post-vanilla
        ("POST", "/", "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"),
    ])
    func awsTestSuite(method: String, target: String, expected: String) throws {
        let request = SignableRequest(method: method, target: target, fields: Self.suiteFields)
        let (_, signature) = try exampleSignature(request, signed: ["host", "x-amz-date"], payloadHash: SigV4.emptyPayloadHash,
                                                  time: "20150830T123600Z", service: "service")
        #expect(signature == expected)
    }

    @Test func getVanillaCanonicalRequestText() throws {
        let request = SignableRequest(method: "GET", target: "/", fields: Self.suiteFields)
        let (canonical, _) = try exampleSignature(request, signed: ["host", "x-amz-date"], payloadHash: SigV4.emptyPayloadHash,
                                                  time: "20150830T123600Z", service: "service")
        #expect(canonical.text == "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n\(SigV4.emptyPayloadHash)")
        #expect(canonical.digest == "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63")
    }

    /// boto3's DescribeTrainingJob, captured and recomputed (sagemaker-contract.md §1.1).
    @Test func sageMakerJSON() throws {
        var request = SignableRequest(method: "POST", target: "/", fields: [
            .init(name: "Host", value: "127.0.0.1:8080"), .init(name: "Accept-Encoding", value: "identity"),
            .init(name: "X-Amz-Target", value: "SageMaker.DescribeTrainingJob"),
            .init(name: "Content-Type", value: "application/x-amz-json-1.1"), .init(name: "User-Agent", value: "Boto3/1.43.11"),
            .init(name: "X-Amz-Date", value: "20240115T120000Z"),
        ])
        let body = Array(#"{"TrainingJobName": "demo-job-1"}"#.utf8)
        let signed = ["content-type", "host", "x-amz-date", "x-amz-target"]
        let (canonical, signature) = try exampleSignature(request, signed: signed, payloadHash: SigV4.hexSHA256(body),
                                                          time: "20240115T120000Z", service: "sagemaker")
        #expect(canonical.digest == "7152f8e667e35a11c18bddbc1945d8918b2d6c98e60a023bfc28a617132c0fc6")
        #expect(signature == "b5b21dddb62d3ef6bb5756cb5344cffa2ba1bd2b2d1816c1e0f93aec174e44db")
        let key = SigV4.signingKey(secret: exampleKey.secret, scope: CredentialScope(date: "20240115", region: "us-east-1", service: "sagemaker"))
        #expect(key.withUnsafeBytes { SigV4.hex($0) } == "9879c79882e50045fcdc25c64912d863dddacd79b88fbd430a0d19920614d4c1")

        request.fields.append(.init(name: "X-Amz-Security-Token", value: "FQoGZXIvYXdzEXAMPLETOKEN"))
        let withToken = try exampleSignature(request, signed: ["content-type", "host", "x-amz-date", "x-amz-security-token", "x-amz-target"],
                                             payloadHash: SigV4.hexSHA256(body), time: "20240115T120000Z", service: "sagemaker")
        #expect(withToken.canonical.digest == "dd66e4a0114c2696c0bb3da09294e157643462de499e68d1c31521dc2b7136e3")
        #expect(withToken.signature == "694d48dac3201fcfa3e739c269f12d924436edb7d55d06fdb94b3c029834801c")
    }

    /// boto3's PutObject of `hello world` over http (aws-faces.md §7).
    @Test func s3PutObject() throws {
        let request = SignableRequest(method: "PUT", target: "/forge-bkt/data/hello.txt", fields: [
            .init(name: "Host", value: "127.0.0.1:45124"), .init(name: "x-amz-checksum-crc32", value: "DUoRhQ=="),
            .init(name: "X-Amz-Content-SHA256", value: "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"),
            .init(name: "X-Amz-Date", value: "20261125T124841Z"), .init(name: "x-amz-sdk-checksum-algorithm", value: "CRC32"),
        ])
        let signed = ["host", "x-amz-checksum-crc32", "x-amz-content-sha256", "x-amz-date", "x-amz-sdk-checksum-algorithm"]
        let (canonical, signature) = try exampleSignature(request, signed: signed, payloadHash: "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9",
                                                          time: "20261125T124841Z", service: "s3")
        #expect(canonical.digest == "0dd0400865a57e136ade455e3197715cc949ffc5b933a80822fcb71ebd3a5205")
        #expect(signature == "37c5e731fc6b15fade3ae24c25fb1264551421614d4fcec1c8d927dbe34bddda")
    }

    @Test func pathsAreRawForS3AndNormalisedAndReencodedElsewhere() {
        let path = "/forge-bkt/a%20b%2Bc/./x//y.txt"
        #expect(CanonicalRequest.uri(path, service: "s3") == path)
        #expect(CanonicalRequest.uri(path, service: "logs") == "/forge-bkt/a%2520b%252Bc/x/y.txt")
        #expect(CanonicalRequest.uri("", service: "sagemaker") == "/")
        #expect(CanonicalRequest.uri("/a/../..//", service: "sts") == "/")
        #expect(CanonicalRequest.uri("/a/b/", service: "sts") == "/a/b/")
    }

    @Test func queriesAreDecodedReencodedAndSorted() {
        #expect(CanonicalRequest.query("delete", excluding: []) == "delete=")
        #expect(CanonicalRequest.query("b=2&a=x y&A=%7e&a=1", excluding: []) == "A=~&a=1&a=x%20y&b=2")
        #expect(CanonicalRequest.query("prefix=a/b&list-type=2&X-Amz-Signature=ff", excluding: ["X-Amz-Signature"]) == "list-type=2&prefix=a%2Fb")
        #expect(CanonicalRequest.query("k=%zz%4", excluding: []) == "k=%25zz%254")
    }

    @Test func headerValuesAreTrimmedCollapsedAndJoined() {
        #expect(CanonicalRequest.normaliseHeaderValue("  a   b \t c  ") == "a b c")
        let request = SignableRequest(method: "GET", path: "/", fields: [.init(name: "X-A", value: " 1 "), .init(name: "x-a", value: "2  3")])
        let canonical = CanonicalRequest(request, signedHeaders: ["x-a"], payloadHash: "UNSIGNED-PAYLOAD", service: "s3")
        #expect(canonical.text == "GET\n/\n\nx-a:1,2 3\n\nx-a\nUNSIGNED-PAYLOAD")
    }
}
