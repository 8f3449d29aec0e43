"""Helpers for the integration tests: a real omikuji-keyfs mount on a temp dir.

The daemon runs with -f in the background; `Mount` waits for its sd_notify
READY=1 (and fails if the daemon exits first), and always unmounts and reaps
it in `stop()`.  Keys are throwaway values generated per test.
"""
import hashlib
import json
import re
import os
import secrets
import select
import shutil
import socket
import signal
import subprocess
import sys
import tempfile
import time
import unittest

# Keep key material out of test output, even the throwaway keys of a
# failing assertion: every run of 64 hex digits in a failure message is
# replaced by a short fingerprint (enough to tell two values apart).
_HEX64 = re.compile(r"(0x)?[0-9a-fA-F]{64}")


def redact(text):
    return _HEX64.sub(lambda m: "<key %s>" % hashlib.sha256(m.group(0).encode()).hexdigest()[:8],
                      text)


_format_message = unittest.TestCase._formatMessage
unittest.TestCase._formatMessage = lambda self, msg, standard: redact(
    _format_message(self, msg, standard))

KEYFS_BIN = os.environ.get("KEYFS_BIN", os.path.join(os.path.dirname(__file__), "../../build/omikuji-keyfs"))
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def new_key(prefix="0x"):
    """A random valid secp256k1 private key as hex text."""
    while True:
        k = int.from_bytes(secrets.token_bytes(32), "big")
        if 0 < k < SECP256K1_N:
            return prefix + format(k, "064x")


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


def wait_listed(mount, name, timeout=15):
    """Wait until keys/ lists name (a key written beside the mount shows once
    the mount's listing is refreshed); True when it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if name in os.listdir(mount.path("keys")):
            return True
        time.sleep(0.1)
    return False


def is_mounted(path):
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 4 and fields[4].replace("\\040", " ") == path:
                return True
    return False


def skip_all(reason):
    """Skip the whole test program (meson reads exit 77 as skipped)."""
    print("SKIP: " + reason)
    sys.exit(77)


def require_fuse():
    if not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None:
        skip_all("/dev/fuse or fusermount3 not available")
    # fusermount3 opens /dev/fuse with the caller's rights: 0600 on some machines
    try:
        os.close(os.open("/dev/fuse", os.O_RDWR))
    except OSError as e:
        skip_all(f"/dev/fuse is not usable by uid {os.getuid()} ({e.strerror}); "
                 "run as root or make it 0666")


# Tests that act as a second user (setpriv) or mount with allow_other.
needs_root = unittest.skipUnless(os.geteuid() == 0,
                                 "needs root: acts as another user (setpriv) with allow_other")


class Mount:
    """A mounted omikuji-keyfs with its own config, store and audit log."""

    def __init__(self, config_text=None, extra_args=(), env=None, storage="file",
                 key_format="evm", keyfs_extra="", root=None):
        self.root = root or tempfile.mkdtemp(prefix="keyfs-test-")
        self.mnt = os.path.join(self.root, "mnt")
        os.makedirs(self.mnt, exist_ok=True)
        self.audit_log = os.path.join(self.root, "audit.log")
        self.app_log = os.path.join(self.root, "app.log")
        self.store = os.path.join(self.root, "store", "keys.enc")
        self.config = os.path.join(self.root, "omikuji.yaml")
        if config_text is None:
            config_text = f"""
key_storage:
  storage_type: {storage}
  file:
    path: {self.store}
{self.logging_and_audit_yaml()}  key_format: {key_format}
{keyfs_extra}
"""
        with open(self.config, "w") as f:
            f.write(config_text)
        os.chmod(self.config, 0o600)
        self.env = dict(os.environ)
        self.env["HOME"] = self.root
        self.env.pop("OMIKUJI_CONFIG", None)
        if env:
            self.env.update(env)
        self.extra_args = list(extra_args)
        self.proc = None
        self.stderr_path = os.path.join(self.root, "daemon.stderr")

    def logging_and_audit_yaml(self):
        """The config's logging section (JSON to app.log) and the start of its
        keyfs section (the audit log, 1 s health checks): what every test
        mount shares; more keyfs keys may follow."""
        return f"""logging:
  format: json
  level: debug
  targets:
    - type: file
      path: {self.app_log}
keyfs:
  audit_log: {self.audit_log}
  health_interval_seconds: 1
"""

    def cli(self, *args, input=None, config=True, env=None):
        """Run the CLI (with -c this mount's config unless config=False)."""
        argv = [KEYFS_BIN, *args] + (["-c", self.config] if config else [])
        e = dict(self.env)
        if env:
            e.update(env)
        return subprocess.run(argv, input=input, capture_output=True, text=True, env=e,
                              timeout=60, stdin=None if input is not None else subprocess.DEVNULL)

    def start(self, timeout=10):
        """Start with -f and wait for the daemon's READY=1 (sd_notify on a
        datagram socket of our own): sent once it serves, after run_as."""
        notify_path = os.path.join(self.root, "notify.sock")
        if os.path.exists(notify_path):
            os.unlink(notify_path)
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(notify_path)
        os.chmod(notify_path, 0o777)   # a run_as daemon sends too
        env = dict(self.env, NOTIFY_SOCKET=notify_path)
        self.stderr = open(self.stderr_path, "w")
        self.proc = subprocess.Popen(
            [KEYFS_BIN, "mount", "-f", "-c", self.config, *self.extra_args, self.mnt],
            stdout=self.stderr, stderr=self.stderr, env=env, stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise AssertionError(f"daemon exited with {self.proc.returncode} before mounting: {self.daemon_stderr()}")
                ready, _, _ = select.select([notify], [], [], 0.05)
                if ready and b"READY=1" in notify.recv(4096).split(b"\n"):
                    if not is_mounted(self.mnt):
                        raise AssertionError("READY=1 but the mount is not there")
                    return self
            if is_mounted(self.mnt):
                raise AssertionError("mounted but no READY=1 on NOTIFY_SOCKET (a run_as daemon "
                                     "must be able to reach the test's root directory)")
            raise AssertionError("mount did not come up in time")
        finally:
            notify.close()
            os.unlink(notify_path)

    def daemon_stderr(self):
        try:
            with open(self.stderr_path) as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        if self.proc is not None:
            if is_mounted(self.mnt):
                subprocess.run(["fusermount3", "-u", self.mnt], capture_output=True)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            if is_mounted(self.mnt):
                subprocess.run(["fusermount3", "-uz", self.mnt], capture_output=True)
            self.proc = None
            self.stderr.close()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def path(self, *parts):
        return os.path.join(self.mnt, *parts)

    def key_path(self, network):
        return os.path.join(self.mnt, "keys", network)

    def write_key(self, network, text):
        with open(self.key_path(network), "w") as f:
            f.write(text)

    def read_key(self, network):
        with open(self.key_path(network)) as f:
            return f.read()

    def sh(self, cmd, **kw):
        return subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, cwd=self.mnt,
                              env=self.env, timeout=kw.pop("timeout", 60), **kw)

    def audit_lines(self):
        try:
            with open(self.audit_log) as f:
                return [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []

    def metrics(self):
        """Parse `metrics` into {(name, frozenset(labels.items())): value}."""
        with open(self.path("metrics")) as f:
            text = f.read()
        return parse_metrics(text)


def parse_metrics(text):
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, value = line.rsplit(" ", 1)
        labels = {}
        if "{" in name_labels:
            name, rest = name_labels.split("{", 1)
            rest = rest.rstrip("}")
            # label values in our tests hold no commas or quotes
            for part in filter(None, rest.split('",')):
                k, v = part.split("=", 1)
                labels[k] = v.strip('"')
        else:
            name = name_labels
        out[(name, frozenset(labels.items()))] = float(value)
    return out


_REQUIRED = object()


def metric(m, name, default=_REQUIRED, **labels):
    """The value of one series; an absent series fails the test unless a
    default is given (a renamed or missing series must not read as 0)."""
    key = (name, frozenset(labels.items()))
    if key in m:
        return m[key]
    if default is _REQUIRED:
        raise AssertionError(f"no series {name}{labels} in metrics")
    return default


def start_for_other_users(testcase, **kwargs):
    """A started Mount with -o allow_other whose temp dir other uids can
    traverse, stopped and removed by testcase's cleanups."""
    m = Mount(extra_args=["-o", "allow_other"], **kwargs)
    testcase.addCleanup(m.cleanup)
    os.chmod(m.root, 0o755)
    m.start()
    return m


class MountTestCase(unittest.TestCase):
    """A test case with a fresh mount per test (self.m)."""
    mount_kwargs = {}

    def setUp(self):
        self.m = Mount(**self.mount_kwargs)
        # registered before start: cleanups run even when setUp fails later
        self.addCleanup(self.m.cleanup)
        self.m.start()


def run(module_name="__main__"):
    """unittest main that prints the plain 'N passed, N failed' line."""
    require_fuse()
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[module_name])
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    failed = len(result.failures) + len(result.errors)
    skipped = len(result.skipped)
    print(f"{result.testsRun - failed - skipped} passed, {failed} failed, {skipped} skipped")
    sys.exit(0 if result.wasSuccessful() else 1)
