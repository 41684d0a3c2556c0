// An S3 error as the S3 face answers it: status, code, message and the extra elements some
// codes carry (Key, BucketName, …), written in S3's `<Error>` XML (HEAD answers carry no body).

struct S3Error: Error, Sendable {
    var status: Int
    var code: String
    var message: String
    var extra: [(String, String)] = []

    init(_ status: Int, _ code: String, _ message: String, _ extra: [(String, String)] = []) {
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra
    }

    static func noSuchBucket(_ bucket: String) -> S3Error {
        S3Error(404, "NoSuchBucket", "The specified bucket does not exist", [("BucketName", bucket)])
    }

    static func noSuchKey(_ key: String) -> S3Error {
        S3Error(404, "NoSuchKey", "The specified key does not exist.", [("Key", key)])
    }

    static func noSuchUpload(_ id: String) -> S3Error {
        S3Error(404, "NoSuchUpload", "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.",
                [("UploadId", id)])
    }

    static func internalError(_ message: String) -> S3Error {
        S3Error(500, "InternalError", message)
    }

    func reply(requestID: String, method: String) -> APIReply {
        var reply = S3Errors.reply(status: status, code: code, message: message, requestID: requestID, extra: extra)
        if method == "HEAD" { reply.body = [] }
        return reply
    }
}
