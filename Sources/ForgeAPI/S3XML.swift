// S3's XML: the few request documents the face reads (DeleteObjects' `<Delete>`,
// CompleteMultipartUpload's parts), parsed by S3XMLReader, and the dates and escapes of the
// documents it writes.
import ForgeSigning
import Foundation

enum S3XML {
    static let namespace = "http://s3.amazonaws.com/doc/2006-03-01/"

    /// `<?xml…?><Root xmlns="…">content</Root>`.
    static func document(_ root: String, _ content: String) -> [UInt8] {
        Array("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<\(root) xmlns=\"\(namespace)\">\(content)</\(root)>".utf8)
    }

    static func element(_ name: String, _ text: String) -> String {
        "<\(name)>\(XMLText.escape(text))</\(name)>"
    }

    /// `Wed, 25 Nov 2026 12:49:34 GMT`.
    static func httpDate(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        return formatter.string(from: date)
    }

    /// The records named `record` (their leaf children's text by name) and the document's other
    /// leaves by name. Throws MalformedXML for anything that is not a well-formed document.
    static func records(_ bytes: [UInt8], named record: String) throws(S3Error) -> (records: [[String: String]], leaves: [String: String]) {
        var records = [[String: String]]()
        var leaves = [String: String]()
        var current: [String: String]?
        try S3XMLReader.read(bytes) { event in
            switch event {
            case .start(let name):
                if name == record { current = [:] }
            case .end(let name, let text):
                if name == record {
                    if let current { records.append(current) }
                    current = nil
                } else if current != nil {
                    current?[name] = text
                } else {
                    leaves[name] = text
                }
            }
        }
        return (records, leaves)
    }
}

extension S3XML {
    /// `2026-11-25T12:49:34.000Z`.
    static func timestamp(_ date: Date) -> String {
        let text = AmzDate(date).description
        // YYYYMMDDTHHMMSSZ → YYYY-MM-DDTHH:MM:SS.000Z
        let c = Array(text)
        return "\(String(c[0..<4]))-\(String(c[4..<6]))-\(String(c[6..<8]))T\(String(c[9..<11])):\(String(c[11..<13])):\(String(c[13..<15])).000Z"
    }
}
