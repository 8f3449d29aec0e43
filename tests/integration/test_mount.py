"""Foundation: a real mount on the embedded file backend, used as users do
(cat, echo >, cp, ls, rm), with the contract's error semantics."""
import errno
import os
import random
import signal
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from keyfslib import (Mount, MountTestCase, is_mounted, metric, new_key, run)  # noqa: E402


class TreeTest(MountTestCase):
    def test_root_listing(self):
        self.assertEqual(sorted(os.listdir(self.m.mnt)), ["addresses", "health", "keys", "metrics", "textfile"])
        self.assertEqual(os.listdir(self.m.path("health")), ["file"])
        self.assertEqual(os.listdir(self.m.path("textfile")), ["omikuji_keyfs.prom"])
        self.assertEqual(os.listdir(self.m.path("keys")), [])

    def test_whole_components_only(self):
        for bad in ("keysx", "metricsx", "health/filex", "health/vault", "textfile/x", "keys/a/b"):
            with self.assertRaises(FileNotFoundError, msg=bad):
                os.stat(self.m.path(bad))

    def test_health_and_metrics_read(self):
        with open(self.m.path("health", "file")) as f:
            lines = f.read().splitlines()
        self.assertEqual(lines[0], "up")
        fields = dict(l.split(": ", 1) for l in lines[1:])
        for name in ("backend", "checked_at", "latency_seconds", "consecutive_failures", "last_error"):
            self.assertIn(name, fields)
        self.assertEqual(fields["backend"], "file")
        with open(self.m.path("metrics")) as f:
            text = f.read()
        self.assertTrue(text.endswith("\n"))
        self.assertIn("omikuji_key_operations_total", text)
        with open(self.m.path("textfile", "omikuji_keyfs.prom")) as f:
            prom = f.read()
        self.assertIn("# TYPE omikuji_key_operations_total counter", prom)


class KeyFileTest(MountTestCase):
    def test_echo_cat_roundtrip(self):
        key = new_key()
        r = self.m.sh(f"echo {key} > keys/ethereum-mainnet")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.m.sh("cat keys/ethereum-mainnet")
        self.assertEqual(r.stdout, key + "\n")
        self.assertEqual(os.listdir(self.m.path("keys")), ["ethereum-mainnet"])
        # no key material leaks into the logs
        self.assertNotIn(key[2:], open(self.m.app_log).read())
        self.assertNotIn(key[2:], open(self.m.audit_log).read())
        self.assertNotIn(key[2:], self.m.daemon_stderr())

    def test_cp_in_and_out(self):
        key = new_key(prefix="")
        src = os.path.join(self.m.root, "src.key")
        with open(src, "w") as f:
            f.write(key + "\n")
        r = self.m.sh(f"cp {src} keys/base && cp keys/base {self.m.root}/out.key")
        self.assertEqual(r.returncode, 0, r.stderr)
        # read back in the canonical form: 0x + 64 lower-case hex digits
        self.assertEqual(open(os.path.join(self.m.root, "out.key")).read(), "0x" + key + "\n")

    def test_no_trailing_newline_stored_at_close(self):
        key = new_key()
        r = self.m.sh(f"printf %s {key} > keys/polygon")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.m.read_key("polygon"), key + "\n")

    def test_invalid_write_fails_and_keeps_old_key(self):
        key = new_key()
        self.m.write_key("eth", key + "\n")
        for bad in ("bad", "0x", "0x" + "0" * 64, "0x" + "f" * 64, key + "00", "0x" + "g" * 64):
            r = self.m.sh(f"echo '{bad}' > keys/eth")
            self.assertNotEqual(r.returncode, 0, bad)
            self.assertIn("Invalid argument", r.stderr)
            self.assertEqual(self.m.read_key("eth"), key + "\n", bad)
        # content that can never become a key fails at that write(2) (issue 9)
        fd = os.open(self.m.key_path("eth"), os.O_WRONLY | os.O_TRUNC)
        with self.assertRaises(OSError) as cm:
            os.write(fd, b"nonsense")
        os.close(fd)
        self.assertEqual(cm.exception.errno, errno.EINVAL)
        # an incomplete key without a newline: the error comes from close
        fd = os.open(self.m.key_path("eth"), os.O_WRONLY | os.O_TRUNC)
        os.write(fd, b"0x1234")
        with self.assertRaises(OSError) as cm:
            os.close(fd)
        self.assertEqual(cm.exception.errno, errno.EINVAL)
        self.assertEqual(self.m.read_key("eth"), key + "\n")

    def test_too_large(self):
        key = new_key()
        self.m.write_key("eth", key + "\n")
        fd = os.open(self.m.key_path("eth"), os.O_WRONLY | os.O_TRUNC)
        try:
            with self.assertRaises(OSError) as cm:
                os.write(fd, b"a" * 5000)
            self.assertEqual(cm.exception.errno, errno.EFBIG)
        finally:
            os.close(fd)
        self.assertEqual(self.m.read_key("eth"), key + "\n")
        r = self.m.sh("head -c 8000 /dev/zero | tr '\\0' a > keys/eth")
        self.assertNotEqual(r.returncode, 0)
        # the 65th hex digit already makes it invalid (issue 9): EINVAL at that write
        self.assertIn("Invalid argument", r.stderr)
        self.assertEqual(self.m.read_key("eth"), key + "\n")

    def test_network_names(self):
        with self.assertRaises(FileNotFoundError):
            open(self.m.key_path("nope"))
        with self.assertRaises(FileNotFoundError):
            os.stat(self.m.key_path("bad name"))
        for bad in ("-eth", ".hidden", "a" * 65, "with space", "ü"):
            with self.assertRaises(OSError, msg=bad) as cm:
                self.m.write_key(bad, new_key() + "\n")
            self.assertIn(cm.exception.errno, (errno.EINVAL, errno.ENAMETOOLONG), bad)
        self.assertEqual(os.listdir(self.m.path("keys")), [])

    def test_eperm_operations(self):
        self.m.write_key("eth", new_key() + "\n")
        for cmd in ("mkdir keys/dir", "mv keys/eth keys/eth2", "chmod 644 keys/eth",
                    "chown nobody keys/eth", "ln keys/eth keys/eth3", "ln -s eth keys/eth4",
                    "rmdir keys", "mkdir newdir"):
            r = self.m.sh(cmd)
            self.assertNotEqual(r.returncode, 0, cmd)
            self.assertIn("Operation not permitted", r.stderr, cmd)
        r = self.m.sh("echo x > metrics")
        self.assertNotEqual(r.returncode, 0)

    def test_rm(self):
        self.m.write_key("eth", new_key() + "\n")
        r = self.m.sh("rm keys/eth")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(os.listdir(self.m.path("keys")), [])
        r = self.m.sh("rm keys/eth")
        self.assertNotEqual(r.returncode, 0)
        r = self.m.sh("cat keys/eth")
        self.assertIn("No such file", r.stderr)

    def test_ls_l_does_not_read_keys(self):
        for n in ("a", "b", "c"):
            self.m.write_key(n, new_key() + "\n")
        gets_before = metric(self.m.metrics(), "omikuji_key_operations_total",
                             operation="get", backend="file", status="success")
        audit_before = [l for l in self.m.audit_lines() if l["operation"] == "get"]
        r = self.m.sh("ls -l keys")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.count("-rw-------"), 3)
        r = self.m.sh("stat keys/a keys/b keys/c")
        self.assertEqual(r.returncode, 0, r.stderr)
        gets_after = metric(self.m.metrics(), "omikuji_key_operations_total",
                            operation="get", backend="file", status="success")
        self.assertEqual(gets_before, gets_after)
        self.assertEqual(audit_before, [l for l in self.m.audit_lines() if l["operation"] == "get"])

    def test_mtime_changes_on_write(self):
        self.m.write_key("eth", new_key() + "\n")
        t1 = os.stat(self.m.key_path("eth")).st_mtime
        time.sleep(1.2)   # past the kernel attribute cache (1 s)
        self.m.write_key("eth", new_key() + "\n")
        time.sleep(1.1)
        t2 = os.stat(self.m.key_path("eth")).st_mtime
        self.assertGreater(t2, t1)

    def test_mtime_per_network_past_table_growth(self):
        # Issue 15: mtimes live in a hash table that grows at 64 and 128
        # networks; every key keeps the time of its own write.
        when = {}
        for i in range(130):
            net = "m%03d" % i
            t0 = time.time()
            self.m.write_key(net, new_key() + "\n")
            when[net] = (t0, time.time())
        time.sleep(1.1)   # past the kernel attribute cache (1 s)
        for net, (t0, t1) in when.items():
            mt = os.stat(self.m.key_path(net)).st_mtime
            self.assertGreaterEqual(mt, t0 - 0.01, net)
            self.assertLessEqual(mt, t1 + 0.01, net)
        first, last = os.stat(self.m.key_path("m000")).st_mtime, \
            os.stat(self.m.key_path("m129")).st_mtime
        self.assertLess(first, last)

    def test_touch_is_an_audited_refresh(self):
        self.m.write_key("eth", new_key() + "\n")
        r = self.m.sh("touch keys/eth")
        self.assertEqual(r.returncode, 0, r.stderr)
        refresh = [l for l in self.m.audit_lines() if l.get("refresh")]
        self.assertEqual(len(refresh), 1)
        self.assertEqual(refresh[0]["network"], "eth")

    def test_direct_io_no_page_cache(self):
        # two opens after a change must see the new value at once
        k1, k2 = new_key(), new_key()
        self.m.write_key("eth", k1 + "\n")
        with open(self.m.key_path("eth")) as f:
            self.assertEqual(f.read(), k1 + "\n")
        self.m.write_key("eth", k2 + "\n")
        with open(self.m.key_path("eth")) as f:
            self.assertEqual(f.read(), k2 + "\n")

    def test_broken_store_does_not_take_the_mount_down(self):
        key = new_key()
        self.m.write_key("eth", key + "\n")
        with open(self.m.store, "r+b") as f:
            f.seek(40)
            b = f.read(1)
            f.seek(40)
            f.write(bytes([b[0] ^ 0xFF]))
        r = self.m.sh("cat keys/eth")
        self.assertNotEqual(r.returncode, 0)
        self.assertNotIn(key[2:], r.stdout + r.stderr)
        # the mount still serves its virtual files and reports the failure
        with open(self.m.path("metrics")) as f:
            self.assertIn("omikuji_key_operations_total", f.read())
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with open(self.m.path("health", "file")) as f:
                if f.readline().strip() == "down":
                    break
            time.sleep(0.2)
        else:
            self.fail("health/file never said down")


class ConcurrencyTest(MountTestCase):
    def test_threads_mixed_reads_and_writes(self):
        networks = ["n0", "n1", "n2", "n3"]
        written = {n: set() for n in networks}
        lock = threading.Lock()
        for n in networks:
            k = new_key()
            written[n].add(k)
            self.m.write_key(n, k + "\n")
        errors = []

        def worker(seed):
            rnd = random.Random(seed)
            for _ in range(1000):
                n = rnd.choice(networks)
                try:
                    if rnd.random() < 0.3:
                        k = new_key()
                        with lock:
                            written[n].add(k)
                        self.m.write_key(n, k + "\n")
                    else:
                        v = self.m.read_key(n)
                        if not v.endswith("\n") or v[:-1] not in written[n]:
                            errors.append(f"{n}: unexpected content of length {len(v)}")
                except OSError as e:
                    errors.append(f"{n}: {e}")

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors[:5], [])
        # final state: the mount and the backend (read by the CLI) agree
        for n in networks:
            v = self.m.read_key(n)[:-1]
            self.assertIn(v, written[n])
            r = self.m.cli("key", "export", "--network", n, "--yes")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout.strip(), v)


class SignalTest(unittest.TestCase):
    def test_sigterm_unmounts(self):
        # Several rounds: a signal right after a write can end the loop
        # before the kernel's asynchronous RELEASE arrives; the handle must
        # still be freed (an ASan build reports the leak otherwise).
        for sig in (signal.SIGTERM, signal.SIGINT) * 6:
            m = Mount()
            try:
                m.start()
                m.write_key("eth", new_key() + "\n")
                m.proc.send_signal(sig)
                self.assertEqual(m.proc.wait(timeout=10), 0)
                self.assertFalse(is_mounted(m.mnt), f"mount left behind after {sig}")
            finally:
                m.cleanup()

    def test_fusermount_unmount_stops_daemon(self):
        m = Mount()
        try:
            m.start()
            subprocess.run(["fusermount3", "-u", m.mnt], check=True)
            self.assertEqual(m.proc.wait(timeout=10), 0)
        finally:
            m.cleanup()

    def test_background_mount_returns_when_ready(self):
        m = Mount()
        try:
            r = subprocess.run([os.environ.get("KEYFS_BIN"), "mount", "-c", m.config, m.mnt],
                               capture_output=True, text=True, env=m.env, timeout=30)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertTrue(is_mounted(m.mnt))
            self.assertEqual(sorted(os.listdir(m.mnt)), ["addresses", "health", "keys", "metrics", "textfile"])
        finally:
            subprocess.run(["fusermount3", "-u", m.mnt], capture_output=True)
            deadline = time.monotonic() + 5
            while is_mounted(m.mnt) and time.monotonic() < deadline:
                time.sleep(0.1)
            m.cleanup()

    def test_mount_errors_are_clear(self):
        m = Mount()
        try:
            r = subprocess.run([os.environ.get("KEYFS_BIN"), "mount", "-f", "-c", m.config,
                                os.path.join(m.root, "missing")],
                               capture_output=True, text=True, env=m.env, timeout=30)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("mountpoint", r.stderr)
            self.assertIn("No such file or directory", r.stderr)
        finally:
            m.cleanup()


if __name__ == "__main__":
    run()
