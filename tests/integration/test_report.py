#!/usr/bin/python3
"""`omikuji-keyfs report` against an audit history made through a real mount.

The history is made by real callers: reads as root, denied reads as a
second user (setpriv as nobody on an allow_other mount), stores, invalid
writes, a replace, a remove, a touch, a listing and CLI imports.  The
JSON figures must equal what the test did.  The same log split into
logrotate's rotations (plain and gzip) must give the same figures; an
edited or removed line must be flagged at the top; the HTML must hold its
charts and no external reference; and a real Prometheus scraping a real
node_exporter on MOUNT/textfile must fill the availability and latency
sections with plausible figures.
"""
import datetime
import gzip
import html.parser
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import keyfslib  # noqa: E402
from keyfslib import KEYFS_BIN, Mount, new_key  # noqa: E402

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]

# What the history does (checked against the report's JSON).
READS_A, READS_B = 5, 3
DENIED_A, DENIED_B = 2, 1
HIDDEN = "hidden-c"        # nobody has no grant on it: a probe is a denial too
DENIED = DENIED_A + DENIED_B + 1
# Root may do everything; nobody may list report-* (so it sees those names
# and its reads are denied with EACCES), and has no grant at all on HIDDEN.
RULES = """  access:
    - networks: ["*"]
      read: ["uid:0"]
      write: ["uid:0"]
      remove: ["uid:0"]
      list: ["uid:0"]
    - networks: ["report-*"]
      list: ["uid:65534"]
"""
INVALID_WRITES = 2
CLI_IMPORTS = ("report-cli-1", "report-cli-2")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def iso(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def report(*args, check=True):
    """Run `report` (weekly unless the first argument names the kind)."""
    if not args or args[0] not in ("weekly", "monthly", "yearly"):
        args = ("weekly",) + args
    p = subprocess.run([KEYFS_BIN, "report", *args], capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL)
    if check and p.returncode != 0:
        raise AssertionError("report %s failed (%d): %s" % (args, p.returncode, p.stderr))
    return p


def report_json(*args):
    return json.loads(report(*args, "--format", "json").stdout)


def op(doc, name):
    for o in doc["operations"]:
        if o["operation"] == name:
            return o
    return {"success": 0, "failure": 0, "denied": 0, "total": 0}


def make_history(m):
    """Drive the mount; returns the networks used."""
    a, b = "report-a", "report-b"
    m.write_key(a, new_key() + "\n")          # created
    m.write_key(b, new_key() + "\n")          # created
    m.write_key(a, new_key() + "\n")          # replaced
    m.write_key(HIDDEN, new_key() + "\n")     # created
    for _ in range(READS_A):
        m.read_key(a)
    for _ in range(READS_B):
        m.read_key(b)
    for net, n in ((a, DENIED_A), (b, DENIED_B)):
        for _ in range(n):
            p = subprocess.run(NOBODY + ["cat", m.key_path(net)], capture_output=True, text=True)
            assert p.returncode != 0 and "Permission denied" in p.stderr, p.stderr
    p = subprocess.run(NOBODY + ["cat", m.key_path(HIDDEN)], capture_output=True, text=True)
    assert p.returncode != 0 and "No such file" in p.stderr, p.stderr
    for _ in range(INVALID_WRITES):
        r = m.sh("echo not-a-key > keys/%s" % a)
        assert r.returncode != 0
    os.listdir(m.path("keys"))                # list
    subprocess.run(["touch", m.key_path(a)], check=True)   # refreshed
    os.unlink(m.key_path(b))                  # removed
    return a, b


class ReportHistory(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.m = Mount(extra_args=["-o", "allow_other"], keyfs_extra=RULES)
        cls.addClassCleanup(cls.m.cleanup)
        os.chmod(cls.m.root, 0o755)
        cls.m.start()
        cls.t0 = time.time()
        cls.a, cls.b = make_history(cls.m)
        # CLI imports next to the running mount: they go through it and are
        # audited with process omikuji-keyfs.
        for net in CLI_IMPORTS:
            r = cls.m.cli("key", "import", "--network", net, "--key", new_key())
            assert r.returncode == 0, r.stderr
        cls.m.stop()
        cls.lines = cls.m.audit_lines()
        # In deny mode (the default) a store or remove writes an intent line
        # before its outcome line: the report counts operations, not intents.
        cls.ops = [x for x in cls.lines if not x.get("intent")]
        cls.tmp = tempfile.mkdtemp(prefix="keyfs-report-")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, True)

    def test_counts_equal_the_history(self):
        doc = report_json("-c", self.m.config)
        self.assertEqual(doc["schema"], 1)
        self.assertEqual(doc["report"], "weekly")
        self.assertTrue(doc["chain"]["verified"], doc["chain"])
        self.assertEqual(doc["chain"]["lines"], len(self.lines))
        self.assertIsNone(doc["chain"]["first_bad_line"])
        get = op(doc, "get")
        self.assertEqual(get["success"], READS_A + READS_B + 1)          # + the touch
        self.assertEqual(get["denied"], DENIED)
        store = op(doc, "store")
        self.assertEqual(store["success"], 4 + len(CLI_IMPORTS))
        self.assertEqual(store["failure"], INVALID_WRITES)
        self.assertEqual(op(doc, "remove")["success"], 1)
        lists = sum(1 for x in self.ops if x["operation"] == "list")
        self.assertGreaterEqual(lists, 1)
        self.assertEqual(op(doc, "list")["success"], lists)
        self.assertEqual(doc["summary"]["operations"]["current"], len(self.ops))
        self.assertEqual(doc["summary"]["lines"]["intent"], len(self.lines) - len(self.ops))
        self.assertEqual(doc["summary"]["denials"]["current"], DENIED)
        self.assertEqual(doc["summary"]["failures"]["current"], INVALID_WRITES)
        self.assertEqual(doc["summary"]["operations"]["previous"], 0)

        # denials by caller and by network: nobody, through cat
        by_caller = {(d["uid"], d["process"], d["network"]): d["count"]
                     for d in doc["denials"]["by_caller"]}
        self.assertEqual(by_caller, {(65534, "cat", self.a): DENIED_A,
                                     (65534, "cat", self.b): DENIED_B,
                                     (65534, "cat", HIDDEN): 1})
        users = {d["user"] for d in doc["denials"]["by_caller"]}
        self.assertEqual(users, {"nobody"})
        by_net = {d["network"]: d["count"] for d in doc["denials"]["by_network"]}
        self.assertEqual(by_net, {self.a: DENIED_A, self.b: DENIED_B, HIDDEN: 1})

        # failures with their reason
        fl = doc["failures"]["list"]
        self.assertEqual(len(fl), 1, fl)
        self.assertEqual((fl[0]["operation"], fl[0]["network"], fl[0]["count"]),
                         ("store", self.a, INVALID_WRITES))
        self.assertIn("hex", fl[0]["reason"])

        # access per network and caller
        nets = {n["network"]: n for n in doc["access"]["networks"]}
        self.assertEqual(nets[self.a]["reads"], READS_A + 1)
        self.assertEqual(nets[self.b]["reads"], READS_B)
        self.assertEqual(nets[self.a]["denials"], DENIED_A)
        self.assertEqual(nets[self.a]["stores"], 2)
        self.assertEqual(nets[self.b]["removes"], 1)
        for net in (self.a, self.b):
            seen = {(x["uid"], x["process"]) for x in self.ops if x["network"] == net}
            self.assertEqual(nets[net]["callers"], len(seen), net)
        pairs = {(p["network"], p["uid"], p["process"]): p for p in doc["access"]["pairs"]}
        me = os.path.basename(sys.executable)[:15]
        self.assertEqual(pairs[(self.a, 0, me)]["reads"], READS_A)
        self.assertEqual(pairs[(self.b, 0, me)]["reads"], READS_B)
        self.assertEqual(pairs[(self.a, 65534, "cat")]["denials"], DENIED_A)
        self.assertEqual(pairs[(HIDDEN, 65534, "cat")]["denials"], 1)
        reasons = {r["reason"]: r for r in doc["failures"]["by_reason"]}
        self.assertEqual(reasons["no grant for this network"]["count"]["current"], 1)
        self.assertTrue(reasons["no grant for this network"]["denial"])
        self.assertEqual(reasons["access denied"]["count"]["current"], DENIED_A + DENIED_B)
        callers = {(c["uid"], c["process"]): c for c in doc["access"]["callers"]}
        self.assertEqual(callers[(65534, "cat")]["denials"], DENIED)
        self.assertEqual(callers[(65534, "cat")]["networks"], 3)
        self.assertEqual(callers[(65534, "cat")]["user"], "nobody")
        self.assertTrue(callers[(65534, "cat")]["new"])
        self.assertEqual(doc["summary"]["new_callers"], len(doc["access"]["callers"]))

        # lifecycle: 3 created + 1 replaced + 1 removed + 1 refreshed through the mount
        lc = doc["lifecycle"]
        self.assertEqual(lc["created"]["mount"], 3)
        self.assertEqual(lc["created"]["cli"], len(CLI_IMPORTS))
        self.assertEqual(lc["replaced"]["total"], 1)
        self.assertEqual(lc["removed"]["total"], 1)
        self.assertEqual(lc["refreshed"]["total"], 1)
        self.assertEqual(lc["events_total"], 6 + len(CLI_IMPORTS))
        cli = [e for e in lc["events"] if e["source"] == "cli"]
        self.assertEqual(sorted(e["network"] for e in cli), list(CLI_IMPORTS))
        self.assertEqual({e["process"] for e in cli}, {"omikuji-keyfs"})

        # per day and per hour add up
        self.assertEqual(sum(d["operations"] for d in doc["daily"]), len(self.ops))
        self.assertEqual(sum(d["denials"] for d in doc["daily"]), DENIED)
        self.assertEqual(sum(doc["hours"]["operations"]), len(self.ops))
        self.assertFalse(doc["prometheus"]["available"])
        kinds = {f["kind"]: f for f in doc["findings"]}
        self.assertEqual(set(kinds), {"denials", "key_created", "new_callers"})
        self.assertIn("%d denied" % DENIED, kinds["denials"]["text"])

    def test_previous_period_and_until(self):
        # With --until a week and an hour later, the history is the previous period.
        later = report_json("-c", self.m.config, "--until", iso(self.t0 + 7 * 86400 + 3600))
        self.assertEqual(later["summary"]["operations"]["current"], 0)
        self.assertEqual(later["summary"]["operations"]["previous"], len(self.ops))
        self.assertEqual(later["summary"]["denials"]["previous"], DENIED)
        self.assertEqual(op(later, "get")["trend"]["previous"],
                         READS_A + READS_B + 1 + DENIED)
        # Monthly up to the end of today covers it; a date before it sees nothing.
        month = report_json("monthly", "-c", self.m.config, "--until", iso(self.t0 + 60)[:10])
        self.assertEqual(month["period"]["days"], 30)
        self.assertEqual(month["summary"]["operations"]["current"], len(self.ops))
        early = report_json("-c", self.m.config, "--until", iso(self.t0 - 86400)[:10])
        self.assertEqual(early["summary"]["operations"]["current"], 0)
        self.assertEqual(early["summary"]["lines"]["after_period"], len(self.ops))

    def test_rotated_and_gzip_inputs(self):
        root = os.path.join(self.tmp, "rot")
        os.makedirs(root)
        with open(self.m.audit_log, "rb") as f:
            raw = f.read().splitlines(keepends=True)
        third = len(raw) // 3
        base = os.path.join(root, "audit.log")
        with gzip.open(base + ".2.gz", "wb") as f:
            f.writelines(raw[:third])
        with open(base + ".1", "wb") as f:
            f.writelines(raw[third:2 * third])
        with open(base, "wb") as f:
            f.writelines(raw[2 * third:])
        whole = report_json("--audit-log", self.m.audit_log, "--until", iso(self.t0 + 3600))
        explicit = report_json("--audit-log", base + ".2.gz", "--audit-log", base + ".1",
                               "--audit-log", base, "--until", iso(self.t0 + 3600))
        self.assertTrue(explicit["chain"]["verified"], explicit["chain"])
        self.assertEqual([i["compressed"] for i in explicit["inputs"]], [True, False, False])
        self.assertEqual(sum(i["lines"] for i in explicit["inputs"]), len(raw))
        for key in ("operations", "denials", "failures", "access", "lifecycle", "daily"):
            self.assertEqual(explicit[key], whole[key], key)
        # The configured log with its rotations found next to it, oldest first.
        cfg = os.path.join(root, "omikuji.yaml")
        with open(cfg, "w") as f:
            f.write("keyfs:\n  audit_log: %s\n" % base)
        found = report_json("-c", cfg, "--until", iso(self.t0 + 3600))
        self.assertEqual([i["path"] for i in found["inputs"]], [base + ".2.gz", base + ".1", base])
        self.assertEqual(found["operations"], whole["operations"])
        self.assertTrue(found["chain"]["verified"])
        # gzip is recognised by its content, not its name
        shutil.copy(base + ".2.gz", os.path.join(root, "old-rotation"))
        renamed = report_json("--audit-log", os.path.join(root, "old-rotation"),
                              "--audit-log", base + ".1", "--audit-log", base,
                              "--until", iso(self.t0 + 3600))
        self.assertTrue(renamed["inputs"][0]["compressed"])
        self.assertEqual(renamed["operations"], whole["operations"])
        # The current file alone: its links hold, its start is not there.
        alone = report_json("--audit-log", base, "--until", iso(self.t0 + 3600))
        self.assertTrue(alone["chain"]["verified"], alone["chain"])
        self.assertFalse(alone["chain"]["starts_at_seq_1"])
        self.assertEqual(alone["chain"]["first_seq"], json.loads(raw[2 * third])["seq"])
        self.assertEqual(alone["findings"][0]["kind"], "audit_start")
        text = report("--audit-log", base, "--until", iso(self.t0 + 3600)).stdout
        self.assertIn("earlier lines are not in the input", text.splitlines()[4])
        self.assertTrue(found["chain"]["starts_at_seq_1"])
        # In the wrong order the chain does not hold, and the report says so.
        wrong = report_json("--audit-log", base, "--audit-log", base + ".1",
                            "--until", iso(self.t0 + 3600))
        self.assertFalse(wrong["chain"]["verified"])
        self.assertEqual(wrong["chain"]["first_bad_file"], base + ".1")
        self.assertEqual(wrong["chain"]["first_bad_line"], 1)

    def test_tampered_log_is_flagged_at_the_top(self):
        with open(self.m.audit_log) as f:
            lines = f.readlines()
        edited = os.path.join(self.tmp, "edited.log")
        victim = 5
        rec = lines[victim - 1]
        self.assertIn('"uid":0', rec)
        with open(edited, "w") as f:
            f.writelines(lines[:victim - 1] + [rec.replace('"uid":0', '"uid":1', 1)] +
                         lines[victim:])
        p = report("--audit-log", edited, "--format", "json")
        doc = json.loads(p.stdout)
        self.assertEqual(doc["chain"]["verified"], False)
        self.assertEqual(doc["chain"]["first_bad_line"], victim)
        self.assertEqual(doc["chain"]["first_bad_file"], edited)
        self.assertIn("hash mismatch", doc["chain"]["reason"])
        self.assertEqual(doc["findings"][0]["kind"], "audit_chain")
        self.assertEqual(doc["findings"][0]["severity"], "critical")
        self.assertEqual(doc["chain"]["bad_lines"], 1)     # resynchronised after it
        self.assertIn("chain is broken at %s line %d" % (edited, victim), p.stderr)
        # every line still counted
        self.assertEqual(doc["summary"]["operations"]["current"], len(self.ops))
        text = report("--audit-log", edited).stdout.splitlines()
        top = "\n".join(text[:8])
        self.assertIn("AUDIT CHAIN BROKEN at %s line %d" % (edited, victim), top)
        # a removed line: named by its successor
        removed = os.path.join(self.tmp, "removed.log")
        with open(removed, "w") as f:
            f.writelines(lines[:3] + lines[4:])
        doc = report_json("--audit-log", removed)
        self.assertFalse(doc["chain"]["verified"])
        self.assertEqual(doc["chain"]["first_bad_line"], 4)
        self.assertIn("seq", doc["chain"]["reason"])
        # a truncated last line
        torn = os.path.join(self.tmp, "torn.log")
        with open(torn, "w") as f:
            f.writelines(lines[:-1] + [lines[-1][:40]])
        doc = report_json("--audit-log", torn)
        self.assertEqual(doc["chain"]["first_bad_line"], len(lines))
        self.assertIn("truncated", doc["chain"]["reason"])

    def test_html_is_self_contained_with_charts(self):
        out = os.path.join(self.tmp, "report.html")
        report("-c", self.m.config, "--format", "html", "-o", out)
        self.assertEqual(os.stat(out).st_mode & 0o777, 0o600)
        with open(out) as f:
            page = f.read()

        class Parser(html.parser.HTMLParser):
            def __init__(self):
                super().__init__()
                self.tags, self.refs, self.svg_ids, self.rects = [], [], [], {}
                self.current_svg = None

            def handle_starttag(self, tag, attrs):
                self.tags.append(tag)
                for k, v in attrs:
                    if k in ("src", "href", "xlink:href", "srcset", "action", "data") or \
                            (v and ("url(" in v or "://" in v)):
                        self.refs.append((tag, k, v))
                d = dict(attrs)
                if tag == "svg":
                    self.current_svg = d.get("id")
                    self.svg_ids.append(self.current_svg)
                    self.rects[self.current_svg] = 0
                if tag == "rect" and self.current_svg:
                    self.rects[self.current_svg] += 1

            def handle_endtag(self, tag):
                if tag == "svg":
                    self.current_svg = None

        p = Parser()
        p.feed(page)
        self.assertEqual(p.refs, [])
        for tag in ("script", "link", "img", "iframe", "object", "embed"):
            self.assertNotIn(tag, p.tags)
        self.assertNotIn("@import", page)
        self.assertNotIn("url(", page)
        self.assertNotIn("://", page)
        for chart in ("chart-operations", "chart-denials", "chart-latency", "chart-availability"):
            self.assertIn(chart, p.svg_ids)
        # background + one bar for the day of the history
        self.assertGreaterEqual(p.rects["chart-operations"], 2)
        self.assertGreaterEqual(p.rects["chart-denials"], 2)
        self.assertIn("@media print", page)
        self.assertIn("report-a", page)
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        if chromium:
            pdf = os.path.join(self.tmp, "report.pdf")
            subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                            "--print-to-pdf=" + pdf, out], capture_output=True, timeout=60)
            self.assertGreater(os.path.getsize(pdf), 1000)

    def test_text_fits_100_columns(self):
        text = report("-c", self.m.config).stdout
        lines = text.splitlines()
        self.assertLessEqual(max(len(x) for x in lines), 100)
        self.assertTrue(lines[4].startswith("audit chain verified"))
        self.assertIn("Denials by caller", text)
        self.assertIn("unavailable: no --prometheus URL given", text)

    def test_off_hours_against_business_hours(self):
        # Business hours that exclude the hour of the history: every line is off-hours.
        lines = self.ops
        hour = int(lines[0]["timestamp"][11:13])
        cfg = os.path.join(self.tmp, "hours.yaml")
        with open(cfg, "w") as f:
            f.write('keyfs:\n  audit_log: %s\n  business_hours:\n    timezone: UTC\n'
                    '    start: "%02d:00"\n    end: "%02d:00"\n'
                    '    days: [sun, mon, tue, wed, thu, fri, sat]\n'
                    % (self.m.audit_log, (hour + 2) % 24, (hour + 3) % 24))
        doc = report_json("-c", cfg, "--until", iso(self.t0 + 3600))
        oh = doc["off_hours"]
        self.assertTrue(oh["business_hours_configured"])
        self.assertIn("UTC", oh["business_hours"])
        self.assertEqual(oh["count"]["current"], len(lines))
        self.assertEqual(doc["summary"]["off_hours"]["current"], len(lines))
        callers = {(c["uid"], c["process"]): c for c in doc["access"]["callers"]}
        self.assertEqual(callers[(65534, "cat")]["off_hours"], DENIED)
        # Hours that include it: none.
        with open(cfg, "w") as f:
            f.write('keyfs:\n  audit_log: %s\n  business_hours:\n    start: "00:00"\n'
                    '    end: "24:00"\n    days: [sun, mon, tue, wed, thu, fri, sat]\n'
                    % self.m.audit_log)
        doc = report_json("-c", cfg, "--until", iso(self.t0 + 3600))
        self.assertEqual(doc["off_hours"]["count"]["current"], 0)
        # Without business hours: the daemon's off_hours flags (none here).
        doc = report_json("--audit-log", self.m.audit_log)
        self.assertFalse(doc["off_hours"]["business_hours_configured"])
        self.assertIn("anomaly=off_hours", doc["off_hours"]["basis"])

    def test_progress_on_a_terminal_only(self):
        # A FIFO that delivers half the log, pauses 1.5 s, then the rest:
        # reading takes more than a second, so a terminal gets progress.
        with open(self.m.audit_log, "rb") as f:
            raw = f.read()
        for tty in (True, False):
            fifo = os.path.join(self.tmp, "fifo-%s" % tty)
            os.mkfifo(fifo)
            if tty:
                master, slave = os.openpty()
                err = slave
            else:
                err = subprocess.PIPE
            p = subprocess.Popen([KEYFS_BIN, "report", "weekly", "--audit-log", fifo,
                                  "--format", "json"], stdout=subprocess.PIPE, stderr=err,
                                 stdin=subprocess.DEVNULL)
            with open(fifo, "wb") as w:
                w.write(raw[:len(raw) // 2])
                w.flush()
                time.sleep(1.5)
                w.write(raw[len(raw) // 2:])
            out, errtext = p.communicate(timeout=60)
            if tty:
                os.close(slave)
                errtext = b""
                while True:
                    try:
                        chunk = os.read(master, 4096)
                    except OSError:
                        break
                    if not chunk:
                        break
                    errtext += chunk
                os.close(master)
            self.assertEqual(p.returncode, 0, errtext)
            self.assertEqual(json.loads(out)["chain"]["lines"], len(self.lines))
            if tty:
                self.assertIn(b"reading the audit log", errtext)
            else:
                self.assertEqual(errtext, b"")

    def test_bad_arguments(self):
        p = report("yearly", check=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn("weekly or monthly", p.stderr)
        p = report("--until", "last tuesday", "--audit-log", self.m.audit_log, check=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn("--until", p.stderr)
        p = report("--audit-log", os.path.join(self.tmp, "missing.log"), check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("missing.log", p.stderr)
        self.assertEqual(p.stderr.count("\n"), 1)
        p = report("--format", "pdf", "--audit-log", self.m.audit_log, check=False)
        self.assertEqual(p.returncode, 2)
        # an empty log is a report (that says so), not an error
        empty = os.path.join(self.tmp, "empty.log")
        open(empty, "w").close()
        p = report("--audit-log", empty, "--format", "json")
        doc = json.loads(p.stdout)
        self.assertFalse(doc["chain"]["verified"])
        self.assertEqual(doc["chain"]["reason"], "no audit lines")
        self.assertEqual([f["kind"] for f in doc["findings"]], ["audit_empty"])
        self.assertIn("no audit lines", p.stderr)


class ReportHostileNames(keyfslib.MountTestCase):
    """A caller names itself with a terminal escape sequence: the text report
    shows it harmlessly, the JSON keeps it exactly."""

    def test_escape_sequences_never_reach_the_terminal(self):
        net = "report-esc"
        self.m.write_key(net, new_key() + "\n")
        evil = "\x1b]0;pwn\x07\x1b[2J"
        code = ("import sys\nopen('/proc/self/comm','w').write(sys.argv[1])\n"
                "open(sys.argv[2]).read()\n")
        subprocess.run([sys.executable, "-c", code, evil, self.m.key_path(net)], check=True)
        names = {x["process"] for x in self.m.audit_lines()}
        self.assertIn(evil[:15], names)
        doc = report_json("-c", self.m.config)
        self.assertIn(evil[:15], {c["process"] for c in doc["access"]["callers"]})
        for fmt in ("text", "html"):
            out = report("-c", self.m.config, "--format", fmt).stdout
            self.assertNotIn("\x1b", out, fmt)
            self.assertNotIn("\x07", out, fmt)
        self.assertIn("?]0;pwn??[2J", report("-c", self.m.config).stdout)


class ReportKeyedChain(unittest.TestCase):
    """A log chained with HMAC (keyfs.audit_key_file) verifies only with its key."""

    def test_keyed_log_needs_its_key(self):
        root = tempfile.mkdtemp(prefix="keyfs-test-")
        keyfile = os.path.join(root, "audit.key")
        fd = os.open(keyfile, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, os.urandom(32))
        os.close(fd)
        m = Mount(root=root, keyfs_extra="  audit_key_file: %s\n" % keyfile)
        self.addCleanup(m.cleanup)
        m.start()
        m.write_key("report-keyed", new_key() + "\n")
        for _ in range(3):
            m.read_key("report-keyed")
        m.stop()
        # the configured log: its key comes from the configuration
        doc = report_json("-c", m.config)
        self.assertTrue(doc["chain"]["verified"], doc["chain"])
        self.assertEqual(op(doc, "get")["success"], 3)
        # the file alone, without the key: every link fails, and the report says why
        doc = report_json("--audit-log", m.audit_log)
        self.assertFalse(doc["chain"]["verified"])
        self.assertIn("keyed log needs --key", doc["chain"]["reason"])
        doc = report_json("--audit-log", m.audit_log, "--key", keyfile)
        self.assertTrue(doc["chain"]["verified"], doc["chain"])
        # a wrong key
        other = os.path.join(root, "other.key")
        fd = os.open(other, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, os.urandom(32))
        os.close(fd)
        doc = report_json("--audit-log", m.audit_log, "--key", other)
        self.assertFalse(doc["chain"]["verified"])
        self.assertIn("key is not the log's", doc["chain"]["reason"])


class ReportPrometheus(unittest.TestCase):
    """A real prometheus scraping a real node_exporter on MOUNT/textfile."""

    def setUp(self):
        for b in ("prometheus", "prometheus-node-exporter"):
            if not shutil.which(b):
                self.skipTest("%s is not installed" % b)
        self.m = Mount()
        self.addCleanup(self.m.cleanup)
        self.m.start()
        self.procs = []
        self.addCleanup(self.stop_procs)

    def stop_procs(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()

    def start(self, argv, name):
        log = open(os.path.join(self.m.root, name + ".log"), "w")
        p = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        self.procs.append(p)
        return p

    def wait_http(self, url, proc, name, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                with open(os.path.join(self.m.root, name + ".log")) as f:
                    raise AssertionError("%s exited: %s" % (name, f.read()[-2000:]))
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    return r.read().decode()
            except OSError:
                time.sleep(0.2)
        raise AssertionError("%s did not answer at %s" % (name, url))

    def test_availability_latency_alerts(self):
        m = self.m
        net = "report-prom"
        m.write_key(net, new_key() + "\n")
        nport, pport = free_port(), free_port()
        ne = self.start(["prometheus-node-exporter", "--web.listen-address=127.0.0.1:%d" % nport,
                         "--collector.disable-defaults", "--collector.textfile",
                         "--collector.textfile.directory=" + m.path("textfile")], "node-exporter")
        body = self.wait_http("http://127.0.0.1:%d/metrics" % nport, ne, "node-exporter")
        self.assertIn("omikuji_key_backend_up", body)
        rules = os.path.join(m.root, "rules.yml")
        with open(rules, "w") as f:
            f.write("""groups:
  - name: report-test
    interval: 1s
    rules:
      - alert: ReportTestBackendUp
        expr: omikuji_key_backend_up == 1
        labels:
          severity: info
""")
        cfg = os.path.join(m.root, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write("""global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%s]
scrape_configs:
  - job_name: omikuji
    static_configs:
      - targets: ["127.0.0.1:%d"]
""" % (rules, nport))
        prom = self.start(["prometheus", "--config.file=" + cfg,
                           "--storage.tsdb.path=" + os.path.join(m.root, "tsdb"),
                           "--web.listen-address=127.0.0.1:%d" % pport], "prometheus")
        url = "http://127.0.0.1:%d" % pport
        self.wait_http(url + "/-/ready", prom, "prometheus", timeout=60)
        # Traffic while it scrapes: reads (latency), a failed store.
        deadline = time.monotonic() + 12
        reads = 0
        while time.monotonic() < deadline:
            for _ in range(20):
                m.read_key(net)
                reads += 1
            time.sleep(0.25)
        m.sh("echo bad > keys/%s" % net)
        time.sleep(3)
        self.wait_http(url + "/api/v1/query?query=ALERTS", prom, "prometheus")

        p = report("-c", m.config, "--prometheus", url, "--format", "json")
        doc = json.loads(p.stdout)
        pr = doc["prometheus"]
        self.assertTrue(pr["available"], pr)
        avail = {a["backend"]: a for a in pr["availability"]}
        self.assertIn("file", avail)
        self.assertEqual(avail["file"]["up_ratio"], 1.0)
        self.assertGreater(avail["file"]["success_ratio"], 0.5)
        self.assertLess(avail["file"]["success_ratio"], 1.0)      # the failed store
        self.assertGreater(avail["file"]["operations_success"], 0)
        lat = {(x["operation"], x["backend"]): x for x in pr["latency_seconds"]}
        g = lat[("get", "file")]
        self.assertGreater(g["count"], 0)
        self.assertTrue(0 < g["p50"] <= g["p95"] <= g["p99"] < 1.0, g)
        self.assertEqual(pr["cache"], [])                         # file: no cache series
        self.assertNotIn("availability", {f["kind"] for f in doc["findings"]})
        self.assertNotIn("latency", {f["kind"] for f in doc["findings"]})
        alerts = {a["alertname"]: a for a in pr["alerts"]}
        self.assertIn("ReportTestBackendUp", alerts)
        self.assertGreater(alerts["ReportTestBackendUp"]["samples"], 0)
        self.assertEqual(alerts["ReportTestBackendUp"]["severity"], "info")
        self.assertFalse(pr["aws"]["available"])
        self.assertEqual(pr["aws"]["total_calls"], 0)
        today = [d for d in pr["daily"] if d["up_ratio"] is not None]
        self.assertEqual(len(today), 1)
        self.assertEqual(today[0]["up_ratio"], 1.0)
        self.assertGreater(today[0]["get_p95_seconds"], 0)
        # the same in text and HTML: sections filled, charts drawn
        text = report("-c", m.config, "--prometheus", url).stdout
        self.assertIn("Backend availability", text)
        self.assertIn("100.00%", text)
        self.assertLessEqual(max(len(x) for x in text.splitlines()), 100)
        page = report("-c", m.config, "--prometheus", url, "--format", "html").stdout
        for chart, unit in (("chart-latency", " ms</title>"), ("chart-availability", ": 100%</title>")):
            svg = page[page.index('id="%s"' % chart):]
            svg = svg[:svg.index("</svg>")]
            self.assertIn(unit, svg, chart)                       # a bar with its value
        # An unreachable server: the report is still made, the section says why.
        p = report("-c", m.config, "--prometheus", "http://127.0.0.1:%d" % free_port(),
                   "--format", "json")
        doc = json.loads(p.stdout)
        self.assertFalse(doc["prometheus"]["available"])
        self.assertIn("Prometheus at", doc["prometheus"]["reason"])
        self.assertIn("warning", p.stderr)


if __name__ == "__main__":
    keyfslib.run()
