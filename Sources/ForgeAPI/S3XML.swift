// S3's XML: the few request documents the face reads (DeleteObjects' `<Delete>`,
// CompleteMultipartUpload's parts), parsed with Foundation's XMLParser, and the dates and
// escapes of the documents it writes.
import ForgeSigning
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif

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
    /// leaves by name. Throws MalformedXML for a document that does not parse.
    static func records(_ bytes: [UInt8], named record: String) throws(S3Error) -> (records: [[String: String]], leaves: [String: String]) {
        let collector = RecordCollector(record: record)
        let parser = XMLParser(data: Data(bytes))
        parser.delegate = collector
        parser.shouldResolveExternalEntities = false
        guard parser.parse() else {
            throw S3Error(400, "MalformedXML", "The XML you provided was not well-formed or did not validate against our published schema")
        }
        return (collector.records, collector.leaves)
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

/// Collects leaf text by element name, grouped under each `record` element.
///
/// Concurrency: confined to the parse that owns it.
private final class RecordCollector: NSObject, XMLParserDelegate {
    let record: String
    var records = [[String: String]]()
    var leaves = [String: String]()
    private var current: [String: String]?
    private var text = ""

    init(record: String) { self.record = record }

    func parser(_ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?, qualifiedName: String?,
                attributes: [String: String] = [:]) {
        if elementName == record { current = [:] }
        text = ""
    }

    func parser(_ parser: XMLParser, foundCharacters string: String) { text += string }

    func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName: String?) {
        if elementName == record {
            if let current { records.append(current) }
            current = nil
        } else if current != nil {
            current?[elementName] = text
        } else {
            leaves[elementName] = text
        }
        text = ""
    }
}
