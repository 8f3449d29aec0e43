"""Start and drive tests/servers/aws_server.py from Python tests.

    sys.path.insert(0, os.path.join(TESTS_SOURCE_DIR, "servers"))
    import awslib
    with awslib.AwsServer() as srv:
        sm = srv.boto3_client()            # real boto3, signed with srv's static key
        sm.create_secret(Name="omikuji/eth", SecretString=...)
        srv.fault("throttle", count=2)
        assert srv.stats()["rejected_signatures"] == 0

The process side (ephemeral loopback port, temp dir, log, stop by pid on
exit of the `with` or at interpreter exit) is serverproc.ServerProcess.  Credentials are throwaway values generated per server.
"""

import http.client
import json
import os
import secrets
import string

from serverproc import PYTHON, ServerProcess

SERVER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "aws_server.py")


def random_access_key():
        ak = "AKIA" + "".join(secrets.choice(string.ascii_uppercase + string.digits)
                              for _ in range(16))
        return ak, secrets.token_urlsafe(30)


class AwsServer(ServerProcess):
        def __init__(self, region="us-east-1", page_size=2, temp_ttl=3600,
                     web_identity_token=None, container_token=None, extra_args=()):
                self.region = region
                self.page_size = page_size
                self.temp_ttl = temp_ttl
                self.access_key, self.secret_key = random_access_key()
                self.web_identity_token = web_identity_token or secrets.token_urlsafe(40)
                self.container_token = container_token
                self.container_path = "/v2/credentials/" + secrets.token_hex(8)
                self.extra_args = list(extra_args)
                self._init_process("aws-server-")

        def start(self, timeout=20):
                args = [PYTHON, SERVER_SCRIPT, "--port-file", self.port_file,
                        "--region", self.region, "--page-size", str(self.page_size),
                        "--temp-ttl", str(self.temp_ttl),
                        "--access-key", "%s:%s" % (self.access_key, self.secret_key),
                        # "=": a random token may start with "-"
                        "--web-identity-token=" + self.web_identity_token,
                        "--container-path", self.container_path]
                if self.container_token:
                        args += ["--container-token=" + self.container_token]
                args += self.extra_args
                return self._launch(args, "aws_server", timeout)

        @property
        def url(self):
                return "http://127.0.0.1:%d" % self.port

        # --- raw HTTP and the control API --------------------------------------

        def request(self, method, path, body=None, headers=None, timeout=30):
                """(status, headers dict, raw body) on a fresh connection."""
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
                try:
                        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
                        conn.request(method, path, body=data, headers=headers or {})
                        resp = conn.getresponse()
                        return resp.status, dict(resp.getheaders()), resp.read()
                finally:
                        conn.close()

        def _control(self, method, op, body=None):
                status, _, raw = self.request(method, "/_test/" + op, body)
                if status != 200:
                        raise RuntimeError("control %s failed: %d" % (op, status))
                return json.loads(raw)

        def fault(self, mode, count=-1, action=None, delay=None):
                self._control("POST", "fault", {"mode": mode, "count": count,
                                                "action": action, "delay": delay})

        def clear_fault(self):
                self.fault("none")

        def stats(self):
                return self._control("GET", "stats")

        def log(self):
                return self._control("GET", "log")["log"]

        def reset_stats(self):
                self._control("POST", "reset_stats")

        def session(self):
                """Mint temporary credentials: AccessKeyId, SecretAccessKey, Token, Expiration."""
                return self._control("POST", "session")

        def add_access_key(self):
                """A new long-term key pair the server accepts: (id, secret)."""
                ak, sk = random_access_key()
                self._control("POST", "access_key", {"id": ak, "secret": sk})
                return ak, sk

        def require_external_id(self, role_arn, external_id):
                """AssumeRole of role_arn must send this ExternalId."""
                self._control("POST", "external_id", {"role_arn": role_arn,
                                                      "external_id": external_id})

        def set_temp_ttl(self, seconds):
                self._control("POST", "temp_ttl", {"seconds": seconds})

        def names(self):
                return self._control("GET", "names")

        # --- boto3 ------------------------------------------------------------------

        def boto3_client(self, service="secretsmanager", access_key=None, secret_key=None,
                         token=None, region=None, config=None, **kw):
                import boto3
                from botocore.config import Config
                if config is None:
                        config = Config(retries={"total_max_attempts": 1, "mode": "standard"})
                return boto3.client(
                        service, endpoint_url=self.url, region_name=region or self.region,
                        aws_access_key_id=access_key or self.access_key,
                        aws_secret_access_key=secret_key or self.secret_key,
                        aws_session_token=token,
                        config=config, **kw)
