"""addresses/<network> through a real mount (issue 16, contract section 12).

Every address the daemon shows is checked against an independent
derivation made here: a pure-Python secp256k1 point multiplication and
pycryptodome's Keccak-256 (Debian's python3-pycryptodome), with EIP-55
written out from the EIP.  Run with /usr/bin/python3.
"""
import errno
import hashlib
import os
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
SRC = os.environ.get("TESTS_SOURCE_DIR", os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(SRC, "servers"))
from keyfslib import Mount, metric, new_key, run, start_for_other_users  # noqa: E402
from test_security import as_nobody  # noqa: E402
from test_vault_mount import PREFIX, vault_config  # noqa: E402
import vaultlib  # noqa: E402

try:
    from Cryptodome.Hash import keccak as _keccak   # Debian's python3-pycryptodome
except ImportError:
    _keccak = None

# --- an independent derivation: secp256k1 in pure Python ----------------------

P = 2**256 - 2**32 - 977
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
G = (0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798,
     0x483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8)


def point_add(a, b):
    if a is None:
        return b
    if b is None:
        return a
    if a[0] == b[0] and (a[1] + b[1]) % P == 0:
        return None
    if a == b:
        lam = 3 * a[0] * a[0] * pow(2 * a[1], -1, P) % P
    else:
        lam = (b[1] - a[1]) * pow(b[0] - a[0], -1, P) % P
    x = (lam * lam - a[0] - b[0]) % P
    return (x, (lam * (a[0] - x) - a[1]) % P)


def point_mul(k, point=G):
    result = None
    while k:
        if k & 1:
            result = point_add(result, point)
        point = point_add(point, point)
        k >>= 1
    return result


def keccak256(data):
    return _keccak.new(digest_bits=256, data=data).digest()


def eip55(addr20):
    lower = addr20.hex()
    h = keccak256(lower.encode()).hex()
    return "0x" + "".join(c.upper() if c.isalpha() and int(h[i], 16) >= 8 else c
                          for i, c in enumerate(lower))


def address_of(key_text):
    k = int(key_text.strip().removeprefix("0x"), 16)
    assert 0 < k < N
    x, y = point_mul(k)
    return eip55(keccak256(x.to_bytes(32, "big") + y.to_bytes(32, "big"))[-20:])


KNOWN_KEY = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
KNOWN_ADDRESS = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"


def read(path):
    with open(path) as f:
        return f.read()


class IndependentDerivationTest(unittest.TestCase):
    """The Python side itself, against the published vectors."""

    def test_python_reference(self):
        self.assertEqual(address_of(KNOWN_KEY), KNOWN_ADDRESS)
        self.assertEqual(keccak256(b"").hex(),
                         "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470")
        for a in ("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
                  "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
                  "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
                  "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb"):
            self.assertEqual(eip55(bytes.fromhex(a[2:])), a)


class FileMountTest(unittest.TestCase):
    keyfs_extra = ""

    def setUp(self):
        self.m = Mount(keyfs_extra=self.keyfs_extra)
        self.addCleanup(self.m.cleanup)
        self.m.start()

    def test_addresses_match_an_independent_derivation(self):
        m = self.m
        keys = {"known": KNOWN_KEY}
        for i in range(5):
            keys[f"net-{i}"] = new_key(prefix="0x" if i % 2 else "")
        for net, key in keys.items():
            m.write_key(net, key + "\n")
        self.assertEqual(sorted(os.listdir(m.path("addresses"))), sorted(keys))
        for net, key in keys.items():
            text = read(m.path("addresses", net))
            self.assertEqual(text, address_of(key) + "\n", net)
            self.assertEqual(len(text), 43)
            st = os.stat(m.path("addresses", net))
            self.assertEqual(st.st_size, 43)
            self.assertEqual(st.st_mode & 0o777, 0o444)
        self.assertEqual(read(m.path("addresses", "known")), KNOWN_ADDRESS + "\n")
        # Known addresses are served without a key fetch, so not audited;
        # nothing of the key is in any reply or log line.
        audit = read(m.audit_log)
        self.assertNotIn('"operation":"address"', audit)
        for key in keys.values():
            self.assertNotIn(key.removeprefix("0x"), audit)
            self.assertNotIn(key.removeprefix("0x"), read(m.app_log))

    def test_rotation_changes_address_and_mtime(self):
        m = self.m
        first, second = new_key(), new_key()
        m.write_key("eth", first + "\n")
        self.assertEqual(read(m.path("addresses", "eth")), address_of(first) + "\n")
        before = os.stat(m.path("addresses", "eth")).st_mtime_ns
        time.sleep(1.2)    # past the kernel's 1 s attribute cache
        m.write_key("eth", second + "\n")
        self.assertEqual(read(m.path("addresses", "eth")), address_of(second) + "\n")
        after = os.stat(m.path("addresses", "eth")).st_mtime_ns
        self.assertGreater(after, before)
        # Storing the same key again is no new address: the mtime stays.
        time.sleep(1.2)
        m.write_key("eth", second.upper().replace("0X", "0x") + "\n")
        self.assertEqual(os.stat(m.path("addresses", "eth")).st_mtime_ns, after)

    def test_key_import_beside_the_mount_changes_the_address(self):
        m = self.m
        first, second = new_key(), new_key()
        m.write_key("eth", first + "\n")
        self.assertEqual(read(m.path("addresses", "eth")), address_of(first) + "\n")
        r = m.cli("key", "import", "--network", "eth", input=second + "\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("through the running mount", r.stderr)
        self.assertEqual(r.stdout, address_of(second) + "\n")
        self.assertEqual(read(m.path("addresses", "eth")), address_of(second) + "\n")

    def test_remove_and_unknown(self):
        m = self.m
        m.write_key("eth", new_key() + "\n")
        os.unlink(m.key_path("eth"))
        with self.assertRaises(FileNotFoundError):
            read(m.path("addresses", "eth"))
        self.assertEqual(os.listdir(m.path("addresses")), [])
        for bad in ("nope", "bad name!", ".hidden", "-x"):
            with self.assertRaises(FileNotFoundError):
                os.stat(m.path("addresses", bad))

    def test_read_only(self):
        m = self.m
        m.write_key("eth", new_key() + "\n")
        for action, code in ((lambda: open(m.path("addresses", "eth"), "w"), errno.EACCES),
                             (lambda: open(m.path("addresses", "new"), "w"), errno.EACCES),
                             (lambda: os.unlink(m.path("addresses", "eth")), errno.EPERM),
                             (lambda: os.utime(m.path("addresses", "eth")), errno.EPERM),
                             (lambda: os.mkdir(m.path("addresses", "d")), errno.EPERM)):
            with self.assertRaises(OSError) as cm:
                action()
            self.assertEqual(cm.exception.errno, code, cm.exception)
        self.assertTrue(os.path.exists(m.key_path("eth")))

    def test_key_info_metric_is_opt_in(self):
        self.m.write_key("eth", new_key() + "\n")
        read(self.m.path("addresses", "eth"))
        self.assertNotIn("omikuji_keyfs_key_info", read(self.m.path("metrics")))

    def test_address_operations_counted(self):
        m = self.m
        m.write_key("eth", new_key() + "\n")
        for _ in range(3):
            read(m.path("addresses", "eth"))
        mt = m.metrics()
        self.assertEqual(metric(mt, "omikuji_key_operations_total", operation="address",
                                backend="file", status="success"), 3)


class KeyInfoMetricTest(unittest.TestCase):
    def test_key_info_with_metrics_addresses(self):
        m = Mount(keyfs_extra="  metrics_addresses: true\n")
        self.addCleanup(m.cleanup)
        m.start()
        key = new_key()
        m.write_key("eth-mainnet", key + "\n")
        text = read(m.path("metrics"))
        self.assertIn('omikuji_keyfs_key_info{backend="file",network="eth-mainnet",'
                      f'address="{address_of(key)}"}} 1\n', text)
        self.assertEqual(read(m.path("textfile", "omikuji_keyfs.prom")).count("omikuji_keyfs_key_info{"), 1)
        self.assertNotIn(key[2:], text)
        r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                           text=True)
        if r.returncode == 127:
            self.skipTest("promtool not installed")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


    def test_no_key_info_without_per_network_series(self):
        m = Mount(keyfs_extra="  metrics_addresses: true\n  metrics_per_network: false\n")
        self.addCleanup(m.cleanup)
        m.start()
        m.write_key("eth-mainnet", new_key() + "\n")
        read(m.path("addresses", "eth-mainnet"))
        text = read(m.path("metrics"))
        self.assertIn("omikuji_key_operations_total", text)
        self.assertNotIn("omikuji_keyfs_key_info", text)
        self.assertNotIn("eth-mainnet", text)


class AnyFormatTest(unittest.TestCase):
    def test_no_addresses_for_key_format_any(self):
        m = Mount(key_format="any")
        self.addCleanup(m.cleanup)
        m.start()
        m.write_key("token", "not-an-evm-key\n")
        self.assertEqual(os.listdir(m.path("addresses")), [])
        with self.assertRaises(FileNotFoundError):
            read(m.path("addresses", "token"))


class CommandLineTest(unittest.TestCase):
    def setUp(self):
        self.m = Mount()
        self.addCleanup(self.m.cleanup)

    def test_import_prints_address_and_list_addresses(self):
        m = self.m
        keys = {"eth": KNOWN_KEY, "base": new_key(), "op": new_key(prefix="")}
        for net, key in keys.items():
            r = m.cli("key", "import", "--network", net, input=key + "\n")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout, address_of(key) + "\n")
            self.assertNotIn(key.removeprefix("0x"), r.stdout + r.stderr)
        r = m.cli("key", "list", "--addresses")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.splitlines(),
                         [f"{net} {address_of(keys[net])}" for net in sorted(keys)])
        self.assertNotIn(KNOWN_KEY[2:], r.stdout + r.stderr)
        r = m.cli("key", "list")
        self.assertEqual(r.stdout.split(), sorted(keys))
        r = m.cli("key", "export", "--addresses", "--network", "eth", "--yes")
        self.assertEqual(r.returncode, 2)
        self.assertEqual(r.stdout, "")

    def test_list_addresses_with_a_key_that_is_not_evm(self):
        env_key = new_key()
        m = Mount(storage="env", root=self.m.root + "-env")
        self.addCleanup(m.cleanup)
        env = {"OMIKUJI_KEY_GOOD": env_key, "OMIKUJI_KEY_BROKEN": "zz"}
        r = m.cli("key", "list", "--addresses", env=env)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stdout.splitlines(), ["broken -", f"good {address_of(env_key)}"])
        self.assertIn("no address for 'broken'", r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1)


@unittest.skipUnless(os.geteuid() == 0, "needs root: setpriv and -o allow_other")
class SecondUserTest(unittest.TestCase):
    rules = """
  access:
    - networks: ["eth-*"]
      read: ["uid:0"]
      write: ["uid:0"]
      list: ["uid:0"]
      address: ["uid:65534"]
    - networks: ["base"]
      read: ["uid:0"]
      write: ["uid:0"]
      list: ["uid:65534"]
    - networks: ["polygon"]
      read: ["uid:0"]
      write: ["uid:0"]
"""

    def setUp(self):
        self.m = start_for_other_users(self, keyfs_extra=self.rules)
        self.keys = {"eth-mainnet": new_key(), "base": new_key(), "polygon": new_key()}
        for net, key in self.keys.items():
            self.m.write_key(net, key + "\n")

    def test_address_grant_only(self):
        m = self.m
        r = as_nobody(f"cat {m.path('addresses', 'eth-mainnet')}")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, address_of(self.keys["eth-mainnet"]) + "\n")
        r = as_nobody(f"cat {m.key_path('eth-mainnet')}")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("Permission denied", r.stderr)
        self.assertEqual(r.stdout, "")
        # A list grant but no address grant for base: the address is refused,
        # and the listing shows only what this caller may read the address of.
        r = as_nobody(f"cat {m.path('addresses', 'base')}")
        self.assertIn("Permission denied", r.stderr)
        r = as_nobody(f"ls {m.path('addresses')}")
        self.assertEqual(r.stdout.split(), ["eth-mainnet"])
        # No grant at all for polygon: as in keys/, it does not exist.
        r = as_nobody(f"stat {m.path('addresses', 'polygon')}")
        self.assertIn("No such file", r.stderr)
        r = as_nobody(f"test -r {m.path('addresses', 'eth-mainnet')} && echo A; "
                      f"test -r {m.path('addresses', 'base')} && echo B; true")
        self.assertEqual(r.stdout.split(), ["A"])
        # root reads base's address through its read grant.
        self.assertEqual(read(m.path("addresses", "base")), address_of(self.keys["base"]) + "\n")

        denials = [(line["operation"], line["network"]) for line in m.audit_lines()
                   if line["uid"] == 65534 and not line["status"]]
        self.assertEqual(denials, [("get", "eth-mainnet"), ("address", "base"),
                                   ("get", "polygon")])
        mt = m.metrics()
        self.assertEqual(metric(mt, "omikuji_key_access_denied_total", operation="address"), 1)
        # the key read, and the probe of polygon (counted as keys/ probes are)
        self.assertEqual(metric(mt, "omikuji_key_access_denied_total", operation="get"), 2)
        self.assertEqual(metric(mt, "omikuji_key_operations_total", operation="address",
                                backend="file", status="failure"), 1)
        # address lines belong to the hash chain like any other
        r = m.cli("audit", "verify", m.audit_log, config=False)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


@unittest.skipUnless(os.geteuid() == 0, "needs root: setpriv and -o allow_other")
class NoRulesTest(unittest.TestCase):
    def test_everyone_reads_addresses_without_rules(self):
        m = start_for_other_users(self)
        key = new_key()
        m.write_key("eth", key + "\n")
        r = as_nobody(f"cat {m.path('addresses', 'eth')}; ls {m.path('addresses')}")
        self.assertEqual(r.stdout.split(), [address_of(key), "eth"])
        # The key is not there for nobody at all (no grant: hidden, as keys/ does).
        r = as_nobody(f"cat {m.key_path('eth')}")
        self.assertIn("No such file", r.stderr)
        self.assertEqual(r.stdout, "")
        # The key commands' control socket answers an address request from
        # any local user too, and nothing more without a grant.
        sock = "\\0omikuji-keyfs/" + hashlib.sha256(
            os.path.realpath(m.audit_log).encode()).hexdigest()[:32]
        client = ("import socket,sys\n"
                  "s=socket.socket(socket.AF_UNIX,socket.SOCK_SEQPACKET)\n"
                  f"s.connect('{sock}')\n"
                  "s.send(sys.argv[1].encode()+b' eth\\n')\n"
                  "print(s.recv(4096).decode().replace(chr(10),' ').strip())\n")
        r = as_nobody(f"/usr/bin/python3 -c \"{client}\" address")
        self.assertEqual(r.stdout.split(), ["0", address_of(key)], r.stderr)
        r = as_nobody(f"/usr/bin/python3 -c \"{client}\" get")
        self.assertEqual(r.stdout.split()[0], str(errno.EACCES), r.stderr)
        self.assertNotIn(key[2:], r.stdout)


class VaultAddressTest(unittest.TestCase):
    """Against the Vault test server, whose request counts show which reads
    reached the backend."""

    def setUp(self):
        self.vs = vaultlib.VaultServer()
        self.addCleanup(self.vs.cleanup)
        self.vs.start()
        self.m = Mount(env={"VAULT_TOKEN": self.vs.root_token})
        self.addCleanup(self.m.cleanup)
        with open(self.m.config, "w") as f:
            f.write(vault_config(self.m, self.vs, ttl=300))
        self.m.start()

    def data_gets(self, net):
        return self.vs.route_count("GET", self.vs.kv_path("data", f"{PREFIX}/{net}"))

    def test_unseen_key_is_fetched_once_then_never(self):
        m, vs = self.m, self.vs
        keys = {"eth": new_key(), "base": new_key()}
        for net, key in keys.items():   # written behind the mount's back
            vs.kv_put(f"{PREFIX}/{net}", {"private_key": key})
        vs.reset_stats()
        # ls -l of networks the mount has not seen: a listing, no key fetch.
        r = m.sh("ls -l addresses")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.data_gets("eth") + self.data_gets("base"), 0)

        before = len(m.audit_lines())
        self.assertEqual(read(m.path("addresses", "eth")), address_of(keys["eth"]) + "\n")
        self.assertEqual(self.data_gets("eth"), 1)
        new = m.audit_lines()[before:]
        self.assertEqual([(x["operation"], x["network"], x["status"], x["uid"], x["gid"])
                          for x in new], [("address", "eth", True, os.getuid(), os.getgid())])
        self.assertGreater(new[0]["pid"], 0)
        # Known now: more reads, ls -l, and the key read itself (cached) cost
        # the backend nothing.
        for _ in range(3):
            read(m.path("addresses", "eth"))
        r = m.sh("ls -l addresses; stat addresses/eth addresses/base")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.data_gets("eth"), 1)
        self.assertEqual(self.data_gets("base"), 0)
        self.assertEqual(m.read_key("eth").strip(), keys["eth"])
        self.assertEqual(self.data_gets("eth"), 1)
        self.assertEqual(len(m.audit_lines()), before + 2, "one address fetch, one get")
        r = m.cli("audit", "verify", m.audit_log, config=False)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_key_list_addresses_through_the_mount(self):
        m, vs = self.m, self.vs
        keys = {"eth": new_key(), "base": new_key()}
        for net, key in keys.items():
            vs.kv_put(f"{PREFIX}/{net}", {"private_key": key})
        read(m.path("addresses", "eth"))     # known to the mount from now on
        vs.reset_stats()
        before = len(m.audit_lines())
        r = m.cli("key", "list", "--addresses")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.splitlines(),
                         [f"base {address_of(keys['base'])}", f"eth {address_of(keys['eth'])}"])
        # Through the mount: eth's address from its book, base fetched once
        # by the mount; the command itself never held a key.
        self.assertEqual(self.data_gets("eth"), 0)
        self.assertEqual(self.data_gets("base"), 1)
        new = [(x["operation"], x["network"]) for x in m.audit_lines()[before:]]
        self.assertEqual(new, [("list", ""), ("address", "base")])

    def test_concurrent_first_reads_fetch_once(self):
        m, vs = self.m, self.vs
        key = new_key()
        vs.kv_put(f"{PREFIX}/eth", {"private_key": key})
        route = vs.kv_path("data", f"{PREFIX}/eth")
        vs.reset_stats()
        vs.fault("slow", count=1, delay=0.3, path_prefix=route)
        results = []

        def reader():
            results.append(read(m.path("addresses", "eth")))
        threads = [threading.Thread(target=reader) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        vs.clear_fault()
        self.assertEqual(results, [address_of(key) + "\n"] * 20)
        self.assertEqual(self.data_gets("eth"), 1, "one backend fetch for 20 first readers")

    def test_refetch_of_a_rotated_key_updates_the_address(self):
        m, vs = self.m, self.vs
        first, second = new_key(), new_key()
        vs.kv_put(f"{PREFIX}/eth", {"private_key": first})
        self.assertEqual(read(m.path("addresses", "eth")), address_of(first) + "\n")
        before = os.stat(m.path("addresses", "eth")).st_mtime_ns
        vs.kv_put(f"{PREFIX}/eth", {"private_key": second})
        # The address follows the key as the mount sees it: still the first...
        self.assertEqual(read(m.path("addresses", "eth")), address_of(first) + "\n")
        time.sleep(1.2)
        os.utime(m.key_path("eth"))   # touch: refetch now
        self.assertEqual(read(m.path("addresses", "eth")), address_of(second) + "\n")
        self.assertGreater(os.stat(m.path("addresses", "eth")).st_mtime_ns, before)

    def test_backend_failure_for_an_unseen_key(self):
        m, vs = self.m, self.vs
        vs.kv_put(f"{PREFIX}/eth", {"private_key": new_key()})
        vs.fault("503")
        with self.assertRaises(OSError) as cm:
            read(m.path("addresses", "eth"))
        self.assertEqual(cm.exception.errno, errno.EIO)
        vs.fault("403")
        with self.assertRaises(OSError) as cm:
            read(m.path("addresses", "eth"))
        self.assertEqual(cm.exception.errno, errno.EACCES)
        vs.clear_fault()
        self.assertTrue(read(m.path("addresses", "eth")).startswith("0x"))
        self.assertTrue(os.path.ismount(m.mnt))
        outcomes = [(x["operation"], x["status"]) for x in m.audit_lines()
                    if x["network"] == "eth"]
        self.assertEqual(outcomes, [("address", False), ("address", False), ("address", True)])


if __name__ == "__main__":
    if _keccak is None:
        print("SKIP: Cryptodome (python3-pycryptodome) not importable: run with /usr/bin/python3")
        sys.exit(77)
    run()
