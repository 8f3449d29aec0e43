/* test_access.c - access rules (default rule, globs, principals, per-op and
 * list semantics, load errors, reload) and the anomaly signals with an
 * injected clock (bursts, business hours in a time zone, rate limit, auth
 * failure spikes). */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <time.h>
#include <unistd.h>
#include "access.h"
#include "anomaly.h"

/* ---- helpers ---------------------------------------------------------- */

/* Split a space-separated list into l; NULL or "" leaves it empty. */
static void fill(struct strlist *l, const char *items)
{
	if (!items)
		return;
	char *copy = strdup(items), *save = NULL;
	cr_assert_not_null(copy);
	for (char *tok = strtok_r(copy, " ", &save); tok; tok = strtok_r(NULL, " ", &save))
		cr_assert_eq(strlist_add(l, tok), 0);
	free(copy);
}

static void set_rule(struct config_access_rule *r, int line, const char *networks,
                     const char *read, const char *write, const char *remove, const char *list)
{
	memset(r, 0, sizeof(*r));
	r->line = line;
	fill(&r->networks, networks);
	fill(&r->read, read);
	fill(&r->write, write);
	fill(&r->remove, remove);
	fill(&r->list, list);
}

static void clear_rules(struct config_access_rule *r, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		strlist_clear(&r[i].networks);
		strlist_clear(&r[i].read);
		strlist_clear(&r[i].write);
		strlist_clear(&r[i].remove);
		strlist_clear(&r[i].list);
	}
}

static struct caller who(uid_t uid, gid_t gid)
{
	struct caller c;
	memset(&c, 0, sizeof(c));
	c.uid = uid;
	c.gid = gid;
	c.pid = 1;
	c.ngroups = 0;
	return c;
}

/* Build rules from r[0..n) (access_set true) and free the config copy right
 * away: access must not borrow it. */
static struct access *build(struct config_access_rule *r, size_t n, uid_t mount_uid)
{
	struct config_keyfs cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.access = r;
	cfg.n_access = n;
	cfg.access_set = true;
	struct access *a = NULL;
	char err[256] = "";
	int rc = access_new(&cfg, mount_uid, &a, err, sizeof(err));
	cr_assert_eq(rc, 0, "access_new: %d %s", rc, err);
	clear_rules(r, n);
	memset(r, 0x5a, n * sizeof(*r));   /* poison: any borrowed pointer would crash */
	return a;
}

static const enum access_op all_ops[] = { ACCESS_READ, ACCESS_WRITE, ACCESS_REMOVE, ACCESS_LIST };

/* ---- default rule ----------------------------------------------------- */

Test(access, default_mount_user_and_root_only)
{
	struct config_keyfs cfg;
	memset(&cfg, 0, sizeof(cfg));
	struct access *a = NULL;
	char err[128] = "";
	cr_assert_eq(access_new(&cfg, 1000, &a, err, sizeof(err)), 0, "%s", err);

	struct caller owner = who(1000, 1000), root = who(0, 0), nobody = who(65534, 65534);
	struct caller same_group = who(1001, 1000);
	for (size_t i = 0; i < 4; i++) {
		const char *net = all_ops[i] == ACCESS_LIST ? "" : "ethereum-mainnet";
		cr_expect(access_allowed(a, &owner, net, all_ops[i]), "mount user, op %zu", i);
		cr_expect(access_allowed(a, &root, net, all_ops[i]), "root, op %zu", i);
		cr_expect(!access_allowed(a, &nobody, net, all_ops[i]), "nobody, op %zu", i);
		cr_expect(!access_allowed(a, &same_group, net, all_ops[i]),
		          "the mount user's group is not the mount user, op %zu", i);
	}
	cr_expect(access_reload(a, err, sizeof(err)) == 0);
	cr_expect(access_allowed(a, &owner, "x", ACCESS_READ));
	access_free(a);
}

/* ---- rules ------------------------------------------------------------ */

Test(access, network_globs)
{
	struct config_access_rule r[2];
	set_rule(&r[0], 3, "ethereum-* polygon-mainnet", "uid:1001", NULL, NULL, NULL);
	set_rule(&r[1], 7, NULL, "uid:1002", NULL, NULL, NULL);   /* no networks: all */
	struct access *a = build(r, 2, 1000);
	struct caller c1 = who(1001, 1001), c2 = who(1002, 1002);

	cr_expect(access_allowed(a, &c1, "ethereum-mainnet", ACCESS_READ));
	cr_expect(access_allowed(a, &c1, "ethereum-sepolia", ACCESS_READ));
	cr_expect(access_allowed(a, &c1, "polygon-mainnet", ACCESS_READ));
	cr_expect(!access_allowed(a, &c1, "base-mainnet", ACCESS_READ));
	cr_expect(!access_allowed(a, &c1, "ethereum", ACCESS_READ), "glob needs the dash");
	cr_expect(!access_allowed(a, &c1, "polygon-mainnet2", ACCESS_READ), "whole-name match");
	cr_expect(access_allowed(a, &c2, "base-mainnet", ACCESS_READ), "empty networks = all");
	cr_expect(access_allowed(a, &c2, "ethereum-mainnet", ACCESS_READ));
	access_free(a);
}

Test(access, principals_by_name_and_number)
{
	struct config_access_rule r[1];
	set_rule(&r[0], 1, NULL, "user:nobody uid:0 gid:1", "user:daemon group:nogroup", NULL, NULL);
	struct access *a = build(r, 1, 1000);

	struct caller nobody = who(65534, 65534), root = who(0, 0), daemon_user = who(1, 4000);
	struct caller in_gid1 = who(4001, 1), in_nogroup = who(4002, 65534), other = who(4003, 4003);
	cr_expect(access_allowed(a, &nobody, "n", ACCESS_READ), "user:nobody");
	cr_expect(access_allowed(a, &root, "n", ACCESS_READ), "uid:0");
	cr_expect(access_allowed(a, &in_gid1, "n", ACCESS_READ), "gid:1 by primary gid");
	cr_expect(!access_allowed(a, &other, "n", ACCESS_READ));
	cr_expect(access_allowed(a, &daemon_user, "n", ACCESS_WRITE), "user:daemon");
	cr_expect(access_allowed(a, &in_nogroup, "n", ACCESS_WRITE), "group:nogroup by primary gid");
	cr_expect(!access_allowed(a, &root, "n", ACCESS_WRITE), "root is not implicit with rules");
	cr_expect(!access_allowed(a, &in_gid1, "n", ACCESS_WRITE));
	access_free(a);
}

Test(access, supplementary_groups)
{
	struct config_access_rule r[1];
	set_rule(&r[0], 1, NULL, "group:nogroup", NULL, NULL, NULL);
	struct access *a = build(r, 1, 1000);

	struct caller c = who(5000, 5000);
	c.ngroups = 3;
	c.groups[0] = 7;
	c.groups[1] = 100;
	c.groups[2] = 65534;
	cr_expect(access_allowed(a, &c, "n", ACCESS_READ), "third supplementary group");
	c.ngroups = 2;
	cr_expect(!access_allowed(a, &c, "n", ACCESS_READ), "groups beyond ngroups are ignored");
	c.ngroups = -1;
	cr_expect(!access_allowed(a, &c, "n", ACCESS_READ), "unknown groups: primary gid only");
	c.gid = 65534;
	cr_expect(access_allowed(a, &c, "n", ACCESS_READ), "unknown groups, primary gid matches");
	access_free(a);
}

Test(access, operations_are_separate)
{
	struct config_access_rule r[2];
	set_rule(&r[0], 1, "ethereum-*", "uid:1001", "uid:1002", "uid:1003", NULL);
	set_rule(&r[1], 5, "base-*", "uid:1002", NULL, NULL, NULL);
	struct access *a = build(r, 2, 1000);
	struct caller c1 = who(1001, 1001), c2 = who(1002, 1002), c3 = who(1003, 1003);

	cr_expect(access_allowed(a, &c1, "ethereum-mainnet", ACCESS_READ));
	cr_expect(!access_allowed(a, &c1, "ethereum-mainnet", ACCESS_WRITE));
	cr_expect(!access_allowed(a, &c1, "ethereum-mainnet", ACCESS_REMOVE));
	cr_expect(!access_allowed(a, &c1, "", ACCESS_LIST));
	cr_expect(!access_allowed(a, &c2, "ethereum-mainnet", ACCESS_READ), "write does not imply read");
	cr_expect(access_allowed(a, &c2, "ethereum-mainnet", ACCESS_WRITE));
	cr_expect(access_allowed(a, &c2, "base-mainnet", ACCESS_READ), "second rule");
	cr_expect(!access_allowed(a, &c2, "base-mainnet", ACCESS_WRITE), "write only via rule 1");
	cr_expect(access_allowed(a, &c3, "ethereum-mainnet", ACCESS_REMOVE));
	cr_expect(!access_allowed(a, &c3, "ethereum-mainnet", ACCESS_READ));
	access_free(a);
}

Test(access, list_semantics)
{
	struct config_access_rule r[2];
	set_rule(&r[0], 1, "ethereum-*", "uid:1002", NULL, NULL, "uid:1001");
	set_rule(&r[1], 4, "base-*", NULL, NULL, NULL, "group:nogroup");
	struct access *a = build(r, 2, 1000);
	struct caller c1 = who(1001, 1001), c2 = who(1002, 1002), ng = who(1003, 65534);

	cr_expect(access_allowed(a, &c1, "", ACCESS_LIST), "list of keys/ whatever the globs");
	cr_expect(access_allowed(a, &c1, NULL, ACCESS_LIST), "NULL network is the directory");
	cr_expect(access_allowed(a, &ng, "", ACCESS_LIST));
	cr_expect(!access_allowed(a, &c2, "", ACCESS_LIST), "read does not grant list");
	cr_expect(access_allowed(a, &c1, "ethereum-x", ACCESS_LIST), "per-network list: glob");
	cr_expect(!access_allowed(a, &c1, "base-x", ACCESS_LIST), "per-network list: glob");
	cr_expect(!access_allowed(a, &c1, "ethereum-x", ACCESS_READ), "list does not grant read");
	access_free(a);
}

Test(access, empty_rule_list_denies_everyone)
{
	struct config_keyfs cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.access_set = true;
	struct access *a = NULL;
	char err[128] = "";
	cr_assert_eq(access_new(&cfg, 1000, &a, err, sizeof(err)), 0, "%s", err);
	struct caller owner = who(1000, 1000), root = who(0, 0);
	for (size_t i = 0; i < 4; i++) {
		cr_expect(!access_allowed(a, &owner, "n", all_ops[i]));
		cr_expect(!access_allowed(a, &root, "n", all_ops[i]));
	}
	access_free(a);
}

static void expect_load_error(const char *principal, const char *want)
{
	struct config_access_rule r[2];
	set_rule(&r[0], 3, NULL, "uid:1", NULL, NULL, NULL);
	set_rule(&r[1], 12, "ethereum-*", "uid:1", principal, NULL, NULL);
	struct config_keyfs cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.access = r;
	cfg.n_access = 2;
	cfg.access_set = true;
	struct access *a = NULL;
	char err[256] = "";
	int rc = access_new(&cfg, 1000, &a, err, sizeof(err));
	cr_expect_eq(rc, -EINVAL, "%s: rc %d", principal, rc);
	cr_expect_null(a);
	cr_expect(strstr(err, want) != NULL, "%s: got '%s', want '%s'", principal, err, want);
	clear_rules(r, 2);
}

Test(access, load_errors_name_the_line)
{
	expect_load_error("user:keyfs-no-such-user",
	                  "access rule at line 12: unknown user 'keyfs-no-such-user'");
	expect_load_error("group:keyfs-no-such-group",
	                  "access rule at line 12: unknown group 'keyfs-no-such-group'");
	expect_load_error("omikuji", "access rule at line 12: bad principal 'omikuji' in write");
	expect_load_error("uid:abc", "line 12: bad principal 'uid:abc'");
	expect_load_error("uid:-1", "line 12: bad principal 'uid:-1'");
	expect_load_error("uid:4294967295", "line 12: bad principal 'uid:4294967295'");
	expect_load_error("gid:", "line 12: bad principal 'gid:'");
	expect_load_error("user:", "line 12: bad principal 'user:'");
	expect_load_error("host:x", "line 12: bad principal 'host:x'");
}

/* ---- reload ----------------------------------------------------------- */

static void write_passwd(const char *path, const char *extra)
{
	FILE *in = fopen("/etc/passwd", "r"), *out = fopen(path, "w");
	cr_assert(in && out);
	char line[1024];
	while (fgets(line, sizeof(line), in))
		fputs(line, out);
	if (extra)
		fputs(extra, out);
	fclose(in);
	cr_assert_eq(fclose(out), 0);
}

/* Reload needs a name whose id changes between loads: give this test process
 * a private mount namespace and bind-mount edited copies of /etc/passwd (the
 * host's file is never touched).  Criterion runs each test in its own
 * process, so the namespace dies with it. */
Test(access, reload_reresolves_and_keeps_old_rules_on_failure)
{
	if (unshare(CLONE_NEWNS) != 0 ||
	    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
		cr_skip_test("needs CAP_SYS_ADMIN for a private mount namespace: %s",
		             strerror(errno));
	char dir[] = "/tmp/keyfs-access-XXXXXX";
	cr_assert_not_null(mkdtemp(dir));
	char p1[64], p2[64], p3[64];
	snprintf(p1, sizeof(p1), "%s/passwd1", dir);
	snprintf(p2, sizeof(p2), "%s/passwd2", dir);
	snprintf(p3, sizeof(p3), "%s/passwd3", dir);
	write_passwd(p1, "keyfs-reload-test:x:4242:4242::/nonexistent:/usr/sbin/nologin\n");
	write_passwd(p2, NULL);
	write_passwd(p3, "keyfs-reload-test:x:4343:4343::/nonexistent:/usr/sbin/nologin\n");

	cr_assert_eq(mount(p1, "/etc/passwd", NULL, MS_BIND, NULL), 0, "%s", strerror(errno));
	struct config_access_rule r[1];
	set_rule(&r[0], 9, "ethereum-*", "user:keyfs-reload-test", NULL, NULL, NULL);
	struct access *a = build(r, 1, 1000);
	struct caller old_uid = who(4242, 4242), new_uid = who(4343, 4343);
	cr_expect(access_allowed(a, &old_uid, "ethereum-mainnet", ACCESS_READ));
	cr_expect(!access_allowed(a, &new_uid, "ethereum-mainnet", ACCESS_READ));

	/* The user disappears: reload fails, naming the rule, old rules stay. */
	cr_assert_eq(mount(p2, "/etc/passwd", NULL, MS_BIND, NULL), 0, "%s", strerror(errno));
	char err[256] = "";
	cr_expect_eq(access_reload(a, err, sizeof(err)), -EINVAL);
	cr_expect(strstr(err, "access rule at line 9: unknown user 'keyfs-reload-test'") != NULL,
	          "got '%s'", err);
	cr_expect(access_allowed(a, &old_uid, "ethereum-mainnet", ACCESS_READ), "old rules kept");
	cr_expect(!access_allowed(a, &old_uid, "base-mainnet", ACCESS_READ), "old globs kept");

	/* The user comes back with another uid: reload picks it up. */
	cr_assert_eq(mount(p3, "/etc/passwd", NULL, MS_BIND, NULL), 0, "%s", strerror(errno));
	err[0] = 0;
	cr_expect_eq(access_reload(a, err, sizeof(err)), 0, "%s", err);
	cr_expect(access_allowed(a, &new_uid, "ethereum-mainnet", ACCESS_READ));
	cr_expect(!access_allowed(a, &old_uid, "ethereum-mainnet", ACCESS_READ));
	access_free(a);

	umount2("/etc/passwd", MNT_DETACH);
	umount2("/etc/passwd", MNT_DETACH);
	umount2("/etc/passwd", MNT_DETACH);
	unlink(p1);
	unlink(p2);
	unlink(p3);
	rmdir(dir);
}

struct hammer {
	struct access *a;
	volatile int *stop;
	long iterations;
	long wrong;
};

static void *hammer_reader(void *arg)
{
	struct hammer *h = arg;
	struct caller daemon_user = who(1, 1), nobody = who(65534, 65534), root = who(0, 0);
	struct caller supp = who(4000, 4000);
	supp.ngroups = 1;
	supp.groups[0] = 65534;
	while (!__atomic_load_n(h->stop, __ATOMIC_ACQUIRE) || h->iterations < 1000) {
		bool ok = access_allowed(h->a, &daemon_user, "ethereum-mainnet", ACCESS_READ) &&
		          !access_allowed(h->a, &daemon_user, "base-mainnet", ACCESS_READ) &&
		          access_allowed(h->a, &nobody, "base-mainnet", ACCESS_WRITE) &&
		          !access_allowed(h->a, &root, "ethereum-mainnet", ACCESS_READ) &&
		          access_allowed(h->a, &supp, "", ACCESS_LIST);
		if (!ok)
			h->wrong++;
		h->iterations++;
	}
	return NULL;
}

/* 8 readers against a reloader: run in the ASan build to show that the swap
 * never frees a rule set a reader still uses. */
Test(access, concurrent_reload, .timeout = 240)
{
	struct config_access_rule r[2];
	set_rule(&r[0], 1, "ethereum-*", "user:daemon", NULL, NULL, NULL);
	set_rule(&r[1], 2, NULL, NULL, "user:nobody", NULL, "group:nogroup");
	struct access *a = build(r, 2, 1000);

	volatile int stop = 0;
	struct hammer h[8];
	pthread_t t[8];
	for (int i = 0; i < 8; i++) {
		h[i] = (struct hammer){ a, &stop, 0, 0 };
		cr_assert_eq(pthread_create(&t[i], NULL, hammer_reader, &h[i]), 0);
	}
	int reload_failures = 0;
	for (int i = 0; i < 500; i++) {
		char err[256];
		if (access_reload(a, err, sizeof(err)) != 0)
			reload_failures++;
	}
	__atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
	for (int i = 0; i < 8; i++) {
		pthread_join(t[i], NULL);
		cr_expect_eq(h[i].wrong, 0, "reader %d: %ld wrong answers", i, h[i].wrong);
		cr_expect_geq(h[i].iterations, 1000);
	}
	cr_expect_eq(reload_failures, 0);
	access_free(a);
}

/* ---- anomalies -------------------------------------------------------- */

static double fake_now;

static double fake_clock(void)
{
	return fake_now;
}

/* seconds since the epoch of a UTC date */
static double utc(int y, int mon, int d, int h, int min)
{
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = mon - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = min;
	return (double)timegm(&tm);
}

static struct config_keyfs anomaly_cfg(int burst, int window, int auth, int rate)
{
	struct config_keyfs cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.anomaly.burst_reads = burst;
	cfg.anomaly.burst_window_seconds = window;
	cfg.anomaly.auth_failures_per_minute = auth;
	cfg.rate_limit.set = rate > 0;
	cfg.rate_limit.reads_per_minute = rate;
	return cfg;
}

static struct anomaly *anomaly_build(const struct config_keyfs *cfg)
{
	struct anomaly *an = NULL;
	char err[256] = "";
	int rc = anomaly_new(cfg, fake_clock, &an, err, sizeof(err));
	cr_assert_eq(rc, 0, "anomaly_new: %d %s", rc, err);
	return an;
}

/* true: publish the minute first, as the mount's maintenance thread does
 * (anomaly_tick), so the read takes the published state. */
static bool tick_before_read;

static const char *read_at(struct anomaly *an, double t, uid_t uid, bool *deny)
{
	fake_now = t;
	if (tick_before_read)
		anomaly_tick(an);
	struct caller c = who(uid, uid);
	struct anomaly_verdict v = anomaly_check_read(an, &c);
	if (deny)
		*deny = v.deny;
	return v.kind;
}

static bool same_kind(const char *got, const char *want)
{
	return want ? got && strcmp(got, want) == 0 : got == NULL;
}

/* got is evaluated once: it is usually the call under test. */
#define expect_kind(got, want, ...) cr_expect(same_kind((got), (want)), __VA_ARGS__)

Test(anomaly, burst_after_threshold_and_window_slides)
{
	struct config_keyfs cfg = anomaly_cfg(3, 10, 3, 0);
	struct anomaly *an = anomaly_build(&cfg);
	bool deny = true;

	expect_kind(read_at(an, 100, 1000, &deny), NULL, "read 1");
	cr_expect(!deny);
	expect_kind(read_at(an, 101, 1000, NULL), NULL, "read 2");
	expect_kind(read_at(an, 102, 1000, NULL), NULL, "read 3");
	expect_kind(read_at(an, 103, 1000, &deny), "burst", "read 4 is beyond 3 in 10 s");
	cr_expect(!deny, "a burst is a signal, not a denial");
	expect_kind(read_at(an, 104, 1000, NULL), "burst", "read 5");
	expect_kind(read_at(an, 104, 2000, NULL), NULL, "another caller has its own window");
	/* (102.5, 112.5] holds 103, 104 and this one: 3, not more than 3. */
	expect_kind(read_at(an, 112.5, 1000, NULL), NULL, "window slid");
	expect_kind(read_at(an, 112.6, 1000, NULL), "burst", "103, 104, 112.5 and this one: 4 in (102.6, 112.6]");
	expect_kind(read_at(an, 200, 1000, NULL), NULL, "quiet again");
	anomaly_free(an);
}

Test(anomaly, burst_disabled_with_zero)
{
	struct config_keyfs cfg = anomaly_cfg(0, 10, 0, 0);
	struct anomaly *an = anomaly_build(&cfg);
	for (int i = 0; i < 100; i++)
		expect_kind(read_at(an, 50, 1, NULL), NULL, "read %d", i);
	cr_expect_null(anomaly_auth_failure(an));
	anomaly_free(an);
}

static struct config_keyfs hours_cfg(const char *tz, int start, int end, unsigned days)
{
	struct config_keyfs cfg = anomaly_cfg(1000, 10, 3, 0);
	cfg.business_hours.set = true;
	cfg.business_hours.timezone = (char *)tz;
	cfg.business_hours.start_minute = start;
	cfg.business_hours.end_minute = end;
	cfg.business_hours.days_mask = days;
	return cfg;
}

#define MON_FRI 0x3eu

static void check_berlin(const char *tz)
{
	struct config_keyfs cfg = hours_cfg(tz, 9 * 60, 17 * 60, MON_FRI);
	struct anomaly *an = anomaly_build(&cfg);
	/* 2024-06-08 is a Saturday; 2024-06-11 and 2024-01-09 are Tuesdays. */
	expect_kind(read_at(an, utc(2024, 6, 8, 12, 0), 1, NULL), "off_hours", "%s: Saturday noon", tz);
	expect_kind(read_at(an, utc(2024, 6, 11, 8, 0), 1, NULL), NULL, "%s: Tue 10:00 CEST", tz);
	expect_kind(read_at(an, utc(2024, 6, 11, 7, 0), 1, NULL), NULL, "%s: Tue 09:00 CEST", tz);
	expect_kind(read_at(an, utc(2024, 6, 11, 6, 59), 1, NULL), "off_hours", "%s: Tue 08:59 CEST", tz);
	expect_kind(read_at(an, utc(2024, 6, 11, 14, 59), 1, NULL), NULL, "%s: Tue 16:59 CEST", tz);
	expect_kind(read_at(an, utc(2024, 6, 11, 15, 0), 1, NULL), "off_hours", "%s: Tue 17:00 CEST", tz);
	expect_kind(read_at(an, utc(2024, 1, 9, 9, 0), 1, NULL), NULL, "%s: Tue 10:00 CET", tz);
	expect_kind(read_at(an, utc(2024, 1, 9, 7, 30), 1, NULL), "off_hours", "%s: Tue 08:30 CET", tz);
	expect_kind(read_at(an, utc(2024, 1, 9, 16, 30), 1, NULL), "off_hours", "%s: Tue 16:30 UTC = 17:30 CET", tz);
	/* Monday 07:30 UTC is 09:30 in Berlin: inside (it would not be in UTC). */
	expect_kind(read_at(an, utc(2024, 6, 10, 7, 30), 1, NULL), NULL, "%s: Mon 09:30 CEST", tz);
	/* The DST switch: 2024-03-31 01:00 UTC; Monday 2024-04-01 07:30 UTC = 09:30 CEST. */
	expect_kind(read_at(an, utc(2024, 4, 1, 7, 30), 1, NULL), NULL, "%s: first CEST Monday", tz);
	expect_kind(read_at(an, utc(2024, 3, 25, 7, 30), 1, NULL), "off_hours", "%s: last CET Monday 08:30", tz);
	/* Beyond 2037, where TZif files hold no transitions: the footer rule. */
	expect_kind(read_at(an, utc(2040, 7, 10, 7, 30), 1, NULL), NULL, "%s: 2040 Tue 09:30 CEST", tz);
	expect_kind(read_at(an, utc(2040, 12, 11, 7, 30), 1, NULL), "off_hours", "%s: 2040 Tue 08:30 CET", tz);
	anomaly_free(an);
}

Test(anomaly, off_hours_in_a_time_zone)
{
	check_berlin("Europe/Berlin");
}

Test(anomaly, off_hours_with_a_posix_tz_string)
{
	check_berlin("CET-1CEST,M3.5.0,M10.5.0/3");
}

/* The state the maintenance thread publishes once a minute answers as
 * computing it does, across DST and beyond 2037. */
Test(anomaly, off_hours_published_by_the_minute_tick)
{
	tick_before_read = true;
	check_berlin("Europe/Berlin");
	check_berlin("CET-1CEST,M3.5.0,M10.5.0/3");
	tick_before_read = false;
}

/* A published minute is not used for another one: a read one minute past
 * the last tick computes its own answer. */
Test(anomaly, a_stale_tick_is_not_used)
{
	struct config_keyfs cfg = hours_cfg("UTC", 9 * 60, 17 * 60, 0x3eu);
	struct anomaly *an = anomaly_build(&cfg);
	fake_now = utc(2024, 6, 11, 8, 59);   /* Tue 08:59 UTC: closed */
	anomaly_tick(an);
	expect_kind(read_at(an, utc(2024, 6, 11, 8, 59), 1, NULL), "off_hours", "08:59 published");
	expect_kind(read_at(an, utc(2024, 6, 11, 9, 0), 1, NULL), NULL, "09:00 not published: computed");
	anomaly_free(an);
}

Test(anomaly, off_hours_utc_and_overnight_shift)
{
	struct config_keyfs cfg = hours_cfg("UTC", 9 * 60, 17 * 60, MON_FRI);
	struct anomaly *an = anomaly_build(&cfg);
	expect_kind(read_at(an, utc(2024, 6, 11, 8, 0), 1, NULL), "off_hours", "Tue 08:00 UTC");
	expect_kind(read_at(an, utc(2024, 6, 11, 9, 0), 1, NULL), NULL, "Tue 09:00 UTC");
	anomaly_free(an);

	/* 22:00-06:00 starting Monday to Friday: Saturday 03:00 belongs to Friday's shift. */
	cfg = hours_cfg("UTC", 22 * 60, 6 * 60, MON_FRI);
	an = anomaly_build(&cfg);
	expect_kind(read_at(an, utc(2024, 6, 8, 3, 0), 1, NULL), NULL, "Sat 03:00, Friday's shift");
	expect_kind(read_at(an, utc(2024, 6, 10, 3, 0), 1, NULL), "off_hours", "Mon 03:00, Sunday off");
	expect_kind(read_at(an, utc(2024, 6, 10, 22, 0), 1, NULL), NULL, "Mon 22:00");
	expect_kind(read_at(an, utc(2024, 6, 10, 12, 0), 1, NULL), "off_hours", "Mon noon");
	anomaly_free(an);
}

Test(anomaly, unknown_time_zone_is_an_error)
{
	struct config_keyfs cfg = hours_cfg("Europe/Nowhere", 540, 1020, MON_FRI);
	struct anomaly *an = NULL;
	char err[256] = "";
	cr_expect_eq(anomaly_new(&cfg, fake_clock, &an, err, sizeof(err)), -EINVAL);
	cr_expect_null(an);
	cr_expect(strstr(err, "Europe/Nowhere") != NULL, "got '%s'", err);
	cfg.business_hours.timezone = "../../etc/passwd";
	cr_expect_eq(anomaly_new(&cfg, fake_clock, &an, err, sizeof(err)), -EINVAL);
}

Test(anomaly, posix_tz_strings_are_checked)
{
	static const char *const good[] = { "EST5EDT,M3.2.0,M11.1.0", "<+03>-3", "JST-9",
	                                    "CET-1CEST,M3.5.0/2,M10.5.0/3", "AAA+5:30BBB,J60,300/1:30" };
	static const char *const bad[] = { "ABC", "CET-1CEST,M3.5.0", "XX-1", "CET-25",
	                                   "CET-1CEST,M13.1.0,M10.5.0", "CET-1 ", "" };
	struct anomaly *an = NULL;
	char err[256];
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		struct config_keyfs cfg = hours_cfg(good[i], 540, 1020, MON_FRI);
		cr_expect_eq(anomaly_new(&cfg, fake_clock, &an, err, sizeof(err)), 0, "%s: %s", good[i], err);
		anomaly_free(an);
		an = NULL;
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct config_keyfs cfg = hours_cfg(bad[i], 540, 1020, MON_FRI);
		cr_expect_eq(anomaly_new(&cfg, fake_clock, &an, err, sizeof(err)), -EINVAL, "'%s'", bad[i]);
	}
}

Test(anomaly, rate_limit_denies_and_recovers)
{
	struct config_keyfs cfg = anomaly_cfg(1000, 10, 3, 5);
	struct anomaly *an = anomaly_build(&cfg);
	bool deny;
	for (int i = 0; i < 5; i++) {
		deny = true;
		expect_kind(read_at(an, 1000 + i, 42, &deny), NULL, "read %d", i + 1);
		cr_expect(!deny, "read %d", i + 1);
	}
	expect_kind(read_at(an, 1005, 42, &deny), "rate_limited", "read 6 within 60 s");
	cr_expect(deny);
	expect_kind(read_at(an, 1030, 42, &deny), "rate_limited", "still within the minute");
	cr_expect(deny);
	expect_kind(read_at(an, 1030, 43, &deny), NULL, "other uid unaffected");
	cr_expect(!deny);
	/* Denied reads do not count: at 1060.5 the read at 1000 has left the window. */
	expect_kind(read_at(an, 1060.5, 42, &deny), NULL, "recovered");
	cr_expect(!deny);
	expect_kind(read_at(an, 1060.6, 42, &deny), "rate_limited", "1001-1004 and 1060.5");
	cr_expect(deny);
	expect_kind(read_at(an, 1200, 42, &deny), NULL, "quiet minute");
	cr_expect(!deny);
	/* A wall clock stepped back by an hour must not lock the caller out. */
	for (int i = 0; i < 4; i++)
		read_at(an, 1201 + i, 42, NULL);
	expect_kind(read_at(an, 1206, 42, &deny), "rate_limited", "full again");
	expect_kind(read_at(an, 1206 - 3600, 42, &deny), NULL, "clock stepped back");
	cr_expect(!deny);
	anomaly_free(an);
}

Test(anomaly, precedence_rate_limit_over_burst_over_off_hours)
{
	struct config_keyfs cfg = anomaly_cfg(2, 10, 3, 3);
	cfg.business_hours.set = true;
	cfg.business_hours.timezone = "UTC";
	cfg.business_hours.start_minute = 0;
	cfg.business_hours.end_minute = 1440;
	cfg.business_hours.days_mask = 0;   /* never open */
	struct anomaly *an = anomaly_build(&cfg);
	bool deny;
	expect_kind(read_at(an, 10, 7, &deny), "off_hours", "1");
	expect_kind(read_at(an, 11, 7, &deny), "off_hours", "2");
	expect_kind(read_at(an, 12, 7, &deny), "burst", "3: burst beats off_hours");
	cr_expect(!deny);
	expect_kind(read_at(an, 13, 7, &deny), "rate_limited", "4: rate limit beats burst");
	cr_expect(deny);
	anomaly_free(an);
}

Test(anomaly, invalid_rate_limit)
{
	struct config_keyfs cfg = anomaly_cfg(20, 10, 3, 0);
	cfg.rate_limit.set = true;
	cfg.rate_limit.reads_per_minute = 0;
	struct anomaly *an = NULL;
	char err[256] = "";
	cr_expect_eq(anomaly_new(&cfg, fake_clock, &an, err, sizeof(err)), -EINVAL);
	cr_expect(strstr(err, "reads_per_minute") != NULL, "got '%s'", err);
}

Test(anomaly, auth_failures_threshold)
{
	struct config_keyfs cfg = anomaly_cfg(20, 10, 3, 0);
	struct anomaly *an = anomaly_build(&cfg);
	fake_now = 500;
	cr_expect_null(anomaly_auth_failure(an), "1");
	fake_now = 501;
	cr_expect_null(anomaly_auth_failure(an), "2");
	fake_now = 502;
	cr_expect_null(anomaly_auth_failure(an), "3");
	fake_now = 503;
	expect_kind(anomaly_auth_failure(an), "auth_failures", "4 within a minute");
	fake_now = 504;
	expect_kind(anomaly_auth_failure(an), "auth_failures", "5");
	/* (501.5, 561.5] holds 502, 503, 504: with this one 4 > 3. */
	fake_now = 561.5;
	expect_kind(anomaly_auth_failure(an), "auth_failures", "still 4 in the window");
	/* (503.5, 563.5] holds 504, 561.5: with this one 3. */
	fake_now = 563.5;
	cr_expect_null(anomaly_auth_failure(an), "window slid");
	fake_now = 700;
	cr_expect_null(anomaly_auth_failure(an), "quiet");
	/* Reads are unaffected by auth failures. */
	expect_kind(read_at(an, 700, 1, NULL), NULL, "read");
	anomaly_free(an);
}
