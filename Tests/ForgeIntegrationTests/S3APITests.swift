// The S3 face of a real `forge coordinator`, driven by boto3 (objects, listings, ranges,
// multipart through upload_file/download_file, errors), the AWS CLI (cp, ls, rm, bucket to
// bucket copies) and hand-signed aws-chunked uploads, all against the local object store, which
// keys like `../x` cannot leave.
import ForgeTestSupport
import Foundation
import Testing

@Suite(.serialized) struct S3APITests {
    @Test func boto3ServesObjectsListingsRangesAndMultipart() throws {
        let cluster = try LocalCluster(workers: 0)
        let script = """
        import boto3, botocore, botocore.config, json, os, sys, urllib.error, urllib.request
        endpoint, scratch = sys.argv[1], sys.argv[2]
        def client(secret="secret", key="AKIDEXAMPLE", **extra):
            return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                                aws_access_key_id=key, aws_secret_access_key=secret, **extra)
        s3 = client()
        def code(call):
            try:
                call()
                return "accepted"
            except botocore.exceptions.ClientError as e:
                return e.response["Error"]["Code"]
        out = {"buckets": [b["Name"] for b in s3.list_buckets()["Buckets"]]}
        out["headMissing"] = code(lambda: s3.head_bucket(Bucket="forge-bkt"))
        s3.create_bucket(Bucket="forge-bkt")
        out["headBucket"] = code(lambda: s3.head_bucket(Bucket="forge-bkt"))
        put = s3.put_object(Bucket="forge-bkt", Key="data/hello.txt", Body=b"hello world", ContentType="text/plain", Metadata={"who": "forge"})
        out["etag"], out["crc"] = put["ETag"], put.get("ChecksumCRC32")
        got = s3.get_object(Bucket="forge-bkt", Key="data/hello.txt")
        out["get"] = [got["Body"].read().decode(), got["ContentType"], got["Metadata"].get("who"), got["ContentLength"]]
        tail = s3.get_object(Bucket="forge-bkt", Key="data/hello.txt", Range="bytes=6-")
        out["ranges"] = [tail["Body"].read().decode(), tail["ContentRange"],
                         s3.get_object(Bucket="forge-bkt", Key="data/hello.txt", Range="bytes=-3")["Body"].read().decode(),
                         s3.get_object(Bucket="forge-bkt", Key="data/hello.txt", Range="bytes=0-4")["Body"].read().decode()]
        out["badRange"] = code(lambda: s3.get_object(Bucket="forge-bkt", Key="data/hello.txt", Range="bytes=50-60"))
        out["notModified"] = code(lambda: s3.get_object(Bucket="forge-bkt", Key="data/hello.txt", IfNoneMatch=put["ETag"]))
        out["head"] = s3.head_object(Bucket="forge-bkt", Key="data/hello.txt")["ContentLength"]
        out["headMissingKey"] = code(lambda: s3.head_object(Bucket="forge-bkt", Key="nope"))
        out["missingKey"] = code(lambda: s3.get_object(Bucket="forge-bkt", Key="nope"))
        odd = "odd/a b+c=d(e)!*~'@:,$&;\\u00e9%.txt"
        s3.put_object(Bucket="forge-bkt", Key=odd, Body=b"odd")
        out["odd"] = s3.get_object(Bucket="forge-bkt", Key=odd)["Body"].read().decode()
        for i in range(5):
            s3.put_object(Bucket="forge-bkt", Key=f"page/k{i}", Body=b"x")
        listed = s3.list_objects_v2(Bucket="forge-bkt")
        out["keys"] = [o["Key"] for o in listed["Contents"]]
        top = s3.list_objects_v2(Bucket="forge-bkt", Delimiter="/")
        out["prefixes"] = [p["Prefix"] for p in top["CommonPrefixes"]]
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket="forge-bkt", Prefix="page/", PaginationConfig={"PageSize": 2})
        out["pages"] = [[o["Key"] for o in p.get("Contents", [])] for p in pages]
        out["v1"] = [o["Key"] for o in s3.list_objects(Bucket="forge-bkt", Prefix="page/", MaxKeys=10)["Contents"]]
        none = s3.list_objects_v2(Bucket="forge-bkt", MaxKeys=0)
        out["maxKeys0"] = [none["KeyCount"], str(none["IsTruncated"])]
        out["startAfter"] = [o["Key"] for o in s3.list_objects_v2(Bucket="forge-bkt", Prefix="page/", StartAfter="page/k2")["Contents"]]
        copied = s3.copy_object(Bucket="forge-bkt", Key="copy.txt", CopySource={"Bucket": "forge-bkt", "Key": odd})
        out["copy"] = [s3.get_object(Bucket="forge-bkt", Key="copy.txt")["Body"].read().decode(), copied["CopyObjectResult"]["ETag"]]
        deleted = s3.delete_objects(Bucket="forge-bkt", Delete={"Objects": [{"Key": "copy.txt"}, {"Key": "never-was"}]})
        out["deleted"] = sorted(d["Key"] for d in deleted.get("Deleted", []))
        out["afterDelete"] = code(lambda: s3.head_object(Bucket="forge-bkt", Key="copy.txt"))
        s3.delete_object(Bucket="forge-bkt", Key="page/k4")
        out["deleteMissing"] = code(lambda: s3.delete_object(Bucket="forge-bkt", Key="page/k4"))
        out["prefixAsObject"] = code(lambda: s3.put_object(Bucket="forge-bkt", Key="page", Body=b"x"))
        out["underAnObject"] = code(lambda: s3.put_object(Bucket="forge-bkt", Key="data/hello.txt/child", Body=b"x"))
        big = os.path.join(scratch, "big.bin")
        with open(big, "wb") as f:
            f.write(os.urandom(20 * 1024 * 1024 + 5))
        s3.upload_file(big, "forge-bkt", "big/big.bin")
        s3.download_file("forge-bkt", "big/big.bin", big + ".back")
        out["bigRoundTrip"] = open(big, "rb").read() == open(big + ".back", "rb").read()
        out["bigETag"] = s3.head_object(Bucket="forge-bkt", Key="big/big.bin")["ETag"]
        upload = s3.create_multipart_upload(Bucket="forge-bkt", Key="mp/small-parts")["UploadId"]
        parts = [{"PartNumber": n, "ETag": s3.upload_part(Bucket="forge-bkt", Key="mp/small-parts", UploadId=upload, PartNumber=n, Body=b"tiny")["ETag"]}
                 for n in (1, 2)]
        out["tooSmall"] = code(lambda: s3.complete_multipart_upload(Bucket="forge-bkt", Key="mp/small-parts", UploadId=upload,
                                                                   MultipartUpload={"Parts": parts}))
        out["onePart"] = code(lambda: s3.complete_multipart_upload(Bucket="forge-bkt", Key="mp/small-parts", UploadId=upload,
                                                                  MultipartUpload={"Parts": parts[1:]}))
        out["onePartBody"] = s3.get_object(Bucket="forge-bkt", Key="mp/small-parts")["Body"].read().decode()
        aborted = s3.create_multipart_upload(Bucket="forge-bkt", Key="mp/aborted")["UploadId"]
        s3.abort_multipart_upload(Bucket="forge-bkt", Key="mp/aborted", UploadId=aborted)
        out["afterAbort"] = code(lambda: s3.upload_part(Bucket="forge-bkt", Key="mp/aborted", UploadId=aborted, PartNumber=1, Body=b"x"))
        out["escapes"] = [code(lambda k=k: s3.put_object(Bucket="forge-bkt", Key=k, Body=b"escaped")) for k in ("../x", "a/../../x", "../../outside")]
        out["escapeGet"] = code(lambda: s3.get_object(Bucket="forge-bkt", Key="../forge-bkt/data/hello.txt"))
        out["wrongSecret"] = code(lambda: client(secret="wrong").put_object(Bucket="forge-bkt", Key="data/forged.txt", Body=b"x"))
        out["unknownKey"] = code(lambda: client(key="NOBODY").list_objects_v2(Bucket="forge-bkt"))
        out["unsigned"] = code(lambda: client(config=botocore.config.Config(signature_version=botocore.UNSIGNED)).list_buckets())
        out["forged"] = code(lambda: s3.head_object(Bucket="forge-bkt", Key="data/forged.txt"))
        url = client(config=botocore.config.Config(signature_version="s3v4")).generate_presigned_url(
            "get_object", Params={"Bucket": "forge-bkt", "Key": "data/hello.txt"}, ExpiresIn=60)
        out["presigned"] = urllib.request.urlopen(url).read().decode()
        v2 = s3.generate_presigned_url("get_object", Params={"Bucket": "forge-bkt", "Key": odd, "ResponseContentType": "text/plain"}, ExpiresIn=60)
        opened = urllib.request.urlopen(v2)
        out["presignedV2"] = ["sigv2" if "&Signature=" in v2 else v2, opened.read().decode(), opened.headers["Content-Type"]]
        try:
            urllib.request.urlopen(v2.replace("Expires=", "Expires=1"))
            out["presignedV2Changed"] = 200
        except urllib.error.HTTPError as e:
            out["presignedV2Changed"] = e.code
        out["notEmpty"] = code(lambda: s3.delete_bucket(Bucket="forge-bkt"))
        s3.create_bucket(Bucket="scratch-bkt")
        s3.delete_bucket(Bucket="scratch-bkt")
        out["finalBuckets"] = [b["Name"] for b in s3.list_buckets()["Buckets"]]
        print(json.dumps(out))
        """
        guard let result = cluster.pythonJSON(script, [cluster.directory.file("")]) else { return }
        let answer = try #require(result as? [String: Any])
        #expect(answer["buckets"] as? [String] == ["data"], "the jobs' data folder is a bucket: \(answer)")
        #expect(answer["headMissing"] as? String == "404")
        #expect(answer["headBucket"] as? String == "accepted")
        #expect(answer["etag"] as? String == "\"5eb63bbbe01eeed093cb22bb8f5acdc3\"")
        #expect(answer["crc"] as? String == "DUoRhQ==")
        #expect(answer["get"] as? [AnyHashable] == ["hello world", "text/plain", "forge", 11])
        #expect(answer["ranges"] as? [String] == ["world", "bytes 6-10/11", "rld", "hello"])
        #expect(answer["badRange"] as? String == "InvalidRange")
        #expect(answer["notModified"] as? String == "304")
        #expect(answer["head"] as? Int == 11)
        #expect(answer["headMissingKey"] as? String == "404")
        #expect(answer["missingKey"] as? String == "NoSuchKey")
        #expect(answer["odd"] as? String == "odd")
        #expect(answer["keys"] as? [String] == ["data/hello.txt", "odd/a b+c=d(e)!*~'@:,$&;é%.txt", "page/k0", "page/k1", "page/k2", "page/k3", "page/k4"], "\(answer)")
        #expect(answer["prefixes"] as? [String] == ["data/", "odd/", "page/"])
        #expect(answer["pages"] as? [[String]] == [["page/k0", "page/k1"], ["page/k2", "page/k3"], ["page/k4"]])
        #expect(answer["v1"] as? [String] == ["page/k0", "page/k1", "page/k2", "page/k3", "page/k4"])
        #expect(answer["maxKeys0"] as? [AnyHashable] == [0, "False"])
        #expect(answer["startAfter"] as? [String] == ["page/k3", "page/k4"])
        #expect(answer["copy"] as? [String] == ["odd", "\"a2b6f2a6066ed8700d83335fc50a2b8e\""], "a copy keeps the source's ETag: \(answer)")
        #expect(answer["deleted"] as? [String] == ["copy.txt", "never-was"])
        #expect(answer["afterDelete"] as? String == "404")
        #expect(answer["deleteMissing"] as? String == "accepted")
        #expect(answer["prefixAsObject"] as? String == "InvalidArgument", "a key that is a prefix of others has no file of its own")
        #expect(answer["underAnObject"] as? String == "InvalidArgument", "\(answer)")
        #expect(answer["bigRoundTrip"] as? Bool == true)
        #expect((answer["bigETag"] as? String)?.hasSuffix("-3\"") == true, "20 MiB in 8 MiB parts: \(answer)")
        #expect(answer["tooSmall"] as? String == "EntityTooSmall")
        #expect(answer["onePart"] as? String == "accepted")
        #expect(answer["onePartBody"] as? String == "tiny")
        #expect(answer["afterAbort"] as? String == "NoSuchUpload")
        #expect(answer["escapes"] as? [String] == ["InvalidArgument", "InvalidArgument", "InvalidArgument"], "\(answer)")
        #expect(answer["escapeGet"] as? String == "InvalidArgument")
        #expect(answer["wrongSecret"] as? String == "SignatureDoesNotMatch")
        #expect(answer["unknownKey"] as? String == "InvalidAccessKeyId")
        #expect(answer["unsigned"] as? String == "AccessDenied")
        #expect(answer["forged"] as? String == "404", "a refused upload stored nothing")
        #expect(answer["presigned"] as? String == "hello world")
        #expect(answer["presignedV2"] as? [String] == ["sigv2", "odd", "text/plain"], "boto3's default (SigV2) presigned URL: \(answer)")
        #expect(answer["presignedV2Changed"] as? Int == 403)
        #expect(answer["notEmpty"] as? String == "BucketNotEmpty")
        #expect(answer["finalBuckets"] as? [String] == ["data", "forge-bkt"])
        let objects = cluster.directory.file("state/objects")
        #expect(try String(contentsOfFile: objects + "/forge-bkt/data/hello.txt", encoding: .utf8) == "hello world")
        for escaped in ["state/objects/x", "state/x", "outside", "state/outside", "x"] {
            #expect(!FileManager.default.fileExists(atPath: cluster.directory.file(escaped)), "\(escaped) was written")
        }
    }

    @Test func theAWSCLICopiesListsAndRemoves() throws {
        let cluster = try LocalCluster(workers: 0)
        let scratch = try TemporaryDirectory()
        var big = [UInt8](repeating: 0, count: 9 << 20)
        var random = SplitMix64(seed: 5)
        for index in stride(from: 0, to: big.count, by: 8) { withUnsafeBytes(of: random.next()) { big.replaceSubrange(index..<index + 8, with: $0) } }
        let bigPath = try scratch.write(big, to: "big.bin")
        let smallPath = try scratch.write("small\n", to: "small.txt")
        let aws = ["AWS_SHARED_CREDENTIALS_FILE=/nonexistent", "AWS_CONFIG_FILE=/nonexistent", "AWS_ACCESS_KEY_ID=AKIDEXAMPLE",
                   "AWS_SECRET_ACCESS_KEY=secret", "AWS_DEFAULT_REGION=us-east-1", "aws", "--endpoint-url", cluster.endpoint]
        func run(_ arguments: [String]) throws -> ExternalTool.Result {
            let result = try ExternalTool.run(aws + arguments + (["cp", "rm"].contains(arguments.dropFirst().first ?? "") ? ["--only-show-errors"] : []))
            #expect(result.status == 0, "aws \(arguments.joined(separator: " ")): \(result.standardError)\n\(cluster.log("coordinator.log").suffix(2000))")
            return result
        }
        _ = try run(["s3", "mb", "s3://cli-bkt"])
        _ = try run(["s3", "cp", smallPath, "s3://cli-bkt/in/small.txt"])
        _ = try run(["s3", "cp", bigPath, "s3://cli-bkt/in/big.bin"])
        _ = try run(["s3", "cp", "s3://cli-bkt/in/big.bin", "s3://cli-bkt/copied/big.bin"])
        _ = try run(["s3", "cp", "s3://cli-bkt/copied/big.bin", scratch.file("back.bin")])
        #expect(FileManager.default.contents(atPath: scratch.file("back.bin")) == Data(big))
        let listing = try run(["s3", "ls", "--recursive", "s3://cli-bkt/"]).text
        #expect(listing.contains(" 9437184 copied/big.bin") && listing.contains(" 9437184 in/big.bin") && listing.contains(" 6 in/small.txt"), "\(listing)")
        let top = try run(["s3", "ls", "s3://cli-bkt/"]).text
        #expect(top.contains("PRE copied/") && top.contains("PRE in/"), "\(top)")
        _ = try run(["s3", "rm", "--recursive", "s3://cli-bkt/in/"])
        let after = try run(["s3", "ls", "--recursive", "s3://cli-bkt/"]).text
        #expect(!after.contains("in/") && after.contains("copied/big.bin"), "\(after)")
        #expect(!FileManager.default.fileExists(atPath: cluster.directory.file("state/objects/cli-bkt/in")), "emptied prefixes leave no folder")
        let presigned = try run(["s3", "presign", "s3://cli-bkt/copied/big.bin", "--expires-in", "60"]).text.trimmingCharacters(in: .whitespacesAndNewlines)
        let fetched = try ExternalTool.run(["python3", "-c", "import sys, urllib.request; sys.stdout.write(str(len(urllib.request.urlopen(sys.argv[1]).read())))", presigned])
        #expect(fetched.text == "9437184", "aws s3 presign: \(presigned) \(fetched.standardError)")
        let refused = try ExternalTool.run(aws.map { $0 == "AWS_SECRET_ACCESS_KEY=secret" ? "AWS_SECRET_ACCESS_KEY=wrong" : $0 } + ["s3", "ls", "s3://cli-bkt/"])
        #expect(refused.status != 0 && refused.standardError.contains("SignatureDoesNotMatch"), "\(refused.standardError)")
    }

    /// aws-chunked uploads as other SDKs send them (botocore uses them only over https), signed
    /// here by hand: chunk signatures, an unsigned payload with a CRC32 trailer, and the same
    /// with a broken chunk, a wrong checksum and an escaping path, which store nothing.
    @Test func awsChunkedUploadsAreDecodedAndChecked() throws {
        let cluster = try LocalCluster(workers: 0)
        let script = """
        import datetime, hashlib, hmac, http.client, json, sys, urllib.parse, zlib, base64
        endpoint = urllib.parse.urlparse(sys.argv[1])
        host = endpoint.netloc
        secret, scope_region = "secret", "us-east-1"
        def key(day):
            k = ("AWS4" + secret).encode()
            for part in (day, scope_region, "s3", "aws4_request"):
                k = hmac.new(k, part.encode(), hashlib.sha256).digest()
            return k
        def send(method, path, headers, body, payload_hash, chunks=None, corrupt=False):
            now = datetime.datetime.now(datetime.timezone.utc)
            stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
            headers = dict(headers, **{"host": host, "x-amz-date": stamp, "x-amz-content-sha256": payload_hash})
            names = sorted(headers)
            canonical = "\\n".join([method, path, "", "".join(f"{n}:{headers[n]}\\n" for n in names), ";".join(names), payload_hash])
            scope = f"{day}/{scope_region}/s3/aws4_request"
            to_sign = "\\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
            signature = hmac.new(key(day), to_sign.encode(), hashlib.sha256).hexdigest()
            headers["Authorization"] = f"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/{scope}, SignedHeaders={';'.join(names)}, Signature={signature}"
            if chunks is not None:
                body, previous = b"", signature
                for chunk in chunks + [b""]:
                    text = "\\n".join(["AWS4-HMAC-SHA256-PAYLOAD", stamp, scope, previous, hashlib.sha256(b"").hexdigest(), hashlib.sha256(chunk).hexdigest()])
                    previous = hmac.new(key(day), text.encode(), hashlib.sha256).hexdigest()
                    sent = chunk.upper() if corrupt and chunk else chunk
                    body += f"{len(chunk):x};chunk-signature={previous}\\r\\n".encode() + sent + b"\\r\\n"
            connection = http.client.HTTPConnection(host)
            connection.request(method, path, body=body, headers=dict(headers, **{"Content-Length": str(len(body))}))
            reply = connection.getresponse()
            text = reply.read().decode()
            code = text.split("<Code>")[1].split("</Code>")[0] if "<Code>" in text else ""
            return [reply.status, code]
        def crc(data):
            return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
        out = {}
        out["bucket"] = send("PUT", "/chunk-bkt", {}, b"", hashlib.sha256(b"").hexdigest())
        data = [b"a" * 70000, b"b" * 1000]
        chunked = {"content-encoding": "aws-chunked", "x-amz-decoded-content-length": str(71000)}
        out["signed"] = send("PUT", "/chunk-bkt/signed.bin", chunked, None, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", chunks=data)
        out["corrupt"] = send("PUT", "/chunk-bkt/corrupt.bin", chunked, None, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", chunks=data, corrupt=True)
        def trailer_body(value):
            return b"b\\r\\nhello world\\r\\n0\\r\\n" + f"x-amz-checksum-crc32:{value}\\r\\n\\r\\n".encode()
        trailed = {"content-encoding": "aws-chunked", "x-amz-decoded-content-length": "11", "x-amz-trailer": "x-amz-checksum-crc32",
                   "x-amz-sdk-checksum-algorithm": "CRC32"}
        out["trailer"] = send("PUT", "/chunk-bkt/trailer.txt", trailed, trailer_body(crc(b"hello world")), "STREAMING-UNSIGNED-PAYLOAD-TRAILER")
        out["badTrailer"] = send("PUT", "/chunk-bkt/bad-trailer.txt", trailed, trailer_body(crc(b"other")), "STREAMING-UNSIGNED-PAYLOAD-TRAILER")
        out["badHeaderCRC"] = send("PUT", "/chunk-bkt/bad-header.txt", {"x-amz-checksum-crc32": crc(b"other")}, b"hello", hashlib.sha256(b"hello").hexdigest())
        out["badHash"] = send("PUT", "/chunk-bkt/bad-hash.txt", {}, b"hello", hashlib.sha256(b"jello").hexdigest())
        out["escape"] = send("PUT", "/chunk-bkt/%2E%2E/%2E%2E/escaped.txt", {}, b"x", hashlib.sha256(b"x").hexdigest())
        out["rawEscape"] = send("PUT", "/chunk-bkt/../../escaped.txt", {}, b"x", hashlib.sha256(b"x").hexdigest())
        print(json.dumps(out))
        """
        guard let result = cluster.pythonJSON(script) else { return }
        let answer = try #require(result as? [String: [AnyHashable]])
        #expect(answer["bucket"] == [200, ""])
        #expect(answer["signed"] == [200, ""], "\(answer)")
        #expect(answer["corrupt"] == [403, "SignatureDoesNotMatch"], "\(answer)")
        #expect(answer["trailer"] == [200, ""], "\(answer)")
        #expect(answer["badTrailer"] == [400, "BadDigest"], "\(answer)")
        #expect(answer["badHeaderCRC"] == [400, "BadDigest"], "\(answer)")
        #expect(answer["badHash"] == [400, "XAmzContentSHA256Mismatch"], "\(answer)")
        #expect(answer["escape"] == [400, "InvalidArgument"], "\(answer)")
        #expect(answer["rawEscape"] == [400, "InvalidArgument"], "\(answer)")
        let bucket = cluster.directory.file("state/objects/chunk-bkt")
        let signed = FileManager.default.contents(atPath: bucket + "/signed.bin")
        #expect(signed == Data(repeating: UInt8(ascii: "a"), count: 70000) + Data(repeating: UInt8(ascii: "b"), count: 1000))
        #expect(FileManager.default.contents(atPath: bucket + "/trailer.txt") == Data("hello world".utf8))
        let stored = (try? FileManager.default.contentsOfDirectory(atPath: bucket))?.sorted() ?? []
        #expect(stored == ["signed.bin", "trailer.txt"], "refused uploads store nothing: \(stored)")
        for escaped in ["state/escaped.txt", "escaped.txt", "state/objects/escaped.txt"] {
            #expect(!FileManager.default.fileExists(atPath: cluster.directory.file(escaped)))
        }
        let leftovers = (try? FileManager.default.contentsOfDirectory(atPath: cluster.directory.file("state/objects/.forge-s3/tmp"))) ?? []
        #expect(leftovers.isEmpty, "temporary files of refused uploads are removed: \(leftovers)")
    }
}
