// The cluster key: one CURVE key pair shared by every process of a cluster. Holders of the
// file can talk to each other; a process without it cannot complete a handshake.
import CZeroMQ
import Foundation

/// A CURVE key pair in Z85 text (40 characters each).
public struct ClusterKey: Sendable, Hashable {
    public let publicKey: String
    public let secretKey: String

    /// A fresh random key pair from libsodium through libzmq.
    public static func generate() throws(TransportError) -> ClusterKey {
        var publicKey = [CChar](repeating: 0, count: 41)
        var secretKey = [CChar](repeating: 0, count: 41)
        guard zmq_curve_keypair(&publicKey, &secretKey) == 0 else { throw .last("zmq_curve_keypair") }
        return ClusterKey(publicKey: text(publicKey), secretKey: text(secretKey))
    }

    /// A key pair from its secret key (the public key is derived, so the two always match).
    public init(secretKey: String) throws(TransportError) {
        guard ClusterKey.isZ85Key(secretKey) else { throw .badKey(path: "-", reason: "the secret key is not 40 Z85 characters") }
        var publicKey = [CChar](repeating: 0, count: 41)
        guard zmq_curve_public(&publicKey, secretKey) == 0 else { throw .last("zmq_curve_public") }
        self.init(publicKey: ClusterKey.text(publicKey), secretKey: secretKey)
    }

    private init(publicKey: String, secretKey: String) {
        self.publicKey = publicKey
        self.secretKey = secretKey
    }

    /// The file format: comment lines, `public = …` and `secret = …`.
    public var fileText: String {
        """
        # Forge cluster key (ZeroMQ CURVE). Every coordinator, worker and rank of a cluster
        # uses the same file; keep it secret (mode 0600).
        public = \(publicKey)
        secret = \(secretKey)

        """
    }

    /// Writes the key to `path`, readable by its owner only.
    public func write(to path: String) throws(TransportError) {
        guard FileManager.default.createFile(atPath: path, contents: Data(fileText.utf8), attributes: [.posixPermissions: 0o600]) else {
            throw .badKey(path: path, reason: "cannot write the file")
        }
    }

    /// Reads a key file written by `write(to:)`; the public key must match the secret one.
    public static func load(path: String) throws(TransportError) -> ClusterKey {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw .badKey(path: path, reason: "cannot read the file")
        }
        var fields = [String: String]()
        for line in text.split(whereSeparator: \.isNewline) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            let parts = trimmed.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2 else { throw .badKey(path: path, reason: "line '\(trimmed.prefix(40))' is not key = value") }
            fields[parts[0]] = parts[1]
        }
        guard let secret = fields["secret"] else { throw .badKey(path: path, reason: "no 'secret = …' line") }
        let key: ClusterKey
        do {
            key = try ClusterKey(secretKey: secret)
        } catch {
            throw .badKey(path: path, reason: "the secret key is not 40 Z85 characters")
        }
        if let stated = fields["public"], stated != key.publicKey {
            throw .badKey(path: path, reason: "the public key does not belong to the secret key")
        }
        return key
    }

    static func isZ85Key(_ text: String) -> Bool {
        let alphabet = Set("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#")
        return text.count == 40 && text.allSatisfy(alphabet.contains)
    }

    private static func text(_ chars: [CChar]) -> String {
        String(decoding: chars.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
