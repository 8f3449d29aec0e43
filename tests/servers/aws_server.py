#!/usr/bin/python3
"""An in-memory AWS Secrets Manager stand-in for the omikuji-keyfs test suite,
with the credential endpoints the AWS credential chain talks to.

One HTTP port serves:
  * Secrets Manager, JSON 1.1 protocol (POST / with X-Amz-Target:
    secretsmanager.<Action>): CreateSecret, GetSecretValue, PutSecretValue,
    DescribeSecret, ListSecrets, DeleteSecret, RestoreSecret.  EVERY request's
    SigV4 signature is verified with botocore's own signer as the reference
    (botocore.auth.SigV4Auth computes the canonical request from the headers
    the request says it signed), so a canonical request that AWS would
    compute differently is refused as AWS refuses it.
  * STS AssumeRoleWithWebIdentity (POST / with a form body, unsigned) and
    AssumeRole (signed with SigV4 for service "sts", verified like every
    Secrets Manager call, with STS's error codes: InvalidClientTokenId,
    SignatureDoesNotMatch, ExpiredToken, ...), XML answers as STS gives
    them.  AssumeRole checks RoleSessionName and DurationSeconds
    (900-43200) as STS does, and an ExternalId when the role requires one
    (POST /_test/external_id {"role_arn", "external_id"}: AccessDenied
    otherwise).  Minted credentials live --temp-ttl seconds whatever
    DurationSeconds asks, so that tests can watch them expire.
  * EC2 instance metadata, IMDSv2 only: PUT /latest/api/token, then
    GET /latest/meta-data/iam/security-credentials/[ROLE] with the token.
  * ECS/EKS container credentials: GET --container-path, checking the
    Authorization header against --container-token when one is set.
  * /_test/ control API: faults, request log, stats, minting session
    credentials (logged as kind "session"), the temporary-credential
    lifetime, a role's required ExternalId.

Stdlib plus botocore (Debian's python3-botocore, used only to compute the
reference signature); run with /usr/bin/python3:

    aws_server.py --port-file PATH [--host 127.0.0.1] [--region us-east-1]
                  [--access-key AKID:SECRET ...] [--page-size 2]
                  [--temp-ttl 3600] [--role-name NAME]
                  [--web-identity-token TOKEN] [--container-path /creds]
                  [--container-token TOKEN]

Faithfulness is checked with real boto3/botocore in
tests/integration/test_aws_server_boto3.py.  Where this server chooses:
  * Every x-amz-* header a request carries must be among its signed headers,
    and host must be; otherwise InvalidSignatureException (AWS documents the
    requirement for x-amz-security-token; this server applies it to all).
  * Signatures are valid for 15 minutes around the server's clock, as AWS.
  * Temporary credentials (IMDS, container, STS, /_test/session) are
    access keys starting ASIA with a session token; after their Expiration
    AWS answers ExpiredTokenException, and so does this server.
  * DeleteSecret of a secret already scheduled for deletion, and any other
    action but RestoreSecret/DescribeSecret on one, answers
    InvalidRequestException ("...marked for deletion"), as AWS does.
    RestoreSecret of a secret that is not deleted succeeds.  Scheduled
    deletions never complete by themselves here (a test never waits 7
    days); ForceDeleteWithoutRecovery removes at once.
  * ListSecrets honours Filters with Key "name" (prefix match, "!" negation
    is not supported) and never lists secrets scheduled for deletion
    (AWS's default).  Pages hold at most --page-size secrets whatever
    MaxResults asks, so that clients must follow NextToken.
  * Faults (POST /_test/fault {"mode", "count", "action", "delay"}) answer
    Secrets Manager calls (optionally only one action) before the
    signature check: "500" InternalServiceError, "503" ServiceUnavailable,
    "throttle" ThrottlingException, "denied" AccessDeniedException, "kms"
    DecryptionFailure, "expired" ExpiredTokenException, "slow" (delay, then
    served), "hang" (held until the fault changes or delay passes, then the
    connection is closed).  count < 0: until cleared.
  * The request log (GET /_test/log) has one entry per Secrets Manager,
    STS, IMDS or container request: kind, action, access key id, status,
    error code, secret name; never a secret value, key or token.
    "rejected_signatures" in stats counts requests the signature check
    refused (bad signature, unknown or expired credentials, missing
    authentication); injected faults do not count.
"""

import argparse
import base64
import datetime
import hmac
import json
import secrets
import socket
import string
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs

from serverbase import FaultState, PlumbingHandler, TestHTTPServer, serve

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ACCOUNT = "123456789012"
MAX_BODY = 1 << 20
SIG_WINDOW = 15 * 60
JSON_TYPE = "application/x-amz-json-1.1"
FAULT_MODES = ("none", "500", "503", "throttle", "denied", "kms", "expired", "slow", "hang")


def iso8601(ts):
        return datetime.datetime.fromtimestamp(int(ts), datetime.timezone.utc).strftime(
                "%Y-%m-%dT%H:%M:%SZ")


class AwsError(Exception):
        def __init__(self, code, message, status=400, lower=False):
                super().__init__(code)
                self.code, self.message, self.status = code, message, status
                self.lower = lower   # auth errors spell the member "message"


def not_found():
        return AwsError("ResourceNotFoundException",
                        "Secrets Manager can't find the specified secret.")


def marked_for_deletion():
        return AwsError("InvalidRequestException",
                        "You can't perform this operation on the secret because it was "
                        "marked for deletion.")


class Secret:
        def __init__(self, name, region, description):
                suffix = "".join(secrets.choice(string.ascii_letters + string.digits)
                                 for _ in range(6))
                self.name = name
                self.arn = "arn:aws:secretsmanager:%s:%s:secret:%s-%s" % (
                        region, ACCOUNT, name, suffix)
                self.description = description
                self.created = time.time()
                self.changed = self.created
                self.deleted = None          # DeletedDate when scheduled
                self.deletion_date = None
                self.versions = {}           # id -> {"string","created","stages","token"}

        def stage(self, stage):
                for vid, v in self.versions.items():
                        if stage in v["stages"]:
                                return vid
                return None

        def add_version(self, value, token):
                vid = token or str(uuid.uuid4())
                cur = self.stage("AWSCURRENT")
                prev = self.stage("AWSPREVIOUS")
                if prev is not None:
                        self.versions[prev]["stages"].remove("AWSPREVIOUS")
                if cur is not None:
                        self.versions[cur]["stages"].remove("AWSCURRENT")
                        self.versions[cur]["stages"].append("AWSPREVIOUS")
                self.versions[vid] = {"string": value, "created": time.time(),
                                      "stages": ["AWSCURRENT"]}
                # versions with no stage are deprecated; AWS keeps ~100, so do we
                stale = [k for k, v in self.versions.items() if not v["stages"]]
                for k in stale[:-100]:
                        del self.versions[k]
                self.changed = time.time()
                return vid


class State(FaultState):
        def __init__(self, args):
                self.lock = threading.Lock()
                self.region = args.region
                self.page_size = args.page_size
                self.temp_ttl = args.temp_ttl
                self.role_name = args.role_name
                self.web_identity_token = args.web_identity_token
                self.container_path = args.container_path
                self.container_token = args.container_token
                self.keys = {}               # access key id -> {"secret", "token", "expires"}
                for spec in args.access_key:
                        ak, sep, sk = spec.partition(":")
                        if not sep or not ak or not sk:
                                raise SystemExit("--access-key wants AKID:SECRET")
                        self.keys[ak] = {"secret": sk, "token": None, "expires": None,
                                         "source": "static"}
                self.secrets = {}            # name -> Secret
                self.imds_tokens = {}        # token -> expiry
                self.external_ids = {}       # role ARN -> the ExternalId AssumeRole must send
                self.init_faults(action=None)
                self.reset_stats()

        def reset_stats(self):
                self.log = []
                self.rejected = 0
                self.requests = 0
                self.by_action = {}

        def record(self, entry):
                self.log.append(entry)
                if len(self.log) > 10000:
                        del self.log[:1000]

        def mint(self, source):
                ak = "ASIA" + "".join(secrets.choice(string.ascii_uppercase + string.digits)
                                      for _ in range(16))
                sk = secrets.token_urlsafe(30)
                token = "IQoJb3JpZ2lu" + secrets.token_urlsafe(60)
                expires = time.time() + self.temp_ttl
                self.keys[ak] = {"secret": sk, "token": token, "expires": expires,
                                 "source": source}
                return {"AccessKeyId": ak, "SecretAccessKey": sk, "Token": token,
                        "Expiration": iso8601(expires)}

        def take_fault(self, action):
                return self.take_fault_if(lambda f: not f["action"] or f["action"] == action)

        def find(self, secret_id):
                if not isinstance(secret_id, str) or not secret_id:
                        raise AwsError("InvalidParameterException",
                                       "Invalid parameter: SecretId")
                s = self.secrets.get(secret_id)
                if s is None:
                        for cand in self.secrets.values():
                                if cand.arn == secret_id:
                                        return cand
                        raise not_found()
                return s


class Handler(PlumbingHandler, BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "aws-test-server"
        sys_version = ""

        def setup(self):
                super().setup()
                # headers and body are separate writes: without NODELAY each
                # answer waits for the client's delayed ACK
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, fmt, *args):
                pass   # the request log is the control API's; bodies never printed

        @property
        def st(self):
                return self.server.state

        def read_body(self):
                try:
                        return self.read_request_body(MAX_BODY)
                except ValueError:
                        raise AwsError("SerializationException", "request too large")

        def send_raw(self, status, body, ctype, extra=None):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
                for k, v in (extra or {}).items():
                        self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

        def send_json(self, status, obj):
                self.send_raw(status, json.dumps(obj).encode(), JSON_TYPE)

        def send_error_json(self, e):
                member = "message" if e.lower else "Message"
                self.send_json(e.status, {"__type": e.code, member: e.message})

        # --- routing -------------------------------------------------------

        def do_GET(self):
                self.route()

        def do_PUT(self):
                self.route()

        def do_POST(self):
                self.route()

        def route(self):
                try:
                        body = self.read_body()
                except AwsError as e:
                        self.send_error_json(e)
                        return
                path = self.path.split("?", 1)[0]
                if path.startswith("/_test/"):
                        self.control(path[len("/_test/"):], body)
                elif path.startswith("/latest/"):
                        self.imds(path)
                elif self.st.container_path and path == self.st.container_path:
                        self.container()
                elif self.command == "POST" and path == "/" and self.headers.get("X-Amz-Target"):
                        self.secretsmanager(body)
                elif self.command == "POST" and path == "/":
                        self.sts(body)
                else:
                        self.send_raw(404, b"not found", "text/plain")

        # --- signatures ----------------------------------------------------

        def verify(self, body, service="secretsmanager"):
                """The access key of a correctly signed request, else AwsError."""
                auth = self.headers.get("Authorization")
                if not auth:
                        raise AwsError("MissingAuthenticationTokenException",
                                       "Missing Authentication Token", lower=True)
                alg, _, rest = auth.partition(" ")
                if alg != "AWS4-HMAC-SHA256":
                        raise AwsError("IncompleteSignatureException",
                                       "Unsupported AWS 'algorithm': '%s'" % alg[:40], lower=True)
                parts = {}
                for p in rest.split(","):
                        k, sep, v = p.strip().partition("=")
                        if sep:
                                parts[k] = v
                for need in ("Credential", "SignedHeaders", "Signature"):
                        if need not in parts:
                                raise AwsError("IncompleteSignatureException",
                                               "Authorization header requires '%s' parameter."
                                               % need, lower=True)
                cred = parts["Credential"].split("/")
                if len(cred) != 5 or cred[4] != "aws4_request":
                        raise AwsError("IncompleteSignatureException",
                                       "Credential must have exactly 5 slash-delimited elements",
                                       lower=True)
                ak, day, region, _, _ = cred
                key = self.st.keys.get(ak)
                if key is None:
                        raise AwsError("UnrecognizedClientException",
                                       "The security token included in the request is invalid.",
                                       lower=True)
                token = self.headers.get("X-Amz-Security-Token")
                if key["token"] is not None:
                        if token is None or not hmac.compare_digest(token, key["token"]):
                                raise AwsError("UnrecognizedClientException",
                                               "The security token included in the request is invalid.",
                                               lower=True)
                        if time.time() >= key["expires"]:
                                raise AwsError("ExpiredTokenException",
                                               "The security token included in the request is expired",
                                               lower=True)
                elif token is not None:
                        raise AwsError("UnrecognizedClientException",
                                       "The security token included in the request is invalid.",
                                       lower=True)
                amz_date = self.headers.get("X-Amz-Date", "")
                try:
                        t = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(
                                tzinfo=datetime.timezone.utc).timestamp()
                except ValueError:
                        raise AwsError("IncompleteSignatureException",
                                       "Date must be in ISO-8601 'basic format'.", lower=True)
                if abs(time.time() - t) > SIG_WINDOW:
                        raise AwsError("InvalidSignatureException",
                                       "Signature expired: %s is now earlier or later than the "
                                       "allowed window (15 minutes)." % amz_date, lower=True)
                if day != amz_date[:8]:
                        raise AwsError("InvalidSignatureException",
                                       "Date in Credential scope does not match YYYYMMDD from "
                                       "ISO-8601 version of date from HTTP: '%s' != '%s'"
                                       % (day, amz_date[:8]), lower=True)
                if region != self.st.region:
                        raise AwsError("InvalidSignatureException",
                                       "Credential should be scoped to a valid region. ",
                                       lower=True)
                if cred[3] != service:
                        raise AwsError("InvalidSignatureException",
                                       "Credential should be scoped to correct service: "
                                       "'%s'. " % service, lower=True)
                signed = parts["SignedHeaders"].split(";")
                present = {k.lower() for k in self.headers.keys()}
                missing = [h for h in signed if h not in present]
                unsigned = [h for h in present if h.startswith("x-amz-") and h not in signed]
                if "host" not in signed or missing or unsigned:
                        raise AwsError("InvalidSignatureException",
                                       "The request signature we calculated does not match the "
                                       "signature you provided. Check your AWS Secret Access Key "
                                       "and signing method. Consult the service documentation "
                                       "for details.", lower=True)
                headers = {}
                for h in signed:
                        headers[h] = ",".join(self.headers.get_all(h))
                req = AWSRequest(method=self.command,
                                 url="http://%s%s" % (self.headers["Host"], self.path),
                                 data=body, headers=headers)
                req.context["timestamp"] = amz_date
                signer = SigV4Auth(Credentials(ak, key["secret"], key["token"]),
                                   service, region)
                # botocore leaves these out of what it signs; a client that
                # signed them anyway is signing a header AWS ignores, so
                # compare against exactly the signed-header list sent
                canonical = signer.canonical_request(req)
                lines = canonical.split("\n")
                # canonical_request uses botocore's own header selection; make
                # sure it agrees with the list the client claims to have signed
                if lines[-2] != parts["SignedHeaders"]:
                        raise AwsError("InvalidSignatureException",
                                       "The request signature we calculated does not match the "
                                       "signature you provided. Check your AWS Secret Access Key "
                                       "and signing method. Consult the service documentation "
                                       "for details.", lower=True)
                want = signer.signature(signer.string_to_sign(req, canonical), req)
                if not hmac.compare_digest(want, parts["Signature"]):
                        raise AwsError("InvalidSignatureException",
                                       "The request signature we calculated does not match the "
                                       "signature you provided. Check your AWS Secret Access Key "
                                       "and signing method. Consult the service documentation "
                                       "for details.", lower=True)
                return ak

        # --- Secrets Manager ----------------------------------------------

        def secretsmanager(self, body):
                target = self.headers.get("X-Amz-Target", "")
                action = target.split(".", 1)[1] if target.startswith("secretsmanager.") else target
                # the claimed access key id and secret name, for the log even
                # when a fault answers
                cred = (self.headers.get("Authorization") or "").partition("Credential=")[2]
                entry = {"kind": "secretsmanager", "action": action, "time": time.time(),
                         "access_key": cred.split("/", 1)[0] or None, "secret": None,
                         "user_agent": self.headers.get("User-Agent"),
                         "status": 200, "error": None}
                try:
                        req = json.loads(body or b"{}")
                except ValueError:
                        req = None
                if isinstance(req, dict):
                        name = req.get("SecretId") or req.get("Name")
                        entry["secret"] = name if isinstance(name, str) else None
                        if action == "DeleteSecret":
                                entry["recovery_window_days"] = req.get("RecoveryWindowInDays")
                                entry["force"] = bool(req.get("ForceDeleteWithoutRecovery"))
                with self.st.lock:
                        self.st.requests += 1
                        self.st.by_action[action] = self.st.by_action.get(action, 0) + 1
                        fault = self.st.take_fault(action)
                if fault and self.apply_fault(fault):
                        entry.update(status=0, error="hang")
                        with self.st.lock:
                                self.st.record(entry)
                        return
                try:
                        if fault and fault["mode"] != "slow":
                                raise self.fault_error(fault["mode"])
                        try:
                                with self.st.lock:
                                        self.verify(body)
                        except AwsError:
                                with self.st.lock:
                                        self.st.rejected += 1
                                raise
                        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
                        if ctype != JSON_TYPE:
                                raise AwsError("SerializationException",
                                               "Content-Type must be %s" % JSON_TYPE)
                        if not isinstance(req, dict):
                                raise AwsError("SerializationException", "Malformed JSON")
                        handler = getattr(self, "sm_" + action, None)
                        if handler is None:
                                raise AwsError("UnknownOperationException", "", lower=True)
                        with self.st.lock:
                                out = handler(req)
                        err = None
                except AwsError as e:
                        err = e
                        entry.update(status=e.status, error=e.code)
                # logged before the answer leaves, so a client that got its
                # answer finds the entry
                with self.st.lock:
                        self.st.record(entry)
                if err is None:
                        self.send_json(200, out)
                else:
                        self.send_error_json(err)

        def apply_fault(self, fault):
                """Sleep for slow, hold for hang.  True when the request is dropped."""
                if fault["mode"] == "slow":
                        time.sleep(fault["delay"] or 2)
                        return False
                if fault["mode"] == "hang":
                        fault["release"].wait(fault["delay"] or 3600)
                        self.drop_connection()
                        return True
                return False

        @staticmethod
        def fault_error(mode):
                return {
                        "500": AwsError("InternalServiceError",
                                        "An error occurred on the server side.", 500),
                        "503": AwsError("ServiceUnavailable", "Service is unavailable.", 503),
                        "throttle": AwsError("ThrottlingException", "Rate exceeded"),
                        "denied": AwsError("AccessDeniedException",
                                           "User: arn:aws:iam::%s:user/test is not authorized "
                                           "to perform this action" % ACCOUNT),
                        "kms": AwsError("DecryptionFailure",
                                        "Secrets Manager can't decrypt the protected secret "
                                        "text using the provided KMS key."),
                        "expired": AwsError("ExpiredTokenException",
                                            "The security token included in the request is "
                                            "expired", lower=True),
                }[mode]

        @staticmethod
        def need_string(req, name, required=True):
                v = req.get(name)
                if v is None and not required:
                        return None
                if not isinstance(v, str) or not v:
                        raise AwsError("InvalidParameterException",
                                       "Invalid parameter: %s" % name)
                return v

        def version_token(self, req):
                tok = req.get("ClientRequestToken")
                if tok is None:
                        return None
                if not isinstance(tok, str) or not 32 <= len(tok) <= 64:
                        raise AwsError("InvalidParameterException",
                                       "ClientRequestToken must be 32 to 64 characters.")
                return tok

        def put_version(self, s, req):
                value = req.get("SecretString")
                if value is None and req.get("SecretBinary") is None:
                        raise AwsError("InvalidRequestException",
                                       "You must provide either SecretString or SecretBinary.")
                if value is not None and not isinstance(value, str):
                        raise AwsError("InvalidParameterException",
                                       "Invalid parameter: SecretString")
                tok = self.version_token(req)
                if tok is not None and tok in s.versions:
                        if s.versions[tok]["string"] != value:
                                raise AwsError("ResourceExistsException",
                                               "You can't modify an existing version, you can "
                                               "only create a new version.")
                        return tok   # the same request again: idempotent
                return s.add_version(value, tok)

        def sm_CreateSecret(self, req):
                name = self.need_string(req, "Name")
                if len(name) > 512:
                        raise AwsError("InvalidParameterException", "Invalid parameter: Name")
                existing = self.st.secrets.get(name)
                if existing is not None:
                        if existing.deleted is not None:
                                raise AwsError("InvalidRequestException",
                                               "You can't create this secret because a secret "
                                               "with this name is already scheduled for "
                                               "deletion.")
                        raise AwsError("ResourceExistsException",
                                       "The operation failed because the secret %s already "
                                       "exists." % name)
                desc = req.get("Description")
                s = Secret(name, self.st.region, desc if isinstance(desc, str) else None)
                out = {"ARN": s.arn, "Name": name}
                if req.get("SecretString") is not None or req.get("SecretBinary") is not None:
                        out["VersionId"] = self.put_version(s, req)
                self.st.secrets[name] = s
                return out

        def sm_PutSecretValue(self, req):
                s = self.st.find(req.get("SecretId"))
                if s.deleted is not None:
                        raise marked_for_deletion()
                vid = self.put_version(s, req)
                return {"ARN": s.arn, "Name": s.name, "VersionId": vid,
                        "VersionStages": list(s.versions[vid]["stages"])}

        def sm_GetSecretValue(self, req):
                s = self.st.find(req.get("SecretId"))
                if s.deleted is not None:
                        raise marked_for_deletion()
                vid = req.get("VersionId")
                stage = req.get("VersionStage")
                if vid is not None:
                        if vid not in s.versions or (stage and stage not in s.versions[vid]["stages"]):
                                raise AwsError("ResourceNotFoundException",
                                               "Secrets Manager can't find the specified secret "
                                               "value for VersionId: %s" % vid)
                else:
                        vid = s.stage(stage or "AWSCURRENT")
                        if vid is None:
                                raise AwsError("ResourceNotFoundException",
                                               "Secrets Manager can't find the specified secret "
                                               "value for staging label: %s"
                                               % (stage or "AWSCURRENT"))
                v = s.versions[vid]
                out = {"ARN": s.arn, "Name": s.name, "VersionId": vid,
                       "VersionStages": list(v["stages"]), "CreatedDate": v["created"]}
                if v["string"] is not None:
                        out["SecretString"] = v["string"]
                return out

        def sm_DescribeSecret(self, req):
                s = self.st.find(req.get("SecretId"))
                out = {"ARN": s.arn, "Name": s.name, "CreatedDate": s.created,
                       "LastChangedDate": s.changed,
                       "VersionIdsToStages": {k: list(v["stages"]) for k, v in s.versions.items()
                                              if v["stages"]}}
                if s.description is not None:
                        out["Description"] = s.description
                if s.deleted is not None:
                        out["DeletedDate"] = s.deleted
                return out

        def sm_DeleteSecret(self, req):
                s = self.st.find(req.get("SecretId"))
                force = req.get("ForceDeleteWithoutRecovery", False)
                window = req.get("RecoveryWindowInDays")
                if force and window is not None:
                        raise AwsError("InvalidParameterException",
                                       "You can't use ForceDeleteWithoutRecovery in conjunction "
                                       "with RecoveryWindowInDays.")
                if window is None:
                        window = 30
                if not isinstance(window, int) or isinstance(window, bool) or not 7 <= window <= 30:
                        raise AwsError("InvalidParameterException",
                                       "The RecoveryWindowInDays value must be between 7 and 30 "
                                       "days (inclusive).")
                if s.deleted is not None:
                        raise AwsError("InvalidRequestException",
                                       "You can't perform this operation on the secret because "
                                       "it was already scheduled for deletion.")
                now = time.time()
                if force:
                        del self.st.secrets[s.name]
                        return {"ARN": s.arn, "Name": s.name, "DeletionDate": now}
                s.deleted = now
                s.deletion_date = now + window * 86400
                return {"ARN": s.arn, "Name": s.name, "DeletionDate": s.deletion_date}

        def sm_RestoreSecret(self, req):
                s = self.st.find(req.get("SecretId"))
                s.deleted = s.deletion_date = None
                return {"ARN": s.arn, "Name": s.name}

        def sm_ListSecrets(self, req):
                max_results = req.get("MaxResults", 100)
                if not isinstance(max_results, int) or not 1 <= max_results <= 100:
                        raise AwsError("InvalidParameterException",
                                       "Invalid parameter: MaxResults")
                prefixes = []
                for f in req.get("Filters") or []:
                        if not isinstance(f, dict) or f.get("Key") not in (
                                        "name", "description", "tag-key", "tag-value",
                                        "primary-region", "owning-service", "all"):
                                raise AwsError("InvalidParameterException",
                                               "Invalid filter key")
                        if f["Key"] == "name":
                                prefixes += [v for v in f.get("Values") or [] if isinstance(v, str)]
                names = sorted(n for n, s in self.st.secrets.items() if s.deleted is None and
                               (not prefixes or any(n.startswith(p) for p in prefixes)))
                start = 0
                token = req.get("NextToken")
                if token is not None:
                        try:
                                start = int(base64.b64decode(token.encode(), validate=True))
                        except Exception:
                                raise AwsError("InvalidNextTokenException",
                                               "The NextToken value is invalid.")
                page = min(max_results, self.st.page_size)
                chosen = names[start:start + page]
                out = {"SecretList": []}
                for n in chosen:
                        s = self.st.secrets[n]
                        item = {"ARN": s.arn, "Name": n, "LastChangedDate": s.changed,
                                "CreatedDate": s.created,
                                "SecretVersionsToStages": {k: list(v["stages"])
                                                           for k, v in s.versions.items()
                                                           if v["stages"]}}
                        if s.description is not None:
                                item["Description"] = s.description
                        out["SecretList"].append(item)
                if start + page < len(names):
                        out["NextToken"] = base64.b64encode(str(start + page).encode()).decode()
                return out

        # --- STS -------------------------------------------------------------

        def sts_error(self, status, code, message):
                xml = ('<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
                       '<Error><Type>Sender</Type><Code>%s</Code><Message>%s</Message></Error>'
                       '<RequestId>%s</RequestId></ErrorResponse>' % (code, message, uuid.uuid4()))
                self.send_raw(status, xml.encode(), "text/xml")

        # The signature errors of the JSON services, as STS spells them.
        STS_AUTH_ERRORS = {
                "MissingAuthenticationTokenException": (403, "MissingAuthenticationToken"),
                "IncompleteSignatureException": (400, "IncompleteSignature"),
                "UnrecognizedClientException": (403, "InvalidClientTokenId"),
                "InvalidSignatureException": (403, "SignatureDoesNotMatch"),
                "ExpiredTokenException": (400, "ExpiredToken"),
        }

        def sts(self, body):
                form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
                action = form.get("Action", "")
                entry = {"kind": "sts", "action": action, "time": time.time(), "status": 200,
                         "session_name": form.get("RoleSessionName"),
                         "role_arn": form.get("RoleArn")}

                def fail(status, code, message):
                        entry.update(status=status, error=code)
                        self.sts_error(status, code, message)
                try:
                        if action not in ("AssumeRoleWithWebIdentity", "AssumeRole"):
                                fail(400, "InvalidAction", "Could not find operation %s" % action[:40])
                                return
                        if action == "AssumeRole":
                                # signed like every other AWS call (service "sts")
                                try:
                                        with self.st.lock:
                                                caller = self.verify(body, "sts")
                                except AwsError as e:
                                        with self.st.lock:
                                                self.st.rejected += 1
                                        fail(*self.STS_AUTH_ERRORS.get(e.code, (403, e.code)),
                                             e.message)
                                        return
                                entry.update(caller=caller, external_id=form.get("ExternalId"),
                                             duration_seconds=form.get("DurationSeconds"))
                        if not form.get("RoleArn") or not form.get("RoleSessionName"):
                                fail(400, "ValidationError", "missing parameter")
                                return
                        name = form["RoleSessionName"]
                        if not 2 <= len(name) <= 64 or any(
                                        not (ch.isalnum() or ch in "_+=,.@-") for ch in name):
                                fail(400, "ValidationError", "1 validation error detected: Value "
                                     "at 'roleSessionName' failed to satisfy constraint")
                                return
                        dur = form.get("DurationSeconds")
                        if dur is not None and (not dur.isdigit() or not 900 <= int(dur) <= 43200):
                                fail(400, "ValidationError", "1 validation error detected: Value "
                                     "at 'durationSeconds' failed to satisfy constraint")
                                return
                        if action == "AssumeRole":
                                want = self.st.external_ids.get(form["RoleArn"])
                                got = form.get("ExternalId")
                                if want is not None and (got is None or
                                                         not hmac.compare_digest(got, want)):
                                        fail(403, "AccessDenied", "User: arn:aws:iam::%s:user/test is "
                                             "not authorized to perform: sts:AssumeRole on "
                                             "resource: %s" % (ACCOUNT, form["RoleArn"]))
                                        return
                        else:
                                tok = form.get("WebIdentityToken", "")
                                want = self.st.web_identity_token
                                if not want or not hmac.compare_digest(tok, want):
                                        fail(400, "InvalidIdentityToken",
                                             "The web identity token that was passed could not "
                                             "be validated by AWS.")
                                        return
                        with self.st.lock:
                                c = self.st.mint("sts")
                        entry["access_key"] = c["AccessKeyId"]
                        role = form["RoleArn"]
                        extra = ("<SubjectFromWebIdentityToken>system:serviceaccount:test"
                                 "</SubjectFromWebIdentityToken>"
                                 "<Audience>sts.amazonaws.com</Audience>"
                                 if action == "AssumeRoleWithWebIdentity" else "")
                        provider = ("<Provider>oidc.eks.amazonaws.com</Provider>"
                                    if action == "AssumeRoleWithWebIdentity" else "")
                        xml = ("<%sResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">"
                               "<%sResult>%s"
                               "<AssumedRoleUser><Arn>%s/%s</Arn>"
                               "<AssumedRoleId>AROA0000000000000000:%s</AssumedRoleId>"
                               "</AssumedRoleUser>"
                               "<Credentials>"
                               "<AccessKeyId>%s</AccessKeyId>"
                               "<SecretAccessKey>%s</SecretAccessKey>"
                               "<SessionToken>%s</SessionToken>"
                               "<Expiration>%s</Expiration>"
                               "</Credentials>%s"
                               "</%sResult>"
                               "<ResponseMetadata><RequestId>%s</RequestId></ResponseMetadata>"
                               "</%sResponse>") % (
                                action, action, extra,
                                role.replace(":role/", ":assumed-role/"), name, name,
                                c["AccessKeyId"], c["SecretAccessKey"], c["Token"],
                                c["Expiration"], provider, action, uuid.uuid4(), action)
                        self.send_raw(200, xml.encode(), "text/xml")
                finally:
                        with self.st.lock:
                                self.st.record(entry)

        # --- EC2 instance metadata (IMDSv2) -----------------------------------

        def imds(self, path):
                entry = {"kind": "imds", "action": self.command + " " + path,
                         "time": time.time(), "status": 200}
                try:
                        if path == "/latest/api/token":
                                if self.command != "PUT":
                                        entry["status"] = 405
                                        self.send_raw(405, b"", "text/plain")
                                        return
                                ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
                                if not ttl or not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
                                        entry["status"] = 400
                                        self.send_raw(400, b"", "text/plain")
                                        return
                                tok = secrets.token_urlsafe(40)
                                with self.st.lock:
                                        self.st.imds_tokens[tok] = time.time() + int(ttl)
                                self.send_raw(200, tok.encode(), "text/plain",
                                              {"X-aws-ec2-metadata-token-ttl-seconds": ttl})
                                return
                        tok = self.headers.get("X-aws-ec2-metadata-token")
                        with self.st.lock:
                                exp = self.st.imds_tokens.get(tok) if tok else None
                        if exp is None or time.time() >= exp:
                                entry["status"] = 401
                                self.send_raw(401, b"", "text/plain")
                                return
                        base = "/latest/meta-data/iam/security-credentials/"
                        if path == base or path == base.rstrip("/"):
                                if not self.st.role_name:
                                        entry["status"] = 404
                                        self.send_raw(404, b"", "text/plain")
                                        return
                                self.send_raw(200, self.st.role_name.encode(), "text/plain")
                                return
                        if path == base + (self.st.role_name or "\0"):
                                with self.st.lock:
                                        c = self.st.mint("imds")
                                entry["access_key"] = c["AccessKeyId"]
                                out = {"Code": "Success", "LastUpdated": iso8601(time.time()),
                                       "Type": "AWS-HMAC", "AccessKeyId": c["AccessKeyId"],
                                       "SecretAccessKey": c["SecretAccessKey"],
                                       "Token": c["Token"], "Expiration": c["Expiration"]}
                                self.send_raw(200, json.dumps(out).encode(), "text/plain")
                                return
                        entry["status"] = 404
                        self.send_raw(404, b"", "text/plain")
                finally:
                        with self.st.lock:
                                self.st.record(entry)

        # --- container credentials ------------------------------------------

        def container(self):
                entry = {"kind": "container", "action": "GET", "time": time.time(), "status": 200}
                try:
                        want = self.st.container_token
                        got = self.headers.get("Authorization")
                        if want and (got is None or not hmac.compare_digest(got, want)):
                                entry["status"] = 401
                                self.send_raw(401, json.dumps({"message": "unauthorized"}).encode(),
                                              "application/json")
                                return
                        with self.st.lock:
                                c = self.st.mint("container")
                        entry["access_key"] = c["AccessKeyId"]
                        out = {"AccessKeyId": c["AccessKeyId"], "SecretAccessKey": c["SecretAccessKey"],
                               "Token": c["Token"], "Expiration": c["Expiration"],
                               "RoleArn": "arn:aws:iam::%s:role/test" % ACCOUNT}
                        self.send_raw(200, json.dumps(out).encode(), "application/json")
                finally:
                        with self.st.lock:
                                self.st.record(entry)

        # --- control API -------------------------------------------------------

        def control(self, op, body):
                st = self.st
                try:
                        req = json.loads(body) if body.strip() else {}
                except ValueError:
                        self.send_raw(400, b'{"error":"bad json"}', "application/json")
                        return
                out = {}
                if op == "fault" and self.command == "POST":
                        mode = req.get("mode", "none")
                        if mode not in FAULT_MODES:
                                self.send_raw(400, b'{"error":"bad mode"}', "application/json")
                                return
                        with st.lock:
                                st.set_fault({"mode": mode, "count": int(req.get("count", -1)),
                                              "action": req.get("action"),
                                              "delay": req.get("delay")})
                elif op == "stats":
                        with st.lock:
                                out = {"requests": st.requests, "by_action": dict(st.by_action),
                                       "rejected_signatures": st.rejected,
                                       "secrets": len(st.secrets)}
                elif op == "log":
                        with st.lock:
                                out = {"log": list(st.log)}
                elif op == "reset_stats" and self.command == "POST":
                        with st.lock:
                                st.reset_stats()
                elif op == "session" and self.command == "POST":
                        with st.lock:
                                out = st.mint("session")
                                st.record({"kind": "session", "action": "mint", "time": time.time(),
                                           "status": 200, "access_key": out["AccessKeyId"]})
                elif op == "external_id" and self.command == "POST":
                        with st.lock:
                                st.external_ids[req["role_arn"]] = req["external_id"]
                elif op == "temp_ttl" and self.command == "POST":
                        with st.lock:
                                st.temp_ttl = float(req["seconds"])
                elif op == "access_key" and self.command == "POST":
                        with st.lock:
                                st.keys[req["id"]] = {"secret": req["secret"], "token": None,
                                                      "expires": None, "source": "static"}
                elif op == "names":
                        with st.lock:
                                out = {"names": sorted(st.secrets),
                                       "deleted": sorted(n for n, s in st.secrets.items()
                                                         if s.deleted is not None)}
                else:
                        self.send_raw(404, b'{"error":"no such control"}', "application/json")
                        return
                self.send_raw(200, json.dumps(out).encode(), "application/json")


class Server(TestHTTPServer):
        name = "aws_server"

        def __init__(self, addr, state):
                super().__init__(addr, state, Handler)


def main(argv=None):
        p = argparse.ArgumentParser()
        p.add_argument("--port-file", required=True)
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--port", type=int, default=0)
        p.add_argument("--region", default="us-east-1")
        p.add_argument("--access-key", action="append", default=[])
        p.add_argument("--page-size", type=int, default=2)
        p.add_argument("--temp-ttl", type=float, default=3600)
        p.add_argument("--role-name", default="omikuji-node")
        p.add_argument("--web-identity-token")
        p.add_argument("--container-path", default="/v2/credentials/test")
        p.add_argument("--container-token")
        args = p.parse_args(argv)
        state = State(args)
        serve(Server((args.host, args.port), state), args.port_file, release=lambda: state.release.set())


if __name__ == "__main__":
        main()
