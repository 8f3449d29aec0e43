"""The command line: every subcommand, its error paths and exit codes, and
no key material in any output except `key export`."""
import os
import stat
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from keyfslib import KEYFS_BIN, Mount, new_key, run  # noqa: E402


class CliTest(unittest.TestCase):
    def setUp(self):
        self.m = Mount()   # not started: the CLI works on the backend directly

    def tearDown(self):
        self.m.cleanup()

    def no_secret(self, r, key):
        for text in (r.stdout, r.stderr):
            self.assertNotIn(key.removeprefix("0x"), text)

    def test_help_and_version(self):
        # (each command's own --help: test_operator.py)
        for args in (["--help"], ["-h"], ["help"]):
            r = subprocess.run([KEYFS_BIN, *args], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, args)
            self.assertIn("Usage: omikuji-keyfs", r.stdout)
            for cmd in ("mount", "key import", "key export", "key remove", "key list",
                        "audit verify", "check-config"):
                self.assertIn(cmd, r.stdout)
        r = subprocess.run([KEYFS_BIN, "--version"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r"^omikuji-keyfs \d+\.\d+\.\d+\n$")

    def test_usage_errors_exit_2(self):
        cases = [[], ["frobnicate"], ["key"], ["key", "frob"], ["mount"], ["mount", "a", "b"],
                 ["key", "import"], ["key", "import", "--network", "bad name"],
                 ["key", "export", "--network"], ["mount", "--bogus", "x"], ["audit"],
                 ["audit", "verify", "--start", "x"], ["audit", "verify", "--expect-seq", "-1"]]
        for args in cases:
            r = subprocess.run([KEYFS_BIN, *args], capture_output=True, text=True,
                               env=self.m.env, stdin=subprocess.DEVNULL)
            self.assertEqual(r.returncode, 2, f"{args}: {r.stderr}")
            self.assertTrue(r.stderr.startswith("omikuji-keyfs: "), args)
            self.assertEqual(r.stdout, "", args)

    def test_import_export_list_remove(self):
        k1, k2, k3 = new_key(), new_key(prefix=""), new_key()
        r = self.m.cli("key", "import", "--network", "eth", "--key", k1)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.no_secret(r, k1)
        keyfile = os.path.join(self.m.root, "k2.txt")
        with open(keyfile, "w") as f:
            f.write(k2 + "\n")
        r = self.m.cli("key", "import", "--network", "base", "--file", keyfile)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.no_secret(r, k2)
        r = self.m.cli("key", "import", "--network", "polygon", input=k3 + "\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.no_secret(r, k3)

        r = self.m.cli("key", "list")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.split(), ["base", "eth", "polygon"])

        r = self.m.cli("key", "export", "--network", "eth", "--yes")
        self.assertEqual((r.returncode, r.stdout), (0, k1 + "\n"), r.stderr)
        r = self.m.cli("key", "export", "--network", "base", "--yes")
        self.assertEqual(r.stdout, "0x" + k2 + "\n")   # stored in canonical form (issue 9)
        r = self.m.cli("key", "export", "--network", "polygon", "--yes")
        self.assertEqual(r.stdout, k3 + "\n")

        # export/remove without --yes and without a terminal refuse
        r = self.m.cli("key", "export", "--network", "eth")
        self.assertEqual(r.returncode, 2)
        self.assertEqual(r.stdout, "")
        r = self.m.cli("key", "remove", "--network", "eth")
        self.assertEqual(r.returncode, 2)

        r = self.m.cli("key", "remove", "--network", "eth", "--yes")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.m.cli("key", "list")
        self.assertEqual(r.stdout.split(), ["base", "polygon"])
        r = self.m.cli("key", "remove", "--network", "eth", "--yes")
        self.assertEqual(r.returncode, 1)
        self.assertIn("no key for network 'eth'", r.stderr)
        r = self.m.cli("key", "export", "--network", "eth", "--yes")
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stdout, "")

    def test_import_errors(self):
        k = new_key()
        r = self.m.cli("key", "import", "--network", "eth", "--key", k)
        self.assertEqual(r.returncode, 0)
        for bad in ("0x1234", "0x" + "0" * 64, "zz" * 32):
            r = self.m.cli("key", "import", "--network", "eth", "--key", bad)
            self.assertEqual(r.returncode, 1, bad)
            self.assertIn("invalid key", r.stderr)
            self.assertNotIn(bad, r.stderr)
        r = self.m.cli("key", "import", "--network", "eth", "--key", k, "--file", "/etc/hostname")
        self.assertEqual(r.returncode, 2)
        r = self.m.cli("key", "import", "--network", "eth", "--file", "/nonexistent/key")
        self.assertEqual(r.returncode, 1)
        self.assertIn("/nonexistent/key", r.stderr)
        # the stored key survived every failed import
        r = self.m.cli("key", "export", "--network", "eth", "--yes")
        self.assertEqual(r.stdout, k + "\n")

    def test_wrong_passphrase_is_a_clear_error(self):
        env = {"OMIKUJI_KEYFS_PASSPHRASE": "correct horse"}
        k = new_key()
        r = self.m.cli("key", "import", "--network", "eth", "--key", k, env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.m.cli("key", "export", "--network", "eth", "--yes",
                       env={"OMIKUJI_KEYFS_PASSPHRASE": "wrong"})
        self.assertEqual(r.returncode, 1)
        self.assertIn("wrong passphrase", r.stderr)
        self.assertEqual(r.stdout, "")
        r = self.m.cli("key", "export", "--network", "eth", "--yes", env=env)
        self.assertEqual(r.stdout, k + "\n")

    def test_check_config(self):
        r = self.m.cli("check-config")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("storage_type: file", r.stdout)
        self.assertIn(self.m.store, r.stdout)
        bad = os.path.join(self.m.root, "bad.yaml")
        with open(bad, "w") as f:
            f.write("key_storage:\n  storage_type: file\n  flie:\n    path: /x\n")
        r = subprocess.run([KEYFS_BIN, "check-config", "-c", bad], capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)
        self.assertEqual(r.stderr.count("\n"), 1, r.stderr)
        self.assertIn("bad.yaml:3:3:", r.stderr)
        r = subprocess.run([KEYFS_BIN, "check-config", "-c", "/nonexistent.yaml"],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)
        self.assertIn("/nonexistent.yaml", r.stderr)

    def test_check_config_masks_secrets(self):
        token = "hvs." + os.urandom(12).hex()
        cfg = os.path.join(self.m.root, "vault.yaml")
        with open(cfg, "w") as f:
            f.write(f"key_storage:\n  storage_type: vault\n  vault:\n    url: http://127.0.0.1:1\n"
                    f"    token: {token}\n")
        os.chmod(cfg, 0o600)
        r = subprocess.run([KEYFS_BIN, "check-config", "-c", cfg], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn(token, r.stdout + r.stderr)
        self.assertIn("********", r.stdout)
        # group/world-readable config holding a secret is refused
        os.chmod(cfg, 0o644)
        r = subprocess.run([KEYFS_BIN, "check-config", "-c", cfg], capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)
        self.assertIn("chmod 600", r.stderr)
        self.assertNotIn(token, r.stderr)
        r = subprocess.run([KEYFS_BIN, "check-config", "--insecure-config-permissions", "-c", cfg],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_config_search_order(self):
        env = dict(self.m.env)
        env["OMIKUJI_CONFIG"] = self.m.config
        r = subprocess.run([KEYFS_BIN, "check-config"], capture_output=True, text=True, env=env,
                           cwd=self.m.root)
        self.assertIn(f"loaded from: {self.m.config}", r.stdout)
        env.pop("OMIKUJI_CONFIG")
        r = subprocess.run([KEYFS_BIN, "check-config"], capture_output=True, text=True, env=env,
                           cwd="/")
        self.assertIn("built-in defaults", r.stdout)
        self.assertIn(os.path.join(self.m.root, ".local/share/omikuji-keyfs/keys.enc"), r.stdout)

    def test_audit_verify_cli(self):
        m = self.m
        m.start()
        m.write_key("eth", new_key() + "\n")
        m.read_key("eth")
        m.stop()
        r = subprocess.run([KEYFS_BIN, "audit", "verify", m.audit_log], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        r = m.cli("audit", "verify")   # the path from the config
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        with open(m.audit_log) as f:
            lines = f.readlines()
        lines[0] = lines[0].replace('"eth"', '"ETH"')
        with open(m.audit_log, "w") as f:
            f.writelines(lines)
        r = subprocess.run([KEYFS_BIN, "audit", "verify", m.audit_log], capture_output=True, text=True)
        self.assertEqual(r.returncode, 1)
        self.assertIn("line 1", r.stdout + r.stderr)
        r = subprocess.run([KEYFS_BIN, "audit", "verify", "/nonexistent.log"], capture_output=True, text=True)
        self.assertNotEqual(r.returncode, 0)


if __name__ == "__main__":
    run()
