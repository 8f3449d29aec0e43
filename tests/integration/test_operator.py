"""An operator's ergonomics: --help for every command, one-line mount
failures that say what to do, check-config on plain-http URLs and only the
active backend, `key import` saying created or replaced, the audit log's
mode and group for log shippers (read by a user of that group), and the
application log naming backends as storage_type."""
import grp
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from keyfslib import KEYFS_BIN, Mount, MountTestCase, is_mounted, new_key, run  # noqa: E402


def keyfs(*args, **kw):
    return subprocess.run([KEYFS_BIN, *args], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, **kw)


class HelpTest(unittest.TestCase):
    def test_every_command_has_help(self):
        for argv, first in ((["mount", "--help"], "Usage: omikuji-keyfs mount"),
                            (["key", "--help"], "Usage: omikuji-keyfs key import|export"),
                            (["key", "import", "--help"], "Usage: omikuji-keyfs key import"),
                            (["key", "export", "-h"], "Usage: omikuji-keyfs key export"),
                            (["key", "remove", "--help"], "Usage: omikuji-keyfs key remove"),
                            (["key", "list", "--help"], "Usage: omikuji-keyfs key list"),
                            (["audit", "--help"], "Usage: omikuji-keyfs audit verify"),
                            (["audit", "verify", "--help"], "Usage: omikuji-keyfs audit verify"),
                            (["check-config", "--help"], "Usage: omikuji-keyfs check-config"),
                            (["--help"], "Usage: omikuji-keyfs COMMAND")):
            r = keyfs(*argv)
            self.assertEqual(r.returncode, 0, (argv, r.stderr))
            self.assertTrue(r.stdout.startswith(first), (argv, r.stdout[:80]))
            self.assertEqual(r.stderr, "")


class MountFailureTest(unittest.TestCase):
    def setUp(self):
        self.m = Mount()
        self.addCleanup(self.m.cleanup)

    def mount(self, target, *extra):
        return keyfs("mount", "-c", self.m.config, *extra, target, env=self.m.env)

    def assert_one_line(self, r, *needles):
        self.assertNotEqual(r.returncode, 0)
        lines = r.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, r.stderr)
        for n in needles:
            self.assertIn(n, lines[0])

    def test_missing_and_not_a_directory(self):
        missing = os.path.join(self.m.root, "nope")
        self.assert_one_line(self.mount(missing), "No such file or directory", f"mkdir -p {missing}")
        self.assert_one_line(self.mount(self.m.config), "is not a directory")

    def test_bad_fuse_option(self):
        self.assert_one_line(self.mount(self.m.mnt, "-o", "no_such_option"),
                             "invalid FUSE options 'no_such_option'", "unknown option")

    def test_already_mounted(self):
        self.m.start()
        self.assert_one_line(self.mount(self.m.mnt), "already a mount point",
                             f"fusermount3 -u {self.m.mnt}")

    def test_stale_mount_after_kill_9(self):
        self.m.start()
        self.m.proc.send_signal(signal.SIGKILL)
        self.m.proc.wait()
        with self.assertRaises(OSError):
            os.listdir(self.m.mnt)   # "Transport endpoint is not connected"
        r = self.mount(self.m.mnt)
        self.assert_one_line(r, "stale mount", f"run fusermount3 -u {self.m.mnt}")
        subprocess.run(["fusermount3", "-u", self.m.mnt], check=True)
        self.assertFalse(is_mounted(self.m.mnt))


class CheckConfigTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="keyfs-cc-")
        self.addCleanup(shutil.rmtree, self.dir)
        self.env = dict(os.environ, HOME=self.dir, VAULT_TOKEN="hvs." + os.urandom(8).hex())

    def check(self, text):
        path = os.path.join(self.dir, "omikuji.yaml")
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o600)
        return keyfs("check-config", "-c", path, env=self.env)

    def vault(self, url, extra=""):
        return f"""
key_storage:
  storage_type: vault
  vault:
    url: {url}
    token: ${{VAULT_TOKEN}}
{extra}
  file:
    path: /nonexistent/keys.enc
"""

    def test_http_to_a_remote_host_is_an_error(self):
        r = self.check(self.vault("http://vault.example.com:8200"))
        self.assertEqual(r.returncode, 2)
        self.assertRegex(r.stderr.strip(), r"^omikuji-keyfs: .*omikuji.yaml:\d+:\d+: key_storage.vault: "
                         r"http://vault.example.com:8200 is plain http.*allow_insecure_http: true$")
        self.assertEqual(len(r.stderr.strip().splitlines()), 1)

    def test_http_allowed_or_loopback_warns(self):
        r = self.check(self.vault("http://vault.example.com:8200", "    allow_insecure_http: true"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("warning: key_storage.vault: http://vault.example.com:8200 is plain http", r.stderr)
        self.assertIn("allow_insecure_http: true", r.stdout)
        r = self.check(self.vault("http://127.0.0.1:8200"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("(loopback only)", r.stderr)
        r = self.check(self.vault("https://vault.example.com:8200"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr, "")

    def test_only_the_active_backend_is_printed(self):
        r = self.check(self.vault("https://vault.example.com:8200"))
        self.assertIn("  vault:\n", r.stdout)
        for other in ("  file:", "  keyring:", "  aws_secrets:", "/nonexistent"):
            self.assertNotIn(other, r.stdout)
        self.assertNotIn(self.env["VAULT_TOKEN"], r.stdout + r.stderr)
        r = self.check("key_storage:\n  storage_type: file\n  file:\n    path: /tmp/x.enc\n")
        self.assertIn('  file:\n    path: "/tmp/x.enc"', r.stdout)
        self.assertNotIn("vault:", r.stdout)

    def test_audit_log_mode_is_checked(self):
        r = self.check('keyfs:\n  audit_log_mode: "0644"\n')
        self.assertEqual(r.returncode, 2)
        self.assertIn("omikuji.yaml:2:19: keyfs.audit_log_mode: expected an octal mode", r.stderr)
        r = self.check('keyfs:\n  audit_log_mode: "0640"\n  audit_log_group: adm\n')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('audit_log_mode: "0640"', r.stdout)
        self.assertIn('audit_log_group: "adm"', r.stdout)


class KeyImportTest(MountTestCase):
    def test_created_then_replaced(self):
        r = self.m.cli("key", "import", "--network", "gnosis", "--key", new_key())
        self.assertEqual(r.returncode, 0, r.stderr)
        # through the running mount (contract section 9)
        self.assertEqual(r.stderr.strip(), "created the key for network 'gnosis' in backend 'file' (file)"
                         " (through the running mount)")
        key2 = new_key()
        r = self.m.cli("key", "import", "--network", "gnosis", "--key", key2)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("replaced the key for network 'gnosis'", r.stderr)
        self.assertEqual(self.m.read_key("gnosis"), key2 + "\n")
        # and without a mount, on the backend directly
        self.m.stop()
        r = self.m.cli("key", "import", "--network", "gnosis", "--key", new_key())
        self.assertEqual(r.stderr.strip(), "replaced the key for network 'gnosis' in backend 'file' (file)")
        r = self.m.cli("key", "import", "--network", "zksync", "--key", new_key())
        self.assertEqual(r.stderr.strip(), "created the key for network 'zksync' in backend 'file' (file)")


    def test_app_log_names_backends_as_storage_type(self):
        self.m.write_key("optimism", new_key() + "\n")
        with open(self.m.app_log) as f:
            lines = [json.loads(line) for line in f if line.strip()]
        stored = [entry for entry in lines if entry.get("message") == "key stored"]
        self.assertEqual(len(stored), 1)
        self.assertEqual(stored[0]["storage_type"], "file")
        self.assertFalse(any("backend" in entry for entry in lines), "a log line says backend")


class AuditLogAccessTest(unittest.TestCase):
    """audit_log_mode 0640 + audit_log_group adm: a log shipper in group adm
    (not root) reads the log, also after logrotate's rename + SIGHUP."""

    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest("needs root (a file given to group adm, read as another user)")
        try:
            self.adm = grp.getgrnam("adm").gr_gid
        except KeyError:
            self.skipTest("no group adm on this machine")
        self.m = Mount(keyfs_extra='  audit_log_mode: "0640"\n  audit_log_group: adm\n')
        self.addCleanup(self.m.cleanup)
        os.chmod(self.m.root, 0o755)
        self.m.start()

    def read_as_shipper(self, path):
        return subprocess.run(["setpriv", "--reuid=65534", f"--regid={self.adm}", "--clear-groups",
                               "cat", path], capture_output=True, text=True)

    def test_group_reads_the_log(self):
        self.m.write_key("optimism", new_key() + "\n")
        st = os.stat(self.m.audit_log)
        self.assertEqual(st.st_mode & 0o777, 0o640)
        self.assertEqual(st.st_gid, self.adm)
        r = self.read_as_shipper(self.m.audit_log)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout.splitlines()[-1])["network"], "optimism")
        # others still cannot
        r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                            "cat", self.m.audit_log], capture_output=True, text=True)
        self.assertNotEqual(r.returncode, 0)
        # logrotate: rename, SIGHUP, the new file gets the same mode and group
        os.rename(self.m.audit_log, self.m.audit_log + ".1")
        self.m.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while not os.path.exists(self.m.audit_log) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.m.read_key("optimism")
        st = os.stat(self.m.audit_log)
        self.assertEqual((st.st_mode & 0o777, st.st_gid), (0o640, self.adm))
        r = self.read_as_shipper(self.m.audit_log)
        self.assertEqual(json.loads(r.stdout.splitlines()[-1])["operation"], "get")


if __name__ == "__main__":
    run()
