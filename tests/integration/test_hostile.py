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
            self.assertEqual(r.stdout.strip(), str(errno.EACCES).encode(), r.stderr)
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
        with open(m.audit_log, "ab") as f:      # what a torn write after ENOSPC leaves
            f.write(b'{"timestamp":"2026-\xff\n')
        for _ in range(3):
            m.read_key("eth")
        m.stop()
        lines = open(m.audit_log, "rb").read().splitlines(keepends=True)
        torn = 2
        # an edit after the torn line is still found
        lines[-1] = lines[-1].replace(b'"status":true', b'"status":false').replace(
            b'"level":"info"', b'"level":"warn"')
        with open(m.audit_log, "wb") as f:
            f.writelines(lines)
        r = verify(m.audit_log)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn(f"line {torn}: not valid JSON", r.stdout)
        self.assertIn(f"line {torn + 1}: chain resumes at seq 2", r.stdout)
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
        before = len(m.audit_lines())
        os.unlink(m.audit_log)
        self.assertEqual(m.sh("cat keys/eth").returncode, 0)
        lines = strict_lines(m.audit_log)
        self.assertEqual(len(lines), 1)
        self.assertEqual(lines[0]["seq"], before + 1)
        self.assertEqual(lines[0]["operation"], "get")
        r = verify(m.audit_log)
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertIn(f"chain starts at seq {before + 1}", r.stdout)

    def test_audit_log_owned_by_another_user_is_refused(self):
        m = self.m
        m.stop()
        os.chown(m.audit_log, NOBODY, NOBODY)
        with self.assertRaises(AssertionError):
            m.start()
        self.assertIn("owned by another user", m.daemon_stderr())


if __name__ == "__main__":
    run()
