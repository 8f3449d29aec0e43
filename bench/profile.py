#!/usr/bin/python3
"""Profiles of the cached and the cold (uncached) read paths, Vault and AWS.

    sudo /usr/bin/python3 bench/profile.py --build build-bench

One command regenerates every file it writes under bench/ (--out):

  profile-summary.txt     per path: callgrind instructions per read of the
                          daemon next to the same-run baselines (floorfs per
                          read, a bare libcurl request per request), their
                          ratio, and where the daemon's instructions go
  profile-cold.txt        Vault, cache_ttl_seconds 0: every read is one GET
  profile-cached.txt      Vault, cache_ttl_seconds 3600
  profile-aws-cold.txt    aws-secrets, TTL 0: every read is one GetSecretValue
  profile-aws-cached.txt  aws-secrets, TTL 3600

Each path file has the instructions per read (callgrind, counted only while
the read loop runs), the system calls per read (strace -f -c of the daemon,
not under valgrind; for cold paths beside a bare libcurl loop of the same
request), and the functions that cost the most, inclusive and exclusive.
Instruction counts do not depend on the machine's load, which makes them the
figures to compare between commits; they are not wall time (valgrind runs
OpenSSL without its SHA extensions, and system calls cost no instructions).

Needs root, /dev/fuse, valgrind and strace; stdlib only.  Every process it
starts is stopped by pid and every mount unmounted in a finally.
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

SOURCE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(SOURCE, "tests", "servers"))
sys.path.insert(0, os.path.join(SOURCE, "tests", "integration"))
import awslib  # noqa: E402
import vaultlib  # noqa: E402
import keyfslib  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as benchrun  # noqa: E402  (bench/run.py: floorfs start and stop)

KV_MOUNT = "secret"
PREFIX = "omikuji/keys"
TAIL = """logging:
  format: json
  level: info
  targets:
    - type: file
      path: {root}/app.log
keyfs:
  audit_log: {root}/audit.log
  health_interval_seconds: 3600
"""
VAULT = """
key_storage:
  storage_type: vault
  vault:
    url: %(url)s
    mount_path: %(mount)s
    path_prefix: %(prefix)s
    token: "${VAULT_TOKEN}"
    timeout_seconds: 30
    cache_ttl_seconds: %(ttl)d
""" + TAIL
AWS = """
key_storage:
  storage_type: aws-secrets
  aws_secrets:
    region: %(region)s
    prefix: omikuji
    endpoint_url: %(url)s
    timeout_seconds: 30
    cache_ttl_seconds: %(ttl)d
""" + TAIL

# What the summary breaks a read into: inclusive instructions per read of
# these functions (where present).  Nested rows are part of the row above.
PARTS = [
    ("ll_open", "open: keyfs's FUSE open handler (all of the key work)"),
    ("keyops_get_park", "  keyops_get_park: access, cache, fetch, audit"),
    ("cache_get_or_park", "    cache_get_or_park (a miss includes the backend fetch)"),
    ("vault_get", "      vault_get: the backend's get"),
    ("aws_get", "      aws_get: the backend's get"),
    ("http_perform", "        http_perform: one request"),
    ("curl_easy_perform", "          curl_easy_perform (libcurl)"),
    ("http_wipe_free", "          http_wipe_free: wiping every block libcurl frees"),
    ("json_pick", "        json_pick: the answer's JSON"),
    ("seen_note", "    seen_note: key-change fingerprint (HMAC-SHA256)"),
    ("address_book_note", "    address_book_note: addresses/ version check (the HMAC digest)"),
    ("address_book_note_digest", "    address_book_note_digest: the same, with keys/'s digest"),
    ("audit_write", "    audit_write: the audit line"),
    ("audit_link_hex", "      audit_link_hex: its SHA-256 link"),
    ("ll_read", "read: keyfs's FUSE read handler"),
    ("ll_release", "release: keyfs's FUSE release handler"),
]


def run(argv, env=None, timeout=600):
    p = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        raise SystemExit("%s failed (%d): %s" % (argv[0], p.returncode, p.stderr[-500:]))
    return p.stdout


def readloop(build, path, n):
    out = run([os.path.join(build, "bench", "readloop"), "-n", str(n), path])
    if "bytes_min=67" not in out or "bytes_max=67" not in out:
        raise SystemExit("readloop: unexpected bytes: %s" % out)


class Ctx:
    def __init__(self, build, tmp, n):
        self.build, self.tmp, self.n = build, tmp, n
        self.vault = self.aws = None
        self.mounts = []
        self.floor = None

    def config(self, backend, ttl):
        if backend == "vault":
            return VAULT % dict(url=self.vault.url, mount=KV_MOUNT, prefix=PREFIX, ttl=ttl)
        return AWS % dict(region=self.aws.region, url=self.aws.url, ttl=ttl)

    def env(self, backend):
        if backend == "vault":
            return {"VAULT_TOKEN": self.vault.root_token}
        return {"AWS_ACCESS_KEY_ID": self.aws.access_key,
                "AWS_SECRET_ACCESS_KEY": self.aws.secret_key,
                "AWS_EC2_METADATA_DISABLED": "true"}

    def mount(self, name, backend, ttl, wrapper=None):
        root = os.path.join(self.tmp, name)
        os.makedirs(root)
        saved = keyfslib.KEYFS_BIN
        if wrapper:
            keyfslib.KEYFS_BIN = wrapper
        try:
            m = keyfslib.Mount(config_text=self.config(backend, ttl).replace("{root}", root),
                               root=root, env=self.env(backend))
            self.mounts.append(m)
            m.start(timeout=120)
        finally:
            keyfslib.KEYFS_BIN = saved
        return m

    def unmount(self, m):
        self.mounts.remove(m)
        m.stop()

    def curl_argv(self, backend, n):
        curlget = os.path.join(self.build, "bench", "curlget")
        if backend == "vault":
            url = self.vault.url + "/v1/%s/data/%s/prof-cold" % (KV_MOUNT, PREFIX)
            return [curlget, "-n", str(n), url]
        return [curlget, "-n", str(n), "-a", self.aws.region, "-s", "omikuji/prof-cold",
                self.aws.url]

    def curl_env(self, backend):
        return dict(os.environ, **self.env(backend))

    def cleanup(self):
        for m in list(self.mounts):
            try:
                m.stop()
            except Exception as e:   # keep stopping the others
                print("stopping a mount: %s" % e, file=sys.stderr)
        self.mounts = []
        self.stop_floor()
        for s in (self.vault, self.aws):
            if s:
                s.cleanup()

    def start_floor(self, wrapper_argv=()):
        mnt = os.path.join(self.tmp, "floor-%d" % time.monotonic_ns())
        self.floor = benchrun.start_floorfs(os.path.join(self.build, "bench", "floorfs"), mnt,
                                            os.path.join(self.tmp, "floorfs.stderr"),
                                            wrapper_argv, timeout=120)
        return self.floor

    def stop_floor(self):
        if self.floor:
            floor, self.floor = self.floor, None
            benchrun.stop_floorfs(*floor, timeout=60)


def strace_counts(pid_or_argv, work, out):
    """strace -f -c of a running pid (while work() runs) or of a command
    (work is then its environment); {syscall: calls}."""
    if isinstance(pid_or_argv, int):
        p = subprocess.Popen(["strace", "-f", "-c", "-o", out, "-p", str(pid_or_argv)],
                             stderr=subprocess.DEVNULL)
        time.sleep(1.0)    # attached to every thread
        try:
            work()
        finally:
            p.send_signal(signal.SIGINT)
            p.wait(timeout=30)
    else:
        run(["strace", "-f", "-c", "-o", out, *pid_or_argv], env=work)
    counts = {}
    for line in open(out):
        f = line.split()
        if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
            counts[f[-1]] = int(f[3])
    return counts


def annotate(out):
    """(total, inclusive text, exclusive text, {function: inclusive Ir})."""
    inc = run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", out])
    exc = run(["callgrind_annotate", "--threshold=95", out])
    mt = re.search(r"([\d,]+) \(100\.0%\) +PROGRAM TOTALS", inc)
    if not mt:
        raise SystemExit("callgrind_annotate: no totals:\n" + inc[:3000])
    funcs = {}
    for line in inc.splitlines():
        m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+\S*?:([^\s:]+)(?: \[|$)", line)
        if m:
            name = m.group(2)
            ir = int(m.group(1).replace(",", ""))
            funcs[name] = max(ir, funcs.get(name, 0))
    return int(mt.group(1).replace(",", "")), inc, exc, funcs


def callgrind_daemon(ctx, backend, ttl, net):
    """The daemon under callgrind, instructions counted only during the
    read loop: (Ir per read, inclusive, exclusive, functions)."""
    out = os.path.join(ctx.tmp, "callgrind.%s.%d.out" % (backend, ttl))
    wrapper = os.path.join(ctx.tmp, "keyfs-under-callgrind")
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\nexec valgrind --tool=callgrind --instr-atstart=no "
                "--callgrind-out-file=\"$KEYFS_CALLGRIND_OUT\" %s \"$@\"\n"
                % os.path.join(ctx.build, "omikuji-keyfs"))
    os.chmod(wrapper, 0o755)
    os.environ["KEYFS_CALLGRIND_OUT"] = out
    m = ctx.mount("cg-%s-%d" % (backend, ttl), backend, ttl, wrapper)
    try:
        path = m.key_path(net)
        readloop(ctx.build, path, 20)                    # lookups and pool warm
        run(["callgrind_control", "-i", "on", str(m.proc.pid)])
        readloop(ctx.build, path, ctx.n)
        run(["callgrind_control", "-i", "off", str(m.proc.pid)])
    finally:
        ctx.unmount(m)
    total, inc, exc, funcs = annotate(out)
    return total / ctx.n, inc, exc, {k: v / ctx.n for k, v in funcs.items()}


def callgrind_floor(ctx):
    """floorfs (the least a FUSE filesystem does) per read, same loop."""
    out = os.path.join(ctx.tmp, "callgrind.floor.out")
    proc, mnt = ctx.start_floor(["valgrind", "--tool=callgrind", "--instr-atstart=no",
                                 "--callgrind-out-file=" + out])
    try:
        path = os.path.join(mnt, "keys", "prof-hot")
        readloop(ctx.build, path, 20)
        run(["callgrind_control", "-i", "on", str(proc.pid)])
        readloop(ctx.build, path, ctx.n)
        run(["callgrind_control", "-i", "off", str(proc.pid)])
    finally:
        ctx.stop_floor()
    return annotate(out)[0] / ctx.n


def callgrind_curl(ctx, backend):
    """One bare libcurl request (curlget, reused handle), instructions inside
    curl_easy_perform: the difference of a 20- and a (20 + n)-request run,
    so connecting and start-up cancel out."""
    irs = []
    for n in (20, 20 + ctx.n):
        out = os.path.join(ctx.tmp, "callgrind.curl.%s.%d.out" % (backend, n))
        run(["valgrind", "--tool=callgrind", "--toggle-collect=curl_easy_perform",
             "--callgrind-out-file=" + out, *ctx.curl_argv(backend, n)], env=ctx.curl_env(backend))
        irs.append(annotate(out)[0])
    return (irs[1] - irs[0]) / ctx.n


def top(text, k):
    lines = [l for l in text.splitlines() if re.match(r"\s*[\d,]+ \(", l) and "PROGRAM" not in l]
    return "\n".join(l[:150] for l in lines[:k])


def write_path(outdir, fname, title, n, net, ir, sysc, curl_sys, inc, exc):
    with open(os.path.join(outdir, fname), "w") as f:
        f.write("# %s\n" % title)
        f.write("# regenerate: sudo /usr/bin/python3 bench/profile.py --build BUILD\n")
        f.write("# %d open+read+close loops of keys/%s, daemon under callgrind\n\n" % (n, net))
        f.write("instructions per read (daemon, all threads): %.0f\n\n" % ir)
        f.write("system calls per read (strace -f -c of the daemon, not under callgrind)%s:\n"
                % ("; a bare libcurl loop of the same request beside it" if curl_sys else ""))
        names = sorted(set(sysc) | set(curl_sys or {}), key=lambda s: -sysc.get(s, 0))
        for s in names:
            d = sysc.get(s, 0) / n
            if curl_sys is not None:
                cg = curl_sys.get(s, 0) / n
                if d >= 0.01 or cg >= 0.01:
                    f.write("  %-18s daemon %6.2f   curlget %6.2f\n" % (s, d, cg))
            elif d >= 0.01:
                f.write("  %-18s daemon %6.2f\n" % (s, d))
        f.write("\ninclusive (top 40):\n%s\n" % top(inc, 40))
        f.write("\nexclusive (top 30):\n%s\n" % top(exc, 30))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", required=True)
    ap.add_argument("-n", type=int, default=300, help="reads per profile")
    ap.add_argument("--out", default=os.path.join(SOURCE, "bench"))
    a = ap.parse_args()
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        print("needs root and /dev/fuse", file=sys.stderr)
        return 77
    for tool in ("valgrind", "callgrind_annotate", "callgrind_control", "strace"):
        if not shutil.which(tool):
            print("needs %s" % tool, file=sys.stderr)
            return 77
    build = os.path.abspath(a.build)
    keyfslib.KEYFS_BIN = os.path.join(build, "omikuji-keyfs")
    ctx = Ctx(build, tempfile.mkdtemp(prefix="keyfs-profile-"), a.n)
    rows = []
    try:
        ctx.vault = vaultlib.VaultServer().start()
        ctx.aws = awslib.AwsServer().start()
        sm = ctx.aws.boto3_client()
        for net in ("prof-cold", "prof-hot"):
            ctx.vault.kv_put(PREFIX + "/" + net, {"private_key": vaultlib.random_evm_key()})
            sm.create_secret(Name="omikuji/" + net,
                             SecretString=json.dumps({"private_key": vaultlib.random_evm_key()}))

        floor_ir = callgrind_floor(ctx)
        curl_ir = {b: callgrind_curl(ctx, b) for b in ("vault", "aws")}
        paths = [("vault", 0, "prof-cold", "profile-cold.txt",
                  "cold read path: vault, cache_ttl_seconds 0 (every read is one GET)"),
                 ("vault", 3600, "prof-hot", "profile-cached.txt",
                  "cached read path: vault, cache_ttl_seconds 3600 (no GET)"),
                 ("aws", 0, "prof-cold", "profile-aws-cold.txt",
                  "cold read path: aws-secrets, cache_ttl_seconds 0 (every read is one "
                  "GetSecretValue)"),
                 ("aws", 3600, "prof-hot", "profile-aws-cached.txt",
                  "cached read path: aws-secrets, cache_ttl_seconds 3600 (no request)")]
        for backend, ttl, net, fname, title in paths:
            m = ctx.mount("st-%s-%d" % (backend, ttl), backend, ttl)
            p = m.key_path(net)
            readloop(build, p, 20)
            sysc = strace_counts(m.proc.pid, lambda: readloop(build, p, a.n),
                                 os.path.join(ctx.tmp, "strace-%s-%d" % (backend, ttl)))
            ctx.unmount(m)
            curl_sys = None
            if ttl == 0:
                curl_sys = strace_counts(ctx.curl_argv(backend, a.n), ctx.curl_env(backend),
                                         os.path.join(ctx.tmp, "strace-curl-" + backend))
            ir, inc, exc, funcs = callgrind_daemon(ctx, backend, ttl, net)
            write_path(a.out, fname, title, a.n, net, ir, sysc, curl_sys, inc, exc)
            rows.append((backend, ttl, ir, funcs))
            print("%s %s: %.0f instructions per read" % (backend, "cold" if ttl == 0 else "cached",
                                                         ir))
        with open(os.path.join(a.out, "profile-summary.txt"), "w") as f:
            f.write("# Instructions per key read (callgrind), the daemon against the same-run\n"
                    "# baselines: floorfs (a minimal libfuse3 filesystem, same loop) and one\n"
                    "# bare libcurl request (bench/curlget, reused handle, inside\n"
                    "# curl_easy_perform).  regenerate: sudo /usr/bin/python3 bench/profile.py "
                    "--build BUILD\n# %d reads per path; per-read figures below.\n\n" % a.n)
            f.write("floorfs, per read: %.0f\n" % floor_ir)
            f.write("bare libcurl request, vault GET: %.0f\n" % curl_ir["vault"])
            f.write("bare libcurl request, aws GetSecretValue (SigV4): %.0f\n\n" % curl_ir["aws"])
            for backend, ttl, ir, funcs in rows:
                cold = ttl == 0
                base = floor_ir + (curl_ir[backend] if cold else 0)
                f.write("== %s %s read: %.0f instructions = %.2fx %s (%.0f)\n" % (
                    backend, "cold (TTL 0)" if cold else "cached", ir, ir / base,
                    "(floorfs + bare request)" if cold else "floorfs", base))
                for fn, label in PARTS:
                    if fn in funcs:
                        f.write("  %-62s %8.0f\n" % (label, funcs[fn]))
                f.write("\n")
        print("wrote %s/profile-summary.txt" % a.out)
    finally:
        ctx.cleanup()
        shutil.rmtree(ctx.tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
