// The STS face: `GetCallerIdentity` (form-encoded `POST /`, `Action=GetCallerIdentity&Version=
// 2011-06-15`, or the same in the query), answered in STS's XML. Forge has one account,
// 000000000000; the caller is named by the access key that signed the request.
import ForgeSigning
import Foundation

public struct STSAPI: Sendable {
    public static let account = "000000000000"
    static let namespace = "https://sts.amazonaws.com/doc/2011-06-15/"

    public init() {}

    /// Answers the form `parameters` for the caller `accessKeyID` (nil when unsigned).
    public func handle(parameters: [(name: String, value: String)], accessKeyID: String?, requestID: String) -> APIReply {
        let action = parameters.first { $0.name == "Action" }?.value ?? ""
        guard action == "GetCallerIdentity" else {
            return STSAPI.error(status: 400, code: "InvalidAction",
                                message: "Could not find operation \(action) for version 2011-06-15 (Forge serves GetCallerIdentity)",
                                requestID: requestID)
        }
        let user = accessKeyID ?? "anonymous"
        let text = "<GetCallerIdentityResponse xmlns=\"\(STSAPI.namespace)\"><GetCallerIdentityResult>"
            + "<Arn>arn:aws:iam::\(STSAPI.account):user/forge</Arn><UserId>\(XMLText.escape(user))</UserId>"
            + "<Account>\(STSAPI.account)</Account></GetCallerIdentityResult>"
            + "<ResponseMetadata><RequestId>\(requestID)</RequestId></ResponseMetadata></GetCallerIdentityResponse>"
        return .xml(text, requestID: requestID)
    }

    /// STS's error shape: `<ErrorResponse><Error><Type>Sender</Type><Code>…`.
    static func error(status: Int, code: String, message: String, requestID: String) -> APIReply {
        let text = "<ErrorResponse xmlns=\"\(namespace)\"><Error><Type>Sender</Type><Code>\(XMLText.escape(code))</Code>"
            + "<Message>\(XMLText.escape(message))</Message></Error><RequestId>\(requestID)</RequestId></ErrorResponse>"
        return .xml(status: status, text, requestID: requestID)
    }

    /// `application/x-www-form-urlencoded` pairs (`+` is a space here, unlike in SigV4).
    static func formParameters(_ text: String) -> [(name: String, value: String)] {
        text.split(separator: "&").map { pair in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decode(_ part: Substring) -> String { PercentEncoding.decode(part.replacingOccurrences(of: "+", with: " ")) }
            return (decode(parts[0]), parts.count > 1 ? decode(parts[1]) : "")
        }
    }
}
