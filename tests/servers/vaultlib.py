"""Start and drive tests/servers/vault_server.py from Python tests.

Stdlib only, so any /usr/bin/python3 test can use it without hvac:

    sys.path.insert(0, os.path.join(TESTS_SOURCE_DIR, "servers"))
    import vaultlib
    with vaultlib.VaultServer(approles=[("role", "secret")]) as vs:
        vs.kv_put("omikuji/keys/eth", {"private_key": vaultlib.random_evm_key()})
        ... point the daemon at vs.url with token vs.root_token ...
        vs.fault("503", count=2)
        assert vs.stats()["by_route"].get("GET /v1/secret/data/omikuji/keys/eth")

The server runs on an ephemeral loopback port in its own temp dir; its stderr
(one line per request, never bodies or tokens) goes to vs.log_path, readable
with vs.log_text().  stop() (also on exit of the `with`, and at interpreter
exit as a fallback) ends it by its pid: SIGTERM, then SIGKILL if needed.
"""

import http.client
import json
import os
import secrets
import ssl
import subprocess
import urllib.parse

from serverproc import PYTHON, ServerProcess

SERVER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vault_server.py")
SECP256K1_ORDER = int("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141", 16)


def random_token():
        """A throwaway Vault-token-shaped string."""
        return "hvs." + secrets.token_urlsafe(24)


def random_evm_key(prefix="0x"):
        """A throwaway valid secp256k1 private key as 64 hex digits."""
        while True:
                k = int.from_bytes(secrets.token_bytes(32), "big")
                if 0 < k < SECP256K1_ORDER:
                        return prefix + "%064x" % k


def make_self_signed_cert(directory, name="vault"):
        """Write a throwaway self-signed cert+key for 127.0.0.1/localhost.

        Returns (cert_path, key_path); the cert is also its own CA file."""
        cert = os.path.join(directory, name + ".crt")
        key = os.path.join(directory, name + ".key")
        subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                 "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                 "-subj", "/CN=localhost", "-keyout", key, "-out", cert,
                 "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                 "-addext", "basicConstraints=critical,CA:TRUE"],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return cert, key


class VaultServer(ServerProcess):
        """One vault_server.py process.  Arguments mirror its command line."""

        def __init__(self, root_token=None, approles=(), token_ttl=None,
                     kv_mount="secret", namespace=None, tls=False, tls_cert=None,
                     tls_key=None, host="127.0.0.1", extra_args=()):
                self.root_token = root_token or random_token()
                self.approles = list(approles)
                self.token_ttl = token_ttl
                self.kv_mount = kv_mount
                self.namespace = namespace
                self.host = host
                self.extra_args = list(extra_args)
                self._init_process("vault-server-")
                if tls and not tls_cert:
                        tls_cert, tls_key = make_self_signed_cert(self.tmpdir)
                self.tls_cert, self.tls_key = tls_cert, tls_key
                self.ca_file = tls_cert

        # --- lifecycle -------------------------------------------------------

        def start(self, timeout=15):
                args = [PYTHON, SERVER_SCRIPT, "--port-file", self.port_file,
                        "--host", self.host, "--root-token", self.root_token,
                        "--kv-mount", self.kv_mount]
                for role_id, secret_id in self.approles:
                        args += ["--approle", "%s:%s" % (role_id, secret_id)]
                if self.token_ttl is not None:
                        args += ["--token-ttl", str(int(self.token_ttl))]
                if self.namespace:
                        args += ["--namespace", self.namespace]
                if self.tls_cert:
                        args += ["--tls-cert", self.tls_cert, "--tls-key", self.tls_key]
                args += self.extra_args
                return self._launch(args, "vault_server", timeout)

        @property
        def scheme(self):
                return "https" if self.tls_cert else "http"

        @property
        def url(self):
                """Base URL without a trailing slash, e.g. http://127.0.0.1:41234."""
                host = "[%s]" % self.host if ":" in self.host else self.host
                return "%s://%s:%d" % (self.scheme, host, self.port)

        base_url = url

        # --- raw HTTP --------------------------------------------------------

        def request(self, method, path, body=None, token=None, headers=None,
                    namespace=None, timeout=30):
                """One request on a fresh connection: (status, parsed JSON or None).

                token=None sends the root token; token="" sends none.  namespace
                defaults to the server's namespace for /v1/ paths."""
                if self.tls_cert:
                        ctx = ssl.create_default_context(cafile=self.ca_file)
                        conn = http.client.HTTPSConnection(self.host, self.port,
                                                           timeout=timeout, context=ctx)
                else:
                        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
                hdrs = dict(headers or {})
                if path.startswith("/v1/"):
                        tok = self.root_token if token is None else token
                        if tok:
                                hdrs["X-Vault-Token"] = tok
                        ns = self.namespace if namespace is None else namespace
                        if ns:
                                hdrs["X-Vault-Namespace"] = ns
                data = None
                if body is not None:
                        data = json.dumps(body).encode()
                        hdrs["Content-Type"] = "application/json"
                try:
                        conn.request(method, path, body=data, headers=hdrs)
                        resp = conn.getresponse()
                        raw = resp.read()
                finally:
                        conn.close()
                parsed = json.loads(raw) if raw.strip() else None
                return resp.status, parsed

        def _control(self, method, op, body=None):
                status, out = self.request(method, "/_test/" + op, body)
                if status != 200:
                        raise RuntimeError("control %s failed: %d %r" % (op, status, out))
                return out

        # --- control API -------------------------------------------------------

        def fault(self, mode, count=-1, delay=None, path_prefix=None):
                body = {"mode": mode, "count": count}
                if delay is not None:
                        body["delay"] = delay
                if path_prefix is not None:
                        body["path_prefix"] = path_prefix
                self._control("POST", "fault", body)

        def preload(self, entries):
                """Write many KV v2 entries ({path: data}) in one control
                request: a benchmark's 100 000 keys in seconds, not minutes."""
                return self._control("POST", "preload", {"entries": entries})["written"]

        def clear_fault(self):
                self.fault("none")

        def expire_token(self, token):
                self._control("POST", "expire_token", {"token": token})

        def stats(self):
                return self._control("GET", "stats")

        def reset_stats(self):
                self._control("POST", "reset_stats")

        def route_count(self, method, path):
                """How often "METHOD /v1/..." was requested since the last reset."""
                return self.stats()["by_route"].get("%s %s" % (method, path), 0)

        # --- Vault conveniences (root token unless given) --------------------------

        def kv_path(self, op, path):
                return "/v1/%s/%s/%s" % (self.kv_mount, op,
                                         urllib.parse.quote(path.strip("/"), safe="/"))

        def kv_put(self, path, data, token=None):
                """Write a new version; returns its version number."""
                status, out = self.request("POST", self.kv_path("data", path),
                                           {"data": data}, token=token)
                if status != 200:
                        raise RuntimeError("kv_put failed: %d" % status)
                return out["data"]["version"]

        def kv_get(self, path, token=None):
                """The data dict of the latest version, or None when absent/deleted."""
                status, out = self.request("GET", self.kv_path("data", path), token=token)
                if status == 404:
                        return None
                if status != 200:
                        raise RuntimeError("kv_get failed: %d" % status)
                return out["data"]["data"]

        def kv_delete_latest(self, path, token=None):
                status, _ = self.request("DELETE", self.kv_path("data", path), token=token)
                if status != 204:
                        raise RuntimeError("kv_delete_latest failed: %d" % status)

        def kv_list(self, path, token=None):
                """Direct children of a folder (folders end in "/"); [] when none."""
                status, out = self.request("LIST", self.kv_path("metadata", path), token=token)
                if status == 404:
                        return []
                if status != 200:
                        raise RuntimeError("kv_list failed: %d" % status)
                return out["data"]["keys"]

        def login(self, role_id, secret_id):
                """AppRole login; returns the client token or raises."""
                status, out = self.request("POST", "/v1/auth/approle/login",
                                           {"role_id": role_id, "secret_id": secret_id}, token="")
                if status != 200:
                        raise RuntimeError("login failed: %d" % status)
                return out["auth"]["client_token"]
