"""The process side shared by the test servers' Python drivers (vaultlib,
awslib): one server script run with Debian's /usr/bin/python3 on an
ephemeral loopback port (it writes the port to a file), in its own temp dir,
its output in a log file, stopped by its pid (SIGTERM, then SIGKILL) on
stop(), on exit of a `with`, or at interpreter exit."""

import atexit
import os
import shutil
import signal
import subprocess
import tempfile
import time

PYTHON = "/usr/bin/python3"


class ServerProcess:
        def _init_process(self, prefix):
                self.tmpdir = tempfile.mkdtemp(prefix=prefix)
                self.port_file = os.path.join(self.tmpdir, "port")
                self.log_path = os.path.join(self.tmpdir, "server.log")
                self.proc = None
                self.port = None

        def _launch(self, args, what, timeout):
                """Run args (the script's command line); wait for its port."""
                self._log = open(self.log_path, "wb")
                self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                             stdout=self._log, stderr=self._log)
                atexit.register(self.stop)
                deadline = time.monotonic() + timeout
                while True:
                        if os.path.exists(self.port_file):
                                with open(self.port_file) as f:
                                        self.port = int(f.read().strip())
                                return self
                        if self.proc.poll() is not None:
                                raise RuntimeError("%s exited with %d:\n%s"
                                                   % (what, self.proc.returncode, self.log_text()))
                        if time.monotonic() > deadline:
                                self.stop()
                                raise RuntimeError("%s did not start" % what)
                        time.sleep(0.05)

        def stop(self):
                proc, self.proc = self.proc, None
                if proc is not None and proc.poll() is None:
                        proc.send_signal(signal.SIGTERM)
                        try:
                                proc.wait(10)
                        except subprocess.TimeoutExpired:
                                proc.kill()
                                proc.wait()
                if proc is not None:
                        self._log.close()
                        self.returncode = proc.returncode

        def cleanup(self):
                self.stop()
                shutil.rmtree(self.tmpdir, ignore_errors=True)

        def __enter__(self):
                return self.start()

        def __exit__(self, *exc):
                self.cleanup()
                return False

        def log_text(self):
                try:
                        with open(self.log_path, errors="replace") as f:
                                return f.read()
                except OSError:
                        return ""
