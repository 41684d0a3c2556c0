// Where a client finds its access key, in the order the AWS SDKs look (environment, then the
// shared-credentials file), with Forge's own variables last. The caller passes the
// environment in; nothing here reads it.
import Foundation

/// Why no usable key could be found where one was asked for.
public enum ClientCredentialsError: Error, Equatable, Sendable, CustomStringConvertible {
    case onlyOneOf(set: String, missing: String)
    case profileNotFound(profile: String, path: String)
    case file(CredentialsFileError)

    public var description: String {
        switch self {
        case .onlyOneOf(let set, let missing): return "\(set) is set but \(missing) is not; set both or neither"
        case .profileNotFound(let profile, let path): return "the profile '\(profile)' (AWS_PROFILE) has no access key pair in \(path)"
        case .file(let error): return "credentials file: \(error)"
        }
    }
}

public enum ClientCredentials {
    /// The key a client signs with:
    /// 1. `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`);
    /// 2. the profile `AWS_PROFILE` (default `default`) of `AWS_SHARED_CREDENTIALS_FILE`
    ///    (default `HOME/.aws/credentials`); a named profile that is missing is an error;
    /// 3. `FORGE_ACCESS_KEY_ID` + `FORGE_SECRET_ACCESS_KEY`;
    /// nil when none applies (the client then sends unsigned requests).
    public static func resolve(environment: [String: String], homeDirectory: String) throws(ClientCredentialsError) -> AccessKey? {
        func value(_ name: String) -> String? { environment[name].flatMap { $0.isEmpty ? nil : $0 } }
        if let key = try pair(value("AWS_ACCESS_KEY_ID"), value("AWS_SECRET_ACCESS_KEY"), names: ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")) {
            return AccessKey(id: key.id, secret: key.secret, sessionToken: value("AWS_SESSION_TOKEN"))
        }
        let path = value("AWS_SHARED_CREDENTIALS_FILE")
            ?? (homeDirectory as NSString).appendingPathComponent(".aws/credentials")
        let profile = value("AWS_PROFILE") ?? value("AWS_DEFAULT_PROFILE")
        if FileManager.default.fileExists(atPath: path) {
            let file: CredentialsFile
            do {
                file = try CredentialsFile(contentsOf: path)
            } catch {
                throw .file(error)
            }
            if let key = file.key(profile: profile ?? "default") { return key }
        }
        if let profile { throw .profileNotFound(profile: profile, path: path) }
        return try pair(value("FORGE_ACCESS_KEY_ID"), value("FORGE_SECRET_ACCESS_KEY"), names: ("FORGE_ACCESS_KEY_ID", "FORGE_SECRET_ACCESS_KEY"))
    }

    /// The region a client signs for: `AWS_REGION`, `AWS_DEFAULT_REGION`, else `us-east-1`
    /// (Forge accepts any).
    public static func region(environment: [String: String]) -> String {
        [environment["AWS_REGION"], environment["AWS_DEFAULT_REGION"]].compactMap { $0 }.first { !$0.isEmpty } ?? "us-east-1"
    }

    private static func pair(_ id: String?, _ secret: String?, names: (String, String)) throws(ClientCredentialsError) -> AccessKey? {
        switch (id, secret) {
        case let (id?, secret?): return AccessKey(id: id, secret: secret)
        case (.some, nil): throw .onlyOneOf(set: names.0, missing: names.1)
        case (nil, .some): throw .onlyOneOf(set: names.1, missing: names.0)
        case (nil, nil): return nil
        }
    }
}
