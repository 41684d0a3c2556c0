// SigV2 presigned S3 URLs: the vector captured from boto3 (aws-faces.md §7), subresources in
// the signed resource, expiry, and a changed path.
import Foundation
@testable import ForgeSigning
import Testing

@Suite struct SigV2PresignedURLTests {
    @Test func capturedVectorAndSubresources() throws {
        let plain = SignableRequest(method: "GET", path: "/forge-bkt/data/a%20b%2Bc.txt")
        let text = SigV2PresignedURL.stringToSign(plain, expires: "1795614630")
        #expect(text == "GET\n\n\n1795614630\n/forge-bkt/data/a%20b%2Bc.txt")
        #expect(SigV2PresignedURL.signature(secret: exampleKey.secret, stringToSign: text) == "GSyY6n6h/Q6gWNGk98+d8s9ENj4=")
        // boto3's generate_presigned_url with ResponseContentType: the subresource is signed, decoded.
        let typed = SignableRequest(method: "GET", path: "/b/a%20b%2Bc.txt",
                                    query: "response-content-type=text%2Fplain&AWSAccessKeyId=AKIDEXAMPLE&Signature=BnjvtNvB2s8xyHH%2BdBW11ad%2BOEM%3D&Expires=1796285669")
        #expect(SigV2PresignedURL.stringToSign(typed, expires: "1796285669") == "GET\n\n\n1796285669\n/b/a%20b%2Bc.txt?response-content-type=text/plain")
        let verifier = SigV4Verifier(keys: AccessKeyStore([exampleKey]))
        let before = Date(timeIntervalSince1970: 1_796_285_600)
        #expect(try verifier.verify(typed, bodySHA256: nil, now: before).accessKeyID == "AKIDEXAMPLE")
        #expect {
            try verifier.verify(typed, bodySHA256: nil, now: Date(timeIntervalSince1970: 1_796_285_670))
        } throws: { error in
            if case .presignedURLExpired = error as? SigV4Error { return true }
            return false
        }
        var moved = typed
        moved.path = "/b/other.txt"
        #expect(throws: SigV4Error.self) { try verifier.verify(moved, bodySHA256: nil, now: before) }
        var stranger = typed
        stranger.query = stranger.query.replacingOccurrences(of: "AKIDEXAMPLE", with: "NOBODY")
        #expect(throws: SigV4Error.unknownAccessKey("NOBODY")) { try verifier.verify(stranger, bodySHA256: nil, now: before) }
    }
}
