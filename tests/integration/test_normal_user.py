"""Issue 13: the product as a normal user runs it, on a machine whose
/dev/fuse is 0600 (as here), so that the suites that need a normal user
with a usable /dev/fuse do not all skip.

As root, the test makes a private mount namespace in which /dev/fuse is a
0666 node of the same device (on a tmpfs private to the namespace,
bind-mounted over the real one, so nothing outside the namespace changes) and, inside it, runs this file again as uid
65534 with HOME and the XDG directories in a temp dir: `omikuji-keyfs mount`
in the background (no -f) on the built-in defaults (the embedded file
backend), ls/cat/write/rm of keys through the mount, the key commands beside
the running mount (their effect checked in the store and the audit log),
the application log at $XDG_STATE_HOME/omikuji-keyfs/omikuji-keyfs.log, and
the stop by unmounting.  The inner run unmounts inside the namespace and
waits for the daemon by pid; the outer run kills that pid (and the namespace's
process group it started) if anything is left.

Skips with 77 and the reason when not root or when unshare/mknod/bind
mounts are not permitted here."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from keyfslib import is_mounted, new_key, wait_exit  # noqa: E402

NOBODY = 65534
INNER = "--inner"


# --- the inner run: uid 65534 inside the namespace ---------------------------

class NormalUserInside(unittest.TestCase):
    """Runs as uid 65534 in the private mount namespace (not collected by
    the outer run: see load_tests)."""

    def setUp(self):
        self.work = os.environ["NORMAL_USER_WORK"]
        self.bin = os.environ["KEYFS_BIN"]
        self.home = os.environ["HOME"]
        self.state = os.environ["XDG_STATE_HOME"]
        self.mnt = os.path.join(self.work, "mnt")
        self.audit = os.path.join(self.state, "omikuji-keyfs", "audit.log")
        self.app_log = os.path.join(self.state, "omikuji-keyfs", "omikuji-keyfs.log")
        self.pid = None
        self.addCleanup(self.stop)

    def run_bin(self, *args, input=None):
        return subprocess.run([self.bin, *args], capture_output=True, text=True, cwd=self.home,
                              input=input, timeout=60,
                              stdin=None if input is not None else subprocess.DEVNULL)

    def sh(self, cmd):
        return subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, cwd=self.mnt,
                              timeout=60)

    def audit_lines(self):
        with open(self.audit) as f:
            return [json.loads(line) for line in f if line.strip()]

    def app_messages(self):
        with open(self.app_log) as f:
            return [json.loads(line) for line in f if line.strip()]

    def stop(self):
        """Unmount inside the namespace, then wait for the daemon by pid."""
        if is_mounted(self.mnt):
            subprocess.run(["fusermount3", "-u", self.mnt], capture_output=True)
        if self.pid is not None:
            if not wait_exit(self.pid):
                os.kill(self.pid, signal.SIGKILL)
                wait_exit(self.pid)
            self.pid = None
        if is_mounted(self.mnt):
            subprocess.run(["fusermount3", "-uz", self.mnt], capture_output=True)

    def test_mount_keys_and_key_commands_as_a_normal_user(self):
        self.assertEqual((os.getuid(), os.geteuid(), os.getgid()), (NOBODY, NOBODY, NOBODY))
        os.close(os.open("/dev/fuse", os.O_RDWR))   # usable by this user in the namespace

        r = self.run_bin("mount", self.mnt)   # background, built-in defaults
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(is_mounted(self.mnt), "mount returned 0 but nothing is mounted")
        with open(self.audit + ".lock") as f:
            self.pid = int(f.read().strip())
        with open(os.path.join(self.work, "daemon.pid"), "w") as f:
            f.write(str(self.pid))   # for the outer run's cleanup
        self.assertNotEqual(self.pid, os.getpid())
        with open(f"/proc/{self.pid}/status") as f:
            uids = next(l for l in f if l.startswith("Uid:")).split()[1:]
        self.assertEqual(set(uids), {str(NOBODY)})

        self.assertEqual(sorted(os.listdir(self.mnt)),
                         ["addresses", "health", "keys", "metrics", "textfile"])
        with open(os.path.join(self.mnt, "health", "file")) as f:
            self.assertEqual(f.readline(), "up\n")

        # write, cat, ls, rm through the mount
        k_eth, k_op, k_base = new_key(), new_key(), new_key()
        r = self.sh(f"echo {k_eth} > keys/eth && echo {k_op} > keys/op && cat keys/eth && ls keys")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, f"{k_eth}\neth\nop\n")
        self.assertEqual(os.stat(os.path.join(self.mnt, "keys", "eth")).st_size, 67)
        r = self.sh("rm keys/op && ls keys")
        self.assertEqual((r.returncode, r.stdout), (0, "eth\n"), r.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.mnt, "keys", "op")))

        # the key commands beside the running mount act through it
        r = self.run_bin("key", "import", "--network", "base", "--key", k_base)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("through the running mount", r.stderr)
        with open(os.path.join(self.mnt, "keys", "base")) as f:
            self.assertEqual(f.read(), k_base + "\n")
        r = self.run_bin("key", "remove", "--network", "eth", "--yes")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.mnt, "keys", "eth")))
        r = self.run_bin("key", "list")
        self.assertEqual((r.returncode, r.stdout), (0, "base\n"), r.stderr)

        lines = self.audit_lines()
        done = [(l["operation"], l["network"], l["uid"]) for l in lines
                if l.get("status") is True and not l.get("intent")]
        for op in (("store", "eth"), ("store", "op"), ("remove", "op"), ("store", "base"),
                   ("remove", "eth")):
            self.assertIn((*op, NOBODY), done)
        cli = [l for l in lines if l["network"] in ("base", "eth") and l["operation"] in
               ("store", "remove") and l["pid"] not in (self.pid,) and l["status"] is True
               and l["process"] == "omikuji-keyfs"]
        self.assertTrue(any(l["network"] == "base" and l["operation"] == "store" for l in cli))
        self.assertTrue(any(l["network"] == "eth" and l["operation"] == "remove" for l in cli))
        last_seq = lines[-1]["seq"]

        # the application log of a daemonized mount with the default target
        self.assertTrue(os.path.exists(self.app_log), "no application log at $XDG_STATE_HOME")
        app = self.app_messages()
        self.assertIn(("mounted", self.mnt, str(self.pid)),
                      [(l["message"], l.get("mountpoint"), l.get("pid")) for l in app])
        events = [(l["message"], l.get("network")) for l in app]
        for ev in (("key stored", "eth"), ("key stored", "op"), ("key removed", "op"),
                   ("key stored", "base"), ("key removed", "eth")):
            self.assertIn(ev, events)

        # stop = unmount; the daemon exits and the mount is gone
        r = subprocess.run(["fusermount3", "-u", self.mnt], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(wait_exit(self.pid), "the daemon did not exit after the unmount")
        self.pid = None
        self.assertFalse(is_mounted(self.mnt))
        self.assertIn(("unmounting", self.mnt),
                      [(l["message"], l.get("mountpoint")) for l in self.app_messages()])
        with open(self.app_log) as f:
            app = f.read()
        for k in (k_eth, k_op, k_base):
            self.assertNotIn(k[2:], app)

        # the store holds what the mount and the commands did (read directly now)
        r = self.run_bin("key", "list")
        self.assertEqual((r.returncode, r.stdout), (0, "base\n"), r.stderr)
        self.assertNotIn("through the running mount", r.stderr)
        r = self.run_bin("key", "export", "--network", "base", "--yes")
        self.assertEqual((r.returncode, r.stdout), (0, k_base + "\n"), r.stderr)
        store = os.path.join(os.environ["XDG_DATA_HOME"], "omikuji-keyfs", "keys.enc")
        self.assertEqual(os.stat(store).st_uid, NOBODY)
        with open(store, "rb") as f:
            blob = f.read()
        self.assertNotIn(k_base[2:].encode(), blob)   # encrypted at rest
        r = self.run_bin("audit", "verify", "--expect-seq", str(self.audit_lines()[-1]["seq"]),
                         self.audit)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertGreater(self.audit_lines()[-1]["seq"], last_seq)


# --- the outer run: root, makes the namespace -----------------------------------

# Inside the new namespace: a private tmpfs (so a nodev /tmp does not
# matter, and nothing is left on disk) holds a 0666 node of /dev/fuse's
# device (10, 229), bind-mounted over /dev/fuse; then drop to 65534.
NS_SCRIPT = r"""
set -e
mkdir -p "$NS_DIR/dev"
mount -t tmpfs -o mode=755,size=64k keyfs-dev "$NS_DIR/dev"
mknod -m 666 "$NS_DIR/dev/fuse" c 10 229
mount --bind "$NS_DIR/dev/fuse" /dev/fuse
exec setpriv --reuid=65534 --regid=65534 --clear-groups "$@"
"""


def skip_all(reason):
    print("SKIP: " + reason)
    sys.exit(77)


def outer_checks():
    if os.geteuid() != 0:
        skip_all("needs root to make a private mount namespace with a usable /dev/fuse "
                 "for uid 65534")
    for tool in ("unshare", "setpriv", "mknod", "fusermount3"):
        if shutil.which(tool) is None:
            skip_all(f"{tool} not installed")
    d = tempfile.mkdtemp(prefix="keyfs-nu-probe-")
    try:
        os.chmod(d, 0o755)
        r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", NS_SCRIPT,
                            "ns", "sh", "-c", "exec 3<>/dev/fuse"],
                           env={**os.environ, "NS_DIR": d}, capture_output=True, text=True,
                           timeout=30)
        if r.returncode != 0:
            skip_all("a private mount namespace with a 0666 /dev/fuse is not permitted here: "
                     + (r.stderr.strip().splitlines() or ["exit %d" % r.returncode])[-1])
    finally:
        shutil.rmtree(d, ignore_errors=True)


class NormalUserTest(unittest.TestCase):
    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="keyfs-normal-user-")
        self.addCleanup(shutil.rmtree, self.root, True)
        os.chmod(self.root, 0o755)
        self.work = os.path.join(self.root, "work")
        self.home = os.path.join(self.work, "home")
        for d in (self.work, self.home, os.path.join(self.work, "mnt")):
            os.mkdir(d)
            os.chown(d, NOBODY, NOBODY)
        # copies uid 65534 can read whatever the build tree's permissions
        self.bin = os.path.join(self.root, "omikuji-keyfs")
        shutil.copy(os.environ["KEYFS_BIN"], self.bin)
        os.chmod(self.bin, 0o755)
        self.script = os.path.join(self.root, "test_normal_user.py")
        for f in (os.path.abspath(__file__),
                  os.path.join(os.path.dirname(os.path.abspath(__file__)), "keyfslib.py")):
            shutil.copy(f, self.root)
            os.chmod(os.path.join(self.root, os.path.basename(f)), 0o644)
        self.proc = None
        self.addCleanup(self.reap)

    def reap(self):
        """Whatever the inner run left: the daemon (by the pid it wrote) and
        the namespace's process group started here."""
        try:
            with open(os.path.join(self.work, "daemon.pid")) as f:
                pid = int(f.read())
        except (OSError, ValueError):
            pid = None
        if pid and not wait_exit(pid, 0):
            os.kill(pid, signal.SIGTERM)   # its namespace's mount goes with it
            if not wait_exit(pid, 10):
                os.kill(pid, signal.SIGKILL)
                wait_exit(pid)
        if pid:
            try:   # ours to reap: we are its subreaper (see the test)
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def test_inside_a_private_mount_namespace_as_uid_65534(self):
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "NS_DIR": self.root,
            "HOME": self.home,
            "XDG_CONFIG_HOME": os.path.join(self.home, ".config"),
            "XDG_DATA_HOME": os.path.join(self.home, ".local", "share"),
            "XDG_STATE_HOME": os.path.join(self.home, ".local", "state"),
            "KEYFS_BIN": self.bin,
            "NORMAL_USER_WORK": self.work,
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "TSAN_OPTIONS", "LSAN_OPTIONS"):
            if k in os.environ:
                # a suppressions file uid 65534 may not reach: use a copy
                opts = []
                for opt in os.environ[k].split(":"):
                    if opt.startswith("suppressions="):
                        copy = os.path.join(self.root, k.lower() + ".supp")
                        shutil.copy(opt.split("=", 1)[1], copy)
                        os.chmod(copy, 0o644)
                        opt = "suppressions=" + copy
                    opts.append(opt)
                env[k] = ":".join(opts)
        # The daemon's parent (`mount` without -f) exits once it serves: as
        # the subreaper, this process inherits the daemon and reaps it.
        import ctypes
        ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)   # PR_SET_CHILD_SUBREAPER
        self.proc = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", NS_SCRIPT, "ns",
             "/usr/bin/python3", self.script, INNER],
            env=env, cwd="/", stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)
        try:
            out, _ = self.proc.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            self.reap()
            out, _ = self.proc.communicate()
            self.fail("the run inside the namespace did not finish: " + out)
        sys.stdout.write(out)
        self.assertEqual(self.proc.returncode, 0, "the run as uid 65534 failed (output above)")
        self.assertIn("OK", out)
        # nothing of the namespace's mount is visible out here
        with open("/proc/self/mountinfo") as f:
            self.assertNotIn(os.path.join(self.work, "mnt"), f.read())


def main():
    if len(sys.argv) > 1 and sys.argv[1] == INNER:
        suite = unittest.defaultTestLoader.loadTestsFromTestCase(NormalUserInside)
        result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
        sys.exit(0 if result.wasSuccessful() else 1)
    outer_checks()
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(NormalUserTest)
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    failed = len(result.failures) + len(result.errors)
    skipped = len(result.skipped)
    print(f"{result.testsRun - failed - skipped} passed, {failed} failed, {skipped} skipped")
    sys.exit(0 if result.wasSuccessful() else 1)


if __name__ == "__main__":
    main()
