#!/usr/bin/python3
"""bench/gen_audit.py - write a valid, hash-chained audit log of N lines for
the report benchmark: the exact bytes and chain of fs/audit.c (each line's
hash is SHA-256 over the previous hash's 64 hex characters and the line up
to its seq), spread evenly over the DAYS days before END, with a realistic
mix (reads, cached reads, denials, failures, stores, removes, listings) over
20 networks and 12 callers.

    /usr/bin/python3 bench/gen_audit.py --lines 10000000 --days 60 OUT

`omikuji-keyfs audit verify OUT` accepts the result.  Deterministic for a
given --seed.
"""
import argparse
import hashlib
import random
import sys
import time

NETWORKS = ["ethereum-mainnet", "polygon", "arbitrum", "optimism", "base", "bsc", "avalanche",
            "gnosis", "linea", "scroll", "zksync", "fantom", "celo", "moonbeam", "mantle",
            "blast", "mode", "sepolia", "holesky", "amoy"]
CALLERS = [(1001, 1001, "omikuji"), (1001, 1001, "cast"), (1002, 1002, "signer"),
           (0, 0, "bash"), (0, 0, "cat"), (0, 0, "omikuji-keyfs"), (1003, 1003, "python3"),
           (1004, 1004, "node"), (65534, 65534, "cat"), (1005, 1005, "curl"),
           (1006, 1006, "go"), (1007, 1007, "java")]


def generate(out, lines, days, end, seed=1):
    rnd = random.Random(seed)
    start = end - days * 86400
    step = (end - start) / max(1, lines)
    prev = "0" * 64
    ts_cache = {}
    buf = []
    sha = hashlib.sha256
    for seq in range(1, lines + 1):
        t = start + (seq - 1) * step
        sec = int(t)
        base = ts_cache.get(sec)
        if base is None:
            ts_cache.clear()
            base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
            ts_cache[sec] = base
        ts = "%s.%06dZ" % (base, int((t - sec) * 1e6))
        uid, gid, proc = CALLERS[rnd.randrange(len(CALLERS))]
        net = NETWORKS[rnd.randrange(len(NETWORKS))]
        r = rnd.random()
        extra = ""
        if r < 0.86:
            op, ok = "get", True
            extra = ',"cached":%s' % ("true" if r < 0.6 else "false")
        elif r < 0.89:
            op, ok = "get", False
            extra = ',"cached":false'
        elif r < 0.93:
            op, ok = "list", True
            net = ""
        elif r < 0.97:
            op, ok = "store", r < 0.96
        else:
            op, ok = "remove", True
        err = ""
        if not ok:
            err = ',"error":"%s"' % ("access denied" if op == "get" else "invalid key")
        prefix = ('{"timestamp":"%s","level":"%s","target":"omikuji::audit",'
                  '"message":"Key storage operation","operation":"%s","network":"%s",'
                  '"storage_type":"vault","status":%s%s,"uid":%d,"gid":%d,"pid":%d,'
                  '"process":"%s"%s,"seq":%d' % (
                      ts, "info" if ok else "warn", op, net, "true" if ok else "false", extra,
                      uid, gid, 1000 + uid % 97, proc, err, seq))
        prev = sha((prev + prefix).encode()).hexdigest()
        buf.append('%s,"hash":"%s"}\n' % (prefix, prev))
        if len(buf) >= 10000:
            out.write("".join(buf))
            buf.clear()
    out.write("".join(buf))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=1000000)
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--end", type=float, default=None, help="epoch seconds (default now)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("out")
    a = ap.parse_args()
    with open(a.out, "w") as f:
        generate(f, a.lines, a.days, a.end if a.end is not None else time.time(), a.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
