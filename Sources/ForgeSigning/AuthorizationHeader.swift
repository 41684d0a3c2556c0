// The `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…` header:
// parsed (total: any input either parses or throws `.malformed`) and written.

/// The three parts of a SigV4 `Authorization` header.
public struct AuthorizationHeader: Equatable, Sendable, CustomStringConvertible {
    public static let algorithm = "AWS4-HMAC-SHA256"

    public var accessKeyID: String
    public var scope: CredentialScope
    /// Lowercase header names, in the order the client signed them (sorted, when it follows the spec).
    public var signedHeaders: [String]
    /// 64 lowercase hex digits.
    public var signature: String

    public init(accessKeyID: String, scope: CredentialScope, signedHeaders: [String], signature: String) {
        self.accessKeyID = accessKeyID
        self.scope = scope
        self.signedHeaders = signedHeaders
        self.signature = signature
    }

    /// Parses a header value. The parts may be separated by `,` with or without spaces, in any
    /// order; each must appear once.
    public init(parsing value: String) throws(SigV4Error) {
        let trimmed = value.drop { $0 == " " }
        guard trimmed.hasPrefix(AuthorizationHeader.algorithm + " ") else {
            let algorithm = trimmed.prefix { $0 != " " }
            throw .malformed("Unsupported Authorization algorithm '\(algorithm.prefix(40))'; expected \(AuthorizationHeader.algorithm)")
        }
        var credential: Substring?, signedHeaders: Substring?, signature: Substring?
        for part in trimmed.dropFirst(AuthorizationHeader.algorithm.count + 1).split(separator: ",") {
            let item = part.drop { $0 == " " }
            guard let equals = item.firstIndex(of: "=") else {
                throw .malformed("Authorization component '\(item.prefix(40))' is not name=value")
            }
            let name = item[..<equals], text = item[item.index(after: equals)...]
            let value = text.reversed().drop { $0 == " " }.reversed()
            let content = Substring(String(value))
            switch name {
            case "Credential" where credential == nil: credential = content
            case "SignedHeaders" where signedHeaders == nil: signedHeaders = content
            case "Signature" where signature == nil: signature = content
            default: throw .malformed("Authorization component '\(name.prefix(40))' is unknown or repeated")
            }
        }
        guard let credential, let signedHeaders, let signature else {
            throw .malformed("Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters")
        }
        try self.init(credential: credential, signedHeaders: signedHeaders, signature: signature)
    }

    /// Builds from the three values as they appear in a header or a presigned query.
    init(credential: Substring, signedHeaders: Substring, signature: Substring) throws(SigV4Error) {
        guard let slash = credential.firstIndex(of: "/"), slash > credential.startIndex else {
            throw .malformed("Credential '\(credential.prefix(80))' does not start with an access key ID and a '/'")
        }
        let scope = try CredentialScope(parsing: credential[credential.index(after: slash)...])
        let names = signedHeaders.split(separator: ";", omittingEmptySubsequences: false)
        guard !names.isEmpty, names.allSatisfy({ name in !name.isEmpty && name.utf8.allSatisfy(AuthorizationHeader.isHeaderNameByte) }) else {
            throw .malformed("SignedHeaders '\(signedHeaders.prefix(80))' is not a ';'-separated list of lowercase header names")
        }
        guard signature.utf8.count == 64, signature.utf8.allSatisfy(AuthorizationHeader.isLowerHex) else {
            throw .malformed("Signature must be 64 lowercase hex digits")
        }
        self.init(accessKeyID: String(credential[..<slash]), scope: scope, signedHeaders: names.map(String.init),
                  signature: String(signature))
    }

    public var description: String {
        "\(AuthorizationHeader.algorithm) Credential=\(accessKeyID)/\(scope), SignedHeaders=\(signedHeaders.joined(separator: ";")), Signature=\(signature)"
    }

    /// True for `0-9` and `a-f`.
    public static func isLowerHex(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "f"))
    }

    /// A token character of RFC 9110 that is not an uppercase letter.
    static func isHeaderNameByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"): return true
        default: return Array("!#$%&'*+-.^_`|~".utf8).contains(byte)
        }
    }
}
