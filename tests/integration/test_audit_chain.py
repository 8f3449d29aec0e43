"""The audit log's promises after issue 15's cheaper audit line (s4-cold):
each line is in the file before the read that it records returns; under many
concurrent readers every read has exactly one line, seqs run without a gap
in file order, timestamps never go back, and each link is SHA-256 (or, with
keyfs.audit_key_file, HMAC-SHA256) over the previous hash and the line's
prefix, recomputed here with Python's hashlib/hmac, independently of the
daemon's own `audit verify`, which is run too."""
import hashlib
import hmac
import json
import os
import secrets
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from keyfslib import Mount, MountTestCase, new_key, run  # noqa: E402

SUFFIX = len(',"hash":"') + 64 + len('"}')


def check_chain(testcase, raw_lines, key=None):
    """Recompute every link; return the parsed records."""
    prev = "0" * 64
    records = []
    for i, raw in enumerate(raw_lines):
        testcase.assertTrue(raw.endswith("\n"), "line %d is torn" % (i + 1))
        line = raw[:-1]
        prefix, stored = line[:-SUFFIX], line[-SUFFIX + 9:-2]
        data = (prev + prefix).encode()
        want = (hmac.new(key, data, hashlib.sha256) if key else hashlib.sha256(data)).hexdigest()
        testcase.assertEqual(stored, want, "line %d: link" % (i + 1))
        rec = json.loads(line)
        testcase.assertEqual(rec["seq"], i + 1, "line %d: seq" % (i + 1))
        testcase.assertEqual(rec["hash"], stored)
        records.append(rec)
        prev = stored
    return records


class AuditChainTest(MountTestCase):
    def setUp(self):
        super().setUp()
        self.nets = ["audit-chain-%d" % i for i in range(4)]
        for n in self.nets:
            self.m.write_key(n, new_key() + "\n")

    def test_each_line_is_written_before_the_read_returns(self):
        for i in range(40):
            net = self.nets[i % len(self.nets)]
            before = os.path.getsize(self.m.audit_log)
            self.assertEqual(len(self.m.read_key(net)), 67)
            with open(self.m.audit_log) as f:
                f.seek(before)
                new = [json.loads(l) for l in f]
            gets = [r for r in new if r["operation"] == "get" and r["network"] == net]
            self.assertEqual(len(gets), 1, "read %d: the line was not there when the read "
                             "returned: %r" % (i, new))
            self.assertTrue(gets[0]["status"] and gets[0]["cached"] is not None)

    def test_concurrent_readers_make_a_complete_ordered_chain(self):
        threads, reads = 8, 150
        errors = []

        def reader(t):
            try:
                for i in range(reads):
                    net = self.nets[(t + i) % len(self.nets)]
                    if len(self.m.read_key(net)) != 67:
                        errors.append("short read")
            except OSError as e:
                errors.append(repr(e))

        ts = [threading.Thread(target=reader, args=(t,)) for t in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.assertEqual(errors, [])
        with open(self.m.audit_log) as f:
            raw = f.readlines()
        records = check_chain(self, raw)
        gets = [r for r in records if r["operation"] == "get" and r["network"] in self.nets]
        self.assertEqual(len(gets), threads * reads, "one line per read")
        self.assertTrue(all(r["status"] for r in gets))
        stamps = [r["timestamp"] for r in records]
        self.assertEqual(stamps, sorted(stamps), "timestamps go back in file order")
        r = self.m.cli("audit", "verify", "--expect-seq", str(records[-1]["seq"]),
                       self.m.audit_log, config=False)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("audit log OK", r.stdout + r.stderr)


class KeyedAuditChainTest(unittest.TestCase):
    def test_keyed_links_are_hmac_sha256_under_the_key(self):
        key = secrets.token_bytes(32)
        m = Mount(keyfs_extra="  audit_key_file: {root}/audit.key\n")
        self.addCleanup(m.cleanup)
        path = os.path.join(m.root, "audit.key")
        with open(path, "wb") as f:
            f.write(key)
        os.chmod(path, 0o600)
        with open(m.config) as f:
            text = f.read().replace("{root}", m.root)
        with open(m.config, "w") as f:
            f.write(text)
        m.start()
        m.write_key("keyed-net", new_key() + "\n")
        for _ in range(20):
            m.read_key("keyed-net")
        with open(m.audit_log) as f:
            raw = f.readlines()
        self.assertGreaterEqual(len(raw), 21)
        check_chain(self, raw, key=key)
        # and the plain SHA-256 link does not match a keyed line
        prefix = raw[0][:-1][:-SUFFIX]
        self.assertNotEqual(hashlib.sha256(("0" * 64 + prefix).encode()).hexdigest(),
                            json.loads(raw[0])["hash"])
        r = m.cli("audit", "verify", "--key", path, m.audit_log, config=False)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


if __name__ == "__main__":
    run()
