// The credential scope of a SigV4 signature: `DATE/REGION/SERVICE/aws4_request`. Its service
// names the face of the HTTP port a request is for.

/// `YYYYMMDD/region/service/aws4_request`.
public struct CredentialScope: Equatable, Sendable, CustomStringConvertible {
    /// `YYYYMMDD`.
    public var date: String
    public var region: String
    /// The signing name: `sagemaker`, `logs`, `s3`, `sts`, ….
    public var service: String

    public init(date: String, region: String, service: String) {
        self.date = date
        self.region = region
        self.service = service
    }

    /// Parses the four parts; throws `.malformed` unless they are there, non-empty and end in
    /// `aws4_request`.
    public init(parsing text: Substring) throws(SigV4Error) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 4, parts.allSatisfy({ !$0.isEmpty }), parts[3] == "aws4_request" else {
            throw .malformed("Credential scope '\(text)' is not of the form YYYYMMDD/region/service/aws4_request")
        }
        guard parts[0].utf8.count == 8, parts[0].utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else {
            throw .malformed("Credential scope date '\(parts[0])' is not YYYYMMDD")
        }
        self.init(date: String(parts[0]), region: String(parts[1]), service: String(parts[2]))
    }

    public var description: String { "\(date)/\(region)/\(service)/aws4_request" }
}
