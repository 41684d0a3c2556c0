// Which face a request reaches: the service of its credential scope when signed, else its shape.
@testable import ForgeAPI
import ForgeSigning
import Testing

@Suite struct APIFaceTests {
    static func signed(_ service: String, target: String = "/", fields: [SignableRequest.Field] = []) -> SignableRequest {
        let header = "AWS4-HMAC-SHA256 Credential=AK/20240101/eu-west-1/\(service)/aws4_request, SignedHeaders=host;x-amz-date, Signature=" + String(repeating: "0", count: 64)
        return SignableRequest(method: "POST", target: target, fields: fields + [.init(name: "Authorization", value: header)])
    }

    @Test func signedRequestsFollowTheirScope() {
        #expect(APIFace.of(Self.signed("sagemaker")) == .sageMaker)
        #expect(APIFace.of(Self.signed("logs", fields: [.init(name: "X-Amz-Target", value: "SageMaker.ListTrainingJobs")])) == .logs)
        #expect(APIFace.of(Self.signed("sts")) == .sts)
        #expect(APIFace.of(Self.signed("s3", target: "/bucket/key")) == .s3)
        #expect(APIFace.of(Self.signed("execute-api")) == .unknown(service: "execute-api"))
        let presigned = SignableRequest(method: "GET", target: "/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AK%2F20240101%2Fus-east-1%2Fs3%2Faws4_request")
        #expect(APIFace.of(presigned) == .s3)
    }

    @Test func unsignedRequestsFollowTheirShape() {
        #expect(APIFace.of(SignableRequest(method: "POST", target: "/", fields: [.init(name: "X-Amz-Target", value: "SageMaker.ListTrainingJobs")])) == .sageMaker)
        #expect(APIFace.of(SignableRequest(method: "POST", target: "/", fields: [.init(name: "X-Amz-Target", value: "Logs_20140328.GetLogEvents")])) == .logs)
        #expect(APIFace.of(SignableRequest(method: "POST", target: "/", fields: [.init(name: "X-Amz-Target", value: "Nope.X")])) == .sageMaker)
        #expect(APIFace.of(SignableRequest(method: "POST", target: "/", fields: [.init(name: "Content-Type", value: "application/x-www-form-urlencoded; charset=utf-8")])) == .sts)
        #expect(APIFace.of(SignableRequest(method: "GET", target: "/?Action=GetCallerIdentity&Version=2011-06-15")) == .sts)
        #expect(APIFace.of(SignableRequest(method: "GET", target: "/")) == .s3)
        #expect(APIFace.of(SignableRequest(method: "PUT", target: "/bucket/key")) == .s3)
    }

    @Test func refusalsUseEachFacesWords() {
        let mismatch = SigV4Error.signatureMismatch(canonicalRequest: "", stringToSign: "")
        #expect(APIFace.jsonError(mismatch).type == "InvalidSignatureException" && APIFace.jsonError(mismatch).status == 403)
        #expect(APIFace.jsonError(.unknownAccessKey("x")).type == "UnrecognizedClientException")
        #expect(APIFace.jsonError(.missingAuthentication).type == "MissingAuthenticationTokenException")
        #expect(APIFace.queryErrorCode(.unknownAccessKey("x")) == (403, "InvalidClientTokenId"))
        #expect(APIFace.s3ErrorCode(.requestTimeSkewed(requestTime: "", serverTime: "", tooEarly: true, skewMinutes: 15)) == (403, "RequestTimeTooSkewed"))
        let reply = APIFace.s3.refusal(mismatch, requestID: "r")
        #expect(reply.status == 403 && String(decoding: reply.body, as: UTF8.self).contains("<Code>SignatureDoesNotMatch</Code>"))
    }
}
