"""The request plumbing the test servers share (aws_server.py,
vault_server.py), on the server side; serverproc.py is the test side that
starts them.  Stdlib only: the servers import it from their own directory.

  * FaultState: one injected fault at a time ({"mode", "count", "delay",
    ...}), consumed by the requests it matches (count < 0: until changed);
    setting a new one releases the requests a "hang" holds.
  * PlumbingHandler: reading a request body (Content-Length or chunked, with
    a size limit) and dropping a connection.
  * TestHTTPServer: a threading HTTP server on IPv4 or IPv6 that keeps a
    state object and does not print tracebacks for clients that go away.
  * serve(): write the port file atomically once listening, serve until
    SIGTERM/SIGINT, release held requests, close.
"""

import os
import signal
import socket
import ssl
import sys
import threading
from http.server import ThreadingHTTPServer


class FaultState:
        def init_faults(self, **match_keys):
                self.fault = dict({"mode": "none", "count": -1, "delay": None}, **match_keys)
                self.release = threading.Event()

        def take_fault_if(self, matches):
                """The fault that applies to a request (matches(fault) says
                whether its match keys do), consuming one count.  Call with the
                state's lock held."""
                f = self.fault
                if f["mode"] == "none" or f["count"] == 0 or not matches(f):
                        return None
                taken = dict(f)
                taken["release"] = self.release
                if f["count"] > 0:
                        f["count"] -= 1
                        if f["count"] == 0:
                                f["mode"] = "none"
                return taken

        def set_fault(self, fault):
                self.fault = fault
                old, self.release = self.release, threading.Event()
                old.set()


class PlumbingHandler:
        """Mixed into a BaseHTTPRequestHandler."""

        def read_request_body(self, max_body):
                """The body (Content-Length or chunked); ValueError past max_body."""
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                        chunks, total = [], 0
                        while True:
                                line = self.rfile.readline(1024)
                                size = int(line.split(b";")[0].strip() or b"0", 16)
                                if size == 0:
                                        while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                                                pass
                                        break
                                total += size
                                if total > max_body:
                                        raise ValueError("body too large")
                                chunks.append(self.rfile.read(size))
                                self.rfile.readline(1024)
                        return b"".join(chunks)
                length = int(self.headers.get("Content-Length") or 0)
                if length > max_body:
                        raise ValueError("body too large")
                return self.rfile.read(length) if length > 0 else b""

        def drop_connection(self):
                self.close_connection = True
                try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                        pass


class TestHTTPServer(ThreadingHTTPServer):
        daemon_threads = True
        allow_reuse_address = True
        name = "test_server"
        # socketserver's default listen backlog is 5: 100 clients connecting
        # at once lost SYNs and waited for the 1 s (then 3 s...) retransmit.
        # Vault and AWS (Go, Java) listen with the system's somaxconn.
        request_queue_size = 4096

        def __init__(self, addr, state, handler):
                if ":" in addr[0]:
                        self.address_family = socket.AF_INET6
                self.state = state
                super().__init__(addr, handler)

        def handle_error(self, request, client_address):
                exc = sys.exc_info()[1]
                if isinstance(exc, (ConnectionError, ssl.SSLError, socket.timeout)):
                        self.client_went_away(exc)
                else:
                        sys.stderr.write("%s: error %s: %s\n" % (self.name, type(exc).__name__, exc))

        def client_went_away(self, exc):
                pass


def serve(server, port_file, release=None):
        """Serve until SIGTERM/SIGINT.  The port goes to port_file (written
        whole, by rename) once the socket listens.  release(): called after
        the last request was accepted, to let held ("hang") requests end."""
        stop = threading.Event()

        def on_signal(signum, frame):
                stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                  daemon=True)
        thread.start()
        port = server.server_address[1]
        tmp = port_file + ".tmp"
        with open(tmp, "w") as f:
                f.write("%d\n" % port)
        os.rename(tmp, port_file)
        while not stop.wait(0.5):
                pass
        server.shutdown()
        if release:
                release()
        server.server_close()
        return port
