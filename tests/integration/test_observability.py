"""Observability with real tools: promtool on the live `metrics` file,
prometheus-node-exporter's textfile collector on MOUNT/textfile, the alert
rules' unit tests, and every expression of the rules and the dashboard
naming only series the program exports."""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import unittest
import urllib.request

import yaml

sys.path.insert(0, os.path.dirname(__file__))
from keyfslib import Mount, MountTestCase, new_key, run  # noqa: E402

SRC = os.environ.get("TESTS_SOURCE_DIR", os.path.join(os.path.dirname(__file__), ".."))
EXAMPLES = os.path.join(SRC, "..", "examples")
NODE_EXPORTER = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")


def need(tool):
    if shutil.which(tool) is None:
        raise unittest.SkipTest(f"{tool} not installed")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mixed_traffic(m):
    for i in range(5):
        m.write_key(f"net-{i}", new_key() + "\n")
    for i in range(20):
        m.read_key(f"net-{i % 5}")
    os.listdir(m.path("keys"))
    subprocess.run(["bash", "-c", f"echo bad > {m.key_path('net-0')}"], capture_output=True)
    subprocess.run(["cat", m.key_path("missing")], capture_output=True)
    os.unlink(m.key_path("net-4"))


def exported_families(text):
    fams = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            fams.add(name)
            if kind == "histogram":
                fams.update({name + "_bucket", name + "_sum", name + "_count"})
    return fams


def series_names(expr):
    # metric names in a PromQL expression: identifiers we own
    return set(re.findall(r"\b(omikuji_[a-zA-Z0-9_:]+|process_[a-z_]+)\b", expr))


class LiveMetricsTest(MountTestCase):
    def test_promtool_check_metrics_after_mixed_traffic(self):
        need("promtool")
        mixed_traffic(self.m)
        with open(self.m.path("metrics"), "rb") as f:
            text = f.read()
        r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual((r.stdout + r.stderr).strip(), b"", "promtool reported lint problems")
        s = text.decode()
        self.assertTrue(s.endswith("\n"))
        # no sample carries a timestamp: every sample line is "name{labels} value"
        for line in s.splitlines():
            if line and not line.startswith("#"):
                self.assertRegex(line, r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})? [-+0-9.eEInfa]+$')
        # the contract's series are all there
        for fam in ("omikuji_key_operations_total", "omikuji_key_operation_duration_seconds",
                    "omikuji_key_cache_hits_total", "omikuji_key_cache_misses_total",
                    "omikuji_key_cache_size", "omikuji_key_backend_up",
                    "omikuji_key_access_denied_total", "omikuji_key_backend_auth_failures_total",
                    "omikuji_keyfs_build_info", "omikuji_keyfs_start_time_seconds",
                    "omikuji_key_last_refresh_timestamp_seconds"):
            self.assertIn(f"# TYPE {fam} ", s)
        lines = set(s.splitlines())
        for want in ('omikuji_key_operations_total{operation="store",backend="file",status="failure"} 1',
                     'omikuji_key_operations_total{operation="remove",backend="file",status="success"} 1',
                     'omikuji_key_backend_up{backend="file"} 1'):
            self.assertIn(want, lines)
        # only the configured backend has an up series (else KeyStorageBackendDown
        # would fire for backends nobody configured)
        up = sorted(l for l in lines if l.startswith("omikuji_key_backend_up{"))
        self.assertEqual(up, ['omikuji_key_backend_up{backend="file"} 1'])
        # textfile/ serves the same families
        with open(self.m.path("textfile", "omikuji_keyfs.prom")) as f:
            self.assertEqual(exported_families(f.read()), exported_families(s))

    def test_node_exporter_textfile_collector(self):
        if NODE_EXPORTER is None:
            self.skipTest("prometheus-node-exporter not installed")
        mixed_traffic(self.m)
        port = free_port()
        log = open(os.path.join(self.m.root, "node_exporter.log"), "w")
        ne = subprocess.Popen([NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{port}",
                               "--collector.disable-defaults", "--collector.textfile",
                               f"--collector.textfile.directory={self.m.path('textfile')}",
                               "--collector.filesystem"],
                              stdout=log, stderr=log)
        try:
            body = None
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                        body = r.read().decode()
                    break
                except OSError:
                    time.sleep(0.2)
            self.assertIsNotNone(body, "node_exporter did not answer")
            self.assertIn("node_textfile_scrape_error 0", body)
            self.assertIn('omikuji_key_operations_total{backend="file",operation="get",status="success"}', body)
            self.assertIn('omikuji_key_backend_up{backend="file"} 1', body)
            self.assertRegex(body, r'node_textfile_mtime_seconds\{file="[^"]*omikuji_keyfs.prom"\}')
            # a second scrape, then: our series are served, none collided
            # with node_exporter's own (process_*, go_*, node_*)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                body = r.read().decode()
            self.assertIn("omikuji_keyfs_start_time_seconds ", body)
        finally:
            ne.terminate()
            ne.wait(timeout=10)
            log.close()
        with open(os.path.join(self.m.root, "node_exporter.log")) as f:
            ne_log = f.read()
        self.assertIn("Listening on", ne_log)   # the log is node_exporter's, and complete
        self.assertNotIn("collected before", ne_log)
        self.assertNotIn("level=error", ne_log)
        with open(self.m.path("metrics")) as f:
            for fam in exported_families(f.read()):
                self.assertFalse(fam.startswith(("process_", "go_", "node_", "promhttp_")), fam)


class RulesAndDashboardTest(MountTestCase):
    def test_promtool_rules(self):
        need("promtool")
        rules = os.path.join(EXAMPLES, "prometheus")
        rule_files = sorted(f for f in os.listdir(rules)
                            if f.endswith(".yml") and not f.endswith("_test.yml"))
        self.assertEqual(rule_files, ["alerts.yml", "recording.yml"])
        r = subprocess.run(["promtool", "check", "rules", *rule_files], cwd=rules,
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        # every rule file has its unit tests, and every test file passes
        for test_file in ("alerts_test.yml", "recording_test.yml"):
            r = subprocess.run(["promtool", "test", "rules", test_file], cwd=rules,
                               capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("SUCCESS", r.stdout)
            self.assertNotIn("FAILED", r.stdout)
        # every alert is exercised by a test
        with open(os.path.join(rules, "alerts.yml")) as f:
            alerts = set(re.findall(r"^\s*- alert: (\w+)", f.read(), re.M))
        with open(os.path.join(rules, "alerts_test.yml")) as f:
            tested = set(re.findall(r"alertname: (\w+)", f.read()))
        self.assertEqual(alerts - tested, set())
        with open(os.path.join(rules, "recording.yml")) as f:
            recorded = set(re.findall(r"- record: (\S+)", f.read()))
        with open(os.path.join(rules, "recording_test.yml")) as f:
            tested = set(re.findall(r"- expr: (omikuji:\S+)", f.read()))
        self.assertEqual(recorded - tested, set())

    def test_expressions_name_only_exported_series(self):
        mixed_traffic(self.m)
        with open(self.m.path("metrics")) as f:
            exported = exported_families(f.read())
        exprs = []
        with open(os.path.join(EXAMPLES, "prometheus", "alerts.yml")) as f:
            exprs += re.findall(r"expr:\s*\|?\s*\n?((?:.+\n?)+?)(?=\s+(?:for|labels):)", f.read())
        with open(os.path.join(EXAMPLES, "prometheus", "recording.yml")) as f:
            exprs += [r["expr"] for g in yaml.safe_load(f)["groups"] for r in g["rules"]]
        with open(os.path.join(EXAMPLES, "grafana", "omikuji-keyfs.json")) as f:
            dash = json.load(f)
        for p in dash["panels"]:
            exprs += [t["expr"] for t in p["targets"]]
        self.assertGreaterEqual(len(exprs), 10 + len(dash["panels"]))
        names = set()
        for e in exprs:
            names |= series_names(e)
        self.assertTrue(names)
        missing = sorted(n for n in names if n not in exported)
        self.assertEqual(missing, [], "expressions name series the program does not export")
        titles = {p["title"] for p in dash["panels"]}
        for want in ("Key Operations Rate", "Operation Latency (p95)", "Cache Hit Rate",
                     "Backend Up", "Access Denied (5m)"):
            self.assertIn(want, titles)


if __name__ == "__main__":
    run()
