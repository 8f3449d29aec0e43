"""The vault backend through a real mount, against the Vault test server
(itself proven faithful by test_vault_server_hvac.py), with keys written and
read by the real hvac client on the other side; and the TTL cache's
behaviour (issue: caching and observability) counted in server requests."""
import errno
import os
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
SRC = os.environ.get("TESTS_SOURCE_DIR", os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(SRC, "servers"))
from keyfslib import Mount, metric, new_key, run, wait_listed  # noqa: E402
import vaultlib  # noqa: E402

try:
    import hvac
    import hvac.exceptions
except ImportError:   # run with Debian's /usr/bin/python3
    hvac = None

PREFIX = "omikuji/keys"


def vault_config(m, vs, urls=None, auth="token", ttl=300, timeout=2, retries=2, extra="",
                 keyfs_extra=""):
    urls = urls or [vs.url]
    url_lines = "\n".join(f"      - {u}" for u in urls)
    auth_lines = ("    token: ${VAULT_TOKEN}\n" if auth == "token" else
                  "    role_id: ${ROLE_ID}\n    secret_id: ${SECRET_ID}\n")
    return f"""
key_storage:
  storage_type: vault
  vault:
    urls:
{url_lines}
    mount_path: secret
    path_prefix: {PREFIX}
    auth_method: {auth}
{auth_lines}    timeout_seconds: {timeout}
    max_retries: {retries}
    cache_ttl_seconds: {ttl}
{extra}
{m.logging_and_audit_yaml()}  list_cache_seconds: 1
  max_stale_seconds: 3600
{keyfs_extra}
"""


class VaultMountCase(unittest.TestCase):
    ttl = 300
    auth = "token"
    namespace = None
    extra = ""

    def setUp(self):
        if hvac is None:
            self.skipTest("hvac not importable: run with /usr/bin/python3")
        self.role = ("role-" + os.urandom(4).hex(), "sid-" + os.urandom(8).hex())
        self.vs = vaultlib.VaultServer(approles=[self.role], namespace=self.namespace)
        self.addCleanup(self.vs.cleanup)
        self.vs.start()
        self.hv = hvac.Client(url=self.vs.url, token=self.vs.root_token, namespace=self.namespace)
        self.m = Mount(env={"VAULT_TOKEN": self.vs.root_token, "ROLE_ID": self.role[0],
                            "SECRET_ID": self.role[1]})
        self.addCleanup(self.m.cleanup)   # runs first (last registered)
        self.write_config()
        self.before_start()
        self.m.started_after = time.monotonic()
        self.m.start()
        self.m.started_after = time.monotonic() - self.m.started_after

    def before_start(self):
        """Set up the server before the daemon starts (a subclass's hook)."""

    def write_config(self, **kw):
        kw.setdefault("ttl", self.ttl)
        kw.setdefault("auth", self.auth)
        extra = self.extra + (f"    namespace: {self.namespace}\n" if self.namespace else "")
        kw.setdefault("extra", extra)
        with open(self.m.config, "w") as f:
            f.write(vault_config(self.m, self.vs, **kw))


    def hv_put(self, network, key):
        self.hv.secrets.kv.v2.create_or_update_secret(
            path=f"{PREFIX}/{network}", mount_point="secret",
            secret={"private_key": key, "network": network, "created_at": "2026-01-01T00:00:00Z",
                    "created_by": "hvac-test"})

    def hv_get(self, network):
        r = self.hv.secrets.kv.v2.read_secret_version(path=f"{PREFIX}/{network}",
                                                       mount_point="secret")
        return r["data"]["data"]

    def assert_roundtrip(self, network):
        """A key hvac wrote reads through the mount; a key written through
        the mount reads back with hvac."""
        key = new_key()
        self.hv_put(network, key)
        self.assertEqual(self.m.read_key(network), key + "\n")
        key2 = new_key()
        self.m.write_key(network, key2 + "\n")
        self.assertEqual(self.hv_get(network)["private_key"], key2)

    def gets(self, network):
        return self.vs.route_count("GET", f"/v1/secret/data/{PREFIX}/{network}")


class VaultKeysTest(VaultMountCase):
    def test_read_key_written_by_hvac(self):
        key = new_key()
        self.hv_put("ethereum-mainnet", key)
        self.assertEqual(self.m.read_key("ethereum-mainnet"), key + "\n")

    def test_fallback_fields(self):
        k1, k2 = new_key(), new_key()
        self.hv.secrets.kv.v2.create_or_update_secret(path=f"{PREFIX}/a", mount_point="secret",
                                                       secret={"key": k1})
        self.hv.secrets.kv.v2.create_or_update_secret(path=f"{PREFIX}/b", mount_point="secret",
                                                       secret={"value": k2})
        self.assertEqual(self.m.read_key("a"), k1 + "\n")
        self.assertEqual(self.m.read_key("b"), k2 + "\n")

    def test_write_through_mount_read_by_hvac(self):
        key = new_key()
        r = self.m.sh(f"echo {key} > keys/base-mainnet")
        self.assertEqual(r.returncode, 0, r.stderr)
        data = self.hv_get("base-mainnet")
        self.assertEqual(data["private_key"], key)
        self.assertEqual(data["network"], "base-mainnet")
        self.assertRegex(data["created_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")
        self.assertTrue(data["created_by"])
        # invalid writes never reach Vault
        before = self.vs.route_count("POST", f"/v1/secret/data/{PREFIX}/base-mainnet")
        r = self.m.sh("echo nonsense > keys/base-mainnet")
        self.assertNotEqual(r.returncode, 0)
        self.assertEqual(before, self.vs.route_count("POST", f"/v1/secret/data/{PREFIX}/base-mainnet"))
        self.assertEqual(self.hv_get("base-mainnet")["private_key"], key)

    def test_rm_and_ls(self):
        for n in ("eth", "base", "polygon"):
            self.hv_put(n, new_key())
        self.hv.secrets.kv.v2.create_or_update_secret(path=f"{PREFIX}/sub/deeper", mount_point="secret",
                                                       secret={"private_key": new_key()})
        self.assertEqual(sorted(os.listdir(self.m.path("keys"))), ["base", "eth", "polygon"])
        r = self.m.sh("rm keys/eth")
        self.assertEqual(r.returncode, 0, r.stderr)
        with self.assertRaises(hvac.exceptions.InvalidPath):
            self.hv_get("eth")
        with self.assertRaises(FileNotFoundError):
            open(self.m.key_path("eth"))
        # Vault keeps the removed key's metadata; a fresh listing (past the
        # listing cache) must still not show it
        time.sleep(1.2)
        self.assertEqual(sorted(os.listdir(self.m.path("keys"))), ["base", "polygon"])
        self.hv.secrets.kv.v2.delete_latest_version_of_secret(path=f"{PREFIX}/base", mount_point="secret")
        time.sleep(1.2)
        self.assertEqual(sorted(os.listdir(self.m.path("keys"))), ["polygon"])

    def test_soft_deleted_is_not_found(self):
        self.hv_put("eth", new_key())
        self.m.read_key("eth")
        self.hv.secrets.kv.v2.delete_latest_version_of_secret(path=f"{PREFIX}/eth", mount_point="secret")
        r = self.m.sh("touch keys/eth; cat keys/eth")
        self.assertNotEqual(r.returncode, 0)

    def test_403_is_eacces_and_counted(self):
        self.hv_put("eth", new_key())
        self.vs.fault("403", path_prefix="/v1/secret/")
        with self.assertRaises(PermissionError):
            self.m.read_key("eth")
        m = self.m.metrics()
        self.assertGreaterEqual(metric(m, "omikuji_key_backend_auth_failures_total", backend="vault"), 1)
        self.assertGreaterEqual(metric(m, "omikuji_key_operations_total", operation="get",
                                       backend="vault", status="failure"), 1)

    def test_repeated_500_bounded_retries_then_eio(self):
        self.hv_put("eth", new_key())
        self.vs.reset_stats()
        self.vs.fault("500", path_prefix="/v1/secret/")
        with self.assertRaises(OSError) as cm:
            self.m.read_key("eth")
        self.assertEqual(cm.exception.errno, errno.EIO)
        self.assertEqual(self.gets("eth"), 1 + 2, "1 try + max_retries 2")
        self.vs.clear_fault()
        self.assertTrue(self.m.read_key("eth").startswith("0x"))

    def test_hanging_server_times_out_while_monitoring_stays_up(self):
        self.hv_put("eth", new_key())
        self.vs.fault("hang", delay=60, path_prefix="/v1/secret/")
        result = {}

        def reader():
            t0 = time.monotonic()
            try:
                self.m.read_key("eth")
                result["ok"] = True
            except OSError as e:
                result["errno"] = e.errno
            result["elapsed"] = time.monotonic() - t0

        t = threading.Thread(target=reader)
        t.start()
        time.sleep(0.3)
        # meanwhile, the mount's own files answer
        for _ in range(5):
            os.stat(self.m.mnt)
            os.statvfs(self.m.mnt)
            os.listdir(self.m.mnt)
            with open(self.m.path("metrics")) as f:
                self.assertIn("omikuji_key_backend_up", f.read())
            with open(self.m.path("health", "vault")) as f:
                self.assertIn(f.readline().strip(), ("up", "down"))
            time.sleep(0.1)
        self.assertTrue(t.is_alive(), "the read should still be waiting on the hung server")
        t.join(30)
        self.assertFalse(t.is_alive())
        self.assertNotIn("ok", result)
        self.assertIn(result["errno"], (errno.ETIMEDOUT, errno.EIO))
        self.assertLess(result["elapsed"], 2 + 5, "timeout_seconds 2 plus a margin")
        self.vs.clear_fault()

    def test_cli_against_vault(self):
        key = new_key()
        r = self.m.cli("key", "import", "--network", "arbitrum", "--key", key)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.hv_get("arbitrum")["private_key"], key)
        r = self.m.cli("key", "list")
        self.assertIn("arbitrum", r.stdout.split())
        r = self.m.cli("key", "export", "--network", "arbitrum", "--yes")
        self.assertEqual(r.stdout, key + "\n")
        r = self.m.cli("key", "remove", "--network", "arbitrum", "--yes")
        self.assertEqual(r.returncode, 0, r.stderr)
        with self.assertRaises(hvac.exceptions.InvalidPath):
            self.hv_get("arbitrum")
        for out in (r.stdout, r.stderr):
            self.assertNotIn(self.vs.root_token, out)

    def test_token_from_the_environment_is_wiped_once_used(self):
        # ${VAULT_TOKEN} was expanded into the config; once the backend holds
        # its copy, the daemon wipes the variable (and the config's copy).
        key = new_key()
        self.hv_put("eth", key)
        self.assertEqual(self.m.read_key("eth"), key + "\n")
        with open(f"/proc/{self.m.proc.pid}/environ", "rb") as f:
            environ = f.read()
        self.assertIn(b"VAULT_TOKEN=", environ)   # the name stays, its value is gone
        self.assertNotIn(self.vs.root_token.encode(), environ)

    def test_cli_remove_through_the_mount_drops_the_cached_key(self):
        # Contract section 9: a key command beside a mount acts through it,
        # so a removed (compromised) key is not served from the cache.
        key = new_key()
        r = self.m.cli("key", "import", "--network", "base", "--key", key)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("through the running mount", r.stderr)
        self.assertEqual(self.m.read_key("base"), key + "\n")   # cached now (TTL 300 s)
        r = self.m.cli("key", "remove", "--network", "base", "--yes")
        self.assertEqual(r.returncode, 0, r.stderr)
        with self.assertRaises(FileNotFoundError):
            self.m.read_key("base")
        with self.assertRaises(hvac.exceptions.InvalidPath):
            self.hv_get("base")
        lines = self.m.audit_lines()
        removes = [l for l in lines if l["operation"] == "remove" and "intent" not in l]
        self.assertEqual(removes[-1]["process"], "omikuji-keyfs")
        self.assertEqual(removes[-1]["uid"], os.getuid())
        m = self.m.metrics()
        self.assertEqual(metric(m, "omikuji_key_operations_total", operation="remove",
                                backend="vault", status="success"), 1)

    def test_health_file(self):
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with open(self.m.path("health", "vault")) as f:
                text = f.read()
            if text.startswith("up"):
                break
            time.sleep(0.2)
        lines = text.splitlines()
        self.assertEqual(lines[0], "up")
        fields = dict(l.split(": ", 1) for l in lines[1:])
        self.assertEqual(fields["backend"], "vault")
        self.assertEqual(fields["address"], self.vs.url)
        self.assertEqual(fields["vault_status"], "active")
        self.assertIn("token_expires", fields)
        self.assertNotIn(self.vs.root_token, text)


class VaultSlowFirstHealthTest(VaultMountCase):
    """The README's first screen: health/<backend> reads "up" as soon as the
    mount is there.  The mount waits up to 1 s for the first health checks
    before it reports ready; here the first sys/health answer takes 0.4 s, so
    a mount that did not wait would show "down" (checked_at: never)."""

    def before_start(self):
        self.vs.fault("slow", count=1, delay=0.4, path_prefix="/v1/sys/health")

    def test_health_is_up_when_the_mount_is_ready(self):
        with open(self.m.path("health", "vault")) as f:
            lines = f.read().splitlines()
        fields = dict(l.split(": ", 1) for l in lines[1:])
        self.assertEqual(lines[0], "up", fields)
        self.assertNotEqual(fields["checked_at"], "never")
        self.assertGreaterEqual(self.vs.route_count("GET", "/v1/sys/health"), 1)


class VaultHungFirstHealthTest(VaultMountCase):
    """A backend whose health check hangs delays the mount by at most the 1 s
    wait, not by the check's timeout (10 s here), and the mount then says so
    honestly: down, never checked, while keys still read."""

    def before_start(self):
        self.vs.fault("hang", delay=30, path_prefix="/v1/sys/health")

    def write_config(self, **kw):
        kw.setdefault("timeout", 10)
        super().write_config(**kw)

    def test_mount_does_not_wait_for_a_hung_check(self):
        self.assertLess(self.m.started_after, 8, "the 10 s check timeout was waited for")
        with open(self.m.path("health", "vault")) as f:
            lines = f.read().splitlines()
        fields = dict(l.split(": ", 1) for l in lines[1:])
        self.assertEqual(lines[0], "down")
        self.assertEqual(fields["checked_at"], "never")
        key = new_key()
        self.hv_put("eth", key)
        self.assertEqual(self.m.read_key("eth"), key + "\n")
        self.vs.clear_fault()


class VaultAppRoleTest(VaultMountCase):
    auth = "approle"

    def test_approle_login_and_relogin(self):
        key = new_key()
        self.hv_put("eth", key)
        self.assertEqual(self.m.read_key("eth"), key + "\n")
        self.assertGreaterEqual(self.vs.stats()["logins"], 1)


class VaultNamespaceTest(VaultMountCase):
    namespace = "team-a"

    def test_namespace_header(self):
        self.assert_roundtrip("eth")


class VaultFailoverTest(VaultMountCase):
    def setUp(self):
        super().setUp()
        self.m.stop()
        # first URL: a closed port on loopback
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            dead = f"http://127.0.0.1:{s.getsockname()[1]}"
        self.write_config(urls=[dead, self.vs.url])
        self.m.start()

    def test_first_url_down_fails_over(self):
        self.assert_roundtrip("eth")


class VaultCacheTest(VaultMountCase):
    ttl = 2

    def test_ttl_counts_backend_requests(self):
        key = new_key()
        self.hv_put("eth", key)
        self.vs.reset_stats()
        self.assertEqual(self.m.read_key("eth"), key + "\n")
        self.assertEqual(self.gets("eth"), 1)
        for _ in range(10):
            self.assertEqual(self.m.read_key("eth"), key + "\n")
        self.assertEqual(self.gets("eth"), 1, "reads within the TTL must not reach Vault")
        m = self.m.metrics()
        self.assertEqual(metric(m, "omikuji_key_cache_hits_total", backend="vault"), 10)
        self.assertEqual(metric(m, "omikuji_key_cache_misses_total", backend="vault"), 1)
        self.assertEqual(metric(m, "omikuji_key_cache_size", backend="vault"), 1)
        time.sleep(2.3)
        self.assertEqual(self.m.read_key("eth"), key + "\n")
        self.assertEqual(self.gets("eth"), 2, "after the TTL: exactly one more request")
        # touch forces a refetch at once
        subprocess.run(["touch", self.m.key_path("eth")], check=True)
        self.assertEqual(self.gets("eth"), 3)

    def test_rotation_reaches_readers(self):
        k1, k2 = new_key(), new_key()
        self.hv_put("eth", k1)
        self.assertEqual(self.m.read_key("eth"), k1 + "\n")
        mtime1 = os.stat(self.m.key_path("eth")).st_mtime
        self.hv_put("eth", k2)      # rotated behind our back
        time.sleep(2.3)
        self.assertEqual(self.m.read_key("eth"), k2 + "\n")
        time.sleep(1.1)             # the kernel's attribute cache
        self.assertGreater(os.stat(self.m.key_path("eth")).st_mtime, mtime1)

    def test_backend_down_serves_cached_and_recovers(self):
        k1 = new_key()
        self.hv_put("cached", k1)
        self.hv_put("uncached", new_key())
        self.assertEqual(self.m.read_key("cached"), k1 + "\n")
        os.listdir(self.m.path("keys"))
        self.vs.fault("503")
        time.sleep(2.3)   # past the TTL: the entry is stale now
        self.assertEqual(self.m.read_key("cached"), k1 + "\n", "stale-if-error")
        with self.assertRaises(OSError):
            self.m.read_key("uncached")
        deadline = time.monotonic() + 3   # health_interval_seconds 1, plus margin
        while time.monotonic() < deadline:
            with open(self.m.path("health", "vault")) as f:
                down = f.readline().strip() == "down"
            if down and metric(self.m.metrics(), "omikuji_key_backend_up", backend="vault") == 0:
                break
            time.sleep(0.2)
        else:
            self.fail("health/vault and omikuji_key_backend_up never reported down")
        m = self.m.metrics()
        self.assertGreaterEqual(metric(m, "omikuji_key_cache_stale_hits_total", backend="vault"), 1)
        self.vs.clear_fault()
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            with open(self.m.path("health", "vault")) as f:
                up = f.readline().strip() == "up"
            if up and metric(self.m.metrics(), "omikuji_key_backend_up", backend="vault") == 1:
                break
            time.sleep(0.2)
        else:
            self.fail("health/vault never recovered")
        self.m.read_key("uncached")

    def test_concurrent_cold_reads_make_one_request(self):
        key = new_key()
        self.hv_put("eth", key)
        # The mount's listing knows eth before the fault: a lookup answered
        # from it never waits on Vault (under ASan a listing refresh could
        # take longer than a lookup's 1 s deadline, and that reader then got
        # ENOENT before reaching open).
        self.assertTrue(wait_listed(self.m, "eth"), "eth never listed")
        self.vs.reset_stats()
        # The first fetch is held at the server until every reader is inside
        # its open(2) (seen in /proc), then released: no timing window.
        self.vs.fault("slow", delay=60, count=1, path_prefix=f"/v1/secret/data/{PREFIX}/eth")
        results, tids = [], []

        def reader():
            tids.append(threading.get_native_id())
            try:
                results.append(self.m.read_key("eth"))
            except OSError as e:
                results.append(e)

        threads = [threading.Thread(target=reader) for _ in range(32)]
        for t in threads:
            t.start()

        def in_open(tid):
            try:
                with open(f"/proc/self/task/{tid}/syscall") as f:
                    return f.read().split()[0] == "257"   # openat
            except (OSError, IndexError):
                return False

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
                len(tids) == 32 and all(in_open(t) for t in list(tids))
                and self.gets("eth") == 1):
            time.sleep(0.01)
        self.assertEqual(self.gets("eth"), 1)
        self.assertTrue(all(in_open(t) for t in tids),
                        "readers not all waiting in open (finished early: %s)"
                        % [type(r).__name__ if isinstance(r, Exception) else "a key" for r in results])
        self.vs.clear_fault()   # releases the held request
        for t in threads:
            t.join()
        self.assertEqual(results, [key + "\n"] * 32)
        self.assertEqual(self.gets("eth"), 1, "single-flight: one backend call")


class VaultFlappingTest(VaultMountCase):
    ttl = 1

    def test_threads_while_the_backend_flaps(self):
        """8 threads read and list while Vault fails and recovers: every read
        gives a key that was stored or a clean EIO, the daemon stays up."""
        keys = {f"net{i}": new_key() for i in range(6)}
        for n, k in keys.items():
            self.hv_put(n, k)
        stop = time.monotonic() + 6
        bad = []

        def reader(seed):
            import random
            rnd = random.Random(seed)
            while time.monotonic() < stop:
                n = rnd.choice(list(keys))
                try:
                    if rnd.random() < 0.1:
                        os.listdir(self.m.path("keys"))
                    elif self.m.read_key(n) != keys[n] + "\n":
                        bad.append(f"{n}: wrong content")
                except OSError as e:
                    # every key exists: ENOENT would be a lie about it
                    if e.errno not in (errno.EIO, errno.ETIMEDOUT):
                        bad.append(f"{n}: {errno.errorcode.get(e.errno, e.errno)}")

        threads = [threading.Thread(target=reader, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        while time.monotonic() < stop:
            self.vs.fault("503")
            time.sleep(0.7)
            self.vs.clear_fault()
            time.sleep(0.7)
        for t in threads:
            t.join(30)
        self.assertEqual(bad[:5], [])
        self.vs.clear_fault()
        for n, k in keys.items():
            self.assertEqual(self.m.read_key(n), k + "\n")
        self.assertIsNone(self.m.proc.poll(), "the daemon must survive a flapping backend")


if __name__ == "__main__":
    run()
