#!/usr/bin/python3
"""A small in-memory HashiCorp Vault stand-in for the omikuji-keyfs test suite.

It speaks the parts of the Vault HTTP API the Vault backend uses (KV v2, AppRole
login, token lookup/renew/revoke-self, sys/health), with real Vault's status codes
and JSON shapes (checked with the real `hvac` client by
tests/integration/test_vault_server_hvac.py), plus a /_test/ control API to inject
faults and read request counters.  Stdlib only; run with /usr/bin/python3:

    vault_server.py --port-file PATH [--host 127.0.0.1] [--port 0]
                    [--root-token TOKEN] [--approle ROLE_ID:SECRET_ID ...]
                    [--token-ttl SECONDS] [--kv-mount secret] [--namespace NS]
                    [--tls-cert CERT --tls-key KEY]

Where this server deliberately differs from real Vault, or where the interface
(tests/servers, "VAULT TEST SERVER INTERFACE") left a choice open:
  * Wrong or missing X-Vault-Namespace (when --namespace is set) answers
    404 {"errors":["no handler for route \"<path>\". route entry not found."]},
    as real Vault answers for a path under a namespace (or root namespace)
    where that mount does not exist.  The namespace may also be given as a
    path prefix (/v1/NS/secret/...), as real Vault accepts.
  * sys/health, sys/seal-status and sys/init need neither token nor namespace
    (as in Vault, where they are unauthenticated root-namespace endpoints).
  * Reading a KV v2 version that is soft-deleted or destroyed answers 404 with
    the real Vault body: {"data":{"data":null,"metadata":{... "deletion_time"
    set or "destroyed":true}}, ...} and no "errors" key (that is what hvac's
    raise_on_deleted_version=False relies on).  A missing path or version
    answers 404 {"errors":[]}.
  * Fault mode "standby": sys/health answers as a standby node (429 unless
    standbyok/standbycode); every other /v1/ request answers
    503 {"errors":["node is in standby mode"]} (real standby nodes forward the
    request or redirect with 307).
  * Fault mode "sealed": sys/health and sys/seal-status report sealed (health
    503), every other /v1/ request answers 503 {"errors":["Vault is sealed"]}.
    Extra mode "uninit": health 501, everything else 503 "Vault is sealed".
  * Faults apply to every /v1/ path (sys/health included) matching
    path_prefix, before namespace and token checks.  path_prefix is compared
    with the request path both as sent and percent-decoded.  "count" is the
    number of matching requests affected; at 0 the fault clears itself.
    Setting a new fault (or mode "none") releases requests held by "hang".
    "hang" closes the connection when its delay ends.
    "stall" answers as usual but holds the answer's last body byte until
    its delay ends or the next fault is set (a client has then received all
    but one byte of a large answer: tests look at the client meanwhile).
  * renew-self: the new TTL is "increment" when given, else the token's
    creation TTL, capped at 768h (Vault's default max TTL).  Renewing the
    root token (not renewable) answers 400 {"errors":["lease is not renewable"]}.
  * Stats: "by_route" keys are "METHOD /decoded/path" without the query string
    and with the HTTP method as sent (a GET ?list=true counts as GET).
    "logins" counts successful AppRole logins; "login_failures" the rejected
    ones (both extra to "requests").  Requests answered by a fault are counted
    in "requests"/"by_route" but not as logins.
  * Stats "connections" counts the distinct TCP connections that carried at
    least one /v1/ request since the last reset_stats: the control API's own
    connections (e.g. the one asking for stats) do not count, and a keep-alive
    connection opened before a reset and used after it counts once.  So N
    requests over one kept-alive connection give 1, without keep-alive N.
  * Extra control endpoint: GET /_test/kv dumps nothing secret, only
    {"paths": [...]} (every KV path with metadata), for test diagnostics.
  * AppRole tokens get metadata {"role_name": "role-<N>"} (N = position of its
    --approle option, from 1).  --token-ttl 0 means AppRole tokens never expire.
  * Request bodies may be sent with Content-Length or chunked; bodies and
    tokens are never logged.
"""

import argparse
import datetime
import json
import secrets
import ssl
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, unquote, urlsplit

from serverbase import FaultState, PlumbingHandler, TestHTTPServer, serve

VAULT_VERSION = "1.15.0"
MAX_TTL = 768 * 3600          # Vault's default system max lease TTL (32 days)
MAX_BODY = 1 << 20
FAULT_MODES = ("none", "500", "503", "403", "429", "slow", "hang", "stall", "sealed",
               "standby", "uninit", "close")
UNAUTHENTICATED = ("sys/health", "sys/seal-status", "sys/init")


def rfc3339(ts):
        """Vault-style UTC timestamp with sub-second digits."""
        dt = datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)
        return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_bool(value):
        """Go's strconv.ParseBool, which Vault uses for query flags."""
        v = value.strip()
        if v in ("1", "t", "T", "TRUE", "true", "True", ""):
                return True
        if v in ("0", "f", "F", "FALSE", "false", "False"):
                return False
        raise ValueError("bad bool")


def parse_duration(value):
        """Seconds from an int or a Go duration string like "1h", "90m", "30s"."""
        if isinstance(value, bool):
                raise ValueError("bad duration")
        if isinstance(value, (int, float)):
                return int(value)
        s = str(value).strip()
        if s.isdigit():
                return int(s)
        units = {"h": 3600, "m": 60, "s": 1}
        total, num = 0.0, ""
        for ch in s:
                if ch.isdigit() or ch == ".":
                        num += ch
                elif ch in units and num:
                        total += float(num) * units[ch]
                        num = ""
                else:
                        raise ValueError("bad duration")
        if num:
                raise ValueError("bad duration")
        return int(total)


def envelope(data=None, auth=None):
        return {"request_id": str(uuid.uuid4()), "lease_id": "",
                "renewable": False, "lease_duration": 0, "data": data,
                "wrap_info": None, "warnings": None, "auth": auth}


class State(FaultState):
        """Everything the server knows; one lock guards it all."""

        def __init__(self, args):
                self.lock = threading.Lock()
                self.kv_mount = args.kv_mount.strip("/")
                self.namespace = args.namespace.strip("/") if args.namespace else None
                self.token_ttl = args.token_ttl
                self.cluster_id = str(uuid.uuid4())
                self.approles = {}
                for i, spec in enumerate(args.approle, 1):
                        role_id, sep, secret_id = spec.partition(":")
                        if not sep or not role_id or not secret_id:
                                raise SystemExit("--approle wants ROLE_ID:SECRET_ID")
                        self.approles[role_id] = (secret_id, "role-%d" % i)
                self.tokens = {}
                now = time.time()
                self.tokens[args.root_token] = {
                        "accessor": secrets.token_hex(12), "policies": ["root"],
                        "creation_time": now, "creation_ttl": 0, "expire_at": None,
                        "renewable": False, "display_name": "root",
                        "path": "auth/token/root", "meta": None,
                }
                self.kv = {}
                self.init_faults(path_prefix=None)
                self.reset_stats()

        def reset_stats(self):
                self.requests = 0
                self.by_route = {}
                self.logins = 0
                self.login_failures = 0
                self.connections = 0
                self.generation = getattr(self, "generation", 0) + 1

        def take_fault(self, raw_path, path):
                """The fault that applies to this request, consuming one count."""
                return self.take_fault_if(lambda f: not f["path_prefix"] or raw_path.startswith(
                        f["path_prefix"]) or path.startswith(f["path_prefix"]))

        def token_valid(self, token):
                t = self.tokens.get(token) if token else None
                if t is None:
                        return None
                if t["expire_at"] is not None and time.time() >= t["expire_at"]:
                        return None
                return t

        def new_token(self, role_name):
                token = "hvs." + secrets.token_urlsafe(24)
                ttl = self.token_ttl
                now = time.time()
                self.tokens[token] = {
                        "accessor": secrets.token_hex(12), "policies": ["default"],
                        "creation_time": now, "creation_ttl": ttl,
                        "expire_at": now + ttl if ttl > 0 else None,
                        "renewable": True, "display_name": "approle",
                        "path": "auth/approle/login", "meta": {"role_name": role_name},
                }
                return token


class Handler(PlumbingHandler, BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "VaultTestServer/1.0"
        sys_version = ""
        timeout = 600                   # idle keep-alive connections end eventually
        # Headers and body go out in separate writes: without TCP_NODELAY each
        # response waits ~40 ms for the client's delayed ACK.
        disable_nagle_algorithm = True

        def version_string(self):
                return self.server_version

        # --- plumbing ------------------------------------------------------

        def setup(self):
                if isinstance(self.request, ssl.SSLSocket):
                        self.request.settimeout(10)
                        self.request.do_handshake()
                super().setup()
                self.counted = 0        # stats generation this connection was counted in
                self.conn_id = self.server.next_conn_id()

        def log_request(self, code="-", size="-"):
                sys.stderr.write("vault_server: conn %d %s %s -> %s\n" % (
                        self.conn_id, self.command, urlsplit(self.path).path, code))

        def log_message(self, fmt, *args):
                sys.stderr.write("vault_server: %s\n" % (fmt % args))

        def do_GET(self):
                self.dispatch()

        do_POST = do_PUT = do_DELETE = do_LIST = do_HEAD = do_PATCH = do_GET

        def read_body(self):
                return self.read_request_body(MAX_BODY)

        def send_json(self, status, obj=None, extra_headers=None):
                body = b""
                if obj is not None and status != 204:
                        body = json.dumps(obj, separators=(",", ":")).encode()
                self.send_response(status)
                if body:
                        self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", "no-store")
                for k, v in (extra_headers or {}).items():
                        self.send_header(k, v)
                if status != 204:
                        self.send_header("Content-Length",
                                         "0" if self.command == "HEAD" else str(len(body)))
                if self.close_connection:
                        self.send_header("Connection", "close")
                self.end_headers()
                if body and self.command != "HEAD":
                        stall = self.stall
                        if stall is not None and len(body) > 1:
                                self.wfile.write(body[:-1])
                                self.wfile.flush()
                                stall["release"].wait(stall["delay"] if stall["delay"] is not None
                                                      else 3600)
                                body = body[-1:]
                        self.wfile.write(body)

        def errors(self, status, *msgs):
                self.send_json(status, {"errors": list(msgs)})

        # --- request routing -------------------------------------------------

        def dispatch(self):
                self.stall = None       # fault "stall": this request's, see send_json
                split = urlsplit(self.path)
                raw_path = split.path
                self.query = parse_qs(split.query, keep_blank_values=True)
                try:
                        body = self.read_body()
                except (ValueError, OSError):
                        self.close_connection = True
                        self.errors(400, "failed to read request body")
                        return
                if raw_path.startswith("/_test/"):
                        self.control(raw_path[len("/_test/"):], body)
                        return
                if not raw_path.startswith("/v1/"):
                        self.errors(404, "not a Vault API path")
                        return
                path = unquote(raw_path)
                st = self.server.state
                with st.lock:
                        st.requests += 1
                        if self.counted != st.generation:
                                st.connections += 1
                                self.counted = st.generation
                        key = "%s %s" % (self.command, path)
                        st.by_route[key] = st.by_route.get(key, 0) + 1
                        fault = st.take_fault(raw_path, path)
                rel = path[len("/v1/"):]
                mode = fault["mode"] if fault else "none"
                if mode in ("500", "503", "403", "429"):
                        msg = {"500": "internal error", "503": "Vault is sealed",
                               "403": "permission denied", "429": "rate limit quota exceeded"}
                        self.errors(int(mode), msg[mode])
                        return
                if mode == "close":
                        sys.stderr.write("vault_server: conn %d %s %s -> closed (fault)\n" % (
                                self.conn_id, self.command, raw_path))
                        self.drop_connection()
                        return
                if mode == "hang":
                        delay = fault["delay"] if fault["delay"] is not None else 3600
                        fault["release"].wait(delay)
                        sys.stderr.write("vault_server: conn %d %s %s -> hung up (fault)\n" % (
                                self.conn_id, self.command, raw_path))
                        self.drop_connection()
                        return
                if mode == "slow":
                        fault["release"].wait(fault["delay"] or 0)
                self.stall = fault if mode == "stall" else None
                if mode in ("sealed", "standby", "uninit"):
                        if rel == "sys/health":
                                self.sys_health(mode)
                        elif rel == "sys/seal-status":
                                self.sys_seal_status(mode)
                        elif mode == "standby":
                                self.errors(503, "node is in standby mode")
                        else:
                                self.errors(503, "Vault is sealed")
                        return
                self.vault(rel, body)

        def vault(self, rel, body):
                st = self.server.state
                if rel == "sys/health":
                        self.sys_health("none")
                        return
                if rel == "sys/seal-status":
                        self.sys_seal_status("none")
                        return
                if rel == "sys/init":
                        if self.command != "GET":
                                self.errors(405, "unsupported operation")
                        else:
                                self.send_json(200, {"initialized": True})
                        return
                if st.namespace is not None:
                        ns = (self.headers.get("X-Vault-Namespace") or "").strip("/")
                        if ns != st.namespace:
                                if not ns and rel.startswith(st.namespace + "/"):
                                        rel = rel[len(st.namespace) + 1:]
                                else:
                                        self.errors(404, 'no handler for route "%s". '
                                                    'route entry not found.' % rel)
                                        return
                try:
                        req = json.loads(body) if body.strip() else {}
                        if not isinstance(req, dict):
                                raise ValueError
                except ValueError:
                        self.errors(400, "failed to parse JSON input")
                        return
                if rel == "auth/approle/login":
                        if self.command not in ("POST", "PUT"):
                                self.errors(405, "unsupported operation")
                                return
                        self.approle_login(req)
                        return
                token = self.headers.get("X-Vault-Token")
                if not token:
                        auth = self.headers.get("Authorization", "")
                        if auth.startswith("Bearer "):
                                token = auth[len("Bearer "):].strip()
                with st.lock:
                        tok = st.token_valid(token)
                if tok is None:
                        self.errors(403, "permission denied")
                        return
                if rel.startswith("auth/token/"):
                        self.token_api(rel[len("auth/token/"):], token, req)
                        return
                mount = st.kv_mount + "/"
                if rel.startswith(mount):
                        self.kv_api(rel[len(mount):], req)
                        return
                self.errors(404, 'no handler for route "%s". route entry not found.' % rel)

        # --- sys -------------------------------------------------------------

        def sys_health(self, mode):
                if self.command not in ("GET", "HEAD"):
                        self.errors(405, "unsupported operation")
                        return
                q = {k: v[-1] for k, v in self.query.items()}
                try:
                        codes = {
                                "active": int(q.get("activecode", 200)),
                                "standby": int(q.get("standbycode", 429)),
                                "sealed": int(q.get("sealedcode", 503)),
                                "uninit": int(q.get("uninitcode", 501)),
                        }
                        standbyok = parse_bool(q["standbyok"]) if "standbyok" in q else False
                except ValueError:
                        self.errors(400, "invalid query parameter")
                        return
                initialized = mode != "uninit"
                sealed = mode in ("sealed", "uninit")
                standby = mode in ("standby", "sealed")
                if not initialized:
                        code = codes["uninit"]
                elif sealed:
                        code = codes["sealed"]
                elif standby and not standbyok:
                        code = codes["standby"]
                else:
                        code = codes["active"]
                body = {
                        "initialized": initialized, "sealed": sealed, "standby": standby,
                        "performance_standby": False,
                        "replication_performance_mode": "disabled",
                        "replication_dr_mode": "disabled",
                        "server_time_utc": int(time.time()), "version": VAULT_VERSION,
                        "cluster_name": "vault-cluster-test",
                        "cluster_id": self.server.state.cluster_id,
                }
                self.send_json(code, body)

        def sys_seal_status(self, mode):
                sealed = mode in ("sealed", "uninit")
                self.send_json(200, {
                        "type": "shamir", "initialized": mode != "uninit", "sealed": sealed,
                        "t": 1, "n": 1, "progress": 0, "nonce": "", "version": VAULT_VERSION,
                        "build_date": "2023-09-22T20:53:58Z", "migration": False,
                        "cluster_name": "vault-cluster-test",
                        "cluster_id": self.server.state.cluster_id,
                        "recovery_seal": False, "storage_type": "inmem",
                })

        # --- auth --------------------------------------------------------------

        def approle_login(self, req):
                st = self.server.state
                role_id, secret_id = req.get("role_id"), req.get("secret_id")
                with st.lock:
                        role = st.approles.get(role_id) if isinstance(role_id, str) else None
                        ok = (role is not None and isinstance(secret_id, str)
                              and secrets.compare_digest(role[0].encode(), secret_id.encode()))
                        if not ok:
                                st.login_failures += 1
                        else:
                                st.logins += 1
                                token = st.new_token(role[1])
                                t = st.tokens[token]
                if not ok:
                        if not role_id:
                                self.errors(400, "missing role_id")
                        else:
                                self.errors(400, "invalid role or secret ID")
                        return
                self.send_json(200, envelope(auth=self.auth_block(token, t)))

        def auth_block(self, token, t):
                ttl = t["creation_ttl"]
                return {"client_token": token, "accessor": t["accessor"],
                        "policies": list(t["policies"]),
                        "token_policies": list(t["policies"]),
                        "metadata": t["meta"], "lease_duration": ttl,
                        "renewable": t["renewable"], "entity_id": "",
                        "token_type": "service", "orphan": True,
                        "mfa_requirement": None, "num_uses": 0}

        def token_api(self, op, token, req):
                st = self.server.state
                if op == "lookup-self":
                        if self.command != "GET":
                                self.errors(405, "unsupported operation")
                                return
                        with st.lock:
                                t = dict(st.tokens[token])
                        now = time.time()
                        exp = t["expire_at"]
                        self.send_json(200, envelope(data={
                                "accessor": t["accessor"],
                                "creation_time": int(t["creation_time"]),
                                "creation_ttl": t["creation_ttl"],
                                "display_name": t["display_name"], "entity_id": "",
                                "expire_time": rfc3339(exp) if exp is not None else None,
                                "explicit_max_ttl": 0, "id": token,
                                "issue_time": rfc3339(t["creation_time"]),
                                "meta": t["meta"], "num_uses": 0, "orphan": True,
                                "path": t["path"], "policies": list(t["policies"]),
                                "renewable": t["renewable"],
                                "ttl": max(0, int(exp - now)) if exp is not None else 0,
                                "type": "service",
                        }))
                elif op == "renew-self":
                        if self.command not in ("POST", "PUT"):
                                self.errors(405, "unsupported operation")
                                return
                        with st.lock:
                                t = st.tokens[token]
                                if not t["renewable"]:
                                        t = None
                                else:
                                        try:
                                                inc = req.get("increment")
                                                ttl = parse_duration(inc) if inc not in (None, "", 0) \
                                                        else t["creation_ttl"]
                                        except ValueError:
                                                ttl = None
                                        if ttl is not None:
                                                ttl = min(ttl, MAX_TTL)
                                                t["expire_at"] = time.time() + ttl if ttl > 0 else None
                                                blk = self.auth_block(token, t)
                                                blk["lease_duration"] = ttl
                        if t is None:
                                self.errors(400, "lease is not renewable")
                        elif ttl is None:
                                self.errors(400, "invalid increment")
                        else:
                                self.send_json(200, envelope(auth=blk))
                elif op == "revoke-self":
                        if self.command not in ("POST", "PUT"):
                                self.errors(405, "unsupported operation")
                                return
                        with st.lock:
                                st.tokens.pop(token, None)
                        self.send_json(204)
                else:
                        self.errors(404, "unsupported path")

        # --- KV v2 -------------------------------------------------------------

        def kv_api(self, rel, req):
                op, _, path = rel.partition("/")
                m = self.command
                if op == "data" and m == "GET":
                        self.kv_read(path)
                elif op == "data" and m in ("POST", "PUT"):
                        self.kv_write(path, req)
                elif op == "data" and m == "DELETE":
                        self.kv_versions(path, "delete", None)
                elif op in ("delete", "undelete", "destroy") and m in ("POST", "PUT"):
                        versions = req.get("versions")
                        if (not isinstance(versions, list) or not versions
                                        or not all(isinstance(v, int) for v in versions)):
                                self.errors(400, "no version number provided")
                                return
                        self.kv_versions(path, op, versions)
                elif op == "metadata" and (m == "LIST" or (m == "GET" and self.list_query())):
                        self.kv_list(path)
                elif op == "metadata" and m == "GET":
                        self.kv_metadata(path)
                elif op == "metadata" and m in ("POST", "PUT"):
                        self.kv_update_metadata(path, req)
                elif op == "metadata" and m == "DELETE":
                        with self.server.state.lock:
                                self.server.state.kv.pop(path.strip("/"), None)
                        self.send_json(204)
                else:
                        self.errors(405, "unsupported operation")

        def list_query(self):
                try:
                        return "list" in self.query and parse_bool(self.query["list"][-1])
                except ValueError:
                        return False

        @staticmethod
        def version_meta(ver, n):
                return {"created_time": ver["created_time"], "custom_metadata": None,
                        "deletion_time": ver["deletion_time"],
                        "destroyed": ver["destroyed"], "version": n}

        def kv_read(self, path):
                st = self.server.state
                try:
                        want = int(self.query.get("version", ["0"])[-1] or 0)
                except ValueError:
                        self.errors(400, "invalid version")
                        return
                with st.lock:
                        e = st.kv.get(path.strip("/"))
                        n = want or (e["current_version"] if e else 0)
                        ver = e["versions"].get(n) if e else None
                        if ver is not None:
                                meta = self.version_meta(ver, n)
                                meta["custom_metadata"] = e["custom_metadata"]
                                data = dict(ver["data"]) if ver["data"] is not None else None
                if ver is None:
                        self.errors(404)
                elif ver["deletion_time"] or ver["destroyed"]:
                        self.send_json(404, envelope(data={"data": None, "metadata": meta}))
                else:
                        self.send_json(200, envelope(data={"data": data, "metadata": meta}))

        def kv_write(self, path, req):
                st = self.server.state
                data = req.get("data")
                if not isinstance(data, dict):
                        self.errors(400, "no data provided")
                        return
                opts = req.get("options") or {}
                cas = opts.get("cas") if isinstance(opts, dict) else None
                key = path.strip("/")
                if not key:
                        self.errors(400, "missing path")
                        return
                now = rfc3339(time.time())
                with st.lock:
                        e = st.kv.get(key)
                        current = e["current_version"] if e else 0
                        if cas is not None and cas != current:
                                bad = True
                        else:
                                bad = False
                                e, n, ver = self.kv_new_version(key, data, now)
                                meta = self.version_meta(ver, n)
                                meta["custom_metadata"] = e["custom_metadata"]
                if bad:
                        self.errors(400, "check-and-set parameter did not match the current version")
                else:
                        self.send_json(200, envelope(data=meta))

        def kv_new_version(self, key, data, now):
                """Write data as the next version of key (state lock held)."""
                st = self.server.state
                e = st.kv.get(key)
                if e is None:
                        e = st.kv[key] = {"created_time": now, "versions": {},
                                          "current_version": 0, "custom_metadata": None}
                n = e["current_version"] + 1
                e["current_version"] = n
                e["updated_time"] = now
                ver = e["versions"][n] = {"data": dict(data), "created_time": now,
                                          "deletion_time": "", "destroyed": False}
                return e, n, ver

        def kv_versions(self, path, op, versions):
                st = self.server.state
                now = rfc3339(time.time())
                with st.lock:
                        e = st.kv.get(path.strip("/"))
                        if e is not None:
                                if versions is None:
                                        versions = [e["current_version"]]
                                for n in versions:
                                        ver = e["versions"].get(n)
                                        if ver is None or ver["destroyed"]:
                                                continue
                                        if op == "delete" and not ver["deletion_time"]:
                                                ver["deletion_time"] = now
                                        elif op == "undelete":
                                                ver["deletion_time"] = ""
                                        elif op == "destroy":
                                                ver["destroyed"] = True
                                                ver["data"] = None
                                e["updated_time"] = now
                self.send_json(204)

        def kv_list(self, path):
                st = self.server.state
                prefix = path.strip("/")
                prefix = prefix + "/" if prefix else ""
                keys = set()
                with st.lock:
                        for k in st.kv:
                                if k.startswith(prefix):
                                        rest = k[len(prefix):]
                                        head, sep, _ = rest.partition("/")
                                        keys.add(head + sep)
                if not keys:
                        self.errors(404)
                else:
                        self.send_json(200, envelope(data={"keys": sorted(keys)}))

        def kv_metadata(self, path):
                st = self.server.state
                with st.lock:
                        e = st.kv.get(path.strip("/"))
                        if e is not None:
                                vers = {str(n): {"created_time": v["created_time"],
                                                 "deletion_time": v["deletion_time"],
                                                 "destroyed": v["destroyed"]}
                                        for n, v in e["versions"].items()}
                                data = {"cas_required": False,
                                        "created_time": e["created_time"],
                                        "current_version": e["current_version"],
                                        "custom_metadata": e["custom_metadata"],
                                        "delete_version_after": "0s", "max_versions": 0,
                                        "oldest_version": min(e["versions"]) if e["versions"] else 0,
                                        "updated_time": e.get("updated_time", e["created_time"]),
                                        "versions": vers}
                if e is None:
                        self.errors(404)
                else:
                        self.send_json(200, envelope(data=data))

        def kv_update_metadata(self, path, req):
                st = self.server.state
                key = path.strip("/")
                now = rfc3339(time.time())
                cm = req.get("custom_metadata")
                with st.lock:
                        e = st.kv.get(key)
                        if e is None:
                                e = st.kv[key] = {"created_time": now, "versions": {},
                                                  "current_version": 0, "custom_metadata": None}
                        if isinstance(cm, dict):
                                e["custom_metadata"] = {str(k): str(v) for k, v in cm.items()}
                        e["updated_time"] = now
                self.send_json(204)

        # --- test control API ----------------------------------------------

        def control(self, op, body):
                st = self.server.state
                try:
                        req = json.loads(body) if body.strip() else {}
                        if not isinstance(req, dict):
                                raise ValueError
                except ValueError:
                        self.errors(400, "bad JSON")
                        return
                if op == "fault" and self.command == "POST":
                        mode = str(req.get("mode", "none"))
                        try:
                                count = int(req.get("count", -1))
                                delay = req.get("delay")
                                delay = float(delay) if delay is not None else None
                        except (TypeError, ValueError):
                                self.errors(400, "bad count or delay")
                                return
                        prefix = req.get("path_prefix")
                        if mode not in FAULT_MODES or (prefix is not None and not isinstance(prefix, str)):
                                self.errors(400, "unknown fault mode")
                                return
                        with st.lock:
                                st.set_fault({"mode": mode, "count": count, "delay": delay,
                                              "path_prefix": prefix or None})
                        sys.stderr.write("vault_server: fault mode=%s count=%d\n" % (mode, count))
                        self.send_json(200, {})
                elif op == "expire_token" and self.command == "POST":
                        with st.lock:
                                t = st.tokens.get(req.get("token"))
                                if t is not None:
                                        t["expire_at"] = time.time() - 1
                        if t is None:
                                self.errors(404, "unknown token")
                        else:
                                self.send_json(200, {})
                elif op == "stats" and self.command == "GET":
                        with st.lock:
                                out = {"requests": st.requests, "by_route": dict(st.by_route),
                                       "logins": st.logins, "login_failures": st.login_failures,
                                       "connections": st.connections}
                        self.send_json(200, out)
                elif op == "reset_stats" and self.command == "POST":
                        with st.lock:
                                st.reset_stats()
                        self.send_json(200, {})
                elif op == "preload" and self.command == "POST":
                        # Many KV v2 writes in one request (benchmarks with
                        # 100 000 keys): {"entries": {path: data}}, each
                        # written as a new version exactly like kv_write.
                        entries = req.get("entries")
                        if not isinstance(entries, dict) or not all(
                                        isinstance(d, dict) for d in entries.values()):
                                self.errors(400, "entries must map paths to data objects")
                                return
                        now = rfc3339(time.time())
                        with st.lock:
                                for path, data in entries.items():
                                        self.kv_new_version(path.strip("/"), data, now)
                        self.send_json(200, {"written": len(entries)})
                elif op == "kv" and self.command == "GET":
                        with st.lock:
                                paths = sorted(st.kv)
                        self.send_json(200, {"paths": paths})
                else:
                        self.errors(404, "unknown control endpoint")


class Server(TestHTTPServer):
        name = "vault_server"

        def __init__(self, addr, state):
                self._conn_ids = 0
                self._conn_lock = threading.Lock()
                super().__init__(addr, state, Handler)

        def next_conn_id(self):
                with self._conn_lock:
                        self._conn_ids += 1
                        return self._conn_ids

        def client_went_away(self, exc):
                sys.stderr.write("vault_server: connection error: %s\n" % type(exc).__name__)


def main(argv=None):
        ap = argparse.ArgumentParser(description="In-memory Vault test server")
        ap.add_argument("--port-file", required=True)
        ap.add_argument("--host", default="127.0.0.1")
        ap.add_argument("--port", type=int, default=0)
        ap.add_argument("--root-token", default="root")
        ap.add_argument("--approle", action="append", default=[])
        ap.add_argument("--token-ttl", type=int, default=3600)
        ap.add_argument("--kv-mount", default="secret")
        ap.add_argument("--namespace")
        ap.add_argument("--tls-cert")
        ap.add_argument("--tls-key")
        args = ap.parse_args(argv)
        if bool(args.tls_cert) != bool(args.tls_key):
                ap.error("--tls-cert and --tls-key go together")

        state = State(args)
        server = Server((args.host, args.port), state)
        if args.tls_cert:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.load_cert_chain(args.tls_cert, args.tls_key)
                server.socket = ctx.wrap_socket(server.socket, server_side=True,
                                                do_handshake_on_connect=False)

        def release():
                with state.lock:
                        state.release.set()
        sys.stderr.write("vault_server: listening on %s:%d (%s)\n" % (
                args.host, server.server_address[1], "https" if args.tls_cert else "http"))
        serve(server, args.port_file, release=release)
        sys.stderr.write("vault_server: stopped\n")
        return 0


if __name__ == "__main__":
        sys.exit(main())
