"""Issue 13: "as a normal user, ./setup and meson test pass or skip".

As root, copies the project's tracked files into a temp dir owned by uid
65534 and there, as 65534 with an empty environment (HOME in the temp dir,
PATH without root's), runs the README's two commands: `./setup` (every
package is installed, so it must not need sudo) and `meson test`.  Both
must exit 0; every test that does not run must say why (a "SKIP: reason"
line for each skipped test), and the unit tests must actually run.

Only in the normal build (the sanitizer builds would repeat the same
checks with a build of their own, for minutes); skips with 77 when not
root."""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

NOBODY = 65534


def source_root():
    return os.path.dirname(os.path.abspath(os.environ.get(
        "TESTS_SOURCE_DIR", os.path.join(os.path.dirname(__file__), ".."))))


def tracked_files(root):
    r = subprocess.run(["git", "-C", root, "ls-files", "-z"], capture_output=True)
    if r.returncode == 0 and r.stdout:
        return [p for p in r.stdout.decode().split("\0") if p]
    files = []
    for d, dirs, names in os.walk(root):
        dirs[:] = [x for x in dirs if not x.startswith(("build", ".git"))]
        files += [os.path.relpath(os.path.join(d, n), root) for n in names]
    return files


class NormalUserBuildTest(unittest.TestCase):
    def test_setup_and_meson_test_pass_or_skip_as_uid_65534(self):
        root = source_root()
        work = tempfile.mkdtemp(prefix="keyfs-nu-build-")
        self.addCleanup(shutil.rmtree, work, True)
        src = os.path.join(work, "src")
        home = os.path.join(work, "home")
        os.makedirs(home)
        for rel in tracked_files(root):
            dst = os.path.join(src, rel)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copy2(os.path.join(root, rel), dst, follow_symlinks=False)
        for d, dirs, names in os.walk(work):
            for n in dirs + names:
                os.lchown(os.path.join(d, n), NOBODY, NOBODY)
        os.chown(work, NOBODY, NOBODY)

        def as_nobody(*cmd, timeout):
            return subprocess.run(
                ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                 "env", "-i", f"HOME={home}", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8",
                 *cmd], cwd=src, capture_output=True, text=True, timeout=timeout,
                stdin=subprocess.DEVNULL)

        r = as_nobody("./setup", timeout=900)
        self.assertEqual(r.returncode, 0, f"./setup as uid {NOBODY}:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
        self.assertNotIn("installing:", r.stdout, "setup wanted packages although all are installed")
        self.assertNotIn("sudo", r.stdout + r.stderr)
        self.assertTrue(os.path.exists(os.path.join(src, "build", "omikuji-keyfs")))

        r = as_nobody("meson", "test", "-C", "build", "--num-processes", "2", timeout=1500)
        with open(os.path.join(src, "build", "meson-logs", "testlog.txt")) as f:
            log = f.read()
        summary = {k: int(v) for k, v in re.findall(r"^(Ok|Fail|Skipped|Timeout):\s+(\d+)", log, re.M)}
        print(f"meson test as uid {NOBODY}: {summary}")
        blocks = re.split(r"\n=+ \d+/\d+ =+\n", log)
        failed = [b for b in blocks
                  if re.search(r"^result:\s+(exit status (?!0\b|77\b)|killed|timeout)", b, re.M)]
        self.assertEqual(r.returncode, 0, f"meson test as uid {NOBODY} failed:\n"
                         + "\n".join(l for l in r.stdout.splitlines() if "FAIL" in l or "TIMEOUT" in l)
                         + "".join("\n--- " + b[-2500:] for b in failed))
        self.assertEqual(summary.get("Fail"), 0)
        self.assertEqual(summary.get("Timeout"), 0)
        self.assertGreater(summary.get("Ok", 0), 0, "nothing ran")
        # meson writes one block per test; each skipped one says why.
        skipped = [b for b in blocks if re.search(r"^result:\s+exit status 77", b, re.M)]
        self.assertEqual(len(skipped), summary.get("Skipped", 0))
        for b in skipped:
            name = re.search(r"^test:\s+(.*)$", b, re.M).group(1)
            self.assertRegex(b, r"SKIP: \S", f"{name} skipped without a reason")
        # The unit tests need neither root nor FUSE: they ran.
        self.assertRegex(r.stdout, r"unit / \S+\s+OK")
        self.assertNotRegex(r.stdout, r"unit / \S+\s+SKIP")


if __name__ == "__main__":
    if os.geteuid() != 0:
        print("SKIP: needs root to run the build as uid 65534")
        sys.exit(77)
    if os.environ.get("KEYFS_SANITIZE", "none") != "none":
        print("SKIP: runs in the normal build only (the sanitizer builds would repeat it)")
        sys.exit(77)
    if shutil.which("setpriv") is None:
        print("SKIP: setpriv not found")
        sys.exit(77)
    prog = unittest.main(exit=False, verbosity=2)
    sys.exit(0 if prog.result.wasSuccessful() else 1)
