#!/usr/bin/python3
"""bench/vault_server_nodelay.py - tests/servers/vault_server.py with
TCP_NODELAY on its connections, for the benchmarks.

The test server writes a response's headers and body in separate send()s;
with Nagle's algorithm on, the body waits for the client's delayed ACK
(~40 ms on Linux), so every request took ~44 ms and the "uncached read"
benchmark measured that timer, not a Vault read.  Setting
socketserver's disable_nagle_algorithm removes the stall; everything else
is the test server unchanged (same arguments, same control API).
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "servers"))
import vault_server  # noqa: E402

vault_server.Handler.disable_nagle_algorithm = True

if __name__ == "__main__":
    sys.exit(vault_server.main())
