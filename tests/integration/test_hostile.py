"""Issue 9: hardening against a hostile local user and a hostile backend.

Each numbered item of the issue is a regression test here, through a real
mount with a second uid (setpriv as nobody, against `-o allow_other`) and,
for the backend items, the Vault test server with its fault injection and
values put there directly (what a broken or hostile Vault would serve).
Needs root (setpriv, allow_other): skips with 77 otherwise."""
import errno
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
SRC = os.environ.get("TESTS_SOURCE_DIR", os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(SRC, "servers"))
from keyfslib import KEYFS_BIN, Mount, metric, new_key, run  # noqa: E402
import vaultlib  # noqa: E402
from test_vault_mount import vault_config  # noqa: E402

PY = "/usr/bin/python3"
NOBODY = 65534

if os.geteuid() != 0:
    print("SKIP: the hostile suite needs root (a second uid via setpriv, allow_other)")
    sys.exit(77)


def as_nobody(argv, groups=None, **kw):
    """Run argv (a list, or a shell command string) as uid/gid 65534."""
    g = ["--groups", ",".join(str(x) for x in groups)] if groups else ["--clear-groups"]
    if isinstance(argv, str):
        argv = ["bash", "-c", argv]
    return subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", *g, *argv],
                          capture_output=True, timeout=kw.pop("timeout", 60), cwd="/", **kw)


def as_nobody_py(code, *args, **kw):
    """Run a Python snippet as nobody; argv[1:] are args."""
    return as_nobody([PY, "-c", code, *args], **kw)


def verify(path):
    return subprocess.run([KEYFS_BIN, "audit", "verify", path], capture_output=True, text=True)


def strict_lines(path):
    """The audit log as JSON objects, decoding as strict UTF-8 (raises on bad bytes)."""
    with open(path, "rb") as f:
        return [json.loads(line.decode("utf-8", errors="strict")) for line in f if line.strip()]


class HostileMount(unittest.TestCase):
    """A file-backend mount open to other users, with optional access rules."""
    keyfs_extra = ""
    key_format = "evm"

    def setUp(self):
        self.m = Mount(extra_args=["-o", "allow_other"], keyfs_extra=self.keyfs_extra,
                       key_format=self.key_format)
        self.addCleanup(self.m.cleanup)
        os.chmod(self.m.root, 0o755)
        self.m.start()


# --- 1: audit fields are valid JSON and UTF-8 whatever the caller does --------

# Set our own process name to arbitrary bytes (PR_SET_NAME), then try a key.
SET_NAME_AND_OPEN = r"""
import ctypes, sys
libc = ctypes.CDLL(None)
libc.prctl(15, ctypes.c_char_p(bytes.fromhex(sys.argv[1])), 0, 0, 0)
try:
    open(sys.argv[2]).read()
except OSError as e:
    print(e.errno)
"""


class AuditFieldsTest(HostileMount):
    def test_hostile_process_name_keeps_the_log_verifiable(self):
        m = self.m
        m.write_key("eth", new_key() + "\n")
        names = ["fffe", "22" + "5c" * 3 + "0a7b", "1b5b33316d7f", "e282", "c0af"]
        for n in names:
            r = as_nobody_py(SET_NAME_AND_OPEN, n, m.key_path("eth"))
            # nobody has no grant: the name does not exist for it (item 5)
            self.assertEqual(r.stdout.strip(), str(errno.ENOENT).encode(), r.stderr)
        lines = strict_lines(m.audit_log)          # strict UTF-8 and JSON
        denied = [l for l in lines if l["uid"] == NOBODY]
        self.assertEqual(len(denied), len(names))
        self.assertEqual(denied[0]["process"], "\ufffd\ufffd")
        self.assertEqual(denied[1]["process"], '"\\\\\\\n{')
        r = verify(m.audit_log)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn(f"audit log OK: {len(lines)} lines", r.stdout)

    def test_verify_reports_a_torn_line_and_checks_what_follows(self):
        m = self.m
        m.write_key("eth", new_key() + "\n")
        torn = len(m.audit_lines()) + 1
        with open(m.audit_log, "ab") as f:      # what a torn write after ENOSPC leaves
            f.write(b'{"timestamp":"2026-\xff\n')
        for _ in range(3):
            m.read_key("eth")
        m.stop()
        lines = open(m.audit_log, "rb").read().splitlines(keepends=True)
        # an edit after the torn line is still found
        lines[-1] = lines[-1].replace(b'"status":true', b'"status":false').replace(
            b'"level":"info"', b'"level":"warn"')
        with open(m.audit_log, "wb") as f:
            f.writelines(lines)
        r = verify(m.audit_log)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn(f"line {torn}: not valid JSON", r.stdout)
        self.assertIn(f"line {torn + 1}: chain resumes at seq {torn}", r.stdout)
        self.assertIn(f"line {len(lines)}: hash mismatch", r.stdout)
        self.assertIn(f"2 bad lines of {len(lines)}, the first at line {torn}", r.stdout)


# --- 2: the audit log is never followed through a symlink nor lost ---------

class AuditFileTest(HostileMount):
    def test_symlink_at_the_audit_path_is_not_followed(self):
        m = self.m
        m.write_key("eth", new_key() + "\n")
        m.stop()
        victim = os.path.join(m.root, "victim")
        with open(victim, "w") as f:
            f.write("untouched\n")
        os.rename(m.audit_log, m.audit_log + ".old")
        os.symlink(victim, m.audit_log)
        with self.assertRaises(AssertionError) as ctx:
            m.start()
        self.assertIn("symbolic link", m.daemon_stderr())
        self.assertEqual(open(victim).read(), "untouched\n")
        del ctx

    def test_symlink_planted_while_running_denies_and_writes_nothing_there(self):
        m = self.m
        m.write_key("eth", new_key() + "\n")
        victim = os.path.join(m.root, "victim")
        open(victim, "w").close()
        os.unlink(m.audit_log)
        os.symlink(victim, m.audit_log)
        r = m.sh("cat keys/eth")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("Input/output error", r.stderr)   # audit_failure: deny
        self.assertEqual(os.path.getsize(victim), 0)
        self.assertGreaterEqual(metric(m.metrics(), "omikuji_keyfs_audit_write_errors_total"), 1)

    def test_deleted_log_is_recreated_not_written_into_the_void(self):
        m = self.m
        m.write_key("eth", new_key() + "\n")
        last = m.audit_lines()[-1]
        os.unlink(m.audit_log)
        self.assertEqual(m.sh("cat keys/eth").returncode, 0)
        lines = strict_lines(m.audit_log)
        self.assertEqual(len(lines), 1)
        self.assertEqual(lines[0]["seq"], last["seq"] + 1)
        self.assertEqual(lines[0]["operation"], "get")
        # the new file continues the chain from where the deleted one ended
        r = subprocess.run([KEYFS_BIN, "audit", "verify", "--start",
                            f"{last['seq']}:{last['hash']}", m.audit_log],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_audit_log_owned_by_another_user_is_refused(self):
        m = self.m
        m.stop()
        os.chown(m.audit_log, NOBODY, NOBODY)
        with self.assertRaises(AssertionError):
            m.start()
        self.assertIn("owned by another user", m.daemon_stderr())



# --- 3: special files at the store's path never hang; a stalled check is down ------

class SpecialFilesTest(HostileMount):
    def health(self):
        with open(self.m.path("health", "file")) as f:
            lines = f.read().splitlines()
        return lines[0], dict(l.split(": ", 1) for l in lines[1:])

    def test_fifo_at_the_store_path_fails_fast(self):
        m = self.m
        m.write_key("eth", new_key() + "\n")
        os.unlink(m.store)
        os.mkfifo(m.store)
        t0 = time.monotonic()
        r = m.sh("cat keys/eth", timeout=20)
        self.assertLess(time.monotonic() - t0, 5)
        self.assertIn("Input/output error", r.stderr)
        deadline = time.monotonic() + 5
        while self.health()[0] != "down" and time.monotonic() < deadline:
            time.sleep(0.1)
        state, fields = self.health()
        self.assertEqual(state, "down")
        self.assertIn("not a regular file", fields["last_error"])
        m.stop()
        t0 = time.monotonic()
        with self.assertRaises(AssertionError):
            m.start()
        self.assertLess(time.monotonic() - t0, 5)
        self.assertIn("not a regular file", m.daemon_stderr())


# --- 4: a deleted store with its master key present is refused ---------------------

class DeletedStoreTest(HostileMount):
    def test_deleted_store_is_refused_until_started_over_on_purpose(self):
        m = self.m
        m.write_key("eth", new_key() + "\n")
        os.unlink(m.store)
        with self.assertRaises(OSError) as ctx:     # at run time: not an empty store
            m.read_key("eth")
        self.assertEqual(ctx.exception.errno, errno.EIO)
        m.stop()
        with self.assertRaises(AssertionError):
            m.start()
        self.assertIn("start over", m.daemon_stderr())
        self.assertFalse(os.path.exists(m.store))
        r = m.cli("key", "list")
        self.assertEqual(r.returncode, 1)
        self.assertIn("master key file exists", r.stderr)
        os.unlink(m.store + ".master")             # on purpose
        m.start()
        self.assertEqual(os.listdir(m.path("keys")), [])


# --- 5: key names do not leak past the rules ---------------------------------

class NamesTest(HostileMount):
    keyfs_extra = """
  metrics_per_network: false
  monitoring_mode: "0440"
  monitoring_group: "4242"
  access:
    - networks: ["ethereum-*"]
      list: ["uid:65534", "uid:0"]
      read: ["uid:0"]
      write: ["uid:0"]
      remove: ["uid:0"]
    - networks: ["*"]
      read: ["uid:0"]
      write: ["uid:0"]
      remove: ["uid:0"]
      list: ["uid:0"]
"""

    def setUp(self):
        super().setUp()
        for n in ("ethereum-mainnet", "ethereum-sepolia", "base", "polygon"):
            self.m.write_key(n, new_key() + "\n")

    def test_listing_shows_only_names_with_a_grant(self):
        m = self.m
        r = as_nobody(f"ls {m.path('keys')}")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.decode().split(), ["ethereum-mainnet", "ethereum-sepolia"])
        self.assertEqual(sorted(os.listdir(m.path("keys"))),
                         ["base", "ethereum-mainnet", "ethereum-sepolia", "polygon"])

    def test_a_name_without_a_grant_does_not_exist_for_that_caller(self):
        m = self.m
        before = len(m.audit_lines())
        for name in ("base", "does-not-exist"):
            r = as_nobody_py("import os,sys\ntry:\n os.stat(sys.argv[1])\nexcept OSError as e:\n"
                             " print(e.errno)", m.key_path(name))
            self.assertEqual(r.stdout.strip(), str(errno.ENOENT).encode(), name)
        r = as_nobody(f"test -e {m.key_path('base')} && echo visible; true")
        self.assertEqual(r.stdout, b"")
        # a name with a grant exists; reading it is still denied (EACCES)
        r = as_nobody_py("import os,sys\nprint(os.stat(sys.argv[1]).st_mode & 0o777)",
                         m.key_path("ethereum-mainnet"))
        self.assertEqual(r.stdout.strip(), b"384", r.stderr)
        r = as_nobody(f"cat {m.key_path('ethereum-mainnet')}")
        self.assertIn(b"Permission denied", r.stderr)
        new = m.audit_lines()[before:]
        probes = [l for l in new if l.get("error") == "no grant for this network"]
        self.assertGreaterEqual(len(probes), 3)        # the probes are audited
        self.assertTrue(all(l["uid"] == NOBODY and not l["status"] for l in probes))

    def test_metrics_per_network_off(self):
        m = self.m
        m.read_key("ethereum-mainnet")
        text = open(m.path("metrics")).read()
        self.assertNotIn("ethereum-mainnet", text)
        self.assertNotIn('network="', text)

    def test_monitoring_mode_and_group(self):
        m = self.m
        for p in ("metrics", "textfile/omikuji_keyfs.prom", "health/file"):
            st = os.stat(m.path(p))
            self.assertEqual(stat.S_IMODE(st.st_mode), 0o440, p)
            self.assertEqual(st.st_gid, 4242, p)
        for d in ("textfile", "health"):
            st = os.stat(m.path(d))
            self.assertEqual(stat.S_IMODE(st.st_mode), 0o550, d)
            self.assertEqual(st.st_gid, 4242, d)
        r = as_nobody(f"cat {m.path('metrics')}")
        self.assertIn(b"Permission denied", r.stderr)
        r = as_nobody(f"ls {m.path('textfile')}")
        self.assertIn(b"Permission denied", r.stderr)
        r = as_nobody(f"cat {m.path('metrics')} {m.path('health', 'file')} "
                      f"{m.path('textfile', 'omikuji_keyfs.prom')}", groups=[4242])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"omikuji_key_operations_total", r.stdout)


def free_gid(start):
    """A gid no group has, from start upwards."""
    import grp
    gid = start
    while True:
        try:
            grp.getgrgid(gid)
        except KeyError:
            return gid
        gid += 1


class MonitoringGroupReloadTest(HostileMount):
    """keyfs.monitoring_group is resolved at start and on SIGHUP: a group
    created after the mount started, or deleted and re-created with another
    gid, takes effect on the reload; unresolved, its bits grant no one."""

    def setUp(self):
        if not shutil.which("groupadd"):
            self.skipTest("groupadd not installed")
        self.group = "keyfs-mon-" + os.urandom(4).hex()
        self.addCleanup(subprocess.run, ["groupdel", self.group], capture_output=True)
        self.keyfs_extra = f"""
  monitoring_mode: "0440"
  monitoring_group: {self.group}
"""
        super().setUp()

    def can_read_as_nobody(self, gid):
        r = as_nobody(f"cat {self.m.path('metrics')} {self.m.path('health', 'file')} >/dev/null "
                      f"&& ls {self.m.path('textfile')}", groups=[gid])
        if r.returncode == 0:
            return True
        self.assertIn(b"Permission denied", r.stderr)
        return False

    def reloads(self):
        with open(self.m.app_log) as f:
            return f.read().count("reloaded on SIGHUP")

    def sighup(self):
        n = self.reloads()
        os.kill(self.m.proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while self.reloads() == n:
            self.assertLess(time.monotonic(), deadline, "no reload logged")
            time.sleep(0.05)

    def test_group_created_after_start_takes_effect_on_sighup(self):
        m = self.m
        gid1 = free_gid(42000 + int.from_bytes(os.urandom(2), "big") % 10000)
        # unresolved at start: the mount serves, the group bits grant no one
        self.assertEqual(os.stat(m.path("metrics")).st_gid, NOBODY)   # the kernel's "no group"
        self.assertFalse(self.can_read_as_nobody(gid1))
        with open(m.app_log) as f:
            self.assertIn("monitoring_group not resolved", f.read())
        subprocess.run(["groupadd", "-g", str(gid1), self.group], check=True)
        self.assertFalse(self.can_read_as_nobody(gid1), "resolved before the SIGHUP")
        self.sighup()
        for p in ("metrics", "textfile", "health", "health/file"):
            self.assertEqual(os.stat(m.path(p)).st_gid, gid1, p)
        self.assertTrue(self.can_read_as_nobody(gid1))
        # re-created with another gid: the old gid loses access at the next reload
        subprocess.run(["groupdel", self.group], check=True)
        gid2 = free_gid(gid1 + 1)
        subprocess.run(["groupadd", "-g", str(gid2), self.group], check=True)
        self.sighup()
        self.assertEqual(os.stat(m.path("metrics")).st_gid, gid2)
        self.assertFalse(self.can_read_as_nobody(gid1))
        self.assertTrue(self.can_read_as_nobody(gid2))
        # deleted: fail closed again
        subprocess.run(["groupdel", self.group], check=True)
        self.sighup()
        self.assertFalse(self.can_read_as_nobody(gid2))
        self.assertEqual(r_ok(m.path("metrics")), True)   # the owner (root) still reads


def r_ok(path):
    with open(path) as f:
        return bool(f.read())


# --- 12: access(W_OK) on keys/ by the rules ------------------------------------

class KeysDirWritableTest(HostileMount):
    keyfs_extra = """
  access:
    - networks: ["base-*"]
      write: ["uid:65534"]
    - networks: ["*"]
      read: ["uid:0"]
      write: ["uid:0"]
      list: ["uid:0", "uid:65534"]
"""

    def test_test_w_on_keys_follows_the_rules(self):
        m = self.m
        r = as_nobody(f"test -w {m.path('keys')} && echo W; true")
        self.assertEqual(r.stdout.strip(), b"W")
        self.assertTrue(os.access(m.path("keys"), os.W_OK))
        r = as_nobody(f"test -w {m.path('keys')} && echo W; true", groups=[1])
        self.assertEqual(r.stdout.strip(), b"W")
        r = subprocess.run(["setpriv", "--reuid=1", "--regid=1", "--clear-groups", "bash", "-c",
                            f"test -w {m.path('keys')} && echo W; true"], capture_output=True)
        self.assertEqual(r.stdout.strip(), b"")
        self.assertFalse(os.access(m.path("metrics"), os.W_OK))


class CreateWithoutContentTest(HostileMount):
    """touch, mknod and O_CREAT|O_EXCL of a new name: a key file comes into
    being when a key is stored in it, and not a moment before or after."""

    def test_touch_mknod_and_excl_create_nothing(self):
        m = self.m
        r = m.sh("touch keys/fresh")
        self.assertEqual(r.returncode, 0, r.stderr)           # the open is where a write starts
        self.assertFalse(os.path.exists(m.key_path("fresh")))  # ...and nothing was written
        self.assertNotIn("fresh", os.listdir(m.path("keys")))
        os.mknod(m.key_path("node"), 0o600 | stat.S_IFREG)      # libfuse: create + release
        self.assertFalse(os.path.exists(m.key_path("node")))
        with self.assertRaises(OSError) as ctx:
            os.mknod(m.key_path("fifo"), 0o600 | stat.S_IFIFO)
        self.assertEqual(ctx.exception.errno, errno.EPERM)
        fd = os.open(m.key_path("excl"), os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        self.assertTrue(os.path.exists(m.key_path("excl")))    # while open: being created
        os.close(fd)
        self.assertFalse(os.path.exists(m.key_path("excl")))
        key = new_key()
        m.write_key("excl", key + "\n")
        with self.assertRaises(FileExistsError):
            os.open(m.key_path("excl"), os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        self.assertEqual(m.read_key("excl"), key + "\n")
        self.assertEqual(
            [l["operation"] for l in m.audit_lines() if l["network"] in ("fresh", "node")], [])


# --- 11: mmap of a key file: ENODEV or the key, never SIGBUS ----------------------

MMAP_PROBE = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long]
fd = os.open(sys.argv[1], os.O_RDONLY)
for name, flags in (("shared", 1), ("private", 2)):
    addr = libc.mmap(None, 4096, 1, flags, fd, 0)
    if addr is None or addr == 2**64 - 1:
        print(name, "errno", ctypes.get_errno())
        continue
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(w, ctypes.string_at(addr, 67))
        os._exit(0)
    os.close(w)
    data = os.read(r, 100)
    _, st = os.waitpid(pid, 0)
    sig = os.WTERMSIG(st) if os.WIFSIGNALED(st) else 0
    print(name, "signal", sig, "same", data == open(sys.argv[1], "rb").read())
"""


class MmapTest(HostileMount):
    def test_mmap_is_refused_or_served_never_sigbus(self):
        m = self.m
        m.write_key("eth", new_key() + "\n")
        r = subprocess.run([PY, "-c", MMAP_PROBE, m.key_path("eth")], capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = dict((l.split()[0], l.split()[1:]) for l in r.stdout.splitlines())
        self.assertEqual(out["shared"], ["errno", str(errno.ENODEV)])
        self.assertEqual(out["private"], ["signal", "0", "same", "True"])
        self.assertEqual(os.stat(m.key_path("eth")).st_size, 67)


# --- 10: a write that can never become a key fails at write(2) ----------------

class WriteTimeTest(HostileMount):
    def test_printf_of_a_non_key_fails_at_write(self):
        m = self.m
        old = new_key()
        m.write_key("eth", old + "\n")
        for text in ("not-a-key", "0x" + "a" * 65, "0xg", "12 34"):
            r = m.sh(f"printf %s '{text}' > keys/eth")
            self.assertNotEqual(r.returncode, 0, text)
            self.assertIn("Invalid argument", r.stderr, text)
            r = m.sh(f"echo -n '{text}' > keys/eth")
            self.assertNotEqual(r.returncode, 0, text)
        self.assertEqual(m.read_key("eth"), old + "\n")
        refused = [l for l in m.audit_lines() if l["operation"] == "store" and not l["status"]]
        self.assertEqual(len(refused), 8)

    def test_the_write_itself_fails_not_the_close(self):
        m = self.m
        fd = os.open(m.key_path("eth"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            self.assertEqual(os.write(fd, b"0x12"), 4)      # can still become a key
            with self.assertRaises(OSError) as ctx:
                os.write(fd, b"zz")
            self.assertEqual(ctx.exception.errno, errno.EINVAL)
        finally:
            os.close(fd)
        self.assertNotIn("eth", os.listdir(m.path("keys")))

    def test_oversized_write_fails_at_write(self):
        m = self.m
        fd = os.open(m.key_path("big"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            with self.assertRaises(OSError) as ctx:
                os.write(fd, b"a" * 4097)
            self.assertIn(ctx.exception.errno, (errno.EINVAL, errno.EFBIG))
        finally:
            os.close(fd)

    def test_a_key_written_in_pieces_still_works(self):
        m = self.m
        key = new_key()
        fd = os.open(m.key_path("eth"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        for i in range(0, len(key), 7):
            os.write(fd, key[i:i + 7].encode())
        os.close(fd)
        self.assertEqual(m.read_key("eth"), key + "\n")


class WriteTimeAnyFormatTest(HostileMount):
    key_format = "any"

    def test_any_format_limits_at_write(self):
        m = self.m
        r = m.sh("printf 'a\\x01b' > keys/tok")
        self.assertIn("Invalid argument", r.stderr)
        fd = os.open(m.key_path("tok"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            os.write(fd, b"x" * 4096)
            with self.assertRaises(OSError) as ctx:
                os.write(fd, b"y")
            self.assertEqual(ctx.exception.errno, errno.EFBIG)
        finally:
            os.close(fd)
        m.write_key("tok", "printable text\n")
        self.assertEqual(m.read_key("tok"), "printable text\n")


# --- backend tests: the Vault test server serving what a hostile Vault would -------

PREFIX = "omikuji/keys"


class HostileVault(unittest.TestCase):
    key_format = "evm"
    keyfs_extra = ""

    def setUp(self):
        self.vs = vaultlib.VaultServer()
        self.addCleanup(self.vs.cleanup)
        self.vs.start()
        self.m = Mount(env={"VAULT_TOKEN": self.vs.root_token}, extra_args=["-o", "allow_other"])
        self.addCleanup(self.m.cleanup)
        os.chmod(self.m.root, 0o755)
        with open(self.m.config, "w") as f:
            f.write(vault_config(self.m, self.vs, retries=0, keyfs_extra=(
                f"  key_format: {self.key_format}\n" + self.keyfs_extra)))
        self.m.start()

    def restart_with(self, old, new):
        """Restart the mount with one setting of its config changed."""
        with open(self.m.config) as f:
            cfg = f.read()
        self.assertIn(old, cfg)
        self.m.stop()
        with open(self.m.config, "w") as f:
            f.write(cfg.replace(old, new))
        self.m.start()

    def put(self, network, value):
        status, _ = self.vs.request("POST", f"/v1/secret/data/{PREFIX}/{network}",
                                    body={"data": {"private_key": value}})
        self.assertIn(status, (200, 204))

    def health(self):
        with open(self.m.path("health", "vault")) as f:
            lines = f.read().splitlines()
        return lines[0], dict(l.split(": ", 1) for l in lines[1:])

    def wait_health(self, state, timeout=8):
        deadline = time.monotonic() + timeout
        while True:
            h = self.health()
            if h[0] == state or time.monotonic() > deadline:
                return h
            time.sleep(0.1)


# --- 6: values from a backend are validated before a reader sees them ---------

class BackendValuesTest(HostileVault):
    def test_invalid_values_are_eio_counted_and_never_served(self):
        m = self.m
        bad = {
            "huge": "a" * (900 * 1024),
            "escape": new_key() + "\x1b[2J\nextra line",
            "short": "0x1234",
            "zero": "0x" + "0" * 64,
        }
        for net, value in bad.items():
            self.put(net, value)
        for net in bad:
            with self.assertRaises(OSError) as ctx:
                m.read_key(net)
            self.assertEqual(ctx.exception.errno, errno.EIO, net)
        self.assertEqual(metric(m.metrics(), "omikuji_key_backend_invalid_values_total",
                                backend="vault"), len(bad))
        state, fields = self.health()
        self.assertEqual(state, "up")             # the backend answered
        self.assertIn("invalid key", fields["last_error"])
        fails = [l for l in m.audit_lines() if l["operation"] == "get" and not l["status"]]
        self.assertEqual(len(fails), len(bad))
        self.assertTrue(all("invalid key" in l["error"] for l in fails))
        # the condition goes when the value is valid again
        last = list(bad)[-1]
        key = new_key()
        self.put(last, key)
        self.assertEqual(m.read_key(last), key + "\n")
        self.assertEqual(self.health()[1]["last_error"], "none")

    def test_evm_values_are_served_in_canonical_form(self):
        key = new_key()
        self.put("upper", "  " + key[2:].upper() + "\n")
        self.assertEqual(self.m.read_key("upper"), key + "\n")


class BackendValuesAnyTest(HostileVault):
    key_format = "any"

    def test_any_format_refuses_control_bytes_and_oversize(self):
        self.put("ctl", "token\x1b]0;owned\x07")
        self.put("big", "x" * 4097)
        self.put("ok", "  a printable token ")
        for net in ("ctl", "big"):
            with self.assertRaises(OSError) as ctx:
                self.m.read_key(net)
            self.assertEqual(ctx.exception.errno, errno.EIO)
        self.assertEqual(self.m.read_key("ok"), "a printable token\n")


# --- 7: health reflects auth failures; last_error follows the condition --------

class HealthAuthTest(HostileVault):
    def test_403_on_every_key_request_is_down_until_it_passes(self):
        m = self.m
        key = new_key()
        self.put("eth", key)
        self.assertEqual(self.wait_health("up")[0], "up")
        self.vs.fault("403", path_prefix="/v1/secret/")
        with self.assertRaises(OSError) as ctx:
            m.read_key("eth")
        self.assertEqual(ctx.exception.errno, errno.EACCES)
        state, fields = self.health()
        self.assertEqual(state, "down")
        self.assertIn("permission denied", fields["last_error"])
        time.sleep(2.5)                           # checks run; the probe alone passes
        state, fields = self.health()
        self.assertEqual(state, "down", fields)
        self.assertEqual(metric(m.metrics(), "omikuji_key_backend_up", backend="vault"), 0)
        self.vs.clear_fault()
        state, fields = self.wait_health("up")
        self.assertEqual(state, "up")
        self.assertEqual(fields["last_error"], "none")
        self.assertEqual(m.read_key("eth"), key + "\n")


# --- 8: a hung backend does not serialise lookups --------------------------------

class HungListingTest(HostileVault):
    def test_failed_listing_is_not_retried_by_every_lookup(self):
        m = self.m
        self.put("eth", new_key())
        self.vs.fault("hang", delay=30, path_prefix=f"/v1/secret/metadata/{PREFIX}")
        t0 = time.monotonic()
        with self.assertRaises(OSError):
            os.listdir(m.path("keys"))
        first = time.monotonic() - t0
        self.assertGreater(first, 1.5)            # the backend's timeout (2 s)
        lists = self.vs.route_count("GET", f"/v1/secret/metadata/{PREFIX}")
        t0 = time.monotonic()
        for i in range(6):
            try:
                os.stat(m.key_path(f"missing-{i}"))
            except OSError:
                pass
        with self.assertRaises(OSError):
            os.listdir(m.path("keys"))
        elapsed = time.monotonic() - t0
        self.assertEqual(self.vs.route_count("GET", f"/v1/secret/metadata/{PREFIX}"), lists,
                         "lookups within the back-off asked the backend again")
        self.assertLess(elapsed, 1.5, "6 stats and an ls waited on the hung backend")
        fails = [l for l in m.audit_lines() if l["operation"] == "list" and not l["status"]]
        self.assertEqual(len(fails), 2)
        self.vs.clear_fault()
        time.sleep(2.1)                          # after the back-off the backend is asked again
        self.assertEqual(os.listdir(m.path("keys")), ["eth"])


# --- 9: copies of a key in the daemon's memory -------------------------------------

def count_in_memory(pid, needle):
    """Occurrences of needle in every readable mapping of pid (root reads
    /proc/PID/mem of the non-dumpable daemon with CAP_SYS_PTRACE)."""
    total = 0
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            parts = line.split()
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            if "r" not in parts[1] or (len(parts) > 5 and parts[5] in ("[vvar]", "[vsyscall]")):
                continue
            try:
                mem.seek(lo)
                total += mem.read(hi - lo).count(needle)
            except OSError:
                continue
    return total


class KeyCopiesTest(HostileVault):
    def test_at_most_two_copies_after_1000_uncached_reads(self):
        # cache_ttl_seconds 0: every read fetches from Vault (curl, JSON,
        # the cache, a FUSE reply): the path with the most chances to copy
        self.restart_with("cache_ttl_seconds: 300", "cache_ttl_seconds: 0")
        m = self.m
        with open(f"/proc/{m.proc.pid}/maps") as f:
            maps = f.read()
            if "libasan" in maps or "libtsan" in maps:
                self.skipTest("sanitizer build: its shadow mappings are too large to scan "
                              "(the figure is measured in the normal build)")
        key = new_key()
        self.put("eth", key)
        for _ in range(1000):
            self.assertEqual(m.read_key("eth"), key + "\n")
        self.assertEqual(self.vs.route_count("GET", f"/v1/secret/data/{PREFIX}/eth"), 1000)
        written = new_key()
        m.write_key("base", written + "\n")
        for _ in range(10):
            m.read_key("base")
        # as text, or as the 32 raw bytes the cache keeps of an evm key
        copies = (count_in_memory(m.proc.pid, key[2:].encode()) +
                  count_in_memory(m.proc.pid, bytes.fromhex(key[2:])))
        copies_written = (count_in_memory(m.proc.pid, written[2:].encode()) +
                          count_in_memory(m.proc.pid, bytes.fromhex(written[2:])))
        print(f"\nkey copies in the daemon after 1000 uncached reads: {copies}; "
              f"of a key written through the mount: {copies_written}", file=sys.stderr)
        self.assertGreaterEqual(copies, 1, "the scan must find the cached copy")
        self.assertLessEqual(copies, 2)
        self.assertLessEqual(copies_written, 2)


class StalledCheckTest(HostileVault):
    """A Vault that accepts connections and never answers, with a timeout
    longer than the health deadline: the check in progress is down."""

    def setUp(self):
        super().setUp()
        self.restart_with("timeout_seconds: 2", "timeout_seconds: 12")

    def backend_up(self):
        return metric(self.m.metrics(), "omikuji_key_backend_up", backend="vault")

    def test_a_check_that_does_not_finish_is_down(self):
        self.assertEqual(self.wait_health("up")[0], "up")
        self.assertEqual(self.backend_up(), 1)
        self.vs.fault("hang", delay=30, path_prefix="/v1/sys/health")
        hung_at = time.monotonic()
        deadline = hung_at + 10
        while self.health()[0] != "down" and time.monotonic() < deadline:
            time.sleep(0.2)
        state, fields = self.health()
        self.assertEqual(state, "down", fields)
        self.assertIn("stalled", fields["last_error"])
        # the gauge agrees with health/ while the check is stalled, in the
        # metrics file and in the textfile node_exporter reads
        self.assertEqual(self.backend_up(), 0)
        with open(self.m.path("textfile", "omikuji_keyfs.prom")) as f:
            self.assertIn('omikuji_key_backend_up{backend="vault"} 0\n', f.read())
        # deadline 5 s (health_interval_seconds 1) after the check began,
        # which is at most one interval after the fault was set
        self.assertLess(time.monotonic() - hung_at, 5 + 1 + 2)
        self.vs.clear_fault()
        self.assertEqual(self.wait_health("up", timeout=15)[0], "up")
        self.assertEqual(self.backend_up(), 1)


if __name__ == "__main__":
    run()
