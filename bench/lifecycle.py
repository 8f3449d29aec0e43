#!/usr/bin/python3
"""bench/lifecycle.py - the figures of contract section 9 (issue 8), each
next to its baseline measured in the same run.

    /usr/bin/python3 bench/lifecycle.py --build BUILDDIR [--reps 5] [--stores 200] [--cli 30]

- store through the mount with `audit_failure: deny` (an intent line, the
  backend change, the outcome line) against `allow` (no intent line) and
  against `--no-audit`, file backend, interleaved runs, median per store;
- `key export` and `key list` through a running mount (control socket)
  against the same commands with no mount (the CLI opens the backend and
  the audit log itself), median per command, wall time of the process;
- VmLck of the serving process after a read, background and foreground.

Needs root (FUSE mounts).  Everything started here is stopped by pid and
unmounted in a finally block.  Exit 77 when the machine cannot mount.
"""
import argparse
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "integration"))


def new_key():
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    while True:
        k = int.from_bytes(secrets.token_bytes(32), "big")
        if 0 < k < n:
            return "0x" + format(k, "064x")


def vmlck_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmLck:"):
                return int(line.split()[1])
    return -1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", required=True)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--stores", type=int, default=200)
    ap.add_argument("--cli", type=int, default=30)
    args = ap.parse_args()
    os.environ["KEYFS_BIN"] = os.path.join(os.path.abspath(args.build), "omikuji-keyfs")
    import keyfslib
    if not os.path.exists("/dev/fuse") or os.geteuid() != 0:
        print("SKIP: needs root and /dev/fuse")
        return 77
    keyfs = os.environ["KEYFS_BIN"]
    keys = [new_key() + "\n" for _ in range(16)]
    mounts = []

    def mount(mode, extra=()):
        m = keyfslib.Mount(keyfs_extra=f"  audit_failure: {mode}\n", extra_args=list(extra))
        m.start()
        mounts.append(m)
        return m

    try:
        # --- store: deny (intent line) vs allow vs no audit -------------------
        ms = {"deny": mount("deny"), "allow": mount("allow"), "none": mount("allow", ["--no-audit"])}
        per = {k: [] for k in ms}
        for _ in range(args.reps):
            for name, m in ms.items():
                t0 = time.perf_counter()
                for i in range(args.stores):
                    m.write_key(f"net{i % 8}", keys[i % 16])
                per[name].append((time.perf_counter() - t0) / args.stores * 1e6)
        med = {k: statistics.median(v) for k, v in per.items()}
        lines_deny = sum(1 for l in ms["deny"].audit_lines() if l["operation"] == "store")
        lines_allow = sum(1 for l in ms["allow"].audit_lines() if l["operation"] == "store")
        print(f"store via mount, file backend, median of {args.reps} x {args.stores}:")
        print(f"  deny  (intent + outcome): {med['deny']:8.1f} us/store  "
              f"({lines_deny} audit lines for {args.reps * args.stores} stores)")
        print(f"  allow (outcome only)    : {med['allow']:8.1f} us/store  "
              f"({lines_allow} audit lines)")
        print(f"  --no-audit              : {med['none']:8.1f} us/store")
        print(f"  deny/allow = {med['deny'] / med['allow']:.3f}   "
              f"intent line cost = {med['deny'] - med['allow']:+.1f} us/store")
        for m in list(ms.values()):
            m.cleanup()
            mounts.remove(m)

        # --- CLI through the mount vs direct ---------------------------------
        m = keyfslib.Mount()
        mounts.append(m)
        m.cli("key", "import", "--network", "eth", "--key", keys[0].strip())

        def time_cli(*cmd):
            t = []
            for _ in range(args.cli):
                t0 = time.perf_counter()
                r = m.cli(*cmd)
                t.append((time.perf_counter() - t0) * 1e3)
                if r.returncode != 0:
                    raise SystemExit(f"{cmd}: {r.stderr}")
            return statistics.median(t)

        direct = {c: time_cli(*c) for c in (("key", "export", "--network", "eth", "--yes"),
                                            ("key", "list"))}
        m.start()
        through = {c: time_cli(*c) for c in direct}
        print(f"key commands, median wall time of {args.cli} runs:")
        for c in direct:
            print(f"  {' '.join(c[:2]):10s} through the mount {through[c]:7.2f} ms, "
                  f"direct (no mount) {direct[c]:7.2f} ms, ratio {through[c] / direct[c]:.2f}")
        m.cleanup()
        mounts.remove(m)

        # --- VmLck background vs foreground ----------------------------------
        fg = keyfslib.Mount()
        mounts.append(fg)
        fg.start()
        fg.write_key("eth", keys[0])
        fg.read_key("eth")
        fg_lck = vmlck_kb(fg.proc.pid)
        fg.cleanup()
        mounts.remove(fg)
        bg = keyfslib.Mount()
        mounts.append(bg)
        r = subprocess.run([keyfs, "mount", "-c", bg.config, bg.mnt], env=bg.env,
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise SystemExit(r.stderr)
        pid = int(open(bg.audit_log + ".lock").read())
        bg.write_key("eth", keys[0])
        bg.read_key("eth")
        print(f"VmLck after a read: background {vmlck_kb(pid)} kB, foreground {fg_lck} kB")
        subprocess.run(["fusermount3", "-u", bg.mnt])
        for _ in range(200):
            if not os.path.exists(f"/proc/{pid}"):
                break
            time.sleep(0.05)
    finally:
        for m in mounts:
            m.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
