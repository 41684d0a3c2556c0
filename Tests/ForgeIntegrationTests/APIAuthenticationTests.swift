// SigV4 on the coordinator's HTTP port, driven by real clients: boto3 (SageMaker, CloudWatch
// Logs, STS), the AWS CLI and the forge CLI against a real `forge coordinator`. Right keys
// work; a wrong secret, an unknown key and no signature get AWS's own errors and change
// nothing; keys come from the environment or a shared-credentials file; with no key
// configured the coordinator warns and accepts anything.
import ForgeTestSupport
import Foundation
import Testing

@Suite(.serialized) struct APIAuthenticationTests {
    static let createJob = """
    def create(client, name):
        return client.create_training_job(TrainingJobName=name, RoleArn="arn:aws:iam::123456789012:role/forge",
            AlgorithmSpecification={"TrainingImage": "forge/mlp", "TrainingInputMode": "File"},
            InputDataConfig=[{"ChannelName": "train", "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://data/train"}}}],
            OutputDataConfig={"S3OutputPath": "s3://data/models"},
            ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
            StoppingCondition={"MaxRuntimeInSeconds": 60})
    def code(call):
        try:
            call()
            return "accepted"
        except botocore.exceptions.ClientError as e:
            return e.response["Error"]["Code"] + " " + str(e.response["ResponseMetadata"]["HTTPStatusCode"])
    """

    @Test func boto3IsRefusedWithAWrongSecretOrAnUnknownKeyAndNothingChanges() throws {
        let cluster = try LocalCluster(workers: 0)
        let script = """
        import boto3, botocore, botocore.config, json, sys
        def client(service, key="AKIDEXAMPLE", secret="secret", **extra):
            return boto3.client(service, endpoint_url=sys.argv[1], region_name="eu-west-1",
                                aws_access_key_id=key, aws_secret_access_key=secret, **extra)
        \(Self.createJob)
        out = {}
        good, wrong, unknown = client("sagemaker"), client("sagemaker", secret="wrong"), client("sagemaker", key="NOBODY")
        unsigned = client("sagemaker", config=botocore.config.Config(signature_version=botocore.UNSIGNED))
        out["wrong"] = code(lambda: create(wrong, "by-wrong-secret"))
        out["unknown"] = code(lambda: create(unknown, "by-unknown-key"))
        out["unsigned"] = code(lambda: create(unsigned, "by-nobody"))
        out["token"] = code(lambda: client("sagemaker", aws_session_token="a-session-token").list_training_jobs())
        out["good"] = code(lambda: create(good, "by-the-right-key"))
        out["listed"] = [j["TrainingJobName"] for j in good.list_training_jobs()["TrainingJobSummaries"]]
        out["logsWrong"] = code(lambda: client("logs", secret="wrong").describe_log_streams(logGroupName="/aws/sagemaker/TrainingJobs"))
        out["logsGood"] = code(lambda: client("logs").describe_log_streams(logGroupName="/aws/sagemaker/TrainingJobs"))
        who = client("sts").get_caller_identity()
        out["identity"] = [who["Account"], who["UserId"], who["Arn"]]
        out["stsWrong"] = code(lambda: client("sts", secret="wrong").get_caller_identity())
        out["stsUnknown"] = code(lambda: client("sts", key="NOBODY").get_caller_identity())
        print(json.dumps(out))
        """
        guard let result = cluster.pythonJSON(script) else { return }
        let answer = try #require(result as? [String: Any])
        #expect(answer["wrong"] as? String == "InvalidSignatureException 403", "\(answer)")
        #expect(answer["unknown"] as? String == "UnrecognizedClientException 400", "\(answer)")
        #expect(answer["unsigned"] as? String == "MissingAuthenticationTokenException 403", "\(answer)")
        #expect(answer["token"] as? String == "accepted", "\(answer)")
        #expect(answer["good"] as? String == "accepted", "\(answer)")
        #expect(answer["listed"] as? [String] == ["by-the-right-key"], "a refused request created nothing: \(answer)")
        #expect(answer["logsWrong"] as? String == "InvalidSignatureException 403", "\(answer)")
        #expect(answer["logsGood"] as? String == "accepted", "\(answer)")
        #expect(answer["identity"] as? [String] == ["000000000000", "AKIDEXAMPLE", "arn:aws:iam::000000000000:user/forge"], "\(answer)")
        #expect(answer["stsWrong"] as? String == "SignatureDoesNotMatch 403", "\(answer)")
        #expect(answer["stsUnknown"] as? String == "InvalidClientTokenId 403", "\(answer)")
        #expect(cluster.log("coordinator.log").contains("refused a request"))

        // The AWS CLI signs the same way (and prints AWS's error, exit 255, for a wrong secret).
        let cli = ["AWS_SHARED_CREDENTIALS_FILE=/nonexistent", "AWS_CONFIG_FILE=/nonexistent", "AWS_ACCESS_KEY_ID=AKIDEXAMPLE",
                   "AWS_DEFAULT_REGION=us-east-1", "aws", "--endpoint-url", cluster.endpoint, "--output", "json"]
        let identity = try ExternalTool.run(["AWS_SECRET_ACCESS_KEY=secret"] + cli + ["sts", "get-caller-identity"])
        #expect(identity.status == 0 && identity.text.contains("\"Account\": \"000000000000\""), "\(identity.text) \(identity.standardError)")
        let listed = try ExternalTool.run(["AWS_SECRET_ACCESS_KEY=secret"] + cli + ["sagemaker", "list-training-jobs"])
        #expect(listed.status == 0 && listed.text.contains("by-the-right-key"), "\(listed.text) \(listed.standardError)")
        let refused = try ExternalTool.run(["AWS_SECRET_ACCESS_KEY=wrong"] + cli + ["sagemaker", "list-training-jobs"])
        #expect(refused.status == 255 && refused.standardError.contains("(InvalidSignatureException)"), "\(refused.standardError)")
    }

    /// A request signed with a clock 20 minutes off, by a hand-made SigV4 signer, is refused
    /// as AWS refuses it; the same signer with the right clock is accepted.
    @Test func aSkewedClockIsRefused() throws {
        let cluster = try LocalCluster(workers: 0)
        let script = """
        import datetime, hashlib, hmac, http.client, json, sys, urllib.parse
        host = urllib.parse.urlparse(sys.argv[1]).netloc
        def call(offset_minutes):
            now = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=offset_minutes)
            stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
            body = b"{}"
            headers = {"content-type": "application/x-amz-json-1.1", "host": host, "x-amz-date": stamp,
                       "x-amz-target": "SageMaker.ListTrainingJobs"}
            names = sorted(headers)
            canonical = "\\n".join(["POST", "/", "", "".join(f"{n}:{headers[n]}\\n" for n in names), ";".join(names),
                                   hashlib.sha256(body).hexdigest()])
            scope = f"{day}/us-east-1/sagemaker/aws4_request"
            key = ("AWS4secret").encode()
            for part in (day, "us-east-1", "sagemaker", "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            to_sign = "\\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
            signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
            headers["Authorization"] = f"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/{scope}, SignedHeaders={';'.join(names)}, Signature={signature}"
            connection = http.client.HTTPConnection(host)
            connection.request("POST", "/", body=body, headers=headers)
            reply = connection.getresponse()
            answer = json.loads(reply.read() or b"{}")
            return [reply.status, answer.get("__type", ""), answer.get("message", "")[:40]]
        print(json.dumps({"now": call(0), "past": call(-20), "future": call(20)}))
        """
        let answer = try #require(try ExternalTool.pythonJSON(script, [cluster.endpoint]) as? [String: [AnyHashable]])
        #expect(answer["now"] == [200, "", ""], "\(answer)")
        for (name, message) in [("past", "Signature expired: "), ("future", "Signature not yet current: ")] {
            let reply = answer[name] ?? []
            #expect(reply.first as? Int == 403 && reply.dropFirst().first as? String == "InvalidSignatureException", "\(answer)")
            #expect((reply.last as? String)?.hasPrefix(message) == true, "\(answer)")
        }
    }

    @Test func theForgeCLISignsWithTheAWSVariablesAProfileOrForgesOwn() throws {
        let cluster = try LocalCluster(workers: 0)
        let signed = try cluster.forge(["jobs"])
        #expect(signed.status == 0 && signed.standardOutput.hasPrefix("NAME"), "\(signed)")
        let wrong = try cluster.forge(["jobs"], environment: ["AWS_SECRET_ACCESS_KEY": "wrong"])
        #expect(wrong.status == 1 && wrong.standardError.contains("error: InvalidSignatureException: The request signature we calculated does not match"), "\(wrong)")
        let unknown = try cluster.forge(["describe", "x"], environment: ["AWS_ACCESS_KEY_ID": "NOBODY"])
        #expect(unknown.status == 1 && unknown.standardError.contains("UnrecognizedClientException"), "\(unknown)")
        let unsigned = try cluster.forge(["nodes"], environment: ["AWS_ACCESS_KEY_ID": nil, "AWS_SECRET_ACCESS_KEY": nil])
        #expect(unsigned.status == 1 && unsigned.standardError.contains("MissingAuthenticationTokenException"), "\(unsigned)")
        // A profile of a shared-credentials file, and Forge's own variables as the last resort.
        let file = try cluster.directory.write("[default]\naws_access_key_id = AKIDEXAMPLE\naws_secret_access_key = wrong\n"
                                               + "[lab]\naws_access_key_id = AKIDEXAMPLE\naws_secret_access_key = secret\n", to: "credentials")
        let profiled = try cluster.forge(["logs", "no-such-job"], environment: ["AWS_ACCESS_KEY_ID": nil, "AWS_SECRET_ACCESS_KEY": nil,
                                                                               "AWS_SHARED_CREDENTIALS_FILE": file, "AWS_PROFILE": "lab"])
        // Signed and accepted: the error is about the job, not the signature.
        #expect(profiled.status == 1 && profiled.standardError.contains("ValidationException"), "\(profiled)")
        let defaulted = try cluster.forge(["jobs"], environment: ["AWS_ACCESS_KEY_ID": nil, "AWS_SECRET_ACCESS_KEY": nil, "AWS_SHARED_CREDENTIALS_FILE": file])
        #expect(defaulted.status == 1 && defaulted.standardError.contains("InvalidSignatureException"), "the default profile has the wrong secret: \(defaulted)")
        let missingProfile = try cluster.forge(["jobs"], environment: ["AWS_ACCESS_KEY_ID": nil, "AWS_SECRET_ACCESS_KEY": nil,
                                                                       "AWS_SHARED_CREDENTIALS_FILE": file, "AWS_PROFILE": "nope"])
        #expect(missingProfile.status == 1 && missingProfile.standardError.contains("'nope'"), "\(missingProfile)")
        let forgeOwn = try cluster.forge(["jobs"], environment: ["AWS_ACCESS_KEY_ID": nil, "AWS_SECRET_ACCESS_KEY": nil,
                                                                 "FORGE_ACCESS_KEY_ID": "AKIDEXAMPLE", "FORGE_SECRET_ACCESS_KEY": "secret"])
        #expect(forgeOwn.status == 0, "\(forgeOwn)")
    }

    @Test func aCredentialsFileGivesEveryProfileAKey() throws {
        let scratch = try TemporaryDirectory()
        let file = try scratch.write("""
        [default]
        aws_access_key_id = FIRSTKEY
        aws_secret_access_key = first-secret
        [second]
        aws_access_key_id = SECONDKEY
        aws_secret_access_key = second/secret+x
        """, to: "credentials")
        let cluster = try LocalCluster(workers: 0, key: ("SECONDKEY", "second/secret+x"), keysInEnvironment: false,
                                       coordinatorArguments: ["--credentials", file])
        #expect(try cluster.forge(["jobs"]).status == 0)
        #expect(try cluster.forge(["jobs"], environment: ["AWS_ACCESS_KEY_ID": "FIRSTKEY", "AWS_SECRET_ACCESS_KEY": "first-secret"]).status == 0)
        let other = try cluster.forge(["jobs"], environment: ["AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret"])
        #expect(other.status == 1 && other.standardError.contains("UnrecognizedClientException"), "\(other)")
        #expect(cluster.log("coordinator.log").contains("checks SigV4 signatures (2 access keys)"))
        // A file without a key pair is refused at start.
        let empty = try scratch.write("[default]\nregion = us-east-1\n", to: "empty")
        let refused = try ForgeProcess.run(["coordinator", "--state", scratch.file("s"), "--listen", "tcp://127.0.0.1:1", "--api", "127.0.0.1:1",
                                            "--credentials", empty], timeout: .seconds(30))
        #expect(refused.status != 0 && refused.standardError.contains("no profile with both"), "\(refused)")
    }

    @Test func withoutKeysTheCoordinatorWarnsAndAcceptsAnyRequest() throws {
        let cluster = try LocalCluster(workers: 0, key: nil)
        #expect(try cluster.forge(["jobs"]).status == 0)
        let anySigned = try cluster.forge(["jobs"], environment: ["AWS_ACCESS_KEY_ID": "WHOEVER", "AWS_SECRET_ACCESS_KEY": "whatever"])
        #expect(anySigned.status == 0, "\(anySigned)")
        let warnings = cluster.log("coordinator.log").components(separatedBy: "no access keys configured: the API does not check signatures")
        #expect(warnings.count == 2, "the warning appears once: \(cluster.log("coordinator.log"))")
        let who = try ExternalTool.pythonJSON("""
        import boto3, botocore, botocore.config, json, sys
        sts = boto3.client("sts", endpoint_url=sys.argv[1], region_name="us-east-1",
                           config=botocore.config.Config(signature_version=botocore.UNSIGNED))
        print(json.dumps({"user": sts.get_caller_identity()["UserId"]}))
        """, [cluster.endpoint])
        #expect((who as? [String: String])?["user"] == "anonymous", "\(who)")
    }
}
