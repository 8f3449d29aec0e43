"""Asynchronous cold opens (issue 15, goal 4): an open of a key whose fetch
is already in flight parks on that fetch instead of holding a FUSE worker,
and is answered by the thread that made the fetch.  Through a real mount
(-o allow_other, access rules) against the Vault test server, whose GETs of
the keys under test are held at a gate (fault "slow"/"hang" with a long
delay; setting another fault opens it), readers run as root, as nobody
(65534) and as a uid with a write grant but no read grant (65533).

The daemon has at most 256 FUSE workers.  400 opens of two uncached keys
are started and held at the gate: on code that holds a worker per open, 256
of them fill every worker and the rest, like any other request, wait in the
kernel until the fetch ends; here a read of a cached key and a denied open
are answered while the 400 are still parked."""
import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
SRC = os.environ.get("TESTS_SOURCE_DIR", os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(SRC, "servers"))
from keyfslib import Mount, metric, needs_root, new_key, run  # noqa: E402
from test_vault_mount import PREFIX, vault_config  # noqa: E402
import vaultlib  # noqa: E402

RULES = """  access:
    - networks: ["net-*", "hot"]
      read: ["uid:0", "uid:65534"]
      write: ["uid:0", "uid:65533"]
      remove: ["uid:0"]
      list: ["uid:0", "uid:65534", "uid:65533"]
"""

# The readers: one thread per path given, all released at once by a barrier;
# "go" is printed when they are released, then one JSON list of
# [path, "ok", sha256 of the content] or [path, "err", errno].  Never the key.
READER = r"""
import hashlib, json, sys, threading
paths = sys.argv[1:]
out = [None] * len(paths)
barrier = threading.Barrier(len(paths), action=lambda: print("go", flush=True))
def one(i):
    barrier.wait()
    try:
        with open(paths[i], "rb") as f:
            out[i] = [paths[i], "ok", hashlib.sha256(f.read()).hexdigest()]
    except OSError as e:
        out[i] = [paths[i], "err", e.errno]
threads = [threading.Thread(target=one, args=(i,)) for i in range(len(paths))]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(out), flush=True)
"""


def as_uid(uid, argv):
    if uid == 0:
        return argv
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *argv]


class Readers:
    """A reader process of len(paths) threads as uid."""

    def __init__(self, uid, paths):
        self.proc = subprocess.Popen(as_uid(uid, ["/usr/bin/python3", "-c", READER, *paths]),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     cwd="/")
        line = self.proc.stdout.readline()
        if line.strip() != "go":
            raise AssertionError(f"readers did not start: {line!r} {self.proc.stderr.read()}")

    def results(self, timeout=60):
        out, err = self.proc.communicate(timeout=timeout)
        if self.proc.returncode != 0:
            raise AssertionError(f"reader process failed: {err}")
        return json.loads(out)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def sha(key):
    return hashlib.sha256((key + "\n").encode()).hexdigest()


@needs_root
class ParkedOpensTest(unittest.TestCase):
    def setUp(self):
        self.vs = vaultlib.VaultServer()
        self.addCleanup(self.vs.cleanup)
        self.vs.start()
        self.keys = {n: new_key() for n in ("net-a", "net-b", "net-c", "net-d", "hot")}
        for n, k in self.keys.items():
            self.vs.kv_put(f"{PREFIX}/{n}", {"private_key": k})
        self.m = Mount(extra_args=["-o", "allow_other"],
                       env={"VAULT_TOKEN": self.vs.root_token})
        self.addCleanup(self.m.cleanup)
        os.chmod(self.m.root, 0o755)
        with open(self.m.config, "w") as f:
            f.write(vault_config(self.m, self.vs, ttl=300, timeout=60, retries=0,
                                 keyfs_extra=RULES))
        self.m.start()
        self.readers = []
        self.addCleanup(self.kill_readers)
        # The listing is cached, and hot is a cached key.
        self.assertEqual(self.m.read_key("hot"), self.keys["hot"] + "\n")

    def kill_readers(self):
        self.vs.clear_fault()   # never leave a reader held at the gate
        for r in self.readers:
            r.kill()

    def gate(self, mode="slow"):
        """Hold every GET of keys/net-* until the next fault is set."""
        self.vs.fault(mode, delay=120, path_prefix=f"/v1/secret/data/{PREFIX}/net-")

    def gets(self, network):
        return self.vs.route_count("GET", f"/v1/secret/data/{PREFIX}/{network}")

    def start_readers(self, uid, paths):
        r = Readers(uid, paths)
        self.readers.append(r)
        return r

    def wait_gets(self, networks, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self.gets(n) >= 1 for n in networks):
                return
            time.sleep(0.05)
        self.fail(f"no backend GET of {networks} arrived")

    def open_in_thread(self, argv):
        """Run argv (a reader as some uid) in a thread; the result or None."""
        box = {}

        def go():
            box["r"] = subprocess.run(argv, capture_output=True, text=True, cwd="/")
        t = threading.Thread(target=go)
        t.start()
        return t, box

    def assert_daemon_serves(self):
        """The daemon is still up, with no sanitizer report (ASan, TSan
        builds)."""
        self.assertIsNone(self.m.proc.poll(), self.m.daemon_stderr()[-2000:])
        self.assert_no_sanitizer_report()

    def assert_no_sanitizer_report(self):
        stderr = self.m.daemon_stderr()
        for word in ("AddressSanitizer", "LeakSanitizer", "ThreadSanitizer", "runtime error"):
            self.assertNotIn(word, stderr)

    def get_lines(self, networks):
        return [x for x in self.m.audit_lines()
                if x["operation"] == "get" and x["network"] in networks]

    def test_parked_opens_hold_no_worker(self):
        m = self.m
        before = m.metrics()
        hits0 = metric(before, "omikuji_key_cache_hits_total", backend="vault")
        misses0 = metric(before, "omikuji_key_cache_misses_total", backend="vault")
        self.gate()
        nets = ["net-a", "net-b"]
        root = self.start_readers(0, [m.key_path(nets[i % 2]) for i in range(300)])
        nobody = self.start_readers(65534, [m.key_path(nets[i % 2]) for i in range(100)])
        self.wait_gets(nets)
        time.sleep(1.0)   # the 400 opens reach the daemon (or fill its workers)

        # While all 400 are held: a cached key's read, metrics, and an open
        # refused by the rules (65533 may write net-a, not read it), are
        # answered.
        cached, cached_box = self.open_in_thread(["cat", m.key_path("hot")])
        metrics, metrics_box = self.open_in_thread(["cat", m.path("metrics")])
        denied, denied_box = self.open_in_thread(
            as_uid(65533, ["cat", m.key_path("net-a")]))
        deadline = time.monotonic() + 15   # well inside the GETs' 60 s timeout
        for t in (cached, metrics, denied):
            t.join(max(0.0, deadline - time.monotonic()))
        still_held = root.proc.poll() is None and nobody.proc.poll() is None
        answered = not any(t.is_alive() for t in (cached, metrics, denied))
        self.vs.clear_fault()   # open the gate
        for t in (cached, metrics, denied):
            t.join(60)
        self.assertTrue(answered, "a cached read, metrics or a denied open waited for the "
                                  "held fetches: parked opens hold FUSE workers")
        self.assertTrue(still_held, "the readers finished while the backend held the GETs")
        self.assertEqual(cached_box["r"].stdout, self.keys["hot"] + "\n")
        self.assertIn("omikuji_key_cache_hits_total", metrics_box["r"].stdout)
        self.assertIn("Permission denied", denied_box["r"].stderr)

        results = root.results() + nobody.results()
        self.assertEqual(len(results), 400)
        for path, status, value in results:
            net = os.path.basename(path)
            self.assertEqual((status, value), ("ok", sha(self.keys[net])), path)
        # Single-flight: one backend call per key for the 400 opens.
        self.assertEqual([self.gets(n) for n in nets], [1, 1])

        # Every open has its own audit line, with its own uid; the two
        # that made the fetch are the uncached ones.
        lines = self.get_lines(nets)
        ok = [x for x in lines if x["status"]]
        self.assertEqual(len(ok), 400)
        self.assertEqual(sum(1 for x in ok if x["uid"] == 0), 300)
        self.assertEqual(sum(1 for x in ok if x["uid"] == 65534), 100)
        # ... and its own caller's pid (the reader thread's id: one open each)
        # and process: the same fields as any get line.
        self.assertEqual(len({x["pid"] for x in ok}), 400)
        self.assertEqual({x["process"] for x in ok}, {"python3"})
        shapes = {frozenset(x) - {"anomaly"} for x in ok}   # a burst is flagged
        self.assertEqual(len(shapes), 1, [sorted(x) for x in shapes])
        self.assertEqual(sorted(x["network"] for x in ok if not x["cached"]), nets)
        for net in nets:
            self.assertEqual(sum(1 for x in ok if x["network"] == net), 200)
        denied_lines = [x for x in lines if not x["status"]]
        self.assertEqual([(x["uid"], x["network"]) for x in denied_lines], [(65533, "net-a")])
        # Counted as today: a waiter is a hit, a fetch a miss.
        after = m.metrics()
        self.assertEqual(metric(after, "omikuji_key_cache_misses_total", backend="vault")
                         - misses0, 2)
        self.assertEqual(metric(after, "omikuji_key_cache_hits_total", backend="vault")
                         - hits0, 398 + 1)   # and the cached read of hot
        self.assert_daemon_serves()

    def test_backend_error_reaches_every_parked_open(self):
        m = self.m
        failures0 = metric(m.metrics(), "omikuji_key_operations_total", 0, operation="get",
                           backend="vault", status="failure")
        self.gate("hang")
        root = self.start_readers(0, [m.key_path("net-c")] * 60)
        nobody = self.start_readers(65534, [m.key_path("net-c")] * 20)
        self.wait_gets(["net-c"])
        time.sleep(0.5)
        # Open the gate with a failure: the held GET's connection drops, and
        # the backend answers 500 from now on.
        self.vs.fault("500", path_prefix=f"/v1/secret/data/{PREFIX}/net-")
        results = root.results() + nobody.results()
        self.assertEqual(len(results), 80)
        self.assertEqual({(s, v) for _, s, v in results}, {("err", errno.EIO)})
        lines = self.get_lines(["net-c"])
        self.assertEqual(len(lines), 80)
        self.assertFalse(any(x["status"] for x in lines))
        self.assertEqual(sum(1 for x in lines if x["uid"] == 0), 60)
        self.assertEqual(sum(1 for x in lines if x["uid"] == 65534), 20)
        self.assertEqual(len({x["error"] for x in lines}), 1, lines[:2])
        self.assertTrue(lines[0]["error"])
        self.assertNotIn(self.keys["net-c"][2:], json.dumps(lines))
        # Each open counted as a failed get, as a failed read always was.
        self.assertEqual(metric(m.metrics(), "omikuji_key_operations_total", operation="get",
                                backend="vault", status="failure") - failures0, 80)
        # Nothing cached: the next open asks the backend again, and succeeds.
        self.vs.clear_fault()
        self.assertEqual(m.read_key("net-c"), self.keys["net-c"] + "\n")
        self.assert_daemon_serves()

    def test_stop_while_opens_are_parked(self):
        m = self.m
        self.gate()
        readers = self.start_readers(0, [m.key_path("net-d")] * 50)
        self.wait_gets(["net-d"])
        time.sleep(0.5)
        m.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        self.vs.clear_fault()
        results = readers.results(timeout=60)
        code = m.proc.wait(timeout=30)
        self.assertEqual(code, 0, m.daemon_stderr()[-2000:])
        self.assert_no_sanitizer_report()
        # Every open was answered (the key, or an error once the mount went:
        # the reads after a stopped loop), none left hanging.
        self.assertEqual(len(results), 50)
        for _, status, value in results:
            if status == "ok":
                self.assertEqual(value, sha(self.keys["net-d"]))
            else:
                self.assertIn(value, (errno.ENOTCONN, errno.EIO, errno.ENODEV))
        lines = self.get_lines(["net-d"])
        self.assertEqual(len(lines), 50, "one audit line per open, also at stop")
        self.assertTrue(all(x["status"] for x in lines))

    def test_killed_readers_while_parked(self):
        m = self.m
        self.gate()
        readers = self.start_readers(0, [m.key_path("net-a")] * 30)
        self.wait_gets(["net-a"])
        time.sleep(0.5)
        readers.proc.kill()   # SIGKILL: the kernel keeps the sent opens until answered
        time.sleep(0.2)
        self.vs.clear_fault()
        readers.proc.wait(timeout=30)
        # Each open was still answered and audited; the handles the dead
        # process never used were released (LeakSanitizer checks at stop).
        deadline = time.monotonic() + 10
        while len(self.get_lines(["net-a"])) < 30 and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(len(self.get_lines(["net-a"])), 30)
        self.assertEqual(m.read_key("net-a"), self.keys["net-a"] + "\n")
        self.assert_daemon_serves()
        subprocess.run(["fusermount3", "-u", m.mnt], check=True)
        self.assertEqual(m.proc.wait(timeout=30), 0, m.daemon_stderr()[-2000:])
        self.assert_no_sanitizer_report()


if __name__ == "__main__":
    run()
