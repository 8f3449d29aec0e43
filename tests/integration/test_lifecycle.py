"""Contract section 9 in the mode users run: `mount` WITHOUT -f.

`mount` must return only once the mount serves (so nothing here polls for
the mount to appear), exit non-zero with one line when the start fails,
resolve relative mountpoints, always unmount on stop, log to the default
file once daemonized, lock key memory in the process that serves, refuse a
second writer of the same audit log, and talk sd_notify.  The daemon's pid
is read from the audit log's lock file; its exit is awaited with a pidfd,
not a sleep.
"""
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from keyfslib import KEYFS_BIN, Mount, is_mounted, new_key, run, wait_exit  # noqa: E402


SANITIZED = os.environ.get("KEYFS_SANITIZE", "none") not in ("", "none")


def vmlck_kb(pid):
    # AddressSanitizer makes mlock(2) a no-op that returns 0: nothing can be
    # locked in a sanitizer build, so the check only means something without it
    with open(f"/proc/{pid}/maps") as f:
        if "libasan" in f.read():
            raise unittest.SkipTest("ASan build: mlock is a no-op under AddressSanitizer")
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmLck:"):
                return int(line.split()[1])
    return -1


class Background:
    """A Mount started without -f; stop() unmounts and waits for the daemon."""

    def __init__(self, test, **kw):
        self.m = Mount(**kw)
        self.pid = None
        test.addCleanup(self.cleanup)

    def mount(self, *extra, mnt=None, cwd=None, env=None):
        e = dict(self.m.env)
        if env:
            e.update(env)
        return subprocess.run([KEYFS_BIN, "mount", "-c", self.m.config, *self.m.extra_args,
                               *extra, mnt or self.m.mnt],
                              capture_output=True, text=True, env=e, cwd=cwd, timeout=60,
                              stdin=subprocess.DEVNULL)

    def start(self, *extra, **kw):
        r = self.mount(*extra, **kw)
        if r.returncode != 0:
            raise AssertionError(f"mount exited {r.returncode}: {r.stderr}")
        self.pid = self.daemon_pid()
        return r

    def daemon_pid(self):
        with open(self.m.audit_log + ".lock") as f:
            return int(f.read().strip())

    def stop(self):
        if self.pid is not None:
            if is_mounted(self.m.mnt):
                subprocess.run(["fusermount3", "-u", self.m.mnt], capture_output=True)
            if not wait_exit(self.pid):
                os.kill(self.pid, signal.SIGKILL)
                wait_exit(self.pid)
            self.pid = None
        if is_mounted(self.m.mnt):
            subprocess.run(["fusermount3", "-uz", self.m.mnt], capture_output=True)

    def cleanup(self):
        self.stop()
        self.m.cleanup()


class BackgroundStartTest(unittest.TestCase):
    def test_mount_returns_once_serving(self):
        b = Background(self)
        r = b.start()
        self.assertEqual(r.stdout + r.stderr, "")
        # No waiting: the mount serves when `mount` returns.
        self.assertTrue(is_mounted(b.m.mnt))
        key = new_key()
        b.m.write_key("eth", key + "\n")
        self.assertEqual(b.m.read_key("eth"), key + "\n")
        self.assertNotEqual(b.pid, os.getpid())
        # The serving process is a session leader detached from our terminal.
        self.assertEqual(os.getsid(b.pid), b.pid)

    def test_built_in_defaults_on_a_fresh_home(self):
        # The README's first command: no config, nothing under HOME yet.
        b = Background(self)
        home = os.path.join(b.m.root, "home")
        env = {"HOME": home, "XDG_STATE_HOME": "", "XDG_DATA_HOME": "", "XDG_CONFIG_HOME": ""}
        os.mkdir(home)   # empty: no config is found (not even ./omikuji.yaml)
        r = subprocess.run([KEYFS_BIN, "mount", b.m.mnt], capture_output=True, text=True,
                           env={**b.m.env, **env}, cwd=home, timeout=60,
                           stdin=subprocess.DEVNULL)
        self.assertEqual(r.returncode, 0, r.stderr)
        audit = os.path.join(home, ".local/state/omikuji-keyfs/audit.log")
        b.m.audit_log = audit
        b.pid = b.daemon_pid()
        key = new_key()
        r = subprocess.run([KEYFS_BIN, "key", "import", "--network", "eth", "--key", key],
                           capture_output=True, text=True, env={**b.m.env, **env},
                           cwd=home, timeout=60, stdin=subprocess.DEVNULL)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("through the running mount", r.stderr)
        self.assertEqual(b.m.read_key("eth"), key + "\n")
        self.assertTrue(os.path.exists(os.path.join(home, ".local/share/omikuji-keyfs/keys.enc")))

    def test_key_memory_locked_in_the_background(self):
        b = Background(self)
        b.start()
        key = new_key()
        b.m.write_key("eth", key + "\n")
        b.m.read_key("eth")
        if SANITIZED:
            self.skipTest("the sanitizers make mlock() a no-op")
        self.assertGreater(vmlck_kb(b.pid), 0)

    def test_unknown_run_as_fails_before_forking(self):
        b = Background(self, keyfs_extra="  run_as: no-such-user-here\n")
        r = b.mount()
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertEqual(r.stderr.count("\n"), 1, r.stderr)
        self.assertIn("run_as", r.stderr)
        self.assertIn("no-such-user-here", r.stderr)
        self.assertFalse(is_mounted(b.m.mnt))
        r = b.m.cli("check-config")
        self.assertEqual(r.returncode, 2)
        self.assertIn("no-such-user-here", r.stderr)

    def test_failure_in_the_child_reaches_the_terminal(self):
        # The audit log is opened in the child: its failure must still be
        # the exit status and one line of `mount`.
        b = Background(self)
        with open(b.m.config) as f:
            text = f.read()
        with open(b.m.config, "w") as f:
            f.write(text.replace(b.m.audit_log, "/proc/self/no/audit.log"))
        r = b.mount()
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertEqual(r.stderr.count("\n"), 1, r.stderr)
        self.assertIn("/proc/self/no/audit.log", r.stderr)
        self.assertFalse(is_mounted(b.m.mnt))

    def test_missing_mountpoint(self):
        b = Background(self)
        r = b.mount(mnt=os.path.join(b.m.root, "missing"))
        self.assertEqual(r.returncode, 1)
        self.assertIn("missing: No such file or directory", r.stderr)

    def test_relative_mountpoint_and_sigterm_unmount(self):
        b = Background(self)
        b.start(mnt="mnt", cwd=b.m.root)
        self.assertTrue(is_mounted(b.m.mnt))
        os.kill(b.pid, signal.SIGTERM)
        self.assertTrue(wait_exit(b.pid), "daemon did not stop on SIGTERM")
        b.pid = None
        self.assertFalse(is_mounted(b.m.mnt), "SIGTERM left the mount behind")

    def test_only_the_main_thread_takes_stop_signals(self):
        # libfuse's handler only sets a flag that the main thread notices when
        # the signal interrupts its wait: a SIGTERM taken by any other thread
        # would leave the mount serving.  Every other thread (FUSE workers,
        # maintenance, control socket, backend threads) must block them.
        b = Background(self)
        b.start()
        key = new_key()
        with open(os.path.join(b.m.mnt, "keys", "lifecycle-sig"), "w") as f:
            f.write(key + "\n")   # wakes FUSE workers and the backend
        stop = (1 << (signal.SIGTERM - 1)) | (1 << (signal.SIGINT - 1)) | \
            (1 << (signal.SIGHUP - 1))
        tasks = os.listdir(f"/proc/{b.pid}/task")
        self.assertGreater(len(tasks), 2, "expected worker threads")
        for tid in tasks:
            if int(tid) == b.pid:
                continue
            with open(f"/proc/{b.pid}/task/{tid}/status") as f:
                blk = next(int(line.split()[1], 16) for line in f
                           if line.startswith("SigBlk:"))
            self.assertEqual(blk & stop, stop, f"thread {tid} can take stop signals")
        with open(f"/proc/{b.pid}/status") as f:
            blk = next(int(line.split()[1], 16) for line in f if line.startswith("SigBlk:"))
        self.assertEqual(blk & stop, 0, "the main thread must take the stop signals")

    def test_stop_right_after_mount_is_never_lost(self):
        # libfuse's loop can miss a signal that arrives while it starts
        # (between its exit check and its wait): the daemon then served on
        # until the next request.  Stop signals sent the moment `mount`
        # returns, several times over, must each end the daemon.
        for i, sig in enumerate([signal.SIGTERM, signal.SIGINT] * 4):
            b = Background(self)
            b.start()
            os.kill(b.pid, sig)
            self.assertTrue(wait_exit(b.pid), f"round {i}: daemon ignored {sig.name}")
            b.pid = None
            self.assertFalse(is_mounted(b.m.mnt))

    def test_sigint_and_fusermount_stop(self):
        b = Background(self)
        b.start()
        os.kill(b.pid, signal.SIGINT)
        self.assertTrue(wait_exit(b.pid))
        self.assertFalse(is_mounted(b.m.mnt))
        b.start()
        pid = b.pid
        subprocess.run(["fusermount3", "-u", b.m.mnt], check=True)
        self.assertTrue(wait_exit(pid), "daemon did not exit after fusermount3 -u")
        b.pid = None


class BackgroundLoggingTest(unittest.TestCase):
    def drop_logging_section(self, b):
        with open(b.m.config) as f:
            text = f.read()
        with open(b.m.config, "w") as f:
            f.write(text[:text.index("logging:")] + text[text.index("keyfs:"):])

    def test_default_target_goes_to_the_state_file(self):
        b = Background(self)
        self.drop_logging_section(b)   # default logging: stderr, which daemonizing closes
        state = os.path.join(b.m.root, "state")
        prefix = []
        if os.geteuid() == 0:
            if not os.stat("/dev/fuse").st_mode & 0o006:
                self.skipTest("a normal user cannot open /dev/fuse on this machine")
            # A normal user's daemon (root's goes to /var/log, tested below).
            for p in (b.m.root, b.m.mnt):
                os.chown(p, 65534, 65534)
            os.chown(b.m.config, 65534, 65534)
            prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        r = subprocess.run([*prefix, KEYFS_BIN, "mount", "-c", b.m.config, b.m.mnt],
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                           env={**b.m.env, "XDG_STATE_HOME": state})
        self.assertEqual(r.returncode, 0, r.stderr)
        b.pid = b.daemon_pid()
        b.stop()
        with open(os.path.join(state, "omikuji-keyfs", "omikuji-keyfs.log")) as f:
            text = f.read()
        self.assertIn('"message":"mounted","mountpoint":"%s"' % b.m.mnt, text)
        self.assertIn('"message":"unmounting"', text)

    @unittest.skipUnless(os.geteuid() == 0, "root's default log is /var/log/omikuji-keyfs")
    def test_root_default_target_goes_to_var_log(self):
        b = Background(self)
        self.drop_logging_section(b)
        b.start()
        b.stop()
        with open("/var/log/omikuji-keyfs/omikuji-keyfs.log") as f:
            text = f.read()
        self.assertIn('"mountpoint":"%s"' % b.m.mnt, text)

    def test_file_target_kept(self):
        b = Background(self)
        b.start()
        b.stop()
        with open(b.m.app_log) as f:
            text = f.read()
        self.assertIn('"message":"mounted"', text)
        self.assertIn('"message":"unmounting"', text)


class OneWriterTest(unittest.TestCase):
    def test_second_mount_on_the_same_audit_log_is_refused(self):
        b = Background(self)
        b.start()
        other = os.path.join(b.m.root, "mnt2")
        os.mkdir(other)
        r = b.mount(mnt=other)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr.count("\n"), 1, r.stderr)
        self.assertIn(f"pid {b.pid}", r.stderr)
        self.assertFalse(is_mounted(other))
        # the first one still serves, and its chain is intact
        key = new_key()
        b.m.write_key("eth", key + "\n")
        self.assertEqual(b.m.read_key("eth"), key + "\n")
        # foreground too
        r = subprocess.run([KEYFS_BIN, "mount", "-f", "-c", b.m.config, other],
                           capture_output=True, text=True, env=b.m.env, timeout=30)
        self.assertEqual(r.returncode, 1)
        self.assertIn(f"pid {b.pid}", r.stderr)
        b.stop()
        r = subprocess.run([KEYFS_BIN, "audit", "verify", b.m.audit_log],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_lock_released_when_the_daemon_dies(self):
        b = Background(self)
        b.start()
        os.kill(b.pid, signal.SIGKILL)
        self.assertTrue(wait_exit(b.pid))
        b.pid = None
        subprocess.run(["fusermount3", "-uz", b.m.mnt], capture_output=True)
        b.start()
        self.assertTrue(is_mounted(b.m.mnt))


class SdNotifyTest(unittest.TestCase):
    def listen(self, root):
        path = os.path.join(root, "notify.sock")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind(path)
        self.addCleanup(s.close)
        return s, path

    def recv(self, s, timeout=10):
        s.settimeout(timeout)
        return s.recv(4096).decode()

    def test_background_ready_and_stopping(self):
        b = Background(self)
        s, path = self.listen(b.m.root)
        b.start(env={"NOTIFY_SOCKET": path})
        msg = self.recv(s, timeout=0)   # already sent when mount returned
        self.assertIn("READY=1", msg.split("\n"))
        self.assertIn(f"MAINPID={b.pid}", msg.split("\n"))
        subprocess.run(["fusermount3", "-u", b.m.mnt], check=True)
        self.assertIn("STOPPING=1", self.recv(s).split("\n"))
        self.assertTrue(wait_exit(b.pid))
        b.pid = None

    def test_foreground_ready_once_serving(self):
        m = Mount()
        self.addCleanup(m.cleanup)
        s, path = self.listen(m.root)
        m.env["NOTIFY_SOCKET"] = path
        m.stderr = open(m.stderr_path, "w")
        m.proc = subprocess.Popen([KEYFS_BIN, "mount", "-f", "-c", m.config, m.mnt],
                                  stdout=m.stderr, stderr=m.stderr, env=m.env,
                                  stdin=subprocess.DEVNULL)
        msg = self.recv(s)
        self.assertIn("READY=1", msg.split("\n"))
        self.assertTrue(is_mounted(m.mnt), "READY=1 before the mount served")
        os.kill(m.proc.pid, signal.SIGTERM)
        self.assertIn("STOPPING=1", self.recv(s).split("\n"))
        m.proc.wait(timeout=10)
        self.assertFalse(is_mounted(m.mnt))


@unittest.skipUnless(os.geteuid() == 0, "run_as needs root")
class RunAsBackgroundTest(unittest.TestCase):
    def test_run_as_serves_locks_and_unmounts(self):
        key = new_key()
        b = Background(self, keyfs_extra="  run_as: nobody\n", extra_args=["-o", "allow_other"])
        os.chown(b.m.root, 65534, 65534)
        b.start()
        with open(f"/proc/{b.pid}/status") as f:
            status = f.read()
        uids = [line for line in status.splitlines() if line.startswith("Uid:")][0].split()[1:]
        self.assertEqual(set(uids), {"65534"})
        b.m.write_key("eth", key + "\n")
        self.assertEqual(b.m.read_key("eth"), key + "\n")
        if not SANITIZED:   # the sanitizers make mlock() a no-op
            self.assertGreater(vmlck_kb(b.pid), 0)
        for name in ("audit.log", "audit.log.lock", "app.log"):
            self.assertEqual(os.stat(os.path.join(b.m.root, name)).st_uid, 65534, name)
        # SIGHUP reopens as the service user
        os.rename(b.m.audit_log, b.m.audit_log + ".1")
        os.kill(b.pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while not os.path.exists(b.m.audit_log) and time.monotonic() < deadline:
            b.m.read_key("eth")
        self.assertTrue(os.path.exists(b.m.audit_log))
        # stop unmounts although the daemon is no longer root
        os.kill(b.pid, signal.SIGTERM)
        self.assertTrue(wait_exit(b.pid))
        b.pid = None
        self.assertFalse(is_mounted(b.m.mnt), "run_as daemon left its mount behind")


def verify(*args):
    return subprocess.run([KEYFS_BIN, "audit", "verify", *args], capture_output=True, text=True)


class CliBesideMountTest(unittest.TestCase):
    """The key commands act through the running mount (control socket)."""

    def test_import_and_remove_go_through_the_mount(self):
        b = Background(self)
        b.start()
        key = new_key()
        r = b.m.cli("key", "import", "--network", "eth", "--key", key)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("through the running mount", r.stderr)
        self.assertEqual(b.m.read_key("eth"), key + "\n")
        lines = b.m.audit_lines()
        intent, store = lines[-3], lines[-2]
        self.assertEqual((intent["operation"], intent.get("intent")), ("store", True))
        self.assertEqual((store["operation"], store["status"]), ("store", True))
        self.assertNotEqual(store["pid"], b.pid, "the caller is the CLI, not the daemon")
        self.assertEqual(store["process"], "omikuji-keyfs")
        self.assertEqual(store["uid"], os.getuid())
        m = b.m.metrics()
        self.assertEqual(m[("omikuji_key_operations_total", frozenset(
            {"operation": "store", "backend": "file", "status": "success"}.items()))], 1)
        self.assertEqual(m[("omikuji_keyfs_audit_last_seq", frozenset())], lines[-1]["seq"])
        r = b.m.cli("key", "list")
        self.assertEqual((r.returncode, r.stdout), (0, "eth\n"), r.stderr)
        r = b.m.cli("key", "export", "--network", "eth", "--yes")
        self.assertEqual((r.returncode, r.stdout), (0, key + "\n"), r.stderr)
        r = b.m.cli("key", "remove", "--network", "eth", "--yes")
        self.assertEqual(r.returncode, 0, r.stderr)
        with self.assertRaises(FileNotFoundError):
            b.m.read_key("eth")
        r = b.m.cli("key", "remove", "--network", "eth", "--yes")
        self.assertEqual(r.returncode, 1)
        self.assertIn("no key for network 'eth'", r.stderr)
        b.stop()
        # one chain, one writer: the daemon's lines and the CLI's interleave
        last = b.m.audit_lines()[-1]["seq"]
        r = verify("--expect-seq", str(last), b.m.audit_log)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        ops = [(l["operation"], l["process"]) for l in b.m.audit_lines()]
        self.assertIn(("list", "omikuji-keyfs"), ops)
        self.assertIn(("get", "omikuji-keyfs"), ops)

    def test_without_a_mount_the_cli_continues_the_chain(self):
        b = Background(self)
        k1, k2 = new_key(), new_key()
        r = b.m.cli("key", "import", "--network", "eth", "--key", k1)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("through the running mount", r.stderr)
        self.assertEqual([l["seq"] for l in b.m.audit_lines()], [1, 2])
        b.start()
        self.assertEqual(b.m.read_key("eth"), k1 + "\n")
        b.stop()
        r = b.m.cli("key", "import", "--network", "eth", "--key", k2)
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = b.m.audit_lines()
        self.assertEqual([l["seq"] for l in lines], list(range(1, len(lines) + 1)))
        self.assertEqual(lines[-1]["operation"], "store")
        r = verify("--expect-seq", str(len(lines)), b.m.audit_log)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_concurrent_commands_without_a_mount_take_turns(self):
        b = Background(self)
        keys = {f"n{i}": new_key() for i in range(4)}
        procs = [subprocess.Popen([KEYFS_BIN, "key", "import", "--network", n, "--key", k,
                                   "-c", b.m.config], env=b.m.env, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for n, k in keys.items()]
        for p in procs:
            _, err = p.communicate(timeout=60)
            self.assertEqual(p.returncode, 0, err)
        lines = b.m.audit_lines()
        self.assertEqual(len(lines), 8)   # an intent and an outcome line each
        self.assertEqual(verify("--expect-seq", "8", b.m.audit_log).returncode, 0)
        r = b.m.cli("key", "list")
        self.assertEqual(r.stdout.split(), sorted(keys))

    @unittest.skipUnless(os.geteuid() == 0, "needs root to act as another user")
    def test_access_rules_apply_to_the_invoking_user(self):
        rules = ('  access:\n'
                 '    - networks: ["*"]\n'
                 '      read: ["uid:0"]\n'
                 '      write: ["uid:0"]\n'
                 '      remove: ["uid:0"]\n'
                 '      list: ["uid:0", "uid:65534"]\n')
        b = Background(self, keyfs_extra=rules, extra_args=["-o", "allow_other"])
        os.chmod(b.m.root, 0o755)
        os.chmod(b.m.config, 0o644)   # holds no secret
        b.start()
        key = new_key()
        self.assertEqual(b.m.cli("key", "import", "--network", "eth", "--key", key).returncode, 0)
        store_before = open(b.m.store, "rb").read()
        nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", KEYFS_BIN]
        r = subprocess.run([*nobody, "key", "import", "--network", "eth", "--key", new_key(),
                            "-c", b.m.config], capture_output=True, text=True, env=b.m.env,
                           stdin=subprocess.DEVNULL, timeout=60)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("access denied", r.stderr)
        self.assertEqual(open(b.m.store, "rb").read(), store_before, "backend changed")
        denied = b.m.audit_lines()[-1]
        self.assertEqual((denied["operation"], denied["status"], denied["uid"]),
                         ("store", False, 65534))
        r = subprocess.run([*nobody, "key", "list", "-c", b.m.config], capture_output=True,
                           text=True, env=b.m.env, stdin=subprocess.DEVNULL, timeout=60)
        self.assertEqual((r.returncode, r.stdout), (0, "eth\n"), r.stderr)
        self.assertEqual(b.m.audit_lines()[-1]["uid"], 65534)
        self.assertEqual(b.m.read_key("eth"), key + "\n")

    @unittest.skipUnless(os.geteuid() == 0, "run_as needs root")
    def test_root_cli_keeps_the_store_readable_for_run_as(self):
        b = Background(self, keyfs_extra="  run_as: nobody\n", extra_args=["-o", "allow_other"])
        os.chown(b.m.root, 65534, 65534)
        key = new_key()
        r = b.m.cli("key", "import", "--network", "eth", "--key", key)   # as root, no mount
        self.assertEqual(r.returncode, 0, r.stderr)
        for f in os.listdir(b.m.root):
            p = os.path.join(b.m.root, f)
            if os.path.isfile(p) and f != "omikuji.yaml":
                self.assertEqual(os.stat(p).st_uid, 65534, f)
        for f in os.listdir(os.path.dirname(b.m.store)):
            self.assertEqual(os.stat(os.path.join(os.path.dirname(b.m.store), f)).st_uid,
                             65534, f)
        b.start()
        self.assertEqual(b.m.read_key("eth"), key + "\n")
        k2 = new_key()
        r = b.m.cli("key", "import", "--network", "eth", "--key", k2)   # as root, through it
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(b.m.read_key("eth"), k2 + "\n")
        b.stop()
        r = verify(b.m.audit_log)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


class AuditAnchorTest(unittest.TestCase):
    """--expect-seq from the gauge, --start from the stop checkpoint."""

    def test_gauge_and_checkpoint_anchor_the_chain(self):
        b = Background(self)
        b.start()
        for i in range(3):
            b.m.write_key(f"n{i}", new_key() + "\n")
            b.m.read_key(f"n{i}")
        seq = int(b.m.metrics()[("omikuji_keyfs_audit_last_seq", frozenset())])
        self.assertEqual(seq, b.m.audit_lines()[-1]["seq"])
        b.stop()
        with open(b.m.app_log) as f:
            checkpoints = [json.loads(l) for l in f if '"audit checkpoint"' in l]
        self.assertEqual(checkpoints[-1]["at"], "stop")
        lines = b.m.audit_lines()
        self.assertEqual(int(checkpoints[-1]["seq"]), lines[-1]["seq"])
        self.assertEqual(checkpoints[-1]["hash"], lines[-1]["hash"])
        with open(b.m.audit_log) as f:
            raw = f.readlines()
        cut = os.path.join(b.m.root, "cut.log")
        # tail cut: passes alone, fails against the gauge
        with open(cut, "w") as f:
            f.writelines(raw[:-2])
        self.assertEqual(verify(cut).returncode, 0)
        r = verify("--expect-seq", str(seq), cut)
        self.assertEqual(r.returncode, 1)
        self.assertIn("lines are missing at the end", r.stdout)
        # head cut: fails alone, passes with --start from a checkpoint
        with open(cut, "w") as f:
            f.writelines(raw[3:])
        r = verify(cut)
        self.assertEqual(r.returncode, 1)
        self.assertIn("lines 1..3 are missing", r.stdout)
        anchor = f"{lines[2]['seq']}:{lines[2]['hash']}"
        r = verify("--start", anchor, "--expect-seq", str(seq), cut)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        # rotated files as one chain, oldest first; the wrong order fails
        old, new = os.path.join(b.m.root, "a.1"), os.path.join(b.m.root, "a")
        with open(old, "w") as f:
            f.writelines(raw[:4])
        with open(new, "w") as f:
            f.writelines(raw[4:])
        self.assertEqual(verify(old, new).returncode, 0)
        self.assertEqual(verify(new, old).returncode, 1)
        self.assertEqual(verify(new).returncode, 1)

    def test_keyed_chain(self):
        b = Background(self, keyfs_extra="  audit_key_file: KEYFILE\n")
        keyfile = os.path.join(b.m.root, "audit.key")
        with open(keyfile, "wb") as f:
            f.write(os.urandom(32))
        os.chmod(keyfile, 0o600)
        with open(b.m.config) as f:
            text = f.read()
        with open(b.m.config, "w") as f:
            f.write(text.replace("KEYFILE", keyfile))
        r = b.m.cli("key", "import", "--network", "eth", "--key", new_key())   # no mount
        self.assertEqual(r.returncode, 0, r.stderr)
        b.start()
        b.m.read_key("eth")
        b.stop()
        r = verify("--key", keyfile, b.m.audit_log)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        r = b.m.cli("audit", "verify")   # the key from the config
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        r = verify(b.m.audit_log)
        self.assertEqual(r.returncode, 1)
        self.assertIn("a keyed log needs --key", r.stdout)

    def test_periodic_checkpoint(self):
        b = Background(self, keyfs_extra="  audit_checkpoint_seconds: 1\n")
        b.start()
        b.m.write_key("eth", new_key() + "\n")
        deadline = time.monotonic() + 10
        found = []
        while not found and time.monotonic() < deadline:
            with open(b.m.app_log) as f:
                found = [json.loads(l) for l in f if '"audit checkpoint"' in l]
            time.sleep(0.1)
        self.assertTrue(found, "no periodic checkpoint within 10 s")
        self.assertEqual(found[0]["at"], "interval")
        self.assertEqual(int(found[0]["seq"]), b.m.audit_lines()[-1]["seq"])


@unittest.skipUnless(os.geteuid() == 0, "needs root to mount a small tmpfs")
class DenyModeTest(unittest.TestCase):
    """audit_failure: deny leaves the backend unchanged when the audit line
    of a store or remove cannot be written (here: its filesystem is full)."""

    def setUp(self):
        self.b = Background(self)
        self.logdir = os.path.join(self.b.m.root, "auditfs")
        os.mkdir(self.logdir)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", self.logdir],
                       check=True)
        self.addCleanup(subprocess.run, ["umount", "-l", self.logdir])
        with open(self.b.m.config) as f:
            text = f.read()
        self.b.m.audit_log = os.path.join(self.logdir, "audit.log")
        with open(self.b.m.config, "w") as f:
            f.write(text.replace(os.path.join(self.b.m.root, "audit.log"), self.b.m.audit_log))

    def fill(self):
        filler = os.path.join(self.logdir, "filler")
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while True:
                os.write(fd, b"x" * 512)
        except OSError:
            pass
        os.close(fd)
        return filler

    def test_store_and_remove_leave_the_backend_unchanged(self):
        b = self.b
        b.start()
        key = new_key()
        b.m.write_key("eth", key + "\n")
        store_before = open(b.m.store, "rb").read()
        filler = self.fill()
        # the audit log's last page may still have room: read until a line
        # no longer fits (a read is denied then too, in deny mode)
        for _ in range(200):
            try:
                b.m.read_key("eth")
            except OSError:
                break
        else:
            self.fail("the audit log never filled up")
        with self.assertRaises(OSError):
            b.m.write_key("eth", new_key() + "\n")
        self.assertEqual(open(b.m.store, "rb").read(), store_before, "store changed the backend")
        with self.assertRaises(OSError):
            os.unlink(b.m.key_path("eth"))
        self.assertEqual(open(b.m.store, "rb").read(), store_before, "remove changed the backend")
        r = b.m.cli("key", "remove", "--network", "eth", "--yes")
        self.assertEqual(r.returncode, 1)
        self.assertIn("audit log not writable", r.stderr)
        self.assertEqual(open(b.m.store, "rb").read(), store_before)
        os.unlink(filler)
        self.assertEqual(b.m.read_key("eth"), key + "\n")
        b.stop()
        r = verify(b.m.audit_log)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


if __name__ == "__main__":
    run()
