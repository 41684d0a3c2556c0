// An HTTP request as SigV4 sees it: the method, the path and query exactly as sent, and the
// header fields. The signer fills one in; the verifier is handed one by the HTTP server.

/// The parts of a request a signature covers.
public struct SignableRequest: Sendable {
    public struct Field: Equatable, Sendable {
        /// Lowercase.
        public var name: String
        public var value: String

        public init(name: String, value: String) {
            self.name = name.lowercased()
            self.value = value
        }
    }

    /// `GET`, `POST`, ….
    public var method: String
    /// The path as sent, still percent-encoded, without the query (`/bucket/a%20b`).
    public var path: String
    /// The query as sent, without the `?` (empty when none).
    public var query: String
    /// Every header field in arrival order; repeated names stay separate. `host` must be among
    /// them (HTTP/2-style servers keep it as the authority: add it back as `host`).
    public var fields: [Field]

    public init(method: String, path: String, query: String = "", fields: [Field] = []) {
        self.method = method
        self.path = path
        self.query = query
        self.fields = fields
    }

    /// Splits a request target (`/a/b?x=1`) into path and query.
    public init(method: String, target: String, fields: [Field] = []) {
        if let mark = target.firstIndex(of: "?") {
            self.init(method: method, path: String(target[..<mark]), query: String(target[target.index(after: mark)...]), fields: fields)
        } else {
            self.init(method: method, path: target, fields: fields)
        }
    }

    /// The values of every field named `name` (lowercase), in arrival order.
    public func values(_ name: String) -> [String] {
        fields.filter { $0.name == name }.map(\.value)
    }

    /// The first value of the field named `name` (lowercase).
    public func value(_ name: String) -> String? {
        fields.first { $0.name == name }?.value
    }

    /// The query's parameters, percent-decoded, in order (`?delete` gives `("delete", "")`).
    public var queryItems: [(name: String, value: String)] {
        query.split(separator: "&").map { pair in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            return (PercentEncoding.decode(parts[0]), parts.count > 1 ? PercentEncoding.decode(parts[1]) : "")
        }
    }

    public mutating func setField(_ name: String, _ value: String) {
        let name = name.lowercased()
        fields.removeAll { $0.name == name }
        fields.append(Field(name: name, value: value))
    }
}
