// An access key pair (and a session token, for temporary credentials), and the set of pairs a
// server accepts.

/// One access key: its ID, its secret, and a session token for temporary credentials.
public struct AccessKey: Equatable, Sendable, CustomStringConvertible {
    public var id: String
    public var secret: String
    public var sessionToken: String?

    public init(id: String, secret: String, sessionToken: String? = nil) {
        self.id = id
        self.secret = secret
        self.sessionToken = sessionToken
    }

    /// The ID only: a secret never reaches a log line.
    public var description: String { "access key \(id)" }
}

/// The access keys a server accepts, by ID.
///
/// Concurrency: Sendable; immutable.
public struct AccessKeyStore: Sendable {
    private let secrets: [String: String]

    public init(_ keys: [AccessKey] = []) {
        var secrets = [String: String]()
        for key in keys { secrets[key.id] = key.secret }
        self.secrets = secrets
    }

    /// True when no key is configured (the server then checks no signature).
    public var isEmpty: Bool { secrets.isEmpty }

    /// How many distinct key IDs there are.
    public var count: Int { secrets.count }

    /// The secret of `id`, or nil for an unknown key.
    public func secret(for id: String) -> String? { secrets[id] }

    /// This store and `other`'s keys together (`other` wins for an ID in both).
    public func merging(_ other: [AccessKey]) -> AccessKeyStore {
        AccessKeyStore(secrets.map { AccessKey(id: $0.key, secret: $0.value) } + other)
    }
}
