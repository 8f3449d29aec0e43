"""Run lsan_proof (a deliberate 4242-byte leak after the daemon's own
hardening) and require LeakSanitizer to report it: proof that the ASan CI
job really checks for leaks, as root and as a normal user."""
import os
import subprocess
import sys

exe = sys.argv[1]
env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1")
runs = [[exe]]
if os.geteuid() == 0:
    os.chmod(os.path.dirname(exe), 0o755)
    runs.append(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", exe])
failed = False
for argv in runs:
    r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    ok = (r.returncode != 0 and "ERROR: LeakSanitizer: detected memory leaks" in r.stderr
          and "4242 byte(s)" in r.stderr)
    print(("ok  " if ok else "FAIL") + " " + " ".join(argv[:-1] + ["lsan_proof"]))
    if not ok:
        print(r.stderr[-2000:])
        failed = True
sys.exit(1 if failed else 0)
