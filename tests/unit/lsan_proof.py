"""Run lsan_proof (a deliberate 4242-byte leak after the daemon's own
hardening) and require LeakSanitizer to report it: proof that the ASan CI
job really checks for leaks, as root and as a normal user."""
import os
import shutil
import subprocess
import sys
import tempfile

exe = sys.argv[1]
env = dict(os.environ)   # the job's own ASAN_OPTIONS: proves the job checks leaks
runs = [[exe]]
tmp = None
if os.geteuid() == 0:
    # as nobody, from a copy nobody can reach (the build dir may be private)
    tmp = tempfile.mkdtemp(prefix="lsan-proof-")
    os.chmod(tmp, 0o755)
    copy = os.path.join(tmp, "lsan_proof")
    shutil.copy(exe, copy)
    runs.append(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", copy])
failed = False
for argv in runs:
    r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    ok = (r.returncode != 0 and "ERROR: LeakSanitizer: detected memory leaks" in r.stderr
          and "4242 byte(s)" in r.stderr)
    print(("ok  " if ok else "FAIL") + " " + " ".join(argv[:-1] + ["lsan_proof"]))
    if not ok:
        print(r.stderr[-2000:])
        failed = True
if tmp:
    shutil.rmtree(tmp)
sys.exit(1 if failed else 0)
