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
are answered while the 400 are still parked.

Opens of addresses/<network> (s6-lock) park the same way on the fetch of
the network's key: the same four cases, with address opens (and key-file
opens of the same key on the same fetch)."""
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
from keyfslib import Mount, is_mounted, metric, needs_root, new_key, run  # noqa: E402
from test_vault_mount import PREFIX, vault_config  # noqa: E402
from test_addresses import address_of  # noqa: E402
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


def sha_address(key):
    return sha(address_of(key))


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

    def get_lines(self, networks, operation="get"):
        return [x for x in self.m.audit_lines()
                if x["operation"] == operation and x["network"] in networks]

    def address_path(self, network):
        return self.m.path("addresses", network)

    def answered_while_held(self, readers, argvs):
        """Run each argv (a reader as some uid) while the readers' opens
        are held at the gate, then open the gate.  Each must be answered
        within 15 s (well inside the GETs' 60 s timeout) while every reader
        is still held; their CompletedProcess results."""
        started = [self.open_in_thread(a) for a in argvs]
        deadline = time.monotonic() + 15
        for t, _ in started:
            t.join(max(0.0, deadline - time.monotonic()))
        still_held = all(r.proc.poll() is None for r in readers)
        answered = not any(t.is_alive() for t, _ in started)
        self.vs.clear_fault()   # open the gate
        for t, _ in started:
            t.join(60)
        self.assertTrue(answered, "a cached read, metrics or a denied open waited for the "
                                  "held fetches: parked opens hold FUSE workers")
        self.assertTrue(still_held, "the readers finished while the backend held the GETs")
        return [box["r"] for _, box in started]

    def assert_own_lines(self, ok, networks, per_uid):
        """Every successful open has its own audit line: per_uid {uid: n},
        each with its own caller's pid (the reader thread's id: one open
        each) and process, split evenly over networks."""
        for uid, n in per_uid.items():
            self.assertEqual(sum(1 for x in ok if x["uid"] == uid), n)
        total = sum(per_uid.values())
        self.assertEqual(len(ok), total)
        self.assertEqual(len({x["pid"] for x in ok}), total)
        self.assertEqual({x["process"] for x in ok}, {"python3"})
        for net in networks:
            self.assertEqual(sum(1 for x in ok if x["network"] == net), total // len(networks))

    def assert_all_ok(self, results, n, expected):
        """n results, each ok with expected(network)'s sha256."""
        self.assertEqual(len(results), n)
        for path, status, value in results:
            self.assertEqual((status, value), ("ok", expected(os.path.basename(path))), path)

    def assert_cache_counts(self, before, misses, hits):
        after = self.m.metrics()
        for name, n in (("misses", misses), ("hits", hits)):
            self.assertEqual(metric(after, f"omikuji_key_cache_{name}_total", backend="vault")
                             - metric(before, f"omikuji_key_cache_{name}_total", backend="vault"),
                             n, name)

    def test_parked_opens_hold_no_worker(self):
        m = self.m
        before = m.metrics()
        self.gate()
        nets = ["net-a", "net-b"]
        root = self.start_readers(0, [m.key_path(nets[i % 2]) for i in range(300)])
        nobody = self.start_readers(65534, [m.key_path(nets[i % 2]) for i in range(100)])
        self.wait_gets(nets)
        time.sleep(1.0)   # the 400 opens reach the daemon (or fill its workers)

        # While all 400 are held: a cached key's read, metrics, and an open
        # refused by the rules (65533 may write net-a, not read it), are
        # answered.
        cached, metrics, denied = self.answered_while_held(
            (root, nobody), (["cat", m.key_path("hot")], ["cat", m.path("metrics")],
                             as_uid(65533, ["cat", m.key_path("net-a")])))
        self.assertEqual(cached.stdout, self.keys["hot"] + "\n")
        self.assertIn("omikuji_key_cache_hits_total", metrics.stdout)
        self.assertIn("Permission denied", denied.stderr)

        self.assert_all_ok(root.results() + nobody.results(), 400,
                           lambda net: sha(self.keys[net]))
        # Single-flight: one backend call per key for the 400 opens.
        self.assertEqual([self.gets(n) for n in nets], [1, 1])

        # Every open has its own audit line, with its own uid; the two
        # that made the fetch are the uncached ones.
        lines = self.get_lines(nets)
        ok = [x for x in lines if x["status"]]
        # ... and its own caller's pid and process: the same fields as any
        # get line.
        self.assert_own_lines(ok, nets, {0: 300, 65534: 100})
        shapes = {frozenset(x) - {"anomaly"} for x in ok}   # a burst is flagged
        self.assertEqual(len(shapes), 1, [sorted(x) for x in shapes])
        self.assertEqual(sorted(x["network"] for x in ok if not x["cached"]), nets)
        denied_lines = [x for x in lines if not x["status"]]
        self.assertEqual([(x["uid"], x["network"]) for x in denied_lines], [(65533, "net-a")])
        # Counted as today: a waiter is a hit, a fetch a miss (and the
        # cached read of hot a hit).
        self.assert_cache_counts(before, 2, 398 + 1)
        self.assert_daemon_serves()

    def backend_error_reaches_every_parked(self, path, operation):
        """80 opens of path parked on a fetch that fails: each gets EIO,
        with its own audit line and count as a failed operation."""
        m = self.m
        network = os.path.basename(path)
        failures0 = metric(m.metrics(), "omikuji_key_operations_total", 0, operation=operation,
                           backend="vault", status="failure")
        self.gate("hang")
        root = self.start_readers(0, [path] * 60)
        nobody = self.start_readers(65534, [path] * 20)
        self.wait_gets([network])
        time.sleep(0.5)
        # Open the gate with a failure: the held GET's connection drops, and
        # the backend answers 500 from now on.
        self.vs.fault("500", path_prefix=f"/v1/secret/data/{PREFIX}/net-")
        results = root.results() + nobody.results()
        self.assertEqual(len(results), 80)
        self.assertEqual({(s, v) for _, s, v in results}, {("err", errno.EIO)})
        lines = self.get_lines([network], operation)
        self.assertEqual(len(lines), 80)
        self.assertFalse(any(x["status"] for x in lines))
        self.assertEqual(sum(1 for x in lines if x["uid"] == 0), 60)
        self.assertEqual(sum(1 for x in lines if x["uid"] == 65534), 20)
        self.assertEqual(len({x["error"] for x in lines}), 1, lines[:2])
        self.assertTrue(lines[0]["error"])
        self.assertNotIn(self.keys[network][2:], json.dumps(lines))
        # Each open counted as a failed operation, as a failed read always was.
        self.assertEqual(metric(m.metrics(), "omikuji_key_operations_total", operation=operation,
                                backend="vault", status="failure") - failures0, 80)
        # Nothing cached: the next open asks the backend again, and succeeds.
        self.vs.clear_fault()
        with open(path) as f:
            return f.read()

    def test_backend_error_reaches_every_parked_open(self):
        self.assertEqual(self.backend_error_reaches_every_parked(self.m.key_path("net-c"), "get"),
                         self.keys["net-c"] + "\n")
        self.assert_daemon_serves()

    def stop_while_parked(self, path, operation, expected):
        """50 opens of path parked at the daemon's stop: every one answered
        (expected is the sha256 of the right content) and audited."""
        m = self.m
        network = os.path.basename(path)
        self.gate()
        readers = self.start_readers(0, [path] * 50)
        self.wait_gets([network])
        time.sleep(0.5)
        m.proc.send_signal(signal.SIGTERM)   # the stop unmounts with the opens parked
        time.sleep(0.5)
        self.vs.clear_fault()
        results = readers.results(timeout=60)
        code = m.proc.wait(timeout=30)
        self.assertEqual(code, 0, m.daemon_stderr()[-2000:])
        self.assert_no_sanitizer_report()
        self.assertFalse(is_mounted(m.mnt))
        # Every open was answered (the content, or an error once the mount
        # went: the reads after a stopped loop), none left hanging.
        self.assertEqual(len(results), 50)
        for _, status, value in results:
            if status == "ok":
                self.assertEqual(value, expected)
            else:
                self.assertIn(value, (errno.ENOTCONN, errno.EIO, errno.ENODEV))
        lines = self.get_lines([network], operation)
        self.assertEqual(len(lines), 50, "one audit line per open, also at stop")
        self.assertTrue(all(x["status"] for x in lines))

    def test_stop_while_opens_are_parked(self):
        self.stop_while_parked(self.m.key_path("net-d"), "get", sha(self.keys["net-d"]))

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

    # --- addresses/ opens (s6-lock) ------------------------------------------

    def test_parked_address_opens_hold_no_worker(self):
        m = self.m
        before = m.metrics()
        self.gate()
        nets = ["net-a", "net-b"]
        root = self.start_readers(0, [self.address_path(nets[i % 2]) for i in range(300)])
        nobody = self.start_readers(65534, [self.address_path(nets[i % 2]) for i in range(100)])
        # Key-file opens of the same keys park on the same fetches.
        keyfiles = self.start_readers(0, [m.key_path(nets[i % 2]) for i in range(20)])
        self.wait_gets(nets)
        time.sleep(1.0)   # the 420 opens reach the daemon (or fill its workers)
        # `key export` beside the mount (the control socket's get, on its own
        # thread, not a FUSE worker) waits on the same fetch: no second GET.
        export_box = {}
        export = threading.Thread(target=lambda: export_box.update(
            r=m.cli("key", "export", "--network", "net-a", "--yes")))
        export.start()
        time.sleep(1.0)   # it reaches the daemon and waits there
        self.assertTrue(export.is_alive(), "key export did not wait for the held fetch")

        # While all are held: a cached key's read, a known address, metrics,
        # and an address open refused by the rules (65533 may write net-a,
        # neither read it nor its address) are answered.
        cached, known, metrics, denied = self.answered_while_held(
            (root, nobody, keyfiles),
            (["cat", m.key_path("hot")], ["cat", self.address_path("hot")],
             ["cat", m.path("metrics")], as_uid(65533, ["cat", self.address_path("net-a")])))
        self.assertEqual(cached.stdout, self.keys["hot"] + "\n")
        self.assertEqual(known.stdout, address_of(self.keys["hot"]) + "\n")
        self.assertIn("omikuji_key_cache_hits_total", metrics.stdout)
        self.assertIn("Permission denied", denied.stderr)

        self.assert_all_ok(root.results() + nobody.results(), 400,
                           lambda net: sha_address(self.keys[net]))
        self.assert_all_ok(keyfiles.results(), 20, lambda net: sha(self.keys[net]))
        export.join(60)
        self.assertEqual((export_box["r"].returncode, export_box["r"].stdout == self.keys["net-a"]
                          + "\n"), (0, True), export_box["r"].stderr)
        # Single-flight: one backend call per key for the 420 opens and the export.
        self.assertEqual([self.gets(n) for n in nets], [1, 1])

        # Every address open has its own audit line with its own uid and pid.
        lines = self.get_lines(nets, "address")
        self.assert_own_lines([x for x in lines if x["status"]], nets, {0: 300, 65534: 100})
        denied_lines = [x for x in lines if not x["status"]]
        self.assertEqual([(x["uid"], x["network"]) for x in denied_lines], [(65533, "net-a")])
        self.assertEqual(len([x for x in self.get_lines(nets) if x["status"]]), 20 + 1)
        self.assertNotIn(self.keys["net-a"][2:], json.dumps(lines))
        # Counted as reads are: the two fetches are misses, every parked
        # open and the export a hit (and the cached read of hot).
        self.assert_cache_counts(before, 2, 418 + 1 + 1)
        self.assert_daemon_serves()

    def test_backend_error_reaches_every_parked_address_open(self):
        self.assertEqual(self.backend_error_reaches_every_parked(self.address_path("net-c"),
                                                                 "address"),
                         address_of(self.keys["net-c"]) + "\n")
        self.assert_daemon_serves()

    def test_stop_while_address_opens_are_parked(self):
        self.stop_while_parked(self.address_path("net-d"), "address",
                               sha_address(self.keys["net-d"]))


if __name__ == "__main__":
    run()
