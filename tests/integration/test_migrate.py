"""`key migrate` through the running mount and audited (contract sections 8
and 9): with a mount writing the same audit log, every read, copy and
removal of a migration goes through it (visible at once, the access rules
of the invoking user, audit lines with that user's uid and the instance in
storage_type); with no mount, the CLI acts on the backends itself and still
writes the audit lines (the chain continues).  Two file instances:
key_storage ("file") and "testnets"; every check looks at what each store
really holds (the CLI opened on that store alone) and at the audit log,
which `audit verify` checks as one chain."""
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from keyfslib import KEYFS_BIN, Mount, new_key, run  # noqa: E402

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def migrate_config(m, rules=""):
    # list_cache_seconds 60: a copy made behind the mount's back would not
    # show in keys/ for a minute; one made through it shows at once.
    return f"""
key_storage:
  storage_type: file
  file:
    path: {m.root}/store/main.enc
{m.logging_and_audit_yaml()}  list_cache_seconds: 60
  backends:
    - name: testnets
      storage_type: file
      file:
        path: {m.root}/store/testnets.enc
      networks: ["*-testnet", "sepolia"]
{rules}"""


class MigrateCase(unittest.TestCase):
    rules = ""

    def setUp(self):
        self.m = Mount()
        self.addCleanup(self.m.cleanup)
        with open(self.m.config, "w") as f:
            f.write(migrate_config(self.m, self.rules))

    def store_cli(self, name, *args):
        """The CLI on one file store alone, with an audit log of its own:
        what that store really holds, seen without the mount."""
        cfg = os.path.join(self.m.root, f"only-{name}.yaml")
        with open(cfg, "w") as f:
            f.write(f"key_storage:\n  storage_type: file\n  file:\n"
                    f"    path: {self.m.root}/store/{name}.enc\n"
                    f"keyfs:\n  audit_log: {self.m.root}/only-{name}-audit.log\n")
        return subprocess.run([KEYFS_BIN, *args, "-c", cfg], capture_output=True, text=True,
                              env=self.m.env, timeout=60, stdin=subprocess.DEVNULL)

    def store_key(self, name, network):
        r = self.store_cli(name, "key", "export", "--network", network, "--yes")
        return r.stdout.strip() if r.returncode == 0 else None

    def put(self, name, network, key):
        r = self.store_cli(name, "key", "import", "--network", network, "--key", key)
        self.assertEqual(r.returncode, 0, r.stderr)

    def lines(self, op, network, storage_type=None):
        return [line for line in self.m.audit_lines()
                if line["operation"] == op and line["network"] == network and
                (storage_type is None or line["storage_type"] == storage_type)]

    def assert_chain_verifies(self):
        n = len(self.m.audit_lines())
        r = subprocess.run([KEYFS_BIN, "audit", "verify", "--expect-seq", str(n),
                            self.m.audit_log], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def assert_audited(self, op, network, storage_type, uid):
        ok = [line for line in self.lines(op, network, storage_type)
              if line["status"] and not line.get("intent")]
        self.assertTrue(ok, f"no audited {op} of {network} on {storage_type}: "
                            f"{self.m.audit_lines()}")
        self.assertEqual(ok[-1]["uid"], uid)


class TestThroughTheMount(MigrateCase):
    def test_between_instances_visible_at_once_and_audited(self):
        key = new_key()
        self.put("main", "sepolia", key)   # left behind in the default store
        self.m.start()
        # sepolia routes to testnets, which does not hold it: not in keys/.
        self.assertEqual(os.listdir(self.m.path("keys")), [])
        r = self.m.cli("key", "migrate", "--from", "file", "--to", "testnets",
                       "--network", "sepolia", "--remove-source")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("sepolia: copied 'file' -> 'testnets', verified, removed from the source",
                      r.stderr)
        self.assertIn("through the running mount", r.stderr)
        self.assertNotIn(key[2:], r.stdout + r.stderr)
        # Visible through the mount at once (the listing is cached for 60 s:
        # only a copy made through the mount updates it).
        self.assertEqual(os.listdir(self.m.path("keys")), ["sepolia"])
        self.assertEqual(self.m.read_key("sepolia"), key + "\n")
        # What the stores hold.
        self.assertEqual(self.store_key("testnets", "sepolia"), key)
        self.assertIsNone(self.store_key("main", "sepolia"))
        # Audited by the mount: the copy as a store on testnets, the removal
        # as a remove on file, with the invoking user's uid; one chain.
        self.assert_audited("store", "sepolia", "testnets", os.getuid())
        self.assert_audited("remove", "sepolia", "file", os.getuid())
        self.assertTrue(self.lines("get", "sepolia", "file"), "the source read is audited")
        self.assertFalse(self.lines("store", "sepolia", "file"))
        self.assert_chain_verifies()

    def test_from_env_through_the_mount(self):
        self.m.start()
        k1, k2 = new_key(), new_key()
        # The environment is the CLI's own, not the mount's.
        r = self.m.cli("key", "migrate", env={"OMIKUJI_KEY_GNOSIS": k1,
                                              "OMIKUJI_KEY_HOLESKY_TESTNET": k2})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("holesky-testnet routes to 'testnets', not 'file'", r.stderr)
        self.assertEqual(self.store_key("main", "gnosis"), k1)
        self.assertEqual(self.store_key("main", "holesky-testnet"), k2)
        self.assertEqual(self.m.read_key("gnosis"), k1 + "\n")
        self.assertEqual(os.listdir(self.m.path("keys")), ["gnosis"])
        self.assert_audited("store", "gnosis", "file", os.getuid())
        self.assert_audited("store", "holesky-testnet", "file", os.getuid())
        # Then on to testnets, where holesky-testnet routes.
        r = self.m.cli("key", "migrate", "--from", "file", "--to", "testnets",
                       "--network", "holesky-testnet", "--remove-source")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(sorted(os.listdir(self.m.path("keys"))), ["gnosis", "holesky-testnet"])
        self.assertEqual(self.m.read_key("holesky-testnet"), k2 + "\n")
        self.assert_audited("store", "holesky-testnet", "testnets", os.getuid())
        self.assert_audited("remove", "holesky-testnet", "file", os.getuid())
        self.assert_chain_verifies()

    def test_refuses_a_different_key_without_force(self):
        old, new = new_key(), new_key()
        self.put("testnets", "sepolia", old)
        self.put("main", "sepolia", new)
        self.m.start()
        self.assertEqual(self.m.read_key("sepolia"), old + "\n")
        r = self.m.cli("key", "migrate", "--from", "file", "--to", "testnets",
                       "--network", "sepolia", "--remove-source")
        self.assertEqual(r.returncode, 1)
        self.assertIn("sepolia: 'testnets' already holds a different key; not replaced "
                      "(--force replaces it)", r.stderr)
        self.assertEqual(self.store_key("testnets", "sepolia"), old)
        self.assertEqual(self.store_key("main", "sepolia"), new, "the source is kept")
        self.assertFalse(self.lines("store", "sepolia"), "nothing was stored")
        self.assertFalse(self.lines("remove", "sepolia"), "nothing was removed")
        r = self.m.cli("key", "migrate", "--from", "file", "--to", "testnets",
                       "--network", "sepolia", "--force")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.m.read_key("sepolia"), new + "\n")
        self.assertEqual(self.store_key("testnets", "sepolia"), new)
        self.assertEqual(self.store_key("main", "sepolia"), new, "no --remove-source")
        self.assert_audited("store", "sepolia", "testnets", os.getuid())
        self.assertFalse(self.lines("remove", "sepolia"))
        # The same key again is not a conflict, and stores nothing.
        stores = len(self.lines("store", "sepolia"))
        r = self.m.cli("key", "migrate", "--from", "file", "--to", "testnets",
                       "--network", "sepolia")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("sepolia: already in 'file' -> 'testnets', verified", r.stderr)
        self.assertEqual(len(self.lines("store", "sepolia")), stores)
        self.assert_chain_verifies()

    def test_an_instance_the_mount_does_not_have(self):
        # The command's config names an instance the running mount (same
        # audit log, older config) does not have: said, nothing changed.
        self.m.start()
        cfg = os.path.join(self.m.root, "newer.yaml")
        with open(self.m.config) as f:
            text = f.read()
        with open(cfg, "w") as f:
            f.write(text + f"    - name: extra\n      storage_type: file\n"
                           f"      file:\n        path: {self.m.root}/store/extra.enc\n")
        os.chmod(cfg, 0o600)
        r = subprocess.run([KEYFS_BIN, "key", "migrate", "--from", "extra", "--to", "file",
                            "--network", "gnosis", "-c", cfg], capture_output=True, text=True,
                           env=self.m.env, timeout=60, stdin=subprocess.DEVNULL)
        self.assertEqual(r.returncode, 1)
        self.assertIn("gnosis: cannot read from 'extra': no backend instance named 'extra'",
                      r.stderr)
        self.assertIsNone(self.store_key("main", "gnosis"))


class TestWithoutAMount(MigrateCase):
    def test_audited_and_the_chain_continues_into_the_mount(self):
        key = new_key()
        self.put("main", "sepolia", key)
        r = self.m.cli("key", "migrate", "--from", "file", "--to", "testnets",
                       "--remove-source")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("through the running mount", r.stderr)
        self.assertEqual(self.store_key("testnets", "sepolia"), key)
        self.assertIsNone(self.store_key("main", "sepolia"))
        self.assert_audited("list", "", "file", os.getuid())
        self.assert_audited("store", "sepolia", "testnets", os.getuid())
        self.assert_audited("remove", "sepolia", "file", os.getuid())
        before = len(self.m.audit_lines())
        # Then a mount on the same audit log, and a migrate through it: one chain.
        self.m.start()
        self.assertEqual(self.m.read_key("sepolia"), key + "\n")
        k2 = new_key()
        r = self.m.cli("key", "migrate", "--network", "gnosis", env={"OMIKUJI_KEY_GNOSIS": k2})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertGreater(len(self.m.audit_lines()), before)
        self.assert_audited("store", "gnosis", "file", os.getuid())
        self.assert_chain_verifies()


@unittest.skipUnless(os.geteuid() == 0, "needs root to act as another user (setpriv)")
class TestDenied(MigrateCase):
    # nobody may read and list everything but write nowhere.
    rules = ('  access:\n'
             '    - networks: ["*"]\n'
             '      read: ["uid:0", "uid:65534"]\n'
             '      write: ["uid:0"]\n'
             '      remove: ["uid:0"]\n'
             '      list: ["uid:0", "uid:65534"]\n')

    def test_a_user_without_the_grant_cannot_migrate(self):
        key = new_key()
        self.put("main", "sepolia", key)
        os.chmod(self.m.root, 0o755)
        os.chmod(self.m.config, 0o644)   # holds no secret
        self.m.start()
        testnets = open(os.path.join(self.m.root, "store", "testnets.enc"), "rb").read() \
            if os.path.exists(os.path.join(self.m.root, "store", "testnets.enc")) else None
        r = subprocess.run([*NOBODY, KEYFS_BIN, "key", "migrate", "--from", "file", "--to",
                            "testnets", "--network", "sepolia", "--remove-source",
                            "-c", self.m.config], capture_output=True, text=True,
                           env=self.m.env, stdin=subprocess.DEVNULL, timeout=60)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("sepolia: cannot store in 'testnets': access denied", r.stderr)
        self.assertNotIn(key[2:], r.stdout + r.stderr)
        after = open(os.path.join(self.m.root, "store", "testnets.enc"), "rb").read() \
            if os.path.exists(os.path.join(self.m.root, "store", "testnets.enc")) else None
        self.assertEqual(after, testnets, "the target store changed")
        self.assertEqual(self.store_key("main", "sepolia"), key, "the source is kept")
        denied = self.lines("store", "sepolia", "testnets")
        self.assertEqual([(d["status"], d["uid"], d["error"]) for d in denied],
                         [(False, 65534, "access denied")])
        self.assertFalse(self.lines("remove", "sepolia"))
        self.assertEqual(os.listdir(self.m.path("keys")), [])
        # Root, who has the grant, can.
        r = self.m.cli("key", "migrate", "--from", "file", "--to", "testnets",
                       "--network", "sepolia", "--remove-source")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.m.read_key("sepolia"), key + "\n")
        self.assert_chain_verifies()


if __name__ == "__main__":
    run()
