"""Key files a reader can trust (contract section 9): st_size equals what a
read returns (67 bytes with key_format evm, canonical form), a touch that
refetches a changed value moves the mtime, and a rotation seen by the mount
wakes inotify watchers (checked with the real inotifywait)."""
import datetime
import os
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
SRC = os.environ.get("TESTS_SOURCE_DIR", os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(SRC, "servers"))
from keyfslib import Mount, MountTestCase, metric, new_key, run  # noqa: E402
import vaultlib  # noqa: E402

KEY_MAX = 4096   # the most an any key may hold (backends/keyformat.h)

try:
    import hvac
except ImportError:   # run with Debian's /usr/bin/python3
    hvac = None


def fstat_read(path):
    """The common C reader: open, fstat, read(st_size) once."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        return size, os.read(fd, size)
    finally:
        os.close(fd)


class Watcher:
    """inotifywait -m on one file; events() returns what it printed."""

    def __init__(self, path, root):
        self.out_path = os.path.join(root, "inotify.out")
        self.out = open(self.out_path, "w")
        self.err_path = os.path.join(root, "inotify.err")
        self.err = open(self.err_path, "w")
        self.proc = subprocess.Popen(["inotifywait", "-m", "-e", "attrib,modify,close_write",
                                      "--format", "%e", path],
                                     stdout=self.out, stderr=self.err)
        deadline = time.monotonic() + 10
        while "Watches established" not in open(self.err_path).read():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError("inotifywait did not start: " + open(self.err_path).read())
            time.sleep(0.05)

    def events(self):
        with open(self.out_path) as f:
            return f.read().split()

    def wait_for(self, event, timeout=5):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if event in self.events():
                return True
            time.sleep(0.05)
        return False

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.out.close()
        self.err.close()


class FileBackendKeyFilesTest(MountTestCase):
    def test_stat_size_is_what_read_returns(self):
        key = new_key(prefix="")
        # written without 0x and in upper case: reads return the canonical form
        self.m.write_key("ethereum-mainnet", key.upper() + "\n")
        canonical = ("0x" + key.lower() + "\n").encode()
        self.assertEqual(os.stat(self.m.key_path("ethereum-mainnet")).st_size, 67)
        size, data = fstat_read(self.m.key_path("ethereum-mainnet"))
        self.assertEqual(size, 67)
        self.assertEqual(data, canonical)
        r = self.m.sh("wc -c < keys/ethereum-mainnet; ls -l keys/ethereum-mainnet")
        self.assertEqual(r.stdout.split()[0], "67")
        self.assertEqual(r.stdout.split()[5], "67")   # ls -l size column

    def test_touch_moves_mtime_only_when_the_value_changed(self):
        net = "base-mainnet"
        self.m.write_key(net, new_key() + "\n")
        m0 = os.stat(self.m.key_path(net)).st_mtime
        time.sleep(1.2)   # past the kernel's 1 s attribute cache
        r = self.m.sh(f"touch keys/{net}")
        self.assertEqual(r.returncode, 0, r.stderr)
        time.sleep(1.2)
        self.assertEqual(os.stat(self.m.key_path(net)).st_mtime, m0, "unchanged value moved mtime")
        # a key command rotates it (through the mount: the mtime moves then)
        key2 = new_key()
        r = self.m.cli("key", "import", "--network", net, "--key", key2)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.m.sh(f"touch keys/{net}")
        self.assertEqual(r.returncode, 0, r.stderr)
        time.sleep(1.2)
        m1 = os.stat(self.m.key_path(net)).st_mtime
        self.assertGreater(m1, m0)
        self.assertEqual(self.m.read_key(net), key2 + "\n")
        # the touch is audited as a refresh by the caller, the mount's own
        # rotation notice is not audited at all
        refresh = [a for a in self.m.audit_lines() if a.get("refresh")]
        self.assertEqual(len(refresh), 2)
        self.assertTrue(all(a["pid"] != self.m.proc.pid for a in self.m.audit_lines()))

    def test_inotify_wakes_on_rotation_through_a_key_command(self):
        """`key import` beside the mount stores through its control socket,
        which raises no VFS event: the mount's own notice wakes watchers."""
        if shutil.which("inotifywait") is None:
            self.skipTest("inotifywait (inotify-tools) not installed")
        net = "arbitrum-one"
        self.m.write_key(net, new_key() + "\n")
        w = Watcher(self.m.key_path(net), self.m.root)
        self.addCleanup(w.stop)
        # a read of the same value is no rotation: no event
        self.m.read_key(net)
        time.sleep(1)
        self.assertNotIn("ATTRIB", w.events())
        key2 = new_key()
        r = self.m.cli("key", "import", "--network", net, "--key", key2)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("through the running mount", r.stderr)
        self.assertTrue(w.wait_for("ATTRIB"), f"no IN_ATTRIB, events: {w.events()}")
        self.assertEqual(self.m.read_key(net), key2 + "\n")
        with open(self.m.app_log) as f:
            self.assertIn('"message":"key changed in the backend","network":"arbitrum-one"', f.read())


class OnChangeTest(unittest.TestCase):
    """keyfs.on_change runs PROGRAM NETWORK when the mount sees a rotation."""

    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="keyfs-onchange-")
        self.addCleanup(shutil.rmtree, self.root, True)
        self.out = os.path.join(self.root, "calls")
        self.script = os.path.join(self.root, "on-change")
        with open(self.script, "w") as f:
            f.write(f'#!/bin/sh\necho "$# $*" >> {self.out}\n')
        os.chmod(self.script, 0o755)
        self.m = Mount(keyfs_extra=f"  on_change: {self.script}\n")
        self.addCleanup(self.m.cleanup)
        self.m.start()

    def test_runs_with_the_network_name_only(self):
        key1, key2 = new_key(), new_key()
        self.m.write_key("linea", key1 + "\n")
        self.m.read_key("linea")
        time.sleep(0.5)
        self.assertFalse(os.path.exists(self.out), "ran without a rotation")
        r = self.m.cli("key", "import", "--network", "linea", "--key", key2)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.m.read_key("linea")
        deadline = time.monotonic() + 10
        while not os.path.exists(self.out) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        with open(self.out) as f:
            calls = f.read()
        self.assertEqual(calls, "1 linea\n")
        self.assertNotIn(key2[2:], calls)


class AnyFormatSizeTest(MountTestCase):
    mount_kwargs = {"key_format": "any"}

    def test_size_known_once_read_or_written(self):
        self.m.write_key("notes", "hello keyfs\n")
        self.assertEqual(os.stat(self.m.key_path("notes")).st_size, len("hello keyfs\n"))
        size, data = fstat_read(self.m.key_path("notes"))
        self.assertEqual((size, data), (12, b"hello keyfs\n"))


READER = os.environ.get("KEYFILE_READER", "")
NOBODY = 65534


def c_reader(mode, path, as_nobody=False):
    """The C reader (tests/integration/keyfile_reader.c): (signal, stdout, stderr)."""
    argv = [READER, mode, path]
    if as_nobody:
        argv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv]
    r = subprocess.run(argv, capture_output=True, timeout=30, cwd="/")
    return (-r.returncode if r.returncode < 0 else 0), r.stdout, r.stderr.decode()


@unittest.skipUnless(READER, "KEYFILE_READER not set: run through meson test")
class AnyFormatFreshMountReadersTest(unittest.TestCase):
    """key_format any on a fresh mount (the mount has neither read nor
    stored the key yet, so it does not know its size): an mmap reader that
    never calls fstat and an fstat+read(st_size) reader both get the whole
    key, never a SIGBUS; as root, and as another user through allow_other."""
    allow_other = True

    def setUp(self):
        extra = ["-o", "allow_other"] if self.allow_other else []
        rules = """
  access:
    - networks: ["*"]
      read: ["uid:0", "uid:65534"]
      write: ["uid:0"]
      list: ["uid:0", "uid:65534"]
""" if self.allow_other else ""
        self.m = Mount(key_format="any", extra_args=extra, keyfs_extra=rules)
        self.addCleanup(self.m.cleanup)
        os.chmod(self.m.root, 0o755)
        self.values = {}
        for user in ("root", "nobody") if self.allow_other else ("root",):
            for mode in ("mmap", "fstat"):
                self.values[(user, mode)] = "note " + secrets.token_hex(20)
        # the longest value an any key may hold: a read returns it and a newline
        self.values[("root", "max")] = secrets.token_hex(KEY_MAX // 2)
        for (user, mode), value in self.values.items():
            src = os.path.join(self.m.root, "value")
            with open(src, "w") as f:
                f.write(value)
            r = self.m.cli("key", "import", "--network", f"{user}-{mode}", "--file", src)
            self.assertEqual(r.returncode, 0, r.stderr)
            os.unlink(src)
        self.m.start()   # the key commands stored them: this mount has not seen them

    def test_readers_get_the_whole_key_without_sigbus(self):
        for (user, mode), value in self.values.items():
            if user == "nobody" and os.geteuid() != 0:
                continue
            want = (value + "\n").encode()
            with self.subTest(user=user, mode=mode):
                sig, out, err = c_reader("fstat" if mode == "max" else mode,
                                         self.m.key_path(f"{user}-{mode}"),
                                         as_nobody=user == "nobody")
                self.assertEqual(sig, 0, f"reader killed by signal {sig}: {err}")
                self.assertEqual(out, want, err)
        # now the mount knows each size: stat tells it exactly
        for (user, mode), value in self.values.items():
            if user == "nobody" and os.geteuid() != 0:
                continue
            st = os.stat(self.m.key_path(f"{user}-{mode}"))
            self.assertEqual(st.st_size, len(value) + 1, (user, mode))

    def test_unknown_size_is_the_most_a_read_can_return(self):
        st = os.stat(self.m.key_path("root-mmap"))
        self.assertEqual(st.st_size, KEY_MAX + 1)


@unittest.skipUnless(READER, "KEYFILE_READER not set: run through meson test")
class AnyFormatFreshMountReadersOwnerOnlyTest(AnyFormatFreshMountReadersTest):
    """The same without allow_other (kernel attribute cache on)."""
    allow_other = False


@unittest.skipUnless(READER, "KEYFILE_READER not set: run through meson test")
class EvmFreshMountReadersTest(MountTestCase):
    def test_evm_is_67_before_and_after_and_mmap_reads_it(self):
        key = new_key()
        self.m.stop()
        r = self.m.cli("key", "import", "--network", "sepolia", "--key", key)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.m.start()
        self.assertEqual(os.stat(self.m.key_path("sepolia")).st_size, 67)
        for mode in ("mmap", "fstat"):
            sig, out, err = c_reader(mode, self.m.key_path("sepolia"))
            self.assertEqual((sig, out), (0, (key + "\n").encode()), err)
        self.assertEqual(os.stat(self.m.key_path("sepolia")).st_size, 67)


class NoPhantomNamesTest(MountTestCase):
    """touch, mknod and open(O_CREAT|O_EXCL) then close without writing
    create nothing, and afterwards the name is gone at once: the kernel
    keeps no entry or attributes for it (the mount's caches are on here,
    without allow_other; the hostile suite checks the same with it)."""

    def assert_gone(self, name):
        path = self.m.key_path(name)
        self.assertFalse(os.path.exists(path), f"{name}: stat still finds it")
        self.assertFalse(os.access(path, os.F_OK), f"{name}: access still finds it")
        self.assertNotIn(name, os.listdir(self.m.path("keys")))
        with self.assertRaises(FileNotFoundError):
            open(path).close()
        # O_EXCL on the name again succeeds: no stale entry answers EEXIST
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        os.close(fd)
        self.assertFalse(os.path.exists(path))

    def test_touch(self):
        r = self.m.sh("touch keys/fresh && stat keys/fresh >/dev/null 2>&1; echo $?")
        self.assertEqual(r.stdout.strip(), "1", "stat right after touch found the name")
        self.assert_gone("fresh")
        # what touch(1) does, without a process start in between
        for i in range(20):
            path = self.m.key_path(f"fresh{i}")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOCTTY | os.O_NONBLOCK, 0o666)
            os.utime(fd)
            os.close(fd)
            self.assertFalse(os.path.exists(path), f"fresh{i}: stat right after close found it")

    def test_mknod(self):
        os.mknod(self.m.key_path("node"), 0o600 | stat.S_IFREG)
        self.assert_gone("node")

    def test_excl_create_then_close_without_writing(self):
        for i in range(20):
            path = self.m.key_path(f"excl{i}")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
            self.assertTrue(os.path.exists(path), "while open: being created")
            os.close(fd)
            self.assertFalse(os.path.exists(path), f"excl{i}: stat right after close found it")
        self.assert_gone("excl0")

    def test_a_stored_key_is_there_at_once(self):
        key = new_key()
        fd = os.open(self.m.key_path("real"), os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        os.write(fd, (key + "\n").encode())
        os.close(fd)
        self.assertTrue(os.path.exists(self.m.key_path("real")))
        self.assertIn("real", os.listdir(self.m.path("keys")))
        self.assertEqual(self.m.read_key("real"), key + "\n")
        self.assertEqual([a["network"] for a in self.m.audit_lines()
                          if a["network"] in ("fresh", "node", "excl")], [])


class VaultTouchTest(unittest.TestCase):
    """With a TTL cache in front of Vault, touch refetches and the mtime
    moves when hvac rotated the key behind the mount's back."""
    ttl = 300

    def setUp(self):
        if hvac is None:
            self.skipTest("hvac not importable: run with /usr/bin/python3")
        self.vs = vaultlib.VaultServer()
        self.addCleanup(self.vs.cleanup)
        self.vs.start()
        self.hv = hvac.Client(url=self.vs.url, token=self.vs.root_token)
        self.m = Mount(env={"VAULT_TOKEN": self.vs.root_token})
        self.addCleanup(self.m.cleanup)
        with open(self.m.config, "w") as f:
            f.write(f"""
key_storage:
  storage_type: vault
  vault:
    url: {self.vs.url}
    token: ${{VAULT_TOKEN}}
    cache_ttl_seconds: {self.ttl}
logging:
  targets: [{{type: file, path: {self.m.app_log}}}]
keyfs:
  audit_log: {self.m.audit_log}
""")
        self.m.start()

    def put(self, key):
        self.hv.secrets.kv.v2.create_or_update_secret(
            path="omikuji/keys/polygon", mount_point="secret", secret={"private_key": key})

    def test_touch_after_rotation(self):
        self.put(new_key())
        self.m.read_key("polygon")
        m0 = os.stat(self.m.key_path("polygon")).st_mtime
        key2 = new_key(prefix="")
        self.put(key2.upper())
        time.sleep(1.2)
        self.assertNotEqual(self.m.read_key("polygon"), "0x" + key2 + "\n")   # cached
        r = self.m.sh("touch keys/polygon")
        self.assertEqual(r.returncode, 0, r.stderr)
        time.sleep(1.2)
        self.assertGreater(os.stat(self.m.key_path("polygon")).st_mtime, m0)
        self.assertEqual(fstat_read(self.m.key_path("polygon")), (67, ("0x" + key2 + "\n").encode()))

    def test_key_age_from_vault_metadata(self):
        """omikuji_key_updated_timestamp_seconds is Vault's own created_time
        of the version read, so a rotation-overdue alert can use it."""
        self.put(new_key())
        self.m.read_key("polygon")
        meta = self.hv.secrets.kv.v2.read_secret_version(path="omikuji/keys/polygon",
                                                         mount_point="secret")["data"]["metadata"]
        created = datetime.datetime.fromisoformat(meta["created_time"].replace("Z", "+00:00")[:26] + "+00:00"
                                                  if "." in meta["created_time"] else
                                                  meta["created_time"].replace("Z", "+00:00"))
        value = metric(self.m.metrics(), "omikuji_key_updated_timestamp_seconds", network="polygon")
        self.assertAlmostEqual(value, created.timestamp(), delta=0.001)
        self.assertLess(abs(value - time.time()), 60)


class VaultRotationTest(VaultTouchTest):
    """hvac rotates the key in Vault; the mount's refetch after the TTL sees
    it: mtime, IN_ATTRIB for inotify watchers and on_change."""
    ttl = 1
    test_touch_after_rotation = None
    test_key_age_from_vault_metadata = None

    def test_inotify_on_refetch_after_ttl(self):
        if shutil.which("inotifywait") is None:
            self.skipTest("inotifywait (inotify-tools) not installed")
        self.put(new_key())
        self.m.read_key("polygon")
        m0 = os.stat(self.m.key_path("polygon")).st_mtime
        w = Watcher(self.m.key_path("polygon"), self.m.root)
        self.addCleanup(w.stop)
        time.sleep(1.2)
        self.m.read_key("polygon")   # refetched after the TTL, same value: no event
        time.sleep(0.5)
        self.assertEqual(w.events(), [])
        key2 = new_key()
        self.put(key2)
        time.sleep(1.2)
        self.assertEqual(self.m.read_key("polygon"), key2 + "\n")   # reads never raise ATTRIB
        self.assertTrue(w.wait_for("ATTRIB"), f"no IN_ATTRIB, events: {w.events()}")
        time.sleep(1.2)
        self.assertGreater(os.stat(self.m.key_path("polygon")).st_mtime, m0)


if __name__ == "__main__":
    run()
