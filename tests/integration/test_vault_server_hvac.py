#!/usr/bin/python3
"""Faithfulness test of tests/servers/vault_server.py: drive it with the real
`hvac` client (the judge of what a Vault looks like to a client) and check the
status codes, shapes and exceptions hvac sees, plus the /_test/ control API
(faults, stats, token expiry) the Vault backend tests rely on.

Run with /usr/bin/python3 (Debian's, which has hvac); exits 77 (skip) when hvac
is missing, non-zero on any failure.  Keys and tokens are random throwaways and
never appear in assertion messages (longMessage is off; comparisons that
involve them carry their own message).
"""

import datetime
import inspect
import os
import secrets
import sys
import threading
import unittest

try:
        import hvac
        import hvac.exceptions as hexc
        import requests
except ImportError as exc:
        print("SKIP: hvac/requests not importable (%s); run with Debian's /usr/bin/python3" % exc)
        sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.environ.get("TESTS_SOURCE_DIR", os.path.dirname(HERE)), "servers"))
import vaultlib  # noqa: E402
sys.path.insert(0, HERE)
import keyfslib  # noqa: E402,F401  (redacts key material from failure messages)

PREFIX = "omikuji/keys"


def read_kv(client, path, raise_on_deleted_version=True, version=None, mount_point="secret"):
        """read_secret_version with hvac >= 1.0's raise_on_deleted_version semantics.

        Debian 12's hvac 0.11 lacks the flag; there we apply upstream's rule
        ourselves: on InvalidPath, return the 404 body if it carries
        data.metadata.deletion_time != "", else re-raise."""
        kv = client.secrets.kv.v2
        if "raise_on_deleted_version" in inspect.signature(kv.read_secret_version).parameters:
                return kv.read_secret_version(path=path, version=version, mount_point=mount_point,
                                              raise_on_deleted_version=raise_on_deleted_version)
        try:
                return kv.read_secret_version(path=path, version=version, mount_point=mount_point)
        except hexc.InvalidPath:
                if raise_on_deleted_version:
                        raise
                params = {"version": version} if version is not None else {}
                url = hvac.utils.format_url("/v1/{m}/data/{p}", m=mount_point, p=path)
                resp = client.adapter.get(url=url, params=params, raise_exception=False)
                try:
                        body = resp.json()
                        if body["data"]["metadata"]["deletion_time"] != "":
                                return body
                except (ValueError, KeyError, TypeError):
                        pass
                raise


def key_record(network):
        return {"private_key": vaultlib.random_evm_key(), "network": network,
                "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                "created_by": "omikuji-keyfs-test"}


def unique(name):
        return "%s-%s" % (name, secrets.token_hex(4))


class VaultServerHvacTest(unittest.TestCase):
        longMessage = False
        TTL = 600

        @classmethod
        def setUpClass(cls):
                cls.role_id = "role-" + secrets.token_hex(6)
                cls.secret_id = secrets.token_hex(16)
                cls.vs = vaultlib.VaultServer(approles=[(cls.role_id, cls.secret_id)],
                                              token_ttl=cls.TTL)
                cls.vs.start()

        @classmethod
        def tearDownClass(cls):
                cls.vs.stop()
                if cls.vs.returncode != 0:
                        print("vault_server exit status %r" % cls.vs.returncode)
                        print(cls.vs.log_text())
                cls.vs.cleanup()

        def setUp(self):
                self.vs.clear_fault()

        def tearDown(self):
                self.vs.clear_fault()

        def client(self, token=None, **kw):
                return hvac.Client(url=self.vs.url,
                                   token=self.vs.root_token if token is None else token, **kw)

        def write(self, client, network, record=None):
                record = record or key_record(network)
                out = client.secrets.kv.v2.create_or_update_secret(
                        path="%s/%s" % (PREFIX, network), secret=record)
                return record, out

        # --- KV v2 -------------------------------------------------------------

        def test_kv_write_and_read_four_fields(self):
                c = self.client()
                net = unique("ethereum")
                rec, out = self.write(c, net)
                self.assertEqual(out["data"]["version"], 1)
                self.assertEqual(out["data"]["deletion_time"], "")
                self.assertFalse(out["data"]["destroyed"])
                got = read_kv(c, "%s/%s" % (PREFIX, net))
                self.assertTrue(got["data"]["data"] == rec, "read data differs from written data")
                self.assertEqual(sorted(got["data"]["data"]),
                                 ["created_at", "created_by", "network", "private_key"])
                meta = got["data"]["metadata"]
                self.assertEqual(meta["version"], 1)
                self.assertEqual(meta["deletion_time"], "")
                datetime.datetime.strptime(meta["created_time"], "%Y-%m-%dT%H:%M:%S.%fZ")
                # a second write makes version 2; version 1 stays readable
                rec2, out2 = self.write(c, net)
                self.assertEqual(out2["data"]["version"], 2)
                latest = read_kv(c, "%s/%s" % (PREFIX, net))
                self.assertTrue(latest["data"]["data"] == rec2, "latest is not version 2")
                old = read_kv(c, "%s/%s" % (PREFIX, net), version=1)
                self.assertTrue(old["data"]["data"] == rec, "version 1 changed")
                with self.assertRaises(hexc.InvalidPath):
                        read_kv(c, "%s/%s" % (PREFIX, net), version=7)

        def test_kv_check_and_set(self):
                c = self.client()
                path = "%s/%s" % (PREFIX, unique("cas"))
                c.secrets.kv.v2.create_or_update_secret(path=path, secret={"a": "1"}, cas=0)
                with self.assertRaises(hexc.InvalidRequest):
                        c.secrets.kv.v2.create_or_update_secret(path=path, secret={"a": "2"}, cas=0)
                out = c.secrets.kv.v2.create_or_update_secret(path=path, secret={"a": "3"}, cas=1)
                self.assertEqual(out["data"]["version"], 2)

        def test_kv_list_with_subfolder(self):
                c = self.client()
                base = unique("tree")
                for p in ("b", "a", "sub/c", "sub/deeper/d"):
                        c.secrets.kv.v2.create_or_update_secret(path="%s/%s" % (base, p), secret={"x": "1"})
                self.assertEqual(c.secrets.kv.v2.list_secrets(path=base)["data"]["keys"],
                                 ["a", "b", "sub/"])
                self.assertEqual(c.secrets.kv.v2.list_secrets(path=base + "/sub")["data"]["keys"],
                                 ["c", "deeper/"])
                top = c.secrets.kv.v2.list_secrets(path="")["data"]["keys"]
                self.assertIn(base + "/", top)
                with self.assertRaises(hexc.InvalidPath):
                        c.secrets.kv.v2.list_secrets(path=unique("nothing-here"))
                # GET ?list=true is the same operation (what clients without LIST send)
                r = requests.get("%s/v1/secret/metadata/%s" % (self.vs.url, base),
                                 params={"list": "true"},
                                 headers={"X-Vault-Token": self.vs.root_token})
                self.assertEqual(r.status_code, 200)
                self.assertEqual(r.json()["data"]["keys"], ["a", "b", "sub/"])

        def test_kv_delete_undelete_destroy(self):
                c = self.client()
                net = unique("polygon")
                path = "%s/%s" % (PREFIX, net)
                rec, _ = self.write(c, net)
                c.secrets.kv.v2.delete_latest_version_of_secret(path=path)
                with self.assertRaises(hexc.InvalidPath):
                        read_kv(c, path, raise_on_deleted_version=True)
                deleted = read_kv(c, path, raise_on_deleted_version=False)
                self.assertIsNone(deleted["data"]["data"])
                self.assertNotEqual(deleted["data"]["metadata"]["deletion_time"], "")
                self.assertEqual(deleted["data"]["metadata"]["version"], 1)
                # soft-deleted keys still list, as in Vault (the metadata exists)
                self.assertIn(net, c.secrets.kv.v2.list_secrets(path=PREFIX)["data"]["keys"])
                c.secrets.kv.v2.undelete_secret_versions(path=path, versions=[1])
                back = read_kv(c, path)
                self.assertTrue(back["data"]["data"] == rec, "undeleted data differs")
                # POST delete/<path> with explicit versions, then destroy
                c.secrets.kv.v2.delete_secret_versions(path=path, versions=[1])
                self.assertIsNone(read_kv(c, path, raise_on_deleted_version=False)["data"]["data"])
                c.secrets.kv.v2.destroy_secret_versions(path=path, versions=[1])
                gone = read_kv(c, path, raise_on_deleted_version=False)  # deleted, then destroyed
                self.assertIsNone(gone["data"]["data"])
                self.assertTrue(gone["data"]["metadata"]["destroyed"])
                c.secrets.kv.v2.undelete_secret_versions(path=path, versions=[1])
                with self.assertRaises(hexc.InvalidPath):
                        read_kv(c, path)                # destroyed stays destroyed
                # destroying a live version leaves deletion_time "": hvac raises even with False
                self.write(c, net)
                c.secrets.kv.v2.destroy_secret_versions(path=path, versions=[2])
                with self.assertRaises(hexc.InvalidPath):
                        read_kv(c, path, raise_on_deleted_version=False)
                meta = c.secrets.kv.v2.read_secret_metadata(path=path)["data"]
                self.assertEqual(meta["current_version"], 2)
                self.assertTrue(meta["versions"]["1"]["destroyed"])
                self.assertNotEqual(meta["versions"]["1"]["deletion_time"], "")
                self.assertTrue(meta["versions"]["2"]["destroyed"])
                self.assertEqual(meta["versions"]["2"]["deletion_time"], "")
                c.secrets.kv.v2.delete_metadata_and_all_versions(path=path)
                with self.assertRaises(hexc.InvalidPath):
                        read_kv(c, path, raise_on_deleted_version=False)
                with self.assertRaises(hexc.InvalidPath):
                        c.secrets.kv.v2.read_secret_metadata(path=path)
                try:
                        keys = c.secrets.kv.v2.list_secrets(path=PREFIX)["data"]["keys"]
                except hexc.InvalidPath:
                        keys = []
                self.assertNotIn(net, keys)

        def test_read_missing_is_invalid_path(self):
                c = self.client()
                with self.assertRaises(hexc.InvalidPath) as cm:
                        read_kv(c, "%s/%s" % (PREFIX, unique("absent")))
                self.assertEqual(cm.exception.errors, [])
                with self.assertRaises(hexc.InvalidPath):
                        read_kv(c, "%s/%s" % (PREFIX, unique("absent")), raise_on_deleted_version=False)

        def test_percent_encoded_segments_round_trip(self):
                c = self.client()
                net = "eth.main_net-" + secrets.token_hex(3)
                rec, _ = self.write(c, net)
                enc = net.replace(".", "%2E").replace("_", "%5F").replace("-", "%2D")
                hdr = {"X-Vault-Token": self.vs.root_token}
                r = requests.get("%s/v1/secret/data/omikuji%%2Fkeys/%s" % (self.vs.url, enc), headers=hdr)
                self.assertEqual(r.status_code, 200)
                self.assertTrue(r.json()["data"]["data"] == rec, "encoded read differs")
                net2 = "bsc_test.net-" + secrets.token_hex(3)
                enc2 = net2.replace(".", "%2e").replace("_", "%5f")
                r = requests.post("%s/v1/secret/data/%s/%s" % (self.vs.url, PREFIX, enc2), headers=hdr,
                                  json={"data": {"private_key": "k"}})
                self.assertEqual(r.status_code, 200)
                self.assertEqual(read_kv(c, "%s/%s" % (PREFIX, net2))["data"]["data"]["private_key"], "k")
                keys = c.secrets.kv.v2.list_secrets(path=PREFIX)["data"]["keys"]
                self.assertIn(net, keys)
                self.assertIn(net2, keys)
                routes = self.vs.stats()["by_route"]
                self.assertGreaterEqual(routes.get("GET /v1/secret/data/%s/%s" % (PREFIX, net), 0), 1)

        # --- auth: AppRole and tokens --------------------------------------------

        def test_approle_login_token_works(self):
                before = self.vs.stats()["logins"]
                c = self.client(token="")
                resp = c.auth.approle.login(role_id=self.role_id, secret_id=self.secret_id)
                auth = resp["auth"]
                self.assertTrue(c.token == auth["client_token"], "hvac did not adopt the token")
                self.assertEqual(auth["lease_duration"], self.TTL)
                self.assertTrue(auth["renewable"])
                self.assertEqual(auth["policies"], ["default"])
                self.assertEqual(auth["token_policies"], ["default"])
                self.assertEqual(auth["token_type"], "service")
                self.assertIn("role_name", auth["metadata"])
                self.assertTrue(c.is_authenticated())
                net = unique("arbitrum")
                rec, _ = self.write(self.client(), net)
                got = read_kv(c, "%s/%s" % (PREFIX, net))
                self.assertTrue(got["data"]["data"] == rec, "approle token read differs")
                self.assertEqual(self.vs.stats()["logins"], before + 1)

        def test_approle_bad_credentials(self):
                before = self.vs.stats()
                c = self.client(token="")
                with self.assertRaises(hexc.InvalidRequest) as cm:
                        c.auth.approle.login(role_id=self.role_id, secret_id="wrong-" + secrets.token_hex(4))
                self.assertEqual(cm.exception.errors, ["invalid role or secret ID"])
                with self.assertRaises(hexc.InvalidRequest):
                        c.auth.approle.login(role_id="no-such-role", secret_id=self.secret_id)
                self.assertFalse(c.token)
                after = self.vs.stats()
                self.assertEqual(after["logins"], before["logins"])
                self.assertEqual(after["login_failures"], before["login_failures"] + 2)

        def approle_client(self):
                c = self.client(token="")
                c.auth.approle.login(role_id=self.role_id, secret_id=self.secret_id)
                return c

        def test_token_lookup_self(self):
                c = self.approle_client()
                d = c.auth.token.lookup_self()["data"]
                self.assertTrue(d["id"] == c.token, "lookup-self id is not the token")
                self.assertTrue(0 < d["ttl"] <= self.TTL)
                self.assertEqual(d["creation_ttl"], self.TTL)
                self.assertTrue(d["renewable"])
                self.assertEqual(d["type"], "service")
                self.assertEqual(d["policies"], ["default"])
                exp = datetime.datetime.strptime(d["expire_time"], "%Y-%m-%dT%H:%M:%S.%fZ")
                issue = datetime.datetime.strptime(d["issue_time"], "%Y-%m-%dT%H:%M:%S.%fZ")
                self.assertEqual(round((exp - issue).total_seconds()), self.TTL)
                root = self.client().auth.token.lookup_self()["data"]
                self.assertIsNone(root["expire_time"])
                self.assertEqual(root["ttl"], 0)
                self.assertFalse(root["renewable"])
                self.assertEqual(root["policies"], ["root"])

        def test_token_renew_self(self):
                c = self.approle_client()
                first = c.auth.token.lookup_self()["data"]["expire_time"]
                out = c.auth.token.renew_self(increment="2h")
                self.assertEqual(out["auth"]["lease_duration"], 7200)
                self.assertTrue(out["auth"]["renewable"])
                self.assertTrue(out["auth"]["client_token"] == c.token, "renew changed token")
                d = c.auth.token.lookup_self()["data"]
                self.assertGreater(d["ttl"], self.TTL)
                self.assertGreater(d["expire_time"], first)
                out = c.auth.token.renew_self(increment=900)
                self.assertEqual(out["auth"]["lease_duration"], 900)
                out = c.auth.token.renew_self()
                self.assertEqual(out["auth"]["lease_duration"], self.TTL)
                self.assertLessEqual(c.auth.token.lookup_self()["data"]["ttl"], self.TTL)
                with self.assertRaises(hexc.InvalidRequest):
                        self.client().auth.token.renew_self()      # root: not renewable

        def test_expired_and_invalid_tokens_forbidden(self):
                c = self.approle_client()
                path = "%s/%s" % (PREFIX, unique("optimism"))
                self.client().secrets.kv.v2.create_or_update_secret(path=path, secret={"x": "1"})
                read_kv(c, path)
                self.vs.expire_token(c.token)
                with self.assertRaises(hexc.Forbidden) as cm:
                        read_kv(c, path)
                self.assertEqual(cm.exception.errors, ["permission denied"])
                with self.assertRaises(hexc.Forbidden):
                        c.auth.token.lookup_self()
                with self.assertRaises(hexc.Forbidden):
                        c.auth.token.renew_self()
                self.assertFalse(c.is_authenticated())
                with self.assertRaises(hexc.Forbidden):
                        read_kv(self.client(token=vaultlib.random_token()), path)
                with self.assertRaises(hexc.Forbidden):
                        read_kv(self.client(token=""), path)
                read_kv(self.client(), path)            # root is unaffected

        def test_revoke_self(self):
                c = self.approle_client()
                c.auth.token.revoke_self()
                self.assertFalse(c.is_authenticated())

        # --- sys/health -----------------------------------------------------------

        def test_health_active(self):
                c = self.client(token="")
                h = c.sys.read_health_status(method="GET")
                self.assertIsInstance(h, dict)       # hvac returns the JSON only for 200
                self.assertTrue(h["initialized"])
                self.assertFalse(h["sealed"])
                self.assertFalse(h["standby"])
                self.assertEqual(h["replication_dr_mode"], "disabled")
                for k in ("performance_standby", "replication_performance_mode",
                          "server_time_utc", "version", "cluster_name", "cluster_id"):
                        self.assertIn(k, h)
                head = c.sys.read_health_status(method="HEAD")
                self.assertEqual(head.status_code, 200)
                self.assertEqual(head.content, b"")
                self.assertFalse(c.sys.is_sealed())
                self.assertTrue(c.sys.is_initialized())

        def test_health_sealed(self):
                c = self.client()
                self.vs.fault("sealed")
                h = c.sys.read_health_status(method="GET")
                self.assertIsInstance(h, requests.Response)   # non-200: hvac hands back the response
                self.assertEqual(h.status_code, 503)
                self.assertTrue(h.json()["sealed"])
                self.assertEqual(c.sys.read_health_status(method="HEAD").status_code, 503)
                self.assertTrue(c.sys.is_sealed())
                self.assertTrue(c.sys.read_health_status(method="GET", sealed_code=200)["sealed"])
                with self.assertRaises(hexc.VaultDown) as cm:
                        read_kv(c, "%s/anything" % PREFIX)
                self.assertEqual(cm.exception.errors, ["Vault is sealed"])
                self.vs.clear_fault()
                self.assertFalse(c.sys.is_sealed())

        def test_health_standby(self):
                c = self.client()
                self.vs.fault("standby")
                h = c.sys.read_health_status(method="GET")
                self.assertEqual(h.status_code, 429)
                self.assertTrue(h.json()["standby"])
                ok = c.sys.read_health_status(method="GET", standby_ok=True)
                self.assertIsInstance(ok, dict)
                self.assertTrue(ok["standby"])
                self.assertEqual(c.sys.read_health_status(method="GET", standby_code=473).status_code, 473)
                with self.assertRaises(hexc.VaultDown):
                        read_kv(c, "%s/anything" % PREFIX)

        def test_health_uninitialized(self):
                c = self.client()
                self.vs.fault("uninit")
                h = c.sys.read_health_status(method="GET")
                self.assertEqual(h.status_code, 501)
                self.assertFalse(h.json()["initialized"])
                self.assertEqual(c.sys.read_health_status(method="GET", uninit_code=299).status_code, 299)

        # --- faults and stats -------------------------------------------------------

        def test_fault_codes_map_to_hvac_exceptions(self):
                c = self.client()
                path = "%s/%s" % (PREFIX, unique("fault"))
                c.secrets.kv.v2.create_or_update_secret(path=path, secret={"x": "1"})
                for mode, exc in (("500", hexc.InternalServerError), ("503", hexc.VaultDown),
                                  ("403", hexc.Forbidden), ("429", hexc.RateLimitExceeded)):
                        self.vs.fault(mode)
                        with self.assertRaises(exc, msg="fault %s" % mode):
                                read_kv(c, path)
                        with self.assertRaises(exc, msg="fault %s again" % mode):
                                read_kv(c, path)     # count -1: until cleared
                        self.vs.clear_fault()
                        read_kv(c, path)
                self.vs.fault("500")
                with self.assertRaises(hexc.InternalServerError) as cm:
                        read_kv(c, path)
                self.assertEqual(cm.exception.errors, ["internal error"])

        def test_fault_count(self):
                c = self.client()
                path = "%s/%s" % (PREFIX, unique("count"))
                c.secrets.kv.v2.create_or_update_secret(path=path, secret={"x": "1"})
                self.vs.reset_stats()
                self.vs.fault("500", count=2)
                for _ in range(2):
                        with self.assertRaises(hexc.InternalServerError):
                                read_kv(c, path)
                self.assertEqual(read_kv(c, path)["data"]["data"], {"x": "1"})
                self.assertEqual(read_kv(c, path)["data"]["data"], {"x": "1"})
                self.assertEqual(self.vs.route_count("GET", "/v1/secret/data/" + path), 4)

        def test_fault_path_prefix(self):
                c = self.client()
                path = "%s/%s" % (PREFIX, unique("prefix"))
                c.secrets.kv.v2.create_or_update_secret(path=path, secret={"x": "1"})
                self.vs.fault("503", path_prefix="/v1/secret/")
                self.assertIsInstance(c.sys.read_health_status(method="GET"), dict)
                c.auth.token.lookup_self()
                with self.assertRaises(hexc.VaultDown):
                        read_kv(c, path)

        def test_fault_close_and_slow(self):
                c = self.client()
                path = "%s/%s" % (PREFIX, unique("close"))
                c.secrets.kv.v2.create_or_update_secret(path=path, secret={"x": "1"})
                self.vs.fault("close", count=1)
                with self.assertRaises(requests.exceptions.ConnectionError):
                        read_kv(c, path)
                read_kv(c, path)
                self.vs.fault("slow", delay=0.2, count=1)
                self.assertEqual(read_kv(c, path)["data"]["data"], {"x": "1"})

        def test_fault_stall_holds_the_last_byte(self):
                # A large listing held with all but its last byte sent: hvac's
                # read does not end until the gate opens, then it gets the
                # whole answer.
                names = ["stall-%05d" % i for i in range(3000)]
                self.vs.preload({"%s/stall/%s" % (PREFIX, n): {"x": "1"} for n in names})
                self.vs.fault("stall", delay=60, path_prefix="/v1/secret/metadata/%s/stall" % PREFIX)
                box = {}

                def go():
                        box["r"] = self.client().secrets.kv.v2.list_secrets(path=PREFIX + "/stall")
                t = threading.Thread(target=go)
                t.start()
                t.join(1.0)
                held = t.is_alive()
                self.vs.clear_fault()
                t.join(30)
                self.assertTrue(held, "the stalled answer ended before its gate opened")
                self.assertEqual(box["r"]["data"]["keys"], names)
                # A timeout on the client sees the stall as an unfinished read.
                self.vs.fault("stall", delay=60, count=1)
                # (requests reports a read timeout in the body as a ConnectionError)
                with self.assertRaises((requests.exceptions.Timeout,
                                        requests.exceptions.ConnectionError)):
                        read_kv(self.client(timeout=1), "%s/stall/%s" % (PREFIX, names[0]))

        def test_fault_hang_times_out(self):
                path = "%s/%s" % (PREFIX, unique("hang"))
                self.client().secrets.kv.v2.create_or_update_secret(path=path, secret={"x": "1"})
                self.vs.fault("hang", delay=60, count=1)
                with self.assertRaises(requests.exceptions.Timeout):
                        read_kv(self.client(timeout=1), path)
                read_kv(self.client(), path)

        def test_stats_count_requests(self):
                c = self.client()
                path = "%s/%s" % (PREFIX, unique("stats"))
                c.secrets.kv.v2.create_or_update_secret(path=path, secret={"x": "1"})
                self.vs.reset_stats()
                for _ in range(3):
                        read_kv(c, path)
                c.secrets.kv.v2.list_secrets(path=PREFIX)
                c.sys.read_health_status(method="GET")
                s = self.vs.stats()
                self.assertEqual(s["requests"], 5)
                self.assertEqual(s["by_route"], {
                        "GET /v1/secret/data/" + path: 3,
                        "LIST /v1/secret/metadata/" + PREFIX: 1,
                        "GET /v1/sys/health": 1})
                self.vs.reset_stats()
                s = self.vs.stats()
                self.assertEqual((s["requests"], s["by_route"], s["logins"], s["connections"]),
                                 (0, {}, 0, 0))

        def test_keepalive_one_connection(self):
                path = "%s/%s" % (PREFIX, unique("keepalive"))
                self.client().secrets.kv.v2.create_or_update_secret(path=path, secret={"x": "1"})
                with requests.Session() as s:
                        self.vs.reset_stats()
                        hdr = {"X-Vault-Token": self.vs.root_token}
                        for _ in range(5):
                                r = s.get("%s/v1/secret/data/%s" % (self.vs.url, path), headers=hdr)
                                self.assertEqual(r.status_code, 200)
                        r = s.get("%s/v1/secret/data/%s/missing" % (self.vs.url, path), headers=hdr)
                        self.assertEqual(r.status_code, 404)
                        r = s.delete("%s/v1/secret/data/%s/missing" % (self.vs.url, path), headers=hdr)
                        self.assertEqual(r.status_code, 204)
                        r = s.head("%s/v1/sys/health" % self.vs.url)
                        self.assertEqual(r.status_code, 200)
                        r = s.get("%s/v1/secret/data/%s" % (self.vs.url, path), headers=hdr)
                        self.assertEqual(r.status_code, 200)
                        self.assertEqual(self.vs.stats()["connections"], 1)
                        # opened before a reset, used after it: counted once again
                        self.vs.reset_stats()
                        s.get("%s/v1/sys/health" % self.vs.url)
                        s.get("%s/v1/sys/health" % self.vs.url)
                        self.assertEqual(self.vs.stats()["connections"], 1)
                # hvac keeps its own session alive the same way
                c = self.client()
                self.vs.reset_stats()
                for _ in range(3):
                        read_kv(c, path)
                c.auth.token.lookup_self()
                c.sys.read_health_status(method="GET")
                c.secrets.kv.v2.create_or_update_secret(path=path, secret={"x": "2"})
                self.assertEqual(self.vs.stats()["connections"], 1)
                c.adapter.close()


class VaultServerNamespaceTest(unittest.TestCase):
        """--namespace and --kv-mount: a second server."""
        longMessage = False
        NS = "team-omikuji"

        @classmethod
        def setUpClass(cls):
                cls.role_id, cls.secret_id = "r-" + secrets.token_hex(4), secrets.token_hex(16)
                cls.vs = vaultlib.VaultServer(namespace=cls.NS, kv_mount="kv",
                                              approles=[(cls.role_id, cls.secret_id)])
                cls.vs.start()

        @classmethod
        def tearDownClass(cls):
                cls.vs.cleanup()

        def test_namespace_required(self):
                good = hvac.Client(url=self.vs.url, token=self.vs.root_token, namespace=self.NS)
                rec = key_record("gnosis")
                good.secrets.kv.v2.create_or_update_secret(path=PREFIX + "/gnosis", secret=rec,
                                                           mount_point="kv")
                got = read_kv(good, PREFIX + "/gnosis", mount_point="kv")
                self.assertTrue(got["data"]["data"] == rec, "namespaced read differs")
                self.assertEqual(good.secrets.kv.v2.list_secrets(path=PREFIX, mount_point="kv")
                                 ["data"]["keys"], ["gnosis"])
                for ns in (None, "other-team"):
                        bad = hvac.Client(url=self.vs.url, token=self.vs.root_token, namespace=ns)
                        # real Vault: no such mount in that namespace -> 404
                        with self.assertRaises(hexc.InvalidPath, msg="namespace %r" % ns):
                                read_kv(bad, PREFIX + "/gnosis", mount_point="kv")
                # health needs no namespace
                self.assertIsInstance(hvac.Client(url=self.vs.url).sys.read_health_status(method="GET"), dict)
                # the default mount does not exist here
                with self.assertRaises(hexc.InvalidPath):
                        read_kv(good, PREFIX + "/gnosis")

        def test_approle_login_needs_namespace(self):
                c = hvac.Client(url=self.vs.url, namespace=self.NS)
                c.auth.approle.login(role_id=self.role_id, secret_id=self.secret_id)
                self.assertTrue(c.is_authenticated())
                with self.assertRaises(hexc.InvalidPath):
                        hvac.Client(url=self.vs.url).auth.approle.login(role_id=self.role_id,
                                                                        secret_id=self.secret_id)


class VaultServerTlsTest(unittest.TestCase):
        """--tls-cert/--tls-key: hvac verifies against the throwaway CA."""
        longMessage = False

        @classmethod
        def setUpClass(cls):
                cls.vs = vaultlib.VaultServer(tls=True)
                cls.vs.start()

        @classmethod
        def tearDownClass(cls):
                cls.vs.cleanup()

        def test_tls_round_trip_and_verification(self):
                self.assertTrue(self.vs.url.startswith("https://127.0.0.1:"))
                c = hvac.Client(url=self.vs.url, token=self.vs.root_token, verify=self.vs.ca_file)
                c.secrets.kv.v2.create_or_update_secret(path=PREFIX + "/tls", secret={"x": "1"})
                self.assertEqual(read_kv(c, PREFIX + "/tls")["data"]["data"], {"x": "1"})
                untrusted = hvac.Client(url=self.vs.url, token=self.vs.root_token)
                with self.assertRaises(requests.exceptions.SSLError):
                        read_kv(untrusted, PREFIX + "/tls")
                # the failed handshake does not take the server down
                self.assertEqual(read_kv(c, PREFIX + "/tls")["data"]["data"], {"x": "1"})


class VaultServerLifecycleTest(unittest.TestCase):
        """SIGTERM ends the server cleanly even with idle and hung connections."""

        def test_sigterm_with_open_connections(self):
                import threading
                vs = vaultlib.VaultServer()
                vs.start()
                try:
                        with open(vs.port_file) as f:
                                self.assertEqual(int(f.read()), vs.port)
                        idle = requests.Session()
                        idle.get(vs.url + "/v1/sys/health")
                        vs.fault("hang")                  # default: hold for an hour
                        errors = []

                        def hung():
                                try:
                                        requests.get(vs.url + "/v1/sys/health", timeout=60)
                                except requests.exceptions.RequestException as exc:
                                        errors.append(exc)
                        t = threading.Thread(target=hung, daemon=True)
                        t.start()
                        while vs.stats()["requests"] < 2:       # the hung request has arrived
                                t.join(0.05)
                        vs.stop()
                        self.assertEqual(vs.returncode, 0)      # not SIGKILLed after the grace period
                        t.join(30)
                        self.assertFalse(t.is_alive())
                        self.assertEqual(len(errors), 1)        # dropped, never answered
                        idle.close()
                        self.assertIn("stopped", vs.log_text())
                finally:
                        vs.cleanup()


def main():
        suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
        result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
        failed = len(result.failures) + len(result.errors)
        skipped = len(result.skipped)
        passed = result.testsRun - failed - skipped
        print("%d passed, %d failed, %d skipped" % (passed, failed, skipped))
        if result.testsRun == 0:
                return 1
        return 1 if failed or not result.wasSuccessful() else 0


if __name__ == "__main__":
        sys.exit(main())
