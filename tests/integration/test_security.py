"""Audit trail, access control, anomalies and hardening through a real mount,
with a real second user (setpriv as nobody) against `-o allow_other`."""
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from keyfslib import KEYFS_BIN, Mount, is_mounted, metric, needs_root, new_key, run  # noqa: E402

AUDIT_FIELDS = {"timestamp", "level", "target", "message", "operation", "network", "storage_type",
                "status", "uid", "gid", "pid", "process", "seq", "hash"}


def as_nobody(cmd, groups=None):
    """Run a shell command as uid/gid 65534 (with extra groups if given)."""
    g = ["--groups", ",".join(str(x) for x in groups)] if groups else ["--clear-groups"]
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", *g, "bash", "-c", cmd],
                          capture_output=True, text=True, timeout=60, cwd="/")


@needs_root
class AuditTrailTest(unittest.TestCase):
    def setUp(self):
        self.m = Mount(extra_args=["-o", "allow_other"])
        self.addCleanup(self.m.cleanup)
        os.chmod(self.m.root, 0o755)
        self.m.start()

    def delta(self, action):
        before = len(self.m.audit_lines())
        action()
        lines = self.m.audit_lines()
        return lines[before:]

    def test_one_line_per_operation_and_denial(self):
        m = self.m
        key = new_key()
        # nobody has no grant on the name: it does not exist for nobody, and
        # the lookup is audited as a denied get (issue 9); a create after it
        # is denied and audited as a store
        cases = [
            (["store"], lambda: m.sh(f"echo {key} > keys/ethereum-mainnet"), True),
            (["get"], lambda: m.sh("cat keys/ethereum-mainnet"), True),
            (["list"], lambda: m.sh("ls keys"), True),
            (["store"], lambda: m.sh("echo bad > keys/ethereum-mainnet"), False),
            (["get"], lambda: as_nobody(f"cat {m.key_path('ethereum-mainnet')}"), False),
            (["list"], lambda: as_nobody(f"ls {m.path('keys')}"), False),
            (["get", "store"], lambda: as_nobody(f"echo {new_key()} > {m.key_path('ethereum-mainnet')}"), False),
            (["get"], lambda: as_nobody(f"rm -f {m.key_path('ethereum-mainnet')}"), False),
            (["remove"], lambda: m.sh("rm keys/ethereum-mainnet"), True),
        ]
        for ops, action, ok in cases:
            new = self.delta(action)
            # deny mode (the default): a successful store or remove is
            # preceded by its intent line, written before the backend changed
            if ok and ops[0] in ("store", "remove"):
                self.assertEqual(len(new), 2, f"{ops}: {new}")
                intent = new.pop(0)
                self.assertIs(intent["intent"], True)
                self.assertEqual((intent["operation"], intent["network"]),
                                 (ops[0], "ethereum-mainnet"))
                self.assertNotIn("intent", new[0])
            self.assertEqual([l["operation"] for l in new], ops, f"{ops}: {new}")
            for op, line in zip(ops, new):
                missing = AUDIT_FIELDS - set(line)
                self.assertEqual(missing, set(), op)
                self.assertIs(line["status"], ok, op)
                self.assertEqual(line["level"], "info" if ok else "warn")
                self.assertEqual(line["target"], "omikuji::audit")
                self.assertEqual(line["message"], "Key storage operation")
                self.assertEqual(line["storage_type"], "file")
                self.assertEqual(line["network"], "" if op == "list" else "ethereum-mainnet")
                if op == "get":
                    self.assertIn("cached", line)
                if not ok:
                    self.assertTrue(line["error"])
                if ok is False and op in ("get", "list") or line.get("error") == "access denied":
                    self.assertEqual(line["uid"], 65534)
        m_ = self.m.metrics()
        for op, n in (("get", 3), ("store", 1), ("remove", 0), ("list", 1)):
            self.assertEqual(metric(m_, "omikuji_key_access_denied_total", operation=op), n, op)
        raw = open(self.m.audit_log).read()
        self.assertNotIn(key[2:], raw)

    def test_logql_queries_with_jq(self):
        if shutil.which("jq") is None:
            self.skipTest("jq not installed")
        m = self.m
        m.sh(f"echo {new_key()} > keys/ethereum-mainnet; echo {new_key()} > keys/base")
        m.sh("cat keys/ethereum-mainnet keys/base; cat keys/nope; echo bad > keys/base")
        as_nobody(f"cat {m.key_path('ethereum-mainnet')}")
        lines = m.audit_lines()
        # {job="omikuji"} |= "Key storage operation" | json | status="false"
        r = subprocess.run(["bash", "-c", f"grep -F 'Key storage operation' {m.audit_log} | "
                            "jq -c 'select((.status|tostring) == \"false\")'"],
                           capture_output=True, text=True, check=True)
        got = [json.loads(l) for l in r.stdout.splitlines()]
        self.assertEqual(got, [l for l in lines if l["status"] is False])
        self.assertEqual(len(got), 2)   # invalid write, denied read (cat of nope fails at lookup)
        # {job="omikuji"} |= "audit" | json | network="ethereum-mainnet"
        r = subprocess.run(["bash", "-c", f"grep -F audit {m.audit_log} | "
                            "jq -c 'select(.network == \"ethereum-mainnet\")'"],
                           capture_output=True, text=True, check=True)
        got = [json.loads(l) for l in r.stdout.splitlines()]
        self.assertEqual(got, [l for l in lines if l["network"] == "ethereum-mainnet"])
        self.assertEqual(len(got), 4)   # store intent, store, get, denied get

    def test_verify_detects_tampering_and_restart_continues(self):
        m = self.m
        for i in range(6):
            m.sh(f"echo {new_key()} > keys/n{i}; cat keys/n{i}")
        m.stop()
        m.start()   # restart: the chain continues
        m.sh("cat keys/n1; ls keys")
        m.stop()
        lines = open(m.audit_log).read().splitlines(keepends=True)
        seqs = [json.loads(l)["seq"] for l in lines]
        self.assertEqual(seqs, list(range(1, len(lines) + 1)))
        ok = subprocess.run([KEYFS_BIN, "audit", "verify", m.audit_log], capture_output=True, text=True)
        self.assertEqual(ok.returncode, 0, ok.stdout + ok.stderr)

        def verify_broken(new_lines, expect_line):
            path = m.audit_log + ".t"
            with open(path, "w") as f:
                f.writelines(new_lines)
            r = subprocess.run([KEYFS_BIN, "audit", "verify", path], capture_output=True, text=True)
            self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
            self.assertIn(f"line {expect_line}", r.stdout + r.stderr)

        edited = list(lines)
        edited[4] = edited[4].replace('"status":true', '"status":false')
        verify_broken(edited, 5)
        verify_broken(lines[:4] + lines[5:], 5)
        verify_broken(lines[:3] + [lines[4], lines[3]] + lines[5:], 4)
        verify_broken(lines[:-1] + [lines[-1][:40]], len(lines))

    def test_audit_write_failure_deny_and_allow(self):
        self.m.stop()
        for mode, expect_ok in (("deny", False), ("allow", True)):
            m = Mount(keyfs_extra=f"  audit_failure: {mode}\n")
            with open(m.config) as f:
                cfg = f.read().replace(f"audit_log: {m.audit_log}", "audit_log: /dev/full")
            with open(m.config, "w") as f:
                f.write(cfg)
            try:
                m.start()
                r = m.sh(f"echo {new_key()} > keys/eth")
                self.assertEqual(r.returncode == 0, expect_ok, mode + r.stderr)
                if expect_ok:
                    self.assertEqual(m.sh("cat keys/eth").returncode, 0)
                    self.assertGreaterEqual(metric(m.metrics(), "omikuji_keyfs_audit_write_errors_total"), 2)
                else:
                    self.assertIn("Input/output error", r.stderr)
            finally:
                m.cleanup()


@needs_root
class AccessRulesTest(unittest.TestCase):
    rules = """
  access:
    - networks: ["ethereum-*"]
      read: ["uid:65534", "uid:0"]
      write: ["uid:0"]
      remove: ["uid:0"]
      list: ["uid:0", "user:nobody"]
    - networks: ["base-*"]
      read: ["group:daemon", "uid:0"]
      write: ["gid:1", "uid:0"]
      remove: ["uid:0"]
    - networks: ["polygon"]
      write: ["uid:0"]
"""

    def setUp(self):
        self.m = Mount(extra_args=["-o", "allow_other"], keyfs_extra=self.rules)
        self.addCleanup(self.m.cleanup)
        os.chmod(self.m.root, 0o755)
        self.m.start()
        for n in ("ethereum-mainnet", "base-mainnet", "polygon"):
            self.m.write_key(n, new_key() + "\n")

    def test_rules_for_a_second_user(self):
        m = self.m
        self.assertEqual(as_nobody(f"cat {m.key_path('ethereum-mainnet')}").returncode, 0)
        # no grant at all on these names: they do not exist for nobody (issue 9)
        r = as_nobody(f"cat {m.key_path('base-mainnet')}")
        self.assertIn("No such file or directory", r.stderr)
        r = as_nobody(f"cat {m.key_path('polygon')}")
        self.assertIn("No such file or directory", r.stderr)
        r = as_nobody(f"echo {new_key()} > {m.key_path('ethereum-mainnet')}")
        self.assertIn("Permission denied", r.stderr)
        r = as_nobody(f"rm {m.key_path('ethereum-mainnet')}")
        self.assertIn("Permission denied", r.stderr)
        r = as_nobody(f"ls {m.path('keys')}")
        self.assertEqual(r.returncode, 0, r.stderr)
        # only the names nobody has some grant on (issue 9)
        self.assertEqual(r.stdout.split(), ["ethereum-mainnet"])
        # access(2) agrees with the rules
        r = as_nobody(f"test -r {m.key_path('ethereum-mainnet')} && echo R; "
                      f"test -w {m.key_path('ethereum-mainnet')} && echo W; "
                      f"test -r {m.key_path('polygon')} && echo P; true")
        self.assertEqual(r.stdout.split(), ["R"])

    def test_group_rules(self):
        m = self.m
        key = new_key()
        r = as_nobody(f"cat {m.key_path('base-mainnet')}", groups=[1])
        self.assertEqual(r.returncode, 0, r.stderr)
        r = as_nobody(f"echo {key} > {m.key_path('base-mainnet')}", groups=[1])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(m.read_key("base-mainnet"), key + "\n")
        r = as_nobody(f"cat {m.key_path('base-mainnet')}", groups=[2])
        self.assertIn("No such file or directory", r.stderr)   # no grant: no name (issue 9)

    def test_root_follows_rules(self):
        # polygon's rule grants root write but not read: no implicit pass for root
        r = self.m.sh("cat keys/polygon")
        self.assertIn("Permission denied", r.stderr)
        self.assertEqual(self.m.sh("cat keys/ethereum-mainnet").returncode, 0)


class AnomalyTest(unittest.TestCase):
    def start(self, extra):
        self.m = Mount(keyfs_extra=extra)
        self.addCleanup(self.m.cleanup)
        self.m.start()
        self.m.write_key("eth", new_key() + "\n")

    def test_burst_is_flagged(self):
        self.start("  anomaly:\n    burst_reads: 5\n    burst_window_seconds: 60\n")
        for _ in range(8):
            self.m.read_key("eth")
        gets = [l for l in self.m.audit_lines() if l["operation"] == "get"]
        flags = [l.get("anomaly") for l in gets]
        self.assertEqual(flags, [None] * 5 + ["burst"] * 3)
        self.assertEqual(metric(self.m.metrics(), "omikuji_key_anomalies_total", kind="burst"), 3)

    def test_off_hours(self):
        # Neither today nor tomorrow is a business day, so the read is off
        # hours even when it happens after midnight.
        now = datetime.datetime.now(datetime.timezone.utc)
        near = {(now + datetime.timedelta(days=d)).strftime("%a").lower()[:3] for d in (0, 1)}
        others = [d for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun") if d not in near]
        self.start("  business_hours:\n    timezone: UTC\n    start: \"00:00\"\n    end: \"24:00\"\n"
                   f"    days: [{', '.join(others)}]\n")
        self.m.read_key("eth")
        gets = [l for l in self.m.audit_lines() if l["operation"] == "get"]
        self.assertEqual(gets[-1].get("anomaly"), "off_hours")
        self.assertEqual(metric(self.m.metrics(), "omikuji_key_anomalies_total", kind="off_hours"), 1)

    def test_rate_limit_denies(self):
        self.start("  rate_limit:\n    reads_per_minute: 3\n")
        for _ in range(3):
            self.m.read_key("eth")
        with self.assertRaises(PermissionError):
            self.m.read_key("eth")
        last = self.m.audit_lines()[-1]
        self.assertEqual((last["status"], last["anomaly"]), (False, "rate_limited"))
        self.assertEqual(metric(self.m.metrics(), "omikuji_key_anomalies_total", kind="rate_limited"), 1)


class HardeningTest(unittest.TestCase):
    def test_no_core_dump_and_no_secret_in_outputs(self):
        m = Mount()
        try:
            cwd = os.path.join(m.root, "cwd")
            os.makedirs(cwd)
            key = new_key()
            m.proc = None
            m.stderr = open(m.stderr_path, "w")
            # allow cores in the environment: only the daemon's own hardening stops them
            m.proc = subprocess.Popen(["bash", "-c", f'ulimit -c unlimited; exec "$@"', "x", KEYFS_BIN,
                                       "mount", "-f", "-c", m.config, m.mnt],
                                      cwd=cwd, stdout=m.stderr, stderr=m.stderr, env=m.env)
            deadline = time.monotonic() + 10
            from keyfslib import is_mounted
            while not is_mounted(m.mnt) and time.monotonic() < deadline:
                time.sleep(0.05)
            m.write_key("eth", key + "\n")
            self.assertEqual(m.read_key("eth"), key + "\n")
            limits = open(f"/proc/{m.proc.pid}/limits").read()
            self.assertRegex(limits, r"Max core file size\s+0\s+0")
            m.proc.send_signal(signal.SIGSEGV)
            m.proc.wait(timeout=10)
            # AddressSanitizer builds catch SIGSEGV and abort instead
            self.assertIn(m.proc.returncode, (-signal.SIGSEGV, -signal.SIGABRT))
            subprocess.run(["fusermount3", "-uz", m.mnt], capture_output=True)
            time.sleep(0.3)
            if open("/proc/sys/kernel/core_pattern").read().startswith("|"):
                self.skipTest("core_pattern pipes cores elsewhere; only the limit was checked")
            self.assertEqual([f for f in os.listdir(cwd) if f.startswith("core")], [])
            for path in (m.app_log, m.audit_log, m.stderr_path):
                with open(path, errors="replace") as f:
                    self.assertNotIn(key[2:], f.read(), path)
        finally:
            m.proc = None
            m.cleanup()


class ReopenAndPrivilegeTest(unittest.TestCase):
    def test_sighup_reopens_audit_log_and_chain_continues(self):
        m = Mount()
        try:
            m.start()
            m.write_key("eth", new_key() + "\n")
            rotated = m.audit_log + ".1"
            os.rename(m.audit_log, rotated)
            m.proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 5
            while not os.path.exists(m.audit_log) and time.monotonic() < deadline:
                m.read_key("eth")
                time.sleep(0.1)
            self.assertTrue(os.path.exists(m.audit_log), "SIGHUP did not reopen the audit log")
            m.read_key("eth")
            self.assertTrue(is_mounted(m.mnt), "SIGHUP must not stop the daemon")
            m.stop()
            old = open(rotated).read().splitlines()
            new = open(m.audit_log).read().splitlines()
            self.assertGreaterEqual(len(new), 1)
            self.assertEqual(json.loads(new[0])["seq"], json.loads(old[-1])["seq"] + 1)
            joined = os.path.join(m.root, "joined.log")
            with open(joined, "w") as f:
                f.write("\n".join(old + new) + "\n")
            r = subprocess.run([KEYFS_BIN, "audit", "verify", joined], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        finally:
            m.cleanup()

    @needs_root
    def test_run_as_drops_privileges_after_mounting(self):
        key = new_key()
        m = Mount(storage="env", extra_args=["-o", "allow_other"],
                  keyfs_extra="  run_as: nobody\n", env={"OMIKUJI_KEY_ETH": key})
        try:
            # The service user opens (and reopens) the logs itself.
            os.chown(m.root, 65534, 65534)
            m.start()
            status = open(f"/proc/{m.proc.pid}/status").read()
            uids = [l for l in status.splitlines() if l.startswith("Uid:")][0].split()[1:]
            self.assertEqual(set(uids), {"65534"}, status)
            self.assertEqual(m.read_key("eth"), key + "\n")
            lines = m.audit_lines()
            self.assertEqual(lines[-1]["operation"], "get")
            self.assertIs(lines[-1]["status"], True)
        finally:
            m.cleanup()


if __name__ == "__main__":
    run()
