// The AWS shared-credentials file (`~/.aws/credentials`): INI sections, one per profile, with
// `aws_access_key_id`, `aws_secret_access_key` and optionally `aws_session_token`.
import Foundation

/// A line of a credentials file that is not a section, a `key = value` pair, a comment or blank.
public struct CredentialsFileError: Error, Equatable, Sendable, CustomStringConvertible {
    public var path: String
    public var line: Int
    public var reason: String

    public var description: String { "\(path):\(line): \(reason)" }
}

/// The profiles of a shared-credentials file.
public struct CredentialsFile: Sendable {
    /// Profile name → its keys (lowercase) → values, as written.
    public let profiles: [String: [String: String]]

    /// Parses `text`; `path` only names the file in errors. `[profile name]` sections (the
    /// config-file spelling) are read as `name`.
    public init(parsing text: String, path: String = "credentials") throws(CredentialsFileError) {
        var profiles = [String: [String: String]]()
        var current: String?
        var number = 0
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
            number += 1
            let line = rawLine.trimmingCharacters(in: .whitespacesAndNewlines)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("[") {
                guard line.hasSuffix("]"), line.count > 2 else {
                    throw CredentialsFileError(path: path, line: number, reason: "a section header must be [profile-name]")
                }
                var name = line.dropFirst().dropLast().trimmingCharacters(in: .whitespaces)
                if name.hasPrefix("profile ") { name = name.dropFirst("profile ".count).trimmingCharacters(in: .whitespaces) }
                current = name
                profiles[name, default: [:]] = profiles[name] ?? [:]
                continue
            }
            guard let equals = line.firstIndex(of: "=") else {
                throw CredentialsFileError(path: path, line: number, reason: "expected 'name = value', a [profile] header or a comment")
            }
            guard let profile = current else {
                throw CredentialsFileError(path: path, line: number, reason: "'\(line[..<equals].trimmingCharacters(in: .whitespaces))' comes before any [profile] header")
            }
            let key = line[..<equals].trimmingCharacters(in: .whitespaces).lowercased()
            let value = line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            guard !key.isEmpty else {
                throw CredentialsFileError(path: path, line: number, reason: "a setting needs a name before '='")
            }
            profiles[profile, default: [:]][key] = value
        }
        self.profiles = profiles
    }

    /// Reads and parses the file at `path`.
    public init(contentsOf path: String) throws(CredentialsFileError) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CredentialsFileError(path: path, line: 0, reason: "cannot read the file")
        }
        try self.init(parsing: String(decoding: data, as: UTF8.self), path: path)
    }

    /// The key of `profile`, or nil when it has no complete key pair.
    public func key(profile: String) -> AccessKey? {
        guard let settings = profiles[profile], let id = settings["aws_access_key_id"], let secret = settings["aws_secret_access_key"],
              !id.isEmpty, !secret.isEmpty else { return nil }
        let token = settings["aws_session_token"].flatMap { $0.isEmpty ? nil : $0 }
        return AccessKey(id: id, secret: secret, sessionToken: token)
    }

    /// Every profile's complete key pair, by profile name.
    public var keys: [AccessKey] {
        profiles.keys.sorted().compactMap { key(profile: $0) }
    }
}
