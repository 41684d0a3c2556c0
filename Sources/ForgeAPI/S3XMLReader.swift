// A small, total reader of the XML documents S3 clients send (DeleteObjects,
// CompleteMultipartUpload): elements, attributes (skipped), text with the five named and the
// numeric character references, CDATA, comments and the XML declaration. Anything else (a
// DOCTYPE, a stray `<`, an unknown entity, mismatched or unclosed tags, nesting past 32) is
// MalformedXML. Foundation's XMLParser is not used: on Linux it crashed on fuzzed input and
// accepted truncated documents, and these bodies come from the network.

enum S3XMLReader {
    enum Event {
        case start(String)
        /// An element's end, with the text directly inside it (entities resolved).
        case end(String, text: String)
    }

    static let deepest = 32

    static func read(_ bytes: [UInt8], _ handle: (Event) -> Void) throws(S3Error) {
        let malformed = S3Error(400, "MalformedXML", "The XML you provided was not well-formed or did not validate against our published schema")
        var index = 0
        var stack = [String]()
        var text = [UInt8]()
        var sawRoot = false

        func startsWith(_ prefix: String) -> Bool {
            let prefix = Array(prefix.utf8)
            return index + prefix.count <= bytes.count && Array(bytes[index..<index + prefix.count]) == prefix
        }
        func skip(past terminator: String) throws(S3Error) -> Range<Int> {
            let end = Array(terminator.utf8)
            var probe = index
            while probe + end.count <= bytes.count {
                if Array(bytes[probe..<probe + end.count]) == end {
                    let inside = index..<probe
                    index = probe + end.count
                    return inside
                }
                probe += 1
            }
            throw malformed
        }
        func name(_ raw: ArraySlice<UInt8>) throws(S3Error) -> String {
            let forbidden = Array("<>&\"'=/ \t\r\n".utf8)
            guard !raw.isEmpty, !raw.contains(where: { forbidden.contains($0) }) else { throw malformed }
            return String(decoding: raw, as: UTF8.self)
        }

        while index < bytes.count {
            guard bytes[index] == UInt8(ascii: "<") else {
                guard !stack.isEmpty || isSpace(bytes[index]) else { throw malformed }
                text.append(bytes[index])
                index += 1
                continue
            }
            if startsWith("<?") {
                guard !sawRoot else { throw malformed }
                _ = try skip(past: "?>")
            } else if startsWith("<!--") {
                _ = try skip(past: "-->")
            } else if startsWith("<![CDATA[") {
                guard !stack.isEmpty else { throw malformed }
                index += 9
                text += bytes[try skip(past: "]]>")]
            } else if startsWith("</") {
                index += 2
                let inside = try skip(past: ">")
                var end = inside.upperBound
                while end > inside.lowerBound, isSpace(bytes[end - 1]) { end -= 1 }
                let closing = try name(bytes[inside.lowerBound..<end])
                guard closing == stack.last else { throw malformed }
                stack.removeLast()
                handle(.end(closing, text: try decode(text, malformed)))
                text = []
            } else if startsWith("<!") {
                throw malformed
            } else {
                guard stack.count < deepest, !(stack.isEmpty && sawRoot) else { throw malformed }
                index += 1
                let nameStart = index
                while index < bytes.count, !isSpace(bytes[index]), bytes[index] != UInt8(ascii: ">"), bytes[index] != UInt8(ascii: "/") { index += 1 }
                let opening = try name(bytes[nameStart..<index])
                // Attributes: skipped, but their quoted values may hold '>' and '/'.
                var quote: UInt8?
                var selfClosing = false
                while true {
                    guard index < bytes.count else { throw malformed }
                    let byte = bytes[index]
                    index += 1
                    if let open = quote {
                        if byte == open { quote = nil }
                    } else if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "'") {
                        quote = byte
                    } else if byte == UInt8(ascii: "<") {
                        throw malformed
                    } else if byte == UInt8(ascii: ">") {
                        selfClosing = index >= 2 && bytes[index - 2] == UInt8(ascii: "/")
                        break
                    }
                }
                sawRoot = true
                handle(.start(opening))
                text = []
                if selfClosing {
                    handle(.end(opening, text: ""))
                } else {
                    stack.append(opening)
                }
            }
        }
        guard stack.isEmpty, sawRoot else { throw malformed }
    }

    static func isSpace(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: "\r") || byte == UInt8(ascii: "\n")
    }

    /// Resolves `&lt;` `&gt;` `&amp;` `&quot;` `&apos;` `&#N;` `&#xH;`.
    static func decode(_ text: [UInt8], _ malformed: S3Error) throws(S3Error) -> String {
        guard text.contains(UInt8(ascii: "&")) else { return String(decoding: text, as: UTF8.self) }
        var output = [UInt8]()
        var index = 0
        while index < text.count {
            guard text[index] == UInt8(ascii: "&") else {
                output.append(text[index])
                index += 1
                continue
            }
            guard let semicolon = text[index...].firstIndex(of: UInt8(ascii: ";")), semicolon - index <= 12 else { throw malformed }
            let entity = String(decoding: text[(index + 1)..<semicolon], as: UTF8.self)
            switch entity {
            case "lt": output.append(UInt8(ascii: "<"))
            case "gt": output.append(UInt8(ascii: ">"))
            case "amp": output.append(UInt8(ascii: "&"))
            case "quot": output.append(UInt8(ascii: "\""))
            case "apos": output.append(UInt8(ascii: "'"))
            default:
                let value: UInt32?
                if entity.hasPrefix("#x") || entity.hasPrefix("#X") {
                    value = UInt32(entity.dropFirst(2), radix: 16)
                } else if entity.hasPrefix("#") {
                    value = UInt32(entity.dropFirst(), radix: 10)
                } else {
                    value = nil
                }
                guard let value, let scalar = Unicode.Scalar(value), value != 0 else { throw malformed }
                output += Array(String(Character(scalar)).utf8)
            }
            index = semicolon + 1
        }
        return String(decoding: output, as: UTF8.self)
    }
}
