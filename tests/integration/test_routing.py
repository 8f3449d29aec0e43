"""Backends as named instances, routed per network (contract section 8),
through a real mount: key_storage on a file store, a second file instance
("testnets") and a Vault instance ("prod-vault") on the Vault test server
(proven faithful by test_vault_server_hvac.py).  Every check looks at what
the backend itself now holds: the Vault server through hvac, each file
store through the CLI opened on that store alone."""
import errno
import json
import os
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
SRC = os.environ.get("TESTS_SOURCE_DIR", os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(SRC, "servers"))
from keyfslib import KEYFS_BIN, Mount, metric, new_key, run  # noqa: E402
import vaultlib  # noqa: E402

try:
    import hvac
except ImportError:   # run with Debian's /usr/bin/python3
    hvac = None

PREFIX = "omikuji/keys"
HUNG_READS = 20
VAULT_MAX_IN_FLIGHT = 8


def routing_config(m, vs, vault_ttl=300, vault_timeout=30, list_cache=60):
    return f"""
key_storage:
  storage_type: file
  file:
    path: {m.root}/store/main.enc
{m.logging_and_audit_yaml()}  list_cache_seconds: {list_cache}
  backends:
    - name: testnets
      storage_type: file
      file:
        path: {m.root}/store/testnets.enc
      networks: ["*-testnet", "sepolia"]
    - name: prod-vault
      storage_type: vault
      max_calls_in_flight: {VAULT_MAX_IN_FLIGHT}
      vault:
        url: {vs.url}
        token: ${{VAULT_TOKEN}}
        timeout_seconds: {vault_timeout}
        max_retries: 0
        cache_ttl_seconds: {vault_ttl}
      networks: ["ethereum-mainnet", "polygon-*"]
"""


def single_store_config(path, audit_log):
    """A config whose key_storage is one file store: to look inside it."""
    return (f"key_storage:\n  storage_type: file\n  file:\n    path: {path}\n"
            f"keyfs:\n  audit_log: {audit_log}\n")


class RoutingCase(unittest.TestCase):
    vault_ttl = 300
    vault_timeout = 30
    list_cache = 60

    def setUp(self):
        if hvac is None:
            self.skipTest("hvac not importable: run with /usr/bin/python3")
        self.vs = vaultlib.VaultServer()
        self.addCleanup(self.vs.cleanup)
        self.vs.start()
        self.hv = hvac.Client(url=self.vs.url, token=self.vs.root_token)
        self.m = Mount(env={"VAULT_TOKEN": self.vs.root_token})
        self.addCleanup(self.m.cleanup)
        with open(self.m.config, "w") as f:
            f.write(routing_config(self.m, self.vs, self.vault_ttl, self.vault_timeout,
                                   self.list_cache))

    def vault_key(self, network):
        """What the Vault server holds for network (None: nothing)."""
        try:
            r = self.hv.secrets.kv.v2.read_secret_version(path=f"{PREFIX}/{network}",
                                                          mount_point="secret")
        except hvac.exceptions.InvalidPath:
            return None
        return r["data"]["data"]["private_key"]

    def vault_put(self, network, key):
        self.hv.secrets.kv.v2.create_or_update_secret(path=f"{PREFIX}/{network}",
                                                      secret={"private_key": key},
                                                      mount_point="secret")

    def store_cli(self, name, *args):
        """The CLI on one file store alone (what that store really holds)."""
        cfg = os.path.join(self.m.root, f"only-{name}.yaml")
        with open(cfg, "w") as f:
            f.write(single_store_config(os.path.join(self.m.root, "store", f"{name}.enc"),
                                        os.path.join(self.m.root, f"only-{name}-audit.log")))
        return subprocess.run([KEYFS_BIN, *args, "-c", cfg], capture_output=True, text=True,
                              env=self.m.env, timeout=60, stdin=subprocess.DEVNULL)

    def store_keys(self, name):
        r = self.store_cli(name, "key", "list")
        self.assertEqual(r.returncode, 0, r.stderr)
        return set(r.stdout.split())

    def store_key(self, name, network):
        r = self.store_cli(name, "key", "export", "--network", network, "--yes")
        return r.stdout.strip() if r.returncode == 0 else None


class TestRoutedMount(RoutingCase):
    def setUp(self):
        super().setUp()
        self.m.start()

    def test_writes_and_reads_land_on_the_routed_backend(self):
        keys = {net: new_key() for net in
                ("gnosis", "sepolia", "holesky-testnet", "ethereum-mainnet", "polygon-pos")}
        for net, key in keys.items():
            self.m.write_key(net, key + "\n")
        for net, key in keys.items():
            self.assertEqual(self.m.read_key(net), key + "\n", net)
        # Vault holds exactly its two networks ...
        self.assertEqual(self.vault_key("ethereum-mainnet"), keys["ethereum-mainnet"])
        self.assertEqual(self.vault_key("polygon-pos"), keys["polygon-pos"])
        for net in ("gnosis", "sepolia", "holesky-testnet"):
            self.assertIsNone(self.vault_key(net), net)
        # ... each file store its own (read with the CLI on that store alone).
        self.m.stop()
        self.assertEqual(self.store_keys("testnets"), {"sepolia", "holesky-testnet"})
        self.assertEqual(self.store_keys("main"), {"gnosis"})
        self.assertEqual(self.store_key("testnets", "sepolia"), keys["sepolia"])
        self.assertEqual(self.store_key("main", "gnosis"), keys["gnosis"])

    def test_remove_goes_to_the_routed_backend(self):
        key = new_key()
        self.m.write_key("ethereum-mainnet", key + "\n")
        self.m.write_key("sepolia", new_key() + "\n")
        os.unlink(self.m.key_path("ethereum-mainnet"))
        self.assertIsNone(self.vault_key("ethereum-mainnet"))
        self.assertTrue(os.path.exists(self.m.key_path("sepolia")))

    def test_listing_is_the_union_without_names_listed_by_the_wrong_instance(self):
        self.m.write_key("gnosis", new_key() + "\n")
        self.m.write_key("sepolia", new_key() + "\n")
        # Written to Vault behind the mount's back: polygon-zkevm routes to
        # Vault and shows; arbitrum-testnet routes to testnets, which does
        # not hold it, so Vault's copy is not what keys/ would serve: hidden.
        self.vault_put("polygon-zkevm", new_key())
        self.vault_put("arbitrum-testnet", new_key())
        # The listing cache (60 s) learnt our writes; a remount lists afresh.
        self.m.stop()
        self.m.start()
        self.assertEqual(sorted(os.listdir(self.m.path("keys"))),
                         ["gnosis", "polygon-zkevm", "sepolia"])
        with self.assertRaises(FileNotFoundError):
            os.stat(self.m.key_path("arbitrum-testnet"))
        r = self.m.cli("key", "list")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.split(), ["gnosis", "polygon-zkevm", "sepolia"])

    def test_health_metrics_and_audit_per_instance(self):
        self.assertEqual(sorted(os.listdir(self.m.path("health"))),
                         ["file", "prod-vault", "testnets"])
        for name, typ in (("file", "file"), ("testnets", "file"), ("prod-vault", "vault")):
            deadline = time.monotonic() + 10
            while True:
                with open(self.m.path("health", name)) as f:
                    lines = f.read().splitlines()
                if lines[0] == "up" or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            self.assertEqual(lines[0], "up", name)
            self.assertIn(f"backend: {name}", lines)
            self.assertIn(f"storage_type: {typ}", lines)
        for net in ("sepolia", "ethereum-mainnet", "gnosis"):
            self.m.write_key(net, new_key() + "\n")
            self.m.read_key(net)
        self.m.read_key("ethereum-mainnet")
        mt = self.m.metrics()
        for backend in ("file", "testnets", "prod-vault"):
            self.assertEqual(metric(mt, "omikuji_key_operations_total", operation="store",
                                    backend=backend, status="success"), 1, backend)
        # Only Vault is cached: two reads, both hits (the store filled the cache).
        self.assertEqual(metric(mt, "omikuji_key_cache_hits_total", backend="prod-vault"), 2)
        self.assertNotIn(("omikuji_key_cache_hits_total", frozenset({("backend", "testnets")})), mt)
        self.assertEqual(metric(mt, "omikuji_key_backend_up", backend="prod-vault"), 1)
        os.listdir(self.m.path("keys"))
        lists = [a for a in self.m.audit_lines() if a["operation"] == "list"]
        self.assertEqual(lists[-1]["storage_type"], "file,testnets,prod-vault")
        routed = {}
        for line in self.m.audit_lines():
            if line["operation"] in ("get", "store"):
                routed.setdefault(line["network"], set()).add(line["storage_type"])
        self.assertEqual(routed, {"sepolia": {"testnets"}, "ethereum-mainnet": {"prod-vault"},
                                  "gnosis": {"file"}})


class TestHungInstance(RoutingCase):
    """One hung Vault instance uses at most its max_calls_in_flight FUSE
    threads; the other instances and `metrics` keep answering."""
    vault_ttl = 0   # every open asks Vault

    def setUp(self):
        super().setUp()
        self.m.start()

    def test_hung_vault_does_not_stall_the_others(self):
        nets = [f"polygon-{i}" for i in range(HUNG_READS)]
        for net in nets:
            self.vault_put(net, new_key())
        self.m.write_key("sepolia", new_key() + "\n")
        self.m.write_key("gnosis", new_key() + "\n")
        os.listdir(self.m.path("keys"))   # the listing is cached (60 s): lookups need no Vault
        self.vs.fault("hang", delay=60, path_prefix="/v1/secret/data/")
        outcomes = {}

        def read(net):
            try:
                with open(self.m.key_path(net)) as f:
                    f.read()
                outcomes[net] = 0
            except OSError as e:
                outcomes[net] = e.errno

        threads = [threading.Thread(target=read, args=(n,), daemon=True) for n in nets]
        for t in threads:
            t.start()
        # Wait until the bound is used up: the rest fail once no call has
        # completed for a second (a hung backend, not a busy one).
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            mt = self.m.metrics()
            if (metric(mt, "omikuji_key_backend_calls_in_flight", backend="prod-vault")
                    == VAULT_MAX_IN_FLIGHT and len(outcomes) == HUNG_READS - VAULT_MAX_IN_FLIGHT):
                break
            time.sleep(0.05)
        try:
            self.assertEqual(len(outcomes), HUNG_READS - VAULT_MAX_IN_FLIGHT,
                             "reads beyond max_calls_in_flight fail once no call completes")
            self.assertEqual(set(outcomes.values()), {errno.EIO})
            timings = {}
            for what, fn in (("testnets read", lambda: self.m.read_key("sepolia")),
                             ("file read", lambda: self.m.read_key("gnosis")),
                             ("metrics", lambda: open(self.m.path("metrics")).read()),
                             ("health/testnets", lambda: open(self.m.path("health", "testnets")).read()),
                             ("ls keys/", lambda: os.listdir(self.m.path("keys")))):
                done = []
                t0 = time.monotonic()
                worker = threading.Thread(target=lambda: done.append(fn()), daemon=True)
                worker.start()
                worker.join(30)
                timings[what] = time.monotonic() - t0
                self.assertTrue(done, f"{what} did not complete while Vault hangs")
            print("while %d reads of Vault hang: %s" % (HUNG_READS, ", ".join(
                "%s %.3f s" % kv for kv in timings.items())))
            mt = self.m.metrics()
            self.assertEqual(metric(mt, "omikuji_key_backend_calls_rejected_total",
                                    backend="prod-vault"), HUNG_READS - VAULT_MAX_IN_FLIGHT)
            self.assertEqual(metric(mt, "omikuji_key_backend_calls_rejected_total",
                                    backend="testnets"), 0)
        finally:
            self.vs.clear_fault()   # releases the held requests
            for t in threads:
                t.join(60)
        self.assertEqual(len(outcomes), HUNG_READS)


class TestBusyInstance(RoutingCase):
    """A slow but answering Vault instance: a burst of cold reads beyond
    max_calls_in_flight waits for places and is served, none rejected."""
    vault_ttl = 0

    def setUp(self):
        super().setUp()
        self.m.start()

    def test_burst_beyond_the_bound_is_served(self):
        nets = [f"polygon-{i}" for i in range(3 * VAULT_MAX_IN_FLIGHT)]
        keys = {net: new_key() for net in nets}
        for net, key in keys.items():
            self.vault_put(net, key)
        os.listdir(self.m.path("keys"))
        self.vs.reset_stats()
        self.vs.fault("slow", delay=0.3, path_prefix="/v1/secret/data/")
        got = {}

        def read(net):
            try:
                got[net] = self.m.read_key(net)
            except OSError as e:
                got[net] = e.errno

        try:
            threads = [threading.Thread(target=read, args=(n,), daemon=True) for n in nets]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
        finally:
            self.vs.clear_fault()
        self.assertEqual({n: v.strip() if isinstance(v, str) else v for n, v in got.items()},
                         {n: k.lower() for n, k in keys.items()})
        mt = self.m.metrics()
        self.assertEqual(metric(mt, "omikuji_key_backend_calls_rejected_total",
                                backend="prod-vault"), 0)
        self.assertEqual(sum(self.vs.route_count("GET", f"/v1/secret/data/{PREFIX}/{n}")
                             for n in nets), len(nets))


class TestListingWithAHungInstance(RoutingCase):
    """ls keys/ asks every instance at once: a Vault that does not answer
    costs its own timeout, and the other instances' names are shown."""
    vault_timeout = 2
    list_cache = 0

    def setUp(self):
        super().setUp()
        self.m.start()

    def test_listing_shows_the_others_after_the_hung_instance_times_out(self):
        self.m.write_key("gnosis", new_key() + "\n")
        self.m.write_key("sepolia", new_key() + "\n")
        self.vault_put("polygon-pos", new_key())
        # (A listing had before the hang would be kept: the last good one is.)
        self.vs.fault("hang", delay=60, path_prefix="/v1/secret/metadata/")
        try:
            # A lookup waits for the listing with its own one-second
            # deadline, then lets the open decide: stat does not fail.
            t0 = time.monotonic()
            os.stat(self.m.key_path("polygon-pos"))
            stat_s = time.monotonic() - t0
            t0 = time.monotonic()
            names = sorted(os.listdir(self.m.path("keys")))
            elapsed = time.monotonic() - t0
        finally:
            self.vs.clear_fault()
        print("with Vault's listing hung (timeout 2 s): stat keys/polygon-pos %.2f s, "
              "ls keys/ %.2f s" % (stat_s, elapsed))
        self.assertEqual(names, ["gnosis", "sepolia"])
        warned = [json.loads(line) for line in open(self.m.app_log)
                  if "could not list" in line]
        self.assertTrue(any(w.get("storage_type") == "prod-vault" for w in warned), warned)
        # Once Vault answers again (after the 2 s in which a failed listing
        # is not retried), its names are back.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            names = sorted(os.listdir(self.m.path("keys")))
            if "polygon-pos" in names:
                break
            time.sleep(0.2)
        self.assertEqual(names, ["gnosis", "polygon-pos", "sepolia"], "Vault answers again")


class TestMigrate(RoutingCase):
    """key migrate without a mount: env -> default, instance -> instance."""

    def test_from_env_to_the_default_instance(self):
        k1, k2 = new_key(), new_key()
        r = self.m.cli("key", "migrate", env={"OMIKUJI_KEY_GNOSIS": k1,
                                              "OMIKUJI_KEY_BASE_MAINNET": k2 + "\n"})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.store_key("main", "gnosis"), k1)
        self.assertEqual(self.store_key("main", "base-mainnet"), k2)
        self.assertIn("verified", r.stderr)
        self.assertNotIn(k1[2:], r.stderr + r.stdout)

    def test_between_instances_with_remove_source(self):
        key = new_key()
        self.store_cli("main", "key", "import", "--network", "sepolia", "--key", key)
        r = self.m.cli("key", "migrate", "--from", "file", "--to", "testnets",
                       "--network", "sepolia", "--remove-source")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.store_key("testnets", "sepolia"), key)
        self.assertIsNone(self.store_key("main", "sepolia"))
        # The routed CLI now finds it where the mount would.
        r = self.m.cli("key", "export", "--network", "sepolia", "--yes")
        self.assertEqual(r.stdout.strip(), key)

    def test_into_vault_and_the_routing_note(self):
        key = new_key()
        r = self.m.cli("key", "migrate", "--to", "prod-vault", "--network", "gnosis",
                       env={"OMIKUJI_KEY_GNOSIS": key})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.vault_key("gnosis"), key)
        self.assertIn("gnosis routes to 'file', not 'prod-vault'", r.stderr)

    def test_refuses_to_replace_a_different_key_without_force(self):
        old, new = new_key(), new_key()
        self.vault_put("ethereum-mainnet", old)
        env = {"OMIKUJI_KEY_ETHEREUM_MAINNET": new}
        r = self.m.cli("key", "migrate", "--to", "prod-vault", "--network", "ethereum-mainnet",
                       env=env)
        self.assertEqual(r.returncode, 1)
        self.assertIn("already holds a different key", r.stderr)
        self.assertEqual(self.vault_key("ethereum-mainnet"), old)
        r = self.m.cli("key", "migrate", "--to", "prod-vault", "--network", "ethereum-mainnet",
                       "--force", env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.vault_key("ethereum-mainnet"), new)
        # The same key again is not a conflict.
        r = self.m.cli("key", "migrate", "--to", "prod-vault", "--network", "ethereum-mainnet",
                       env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("already in", r.stderr)

    def test_usage_errors(self):
        r = self.m.cli("key", "migrate", "--remove-source", env={"OMIKUJI_KEY_GNOSIS": new_key()})
        self.assertEqual(r.returncode, 2)
        self.assertIn("read-only", r.stderr)
        self.assertIsNone(self.store_key("main", "gnosis"), "nothing copied on a usage error")
        r = self.m.cli("key", "migrate", "--to", "nowhere")
        self.assertEqual(r.returncode, 2)
        self.assertIn("no backend instance named 'nowhere' (configured: file, testnets, prod-vault)",
                      r.stderr)
        r = self.m.cli("key", "migrate", "--from", "testnets", "--to", "testnets")
        self.assertEqual(r.returncode, 2)
        r = self.m.cli("key", "migrate", "--from", "testnets", "--network", "sepolia")
        self.assertEqual(r.returncode, 1)
        self.assertIn("sepolia: cannot read from 'testnets': no key", r.stderr)


class TestMigrateBesideTheMount(RoutingCase):
    """key migrate with a mount running acts through it: a cached (Vault)
    instance serves the migrated key at once, not its cached one (the
    Vault cache TTL here is 300 s)."""

    def setUp(self):
        super().setUp()
        self.m.start()

    def audited(self, op, network, storage_type):
        return [line for line in self.m.audit_lines()
                if (line["operation"], line["network"], line["storage_type"]) ==
                (op, network, storage_type) and line["status"] and not line.get("intent")]

    def test_forced_copy_into_a_cached_instance_is_served_at_once(self):
        old, new = new_key(), new_key()
        self.vault_put("ethereum-mainnet", old)
        self.assertEqual(self.m.read_key("ethereum-mainnet"), old + "\n")   # now cached
        r = self.m.cli("key", "migrate", "--to", "prod-vault", "--network", "ethereum-mainnet",
                       "--force", env={"OMIKUJI_KEY_ETHEREUM_MAINNET": new})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.vault_key("ethereum-mainnet"), new)
        self.assertEqual(self.m.read_key("ethereum-mainnet"), new + "\n")
        self.assertEqual([line["uid"] for line in
                          self.audited("store", "ethereum-mainnet", "prod-vault")], [os.getuid()])

    def test_remove_source_drops_the_cached_key(self):
        key = new_key()
        self.vault_put("polygon-pos", key)
        self.assertEqual(self.m.read_key("polygon-pos"), key + "\n")   # now cached
        r = self.m.cli("key", "migrate", "--from", "prod-vault", "--to", "file",
                       "--network", "polygon-pos", "--remove-source")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("polygon-pos routes to 'prod-vault', not 'file'", r.stderr)
        self.assertIsNone(self.vault_key("polygon-pos"))
        self.assertEqual(self.store_key("main", "polygon-pos"), key)
        with self.assertRaises(FileNotFoundError):
            self.m.read_key("polygon-pos")
        self.assertTrue(self.audited("store", "polygon-pos", "file"))
        self.assertTrue(self.audited("remove", "polygon-pos", "prod-vault"))


class TestConfigErrors(unittest.TestCase):
    CASES = [
        ("  backends:\n    - name: Bad\n      storage_type: file\n",
         "7:7: keyfs.backends[0]: bad name 'Bad'"),
        ("  backends:\n    - name: vault\n      storage_type: file\n",
         "7:7: keyfs.backends[0]: the name 'vault' is a backend type's"),
        ("  backends:\n    - name: a\n      storage_type: file\n    - name: a\n      storage_type: env\n",
         "9:7: keyfs.backends[1]: duplicate backend name 'a' (first at line 7)"),
        ("  backends:\n    - name: a\n      storage_type: file\n      networks: [\"eth/*\"]\n",
         "9:18: keyfs.backends[0].networks: '/' cannot occur in a network name or glob"),
        ("  backends:\n    - name: a\n      storage_type: file\n      networks: [\"[abc\"]\n",
         "unclosed [ in the glob"),
        ("  backends:\n    - name: a\n      storage_type: s3\n",
         "keyfs.backends[0].storage_type must be one of file, env, keyring, vault, aws-secrets"),
        ("  backends:\n    - name: a\n",
         "7:7: keyfs.backends[0] needs a storage_type"),
        ("  backends:\n    - name: a\n      storage_type: vault\n      vault:\n        tokn: x\n",
         "10:9: unknown key 'tokn' in keyfs.backends[0].vault"),
    ]

    def test_check_config_names_file_line_and_column(self):
        m = Mount()
        self.addCleanup(m.cleanup)
        base = "key_storage:\n  storage_type: file\nlogging:\n  level: info\nkeyfs:\n"
        for body, want in self.CASES:
            with self.subTest(want=want):
                with open(m.config, "w") as f:
                    f.write(base + body)
                r = m.cli("check-config")
                self.assertEqual(r.returncode, 2, r.stdout)
                self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
                self.assertIn(f"{m.config}:" if want[0].isdigit() else "", r.stderr)
                self.assertIn(want, r.stderr)

    def test_unknown_top_level_section_warns(self):
        m = Mount()
        self.addCleanup(m.cleanup)
        with open(m.config, "w") as f:
            f.write("oracle_pools: {a: 1}\nkeyfs:\n  max_stale_seconds: 5\n")
        r = m.cli("check-config")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr, f"omikuji-keyfs: warning: {m.config}:1:1: unknown top-level "
                         "section 'oracle_pools' skipped (Omikuji's own?)\n")
        with open(m.config, "w") as f:
            f.write("keyfss:\n  max_stale_seconds: 5\n")
        r = m.cli("check-config")
        self.assertEqual(r.returncode, 2)
        self.assertIn("did you mean 'keyfs'?", r.stderr)

    def test_check_config_prints_the_instances(self):
        m = Mount()
        self.addCleanup(m.cleanup)
        with open(m.config, "w") as f:
            f.write("keyfs:\n  backends:\n    - name: dr-vault\n      storage_type: vault\n"
                    "      vault: { url: \"http://127.0.0.1:1\", token: s3cr3t-t0ken }\n"
                    "      networks: [\"ethereum-*\"]\n")
        r = m.cli("check-config")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("- name: \"dr-vault\"", r.stdout)
        self.assertIn("networks: [\"ethereum-*\"]", r.stdout)
        self.assertNotIn("s3cr3t-t0ken", r.stdout)
        # The printed config loads again (check-config's own promise).
        again = os.path.join(m.root, "again.yaml")
        with open(again, "w") as f:
            f.write(r.stdout)
        os.chmod(again, 0o600)
        r2 = m.cli("check-config", "-c", again, config=False)
        self.assertEqual(r2.returncode, 0, r2.stderr)


if __name__ == "__main__":
    run()
