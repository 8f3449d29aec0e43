"""The layering the build enforces (style.md 14): util/ sees only util/,
backends/ sees util/ and backends/ (never the program's config, fs/ or
mount/).  meson gives each folder's library only those include paths, so
`#include "config.h"` in backends/ does not compile; this check closes the
one way around that, a quoted include with a path ("../mount/config.h"),
which the compiler resolves next to the including file."""
import os
import re
import sys

TOP = os.path.join(os.environ.get("TESTS_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..")), "..")
ALLOWED = {"util": {"util"}, "backends": {"util", "backends"}}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def main():
    bad = []
    for folder, allowed in ALLOWED.items():
        for name in sorted(os.listdir(os.path.join(TOP, folder))):
            if not name.endswith((".c", ".h")):
                continue
            path = os.path.join(TOP, folder, name)
            with open(path, encoding="utf-8") as f:
                text = f.read()
            for inc in INCLUDE.findall(text):
                here = os.path.normpath(os.path.join(TOP, folder, inc))
                places = [os.path.join(TOP, d, inc) for d in allowed]
                if "/" in inc or not any(os.path.exists(p) for p in places):
                    if not os.path.exists(here) or os.path.dirname(here) not in \
                            {os.path.normpath(os.path.join(TOP, d)) for d in allowed}:
                        bad.append(f"{folder}/{name}: #include \"{inc}\" is outside "
                                   f"{', '.join(sorted(allowed))}/")
    for line in bad:
        print(line)
    print(f"{len(bad)} layering violation(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
