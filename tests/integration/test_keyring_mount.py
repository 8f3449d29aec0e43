"""The keyring backend through a real mount, against a real gnome-keyring-daemon
on a private D-Bus session bus (dbus-run-session with a config that has no
service activation, so only the daemon this test starts serves the Secret
Service).  The other side is read and written with the real clients:
secret-tool (libsecret), python secretstorage and python keyring."""
import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from keyfslib import KEYFS_BIN, Mount, is_mounted, metric, new_key, run  # noqa: E402
import keyringlib  # noqa: E402

SRC = os.environ.get("TESTS_SOURCE_DIR", os.path.join(os.path.dirname(__file__), ".."))

PY = "/usr/bin/python3"

try:
    import secretstorage
except ImportError:   # run with Debian's /usr/bin/python3
    secretstorage = None


def reexec_on_private_bus():
    """Run this file again inside dbus-run-session with keyringlib's bus."""
    if os.environ.get("KEYFS_KEYRING_TEST_BUS"):
        return
    tool = keyringlib.missing_tool()
    if tool:
        print(f"SKIP: {tool} not installed")
        sys.exit(77)
    d = tempfile.mkdtemp(prefix="keyfs-bus-")
    conf = keyringlib.write_bus_config(d)
    env = dict(os.environ, KEYFS_KEYRING_TEST_BUS="1")
    rc = subprocess.call(["dbus-run-session", "--config-file", conf, "--",
                          sys.executable, os.path.abspath(__file__)], env=env)
    shutil.rmtree(d, ignore_errors=True)
    sys.exit(rc)


def default_collection(conn, within=5):
    """The collection the default alias names, never a new one.
    secretstorage.get_default_collection creates a collection when the
    alias does not resolve, and with no prompter that fails as "Prompt
    dismissed".  Seen once on a loaded CI machine, after the start-up
    check had seen the alias settle: the alias briefly named a collection
    object that did not exist yet.  So retry the lookup for a while."""
    deadline = time.monotonic() + within
    while True:
        try:
            return secretstorage.Collection(conn)   # the "default" alias
        except secretstorage.exceptions.ItemNotFoundException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def keyring_config(m, timeout=3, service="omikuji", ttl=300):
    return f"""
key_storage:
  storage_type: keyring
  keyring:
    service: {service}
    timeout_seconds: {timeout}
    cache_ttl_seconds: {ttl}
{m.logging_and_audit_yaml()}  list_cache_seconds: 0
"""


def wait_health(test, m, first_line, contains=None, within=8):
    """Poll health/keyring of mount m until its first line is first_line
    (and it holds `contains`); its text, or test fails."""
    deadline = time.monotonic() + within
    text = ""
    while time.monotonic() < deadline:
        with open(m.path("health", "keyring")) as f:
            text = f.read()
        if text.split("\n", 1)[0] == first_line and (contains is None or contains in text):
            return text
        time.sleep(0.1)
    test.fail(f"health never became {first_line!r} with {contains!r}: {text}")


class KeyringCase(unittest.TestCase):
    timeout = 3   # seconds; generous for loaded CI machines and sanitizer builds

    def setUp(self):
        if secretstorage is None:
            self.skipTest("secretstorage not importable: run with /usr/bin/python3")
        self.root = tempfile.mkdtemp(prefix="keyfs-keyring-")
        self.addCleanup(shutil.rmtree, self.root, True)
        self.kd = keyringlib.KeyringDaemon(self.root)
        self.addCleanup(self.kd.stop)
        self.kd.start()
        self.m = Mount(root=os.path.join(self.root, "m"), env=self.kd.env)
        self.addCleanup(self.m.cleanup)   # runs first (last registered)
        with open(self.m.config, "w") as f:
            f.write(keyring_config(self.m, timeout=self.timeout))
        self.m.start()

    # -- the other side -------------------------------------------------------

    def tool(self, *argv, input=None):
        return subprocess.run(list(argv), input=input, capture_output=True, text=True,
                              env=self.kd.env, timeout=30)

    def secret_tool_store(self, network, key, service="omikuji"):
        r = self.tool("secret-tool", "store", "--label=from secret-tool", "service", service,
                      "username", network, input=key)
        self.assertEqual(r.returncode, 0, r.stderr)

    def secret_tool_lookup(self, network):
        return self.tool("secret-tool", "lookup", "service", "omikuji", "username", network)

    def store_like_keyring_rs(self, network, key, service="omikuji"):
        """An item exactly as keyring-rs 3.6.2 writes it (Entry::new)."""
        conn = secretstorage.dbus_init()
        try:
            c = default_collection(conn)
            c.create_item(f"{network}@{service}:default (keyring v3.6.2)",
                          {"service": service, "username": network, "target": "default",
                           "application": "rust-keyring"},
                          key.encode(), replace=True, content_type="text/plain")
        finally:
            conn.close()

    def store_legacy(self, network, key, collection=None):
        """A second item beside any other (keyring v1's shape: no target),
        in the default collection or the one at path `collection`."""
        conn = secretstorage.dbus_init()
        try:
            c = (secretstorage.Collection(conn, collection) if collection
                 else default_collection(conn))
            c.create_item("legacy", {"service": "omikuji", "username": network}, key.encode(),
                          replace=False)
        finally:
            conn.close()

    def items(self, network, service="omikuji"):
        """[(collection path, label, attributes, secret)] of the matches."""
        conn = secretstorage.dbus_init()
        try:
            out = []
            for it in secretstorage.search_items(conn, {"service": service, "username": network}):
                out.append((it.item_path.rsplit("/", 1)[0], it.get_label(), it.get_attributes(),
                            it.get_secret().decode()))
            return out
        finally:
            conn.close()

    def default_collection_path(self):
        conn = secretstorage.dbus_init()
        try:
            return default_collection(conn).collection_path
        finally:
            conn.close()

    def lock_collection(self):
        conn = secretstorage.dbus_init()
        try:
            default_collection(conn).lock()
        finally:
            conn.close()

    PY_KEYRING = ("import keyring, sys\n"
                  "from keyring.backends import SecretService\n"
                  "keyring.set_keyring(SecretService.Keyring())\n")

    def python_keyring_get(self, network):
        code = self.PY_KEYRING + ("v = keyring.get_password('omikuji', sys.argv[1])\n"
                                  "sys.stdout.write('' if v is None else v)\n")
        r = self.tool(PY, "-c", code, network)
        self.assertEqual(r.returncode, 0, r.stderr[-300:])
        return r.stdout

    def python_keyring_set(self, network, key):
        code = self.PY_KEYRING + "keyring.set_password('omikuji', sys.argv[1], sys.stdin.read())\n"
        r = self.tool(PY, "-c", code, network, input=key)
        self.assertEqual(r.returncode, 0, r.stderr[-300:])

    # -- the mount ------------------------------------------------------------------

    def health(self):
        with open(self.m.path("health", "keyring")) as f:
            return f.read()

    def wait_health(self, first_line, contains=None, within=8):
        return wait_health(self, self.m, first_line, contains, within)

    def second_config(self, path):
        """This mount's config with its own audit and application logs (one
        writer per audit log), for a second daemon beside self.m."""
        with open(self.m.config) as f:
            text = f.read()
        d = os.path.dirname(path)
        os.makedirs(d, exist_ok=True)
        text = text.replace(self.m.audit_log, os.path.join(d, "audit2.log"))
        text = text.replace(self.m.app_log, os.path.join(d, "app2.log"))
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o600)
        return path

    def read_errno(self, network):
        try:
            self.m.read_key(network)
        except OSError as e:
            return e.errno
        return 0


class TestKeyringLayout(KeyringCase):
    def test_reads_items_from_secret_tool_and_keyring_rs(self):
        k1, k2, k3 = new_key(), new_key(), new_key()
        self.secret_tool_store("net-tool", k1)
        self.store_like_keyring_rs("net-rs", k2)
        self.python_keyring_set("net-py", k3)
        self.assertEqual(self.m.read_key("net-tool"), k1 + "\n")
        self.assertEqual(self.m.read_key("net-rs"), k2 + "\n")
        self.assertEqual(self.m.read_key("net-py"), k3 + "\n")
        self.assertEqual(self.read_errno("net-none"), errno.ENOENT)
        m = self.m.metrics()
        self.assertEqual(metric(m, "omikuji_key_operations_total", operation="get",
                                backend="keyring", status="success"), 3)
        # net-none is not in the listing: its lookup fails before any get
        self.assertEqual(metric(m, "omikuji_key_cache_misses_total", backend="keyring"), 3)
        self.m.read_key("net-rs")
        m = self.m.metrics()
        self.assertEqual(metric(m, "omikuji_key_cache_hits_total", backend="keyring"), 1)
        self.assertEqual(metric(m, "omikuji_key_backend_up", backend="keyring"), 1)
        audit = [a for a in self.m.audit_lines() if a["operation"] == "get"]
        self.assertEqual([a["storage_type"] for a in audit], ["keyring"] * 4)

    def test_write_is_omikujis_layout_and_python_keyring_reads_it(self):
        key = new_key()
        self.m.write_key("ethereum-mainnet", key + "\n")
        r = self.secret_tool_lookup("ethereum-mainnet")
        self.assertEqual((r.returncode, r.stdout), (0, key))
        items = self.items("ethereum-mainnet")
        self.assertEqual(len(items), 1)
        coll, label, attrs, secret = items[0]
        # gnome-keyring shows its default schema once it has reloaded the
        # keyring file (timing-dependent); it is not ours and matches nothing
        if attrs.get("xdg:schema") == "org.freedesktop.Secret.Generic":
            del attrs["xdg:schema"]
        self.assertEqual(coll, self.default_collection_path().replace("aliases/default", "collection/login"))
        self.assertEqual(label, "ethereum-mainnet@omikuji:default (keyring v3.6.2)")
        self.assertEqual(attrs, {"service": "omikuji", "username": "ethereum-mainnet",
                                 "target": "default", "application": "rust-keyring"})
        self.assertEqual(secret, key)
        self.assertEqual(self.python_keyring_get("ethereum-mainnet"), key)

    def test_read_prefers_omikujis_item(self):
        """Two items for one network (a legacy one without target, and
        keyring-rs's): the mount reads what Omikuji reads, whatever the order."""
        legacy, omikuji = new_key(), new_key()
        session = "/org/freedesktop/secrets/collection/session"
        nets = []
        # The service's search order is its own: add pairs (in both orders,
        # in one or two collections) until it lists a legacy item first.
        for i in range(40):
            net = "net-%d" % i
            nets.append(net)
            where = session if i % 4 >= 2 else None
            if i % 2:
                self.store_legacy(net, legacy, where)
            self.store_like_keyring_rs(net, omikuji)
            if not i % 2:
                self.store_legacy(net, legacy, where)
            if self.items(net)[0][3] == legacy:   # SearchItems' order
                break
        else:
            self.fail("the service never lists the legacy item first")
        for net in nets:
            self.assertEqual(len(self.items(net)), 2)
            self.assertEqual(self.m.read_key(net), omikuji + "\n")

    def test_concurrent_reads_of_many_networks(self):
        """16 threads read 32 never-read networks at once: every caller gets
        its own key (requests queue to the one D-Bus worker)."""
        keys = {"net-c%02d" % i: new_key() for i in range(32)}
        conn = secretstorage.dbus_init()
        try:
            c = default_collection(conn)
            for net, key in keys.items():
                c.create_item(net, {"service": "omikuji", "username": net}, key.encode())
        finally:
            conn.close()
        nets = sorted(keys)
        results, errors = {}, []

        def reader(part):
            for net in part:
                try:
                    results[net] = self.m.read_key(net)
                except OSError as e:
                    errors.append((net, e.errno))

        threads = [threading.Thread(target=reader, args=(nets[i::16],)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(errors, [])
        self.assertEqual(results, {net: key + "\n" for net, key in keys.items()})

    def test_non_utf8_secret_is_eio(self):
        conn = secretstorage.dbus_init()
        try:
            default_collection(conn).create_item(
                "binary", {"service": "omikuji", "username": "net-bin"}, b"\xff\xfe\x00\x01")
        finally:
            conn.close()
        self.assertEqual(self.read_errno("net-bin"), errno.EIO)
        errors = [a.get("error", "") for a in self.m.audit_lines() if a["network"] == "net-bin"]
        self.assertEqual(errors, ["keyring: the keyring item's secret is not UTF-8 text"])

    def test_overwrite_keeps_one_item(self):
        old, new = new_key(), new_key()
        self.secret_tool_store("net-a", old)          # no target, other label
        self.store_like_keyring_rs("net-a", old)       # a second, keyring-rs shaped
        self.assertEqual(len(self.items("net-a")), 2)
        self.m.write_key("net-a", new + "\n")
        items = self.items("net-a")
        self.assertEqual(len(items), 1, [i[:3] for i in items])
        self.assertEqual(items[0][3], new)
        newer = new_key()
        self.m.write_key("net-a", newer + "\n")
        items = self.items("net-a")
        self.assertEqual([i[3] for i in items], [newer])
        self.assertEqual(self.m.read_key("net-a"), newer + "\n")

    def test_ls_lists_only_the_service_and_rm_deletes(self):
        self.secret_tool_store("net-1", new_key())
        self.store_like_keyring_rs("net-2", new_key())
        self.secret_tool_store("net-other", new_key(), service="not-omikuji")
        self.assertEqual(sorted(os.listdir(self.m.path("keys"))), ["net-1", "net-2"])
        os.unlink(self.m.key_path("net-1"))
        self.assertEqual(self.items("net-1"), [])
        self.assertEqual(self.secret_tool_lookup("net-1").returncode, 1)
        self.assertEqual(self.read_errno("net-1"), errno.ENOENT)
        with self.assertRaises(FileNotFoundError):
            os.unlink(self.m.key_path("net-1"))
        self.assertEqual(os.listdir(self.m.path("keys")), ["net-2"])
        self.assertEqual(len(self.items("net-other", service="not-omikuji")), 1)
        ops = [(a["operation"], a["network"], a["status"]) for a in self.m.audit_lines()
               if a["operation"] == "remove"]
        self.assertEqual(ops[0], ("remove", "net-1", True))

    def test_key_commands_beside_the_mount(self):
        key = new_key()
        r = self.m.cli("key", "import", "--network", "net-cli", input=key + "\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.secret_tool_lookup("net-cli").stdout, key)
        self.secret_tool_store("net-tool", new_key())
        r = self.m.cli("key", "list")
        self.assertEqual((r.returncode, r.stdout.split()), (0, ["net-cli", "net-tool"]), r.stderr)
        self.assertEqual(self.m.read_key("net-cli"), key + "\n")

    def test_health_names_bus_and_collection(self):
        text = self.wait_health("up")
        self.assertIn("backend: keyring", text)
        self.assertIn("bus: " + os.environ["DBUS_SESSION_BUS_ADDRESS"], text)
        self.assertIn("collection: /org/freedesktop/secrets/collection/login", text)
        self.assertIn("collection_locked: no", text)
        self.assertIn("service: omikuji", text)


class TestKeyringFailures(KeyringCase):
    def test_daemon_killed_and_restarted(self):
        k1, k2 = new_key(), new_key()
        self.store_like_keyring_rs("net-1", k1)
        self.store_like_keyring_rs("net-2", k2)
        self.assertEqual(self.m.read_key("net-1"), k1 + "\n")
        self.wait_health("up")
        self.kd.stop()
        self.wait_health("down", "no Secret Service on the session bus")
        t0 = time.monotonic()
        self.assertEqual(self.read_errno("net-2"), errno.EIO)
        self.assertLess(time.monotonic() - t0, self.timeout + 1)
        self.assertEqual(self.m.read_key("net-1"), k1 + "\n")   # cached
        self.kd.start()
        self.wait_health("up")
        self.assertEqual(self.m.read_key("net-2"), k2 + "\n")
        k3 = new_key()
        self.m.write_key("net-3", k3 + "\n")
        self.assertEqual(self.secret_tool_lookup("net-3").stdout, k3)
        self.assertEqual(metric(self.m.metrics(), "omikuji_key_backend_up", backend="keyring"), 1)

    def test_daemon_restarted_between_reads_recovers_at_once(self):
        """The second daemon does not know our session: the read that finds
        out reconnects and succeeds within its own deadline."""
        k1, k2 = new_key(), new_key()
        self.store_like_keyring_rs("net-1", k1)
        self.store_like_keyring_rs("net-2", k2)
        self.assertEqual(self.m.read_key("net-1"), k1 + "\n")
        self.kd.stop()
        self.kd.start()
        self.assertEqual(self.m.read_key("net-2"), k2 + "\n")

    def test_hung_daemon_reads_end_at_the_deadline(self):
        key = new_key()
        self.store_like_keyring_rs("net-1", key)
        self.wait_health("up")
        os.kill(self.kd.proc.pid, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            e = self.read_errno("net-1")
            took = time.monotonic() - t0
            self.assertIn(e, (errno.EIO, errno.ETIMEDOUT))
            # two calls, each within its deadline: the lookup's listing, the read
            self.assertLess(took, 2 * self.timeout + 1.5)
            # metrics and health never wait on the backend
            t0 = time.monotonic()
            self.health()
            self.m.metrics()
            self.assertLess(time.monotonic() - t0, 1.0)
            self.wait_health("down", "no answer")
        finally:
            os.kill(self.kd.proc.pid, signal.SIGCONT)
        self.wait_health("up")
        self.assertEqual(self.m.read_key("net-1"), key + "\n")

    def test_locked_collection_is_eacces_and_never_prompts(self):
        key, cached = new_key(), new_key()
        self.store_like_keyring_rs("net-1", key)
        self.store_like_keyring_rs("net-0", cached)
        self.assertEqual(self.m.read_key("net-0"), cached + "\n")
        self.wait_health("up")
        self.lock_collection()
        t0 = time.monotonic()
        self.assertEqual(self.read_errno("net-1"), errno.EACCES)
        with self.assertRaises(PermissionError):
            self.m.write_key("net-2", new_key() + "\n")
        # the backend's listing fails; ls keeps the last listing it had
        self.assertEqual(sorted(os.listdir(self.m.path("keys"))), ["net-0", "net-1"])
        with self.assertRaises(PermissionError):
            os.unlink(self.m.key_path("net-0"))
        self.assertLess(time.monotonic() - t0, self.timeout)   # four calls, none waited out
        # read before the lock: served from the cache for its TTL
        self.assertEqual(self.m.read_key("net-0"), cached + "\n")
        text = self.wait_health("down", "collection_locked: yes")
        self.assertIn("last_error: keyring: collection locked", text)
        self.assertEqual(metric(self.m.metrics(), "omikuji_key_backend_up", backend="keyring"), 0)
        errors = [a.get("error", "") for a in self.m.audit_lines() if not a["status"]]
        self.assertTrue(any("collection locked" in e for e in errors), errors)
        # nothing was written while locked; unlocking (a restart with the
        # password) brings it all back
        self.kd.stop()
        self.kd.start()
        self.assertEqual(self.items("net-2"), [])
        self.wait_health("up")
        self.assertEqual(self.m.read_key("net-1"), key + "\n")

    def test_background_daemon_serves(self):
        """Without -f: GLib's threads start after the fork, in the child."""
        key = new_key()
        self.store_like_keyring_rs("net-bg", key)
        mnt = os.path.join(self.root, "bg")
        os.makedirs(mnt)
        conf = self.second_config(os.path.join(self.root, "bg-conf", "omikuji.yaml"))
        r = subprocess.run([KEYFS_BIN, "mount", "-c", conf, mnt], capture_output=True,
                           text=True, env=self.m.env, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        try:
            self.assertTrue(is_mounted(mnt))
            with open(os.path.join(mnt, "keys", "net-bg")) as f:
                self.assertEqual(f.read(), key + "\n")
            with open(os.path.join(mnt, "keys", "net-bg2"), "w") as f:
                f.write(key + "\n")
            self.assertEqual(self.secret_tool_lookup("net-bg2").stdout, key)
            # the keyring worker and GDBus's thread never take stop signals
            pid = int(subprocess.run(["pgrep", "-f", "-n", "omikuji-keyfs mount -c " + conf],
                                     capture_output=True, text=True).stdout.split()[0])
            stop = (1 << (signal.SIGTERM - 1)) | (1 << (signal.SIGINT - 1))
            names = []
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/status") as f:
                    st = dict(line.split(":", 1) for line in f if ":" in line)
                names.append(st["Name"].strip())
                if int(tid) != pid:
                    self.assertEqual(int(st["SigBlk"], 16) & stop, stop, st["Name"])
            self.assertIn("gdbus", names)
        finally:
            subprocess.run(["fusermount3", "-u", mnt], capture_output=True)


class TestBusRestart(unittest.TestCase):
    """The session bus itself goes away and comes back at the same address
    (as systemd --user's bus does): the mount stays up, reports it, and uses
    the new bus without a restart."""

    def test_bus_restart(self):
        if secretstorage is None:
            self.skipTest("secretstorage not importable: run with /usr/bin/python3")
        root = tempfile.mkdtemp(prefix="keyfs-busrestart-")
        self.addCleanup(shutil.rmtree, root, True)
        bus = keyringlib.SessionBus(os.path.join(root, "bus"))
        self.addCleanup(bus.stop)
        bus.start()
        kd = keyringlib.KeyringDaemon(os.path.join(root, "kd"), bus.address)
        self.addCleanup(kd.stop)
        kd.start()
        m = Mount(root=os.path.join(root, "m"), env=kd.env)
        self.addCleanup(m.cleanup)
        with open(m.config, "w") as f:
            f.write(keyring_config(m))
        k1, k2 = new_key(), new_key()
        for net, key in (("net-1", k1), ("net-2", k2)):
            r = kd.secret_tool("store", "--label=x", "service", "omikuji", "username", net,
                               input=key)
            self.assertEqual(r.returncode, 0, r.stderr)
        m.start()
        self.assertEqual(m.read_key("net-1"), k1 + "\n")
        kd.stop()
        bus.stop(remove=False)
        wait_health(self, m, "down")
        self.assertTrue(is_mounted(m.mnt))
        bus.start()
        kd.start()
        wait_health(self, m, "up")
        self.assertEqual(m.read_key("net-2"), k2 + "\n")


class TestUserUnit(KeyringCase):
    """The shipped systemd --user unit verifies, and its command line (with
    %t and %E as the user manager expands them) serves keyring keys."""
    UNIT = os.path.join(SRC, "..", "examples", "systemd", "omikuji-keyfs-keyring.service")

    def unit_text(self):
        with open(self.UNIT) as f:
            return f.read().replace("/usr/local/bin/omikuji-keyfs", os.path.abspath(KEYFS_BIN))

    def test_unit_verifies(self):
        if shutil.which("systemd-analyze") is None:
            self.skipTest("systemd-analyze not installed")
        path = os.path.join(self.root, "omikuji-keyfs-keyring.service")
        with open(path, "w") as f:
            f.write(self.unit_text())
        r = subprocess.run(["systemd-analyze", "--user", "verify", "--man=no", path],
                           capture_output=True, text=True, env=self.kd.env, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(r.stderr.strip(), "")

    def test_unit_command_serves(self):
        runtime, confdir = os.path.join(self.root, "t"), os.path.join(self.root, "E")
        self.second_config(os.path.join(confdir, "omikuji", "omikuji.yaml"))
        lines = {}
        for line in self.unit_text().splitlines():
            k, sep, v = line.partition("=")
            if sep and k in ("ExecStartPre", "ExecStart", "ExecStopPost"):
                lines[k] = v.replace("%t", runtime).replace("%E", confdir).lstrip("-").split()
        mnt = os.path.join(runtime, "omikuji-keys")
        key = new_key()
        self.store_like_keyring_rs("net-unit", key)
        subprocess.run(lines["ExecStartPre"], check=True)
        # Type=notify: the user manager's notification socket
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(notify.close)
        notify.bind(os.path.join(self.root, "notify"))
        notify.settimeout(10)
        env = dict(self.m.env, NOTIFY_SOCKET=os.path.join(self.root, "notify"))
        proc = subprocess.Popen(lines["ExecStart"], env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            self.assertIn(b"READY=1", notify.recv(4096))
            self.assertTrue(is_mounted(mnt))
            with open(os.path.join(mnt, "keys", "net-unit")) as f:
                self.assertEqual(f.read(), key + "\n")
        finally:
            subprocess.run(lines["ExecStopPost"], capture_output=True)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.assertEqual(proc.returncode, 0)


class TestNoSessionBus(unittest.TestCase):
    """No bus at all (a system service): the mount comes up, health says
    what to do, key operations fail with EIO, the CLI with one line."""

    def test_no_bus(self):
        root = tempfile.mkdtemp(prefix="keyfs-nobus-")
        self.addCleanup(shutil.rmtree, root, True)
        runtime = os.path.join(root, "run")
        os.makedirs(runtime)
        env = {"XDG_RUNTIME_DIR": runtime}
        m = Mount(root=os.path.join(root, "m"), env=env)
        m.env.pop("DBUS_SESSION_BUS_ADDRESS", None)
        self.addCleanup(m.cleanup)
        with open(m.config, "w") as f:
            f.write(keyring_config(m))
        m.start()
        text = wait_health(self, m, "down", "no D-Bus session bus")
        self.assertIn("systemctl --user", text)
        self.assertIn("DBUS_SESSION_BUS_ADDRESS", text)
        self.assertIn("bus: none\ncollection: unknown\ncollection_locked: unknown\n", text)
        with self.assertRaises(OSError) as cm:
            m.read_key("net-1")
        self.assertEqual(cm.exception.errno, errno.EIO)
        r = m.cli("key", "list")
        self.assertEqual(r.returncode, 1)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        self.assertIn("no D-Bus session bus", r.stderr)


def mapped_libraries(pid):
    """The base names of the shared objects mapped by process pid."""
    with open(f"/proc/{pid}/maps") as f:
        return {os.path.basename(line.split()[5]) for line in f if len(line.split()) > 5}


KEYRING_STACK = ("libsecret-1", "libgio-2.0", "libgobject-2.0", "libglib-2.0")


class TestKeyringModuleLoaded(KeyringCase):
    def test_keyring_mount_maps_the_module(self):
        key = new_key()
        self.m.write_key("net-mod", key)
        self.assertEqual(self.m.read_key("net-mod"), key + "\n")
        libs = mapped_libraries(self.m.proc.pid)
        self.assertIn("omikuji-keyfs-keyring.so", libs)
        self.assertTrue([x for x in libs if x.startswith("libsecret-1")], libs)


class TestKeyringModule(unittest.TestCase):
    """The Secret Service half of the backend is a module loaded only when a
    keyring instance is opened (issue 15, goal 3)."""

    def test_mount_without_keyring_maps_no_keyring_library(self):
        m = Mount()
        self.addCleanup(m.cleanup)
        m.start()
        key = new_key()
        m.write_key("net-1", key)
        self.assertEqual(m.read_key("net-1"), key + "\n")
        libs = mapped_libraries(m.proc.pid)
        self.assertTrue([x for x in libs if x.startswith("libcurl.so")], libs)   # it sees libraries
        for lib in KEYRING_STACK:
            self.assertFalse([x for x in libs if x.startswith(lib)], lib)
        self.assertNotIn("omikuji-keyfs-keyring.so", libs)

    def test_missing_module_is_one_line_naming_it(self):
        """A daemon whose module cannot be found (the binary alone in another
        directory): a keyring config fails with one line; --help and a
        file-backend `key` command still work."""
        root = tempfile.mkdtemp(prefix="keyfs-nomod-")
        self.addCleanup(shutil.rmtree, root, True)
        lone = os.path.join(root, "omikuji-keyfs")
        shutil.copy(KEYFS_BIN, lone)
        r = subprocess.run([lone, "--help"], capture_output=True, text=True, timeout=30,
                           env={k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("key ", r.stdout)
        m = Mount(root=os.path.join(root, "m"))
        self.addCleanup(m.cleanup)
        # meson test points LD_LIBRARY_PATH at the build directory (the
        # module's): dlopen would look there too
        env = dict(m.env)
        env.pop("LD_LIBRARY_PATH", None)
        key = new_key()
        r = subprocess.run([lone, "key", "import", "--network", "net-f", "-c", m.config], input=key + "\n",
                           capture_output=True, text=True, env=env, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = subprocess.run([lone, "key", "list", "-c", m.config], capture_output=True,
                           text=True, env=env, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("net-f", r.stdout)
        with open(m.config, "w") as f:
            f.write(keyring_config(m))
        r = subprocess.run([lone, "key", "list", "-c", m.config], capture_output=True,
                           text=True, env=env, timeout=30)
        self.assertNotEqual(r.returncode, 0)
        lines = r.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertIn("omikuji-keyfs-keyring.so", lines[0])
        self.assertIn("libsecret-1", lines[0])
        self.assertIn("cannot open shared object file", lines[0])


if __name__ == "__main__":
    reexec_on_private_bus()
    run()
