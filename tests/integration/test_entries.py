"""The kernel's entry cache on a low-level mount (issue 15, branch s4-ll):
names are cached, and the mount drops a cached name the moment it stops
existing or changes.  The FUSE debug stream (-d) shows what the kernel asks:
a LOOKUP of keys/ (nodeid 2) per path walk when nothing is cached, none while
a positive entry is."""
import os
import re
import stat
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
SRC = os.environ.get("TESTS_SOURCE_DIR", os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(SRC, "servers"))
from keyfslib import KEYFS_BIN, Mount, new_key, run  # noqa: E402
import vaultlib  # noqa: E402
from test_vault_mount import PREFIX, vault_config  # noqa: E402

KEYS_INO = 2   # fixed inode number of keys/ (fs/fuse_ops.c)


class DebugMount(Mount):
    """A mount with -d: libfuse prints each request on stderr."""

    def __init__(self, **kw):
        super().__init__(extra_args=["-d"], **kw)

    def lookups_in_keys(self):
        self.stderr.flush()
        text = self.daemon_stderr()
        return len(re.findall(rf"opcode: LOOKUP \(1\), nodeid: {KEYS_INO},", text))


class DebugMountCase(unittest.TestCase):
    key_format = "evm"

    def setUp(self):
        self.m = DebugMount(key_format=self.key_format)
        self.addCleanup(self.m.cleanup)
        self.m.start()

    def import_key(self, network, key):
        r = self.m.cli("key", "import", "--network", network, "--key", key)
        self.assertEqual(r.returncode, 0, r.stderr)


class EntryCacheTest(DebugMountCase):
    def test_a_read_name_is_cached(self):
        key = new_key()
        self.import_key("eth", key)
        self.assertEqual(self.m.read_key("eth"), key + "\n")
        before = self.m.lookups_in_keys()
        for _ in range(20):
            self.assertEqual(self.m.read_key("eth"), key + "\n")
        # 20 path walks within the entry timeout (1 s): at most one LOOKUP
        # (if the second ticked over), not one per walk as with no cache
        self.assertLessEqual(self.m.lookups_in_keys() - before, 1)

    def test_removed_beside_the_mount_is_gone_at_once(self):
        key = new_key()
        self.import_key("eth", key)
        path = self.m.key_path("eth")
        self.assertEqual(self.m.read_key("eth"), key + "\n")
        os.stat(path)   # a positive entry in the kernel's cache
        r = self.m.cli("key", "remove", "--network", "eth", "--yes")
        self.assertEqual(r.returncode, 0, r.stderr)
        # right after the command returns, within the entry timeout
        self.assertFalse(os.path.exists(path), "stat still finds a removed key")
        with self.assertRaises(FileNotFoundError):
            open(path).close()
        self.assertNotIn("eth", os.listdir(self.m.path("keys")))
        self.assertNotIn("eth", os.listdir(self.m.path("addresses")))
        # O_EXCL on the name: no stale entry answers EEXIST
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        os.write(fd, (key + "\n").encode())
        os.close(fd)
        self.assertEqual(self.m.read_key("eth"), key + "\n")

    def test_a_missing_name_is_not_cached(self):
        path = self.m.key_path("later")
        self.assertFalse(os.path.exists(path))
        self.import_key("later", new_key())
        # no negative entry: the name is there at once
        self.assertTrue(os.path.exists(path))

    def test_removed_through_the_mount_is_gone_from_addresses(self):
        key = new_key()
        self.import_key("eth", key)
        addr = self.m.path("addresses", "eth")
        with open(addr) as f:
            self.assertTrue(f.read().startswith("0x"))
        os.unlink(self.m.key_path("eth"))
        self.assertFalse(os.path.exists(self.m.key_path("eth")))
        # addresses/eth was cached; the remove drops it (from the notifier
        # thread: a handler cannot notify while the kernel holds keys/)
        deadline = time.monotonic() + 2
        while os.path.exists(addr) and time.monotonic() < deadline:
            time.sleep(0.01)
        self.assertFalse(os.path.exists(addr))

    def test_excl_create_after_a_phantom(self):
        path = self.m.key_path("fresh")
        for _ in range(5):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
            os.close(fd)
            self.assertFalse(os.path.exists(path))
        os.mknod(path, 0o600 | stat.S_IFREG)
        self.assertFalse(os.path.exists(path))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        key = new_key()
        os.write(fd, (key + "\n").encode())
        os.close(fd)
        self.assertEqual(self.m.read_key("fresh"), key + "\n")


@unittest.skipUnless(os.geteuid() == 0, "needs root: drops the kernel's dentry and inode caches")
class ForgetTest(DebugMountCase):
    """When the kernel evicts an inode it sends FORGET; the mount then drops
    the name from its inode table, so the next lookup gets a new number
    (numbers are never reused) and reads the same key."""

    def test_forgotten_names_leave_the_table(self):
        keys = {f"net{i}": new_key() for i in range(20)}
        for net, key in keys.items():
            self.import_key(net, key)
        before = {}
        for net, key in keys.items():
            self.assertEqual(self.m.read_key(net), key + "\n")
            before[net] = os.stat(self.m.key_path(net)).st_ino
        self.assertEqual(len(set(before.values())), len(keys))
        # a 32-bit program's stat() (no large-file support) gets EOVERFLOW
        # on an inode number that does not fit 32 bits
        for net, ino in before.items():
            self.assertLess(ino, 2**32, net)
            self.assertEqual(os.lstat(self.m.key_path(net)).st_ino, ino, net)
        with os.scandir(self.m.path("keys")) as it:
            for d in it:
                if d.name in before:
                    self.assertEqual(d.stat().st_ino, before[d.name])
        # dentries and inodes only (not the page cache)
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("2\n")
        deadline = time.monotonic() + 5
        while (not re.search(r"opcode: (BATCH_)?FORGET", self.m.daemon_stderr())
               and time.monotonic() < deadline):
            time.sleep(0.05)
        self.assertRegex(self.m.daemon_stderr(), r"opcode: (BATCH_)?FORGET")
        for net, key in keys.items():
            self.assertEqual(self.m.read_key(net), key + "\n")
            after = os.stat(self.m.key_path(net)).st_ino
            self.assertNotEqual(after, before[net], f"{net}: same inode number after FORGET")
            self.assertLess(after, 2**32, net)


class RotatedBesideTest(DebugMountCase):
    """key_format any: the size changes with the key.  A key stored beside
    the mount (the control socket) shows its new size and content at once,
    although the old attributes were cached."""
    key_format = "any"

    def test_rotated_beside_the_mount_shows_new_size_and_content(self):
        self.import_key("eth", "short-one")
        path = self.m.key_path("eth")
        self.assertEqual(self.m.read_key("eth"), "short-one\n")
        self.assertEqual(os.stat(path).st_size, len("short-one\n"))
        longer = "a-much-longer-key-" + new_key("")
        self.import_key("eth", longer)
        self.assertEqual(os.stat(path).st_size, len(longer) + 1)
        self.assertEqual(self.m.read_key("eth"), longer + "\n")
        with open(path, "rb") as f:
            self.assertEqual(f.read(os.fstat(f.fileno()).st_size), (longer + "\n").encode())


class ListingRefreshTest(unittest.TestCase):
    """A key removed in Vault beside the mount (the mount never sees the
    remove): the next listing refresh misses the name, and the mount drops
    the kernel's cached entry (an INVAL_ENTRY notice, code 3 in libfuse's
    debug stream)."""

    def test_a_name_gone_from_the_listing_leaves_the_kernel(self):
        vs = vaultlib.VaultServer()
        self.addCleanup(vs.cleanup)
        vs.start()
        vs.kv_put(f"{PREFIX}/eth", {"private_key": vaultlib.random_evm_key()})
        vs.kv_put(f"{PREFIX}/base", {"private_key": vaultlib.random_evm_key()})
        m = DebugMount(env={"VAULT_TOKEN": vs.root_token})
        self.addCleanup(m.cleanup)
        with open(m.config, "w") as f:
            # no key cache: whether a name exists is the listing's answer
            f.write(vault_config(m, vs, ttl=0).replace("list_cache_seconds: 1",
                                                       "list_cache_seconds: 0"))
        m.start()
        path = m.key_path("eth")
        self.assertEqual(sorted(os.listdir(m.path("keys"))), ["base", "eth"])
        os.stat(path)   # cached entry
        notices = len(re.findall(r"NOTIFY: code=3\b", m.daemon_stderr()))
        status, _ = vs.request("DELETE", vs.kv_path("metadata", f"{PREFIX}/eth"))
        if status != 204:
            self.skipTest(f"the Vault test server cannot delete metadata ({status})")
        # a refresh already in flight may answer this listing: list again
        deadline = time.monotonic() + 5
        while os.listdir(m.path("keys")) != ["base"] and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(os.listdir(m.path("keys")), ["base"])
        deadline = time.monotonic() + 2
        while (len(re.findall(r"NOTIFY: code=3\b", m.daemon_stderr())) == notices
               and time.monotonic() < deadline):
            time.sleep(0.01)
        self.assertGreater(len(re.findall(r"NOTIFY: code=3\b", m.daemon_stderr())), notices,
                           "no INVAL_ENTRY sent for a name gone from the listing")
        self.assertFalse(os.path.exists(path))
        with self.assertRaises(FileNotFoundError):
            open(path).close()


class OptionsTest(unittest.TestCase):
    """-o options only libfuse's high-level layer knew are refused with one
    line naming them (README: the mount sets its caches itself)."""

    def test_high_level_options_are_refused(self):
        for opt in ("attr_timeout=5", "entry_timeout=5", "umask=022"):
            m = Mount(extra_args=["-o", opt])
            self.addCleanup(m.cleanup)
            p = subprocess.run([KEYFS_BIN, "mount", "-f", "-c", m.config, "-o", opt, m.mnt],
                               capture_output=True, text=True, env=m.env, timeout=30,
                               stdin=subprocess.DEVNULL)
            self.assertEqual(p.returncode, 1, p.stderr)
            lines = [line for line in p.stderr.splitlines() if line.startswith("omikuji-keyfs:")]
            self.assertEqual(len(lines), 1, p.stderr)
            self.assertIn(opt, lines[0])
            self.assertIn("invalid FUSE options", lines[0])


if __name__ == "__main__":
    run()
