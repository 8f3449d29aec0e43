"""Locked memory during a large listing (issue 15 goal 3, s6-lock): a Vault
LIST answer holds names, never a key, so it is received into ordinary
memory (wiped when freed) instead of locked memory; a key GET's answer is
still received into locked memory.

Through a real mount against the Vault test server.  The server's "stall"
fault sends each answer but its last byte and holds that byte at a gate:
while held, the daemon has the whole answer but one byte in its receive
buffer.  A sampler reads the daemon's VmLck (/proc/PID/status) every
millisecond from before the request until the read through the mount
returns, and the peak above the VmLck before it is compared:
- `ls keys/` of 30 000 names (a ~300 KB LIST answer, which locked a
  512 KiB buffer before this change): the peak stays within 64 KiB of
  before (nothing else locks memory for a listing);
- a read of a key whose Vault entry also holds ~400 KB of other data: the
  peak is at least 256 KiB above before (the answer sits in a locked
  buffer of 512 KiB), as a key's answer always was.
The sanitizer builds make mlock(2) a no-op: the test skips there."""
import os
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
SRC = os.environ.get("TESTS_SOURCE_DIR", os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(SRC, "servers"))
from keyfslib import Mount, new_key, run  # noqa: E402
from test_vault_mount import PREFIX, vault_config  # noqa: E402
import vaultlib  # noqa: E402

NAMES = 30000
SANITIZED = os.environ.get("KEYFS_SANITIZE", "none") not in ("", "none")


def vmlck_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmLck:"):
                return int(line.split()[1])
    raise AssertionError("no VmLck in /proc/%d/status" % pid)


class Sampler:
    """The peak of VmLck while it runs, read every millisecond."""

    def __init__(self, pid):
        self.pid = pid
        self.peak = vmlck_kb(pid)
        self.samples = 0
        self.stop_ = threading.Event()
        self.thread = threading.Thread(target=self.loop)
        self.thread.start()

    def loop(self):
        while not self.stop_.is_set():
            self.peak = max(self.peak, vmlck_kb(self.pid))
            self.samples += 1
            time.sleep(0.001)

    def stop(self):
        self.stop_.set()
        self.thread.join()
        return self.peak


class LockedMemoryTest(unittest.TestCase):
    def setUp(self):
        if SANITIZED:
            self.skipTest("the sanitizers make mlock() a no-op: VmLck says nothing")
        self.vs = vaultlib.VaultServer()
        self.addCleanup(self.vs.cleanup)
        self.vs.start()
        self.names = ["n%05d" % i for i in range(NAMES)]
        # Throwaway keys; only "big" is ever read.
        for i in range(0, NAMES, 5000):
            self.vs.preload({f"{PREFIX}/{n}": {"private_key": vaultlib.random_evm_key()}
                             for n in self.names[i:i + 5000]})
        self.big = new_key()
        self.vs.kv_put(f"{PREFIX}/big", {"private_key": self.big,
                                         "note": os.urandom(200000).hex()})
        self.m = Mount(env={"VAULT_TOKEN": self.vs.root_token})
        self.addCleanup(self.m.cleanup)
        with open(self.m.config, "w") as f:
            f.write(vault_config(self.m, self.vs, ttl=300, timeout=60, retries=0))
        self.m.start()
        self.addCleanup(self.vs.clear_fault)   # never leave a request at the gate
        with open(f"/proc/{self.m.proc.pid}/maps") as f:
            maps = f.read()
        if "libasan" in maps or "libtsan" in maps:
            self.skipTest("sanitizer build: mlock() is a no-op")

    def held_peak(self, path_prefix, route, action):
        """Run action() while every answer under path_prefix is held one
        byte short; the VmLck before, and the peak until action returned."""
        pid = self.m.proc.pid
        before = vmlck_kb(pid)
        count0 = self.vs.stats()["by_route"].get(route, 0)
        self.vs.fault("stall", delay=60, path_prefix=path_prefix)
        sampler = Sampler(pid)
        box = {}

        def go():
            try:
                box["r"] = action()
            except OSError as e:
                box["e"] = e
        t = threading.Thread(target=go)
        t.start()
        deadline = time.monotonic() + 30
        while self.vs.stats()["by_route"].get(route, 0) <= count0:
            self.assertLess(time.monotonic(), deadline, "no %s reached the server: %r %s" % (
                route, sorted(self.vs.stats()["by_route"])[-5:], self.m.daemon_stderr()[-2000:]))
            time.sleep(0.02)
        time.sleep(1.0)           # all but one byte arrive; the sampler sees it held
        held = t.is_alive()
        self.vs.clear_fault()
        t.join(60)
        peak = sampler.stop()
        self.assertTrue(held, "the read ended while the answer was held")
        self.assertNotIn("e", box, box.get("e"))
        self.assertGreater(sampler.samples, 100)
        return before, peak, box["r"]

    def test_listing_unlocked_key_answer_locked(self):
        m = self.m
        keys = m.path("keys")
        self.assertEqual(len(os.listdir(keys)), NAMES + 1)   # the first listing
        time.sleep(1.5)                                      # list_cache_seconds: 1

        before, peak, names = self.held_peak(
            f"/v1/secret/metadata/{PREFIX}", f"LIST /v1/secret/metadata/{PREFIX}",
            lambda: os.listdir(keys))
        self.assertEqual(sorted(names), sorted(self.names + ["big"]))
        sys.stderr.write("listing of %d names: VmLck %d kB before, peak %d kB\n" % (
            NAMES + 1, before, peak))
        self.assertLess(peak - before, 64, "the LIST answer was received into locked memory "
                        "(VmLck %d -> %d kB)" % (before, peak))

        def read_big():
            with open(m.key_path("big")) as f:
                return f.read()
        before, peak, text = self.held_peak(
            f"/v1/secret/data/{PREFIX}/big", f"GET /v1/secret/data/{PREFIX}/big", read_big)
        self.assertEqual(text, self.big + "\n")
        sys.stderr.write("key GET of a ~400 KB answer: VmLck %d kB before, peak %d kB\n" % (
            before, peak))
        self.assertGreaterEqual(peak - before, 256, "the key's answer was not received into "
                                "locked memory (VmLck %d -> %d kB)" % (before, peak))
        self.assertNotIn("no longer locked", m.daemon_stderr())
        self.assertIsNone(m.proc.poll())


if __name__ == "__main__":
    run()
