"""Start and drive tests/servers/aws_server.py from Python tests.

    sys.path.insert(0, os.path.join(TESTS_SOURCE_DIR, "servers"))
    import awslib
    with awslib.AwsServer() as srv:
        sm = srv.boto3_client()            # real boto3, signed with srv's static key
        sm.create_secret(Name="omikuji/eth", SecretString=...)
        srv.fault("throttle", count=2)
        assert srv.stats()["rejected_signatures"] == 0

The server runs on an ephemeral loopback port in its own temp dir and is
stopped by its pid (SIGTERM, then SIGKILL) on exit of the `with`, or at
interpreter exit.  Credentials are throwaway values generated per server.
"""

import atexit
import http.client
import json
import os
import secrets
import shutil
import signal
import string
import subprocess
import tempfile
import time

SERVER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "aws_server.py")
PYTHON = "/usr/bin/python3"


def random_access_key():
        ak = "AKIA" + "".join(secrets.choice(string.ascii_uppercase + string.digits)
                              for _ in range(16))
        return ak, secrets.token_urlsafe(30)


class AwsServer:
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
                self.tmpdir = tempfile.mkdtemp(prefix="aws-server-")
                self.port_file = os.path.join(self.tmpdir, "port")
                self.log_path = os.path.join(self.tmpdir, "server.log")
                self.proc = None
                self.port = None

        def start(self, timeout=20):
                args = [PYTHON, SERVER_SCRIPT, "--port-file", self.port_file,
                        "--region", self.region, "--page-size", str(self.page_size),
                        "--temp-ttl", str(self.temp_ttl),
                        "--access-key", "%s:%s" % (self.access_key, self.secret_key),
                        "--web-identity-token", self.web_identity_token,
                        "--container-path", self.container_path]
                if self.container_token:
                        args += ["--container-token", self.container_token]
                args += self.extra_args
                self._log = open(self.log_path, "wb")
                self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                             stdout=self._log, stderr=self._log)
                atexit.register(self.stop)
                deadline = time.monotonic() + timeout
                while not os.path.exists(self.port_file):
                        if self.proc.poll() is not None:
                                raise RuntimeError("aws_server exited with %d:\n%s"
                                                   % (self.proc.returncode, self.log_text()))
                        if time.monotonic() > deadline:
                                self.stop()
                                raise RuntimeError("aws_server did not start")
                        time.sleep(0.05)
                with open(self.port_file) as f:
                        self.port = int(f.read().strip())
                return self

        def stop(self):
                proc, self.proc = self.proc, None
                if proc is not None and proc.poll() is None:
                        proc.send_signal(signal.SIGTERM)
                        try:
                                proc.wait(10)
                        except subprocess.TimeoutExpired:
                                proc.kill()
                                proc.wait()
                if proc is not None:
                        self._log.close()

        def cleanup(self):
                self.stop()
                shutil.rmtree(self.tmpdir, ignore_errors=True)

        def __enter__(self):
                return self.start()

        def __exit__(self, *exc):
                self.cleanup()
                return False

        def log_text(self):
                try:
                        with open(self.log_path, errors="replace") as f:
                                return f.read()
                except OSError:
                        return ""

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
