#!/usr/bin/python3
"""Profiles of the cached and the cold (uncached Vault) read paths.

    sudo /usr/bin/python3 bench/profile.py --build build-bench

Writes bench/profile-cached.txt and bench/profile-cold.txt: instructions per
read (callgrind, counted only while the read loop runs) with the functions
that cost the most, inclusive and exclusive, and the system calls per read
made by the daemon (strace -f -c) next to those of a bare libcurl GET loop
(bench/curlget) of the same URL.  Instruction counts do not depend on the
machine's load, which makes them the figure to compare between commits.

Needs root, /dev/fuse, valgrind and strace; stdlib only.  Every process it
starts is stopped by pid and the mounts are unmounted in a finally.
"""
import argparse
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
import vaultlib  # noqa: E402
import keyfslib  # noqa: E402

KV_MOUNT = "secret"
PREFIX = "omikuji/keys"
CONFIG = """
key_storage:
  storage_type: vault
  vault:
    url: %s
    mount_path: %s
    path_prefix: %s
    token: "${VAULT_TOKEN}"
    timeout_seconds: 30
    cache_ttl_seconds: %d
logging:
  format: json
  level: info
  targets:
    - type: file
      path: {root}/app.log
keyfs:
  audit_log: {root}/audit.log
  health_interval_seconds: 3600
"""


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


def mount(root, vault, ttl, wrapper=None):
    os.makedirs(root)
    text = CONFIG % (vault.url, KV_MOUNT, PREFIX, ttl)
    saved = keyfslib.KEYFS_BIN
    if wrapper:
        keyfslib.KEYFS_BIN = wrapper
    try:
        m = keyfslib.Mount(config_text=text.replace("{root}", root), root=root,
                           env={"VAULT_TOKEN": vault.root_token})
        m.start(timeout=120)
    finally:
        keyfslib.KEYFS_BIN = saved
    return m


def strace_counts(pid_or_argv, work, out):
    """strace -f -c of a running pid (while work() runs) or of a command;
    {syscall: calls}."""
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
            calls = int(f[3])
            counts[f[-1]] = calls
    return counts


def callgrind_profile(build, vault, tmp, ttl, path_net, n):
    """Instructions per read of a mount running under callgrind, counted
    only during the loop; (Ir per read, annotate text)."""
    out = os.path.join(tmp, "callgrind.%d.out" % ttl)
    wrapper = os.path.join(tmp, "keyfs-under-callgrind")
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\nexec valgrind --tool=callgrind --instr-atstart=no "
                "--callgrind-out-file=%s %s \"$@\"\n" % (out, os.path.join(build, "omikuji-keyfs")))
    os.chmod(wrapper, 0o755)
    m = mount(os.path.join(tmp, "cg-%d" % ttl), vault, ttl, wrapper)
    try:
        path = m.key_path(path_net)
        readloop(build, path, 20)                    # lookups and pool warm
        run(["callgrind_control", "-i", "on", str(m.proc.pid)])
        readloop(build, path, n)
        run(["callgrind_control", "-i", "off", str(m.proc.pid)])
    finally:
        m.stop()
    ann = run(["callgrind_annotate", "--inclusive=yes", "--threshold=99", out])
    excl = run(["callgrind_annotate", "--threshold=95", out])
    mt = re.search(r"([\d,]+) \(100\.0%\) +PROGRAM TOTALS", ann)
    if not mt:
        raise SystemExit("callgrind_annotate: no totals:\n" + ann[:3000])
    total = int(mt.group(1).replace(",", ""))
    return total / n, ann, excl


def top(text, k):
    lines = [l for l in text.splitlines() if re.match(r"\s*[\d,]+ \(", l) and "PROGRAM" not in l]
    return "\n".join(l[:150] for l in lines[:k])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", required=True)
    ap.add_argument("-n", type=int, default=500, help="reads per profile")
    ap.add_argument("--out", default=os.path.join(SOURCE, "bench"))
    a = ap.parse_args()
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        print("needs root and /dev/fuse", file=sys.stderr)
        return 77
    build = os.path.abspath(a.build)
    keyfslib.KEYFS_BIN = os.path.join(build, "omikuji-keyfs")
    tmp = tempfile.mkdtemp(prefix="keyfs-profile-")
    vault = vaultlib.VaultServer().start()
    mounts = []
    try:
        conn_env = dict(os.environ, VAULT_TOKEN=vault.root_token)
        for net in ("prof-cold", "prof-hot"):
            vault.kv_put(PREFIX + "/" + net, {"private_key": vaultlib.random_evm_key()})
        url = vault.url + "/v1/%s/data/%s/prof-cold" % (KV_MOUNT, PREFIX)

        # system calls per read, the daemon vs a bare libcurl GET loop
        sys_rows = {}
        for ttl, net in ((0, "prof-cold"), (3600, "prof-hot")):
            m = mount(os.path.join(tmp, "st-%d" % ttl), vault, ttl)
            mounts.append(m)
            p = m.key_path(net)
            readloop(build, p, 20)
            c = strace_counts(m.proc.pid, lambda: readloop(build, p, a.n),
                              os.path.join(tmp, "strace-%d" % ttl))
            sys_rows[ttl] = c
            m.stop()
            mounts.remove(m)
        curl = strace_counts([os.path.join(build, "bench", "curlget"), "-n", str(a.n), url],
                             conn_env, os.path.join(tmp, "strace-curl"))

        for ttl, net, name in ((0, "prof-cold", "cold"), (3600, "prof-hot", "cached")):
            ir, inc, exc = callgrind_profile(build, vault, tmp, ttl, net, a.n)
            with open(os.path.join(a.out, "profile-%s.txt" % name), "w") as f:
                f.write("# %s read path: %s\n" % (name, "vault, cache_ttl_seconds 0 (every read "
                        "is one GET)" if ttl == 0 else "vault, cache_ttl_seconds 3600 (no GET)"))
                f.write("# regenerate: sudo /usr/bin/python3 bench/profile.py --build BUILD\n")
                f.write("# %d open+read+close loops of keys/%s, daemon under callgrind\n\n"
                        % (a.n, net))
                f.write("instructions per read (daemon, all threads): %.0f\n\n" % ir)
                f.write("system calls per read (strace -f -c of the daemon, not under "
                        "callgrind)%s:\n" % ("; bare libcurl GET loop beside it" if ttl == 0
                                             else ""))
                names = sorted(set(sys_rows[ttl]) | (set(curl) if ttl == 0 else set()),
                               key=lambda s: -sys_rows[ttl].get(s, 0))
                for s in names:
                    d = sys_rows[ttl].get(s, 0) / a.n
                    if ttl == 0:
                        cg = curl.get(s, 0) / a.n
                        if d >= 0.01 or cg >= 0.01:
                            f.write("  %-18s daemon %6.2f   curlget %6.2f\n" % (s, d, cg))
                    elif d >= 0.01:
                        f.write("  %-18s daemon %6.2f\n" % (s, d))
                f.write("\ninclusive (top 40):\n%s\n" % top(inc, 40))
                f.write("\nexclusive (top 30):\n%s\n" % top(exc, 30))
            print("%s: %.0f instructions per read" % (name, ir))
    finally:
        for m in mounts:
            m.stop()
        vault.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
