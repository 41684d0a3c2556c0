// The Authorization header parser: what it accepts, what it refuses, and a fuzz run of random
// and mutated headers that must each parse or throw, never crash.
@testable import ForgeSigning
import ForgeTestSupport
import Testing

@Suite struct AuthorizationHeaderTests {
    static let valid = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        + "SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"

    @Test func parsesAndWritesBack() throws {
        let header = try AuthorizationHeader(parsing: Self.valid)
        #expect(header.accessKeyID == "AKIDEXAMPLE")
        #expect(header.scope == CredentialScope(date: "20150830", region: "us-east-1", service: "service"))
        #expect(header.signedHeaders == ["host", "x-amz-date"])
        #expect(header.description == Self.valid)
        // Without spaces after the commas, and in another order.
        let packed = try AuthorizationHeader(parsing: "AWS4-HMAC-SHA256 Signature=\(header.signature),Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request,SignedHeaders=host;x-amz-date")
        #expect(packed == header)
    }

    @Test(arguments: [
        ("", "Unsupported"),
        ("AWS4-HMAC-SHA1 Credential=a/20150830/r/s/aws4_request, SignedHeaders=host, Signature=" + String(repeating: "0", count: 64), "Unsupported"),
        ("AWS4-HMAC-SHA256 Credential=a/20150830/r/s/aws4_request, SignedHeaders=host", "requires"),
        ("AWS4-HMAC-SHA256 Credential=a/20150830/r/s/aws4_request, SignedHeaders=host, Signature=XYZ", "64 lowercase hex"),
        ("AWS4-HMAC-SHA256 Credential=/20150830/r/s/aws4_request, SignedHeaders=host, Signature=" + String(repeating: "0", count: 64), "access key ID"),
        ("AWS4-HMAC-SHA256 Credential=a/2015083/r/s/aws4_request, SignedHeaders=host, Signature=" + String(repeating: "0", count: 64), "YYYYMMDD"),
        ("AWS4-HMAC-SHA256 Credential=a/20150830/r/s/aws5_request, SignedHeaders=host, Signature=" + String(repeating: "0", count: 64), "aws4_request"),
        ("AWS4-HMAC-SHA256 Credential=a/20150830/r/s/aws4_request, SignedHeaders=Host;;x, Signature=" + String(repeating: "0", count: 64), "SignedHeaders"),
        ("AWS4-HMAC-SHA256 Credential=a/20150830/r/s/aws4_request, Credential=b/20150830/r/s/aws4_request, SignedHeaders=host, Signature=" + String(repeating: "0", count: 64), "repeated"),
        ("AWS4-HMAC-SHA256 Credential", "name=value"),
    ])
    func refuses(_ value: String, mentioning: String) {
        #expect {
            _ = try AuthorizationHeader(parsing: value)
        } throws: { error in
            guard case .malformed(let reason) = error as? SigV4Error else { return false }
            return reason.contains(mentioning)
        }
    }

    /// Mutated valid headers and random byte strings: each parses (and then writes back to a
    /// header that parses to the same value) or throws `.malformed`.
    @Test func fuzz() {
        let mutator = ByteMutator(interesting: Array("AWS4-HMAC-SHA256 Credential=/,;= SignedHeaders Signature aws4_request0af".utf8) + [0, 0xff, 0xc3])
        var parsed = 0
        let (decoded, rejected) = mutator.fuzz("authorization", valid: Array(Self.valid.utf8), iterations: 20_000) { seed, bytes throws(SigV4Error) in
            let header = try AuthorizationHeader(parsing: String(decoding: bytes, as: UTF8.self))
            parsed += 1
            #expect((try? AuthorizationHeader(parsing: header.description)) == header, "seed \(seed)")
        }
        #expect(decoded == parsed && decoded + rejected == 20_000)
        #expect(decoded > 0 && rejected > 0, "the mutations should reach both outcomes: \(decoded) parsed, \(rejected) refused")
        var random = SplitMix64(seed: 99)
        for _ in 0..<5000 {
            let bytes = (0..<Int.random(in: 0...200, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
            _ = try? AuthorizationHeader(parsing: "AWS4-HMAC-SHA256 " + String(decoding: bytes, as: UTF8.self))
            _ = try? AuthorizationHeader(parsing: String(decoding: bytes, as: UTF8.self))
        }
    }
}
