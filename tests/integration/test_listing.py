"""keys/ and addresses/ with thousands of names (issue 15), through a real
mount of the Vault test server (preloaded in one control request): every
name listed exactly once although the kernel reads the directory in many
READDIR requests (served by offset from one listing per open directory),
one audit line per listing, a rewind lists again, and a lookup after the
listing went stale still finds known names and names added beside the
mount."""
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
SRC = os.environ.get("TESTS_SOURCE_DIR", os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(SRC, "servers"))
from keyfslib import Mount, run  # noqa: E402
import vaultlib  # noqa: E402
from test_addresses import address_of  # noqa: E402
from test_vault_mount import PREFIX, vault_config  # noqa: E402

N = 3000   # about 30 READDIR replies of 4 KiB


class ListingTest(unittest.TestCase):
    def setUp(self):
        self.vs = vaultlib.VaultServer()
        self.addCleanup(self.vs.cleanup)
        self.vs.start()
        self.names = ["n%05d" % i for i in range(N)]
        self.keys = {x: vaultlib.random_evm_key() for x in self.names}
        self.assertEqual(self.vs.preload({f"{PREFIX}/{x}": {"private_key": k}
                                          for x, k in self.keys.items()}), N)
        self.m = Mount(env={"VAULT_TOKEN": self.vs.root_token})
        self.addCleanup(self.m.cleanup)
        with open(self.m.config, "w") as f:
            f.write(vault_config(self.m, self.vs))
        self.m.start()

    def lists(self):
        return sum(1 for r in self.m.audit_lines() if r.get("operation") == "list")

    def test_every_name_once_one_audit_line(self):
        keys = self.m.path("keys")
        before = self.lists()
        names = os.listdir(keys)
        self.assertEqual(len(names), len(set(names)), "a name listed twice across READDIRs")
        self.assertEqual(sorted(names), self.names)
        self.assertEqual(self.lists(), before + 1, "one audit line per listing, not per READDIR")
        # The kernel may ask again from an offset in the middle (a small
        # getdents buffer): scandir reads in chunks of its own.
        with os.scandir(keys) as it:
            again = [e.name for e in it]
        self.assertEqual(sorted(again), self.names)
        self.assertEqual(self.lists(), before + 2)

    def test_rewind_lists_again(self):
        keys = self.m.path("keys")
        fd = os.open(keys, os.O_RDONLY | os.O_DIRECTORY)
        try:
            first = os.listdir(fd)
            # A key written beside the mount shows once the listing cache
            # (1 s) expired and the directory is read from the start again.
            self.vs.kv_put(f"{PREFIX}/zz-new", {"private_key": vaultlib.random_evm_key()})
            time.sleep(1.2)
            os.lseek(fd, 0, os.SEEK_SET)
            second = os.listdir(fd)
        finally:
            os.close(fd)
        self.assertNotIn("zz-new", first)
        self.assertEqual(sorted(second), self.names + ["zz-new"])

    def test_stale_listing_lookups(self):
        os.listdir(self.m.path("keys"))
        time.sleep(1.2)   # list_cache_seconds 1: the listing is stale
        # A known name exists at once (the listing refreshes behind it) ...
        os.stat(self.m.key_path(self.names[N // 2]))
        self.assertEqual(self.m.read_key(self.names[N // 2]), self.keys[self.names[N // 2]] + "\n")
        # ... a name written beside the mount is found by a fresh listing ...
        self.vs.kv_put(f"{PREFIX}/zz-beside", {"private_key": vaultlib.random_evm_key()})
        time.sleep(1.2)
        os.stat(self.m.key_path("zz-beside"))
        # ... and a name nowhere is not.
        with self.assertRaises(FileNotFoundError):
            os.stat(self.m.key_path("zz-nowhere"))

    def test_addresses_listing(self):
        # Read a few keys: their addresses are listed, each once.
        for x in self.names[:50]:
            self.m.read_key(x)
        listed = os.listdir(self.m.path("addresses"))
        self.assertEqual(len(listed), len(set(listed)))
        self.assertTrue(set(self.names[:50]) <= set(listed))
        with open(self.m.path("addresses", self.names[7])) as f:
            self.assertEqual(f.read().strip(), address_of(self.keys[self.names[7]]))


if __name__ == "__main__":
    run()
