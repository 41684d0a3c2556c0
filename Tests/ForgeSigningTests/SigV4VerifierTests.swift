// The verifier against the signer and against captured boto3 requests: right keys pass; a
// wrong secret, an unknown key, a changed body or header, a stale clock and an expired
// presigned URL are each refused with their own error.
import Foundation
@testable import ForgeSigning
import Testing

@Suite struct SigV4VerifierTests {
    static let now = Date(timeIntervalSince1970: 1_764_000_000)
    static let verifier = SigV4Verifier(keys: AccessKeyStore([exampleKey, AccessKey(id: "OTHER", secret: "other-secret")]))

    static func signedRequest(key: AccessKey = exampleKey, body: [UInt8], at time: Date = now) -> SignableRequest {
        var request = SignableRequest(method: "POST", target: "/", fields: [
            .init(name: "Host", value: "127.0.0.1:8080"), .init(name: "Content-Type", value: "application/x-amz-json-1.1"),
            .init(name: "X-Amz-Target", value: "SageMaker.ListTrainingJobs"), .init(name: "User-Agent", value: "test"),
        ])
        SigV4Signer(key: key, region: "eu-west-3", service: "sagemaker").sign(&request, payloadHash: SigV4.hexSHA256(body), at: time)
        return request
    }

    @Test func acceptsWhatTheSignerSigns() throws {
        let body = Array("{}".utf8)
        let verified = try Self.verifier.verify(Self.signedRequest(body: body), bodySHA256: SigV4.hexSHA256(body), now: Self.now)
        #expect(verified.accessKeyID == "AKIDEXAMPLE")
        #expect(verified.scope.service == "sagemaker" && verified.scope.region == "eu-west-3")
        // The second key works too, and unsigned fields (User-Agent) may change in transit.
        var other = Self.signedRequest(key: AccessKey(id: "OTHER", secret: "other-secret"), body: body)
        other.setField("user-agent", "a proxy's")
        #expect(try Self.verifier.verify(other, bodySHA256: SigV4.hexSHA256(body), now: Self.now).accessKeyID == "OTHER")
        // A session token is signed along.
        let temporary = Self.signedRequest(key: AccessKey(id: "OTHER", secret: "other-secret", sessionToken: "tok"), body: body)
        #expect(temporary.value("x-amz-security-token") == "tok")
        #expect(try Self.verifier.verify(temporary, bodySHA256: SigV4.hexSHA256(body), now: Self.now).accessKeyID == "OTHER")
    }

    @Test func refusesAWrongSecretAnUnknownKeyAndChanges() throws {
        let body = Array("{}".utf8)
        let wrong = Self.signedRequest(key: AccessKey(id: "AKIDEXAMPLE", secret: "not the secret"), body: body)
        #expect(throws: SigV4Error.self) { try Self.verifier.verify(wrong, bodySHA256: SigV4.hexSHA256(body), now: Self.now) }
        do {
            _ = try Self.verifier.verify(wrong, bodySHA256: SigV4.hexSHA256(body), now: Self.now)
        } catch {
            guard case .signatureMismatch(let canonical, _) = error else { Issue.record("\(error)"); return }
            #expect(canonical.hasPrefix("POST\n/\n\ncontent-type:application/x-amz-json-1.1\nhost:127.0.0.1:8080\n"))
        }
        let unknown = Self.signedRequest(key: AccessKey(id: "NOBODY", secret: "x"), body: body)
        #expect(throws: SigV4Error.unknownAccessKey("NOBODY")) { try Self.verifier.verify(unknown, bodySHA256: SigV4.hexSHA256(body), now: Self.now) }
        let good = Self.signedRequest(body: body)
        #expect(throws: SigV4Error.self) { try Self.verifier.verify(good, bodySHA256: SigV4.hexSHA256(Array("{ }".utf8)), now: Self.now) }
        var retargeted = good
        retargeted.setField("x-amz-target", "SageMaker.StopTrainingJob")
        #expect(throws: SigV4Error.self) { try Self.verifier.verify(retargeted, bodySHA256: SigV4.hexSHA256(body), now: Self.now) }
        var moved = good
        moved.path = "/other"
        #expect(throws: SigV4Error.self) { try Self.verifier.verify(moved, bodySHA256: SigV4.hexSHA256(body), now: Self.now) }
        let bare = SignableRequest(method: "POST", target: "/", fields: [.init(name: "Host", value: "h")])
        #expect(throws: SigV4Error.missingAuthentication) { try Self.verifier.verify(bare, bodySHA256: SigV4.emptyPayloadHash, now: Self.now) }
    }

    @Test func refusesAClockOutsideFifteenMinutes() throws {
        let body = [UInt8]()
        for (offset, passes) in [(-899.0, true), (899, true), (-901, false), (901, false)] {
            let request = Self.signedRequest(body: body, at: Self.now.addingTimeInterval(offset))
            let result = Result { try Self.verifier.verify(request, bodySHA256: SigV4.emptyPayloadHash, now: Self.now) }
            switch result {
            case .success: #expect(passes, "offset \(offset)")
            case .failure(let error):
                #expect(!passes, "offset \(offset): \(error)")
                guard case .requestTimeSkewed(_, _, let tooEarly, 15)? = error as? SigV4Error else { Issue.record("\(error)"); continue }
                #expect(tooEarly == (offset < 0))
                #expect("\(error)".contains(offset < 0 ? "Signature expired" : "Signature not yet current"))
            }
        }
    }

    @Test func checksAClaimedPayloadHash() throws {
        var request = SignableRequest(method: "PUT", target: "/b/k", fields: [.init(name: "Host", value: "h:1")])
        let body = Array("hello world".utf8)
        request.setField("x-amz-content-sha256", SigV4.hexSHA256(body))
        SigV4Signer(key: exampleKey, region: "us-east-1", service: "s3").sign(&request, payloadHash: SigV4.hexSHA256(body), at: Self.now)
        #expect(try Self.verifier.verify(request, bodySHA256: nil, now: Self.now).payloadHash == SigV4.hexSHA256(body))
        #expect(try Self.verifier.verify(request, bodySHA256: SigV4.hexSHA256(body), now: Self.now).scope.service == "s3")
        #expect(throws: SigV4Error.payloadHashMismatch(claimed: SigV4.hexSHA256(body), computed: SigV4.emptyPayloadHash)) {
            try Self.verifier.verify(request, bodySHA256: SigV4.emptyPayloadHash, now: Self.now)
        }
    }

    /// The presigned GET captured from boto3 (aws-faces.md §7), then the same URL too late.
    @Test func presignedQuery() throws {
        let query = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20261125%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20261125T125030Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host"
            + "&X-Amz-Signature=aa724400104bee1ac38b18c1a9e02002415cec6d6a57de2e06d205e08be7d9c9"
        let request = SignableRequest(method: "GET", path: "/forge-bkt/data/a%20b%2Bc.txt", query: query,
                                      fields: [.init(name: "Host", value: "127.0.0.1:45124")])
        let signedAt = try #require(AmzDate(parsing: "20261125T125030Z")).date
        #expect(SigV4Verifier.claimedScope(of: request)?.service == "s3")
        #expect(try Self.verifier.verify(request, bodySHA256: nil, now: signedAt.addingTimeInterval(3599)).accessKeyID == "AKIDEXAMPLE")
        #expect {
            try Self.verifier.verify(request, bodySHA256: nil, now: signedAt.addingTimeInterval(3601))
        } throws: { error in
            if case .presignedURLExpired = error as? SigV4Error { return true }
            return false
        }
        var tampered = request
        tampered.path = "/forge-bkt/data/other.txt"
        #expect(throws: SigV4Error.self) { try Self.verifier.verify(tampered, bodySHA256: nil, now: signedAt) }
        // The signer's own presigned query verifies.
        let own = SignableRequest(method: "GET", path: "/b/k", query: "versionId=1", fields: [.init(name: "Host", value: "h")])
        var presigned = own
        presigned.query = SigV4Signer(key: exampleKey, region: "us-east-1", service: "s3").presignedQuery(for: own, expires: 60, at: Self.now)
        #expect(try Self.verifier.verify(presigned, bodySHA256: nil, now: Self.now).scope.service == "s3")
    }
}
