"""Contract section 9 in the mode users run: `mount` WITHOUT -f.

`mount` must return only once the mount serves (so nothing here polls for
the mount to appear), exit non-zero with one line when the start fails,
resolve relative mountpoints, always unmount on stop, log to the default
file once daemonized, lock key memory in the process that serves, refuse a
second writer of the same audit log, and talk sd_notify.  The daemon's pid
is read from the audit log's lock file; its exit is awaited with a pidfd,
not a sleep.
"""
import os
import select
import signal
import socket
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from keyfslib import KEYFS_BIN, Mount, is_mounted, new_key, run  # noqa: E402


def wait_exit(pid, timeout=10):
    """Wait for a process that is not our child to end (pidfd, no polling)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
        return bool(ready)
    finally:
        os.close(fd)


def vmlck_kb(pid):
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

    def test_key_memory_locked_in_the_background(self):
        b = Background(self)
        b.start()
        key = new_key()
        b.m.write_key("eth", key + "\n")
        b.m.read_key("eth")
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


if __name__ == "__main__":
    run()
