"""The shipped examples are valid for the tools that consume them: the
config passes check-config, the systemd unit passes systemd-analyze verify
(with this build's binary), and the logrotate file parses."""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from keyfslib import KEYFS_BIN, run  # noqa: E402

SRC = os.environ.get("TESTS_SOURCE_DIR", os.path.join(os.path.dirname(__file__), ".."))
EXAMPLES = os.path.abspath(os.path.join(SRC, "..", "examples"))


class ExamplesTest(unittest.TestCase):
    def test_example_config_checks(self):
        cfg = os.path.join(EXAMPLES, "omikuji.yaml")
        tmp = tempfile.mkdtemp()
        try:
            local = os.path.join(tmp, "omikuji.yaml")
            # the example names accounts of a real deployment; map them to
            # accounts every Debian machine has, so name resolution is checked too
            with open(cfg) as f:
                text = f.read()
            for old, new in (("user:omikuji", "user:nobody"), ("group:signers", "group:nogroup"),
                             ("group:developers", "group:daemon")):
                self.assertIn(old, text)
                text = text.replace(old, new)
            with open(local, "w") as f:
                f.write(text)
            os.chmod(local, 0o600)
            env = dict(os.environ, VAULT_TOKEN="hvs.example-" + os.urandom(6).hex(), HOME=tmp)
            r = subprocess.run([KEYFS_BIN, "check-config", "-c", local], capture_output=True,
                               text=True, env=env)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertNotIn(env["VAULT_TOKEN"], r.stdout + r.stderr)
            self.assertIn("storage_type: vault", r.stdout)
        finally:
            shutil.rmtree(tmp)

    def test_systemd_unit_verifies(self):
        if shutil.which("systemd-analyze") is None:
            self.skipTest("systemd-analyze not installed")
        with open(os.path.join(EXAMPLES, "systemd", "omikuji-keyfs.service")) as f:
            unit = f.read()
        self.assertIn("NoNewPrivileges=yes", unit)
        self.assertIn("CapabilityBoundingSet=", unit)
        self.assertIn("LimitCORE=0", unit)
        tmp = tempfile.mkdtemp()
        try:
            path = os.path.join(tmp, "omikuji-keyfs.service")
            with open(path, "w") as f:
                f.write(unit.replace("@bindir@/omikuji-keyfs", os.path.abspath(KEYFS_BIN)))
            # the manual page is checked on the installed units (test_install.py)
            r = subprocess.run(["systemd-analyze", "verify", "--man=no", path], capture_output=True,
                               text=True)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertEqual(r.stderr.strip(), "")
        finally:
            shutil.rmtree(tmp)

    def test_logrotate_config_parses(self):
        lr = shutil.which("logrotate") or "/usr/sbin/logrotate"
        if not os.path.exists(lr):
            self.skipTest("logrotate not installed")
        tmp = tempfile.mkdtemp()
        try:
            state = os.path.join(tmp, "state")
            r = subprocess.run([lr, "-d", "-s", state, os.path.join(EXAMPLES, "logrotate", "omikuji-keyfs")],
                               capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertNotIn("error", (r.stdout + r.stderr).lower())
        finally:
            shutil.rmtree(tmp)


    def test_log_shipping_examples_match_the_guide(self):
        """promtail and Filebeat are not Debian packages: their configs are
        checked for the guide's fields against a real audit line."""
        import fnmatch
        import yaml
        from keyfslib import Mount, new_key
        with open(os.path.join(EXAMPLES, "logship", "promtail.yml")) as f:
            promtail = yaml.safe_load(f)
        job = promtail["scrape_configs"][0]
        self.assertEqual(job["static_configs"][0]["labels"]["job"], "omikuji")
        self.assertTrue(fnmatch.fnmatch("/var/log/omikuji/audit.log",
                                        job["static_configs"][0]["labels"]["__path__"]))
        expressions = next(st["json"]["expressions"] for st in job["pipeline_stages"] if "json" in st)
        self.assertEqual(expressions, {"level": "level", "operation": "operation",
                                       "network": "network", "backend": "storage_type"})
        with open(os.path.join(EXAMPLES, "logship", "filebeat.yml")) as f:
            filebeat = yaml.safe_load(f)
        audit_input = filebeat["filebeat.inputs"][0]
        self.assertEqual(audit_input["paths"], ["/var/log/omikuji/audit.log"])
        self.assertEqual(audit_input["fields"], {"app": "omikuji", "type": "audit"})
        self.assertIn("ndjson", audit_input["parsers"][0])
        # a real audit line carries every field the pipelines extract
        m = Mount()
        try:
            m.start()
            m.write_key("ethereum-mainnet", new_key() + "\n")
            m.read_key("ethereum-mainnet")
            for line in m.audit_lines():
                for src in expressions.values():
                    self.assertIn(src, line)
                self.assertIn("Key storage operation", line["message"])
        finally:
            m.cleanup()


if __name__ == "__main__":
    run()
