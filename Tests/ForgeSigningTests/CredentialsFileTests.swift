import Foundation
@testable import ForgeSigning
import ForgeTestSupport
import Testing

@Suite struct CredentialsFileTests {
    @Test func readsEveryProfilesKeyPair() throws {
        let file = try CredentialsFile(parsing: """
        # keys for the lab
        [default]
        aws_access_key_id = AKIDEXAMPLE
        aws_secret_access_key=wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY

        ; a second one, with a session token and odd spacing
        [ profile ci ]
          AWS_ACCESS_KEY_ID =  CIKEY
          aws_secret_access_key = ci=secret=with=equals
          aws_session_token = TOKEN
        [incomplete]
        aws_access_key_id = LONELY
        """)
        #expect(file.key(profile: "default") == AccessKey(id: "AKIDEXAMPLE", secret: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"))
        #expect(file.key(profile: "ci") == AccessKey(id: "CIKEY", secret: "ci=secret=with=equals", sessionToken: "TOKEN"))
        #expect(file.key(profile: "incomplete") == nil)
        #expect(file.keys.map(\.id) == ["CIKEY", "AKIDEXAMPLE"])
    }

    @Test(arguments: [("key = value\n", 1), ("[a]\nx = 1\nnot a setting\n", 3), ("[a\n", 1), ("[a]\n = v\n", 2)])
    func namesTheBadLine(_ text: String, line: Int) {
        #expect {
            _ = try CredentialsFile(parsing: text, path: "creds")
        } throws: { error in
            (error as? CredentialsFileError)?.line == line && "\(error)".hasPrefix("creds:\(line): ")
        }
    }
}

@Suite struct ClientCredentialsTests {
    @Test func followsTheSDKOrderThenForgesVariables() throws {
        let home = try TemporaryDirectory()
        _ = try home.write("[default]\naws_access_key_id = FILEKEY\naws_secret_access_key = filesecret\n[other]\naws_access_key_id = OTHERKEY\naws_secret_access_key = othersecret\n",
                           to: ".aws/credentials")
        let root = home.file("")
        func resolve(_ environment: [String: String], home: String? = nil) throws -> AccessKey? {
            try ClientCredentials.resolve(environment: environment, homeDirectory: home ?? root)
        }
        #expect(try resolve(["AWS_ACCESS_KEY_ID": "ENVKEY", "AWS_SECRET_ACCESS_KEY": "s", "AWS_SESSION_TOKEN": "t", "FORGE_ACCESS_KEY_ID": "F", "FORGE_SECRET_ACCESS_KEY": "f"])
                == AccessKey(id: "ENVKEY", secret: "s", sessionToken: "t"))
        #expect(try resolve([:])?.id == "FILEKEY")
        #expect(try resolve(["AWS_PROFILE": "other"])?.id == "OTHERKEY")
        #expect(throws: ClientCredentialsError.self) { try resolve(["AWS_PROFILE": "nope"]) }
        #expect(throws: ClientCredentialsError.onlyOneOf(set: "AWS_ACCESS_KEY_ID", missing: "AWS_SECRET_ACCESS_KEY")) { try resolve(["AWS_ACCESS_KEY_ID": "x"]) }
        let empty = try TemporaryDirectory()
        #expect(try resolve(["FORGE_ACCESS_KEY_ID": "F", "FORGE_SECRET_ACCESS_KEY": "f"], home: empty.file(""))?.id == "F")
        #expect(try resolve(["AWS_SHARED_CREDENTIALS_FILE": home.file(".aws/credentials")], home: empty.file(""))?.id == "FILEKEY")
        #expect(try resolve([:], home: empty.file("")) == nil)
    }
}
