"""A private Secret Service for tests and benchmarks: a D-Bus session bus
without service activation (so only the daemon started here answers as
org.freedesktop.secrets) and gnome-keyring-daemon (secrets only) in the
foreground with its own HOME, its login keyring unlocked with a throwaway
password.  Everything started here is stopped by pid."""
import os
import shutil
import signal
import subprocess
import tempfile
import time

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:tmpdir=/tmp</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""

TOOLS = ("dbus-daemon", "dbus-run-session", "dbus-send", "gnome-keyring-daemon", "secret-tool")


def missing_tool():
    """The first tool these helpers need that is not installed, or None."""
    for tool in TOOLS:
        if shutil.which(tool) is None:
            return tool
    return None


def write_bus_config(directory, listen=None):
    """bus.conf in directory; listen: a D-Bus listen address (default: a
    fresh socket under /tmp)."""
    path = os.path.join(directory, "bus.conf")
    text = BUS_CONFIG
    if listen:
        text = text.replace("unix:tmpdir=/tmp", listen)
    with open(path, "w") as f:
        f.write(text)
    return path


class SessionBus:
    """dbus-daemon with BUS_CONFIG (for callers that are not run inside
    dbus-run-session, such as bench/run.py)."""

    def __init__(self, socket_path=None):
        """socket_path: listen there, so that a restarted bus has the same
        address (default: a fresh address per start)."""
        self.dir = tempfile.mkdtemp(prefix="keyfs-bus-")
        self.socket_path = socket_path
        self.proc = None
        self.address = None

    def start(self):
        conf = write_bus_config(self.dir, "unix:path=" + self.socket_path
                                if self.socket_path else None)
        self.proc = subprocess.Popen(["dbus-daemon", "--config-file", conf, "--nofork",
                                      "--print-address=1"], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        self.address = self.proc.stdout.readline().strip()
        if not self.address:
            raise RuntimeError("dbus-daemon printed no address")
        if self.socket_path:
            # without the guid, as systemd --user's bus is addressed: a
            # client checks a guid, which changes with every start
            self.address = "unix:path=" + self.socket_path
        return self

    def stop(self, remove=True):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None
        if remove:
            shutil.rmtree(self.dir, ignore_errors=True)


class KeyringDaemon:
    """gnome-keyring-daemon --foreground --unlock --components=secrets on the
    bus at `address` (default: this process's session bus)."""

    def __init__(self, root, address=None):
        self.home = os.path.join(root, "home")
        self.runtime = os.path.join(root, "run")
        os.makedirs(self.home, exist_ok=True)
        os.makedirs(self.runtime, mode=0o700, exist_ok=True)
        self.password = "test-" + os.urandom(6).hex()
        self.log_path = os.path.join(root, "gnome-keyring.log")
        self.env = dict(os.environ, HOME=self.home, XDG_RUNTIME_DIR=self.runtime,
                        XDG_DATA_HOME=os.path.join(self.home, ".local/share"),
                        XDG_CONFIG_HOME=os.path.join(self.home, ".config"))
        if address:
            self.env["DBUS_SESSION_BUS_ADDRESS"] = address
        self.proc = None

    def start(self, timeout=10):
        """Start and wait until the login keyring answers unlocked.  One
        more try when the daemon exits at once (seen once on a loaded CI
        machine, its log then says why)."""
        try:
            return self._start(timeout)
        except RuntimeError as e:
            if self.proc is None or self.proc.poll() is None:
                raise
            first = str(e)
        time.sleep(0.5)
        try:
            return self._start(timeout)
        except RuntimeError as e:
            raise RuntimeError("%s; first try: %s" % (e, first))

    def _start(self, timeout):
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                ["gnome-keyring-daemon", "--foreground", "--unlock", "--components=secrets"],
                stdin=subprocess.PIPE, stdout=log, stderr=log, env=self.env)
        finally:
            log.close()
        self.proc.stdin.write(self.password.encode())
        self.proc.stdin.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                with open(self.log_path, errors="replace") as f:
                    tail = f.read()[-500:]
                raise RuntimeError("gnome-keyring-daemon exited at start (%s): %s" % (
                    self.proc.returncode, tail))
            if self.default_collection_unlocked():
                return self
            time.sleep(0.05)
        raise RuntimeError("gnome-keyring-daemon did not come up")

    def default_collection_unlocked(self):
        """Asked with dbus-send, so it works without python modules."""
        r = subprocess.run(
            ["dbus-send", "--print-reply", "--dest=org.freedesktop.secrets",
             "/org/freedesktop/secrets/aliases/default", "org.freedesktop.DBus.Properties.Get",
             "string:org.freedesktop.Secret.Collection", "string:Locked"],
            capture_output=True, text=True, env=self.env, timeout=10)
        return r.returncode == 0 and "boolean false" in r.stdout

    def secret_tool(self, *argv, input=None):
        return subprocess.run(["secret-tool", *argv], input=input, capture_output=True, text=True,
                              env=self.env, timeout=30)

    def stop(self, sig=signal.SIGTERM):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
