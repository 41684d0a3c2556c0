// One HTTP answer of any face, independent of the server library: status, header fields and
// body bytes.

/// What the HTTP port sends back.
public struct APIReply: Sendable {
    public var status: Int
    /// Header fields in order (names as AWS spells them).
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]
    /// A part of a file sent as the body instead of `body` (S3 GetObject), read as it is sent.
    public var file: FileRange?

    /// `length` bytes of the file at `path` from byte `offset`.
    public struct FileRange: Sendable {
        public var path: String
        public var offset: Int
        public var length: Int
    }

    public init(status: Int, headers: [(name: String, value: String)] = [], body: [UInt8] = [], file: FileRange? = nil) {
        self.status = status
        self.headers = headers
        self.body = body
        self.file = file
    }

    /// A JSON 1.1 answer (`application/x-amz-json-1.1`).
    static func json(status: Int = 200, _ body: [UInt8], requestID: String) -> APIReply {
        APIReply(status: status, headers: [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-RequestId", requestID)], body: body)
    }

    /// A JSON 1.1 error: `{"__type": …, "message": …}` with the status it carries.
    static func json(_ error: APIError, requestID: String) -> APIReply {
        var reply = json(status: error.status, error.body, requestID: requestID)
        reply.headers.append(("x-amzn-ErrorType", error.type))
        return reply
    }

    /// An XML answer (`text/xml`, as STS sends).
    static func xml(status: Int = 200, _ text: String, requestID: String) -> APIReply {
        APIReply(status: status, headers: [("Content-Type", "text/xml"), ("x-amzn-RequestId", requestID)], body: Array(text.utf8))
    }
}

/// Text made safe for XML character data and attribute values.
enum XMLText {
    static func escape(_ text: String) -> String {
        var output = ""
        output.reserveCapacity(text.utf8.count)
        for character in text {
            switch character {
            case "&": output += "&amp;"
            case "<": output += "&lt;"
            case ">": output += "&gt;"
            case "\"": output += "&quot;"
            case "'": output += "&apos;"
            default: output.append(character)
            }
        }
        return output
    }
}
