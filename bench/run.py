#!/usr/bin/python3
"""bench/run.py - every omikuji-keyfs benchmark in one run, each figure next
to its baseline measured in the same run, printed as a table with ratios.

    /usr/bin/python3 bench/run.py --build BUILDDIR [--markdown] [--reps 5] [--quick]
                                  [--only routing|scale|keyring|memory|concurrent|metrics|
                                          cold|audit|cached]

Needs root (FUSE mounts), /dev/fuse, fusermount3, and a build with the
bench programs (`meson compile -C BUILDDIR`; a release build is what
BENCHMARKS.md reports).  Tight loops run in the C programs of bench/
(readloop, curlget, floorfs, metrics_render); this script only sets up,
orchestrates and reports.  Every figure is the median of --reps repetitions
and comparisons are interleaved (A, B, A, B, ...) so that drift on the
machine hits both sides alike.  Everything started here (daemons, floorfs,
the Vault test server) is stopped by pid and unmounted in a finally block.

Exit status: 0 when every measurement ran (a missed target is reported,
not an error), 1 when a measurement failed, 77 when the machine cannot mount.
"""
import argparse
import datetime
import http.client
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(SOURCE, "tests", "servers"))
sys.path.insert(0, os.path.join(SOURCE, "tests", "integration"))
import vaultlib  # noqa: E402
import awslib  # noqa: E402
import keyfslib  # noqa: E402
import keyringlib  # noqa: E402

KV_MOUNT = "secret"
PREFIX = "omikuji/keys"
HOT = "bench-hot"          # the network of the cached-read loops
COLD = "bench-cold"        # the network of the uncached (TTL 0) loops
CONC = "bench-conc"        # read by 100 threads at once, never read before
# The logging and keyfs sections of every bench mount ({root}: its directory).
MOUNT_TAIL = """logging:
  format: json
  level: info
  targets:
    - type: file
      path: {root}/app.log
keyfs:
  audit_log: {root}/audit.log
  health_interval_seconds: 3600
"""
FILL = 10000               # networks cached for the RSS figure
METRICS_NETS = 1000        # networks of traffic for the metrics figure



def smaps_breakdown(pid):
    """What a process's RSS is made of, from /proc/PID/status and smaps: the
    shared libraries' file pages (their PSS beside: what the process alone
    pays for them), the heap and anonymous mappings (malloc arenas, large
    allocations, thread stacks, the locked key pool), and the largest
    libraries."""
    st = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            st[k] = v.split()[0] if v.split() else ""
    libs = {}
    pss_file = anon_maps = 0
    name = None
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            fields = line.split()
            if not fields[0].endswith(":"):
                name = fields[5] if len(fields) > 5 else ""
                if not name:
                    anon_maps += 1
            elif fields[0] == "Rss:" and name.startswith("/"):
                libs[name] = libs.get(name, 0) + int(fields[1])
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            if line.startswith("Pss_File:"):
                pss_file = int(line.split()[1])
    top = sorted(libs.items(), key=lambda x: -x[1])[:5]
    return ("RssAnon %s kB, RssFile %s kB (PSS of file pages %d kB), VmLck %s kB, "
            "%d anonymous mappings, %s threads; largest file mappings: %s" % (
                st.get("RssAnon"), st.get("RssFile"), pss_file, st.get("VmLck"), anon_maps,
                st.get("Threads"),
                ", ".join("%s %d kB" % (os.path.basename(n), kb) for n, kb in top)))

class BenchError(Exception):
    pass


def sched_ns(pid):
    """(CPU ns, run-queue wait ns) summed over the threads of pid, from
    /proc/PID/task/*/schedstat: what a process ran and how long it was
    runnable but waited for a CPU.  Threads that exited are not counted."""
    cpu = wait = 0
    base = "/proc/%d/task" % pid
    for t in os.listdir(base):
        try:
            with open(os.path.join(base, t, "schedstat")) as f:
                a, b, _ = f.read().split()
        except (OSError, ValueError):
            continue
        cpu += int(a)
        wait += int(b)
    return cpu, wait


def children_cpu_ns():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return int((r.ru_utime + r.ru_stime) * 1e9)


class SchedProbe:
    """Wraps a repetition: CPU and run-queue wait of the given long-running
    processes (pids) and the CPU of the children it ran (readloop, curlget),
    per operation, medians over the repetitions."""

    def __init__(self, pids, n):
        self.pids, self.n = pids, n
        self.samples = []   # (pids' cpu, pids' wait, children cpu) per op, ns

    def wrap(self, fn):
        def run():
            before = [sched_ns(p) for p in self.pids]
            c0 = children_cpu_ns()
            v = fn()
            c1 = children_cpu_ns()
            after = [sched_ns(p) for p in self.pids]
            self.samples.append((
                sum(a[0] - b[0] for a, b in zip(after, before)) / self.n,
                sum(a[1] - b[1] for a, b in zip(after, before)) / self.n,
                (c1 - c0) / self.n))
            return v
        return run

    def medians(self):
        """(cpu us, wait us, children cpu us) per operation."""
        if not self.samples:
            return 0.0, 0.0, 0.0
        return tuple(statistics.median(x[i] for x in self.samples) / 1000.0 for i in range(3))


def start_floorfs(floorfs, mnt, stderr_path, wrapper=(), timeout=10):
    """floorfs mounted on mnt (created), optionally under a wrapper
    (valgrind); (Popen, mnt).  Shared with bench/profile.py."""
    os.makedirs(mnt)
    err = open(stderr_path, "a")
    proc = subprocess.Popen([*wrapper, floorfs, mnt], stdin=subprocess.DEVNULL,
                            stdout=err, stderr=err)
    err.close()
    deadline = time.monotonic() + timeout
    while not keyfslib.is_mounted(mnt):
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            raise BenchError("floorfs did not mount")
        time.sleep(0.02)
    return proc, mnt


def stop_floorfs(proc, mnt, timeout=10):
    if keyfslib.is_mounted(mnt):
        subprocess.run(["fusermount3", "-u", mnt], capture_output=True)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if keyfslib.is_mounted(mnt):
        subprocess.run(["fusermount3", "-uz", mnt], capture_output=True)


def log(msg):
    print("# " + msg, file=sys.stderr, flush=True)


def parse_kv(line):
    out = {}
    for part in line.split():
        k, _, v = part.partition("=")
        out[k] = float(v)
    return out


class Bench:
    def __init__(self, build, reps, quick, only=None):
        self.only = only
        self.build = os.path.abspath(build)
        self.reps = reps
        self.quick = quick
        self.bin = {name: os.path.join(self.build, "bench", name)
                    for name in ("readloop", "curlget", "floorfs", "metrics_render", "backend_get",
                                 "route", "keyringget", "gen_audit", "address_derive")}
        self.keyfs_bin = os.path.join(self.build, "omikuji-keyfs")
        self.root = tempfile.mkdtemp(prefix="keyfs-bench-")
        self.mounts = []       # keyfslib.Mount objects to stop
        self.floor = None      # (Popen, mountpoint)
        self.vault = None
        self.aws = None
        self.keyring = None    # (keyringlib.SessionBus, keyringlib.KeyringDaemon)
        self.shm_file = None
        self.rows = []         # result rows, see add()
        self.notes = []

    # --- plumbing ------------------------------------------------------------

    def run_prog(self, argv, env=None, timeout=120):
        """Run one bench program; its parsed result line."""
        p = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout,
                           stdin=subprocess.DEVNULL)
        if p.returncode != 0:
            raise BenchError("%s failed (%d): %s" % (os.path.basename(argv[0]), p.returncode,
                                                     p.stderr.strip()[:300]))
        return parse_kv(p.stdout.strip().splitlines()[-1])

    def readloop(self, path, n, extra=()):
        r = self.run_prog([self.bin["readloop"], "-n", str(n), *extra, path])
        return r

    def readloop_us(self, path, n, expect_bytes=None):
        r = self.readloop(path, n)
        if expect_bytes is not None and not (r["bytes_min"] == r["bytes_max"] == expect_bytes):
            raise BenchError("%s: read %d..%d bytes, expected %d" % (
                path, r["bytes_min"], r["bytes_max"], expect_bytes))
        return r["ns_per_op"] / 1000.0

    def interleaved(self, funcs):
        """Run each function reps times, interleaved; medians and ranges."""
        samples = [[] for _ in funcs]
        for _ in range(self.reps):
            for i, f in enumerate(funcs):
                samples[i].append(f())
        return [(statistics.median(s), min(s), max(s)) for s in samples]

    def add(self, what, value, unit, base_what=None, base_value=None, target=None,
            lower_is_better=True, spread=None, base_spread=None, ratio=None):
        if ratio is None and base_value:
            ratio = value / base_value
        verdict = ""
        if target is not None and ratio is not None:
            ok = ratio <= target if lower_is_better else ratio >= target
            verdict = "met" if ok else "MISSED"
        self.rows.append(dict(what=what, value=value, unit=unit, base_what=base_what,
                              base_value=base_value, ratio=ratio, target=target,
                              lower=lower_is_better, verdict=verdict, spread=spread,
                              base_spread=base_spread))

    def keyfs_mount(self, name, config_text, extra_args=(), env=None):
        root = os.path.join(self.root, name)
        os.makedirs(root)
        m = keyfslib.Mount(config_text=config_text.replace("{root}", root), extra_args=extra_args,
                           env=env, root=root)
        self.mounts.append(m)
        m.start(timeout=20)
        return m

    def stop_mount(self, m):
        """Unmount now; a daemon that does not exit cleanly fails the run."""
        proc = m.proc
        self.mounts.remove(m)
        m.stop()
        if proc.returncode != 0:
            raise BenchError("daemon exited with %s: %s" % (proc.returncode,
                                                            m.daemon_stderr()[-2000:]))

    def start_floor(self):
        mnt = os.path.join(self.root, "floor")
        self.floor = start_floorfs(self.bin["floorfs"], mnt,
                                   os.path.join(self.root, "floorfs.stderr"))
        return mnt

    def stop_floor(self):
        if self.floor:
            floor, self.floor = self.floor, None
            stop_floorfs(*floor)

    def cleanup(self):
        ok = True
        for m in self.mounts:
            proc = m.proc
            try:
                m.stop()
            except Exception as e:   # keep unmounting the others
                log("stopping a mount: %s" % e)
                ok = False
            if proc is not None and proc.returncode != 0:
                # A daemon that did not exit cleanly (e.g. a sanitizer report).
                log("daemon %s exited with %s: %s" % (m.root, proc.returncode,
                                                      m.daemon_stderr()[-2000:]))
                ok = False
        self.mounts = []
        floor = self.floor
        self.stop_floor()
        if floor and floor[0].returncode != 0:
            log("floorfs exited with %s" % floor[0].returncode)
            ok = False
        if self.vault:
            self.vault.cleanup()
            self.vault = None
        if self.aws:
            self.aws.cleanup()
            self.aws = None
        if self.keyring:
            bus, daemon = self.keyring
            daemon.stop()
            bus.stop()
            self.keyring = None
        if self.shm_file and os.path.exists(self.shm_file):
            os.unlink(self.shm_file)
        shutil.rmtree(self.root, ignore_errors=True)
        return ok

    # --- the Vault side ---------------------------------------------------------

    def kv_put_many(self, networks):
        """Write a fresh random key for each network over one kept-alive connection."""
        conn = http.client.HTTPConnection("127.0.0.1", self.vault.port, timeout=30)
        try:
            for net in networks:
                body = json.dumps({"data": {"private_key": vaultlib.random_evm_key()}})
                conn.request("POST", self.vault.kv_path("data", PREFIX + "/" + net), body=body,
                             headers={"X-Vault-Token": self.vault.root_token,
                                      "Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                if resp.status != 200:
                    raise BenchError("kv put failed: %d" % resp.status)
        finally:
            conn.close()

    def vault_config(self, ttl):
        return """
key_storage:
  storage_type: vault
  vault:
    url: %s
    mount_path: %s
    path_prefix: %s
    token: "${VAULT_TOKEN}"
    timeout_seconds: 5
    cache_ttl_seconds: %d
""" % (self.vault.url, KV_MOUNT, PREFIX, ttl) + MOUNT_TAIL + """  cache_max_entries: 20000
"""

    # --- the keyring side -----------------------------------------------------------

    def keyring_cold(self, n):
        """An uncached (TTL 0) read through a keyring mount, against a real
        gnome-keyring-daemon on a private bus, vs the same lookup made in
        process with libsecret's simple API."""
        tool = keyringlib.missing_tool()
        if tool:
            self.notes.append("keyring benchmark not run: %s is not installed" % tool)
            return
        log("5. keyring: uncached read through the mount vs bare "
            "secret_password_lookup_sync, %d x %d" % (self.reps, n))
        bus = keyringlib.SessionBus()
        daemon = keyringlib.KeyringDaemon(os.path.join(self.root, "keyring-daemon"), None)
        self.keyring = (bus, daemon)
        bus.start()
        daemon.env["DBUS_SESSION_BUS_ADDRESS"] = bus.address
        daemon.start()
        r = daemon.secret_tool("store", "--label=bench", "service", "omikuji", "username", COLD,
                               input=keyfslib.new_key())
        if r.returncode != 0:
            raise BenchError("secret-tool store failed: %s" % r.stderr.strip()[:200])
        m = self.keyfs_mount("keyring", """
key_storage:
  storage_type: keyring
  keyring:
    service: omikuji
    cache_ttl_seconds: 0
""" + MOUNT_TAIL, env={"DBUS_SESSION_BUS_ADDRESS": bus.address})
        path = m.key_path(COLD)
        bare = [self.bin["keyringget"], "-s", "omikuji", "-u", COLD]
        self.readloop(path, 20)
        self.run_prog(bare + ["-n", "20"], env=daemon.env)

        def mount_rep():
            return self.readloop_us(path, n, 67)

        def bare_rep():
            return self.run_prog(bare + ["-n", str(n)], env=daemon.env)["ns_per_op"] / 1000.0

        (mv, ms, ml), (bv, bs, bl) = self.interleaved([mount_rep, bare_rep])
        self.add("uncached keyring read via mount (TTL 0)", mv, "us/op",
                 "secret_password_lookup_sync in process, same item", bv,
                 spread=(ms, ml), base_spread=(bs, bl))
        self.stop_mount(m)

    def data_route(self, net):
        return "/v1/%s/data/%s/%s" % (KV_MOUNT, PREFIX, net)

    # --- the measurements -------------------------------------------------------

    def foundation(self):
        n = 2000 if self.quick else 10000
        log("1. foundation: file backend vs tmpfs, %d x %d reads" % (self.reps, n))
        m = self.keyfs_mount("file", """
key_storage:
  storage_type: file
  file:
    path: {root}/store/keys.enc
""" + MOUNT_TAIL)
        key = keyfslib.new_key()
        m.write_key("bench-file", key + "\n")
        self.shm_file = "/dev/shm/keyfs-bench-%d" % os.getpid()
        fd = os.open(self.shm_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, (keyfslib.new_key() + "\n").encode())
        os.close(fd)
        kpath = m.key_path("bench-file")
        self.readloop(kpath, 200)
        self.readloop(self.shm_file, 200)
        (fuse, fs, fl), (shm, ss, sl) = self.interleaved([
            lambda: self.readloop_us(kpath, n, 67),
            lambda: self.readloop_us(self.shm_file, n, 67)])
        audited = sum(1 for r in m.audit_lines() if r.get("network") == "bench-file"
                      and r.get("operation") == "get")
        expected = 200 + self.reps * n
        if audited != expected:
            raise BenchError("file mount audited %d reads, expected %d" % (audited, expected))
        self.add("read via mount, file backend, audit on", fuse, "us/op",
                 "same loop on a tmpfs file (/dev/shm)", shm, spread=(fs, fl), base_spread=(ss, sl))
        self.notes.append("file mount: %d reads, %d audit lines for them (one each)" % (
            expected, audited))
        self.stop_mount(m)

    def with_floor(self, reps, floor_mnt, n):
        """reps, plus a floorfs read loop of n when floor_mnt is set (its
        CPU and run-queue wait in self.floor_probe)."""
        if not floor_mnt:
            return reps
        fp = os.path.join(floor_mnt, "keys", COLD)
        self.readloop(fp, 50)
        self.floor_probe = SchedProbe([self.floor[0].pid], n)
        return reps + [self.floor_probe.wrap(lambda: self.readloop_us(fp, n, 67))]

    def sched_note(self, backend, daemon, server, floor, curl):
        """Where the cold read's wall time goes, in CPU and waiting (us per
        read, medians): the measurement behind the breakdown on a shared,
        loaded machine."""
        (dc, dw, rc), (sc, sw, _) = daemon.medians(), server.medians()
        (fc, fw, frc), ccc = floor.medians(), curl.medians()[2]
        self.notes.append(
            "%s cold read, CPU and run-queue wait per read (us, /proc/PID/task/*/schedstat): "
            "daemon CPU %.1f, waited %.1f for a CPU; its readloop CPU %.1f; server CPU %.1f "
            "(waited %.1f) | floorfs CPU %.1f, waited %.1f; its readloop CPU %.1f | bare "
            "request: client CPU %.1f" % (backend, dc, dw, rc, sc, sw, fc, fw, frc, ccc))

    def cold_goal(self, backend, mount_v, floor_v, curl_v, inproc_v, spreads):
        """Issue 15 goal 1: uncached read <= 1.10 x (floorfs + bare request),
        with the breakdown: the floor, the bare request, the backend's own
        code in process (in-process get - bare request) and the rest (what
        the mount adds beyond both: FUSE hand-off, cache, access, audit)."""
        base = floor_v + curl_v
        self.add("uncached %s read via mount (TTL 0), issue 15 goal 1" % backend, mount_v, "us/op",
                 "floorfs + bare request (same run)", base, target=1.10, spread=spreads)
        parts = ["floorfs %.1f" % floor_v, "bare request %.1f" % curl_v]
        if inproc_v is not None:
            parts.append("backend code beyond the bare request (in process) %.1f"
                         % (inproc_v - curl_v))
            parts.append("the rest (FUSE beyond floorfs, cache, access, audit) %.1f"
                         % (mount_v - inproc_v - floor_v))
        else:
            parts.append("everything else %.1f" % (mount_v - base))
        self.notes.append("%s cold read %.1f us = %s (medians, us; load average %.1f)" % (
            backend, mount_v, " + ".join(parts), os.getloadavg()[0]))

    def vault_cold(self, cold, n, floor_mnt=None):
        log("2. vault: uncached read through the mount vs bare libcurl, %d x %d" % (self.reps, n))
        path = cold.key_path(COLD)
        url = self.vault.url + self.data_route(COLD)
        env = dict(os.environ, VAULT_TOKEN=self.vault.root_token)
        self.readloop(path, 50)
        self.run_prog([self.bin["curlget"], "-n", "50", url], env=env)
        counts = []

        def mount_rep():
            self.vault.reset_stats()
            us = self.readloop_us(path, n, 67)
            counts.append(self.vault.route_count("GET", self.data_route(COLD)))
            return us

        def curl_rep():
            r = self.run_prog([self.bin["curlget"], "-n", str(n), url], env=env)
            return r["ns_per_op"] / 1000.0

        def backend_rep():
            # the same backend code in process, without FUSE: splits the
            # mount's overhead into backend code and FUSE round trips
            r = self.run_prog([self.bin["backend_get"], "-u", self.vault.url, "-k", COLD,
                               "-n", str(n)], env=env)
            return r["ns_per_op"] / 1000.0

        dprobe = SchedProbe([cold.proc.pid], n)
        sprobe = SchedProbe([self.vault.proc.pid], n)
        cprobe = SchedProbe([], n)   # the server serves it on a thread that ends with it
        res = self.interleaved(self.with_floor([sprobe.wrap(dprobe.wrap(mount_rep)),
                                                cprobe.wrap(curl_rep), backend_rep], floor_mnt, n))
        (mv, ms, ml), (cv, cs, cl), (bv, bs, bl) = res[:3]
        per_read = [c / n for c in counts]
        if any(abs(p - 1.0) > 1e-9 for p in per_read):
            raise BenchError("TTL 0: backend GETs per read %r, expected exactly 1" % per_read)
        if floor_mnt:
            self.sched_note("vault", dprobe, sprobe, self.floor_probe, cprobe)
        if floor_mnt:
            self.cold_goal("vault", mv, res[3][0], cv, bv, (ms, ml))
        self.add("uncached vault read via mount (TTL 0)", mv, "us/op",
                 "libcurl GET, same URL, reused handle", cv, target=1.3,
                 spread=(ms, ml), base_spread=(cs, cl))
        self.add("vault backend get in process (no FUSE)", bv, "us/op",
                 "libcurl GET, same URL, reused handle", cv, spread=(bs, bl), base_spread=(cs, cl))
        self.add("backend GETs per uncached read (server count / reads)", per_read[0], "",
                 None, None, ratio=per_read[0])
        self.notes.append("TTL 0: %s backend GETs for %d reads per repetition" % (counts, n))
        return mv

    def aws_cold(self, n, floor_mnt=None):
        """The aws-secrets backend's uncached read against the same signed
        request made by bare libcurl (the AWS test server on both sides)."""
        log("2b. aws: uncached read through the mount vs bare signed libcurl, %d x %d" % (
            self.reps, n))
        self.aws = awslib.AwsServer().start()
        secret_id = "omikuji/" + COLD
        self.aws.boto3_client().create_secret(
            Name=secret_id, SecretString=json.dumps({"private_key": vaultlib.random_evm_key()}))
        creds = {"AWS_ACCESS_KEY_ID": self.aws.access_key,
                 "AWS_SECRET_ACCESS_KEY": self.aws.secret_key,
                 "AWS_EC2_METADATA_DISABLED": "true"}
        m = self.keyfs_mount("aws-cold", """
key_storage:
  storage_type: aws-secrets
  aws_secrets:
    region: %s
    prefix: omikuji
    endpoint_url: %s
    cache_ttl_seconds: 0
logging:
  format: json
  level: info
  targets:
    - type: file
      path: {root}/app.log
keyfs:
  audit_log: {root}/audit.log
""" % (self.aws.region, self.aws.url), env=creds)
        path = m.key_path(COLD)
        env = dict(os.environ, **creds)
        argv = [self.bin["curlget"], "-a", self.aws.region, "-s", secret_id, self.aws.url]
        self.readloop(path, 50)
        self.run_prog(argv[:1] + ["-n", "50"] + argv[1:], env=env)
        counts = []

        def gets():
            return self.aws.stats()["by_action"].get("GetSecretValue", 0)

        def mount_rep():
            before = gets()
            us = self.readloop_us(path, n, 67)
            counts.append(gets() - before)
            return us

        def curl_rep():
            r = self.run_prog(argv[:1] + ["-n", str(n)] + argv[1:], env=env)
            return r["ns_per_op"] / 1000.0

        def backend_rep():
            r = self.run_prog([self.bin["backend_get"], "-a", self.aws.region, "-u", self.aws.url,
                               "-k", COLD, "-n", str(n)], env=env)
            return r["ns_per_op"] / 1000.0

        dprobe = SchedProbe([m.proc.pid], n)
        sprobe = SchedProbe([self.aws.proc.pid], n)
        cprobe = SchedProbe([], n)   # the server serves it on a thread that ends with it
        res = self.interleaved(self.with_floor([sprobe.wrap(dprobe.wrap(mount_rep)),
                                                cprobe.wrap(curl_rep), backend_rep], floor_mnt, n))
        (mv, ms, ml), (cv, cs, cl), (bv, bs, bl) = res[:3]
        per_read = [c / n for c in counts]
        if any(abs(p - 1.0) > 1e-9 for p in per_read):
            raise BenchError("TTL 0: GetSecretValue per read %r, expected exactly 1" % per_read)
        if floor_mnt:
            self.sched_note("aws", dprobe, sprobe, self.floor_probe, cprobe)
        self.add("aws backend get in process (no FUSE)", bv, "us/op",
                 "libcurl SigV4 POST GetSecretValue, reused handle", cv, spread=(bs, bl),
                 base_spread=(cs, cl))
        if floor_mnt:
            self.cold_goal("aws", mv, res[3][0], cv, bv, (ms, ml))
        rejected = self.aws.stats()["rejected_signatures"]
        if rejected:
            raise BenchError("%d signatures rejected" % rejected)
        self.add("uncached aws read via mount (TTL 0)", mv, "us/op",
                 "libcurl SigV4 POST GetSecretValue, reused handle", cv,
                 spread=(ms, ml), base_spread=(cs, cl))
        self.notes.append("aws TTL 0: %s GetSecretValue calls for %d reads per repetition, "
                          "0 rejected signatures" % (counts, n))
        self.stop_mount(m)
        self.aws.cleanup()
        self.aws = None

    def cached(self, hot, noaudit, floor_mnt, n, cold_us):
        log("3+4. cached read: audit on, --no-audit, floorfs, %d x %d" % (self.reps, n))
        hp, np_, fp = hot.key_path(HOT), noaudit.key_path(HOT), os.path.join(floor_mnt, "keys", HOT)
        for p in (hp, np_, fp):
            self.readloop(p, 200)
        self.vault.reset_stats()
        (hv, hs, hl), (nv, ns, nl), (fv, fs, fl) = self.interleaved([
            lambda: self.readloop_us(hp, n, 67),
            lambda: self.readloop_us(np_, n, 67),
            lambda: self.readloop_us(fp, n, 67)])
        backend = self.vault.route_count("GET", self.data_route(HOT))
        self.add("cached vault read via mount (TTL 3600, audit on)", hv, "us/op",
                 "floorfs: minimal libfuse3 fs, same options", fv, target=1.25,
                 spread=(hs, hl), base_spread=(fs, fl))
        self.add("cold read speed-up: cached (above) vs TTL 0", cold_us / hv, "x",
                 None, None, ratio=cold_us / hv)
        self.add("cached read, audit on", hv, "us/op", "same, --no-audit", nv, target=1.10,
                 spread=(hs, hl), base_spread=(ns, nl))
        self.notes.append("cached loops: %d backend GETs during %d cached reads" % (
            backend, 3 * self.reps * n))
        if backend:
            raise BenchError("cached reads reached the backend %d times" % backend)

    def addresses(self, hot, n):
        """Issue 16: reading addresses/<net> against a cached read of the key
        itself on the same mount, and the in-process cost per key version."""
        log("5. addresses/: address read vs cached key read, %d x %d" % (self.reps, n))
        ap, kp = hot.path("addresses", HOT), hot.key_path(HOT)
        self.readloop(kp, 200)
        self.readloop(ap, 200)
        self.vault.reset_stats()
        (av, as_, al), (kv, ks, kl) = self.interleaved([
            lambda: self.readloop_us(ap, n, 43),
            lambda: self.readloop_us(kp, n, 67)])
        backend = self.vault.route_count("GET", self.data_route(HOT))
        if backend:
            raise BenchError("address and cached reads reached the backend %d times" % backend)
        self.add("address read via mount (addresses/NET, known)", av, "us/op",
                 "cached key read, same mount (keys/NET)", kv, target=1.0,
                 spread=(as_, al), base_spread=(ks, kl))
        keys = 200 if self.quick else 2000
        runs = [self.run_prog([self.bin["address_derive"], "-n", str(keys)])
                for _ in range(self.reps)]
        derive = statistics.median(r["derive_ns"] for r in runs) / 1000.0
        note_new = statistics.median(r["note_new_ns"] for r in runs) / 1000.0
        note_same = statistics.median(r["note_same_ns"] for r in runs) / 1000.0
        self.add("address derivation per key version (secp256k1+keccak+EIP-55)", derive,
                 "us/op", "cached key read via mount (above)", kv)
        self.add("address book note of a new key version (derive + keep)", note_new, "us/op",
                 "derivation alone", derive)
        self.add("version check every key read makes (same version)", note_same, "us/op",
                 "cached key read via mount (above)", kv)
        book = statistics.median(r["book_bytes_per_network"] for r in runs)
        self.add("address book heap per network (%d networks)" % keys, book, "bytes",
                 None, None)
        self.notes.append("addresses: %d backend GETs during %d address and cached reads; "
                          "derivation over %d random keys x %d runs" % (
                              backend, 2 * self.reps * n, keys, self.reps))

    def routed_config(self, instances, globs):
        """vault_config(3600) plus `instances` file instances of `globs`
        globs each, none matching HOT: every read of HOT is routed past all
        of them to key_storage."""
        text = self.vault_config(3600) + "  backends:\n"
        for i in range(instances):
            nets = ", ".join('"route%d-%d-*"' % (i, j) for j in range(globs))
            text += ("    - name: files%d\n      storage_type: file\n"
                     "      file: { path: {root}/store/files%d.enc }\n"
                     "      networks: [%s]\n" % (i, i, nets))
        return text

    def routing(self, hot, n):
        log("5. routing: cached read, 1 instance vs 8 instances of 100 globs, %d x %d"
            % (self.reps, n))
        env = {"VAULT_TOKEN": self.vault.root_token}
        routed = self.keyfs_mount("routed", self.routed_config(8, 100), env=env)
        hp, rp = hot.key_path(HOT), routed.key_path(HOT)
        for p in (hp, rp):
            self.readloop(p, 200)
        (hv, hs, hl), (rv, rs, rl) = self.interleaved([
            lambda: self.readloop_us(hp, n, 67),
            lambda: self.readloop_us(rp, n, 67)])
        instances = len(os.listdir(routed.path("health")))
        if instances != 9:
            raise BenchError("routed mount has %d instances, expected 9" % instances)
        self.add("cached vault read, 8 more instances of 100 globs each", rv, "us/op",
                 "same, key_storage only (1 instance)", hv, target=1.02,
                 spread=(rs, rl), base_spread=(hs, hl))
        self.stop_mount(routed)
        rs_ = [self.run_prog([self.bin["route"], "-n", "1000000"]) for _ in range(self.reps)]
        many = statistics.median(r["ns_per_op"] for r in rs_)
        one = statistics.median(r["ns_per_op_1"] for r in rs_)
        first = statistics.median(r["first_ns"] for r in rs_)
        self.add("router_route() in process, 8 x 100 globs, remembered", many, "ns/op",
                 "same, key_storage only", one)
        self.notes.append("the first route of a name past 8 x 100 non-matching globs took %.1f us "
                          "(800 fnmatch calls); later ones are remembered" % (first / 1000.0))

    def concurrent(self, hot):
        log("3. 100 concurrent cold reads of one network (server slowed 0.3 s)")
        route = self.data_route(CONC)
        self.vault.reset_stats()
        self.vault.fault("slow", count=1, delay=0.3, path_prefix=route)
        try:
            r = self.readloop(hot.key_path(CONC), 1, ("-b", "-t", "100"))
        finally:
            self.vault.clear_fault()
        calls = self.vault.route_count("GET", route)
        if r["errors"] or r["bytes_min"] != 67 or r["bytes_max"] != 67:
            raise BenchError("concurrent reads: %r" % r)
        self.add("backend GETs for 100 concurrent cold reads", calls, "calls",
                 None, None, ratio=calls / 1.0, target=1.0)
        self.notes.append("100 concurrent cold reads took %.0f ms in all (server held the "
                          "one fetch 300 ms)" % (r["elapsed_ns"] / 1e6))

    def metrics_and_rss(self, hot):
        mpath = hot.path("metrics")
        mn = 50 if self.quick else 200
        fill = 2000 if self.quick else FILL
        nets = ["fill-%05d" % i for i in range(fill)]
        log("3. metrics render: before and after %d networks; RSS after %d" % (METRICS_NETS, fill))

        def metrics_us():
            return self.readloop(mpath, mn)["ns_per_op"] / 1000.0

        self.readloop(mpath, 10)
        base, bs, bl = self.interleaved([metrics_us])[0]
        lst = os.path.join(self.root, "fill.list")
        with open(lst, "w") as f:
            f.write("".join(hot.key_path(x) + "\n" for x in nets[:METRICS_NETS]))
        r = self.run_prog([self.bin["readloop"], "-l", lst], timeout=300)
        first_cold = r["ns_per_op"] / 1000.0
        big, gs, gl = self.interleaved([metrics_us])[0]
        nseries = sum(1 for line in open(mpath) if line.startswith("omikuji_"))
        self.add("read `metrics` via mount, %d networks fetched" % METRICS_NETS, big, "us/op",
                 "same, 2 networks fetched", base, spread=(gs, gl), base_spread=(bs, bl))
        self.notes.append("metrics with %d networks: %d series lines; %d cold reads of distinct "
                          "networks averaged %.0f us" % (METRICS_NETS, nseries, METRICS_NETS,
                                                         first_cold))

        def render_us(k):
            return self.run_prog([self.bin["metrics_render"], "-k", str(k), "-n", str(mn)]
                                 )["ns_per_op"] / 1000.0
        (rv, rs, rl), (r1, r1s, r1l) = self.interleaved([lambda: render_us(METRICS_NETS),
                                                         lambda: render_us(1)])
        self.add("metrics_render() in process, %d networks" % METRICS_NETS, rv, "us/op",
                 "same, 1 network", r1, spread=(rs, rl), base_spread=(r1s, r1l))

        # RSS: the daemon itself, before and after caching the rest of the fill.
        pid = hot.proc.pid
        rss0 = vmrss_kb(pid)
        with open(lst, "w") as f:
            f.write("".join(hot.key_path(x) + "\n" for x in nets))
        self.run_prog([self.bin["readloop"], "-l", lst], timeout=300)
        rss1 = vmrss_kb(pid)
        size = keyfslib.metric(keyfslib.parse_metrics(open(mpath).read()),
                               "omikuji_key_cache_size", backend="vault")
        if size < fill:
            raise BenchError("cache holds %d entries, expected >= %d" % (size, fill))
        self.add("daemon VmRSS with %d cached keys" % int(size), rss1 / 1024.0, "MiB",
                 "same daemon with %d keys cached" % (METRICS_NETS + 2), rss0 / 1024.0)
        self.notes.append("RSS growth %.1f MiB for %d more cached keys = %.0f bytes per key" % (
            (rss1 - rss0) / 1024.0, int(size) - METRICS_NETS - 2,
            (rss1 - rss0) * 1024.0 / max(1, int(size) - METRICS_NETS - 2)))
        big2 = self.readloop(mpath, 20)["ns_per_op"] / 1000.0
        self.notes.append("read `metrics` with %d networks fetched: %.0f us" % (int(size), big2))

    def stale_lookup(self, m):
        """Wall time of one stat of keys/<HOT> once the kernel's entry (1 s)
        and the daemon's keys/ listing (list_cache_seconds, 5 s) expired:
        the lookup waits for a listing refresh.  (ms, Vault requests made)"""
        time.sleep(6.5)
        self.vault.reset_stats()
        t0 = time.monotonic()
        os.stat(m.key_path(HOT))
        ms = (time.monotonic() - t0) * 1000.0
        return ms, self.vault.stats()["requests"]

    def scale(self):
        """--only scale: getattr of key files (what `ls -l keys/` does per
        entry) in a mount that has seen N networks, N = 1 000 vs 10 000
        (the per-network mtime lookup must not grow with N); then one whole
        `ls -l keys/` of 10 000 keys from the listing cache, and a `stat`
        while the listing is stale."""
        small, big = (200, 2000) if self.quick else (1000, 10000)
        self.vault = vaultlib.VaultServer().start()
        nets = ["fill-%05d" % i for i in range(big)]
        env = {"VAULT_TOKEN": self.vault.root_token}
        ms = self.keyfs_mount("seen-small", self.vault_config(3600), env=env)
        mb = self.keyfs_mount("seen-big", self.vault_config(3600), env=env)
        # Written through the mount: a store (a change) is what gives a key
        # its own mtime, so each mount ends up with n networks in that table.
        for m, n in ((ms, small), (mb, big)):
            log("scale: writing %d keys through a mount" % n)
            t0 = time.monotonic()
            for x in nets[:n]:
                with open(m.key_path(x), "w") as f:
                    f.write(vaultlib.random_evm_key() + "\n")
            self.notes.append("%d keys written through the mount in %.1f s" % (
                n, time.monotonic() - t0))
        probe = nets[:small]

        def stat_us(m):
            time.sleep(1.1)              # the kernel's attr/entry timeouts (1 s)
            paths = [m.key_path(x) for x in probe]
            t0 = time.perf_counter()
            for p in paths:
                os.stat(p)
            return (time.perf_counter() - t0) * 1e6 / len(paths)
        (b, bs, bl), (a, as_, al) = self.interleaved([lambda: stat_us(mb), lambda: stat_us(ms)])
        self.add("stat keys/NET (getattr), mount has seen %d networks" % big, b, "us/op",
                 "same, mount has seen %d" % small, a, spread=(bs, bl), base_spread=(as_, al),
                 target=1.10)

        keys_dir = mb.path("keys")
        os.listdir(keys_dir)             # the first listing fills the listing cache

        def ls_l_ms():
            time.sleep(1.1)
            t0 = time.perf_counter()
            names = os.listdir(keys_dir)
            for x in names:
                os.stat(os.path.join(keys_dir, x))
            ms_ = (time.perf_counter() - t0) * 1e3
            if len(names) < big:
                raise BenchError("keys/ listed %d names, expected %d" % (len(names), big))
            return ms_

        def ls_ms():
            time.sleep(1.1)
            t0 = time.perf_counter()
            os.listdir(keys_dir)
            return (time.perf_counter() - t0) * 1e3
        (lv, ls_, ll), (dv, ds, dl) = self.interleaved([ls_l_ms, ls_ms])
        self.add("`ls -l keys/` (listdir + stat each), %d keys, listing cached" % big, lv, "ms",
                 spread=(ls_, ll))
        self.add("`ls keys/` (listdir), %d keys, listing cached" % big, dv, "ms",
                 spread=(ds, dl), ratio=dv / 50.0, target=1.0)
        self.notes.append("`ls keys/` target: <= 50 ms (ratio column = figure / 50 ms)")
        self.concurrent_many()

    def metrics_two_backends(self):
        """--only metrics: `metrics` through a mount whose two routed Vault
        instances carried get, store, remove and list traffic for 1 000
        networks (500 each), against the same mount before the traffic."""
        n = 200 if self.quick else 1000
        mn = 50 if self.quick else 200
        self.vault = vaultlib.VaultServer().start()
        nets_a = ["ma-%04d" % i for i in range(n // 2)]
        nets_b = ["mb-%04d" % i for i in range(n // 2)]
        self.vault.preload({PREFIX + "/" + x: {"private_key": vaultlib.random_evm_key()}
                            for x in nets_a})
        self.vault.preload({PREFIX + "2/" + x: {"private_key": vaultlib.random_evm_key()}
                            for x in nets_b})
        env = {"VAULT_TOKEN": self.vault.root_token}
        text = self.vault_config(3600) + """  backends:
    - name: vault2
      storage_type: vault
      vault:
        url: %s
        mount_path: %s
        path_prefix: %s2
        token: "${VAULT_TOKEN}"
        timeout_seconds: 5
        cache_ttl_seconds: 3600
      networks: ["mb-*"]
""" % (self.vault.url, KV_MOUNT, PREFIX)
        m = self.keyfs_mount("metrics2", text, env=env)
        mpath = m.path("metrics")

        def metrics_us():
            return self.readloop(mpath, mn)["ns_per_op"] / 1000.0
        self.readloop(mpath, 10)
        (base, bs, bl), = self.interleaved([metrics_us])
        log("metrics: get/store/remove/list traffic on 2 instances, %d networks" % n)
        os.listdir(m.path("keys"))
        lst = os.path.join(self.root, "metrics2.list")
        with open(lst, "w") as f:
            f.write("".join(m.key_path(x) + "\n" for x in nets_a + nets_b))
        r = self.run_prog([self.bin["readloop"], "-l", lst], timeout=600)
        if r["errors"] or r["bytes_min"] != 67:
            raise BenchError("metrics traffic: %r" % r)
        for x in nets_a[:10] + nets_b[:10]:
            m.write_key(x, vaultlib.random_evm_key() + "\n")
        for x in nets_a[-10:] + nets_b[-10:]:
            os.unlink(m.key_path(x))
        os.listdir(m.path("keys"))
        mt = keyfslib.parse_metrics(open(mpath).read())
        for b in ("vault", "vault2"):
            for op in ("get", "store", "remove", "list"):
                if keyfslib.metric(mt, "omikuji_key_operations_total", backend=b,
                                   operation=op, status="success") < 1:
                    raise BenchError("no %s traffic on %s" % (op, b))
        fresh = sum(1 for (name, _l) in mt if name == "omikuji_key_last_refresh_timestamp_seconds")
        if fresh < n - 20:
            raise BenchError("%d freshness series, expected about %d" % (fresh, n))
        (big, gs, gl), = self.interleaved([metrics_us])
        nlines = sum(1 for line in open(mpath) if line.startswith("omikuji_"))
        self.add("read `metrics` via mount, 2 instances x 4 operations, %d networks" % n, big,
                 "us/op", "same mount before the traffic", base, spread=(gs, gl),
                 base_spread=(bs, bl))
        self.add("same, against the 1 ms target", big, "us/op", ratio=big / 1000.0, target=1.0)
        self.notes.append("metrics after the traffic: %d sample lines, %d freshness series" % (
            nlines, fresh))
        self.stop_mount(m)

    # --- 100 000 keys: memory per cached key and the listing (issue 15) --------

    def write_file_store(self, path, names):
        """A file-backend store (backends/file.c layout, master key mode)
        holding a fresh key for every name, written directly: 100 000
        stores through the mount would each rewrite the whole file."""
        from Cryptodome.Cipher import AES
        import struct
        os.makedirs(os.path.dirname(path), exist_ok=True)
        master = os.urandom(32)
        fd = os.open(path + ".master", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, master)
        os.close(fd)
        parts = [struct.pack(">I", len(names))]
        for n in names:
            key = vaultlib.random_evm_key().encode()
            parts.append(struct.pack(">B", len(n)) + n.encode() + struct.pack(">I", len(key)) + key)
        plain = b"".join(parts)
        header = b"OMKKEYS1" + bytes([1, 1, 0, 0]) + bytes(8 + 4 + 4 + 16) + struct.pack(">Q", len(plain))
        nonce = os.urandom(12)
        c = AES.new(master, AES.MODE_GCM, nonce=nonce)
        c.update(header)
        ct, tag = c.encrypt_and_digest(plain)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, header + nonce + ct + tag)
        os.close(fd)

    def listing_figures(self, m, what, n):
        """`ls keys/` from the listing cache after a first listing, and a
        stat of one key file while the listing is stale."""
        keys_dir = m.path("keys")
        t0 = time.perf_counter()
        first = os.listdir(keys_dir)
        first_ms = (time.perf_counter() - t0) * 1e3
        if len(first) < n:
            raise BenchError("%s: keys/ listed %d names, expected %d" % (what, len(first), n))

        def ls_ms():
            time.sleep(1.1)          # the kernel's entry/attr timeouts
            t0 = time.perf_counter()
            names = os.listdir(keys_dir)
            ms_ = (time.perf_counter() - t0) * 1e3
            if len(names) < n:
                raise BenchError("%s: keys/ listed %d names" % (what, len(names)))
            return ms_
        (v, lo, hi), = self.interleaved([ls_ms])
        self.add("`ls keys/`, %d keys in %s, listing cached" % (n, what), v, "ms",
                 "first listing (from the backend)", first_ms, spread=(lo, hi),
                 ratio=v / 50.0, target=1.0)
        # keys/<net> while the listing is stale (list_cache_seconds 5 s).
        time.sleep(6.5)
        t0 = time.perf_counter()
        os.stat(os.path.join(keys_dir, first[len(first) // 2]))
        stale_ms = (time.perf_counter() - t0) * 1e3
        self.add("stat keys/NET while the listing of %d keys in %s is stale" % (n, what),
                 stale_ms, "ms", "`ls keys/` from the backend", first_ms)

    def listing_peak_vmlck(self, m, pid, n):
        """The peak VmLck while `ls keys/` of n keys is answered from the
        backend (the listing cache expired first): /proc/PID/status read
        every millisecond from before the listing until it returned, against
        VmLck just before it and the 8 MiB default RLIMIT_MEMLOCK."""
        def vmlck():
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith("VmLck:"):
                        return int(line.split()[1])
            return 0
        time.sleep(5.5)                  # list_cache_seconds: the next ls asks Vault
        before = vmlck()
        peak = [before, 0]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], vmlck())
                peak[1] += 1
                time.sleep(0.001)
        t = threading.Thread(target=sample)
        t.start()
        t0 = time.perf_counter()
        names = os.listdir(m.path("keys"))
        ms_ = (time.perf_counter() - t0) * 1e3
        stop.set()
        t.join()
        if len(names) < n:
            raise BenchError("peak VmLck: keys/ listed %d names, expected %d" % (len(names), n))
        self.add("VmLck peak during `ls keys/` of %d keys from Vault" % n, peak[0] / 1024.0,
                 "MiB", "VmLck before it", before / 1024.0, ratio=peak[0] / 1024.0 / 8.0,
                 target=1.0)
        self.notes.append("peak VmLck during the listing from Vault: %d kB (before %d kB), "
                          "%d samples over %.0f ms" % (peak[0], before, peak[1], ms_))

    def memory(self):
        """--only memory: VmRSS and VmLck of a Vault mount (TTL 3600) after
        reading 1 000, 10 000 and 100 000 distinct keys, preloaded into the
        test server step by step; bytes per cached key between the steps;
        then `ls keys/` of 100 000 keys (Vault, and a file store built
        directly)."""
        steps = (200, 2000, 20000) if self.quick else (1000, 10000, 100000)
        nets = ["m%06d" % i for i in range(steps[-1])]
        self.vault = vaultlib.VaultServer().start()
        env = {"VAULT_TOKEN": self.vault.root_token}
        m = self.keyfs_mount("mem", self.vault_config(3600).replace(
            "cache_max_entries: 20000", "cache_max_entries: 200000"), env=env)
        pid = m.proc.pid

        def status_kb(field):
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith(field + ":"):
                        return int(line.split()[1])
            return 0
        # The backend holds the keys cached so far (its listing, which the
        # mount keeps, grows with it): at each step the next keys are
        # preloaded, then read once each.  The first step is the start (it
        # includes the threads, the connections and the first pool chunks);
        # bytes per key are the growth from one step to the next.
        lst = os.path.join(self.root, "mem.list")
        rss = []
        done = 0
        t_fill = 0.0
        for n in steps:
            t0 = time.monotonic()
            for i in range(done, n, 5000):
                self.vault.preload({PREFIX + "/" + x: {"private_key": vaultlib.random_evm_key()}
                                    for x in nets[i:min(n, i + 5000)]})
            t_fill += time.monotonic() - t0
            time.sleep(5.5)              # list_cache_seconds: the new names get listed
            with open(lst, "w") as f:
                f.write("".join(m.key_path(x) + "\n" for x in nets[done:n]))
            t0 = time.monotonic()
            r = self.run_prog([self.bin["readloop"], "-l", lst], timeout=1800)
            if r["errors"] or r["bytes_min"] != 67 or r["bytes_max"] != 67:
                raise BenchError("memory fill: %r" % r)
            done = n
            rss.append((n, status_kb("VmRSS"), status_kb("VmLck")))
            log("memory: %d keys cached (%.0f s)" % (n, time.monotonic() - t0))
            self.notes.append("%d cached keys: %s" % (n, smaps_breakdown(pid)))
        self.notes.append("%d keys preloaded into the Vault test server in %.1f s" % (
            len(nets), t_fill))
        size = keyfslib.metric(keyfslib.parse_metrics(open(m.path("metrics")).read()),
                               "omikuji_key_cache_size", backend="vault")
        if size < steps[-1]:
            raise BenchError("cache holds %d entries, expected %d" % (size, steps[-1]))
        self.add("VmRSS with %d cached keys" % steps[0], rss[0][1] / 1024.0, "MiB")
        for (n0, r0, l0), (n1, r1, l1) in zip(rss, rss[1:]):
            per = (r1 - r0) * 1024.0 / (n1 - n0)
            self.add("VmRSS with %d cached keys" % n1, r1 / 1024.0, "MiB",
                     "with %d" % n0, r0 / 1024.0,
                     ratio=r1 / 1024.0 / 16.0 if n1 == steps[1] else None,
                     target=1.0 if n1 == steps[1] else None)
            # The secret itself: the 66-byte canonical key ("0x" + 64 hex).
            self.add("bytes per cached key beyond the 66-byte key, %d -> %d keys" % (n0, n1),
                     per - 66, "B", ratio=(per - 66) / 120.0, target=1.0)
            self.add("VmLck (locked) with %d cached keys" % n1, l1 / 1024.0, "MiB",
                     "with %d" % n0, l0 / 1024.0,
                     ratio=l1 / 1024.0 / 8.0 if n1 == steps[-1] else None,
                     target=1.0 if n1 == steps[-1] else None)
        self.listing_peak_vmlck(m, pid, len(nets))
        self.listing_figures(m, "Vault", len(nets))
        self.stop_mount(m)

        log("memory: a file store of %d keys, written directly" % len(nets))
        root = os.path.join(self.root, "bigfile")
        t0 = time.monotonic()
        self.write_file_store(os.path.join(root, "store", "keys.enc"), nets)
        self.notes.append("file store of %d keys written in %.1f s" % (
            len(nets), time.monotonic() - t0))
        mf = self.keyfs_mount("bigfile-mnt", """
key_storage:
  storage_type: file
  file:
    path: %s/store/keys.enc
""" % root + MOUNT_TAIL)
        self.listing_figures(mf, "a file store", len(nets))
        with open(mf.key_path(nets[-1])) as f:
            if len(f.read()) != 67:
                raise BenchError("file store: a key read back with the wrong size")
        self.stop_mount(mf)

    def concurrent_many(self, readers=1000, keys=100, delay=0.05):
        """`readers` threads released at once over `keys` never-read networks,
        each backend GET held `delay` s: exactly `keys` GETs, and the slowest
        reader within 2 backend latencies + 20 ms.  Run with
        max_calls_in_flight 128 (room for the 100 fetches), then with the
        default 16, where the fetches past the bound fail at once (EIO, as
        documented) and are counted."""
        if self.quick:
            readers = 200
        env = {"VAULT_TOKEN": self.vault.root_token}
        budget_ms = 2 * delay * 1000 + 20
        # The same-run baseline without the mount: the same slowed server
        # answering direct GETs released at once, `readers` of them over the
        # `keys` paths (each its own connection), and one per key (the
        # backend traffic the mount should make).
        base = ["concbase-%03d" % i for i in range(keys)]
        self.kv_put_many(base)
        ulist = os.path.join(self.root, "conc-urls.list")
        with open(ulist, "w") as f:
            f.write("".join(self.vault.url + self.data_route(x) + "\n" for x in base))
        for t in (readers, keys):
            log("scale: %d direct GETs released at once over %d keys, held %.0f ms" % (
                t, keys, delay * 1000))
            self.vault.reset_stats()
            self.vault.fault("slow", count=-1, delay=delay,
                             path_prefix="/v1/%s/data/%s/concbase-" % (KV_MOUNT, PREFIX))
            try:
                r = self.barrier_run([self.bin["curlget"], "-b", "-t", str(t), "-l", ulist],
                                     env=dict(os.environ, VAULT_TOKEN=self.vault.root_token))
            finally:
                self.vault.clear_fault()
            self.conc_row("%d direct GETs over %d keys, no mount (%d failed)" % (
                t, keys, r["errors"]), r, budget_ms)
        # The floor of the harness: the same readers released at once on
        # floorfs (a minimal FUSE filesystem, no backend).
        floor = self.floor[1] if self.floor else self.start_floor()
        flist = os.path.join(self.root, "conc-floor.list")
        with open(flist, "w") as f:
            f.write("".join(os.path.join(floor, "keys", x) + "\n" for x in base))
        r = self.barrier_readers(readers, flist)
        self.conc_row("%d readers of %d names on floorfs (no backend)" % (readers, keys), r,
                      budget_ms)
        for bound in (128, 16):
            nets = ["conc%d-%03d" % (bound, i) for i in range(keys)]
            self.kv_put_many(nets)
            m = self.keyfs_mount("conc-%d" % bound, self.vault_config(3600) +
                                 "  max_calls_in_flight: %d\n" % bound, env=env)
            lst = os.path.join(self.root, "conc-%d.list" % bound)
            with open(lst, "w") as f:
                f.write("".join(m.key_path(x) + "\n" for x in nets))
            os.listdir(m.path("keys"))   # listing cached: lookups do not wait on it
            log("scale: %d concurrent readers of %d uncached keys, GETs held %.0f ms, "
                "max_calls_in_flight %d" % (readers, keys, delay * 1000, bound))
            self.vault.reset_stats()
            self.vault.fault("slow", count=-1, delay=delay,
                             path_prefix="/v1/%s/data/%s/conc%d-" % (KV_MOUNT, PREFIX, bound))
            probe = BurstProbe(m.proc.pid, self.vault.proc.pid)
            try:
                r = self.barrier_readers(readers, lst)
            finally:
                self.vault.clear_fault()
                used = probe.done()
            calls = sum(self.vault.route_count("GET", self.data_route(x)) for x in nets)
            what = "%d readers of %d uncached keys, max_calls_in_flight %d" % (
                readers, keys, bound)
            self.add("backend GETs, " + what, calls, "calls", None, None,
                     ratio=calls / float(keys), target=1.0 if bound >= keys else None)
            self.add("failed reads, " + what, r["errors"], "reads", None, None)
            self.conc_row("%s (budget 2 x %.0f ms + 20 ms)" % (what, delay * 1000), r,
                          budget_ms)
            self.notes.append("%s: %s" % (what, used))
            # The same readers again, every key now cached: what is left is
            # FUSE and the 1 000 threads, not the backend.
            probe = BurstProbe(m.proc.pid, self.vault.proc.pid)
            r = self.barrier_readers(readers, lst)
            used = probe.done()
            what = "%d readers of the same %d keys, now cached, max_calls_in_flight %d" % (
                readers, keys, bound)
            self.conc_row(what, r, budget_ms)
            self.notes.append("%s: %s" % (what, used))
            pid = m.proc.pid
            self.notes.append("after the bursts (max_calls_in_flight %d): daemon VmRSS %.1f MiB, "
                              "%d threads" % (bound, vmrss_kb(pid) / 1024.0,
                                              len(os.listdir("/proc/%d/task" % pid))))
            self.stop_mount(m)

    def run_cold_only(self):
        """--only cold (issue 15 goal 1): the uncached Vault and AWS reads
        against floorfs + the bare request, with the breakdown."""
        self.vault = vaultlib.VaultServer().start()
        self.kv_put_many([COLD])
        cold = self.keyfs_mount("cold", self.vault_config(0),
                                env={"VAULT_TOKEN": self.vault.root_token})
        floor_mnt = self.start_floor()
        n = 300 if self.quick else 1000
        self.vault_cold(cold, n, floor_mnt)
        self.aws_cold(n, floor_mnt)

    def run_cached_only(self):
        """--only cached (issue 15 goal 2): a cached Vault read through the
        mount (audit on) against floorfs, interleaved, target <= 1.10x."""
        self.vault = vaultlib.VaultServer().start()
        self.kv_put_many([HOT])
        hot = self.keyfs_mount("hot", self.vault_config(3600),
                               env={"VAULT_TOKEN": self.vault.root_token})
        floor_mnt = self.start_floor()
        n = 2000 if self.quick else 10000
        hp, fp = hot.key_path(HOT), os.path.join(floor_mnt, "keys", HOT)
        for p in (hp, fp):
            self.readloop(p, 200)
        log("cached read vs floorfs, %d x %d, load average %.1f" % (
            self.reps, n, os.getloadavg()[0]))
        (hv, hs, hl), (fv, fs, fl) = self.interleaved([
            lambda: self.readloop_us(hp, n, 67),
            lambda: self.readloop_us(fp, n, 67)])
        self.add("cached vault read via mount (TTL 3600, audit on)", hv, "us/op",
                 "floorfs: minimal libfuse3 fs, same options", fv, target=1.10,
                 spread=(hs, hl), base_spread=(fs, fl))
        self.notes.append("cached: load average %.1f at the end" % os.getloadavg()[0])

    def run_audit_only(self):
        """--only audit (issue 15 goal 2, audit part): a cached read with the
        audit log on vs --no-audit, interleaved, target <= 1.05x."""
        self.vault = vaultlib.VaultServer().start()
        self.kv_put_many([HOT])
        env = {"VAULT_TOKEN": self.vault.root_token}
        hot = self.keyfs_mount("hot", self.vault_config(3600), env=env)
        noaudit = self.keyfs_mount("noaudit", self.vault_config(3600), extra_args=["--no-audit"],
                                   env=env)
        n = 2000 if self.quick else 10000
        hp, np_ = hot.key_path(HOT), noaudit.key_path(HOT)
        for p in (hp, np_):
            self.readloop(p, 200)
        log("audit: cached read, audit on vs --no-audit, %d x %d" % (self.reps, n))
        hprobe, nprobe = SchedProbe([hot.proc.pid], n), SchedProbe([noaudit.proc.pid], n)
        (hv, hs, hl), (nv, ns, nl) = self.interleaved([
            hprobe.wrap(lambda: self.readloop_us(hp, n, 67)),
            nprobe.wrap(lambda: self.readloop_us(np_, n, 67))])
        (hc, hw, hr), (nc, nw, nr) = hprobe.medians(), nprobe.medians()
        # CPU time is what the audit line adds; wall time on a loaded
        # machine is mostly the wait for a CPU (both columns below).
        self.add("daemon CPU per cached read, audit on", hc, "us/op", "same, --no-audit", nc)
        self.notes.append("audit on: daemon CPU %.1f us/read, waited %.1f us for a CPU; readloop "
                          "CPU %.1f | --no-audit: daemon CPU %.1f, waited %.1f; readloop CPU %.1f "
                          "| the audit's CPU per line %.1f us = %.1f %% of the --no-audit wall "
                          "time" % (hc, hw, hr, nc, nw, nr, hc - nc, 100.0 * (hc - nc) / nv))
        lines = sum(1 for r in hot.audit_lines() if r.get("network") == HOT)
        if lines != 200 + self.reps * n:
            raise BenchError("audit mount wrote %d lines for %d reads" % (lines, 200 + self.reps * n))
        self.add("cached read, audit on", hv, "us/op", "same, --no-audit", nv, target=1.05,
                 spread=(hs, hl), base_spread=(ns, nl))
        self.notes.append("audit: %d lines for as many reads; load average %.1f" % (
            lines, os.getloadavg()[0]))

    def barrier_run(self, argv, env=None):
        """A readloop/curlget -b run; its result line (exit 1 = some failed)."""
        p = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env,
                           stdin=subprocess.DEVNULL)
        if p.returncode not in (0, 1) or not p.stdout.strip():
            raise BenchError("%s failed (%d): %s" % (os.path.basename(argv[0]), p.returncode,
                                                     p.stderr[:300]))
        return parse_kv(p.stdout.strip().splitlines()[-1])

    def barrier_readers(self, readers, lst):
        return self.barrier_run([self.bin["readloop"], "-b", "-t", str(readers), "-l", lst])

    def conc_row(self, what, r, budget_ms):
        self.add("slowest reader, " + what, r["lat_max_ns"] / 1e6, "ms",
                 ratio=r["lat_max_ns"] / 1e6 / budget_ms, target=1.0)
        self.notes.append("%s: reader latency ms min %.1f p50 %.1f p90 %.1f p99 %.1f max %.1f" % (
            tuple([what] + [r[k] / 1e6 for k in ("lat_min_ns", "lat_p50_ns", "lat_p90_ns",
                                                  "lat_p99_ns", "lat_max_ns")])))

    def run_routing_only(self):
        """--only routing: the Vault server, one key_storage-only mount and the
        routing comparison, nothing else."""
        self.vault = vaultlib.VaultServer().start()
        self.kv_put_many([HOT])
        hot = self.keyfs_mount("hot", self.vault_config(3600),
                               env={"VAULT_TOKEN": self.vault.root_token})
        self.routing(hot, 2000 if self.quick else 10000)

    def report(self):
        """`report` over a generated, chained audit log of report_lines lines:
        lines per second against `audit verify` of the same file (the chain
        check the report runs first), peak RSS of both, and the report's peak
        RSS on a tenth of the lines (constant memory: the ratio stays ~1)."""
        n = self.report_lines
        log("report: generating a %d-line audit log" % n)
        path = os.path.join(self.root, "report-audit.log")
        small = os.path.join(self.root, "report-audit-small.log")
        end = time.time()
        t0 = time.monotonic()
        for p, lines in ((path, n), (small, max(1, n // 10))):
            subprocess.run([self.bin["gen_audit"], "-n", str(lines), "-d", "60", "-e", "%.0f" % end,
                            p], check=True, timeout=1800)
        self.notes.append("report: generated %d audit lines (%.0f MB) in %.0f s" % (
            n, os.path.getsize(path) / 1e6, time.monotonic() - t0))
        until = datetime.datetime.fromtimestamp(end + 1, datetime.timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%SZ")

        def timed(argv):
            t = time.monotonic()
            p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                 stdin=subprocess.DEVNULL)
            _, status, ru = os.wait4(p.pid, 0)
            p.returncode = os.waitstatus_to_exitcode(status)
            err = p.stderr.read().decode()
            p.stderr.close()
            if p.returncode != 0:
                raise BenchError("%s failed (%d): %s" % (argv[1:3], p.returncode, err[:300]))
            return time.monotonic() - t, ru.ru_maxrss / 1024.0, ru.ru_utime + ru.ru_stime

        out = os.path.join(self.root, "report.json")
        report = [self.keyfs_bin, "report", "monthly", "--audit-log", path, "--until", until,
                  "--format", "json", "-o", out]
        verify = [self.keyfs_bin, "audit", "verify", path]
        reps = 1 if n >= 5000000 else min(self.reps, 3)
        log("report: %d x (report, audit verify) over %d lines" % (reps, n))
        rt = [], []
        for _ in range(reps):      # interleaved: drift hits both alike
            rt[0].append(timed(report))
            rt[1].append(timed(verify))
        r_s = statistics.median(x[0] for x in rt[0])
        v_s = statistics.median(x[0] for x in rt[1])
        r_cpu = statistics.median(x[2] for x in rt[0])
        v_cpu = statistics.median(x[2] for x in rt[1])
        r_rss = max(x[1] for x in rt[0])
        v_rss = max(x[1] for x in rt[1])
        with open(out) as f:
            doc = json.load(f)
        if doc["chain"]["lines"] != n or not doc["chain"]["verified"]:
            raise BenchError("report read %r" % doc["chain"])
        small_s, small_rss, _ = timed([self.keyfs_bin, "report", "monthly", "--audit-log", small,
                                    "--until", until, "--format", "json", "-o", out])
        # CPU time is the figure that a shared machine does not distort;
        # wall time is in the notes.
        self.add("report monthly: audit lines per CPU second (%d lines)" % n, n / r_cpu,
                 "lines/s", "audit verify, same file", n / v_cpu, lower_is_better=False)
        self.add("report monthly: peak RSS (%d lines)" % n, r_rss, "MiB",
                 "same report on %d lines" % max(1, n // 10), small_rss)
        self.add("audit verify: peak RSS (%d lines)" % n, v_rss, "MiB")
        self.notes.append("report over %d lines: %.1f s wall, %.1f s CPU (median of %d; %.0f "
                          "lines/s wall); audit verify %.1f s wall, %.1f s CPU; report on %d "
                          "lines %.1f s wall" % (n, r_s, r_cpu, reps, n / r_s, v_s, v_cpu,
                                                 max(1, n // 10), small_s))

    def run(self):
        if self.report_only:
            self.report()
            return
        if self.only == "routing":
            return self.run_routing_only()
        if self.only == "keyring":
            return self.keyring_cold(100 if self.quick else 500)
        if self.only == "scale":
            return self.scale()
        if self.only == "cold":
            return self.run_cold_only()
        if self.only == "audit":
            return self.run_audit_only()
        if self.only == "cached":
            return self.run_cached_only()
        if self.only == "memory":
            return self.memory()
        if self.only == "metrics":
            return self.metrics_two_backends()
        if self.only == "concurrent":
            self.vault = vaultlib.VaultServer().start()
            return self.concurrent_many()
        self.foundation()
        self.vault = vaultlib.VaultServer().start()
        # Only the three bench keys at first: with thousands of keys every
        # listing refresh of the vault backend costs one request per key
        # (measured separately below, after the fill).
        self.kv_put_many([HOT, COLD, CONC])
        env = {"VAULT_TOKEN": self.vault.root_token}
        cold = self.keyfs_mount("cold", self.vault_config(0), env=env)
        hot = self.keyfs_mount("hot", self.vault_config(3600), env=env)
        noaudit = self.keyfs_mount("noaudit", self.vault_config(3600), extra_args=["--no-audit"],
                                   env=env)
        floor_mnt = self.start_floor()
        cold_us = self.vault_cold(cold, 300 if self.quick else 1000, floor_mnt)
        self.aws_cold(300 if self.quick else 1000, floor_mnt)
        self.cached(hot, noaudit, floor_mnt, 2000 if self.quick else 10000, cold_us)
        self.routing(hot, 2000 if self.quick else 10000)
        self.addresses(hot, 2000 if self.quick else 10000)
        self.concurrent(hot)
        small_ms, small_req = self.stale_lookup(noaudit)
        fill = ["fill-%05d" % i for i in range(2000 if self.quick else FILL)]
        log("writing %d more keys to the Vault test server" % len(fill))
        t0 = time.monotonic()
        self.kv_put_many(fill)
        self.notes.append("%d keys written to the Vault test server in %.1f s" % (
            len(fill), time.monotonic() - t0))
        self.metrics_and_rss(hot)
        log("stat of a key file once the keys/ listing is stale, before and after the fill")
        big_ms, big_req = self.stale_lookup(noaudit)
        self.add("stat keys/NET when the listing is stale, Vault holds %d keys" % (
            len(fill) + 3), big_ms, "ms", "same, Vault holds 3 keys", small_ms)
        self.notes.append("that stat made %d Vault requests with %d keys, %d with 3 keys" % (
            big_req, len(fill) + 3, small_req))
        self.keyring_cold(100 if self.quick else 500)
        self.report()

    # --- output -----------------------------------------------------------------

    def table(self):
        head = ["measurement", "figure", "baseline (same run)", "baseline", "ratio", "target"]
        out = []
        for r in self.rows:
            unit = r["unit"]
            fig = fmt(r["value"], unit)
            if r["spread"]:
                fig += " (%s-%s)" % (fmt_num(r["spread"][0]), fmt_num(r["spread"][1]))
            base = ""
            if r["base_value"] is not None:
                base = fmt(r["base_value"], unit)
                if r["base_spread"]:
                    base += " (%s-%s)" % (fmt_num(r["base_spread"][0]), fmt_num(r["base_spread"][1]))
            ratio = "" if r["ratio"] is None else ("%.2fx" % r["ratio"] if r["base_value"] else "")
            target = ""
            if r["target"] is not None:
                target = "%s %s%s" % ("<=" if r["lower"] else ">=",
                                      ("%.2fx" % r["target"]) if r["base_value"] else
                                      ("%g" % r["target"]), " " + r["verdict"])
            out.append([r["what"], fig, r["base_what"] or "", base, ratio, target])
        return head, out


def fmt_num(v):
    return "%.1f" % v if v < 1000 else "%.0f" % v


def fmt(v, unit):
    if unit == "us/op":
        return "%s us" % fmt_num(v)
    if unit == "ns/op":
        return "%.1f ns" % v
    if unit == "x":
        return "%.1fx" % v
    if unit == "ms":
        return "%.1f ms" % v
    if unit == "MiB":
        return "%.1f MiB" % v
    if unit == "calls":
        return "%d" % v
    if unit == "bytes":
        return "%.0f B" % v
    if unit == "lines/s":
        return "%.0f lines/s" % v
    return "%g" % v


def cpu_seconds(pid):
    """User + system CPU time of a process (all its threads) so far."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / float(os.sysconf("SC_CLK_TCK"))


class BurstProbe:
    """Around one burst of readers: the CPU time the daemon, the Vault test
    server and the readers (children of this script) spent, and the most
    threads the daemon had (its FUSE workers), sampled every millisecond."""

    def __init__(self, daemon_pid, server_pid):
        self.pids = (daemon_pid, server_pid)
        self.peak = 0
        self.stop = threading.Event()
        self.cpu0 = [cpu_seconds(p) for p in self.pids]
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.children0 = ru.ru_utime + ru.ru_stime
        self.thread = threading.Thread(target=self.sample)
        self.thread.start()

    def sample(self):
        path = "/proc/%d/task" % self.pids[0]
        while not self.stop.is_set():
            try:
                self.peak = max(self.peak, len(os.listdir(path)))
            except OSError:
                return
            time.sleep(0.001)

    def done(self):
        self.stop.set()
        self.thread.join()
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = [cpu_seconds(p) - c for p, c in zip(self.pids, self.cpu0)]
        return ("daemon CPU %.0f ms, Vault test server CPU %.0f ms, readers CPU %.0f ms; "
                "daemon threads at most %d" % (cpu[0] * 1000, cpu[1] * 1000,
                                              (ru.ru_utime + ru.ru_stime - self.children0) * 1000,
                                              self.peak))


def vmrss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise BenchError("no VmRSS for pid %d" % pid)


def machine():
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return "%s, nproc %d, kernel %s" % (model, os.cpu_count(), os.uname().release)


def print_plain(head, rows):
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    for row in [head] + rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())


def print_markdown(head, rows):
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for row in rows:
        print("| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", required=True, help="meson build directory")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    ap.add_argument("--reps", type=int, default=5, help="repetitions per figure (median)")
    ap.add_argument("--nice", type=int, default=10,
                    help="raise this run's priority by N (children inherit it; 0 = no change)")
    ap.add_argument("--quick", action="store_true", help="smaller loops (smoke test)")
    ap.add_argument("--only", choices=["routing", "scale", "keyring", "memory", "concurrent",
                                       "metrics", "cold", "audit", "cached"],
                    help="run one comparison only")
    ap.add_argument("--report-lines", type=int, default=None,
                    help="audit lines for the report benchmark (default 10 M, 1 M with --quick)")
    ap.add_argument("--report-only", action="store_true",
                    help="run only the report benchmark")
    args = ap.parse_args()

    if os.geteuid() != 0 or not os.path.exists("/dev/fuse") or not shutil.which("fusermount3"):
        print("SKIP: needs root, /dev/fuse and fusermount3")
        return 77
    b = Bench(args.build, max(1, args.reps), args.quick, args.only)
    b.report_lines = args.report_lines or (1000000 if args.quick else 10000000)
    b.report_only = args.report_only
    for p in list(b.bin.values()) + [b.keyfs_bin]:
        if not os.access(p, os.X_OK):
            print("missing %s: run meson compile -C %s" % (p, args.build), file=sys.stderr)
            return 1
    keyfslib.KEYFS_BIN = b.keyfs_bin
    # Other work on a small machine (builds, test suites) adds scheduling
    # noise to every FUSE round trip; a higher priority for this run and
    # everything it starts (inherited) keeps the comparisons steadier.
    # Both sides of every ratio run at the same priority.
    try:
        os.nice(-args.nice)
    except OSError:
        pass
    started = time.monotonic()
    code = 0
    try:
        b.run()
    except (BenchError, AssertionError, RuntimeError, OSError, subprocess.SubprocessError) as e:
        print("benchmark failed: %s" % e, file=sys.stderr)
        code = 1
    finally:
        if not b.cleanup():
            code = 1
    elapsed = time.monotonic() - started
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    head, rows = b.table()
    if args.markdown:
        print("Measured %s on %s; build %s; median of %d repetitions (min-max in "
              "parentheses); run took %.0f s.\n" % (when, machine(), os.path.basename(b.build),
                                                    b.reps, elapsed))
        print_markdown(head, rows)
        if b.notes:
            print()
            for n in b.notes:
                print("- " + n)
    else:
        print("omikuji-keyfs benchmarks, %s, %s, %d reps, %.0f s" % (when, machine(), b.reps,
                                                                   elapsed))
        print_plain(head, rows)
        for n in b.notes:
            print("  - " + n)
    return code


if __name__ == "__main__":
    sys.exit(main())
