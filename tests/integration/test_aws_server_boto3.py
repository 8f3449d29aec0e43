#!/usr/bin/python3
"""Proves tests/servers/aws_server.py faithful by driving it with the real
boto3/botocore from Debian: every Secrets Manager action the backend uses,
pagination, deletion and restore, AWS's error shapes, signature checks
(wrong key, tampered body, unsigned x-amz header), session tokens and the
three credential endpoints (STS web identity and AssumeRole, IMDSv2,
container) through boto3 and botocore's own fetchers."""
import json
import os
import secrets
import sys
import time
import unittest
import warnings

sys.path.insert(0, os.path.join(os.environ.get("TESTS_SOURCE_DIR",
                                               os.path.join(os.path.dirname(__file__), "..")),
                                "servers"))
import awslib  # noqa: E402

import botocore.exceptions  # noqa: E402
from botocore.auth import SigV4Auth  # noqa: E402
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402


def error_code(ctx):
        return ctx.exception.response["Error"]["Code"]


class AwsServerBoto3(unittest.TestCase):
        @classmethod
        def setUpClass(cls):
                warnings.simplefilter("ignore", ResourceWarning)   # boto3's pooled sockets
                cls.srv = awslib.AwsServer(page_size=2, container_token="Bearer " + secrets.token_hex(8))
                cls.addClassCleanup(cls.srv.cleanup)
                cls.srv.start()
                cls.sm = cls.srv.boto3_client()

        def setUp(self):
                self.srv.clear_fault()
                self.prefix = "t%s/" % secrets.token_hex(4)

        def name(self, n):
                return self.prefix + n

        def test_create_get_put_versions(self):
                v1 = json.dumps({"private_key": secrets.token_hex(32), "network": "a"})
                out = self.sm.create_secret(Name=self.name("a"), SecretString=v1, Description="d")
                self.assertTrue(out["ARN"].startswith("arn:aws:secretsmanager:us-east-1:"))
                got = self.sm.get_secret_value(SecretId=self.name("a"))
                self.assertEqual(got["SecretString"], v1)
                self.assertEqual(got["VersionStages"], ["AWSCURRENT"])
                self.assertEqual(got["VersionId"], out["VersionId"])
                v2 = json.dumps({"private_key": secrets.token_hex(32)})
                put = self.sm.put_secret_value(SecretId=self.name("a"), SecretString=v2)
                self.assertNotEqual(put["VersionId"], out["VersionId"])
                self.assertEqual(self.sm.get_secret_value(SecretId=self.name("a"))["SecretString"], v2)
                prev = self.sm.get_secret_value(SecretId=self.name("a"), VersionStage="AWSPREVIOUS")
                self.assertEqual(prev["SecretString"], v1)
                # by ARN too
                self.assertEqual(self.sm.get_secret_value(SecretId=out["ARN"])["SecretString"], v2)
                d = self.sm.describe_secret(SecretId=self.name("a"))
                self.assertEqual(d["Description"], "d")
                self.assertNotIn("DeletedDate", d)
                self.assertEqual(len(d["VersionIdsToStages"]), 2)

        def test_idempotent_put_with_client_request_token(self):
                self.sm.create_secret(Name=self.name("i"), SecretString="x")
                tok = "%032x" % secrets.randbits(128)
                a = self.sm.put_secret_value(SecretId=self.name("i"), SecretString="y",
                                             ClientRequestToken=tok)
                b = self.sm.put_secret_value(SecretId=self.name("i"), SecretString="y",
                                             ClientRequestToken=tok)
                self.assertEqual(a["VersionId"], b["VersionId"])
                with self.assertRaises(botocore.exceptions.ClientError) as c:
                        self.sm.put_secret_value(SecretId=self.name("i"), SecretString="z",
                                                 ClientRequestToken=tok)
                self.assertEqual(error_code(c), "ResourceExistsException")

        def test_errors_not_found_and_exists(self):
                with self.assertRaises(self.sm.exceptions.ResourceNotFoundException) as c:
                        self.sm.get_secret_value(SecretId=self.name("missing"))
                self.assertEqual(c.exception.response["ResponseMetadata"]["HTTPStatusCode"], 400)
                self.assertIn("can't find", c.exception.response["Error"]["Message"])
                with self.assertRaises(self.sm.exceptions.ResourceNotFoundException):
                        self.sm.put_secret_value(SecretId=self.name("missing"), SecretString="x")
                self.sm.create_secret(Name=self.name("e"), SecretString="x")
                with self.assertRaises(self.sm.exceptions.ResourceExistsException):
                        self.sm.create_secret(Name=self.name("e"), SecretString="x")

        def test_delete_restore(self):
                self.sm.create_secret(Name=self.name("d"), SecretString="v1")
                with self.assertRaises(self.sm.exceptions.InvalidParameterException):
                        self.sm.delete_secret(SecretId=self.name("d"), RecoveryWindowInDays=3)
                out = self.sm.delete_secret(SecretId=self.name("d"), RecoveryWindowInDays=7)
                left = out["DeletionDate"].timestamp() - time.time()
                self.assertAlmostEqual(left, 7 * 86400, delta=120)
                self.assertIn("DeletedDate", self.sm.describe_secret(SecretId=self.name("d")))
                with self.assertRaises(self.sm.exceptions.InvalidRequestException) as c:
                        self.sm.get_secret_value(SecretId=self.name("d"))
                self.assertIn("marked for deletion", c.exception.response["Error"]["Message"])
                with self.assertRaises(self.sm.exceptions.InvalidRequestException):
                        self.sm.put_secret_value(SecretId=self.name("d"), SecretString="v2")
                with self.assertRaises(self.sm.exceptions.InvalidRequestException):
                        self.sm.create_secret(Name=self.name("d"), SecretString="v2")
                with self.assertRaises(self.sm.exceptions.InvalidRequestException):
                        self.sm.delete_secret(SecretId=self.name("d"), RecoveryWindowInDays=7)
                listed = self.sm.list_secrets(Filters=[{"Key": "name", "Values": [self.prefix]}])
                self.assertEqual(listed["SecretList"], [])
                self.sm.restore_secret(SecretId=self.name("d"))
                self.assertEqual(self.sm.get_secret_value(SecretId=self.name("d"))["SecretString"], "v1")
                self.sm.delete_secret(SecretId=self.name("d"), ForceDeleteWithoutRecovery=True)
                with self.assertRaises(self.sm.exceptions.ResourceNotFoundException):
                        self.sm.describe_secret(SecretId=self.name("d"))

        def test_pagination_with_filter(self):
                made = [self.name("n%d" % i) for i in range(5)]
                for n in made:
                        self.sm.create_secret(Name=n, SecretString="x")
                self.sm.create_secret(Name="other" + self.prefix, SecretString="x")
                first = self.sm.list_secrets(MaxResults=100,
                                             Filters=[{"Key": "name", "Values": [self.prefix]}])
                self.assertEqual(len(first["SecretList"]), 2)   # the server's small pages
                self.assertIn("NextToken", first)
                pages = self.sm.get_paginator("list_secrets").paginate(
                        Filters=[{"Key": "name", "Values": [self.prefix]}])
                names = [s["Name"] for p in pages for s in p["SecretList"]]
                self.assertEqual(sorted(names), sorted(made))
                with self.assertRaises(self.sm.exceptions.InvalidNextTokenException):
                        self.sm.list_secrets(NextToken="!!!")

        def test_faults(self):
                self.sm.create_secret(Name=self.name("f"), SecretString="x")
                cases = {"throttle": ("ThrottlingException", 400),
                         "denied": ("AccessDeniedException", 400),
                         "kms": ("DecryptionFailure", 400),
                         "500": ("InternalServiceError", 500),
                         "expired": ("ExpiredTokenException", 400)}
                for mode, (code, status) in cases.items():
                        self.srv.fault(mode, count=1, action="GetSecretValue")
                        with self.assertRaises(botocore.exceptions.ClientError) as c:
                                self.sm.get_secret_value(SecretId=self.name("f"))
                        self.assertEqual(error_code(c), code, mode)
                        self.assertEqual(c.exception.response["ResponseMetadata"]["HTTPStatusCode"], status)
                self.assertEqual(self.sm.get_secret_value(SecretId=self.name("f"))["SecretString"], "x")
                self.srv.fault("slow", count=1, delay=0.5)
                t0 = time.monotonic()
                self.sm.get_secret_value(SecretId=self.name("f"))
                self.assertGreaterEqual(time.monotonic() - t0, 0.5)
                from botocore.config import Config
                quick = self.srv.boto3_client(config=Config(read_timeout=1, retries={"total_max_attempts": 1, "mode": "standard"}))
                self.srv.fault("hang", count=1, delay=5)
                with self.assertRaises(botocore.exceptions.ReadTimeoutError):
                        quick.get_secret_value(SecretId=self.name("f"))
                self.srv.clear_fault()

        def test_wrong_key_and_unknown_key_refused(self):
                bad = self.srv.boto3_client(secret_key=self.srv.secret_key + "x")
                with self.assertRaises(botocore.exceptions.ClientError) as c:
                        bad.list_secrets()
                self.assertEqual(error_code(c), "InvalidSignatureException")
                self.assertIn("does not match", c.exception.response["Error"]["Message"])
                unknown = self.srv.boto3_client(access_key="AKIA" + "Z" * 16)
                with self.assertRaises(botocore.exceptions.ClientError) as c:
                        unknown.list_secrets()
                self.assertEqual(error_code(c), "UnrecognizedClientException")
                wrong_region = self.srv.boto3_client(region="eu-west-1")
                with self.assertRaises(botocore.exceptions.ClientError) as c:
                        wrong_region.list_secrets()
                self.assertEqual(error_code(c), "InvalidSignatureException")

        def signed_raw(self, body, tamper=None, extra_unsigned=None):
                req = AWSRequest(method="POST", url=self.srv.url + "/", data=body, headers={
                        "Content-Type": "application/x-amz-json-1.1",
                        "X-Amz-Target": "secretsmanager.ListSecrets"})
                SigV4Auth(Credentials(self.srv.access_key, self.srv.secret_key),
                          "secretsmanager", "us-east-1").add_auth(req)
                headers = dict(req.headers.items())
                if extra_unsigned:
                        headers.update(extra_unsigned)
                return self.srv.request("POST", "/", tamper if tamper is not None else body, headers)

        def test_tampered_body_and_unsigned_amz_header_refused(self):
                before = self.srv.stats()["rejected_signatures"]
                status, _, raw = self.signed_raw(b"{}")
                self.assertEqual(status, 200, raw)
                status, headers, raw = self.signed_raw(b'{"MaxResults":1}', tamper=b'{"MaxResults":2}')
                self.assertEqual(status, 400)
                self.assertEqual(json.loads(raw)["__type"], "InvalidSignatureException")
                self.assertEqual(headers["Content-Type"], "application/x-amz-json-1.1")
                self.assertIn("x-amzn-RequestId", headers)
                status, _, raw = self.signed_raw(b"{}", extra_unsigned={"X-Amz-Security-Token": "t"})
                self.assertEqual(status, 400)
                status, _, raw = self.srv.request("POST", "/", b"{}", {
                        "X-Amz-Target": "secretsmanager.ListSecrets",
                        "Content-Type": "application/x-amz-json-1.1"})
                self.assertEqual(json.loads(raw)["__type"], "MissingAuthenticationTokenException")
                self.assertEqual(self.srv.stats()["rejected_signatures"], before + 3)

        def test_session_token_signed_and_checked(self):
                c = self.srv.session()
                ok = self.srv.boto3_client(access_key=c["AccessKeyId"], secret_key=c["SecretAccessKey"],
                                           token=c["Token"])
                ok.list_secrets()
                no_token = self.srv.boto3_client(access_key=c["AccessKeyId"],
                                                 secret_key=c["SecretAccessKey"])
                with self.assertRaises(botocore.exceptions.ClientError) as e:
                        no_token.list_secrets()
                self.assertEqual(error_code(e), "UnrecognizedClientException")

        def test_temporary_credentials_expire(self):
                self.srv.set_temp_ttl(1)
                try:
                        c = self.srv.session()
                finally:
                        self.srv.set_temp_ttl(3600)
                cl = self.srv.boto3_client(access_key=c["AccessKeyId"], secret_key=c["SecretAccessKey"],
                                           token=c["Token"])
                time.sleep(1.2)
                with self.assertRaises(botocore.exceptions.ClientError) as e:
                        cl.list_secrets()
                self.assertEqual(error_code(e), "ExpiredTokenException")

        def test_sts_web_identity_with_boto3(self):
                sts = self.srv.boto3_client("sts")
                out = sts.assume_role_with_web_identity(
                        RoleArn="arn:aws:iam::123456789012:role/omikuji", RoleSessionName="s1",
                        WebIdentityToken=self.srv.web_identity_token)
                c = out["Credentials"]
                self.assertTrue(c["AccessKeyId"].startswith("ASIA"))
                self.assertGreater(c["Expiration"].timestamp(), time.time() + 3000)
                cl = self.srv.boto3_client(access_key=c["AccessKeyId"],
                                           secret_key=c["SecretAccessKey"], token=c["SessionToken"])
                cl.list_secrets()
                with self.assertRaises(sts.exceptions.InvalidIdentityTokenException):
                        sts.assume_role_with_web_identity(
                                RoleArn="arn:aws:iam::123456789012:role/omikuji",
                                RoleSessionName="s1", WebIdentityToken="wrong" * 5)

        def test_sts_assume_role_with_boto3(self):
                """AssumeRole is signed (service sts) and checked like Secrets
                Manager calls: boto3's request is accepted, a wrong key or secret
                is refused with STS's codes, ExternalId is enforced, and the
                credentials it mints work (also as the source of a chained
                AssumeRole, their session token signed)."""
                role = "arn:aws:iam::123456789012:role/ops-%s" % secrets.token_hex(3)
                ext = secrets.token_hex(8)
                self.srv.require_external_id(role, ext)
                sts = self.srv.boto3_client("sts")
                before = self.srv.stats()["rejected_signatures"]
                out = sts.assume_role(RoleArn=role, RoleSessionName="s1", ExternalId=ext,
                                      DurationSeconds=900)
                c = out["Credentials"]
                self.assertTrue(c["AccessKeyId"].startswith("ASIA"))
                self.assertEqual(out["AssumedRoleUser"]["Arn"],
                                 role.replace(":role/", ":assumed-role/") + "/s1")
                entry = [e for e in self.srv.log() if e.get("kind") == "sts"][-1]
                self.assertEqual((entry["action"], entry["caller"], entry["external_id"],
                                  entry["duration_seconds"], entry["session_name"]),
                                 ("AssumeRole", self.srv.access_key, ext, "900", "s1"))
                # role chaining: the minted keys sign the next AssumeRole
                sts2 = self.srv.boto3_client("sts", access_key=c["AccessKeyId"],
                                             secret_key=c["SecretAccessKey"], token=c["SessionToken"])
                c2 = sts2.assume_role(RoleArn="arn:aws:iam::123456789012:role/next",
                                      RoleSessionName="s2")["Credentials"]
                self.srv.boto3_client(access_key=c2["AccessKeyId"], secret_key=c2["SecretAccessKey"],
                                      token=c2["SessionToken"]).list_secrets()
                with self.assertRaises(botocore.exceptions.ClientError) as ctx:
                        sts.assume_role(RoleArn=role, RoleSessionName="s1", ExternalId="wrong-id")
                self.assertEqual(error_code(ctx), "AccessDenied")
                with self.assertRaises(botocore.exceptions.ClientError) as ctx:
                        self.srv.boto3_client("sts", secret_key="wrong" * 8).assume_role(
                                RoleArn=role, RoleSessionName="s1", ExternalId=ext)
                self.assertEqual(error_code(ctx), "SignatureDoesNotMatch")
                with self.assertRaises(botocore.exceptions.ClientError) as ctx:
                        self.srv.boto3_client("sts", access_key="AKIAUNKNOWN000000000").assume_role(
                                RoleArn=role, RoleSessionName="s1", ExternalId=ext)
                self.assertEqual(error_code(ctx), "InvalidClientTokenId")
                with self.assertRaises(botocore.exceptions.ClientError) as ctx:
                        sts.assume_role(RoleArn=role, RoleSessionName="bad name!", ExternalId=ext)
                self.assertEqual(error_code(ctx), "ValidationError")
                self.assertEqual(self.srv.stats()["rejected_signatures"], before + 2)
                # unsigned: refused before anything else
                status, _, raw = self.srv.request(
                        "POST", "/", b"Action=AssumeRole&Version=2011-06-15&RoleArn=x&RoleSessionName=s1",
                        {"Content-Type": "application/x-www-form-urlencoded"})
                self.assertEqual(status, 403)
                self.assertIn(b"<Code>MissingAuthenticationToken</Code>", raw)

        def test_botocore_assume_role_fetcher(self):
                """botocore's own AssumeRoleCredentialFetcher (what a profile with
                role_arn + source_profile runs) against this STS: its request is
                accepted and its refreshable credentials work."""
                import boto3
                from botocore.credentials import AssumeRoleCredentialFetcher, DeferredRefreshableCredentials
                session = boto3.session.Session()

                def client_creator(service, **kw):
                        kw.update(endpoint_url=self.srv.url, region_name=self.srv.region)
                        return session.client(service, **kw)
                fetcher = AssumeRoleCredentialFetcher(
                        client_creator, Credentials(self.srv.access_key, self.srv.secret_key),
                        "arn:aws:iam::123456789012:role/fetched",
                        extra_args={"RoleSessionName": "botocore", "DurationSeconds": 3600})
                creds = DeferredRefreshableCredentials(fetcher.fetch_credentials, "assume-role")
                frozen = creds.get_frozen_credentials()
                self.assertTrue(frozen.access_key.startswith("ASIA"))
                self.srv.boto3_client(access_key=frozen.access_key, secret_key=frozen.secret_key,
                                      token=frozen.token).list_secrets()
                entry = [e for e in self.srv.log() if e.get("kind") == "sts"][-1]
                self.assertEqual((entry["role_arn"], entry["session_name"], entry["access_key"]),
                                 ("arn:aws:iam::123456789012:role/fetched", "botocore",
                                  frozen.access_key))

        def test_imdsv2_with_botocore_fetcher(self):
                from botocore.utils import InstanceMetadataFetcher
                f = InstanceMetadataFetcher(timeout=2, num_attempts=1, base_url=self.srv.url)
                c = f.retrieve_iam_role_credentials()
                self.assertEqual(c["role_name"], "omikuji-node")
                cl = self.srv.boto3_client(access_key=c["access_key"], secret_key=c["secret_key"],
                                           token=c["token"])
                cl.list_secrets()
                # IMDSv2 only: no token, no credentials
                status, _, _ = self.srv.request("GET", "/latest/meta-data/iam/security-credentials/")
                self.assertEqual(status, 401)

        def test_container_credentials_with_botocore_fetcher(self):
                from botocore.utils import ContainerMetadataFetcher
                f = ContainerMetadataFetcher()
                c = f.retrieve_full_uri(self.srv.url + self.srv.container_path,
                                        headers={"Authorization": self.srv.container_token})
                cl = self.srv.boto3_client(access_key=c["AccessKeyId"],
                                           secret_key=c["SecretAccessKey"], token=c["Token"])
                cl.list_secrets()
                from botocore.utils import MetadataRetrievalError
                with self.assertRaises(MetadataRetrievalError):
                        f.retrieve_full_uri(self.srv.url + self.srv.container_path,
                                            headers={"Authorization": "Bearer wrong"})

        def test_request_log_has_no_secret_values(self):
                v = secrets.token_hex(32)
                self.sm.create_secret(Name=self.name("l"), SecretString=v)
                self.sm.get_secret_value(SecretId=self.name("l"))
                text = json.dumps(self.srv.log())
                self.assertNotIn(v, text)
                self.assertNotIn(self.srv.secret_key, text)
                entries = [e for e in self.srv.log() if e.get("secret") == self.name("l")]
                self.assertEqual([e["action"] for e in entries], ["CreateSecret", "GetSecretValue"])
                self.assertEqual(entries[0]["access_key"], self.srv.access_key)


if __name__ == "__main__":
        result = unittest.main(exit=False, verbosity=2).result
        sys.exit(0 if result.wasSuccessful() else 1)
