/* test_audit.c - the audit log: line format, hash chain, verify, reopen,
 * restart and write failures (fs/audit.c). */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "audit.h"
#include "metrics.h"
#include "secret.h"
#include "strbuf.h"

static char tmpdir[64];
static char logpath[128];

static void setup(void)
{
	strcpy(tmpdir, "/tmp/test-audit-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
	snprintf(logpath, sizeof(logpath), "%s/audit.log", tmpdir);
}

static int remove_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	return remove(p);
}

static void teardown(void)
{
	nftw(tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(audit, .init = setup, .fini = teardown);

/* --- helpers --------------------------------------------------------------- */

static struct audit *open_log(const char *path, enum audit_failure mode)
{
	char err[256] = "";
	struct audit *a = NULL;
	int rc = audit_open(path, mode, &a, err, sizeof(err));
	cr_assert_eq(rc, 0, "audit_open(%s): %d %s", path, rc, err);
	cr_assert_not_null(a);
	return a;
}

static struct audit_record record(enum key_op op, const char *network, bool status)
{
	struct audit_record r = {
		.op = op, .network = network, .storage_type = "vault", .status = status,
		.uid = 1001, .gid = 1002, .pid = 4242, .process = "cat",
		.error = status ? NULL : "backend unreachable",
	};
	return r;
}

static void write_n(struct audit *a, int n, int first)
{
	char net[32];
	for (int i = 0; i < n; i++) {
		snprintf(net, sizeof(net), "net-%d", first + i);
		struct audit_record r = record(KEY_OP_GET, net, true);
		cr_assert_eq(audit_write(a, &r), 0);
	}
}

/* The file as lines (with their newlines; the last may lack one). */
struct lines {
	char **v;
	size_t n;
};

static struct lines read_lines(const char *path)
{
	struct lines l = { NULL, 0 };
	FILE *f = fopen(path, "r");
	cr_assert_not_null(f, "open %s", path);
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	while ((n = getline(&line, &cap, f)) >= 0) {
		l.v = realloc(l.v, (l.n + 1) * sizeof(*l.v));
		cr_assert_not_null(l.v);
		l.v[l.n++] = strdup(line);
	}
	free(line);
	fclose(f);
	return l;
}

static void write_lines(const char *path, const struct lines *l)
{
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	for (size_t i = 0; i < l->n; i++)
		fputs(l->v[i], f);
	cr_assert_eq(fclose(f), 0);
}

static void free_lines(struct lines *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

/* Run verify; returns its result, the bad line and the report text. */
static int verify(const char *path, long *bad, char *report, size_t size)
{
	FILE *rep = fmemopen(report, size, "w");
	cr_assert_not_null(rep);
	*bad = -1;
	int rc = audit_verify(path, rep, bad);
	fclose(rep);
	return rc;
}

static void expect_intact(const char *path, const char *summary)
{
	char report[4096] = "";
	long bad;
	int rc = verify(path, &bad, report, sizeof(report));
	cr_expect_eq(rc, 0, "verify failed at line %ld: %s", bad, report);
	cr_expect_eq(bad, 0);
	if (summary)
		cr_expect_not_null(strstr(report, summary), "summary '%s' not in: %s", summary, report);
}

static void expect_bad(const char *path, long want_line, const char *reason)
{
	char report[4096] = "";
	long bad;
	int rc = verify(path, &bad, report, sizeof(report));
	cr_expect_eq(rc, 1, "verify passed: %s", report);
	cr_expect_eq(bad, want_line, "bad line %ld, expected %ld: %s", bad, want_line, report);
	if (reason)
		cr_expect_not_null(strstr(report, reason), "'%s' not in: %s", reason, report);
}

static json_t *parse(const char *line)
{
	json_error_t jerr;
	json_t *j = json_loads(line, JSON_REJECT_DUPLICATES, &jerr);
	cr_assert_not_null(j, "not JSON (%s): %s", jerr.text, line);
	return j;
}

/* The documented chain, computed independently of audit.c. */
static void sha256_hex(const char *prev, const char *data, size_t len, char out[65])
{
	unsigned char d[32];
	unsigned int n = 0;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	cr_assert_not_null(md);
	cr_assert_eq(EVP_DigestInit_ex(md, EVP_sha256(), NULL), 1);
	EVP_DigestUpdate(md, prev, 64);
	EVP_DigestUpdate(md, data, len);
	EVP_DigestFinal_ex(md, d, &n);
	EVP_MD_CTX_free(md);
	for (int i = 0; i < 32; i++)
		sprintf(out + 2 * i, "%02x", d[i]);
}

/* --- format ---------------------------------------------------------------- */

static void expect_keys_in_order(json_t *j, const char *const *keys, size_t n, size_t lineno)
{
	size_t i = 0;
	for (void *it = json_object_iter(j); it; it = json_object_iter_next(j, it), i++) {
		cr_assert_lt(i, n, "line %zu: extra key %s", lineno, json_object_iter_key(it));
		cr_expect_str_eq(json_object_iter_key(it), keys[i], "line %zu: key %zu", lineno, i);
	}
	cr_expect_eq(i, n, "line %zu: %zu keys, expected %zu", lineno, i, n);
}

Test(audit, every_field_typed_and_in_order)
{
	struct audit *a = open_log(logpath, AUDIT_FAILURE_DENY);
	struct audit_record recs[8];
	recs[0] = record(KEY_OP_GET, "ethereum-mainnet", true);
	recs[0].cached = true;
	recs[1] = record(KEY_OP_GET, "ethereum-mainnet", true);          /* uncached */
	recs[2] = record(KEY_OP_GET, "base", true);
	recs[2].refresh = true;
	recs[3] = record(KEY_OP_STORE, "base", true);
	recs[3].storage_type = "file";
	recs[4] = record(KEY_OP_REMOVE, "base", true);
	recs[5] = record(KEY_OP_LIST, "", true);
	recs[5].process = NULL;
	recs[6] = record(KEY_OP_GET, "ethereum-mainnet", false);         /* denied */
	recs[6].error = "access denied";
	recs[6].anomaly = "off_hours";
	recs[6].uid = 65534;
	recs[7] = record(KEY_OP_STORE, "odd\"net\\\n", false);          /* escaping */
	recs[7].process = "we\"ird\tcomm";
	for (size_t i = 0; i < 8; i++)
		cr_assert_eq(audit_write(a, &recs[i]), 0, "write %zu", i);
	audit_close(a);

	struct lines l = read_lines(logpath);
	cr_assert_eq(l.n, 8, "one line per record, got %zu", l.n);
	static const char *const base[] = { "timestamp", "level", "target", "message",
		"operation", "network", "storage_type", "status" };
	char prev[65];
	memset(prev, '0', 64);
	prev[64] = 0;
	for (size_t i = 0; i < l.n; i++) {
		const struct audit_record *r = &recs[i];
		json_t *j = parse(l.v[i]);

		/* Expected keys in order for this record. */
		const char *keys[20];
		size_t n = 0;
		for (size_t k = 0; k < sizeof(base) / sizeof(base[0]); k++)
			keys[n++] = base[k];
		if (r->op == KEY_OP_GET)
			keys[n++] = "cached";
		if (r->refresh)
			keys[n++] = "refresh";
		keys[n++] = "uid"; keys[n++] = "gid"; keys[n++] = "pid"; keys[n++] = "process";
		if (r->error)
			keys[n++] = "error";
		if (r->anomaly)
			keys[n++] = "anomaly";
		keys[n++] = "seq"; keys[n++] = "hash";
		expect_keys_in_order(j, keys, n, i + 1);

		const char *ts = json_string_value(json_object_get(j, "timestamp"));
		cr_assert_not_null(ts);
		int Y, M, D, h, m, s, us;
		char z = 0;
		cr_expect_eq(strlen(ts), 27, "timestamp %s", ts);
		cr_expect_eq(sscanf(ts, "%4d-%2d-%2dT%2d:%2d:%2d.%6d%c", &Y, &M, &D, &h, &m, &s, &us, &z),
		             8, "timestamp %s", ts);
		cr_expect_eq(z, 'Z');
		cr_expect_geq(Y, 2024);

		cr_expect_str_eq(json_string_value(json_object_get(j, "level")),
		                 r->status ? "info" : "warn");
		cr_expect_str_eq(json_string_value(json_object_get(j, "target")), "omikuji::audit");
		cr_expect_str_eq(json_string_value(json_object_get(j, "message")), "Key storage operation");
		cr_expect_str_eq(json_string_value(json_object_get(j, "operation")), key_op_name(r->op));
		cr_expect_str_eq(json_string_value(json_object_get(j, "network")),
		                 r->op == KEY_OP_LIST ? "" : r->network);
		cr_expect_str_eq(json_string_value(json_object_get(j, "storage_type")), r->storage_type);
		cr_expect(json_is_boolean(json_object_get(j, "status")));
		cr_expect_eq(json_is_true(json_object_get(j, "status")), r->status);
		if (r->op == KEY_OP_GET) {
			cr_expect(json_is_boolean(json_object_get(j, "cached")));
			cr_expect_eq(json_is_true(json_object_get(j, "cached")), r->cached);
		}
		if (r->refresh)
			cr_expect(json_is_true(json_object_get(j, "refresh")));
		cr_expect(json_is_integer(json_object_get(j, "uid")));
		cr_expect_eq(json_integer_value(json_object_get(j, "uid")), (json_int_t)r->uid);
		cr_expect_eq(json_integer_value(json_object_get(j, "gid")), (json_int_t)r->gid);
		cr_expect_eq(json_integer_value(json_object_get(j, "pid")), (json_int_t)r->pid);
		cr_expect_str_eq(json_string_value(json_object_get(j, "process")),
		                 r->process ? r->process : "");
		if (r->error)
			cr_expect_str_eq(json_string_value(json_object_get(j, "error")), r->error);
		if (r->anomaly)
			cr_expect_str_eq(json_string_value(json_object_get(j, "anomaly")), r->anomaly);
		cr_expect(json_is_integer(json_object_get(j, "seq")));
		cr_expect_eq(json_integer_value(json_object_get(j, "seq")), (json_int_t)(i + 1));

		/* hash = hex(SHA-256(prev || bytes before ,"hash":")) */
		const char *hash = json_string_value(json_object_get(j, "hash"));
		cr_assert_not_null(hash);
		cr_expect_eq(strlen(hash), 64);
		cr_expect_eq(strspn(hash, "0123456789abcdef"), 64, "lower hex: %s", hash);
		const char *cut = strstr(l.v[i], ",\"hash\":\"");
		cr_assert_not_null(cut);
		char want[65];
		sha256_hex(prev, l.v[i], (size_t)(cut - l.v[i]), want);
		cr_expect_str_eq(hash, want, "line %zu: chain hash", i + 1);
		cr_expect_str_eq(cut + 9 + 64, "\"}\n", "line %zu ends with the hash", i + 1);
		memcpy(prev, hash, 65);
		json_decref(j);
	}
	free_lines(&l);
	expect_intact(logpath, "audit log OK: 8 lines, seq 1..8");
}

Test(audit, creates_parent_dirs_and_private_file)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/a/b/audit.log", tmpdir);
	struct audit *a = open_log(path, AUDIT_FAILURE_DENY);
	write_n(a, 1, 0);
	audit_close(a);
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);
	cr_expect_eq(st.st_mode & 07777, 0600, "file mode %o", st.st_mode & 07777);
	snprintf(path, sizeof(path), "%s/a/b", tmpdir);
	cr_assert_eq(stat(path, &st), 0);
	cr_expect_eq(st.st_mode & 07777, 0700, "dir mode %o", st.st_mode & 07777);
}

/* --- concurrency --------------------------------------------------------- */

struct writer {
	struct audit *a;
	int id;
	int failures;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	char net[32];
	for (int i = 0; i < 125; i++) {
		snprintf(net, sizeof(net), "t%d-%d", w->id, i);
		struct audit_record r = record(i % 4 == 0 ? KEY_OP_STORE : KEY_OP_GET, net, i % 7 != 0);
		r.pid = 1000 + w->id;
		if (audit_write(w->a, &r) != 0)
			w->failures++;
	}
	return NULL;
}

Test(audit, eight_threads_keep_the_chain)
{
	struct audit *a = open_log(logpath, AUDIT_FAILURE_DENY);
	pthread_t t[8];
	struct writer w[8];
	for (int i = 0; i < 8; i++) {
		w[i] = (struct writer){ a, i, 0 };
		cr_assert_eq(pthread_create(&t[i], NULL, writer_main, &w[i]), 0);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(t[i], NULL);
		cr_expect_eq(w[i].failures, 0, "thread %d", i);
	}
	audit_close(a);

	struct lines l = read_lines(logpath);
	cr_expect_eq(l.n, 1000);
	/* Every writer's lines are all there, in its own order. */
	int next[8] = { 0 };
	for (size_t i = 0; i < l.n; i++) {
		json_t *j = parse(l.v[i]);
		int id, k;
		cr_assert_eq(sscanf(json_string_value(json_object_get(j, "network")), "t%d-%d", &id, &k), 2);
		cr_assert(id >= 0 && id < 8);
		cr_expect_eq(k, next[id], "writer %d out of order", id);
		next[id] = k + 1;
		json_decref(j);
	}
	free_lines(&l);
	expect_intact(logpath, "audit log OK: 1000 lines, seq 1..1000");
}

/* --- tampering ----------------------------------------------------------- */

static void write_ten(void)
{
	struct audit *a = open_log(logpath, AUDIT_FAILURE_DENY);
	write_n(a, 10, 0);
	audit_close(a);
	expect_intact(logpath, "audit log OK: 10 lines, seq 1..10");
}

Test(audit, detects_edited_character)
{
	write_ten();
	struct lines l = read_lines(logpath);
	char *p = strstr(l.v[4], "\"net-4\"");
	cr_assert_not_null(p);
	p[5] = '9';                        /* net-4 -> net-9: still valid JSON */
	write_lines(logpath, &l);
	free_lines(&l);
	expect_bad(logpath, 5, "hash mismatch");
}

Test(audit, detects_edited_hash_digit)
{
	write_ten();
	struct lines l = read_lines(logpath);
	char *p = strstr(l.v[4], ",\"hash\":\"");
	cr_assert_not_null(p);
	p += 9;
	*p = *p == 'a' ? 'b' : 'a';
	write_lines(logpath, &l);
	free_lines(&l);
	expect_bad(logpath, 5, "hash mismatch");
}

Test(audit, detects_edited_uid)
{
	write_ten();
	struct lines l = read_lines(logpath);
	char *p = strstr(l.v[4], "\"uid\":1001");
	cr_assert_not_null(p);
	p[9] = '0';                        /* uid 1001 -> 1000 */
	write_lines(logpath, &l);
	free_lines(&l);
	expect_bad(logpath, 5, "hash mismatch");
}

Test(audit, detects_removed_line)
{
	write_ten();
	struct lines l = read_lines(logpath);
	free(l.v[4]);
	memmove(&l.v[4], &l.v[5], (l.n - 5) * sizeof(*l.v));
	l.n--;
	write_lines(logpath, &l);
	free_lines(&l);
	expect_bad(logpath, 5, "seq 6, expected 5");
}

Test(audit, detects_swapped_lines)
{
	write_ten();
	struct lines l = read_lines(logpath);
	char *t = l.v[3];
	l.v[3] = l.v[4];
	l.v[4] = t;
	write_lines(logpath, &l);
	free_lines(&l);
	expect_bad(logpath, 4, "seq 5, expected 4");
}

Test(audit, detects_truncated_final_line)
{
	write_ten();
	struct stat st;
	cr_assert_eq(stat(logpath, &st), 0);
	cr_assert_eq(truncate(logpath, st.st_size - 40), 0);
	expect_bad(logpath, 10, "truncated");
}

Test(audit, detects_truncation_inside_an_earlier_line)
{
	write_ten();
	struct lines l = read_lines(logpath);
	l.v[6][strlen(l.v[6]) / 2] = 0;    /* keep the first half of line 7 only */
	l.n = 7;
	write_lines(logpath, &l);
	for (size_t i = 0; i < 10; i++)
		free(l.v[i]);
	free(l.v);
	expect_bad(logpath, 7, "truncated");
}

Test(audit, detects_non_json_line)
{
	write_ten();
	struct lines l = read_lines(logpath);
	free(l.v[2]);
	l.v[2] = strdup("hello, not an audit line\n");
	write_lines(logpath, &l);
	free_lines(&l);
	expect_bad(logpath, 3, "not valid JSON");
}

Test(audit, detects_a_recomputed_forgery_of_a_missing_field)
{
	/* A line whose hash is right but that lacks a field is still bad. */
	write_ten();
	struct lines l = read_lines(logpath);
	char *p = strstr(l.v[0], ",\"process\":\"cat\"");
	cr_assert_not_null(p);
	memmove(p, p + strlen(",\"process\":\"cat\""), strlen(p + strlen(",\"process\":\"cat\"")) + 1);
	char zero[65], h[65];
	memset(zero, '0', 64);
	zero[64] = 0;
	char *cut = strstr(l.v[0], ",\"hash\":\"");
	sha256_hex(zero, l.v[0], (size_t)(cut - l.v[0]), h);
	memcpy(cut + 9, h, 64);
	write_lines(logpath, &l);
	free_lines(&l);
	expect_bad(logpath, 1, "missing");
}

Test(audit, empty_and_missing_files)
{
	int fd = open(logpath, O_CREAT | O_WRONLY, 0600);
	cr_assert_geq(fd, 0);
	close(fd);
	expect_intact(logpath, "audit log OK: 0 lines");

	char missing[160];
	snprintf(missing, sizeof(missing), "%s/nope.log", tmpdir);
	char report[512] = "";
	long bad;
	cr_expect_eq(verify(missing, &bad, report, sizeof(report)), -ENOENT,
	             "a missing file is an error, not an intact log");
	cr_expect_eq(bad, 0);
}

/* --- rotation and restart ------------------------------------------------ */

static long long line_seq(const char *line)
{
	json_t *j = parse(line);
	long long s = json_integer_value(json_object_get(j, "seq"));
	json_decref(j);
	return s;
}

Test(audit, reopen_after_rename_continues_the_chain)
{
	struct audit *a = open_log(logpath, AUDIT_FAILURE_DENY);
	write_n(a, 10, 0);
	char rotated[160];
	snprintf(rotated, sizeof(rotated), "%s.1", logpath);
	cr_assert_eq(rename(logpath, rotated), 0);
	cr_assert_eq(audit_reopen(a), 0);
	write_n(a, 6, 10);
	audit_close(a);

	expect_intact(rotated, "audit log OK: 10 lines, seq 1..10");
	/* Alone, the new file misses its start (contract section 9). */
	expect_bad(logpath, 1, "chain starts at seq 11: lines 1..10 are missing");
	struct lines l = read_lines(logpath);
	cr_assert_eq(l.n, 6);
	cr_expect_eq(line_seq(l.v[0]), 11);
	free_lines(&l);

	/* The rotated files concatenated oldest first form one chain. */
	char all[160];
	snprintf(all, sizeof(all), "%s/all.log", tmpdir);
	struct lines old = read_lines(rotated), cur = read_lines(logpath), both = { NULL, 0 };
	both.v = calloc(old.n + cur.n, sizeof(char *));
	memcpy(both.v, old.v, old.n * sizeof(char *));
	memcpy(both.v + old.n, cur.v, cur.n * sizeof(char *));
	both.n = old.n + cur.n;
	write_lines(all, &both);
	free(both.v);
	expect_intact(all, "audit log OK: 16 lines, seq 1..16");

	/* ...and a line edited at the start of the new file breaks that link. */
	char *p = strstr(cur.v[0], "\"net-10\"");
	cr_assert_not_null(p);
	p[5] = '7';
	both.v = calloc(old.n + cur.n, sizeof(char *));
	memcpy(both.v, old.v, old.n * sizeof(char *));
	memcpy(both.v + old.n, cur.v, cur.n * sizeof(char *));
	both.n = old.n + cur.n;
	write_lines(all, &both);
	free(both.v);
	expect_bad(all, 11, "hash mismatch");
	free_lines(&old);
	free_lines(&cur);
}

Test(audit, restart_continues_the_chain)
{
	struct audit *a = open_log(logpath, AUDIT_FAILURE_DENY);
	write_n(a, 10, 0);
	audit_close(a);
	a = open_log(logpath, AUDIT_FAILURE_DENY);
	write_n(a, 10, 10);
	audit_close(a);
	expect_intact(logpath, "audit log OK: 20 lines, seq 1..20");
}

Test(audit, restart_reads_back_past_long_lines_and_junk)
{
	/* The last valid line starts more than one read block before the end
	 * (long lines, then junk appended): open still finds it. */
	struct audit *a = open_log(logpath, AUDIT_FAILURE_DENY);
	char *big = malloc(50000);
	cr_assert_not_null(big);
	memset(big, 'x', 49999);
	big[49999] = 0;
	for (int i = 0; i < 3; i++) {
		struct audit_record r = record(KEY_OP_GET, "net", false);
		r.error = big;
		cr_assert_eq(audit_write(a, &r), 0);
	}
	free(big);
	audit_close(a);
	FILE *f = fopen(logpath, "a");
	cr_assert_not_null(f);
	for (int i = 0; i < 100; i++)
		fprintf(f, "junk %0494d\n", i);
	fclose(f);

	a = open_log(logpath, AUDIT_FAILURE_DENY);
	write_n(a, 2, 0);
	audit_close(a);
	expect_bad(logpath, 4, "not valid JSON");
	struct lines l = read_lines(logpath);
	cr_assert_eq(l.n, 105);
	cr_expect_eq(line_seq(l.v[103]), 4, "seq continues after the junk");
	/* Drop the junk: one intact chain. */
	for (size_t i = 3; i < 103; i++)
		free(l.v[i]);
	memmove(&l.v[3], &l.v[103], 2 * sizeof(*l.v));
	l.n = 5;
	write_lines(logpath, &l);
	free_lines(&l);
	expect_intact(logpath, "audit log OK: 5 lines, seq 1..5");
}

Test(audit, restart_after_torn_write_continues_from_last_valid_line)
{
	write_ten();
	/* A crash mid-write: half a line, no newline. */
	struct lines l = read_lines(logpath);
	FILE *f = fopen(logpath, "a");
	cr_assert_not_null(f);
	fwrite(l.v[9], 1, strlen(l.v[9]) / 2, f);
	fclose(f);
	free_lines(&l);

	struct audit *a = open_log(logpath, AUDIT_FAILURE_DENY);
	write_n(a, 3, 10);
	audit_close(a);

	expect_bad(logpath, 11, "not valid JSON");
	l = read_lines(logpath);
	cr_assert_eq(l.n, 14, "the torn line stays on its own line");
	cr_expect_eq(line_seq(l.v[11]), 11, "seq continues from the last valid line");
	cr_expect_eq(line_seq(l.v[13]), 13);
	/* Without the torn line, the chain is whole again. */
	free(l.v[10]);
	memmove(&l.v[10], &l.v[11], 3 * sizeof(*l.v));
	l.n--;
	write_lines(logpath, &l);
	free_lines(&l);
	expect_intact(logpath, "audit log OK: 13 lines, seq 1..13");
}

/* --- write failures ------------------------------------------------------ */

/* The audit-write-error counter from the metrics exposition, -1 when the
 * registry does not render it. */
static double audit_error_metric(void)
{
	struct strbuf out = STRBUF_INIT;
	double v = -1;
	if (metrics_render(&out) == 0 && out.buf) {
		const char *p = strstr(out.buf, "\nomikuji_keyfs_audit_write_errors_total ");
		if (p)
			v = strtod(p + strlen("\nomikuji_keyfs_audit_write_errors_total "), NULL);
	}
	strbuf_reset(&out);
	return v;
}

Test(audit, write_failure_deny_mode_fails_the_access)
{
	if (access("/dev/full", W_OK) != 0)
		cr_skip_test("/dev/full is not available");
	struct audit *a = open_log("/dev/full", AUDIT_FAILURE_DENY);
	struct audit_record r = record(KEY_OP_GET, "ethereum-mainnet", true);
	cr_expect_eq(audit_write(a, &r), -EIO);
	cr_expect_eq(audit_write(a, &r), -EIO, "and again: the chain did not advance into a bad state");
	audit_close(a);
}

Test(audit, write_failure_allow_mode_counts_and_continues)
{
	if (access("/dev/full", W_OK) != 0)
		cr_skip_test("/dev/full is not available");
	metrics_init();
	double before = audit_error_metric();
	struct audit *a = open_log("/dev/full", AUDIT_FAILURE_ALLOW);
	struct audit_record r = record(KEY_OP_GET, "ethereum-mainnet", true);
	cr_expect_eq(audit_write(a, &r), 0);
	cr_expect_eq(audit_write(a, &r), 0);
	audit_close(a);
	double after = audit_error_metric();
	cr_assert_geq(before, 0, "metrics_render() has no omikuji_keyfs_audit_write_errors_total");
	cr_expect_eq(after - before, 2.0, "audit write errors %g -> %g", before, after);
}

Test(audit, failed_write_does_not_break_the_chain)
{
	/* A record over the size cap fails; the next one chains from the last
	 * good line. */
	struct audit *a = open_log(logpath, AUDIT_FAILURE_DENY);
	write_n(a, 3, 0);
	char *huge = malloc(200000);
	cr_assert_not_null(huge);
	memset(huge, 'y', 199999);
	huge[199999] = 0;
	struct audit_record r = record(KEY_OP_GET, "net", false);
	r.error = huge;
	cr_expect_eq(audit_write(a, &r), -EIO);
	free(huge);
	write_n(a, 3, 3);
	audit_close(a);
	expect_intact(logpath, "audit log OK: 6 lines, seq 1..6");
}

/* --- issue 8: one chain over files, --start, --expect-seq, intent lines ---- */

/* Verify files as one chain with options; returns the result, fills report. */
static int verify_chain(const char *const *files, size_t n, const struct audit_verify_options *o,
                        size_t *bad_file, long *bad_line, char *report, size_t size)
{
	FILE *rep = fmemopen(report, size, "w");
	cr_assert_not_null(rep);
	int rc = audit_verify_files(files, n, o, rep, bad_file, bad_line);
	fclose(rep);
	return rc;
}

/* Write lines [from, to) of l to path. */
static void write_range(const char *path, const struct lines *l, size_t from, size_t to)
{
	struct lines part = { l->v + from, to - from };
	write_lines(path, &part);
}

/* "SEQ:HASH" of line i (0-based) of l. */
static void start_of(const struct lines *l, size_t i, char *out, size_t size)
{
	json_t *root = json_loads(l->v[i], 0, NULL);
	cr_assert_not_null(root);
	snprintf(out, size, "%lld:%s", (long long)json_integer_value(json_object_get(root, "seq")),
	         json_string_value(json_object_get(root, "hash")));
	json_decref(root);
}

Test(audit, rotated_files_verify_as_one_chain_in_order)
{
	struct audit *a = open_log(logpath, AUDIT_FAILURE_DENY);
	write_n(a, 12, 0);
	audit_close(a);
	struct lines l = read_lines(logpath);
	char f1[160], f2[160], f3[160], report[4096] = "";
	snprintf(f1, sizeof(f1), "%s/a.2", tmpdir);
	snprintf(f2, sizeof(f2), "%s/a.1", tmpdir);
	snprintf(f3, sizeof(f3), "%s/a", tmpdir);
	write_range(f1, &l, 0, 4);
	write_range(f2, &l, 4, 9);
	write_range(f3, &l, 9, 12);
	size_t bf;
	long bl;
	const char *in_order[] = { f1, f2, f3 };
	cr_expect_eq(verify_chain(in_order, 3, NULL, &bf, &bl, report, sizeof(report)), 0, "%s", report);
	cr_expect_not_null(strstr(report, "audit log OK: 12 lines, seq 1..12"), "%s", report);
	/* Out of order: the second file given does not continue the first. */
	const char *swapped[] = { f1, f3, f2 };
	cr_expect_eq(verify_chain(swapped, 3, NULL, &bf, &bl, report, sizeof(report)), 1);
	cr_expect_eq(bf, 1);
	cr_expect_eq(bl, 1);
	cr_expect_not_null(strstr(report, "seq 10, expected 5"), "%s", report);
	/* A missing middle file. */
	const char *gap[] = { f1, f3 };
	cr_expect_eq(verify_chain(gap, 2, NULL, &bf, &bl, report, sizeof(report)), 1);
	free_lines(&l);
}

/* A log of n lines, read back into l; cut is the path for a cut copy. */
static struct lines log_of(int n, char *cut, size_t size)
{
	struct audit *a = open_log(logpath, AUDIT_FAILURE_DENY);
	write_n(a, n, 0);
	audit_close(a);
	snprintf(cut, size, "%s/cut", tmpdir);
	return read_lines(logpath);
}

Test(audit, head_truncation_fails_unless_start_anchors_it)
{
	char cut[160], report[4096] = "", start[128];
	struct lines l = log_of(10, cut, sizeof(cut));
	write_range(cut, &l, 3, 10);          /* lines with seq 1..3 removed */
	const char *files[] = { cut };
	size_t bf;
	long bl;
	cr_expect_eq(verify_chain(files, 1, NULL, &bf, &bl, report, sizeof(report)), 1);
	cr_expect_eq(bl, 1);
	cr_expect_not_null(strstr(report, "chain starts at seq 4: lines 1..3 are missing"), "%s", report);

	/* The checkpoint of seq 3 says where the chain resumes. */
	struct audit_verify_options o;
	memset(&o, 0, sizeof(o));
	start_of(&l, 2, start, sizeof(start));
	cr_assert_eq(audit_parse_start(start, &o), 0);
	cr_expect_eq(verify_chain(files, 1, &o, &bf, &bl, report, sizeof(report)), 0, "%s", report);
	/* Anchored at a line the file still has (seq 4 itself). */
	start_of(&l, 3, start, sizeof(start));
	cr_assert_eq(audit_parse_start(start, &o), 0);
	cr_expect_eq(verify_chain(files, 1, &o, &bf, &bl, report, sizeof(report)), 0, "%s", report);
	/* A wrong hash for the anchor, or one more line missing, fails. */
	start_of(&l, 1, start, sizeof(start));
	cr_assert_eq(audit_parse_start(start, &o), 0);
	cr_expect_eq(verify_chain(files, 1, &o, &bf, &bl, report, sizeof(report)), 1);
	cr_expect_not_null(strstr(report, "--start resumes after seq 2"), "%s", report);
	start_of(&l, 2, start, sizeof(start));
	char *colon = strchr(start, ':');
	colon[1] = colon[1] == 'a' ? 'b' : 'a';
	cr_assert_eq(audit_parse_start(start, &o), 0);
	cr_expect_eq(verify_chain(files, 1, &o, &bf, &bl, report, sizeof(report)), 1);
	cr_expect_not_null(strstr(report, "hash mismatch"), "%s", report);
	/* Malformed --start values. */
	cr_expect_eq(audit_parse_start("3", &o), -EINVAL);
	cr_expect_eq(audit_parse_start("x:00", &o), -EINVAL);
	cr_expect_eq(audit_parse_start("3:ABCDEF", &o), -EINVAL);
	free_lines(&l);
}

Test(audit, tail_truncation_fails_with_expect_seq)
{
	char cut[160], report[4096] = "";
	struct lines l = log_of(10, cut, sizeof(cut));
	write_range(cut, &l, 0, 7);           /* the last three lines removed */
	const char *files[] = { cut };
	size_t bf;
	long bl;
	struct audit_verify_options o;
	memset(&o, 0, sizeof(o));
	cr_expect_eq(verify_chain(files, 1, &o, &bf, &bl, report, sizeof(report)), 0,
	             "without --expect-seq a cut tail cannot be seen");
	o.have_expect = true;
	o.expect_seq = 10;
	cr_expect_eq(verify_chain(files, 1, &o, &bf, &bl, report, sizeof(report)), 1);
	cr_expect_eq(bl, 0);
	cr_expect_not_null(strstr(report, "chain ends at seq 7, but the daemon wrote up to seq 10"),
	                   "%s", report);
	const char *whole[] = { logpath };
	cr_expect_eq(verify_chain(whole, 1, &o, &bf, &bl, report, sizeof(report)), 0, "%s", report);
	/* An emptied file with an expected seq fails too. */
	write_range(cut, &l, 0, 0);
	cr_expect_eq(verify_chain(files, 1, &o, &bf, &bl, report, sizeof(report)), 1);
	free_lines(&l);
}

Test(audit, intent_line_is_chained_and_checked)
{
	struct audit *a = open_log(logpath, AUDIT_FAILURE_DENY);
	struct audit_record r = record(KEY_OP_STORE, "eth", true);
	r.intent = true;
	cr_assert_eq(audit_write(a, &r), 0);
	r.intent = false;
	cr_assert_eq(audit_write(a, &r), 0);
	cr_expect(audit_denies(a));
	unsigned long long seq;
	char hash[65];
	audit_checkpoint(a, &seq, hash);
	cr_expect_eq(seq, 2);
	audit_close(a);
	struct lines l = read_lines(logpath);
	cr_assert_eq(l.n, 2);
	cr_expect_not_null(strstr(l.v[0], "\"status\":true,\"intent\":true,\"uid\""), "%s", l.v[0]);
	cr_expect_null(strstr(l.v[1], "intent"));
	cr_expect_not_null(strstr(l.v[1], hash), "the checkpoint is the last line's hash");
	expect_intact(logpath, "audit log OK: 2 lines, seq 1..2");
	free_lines(&l);
}

Test(audit, keyed_chain_needs_its_key)
{
	char keypath[160], report[4096] = "";
	snprintf(keypath, sizeof(keypath), "%s/audit.key", tmpdir);
	unsigned char raw[32];
	for (size_t i = 0; i < sizeof(raw); i++)
		raw[i] = (unsigned char)(i * 7 + 1);
	int fd = open(keypath, O_WRONLY | O_CREAT | O_EXCL, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, raw, sizeof(raw)), (ssize_t)sizeof(raw));
	close(fd);
	struct secret *key = NULL;
	char err[256] = "";
	cr_assert_eq(audit_key_load(keypath, &key, err, sizeof(err)), 0, "%s", err);

	struct audit *a = open_log(logpath, AUDIT_FAILURE_DENY);
	cr_assert_eq(audit_set_key(a, key), 0);
	write_n(a, 5, 0);
	audit_close(a);

	const char *files[] = { logpath };
	size_t bf;
	long bl;
	struct audit_verify_options o;
	memset(&o, 0, sizeof(o));
	/* Without the key the links do not check (SHA-256 is not HMAC). */
	cr_expect_eq(verify_chain(files, 1, &o, &bf, &bl, report, sizeof(report)), 1);
	cr_expect_eq(bl, 1);
	cr_expect_not_null(strstr(report, "a keyed log needs --key"), "%s", report);
	o.key = key;
	cr_expect_eq(verify_chain(files, 1, &o, &bf, &bl, report, sizeof(report)), 0, "%s", report);
	/* A forger who edits a line and recomputes plain SHA-256 links fails. */
	struct lines l = read_lines(logpath);
	char *p = strstr(l.v[2], "\"net-2\"");
	cr_assert_not_null(p);
	p[5] = '9';
	write_lines(logpath, &l);
	cr_expect_eq(verify_chain(files, 1, &o, &bf, &bl, report, sizeof(report)), 1);
	cr_expect_eq(bl, 3);
	free_lines(&l);
	/* Another key does not verify it either. */
	key->data[0] ^= 1;
	cr_expect_eq(verify_chain(files, 1, &o, &bf, &bl, report, sizeof(report)), 1);
	cr_expect_eq(bl, 1);
	secret_free(key);

	/* Key files: too short, or readable by others, are refused. */
	chmod(keypath, 0644);
	cr_expect_eq(audit_key_load(keypath, &key, err, sizeof(err)), -EPERM);
	cr_expect_not_null(strstr(err, "chmod 600"), "%s", err);
	chmod(keypath, 0600);
	cr_assert_eq(truncate(keypath, 16), 0);
	cr_expect_eq(audit_key_load(keypath, &key, err, sizeof(err)), -EINVAL);
}

/* --- issue 9: hostile callers and a hostile file system --------------------- */

/* Every byte a caller can choose (its process name, via PR_SET_NAME) gives
 * valid JSON and valid UTF-8, and verify passes. */
Test(audit, hostile_process_names_stay_valid_json_and_utf8)
{
	static const char *names[] = {
		"\xff\xfe", "a\"b\\c", "\x01\x1b[31mred\x7f", "caf\xc3\xa9", "cut\xe2\x82",
		"\xed\xa0\x80surrogate", "\xc0\xafoverlong", "\xf4\x90\x80\x80" "big", "ok\xf0\x9f\x94\x91",
	};
	struct audit *a = open_log(logpath, AUDIT_FAILURE_DENY);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		struct audit_record r = record(KEY_OP_GET, "net", false);
		r.process = names[i];
		r.error = names[i];
		cr_assert_eq(audit_write(a, &r), 0);
	}
	audit_close(a);
	expect_intact(logpath, "audit log OK: 9 lines");
	struct lines l = read_lines(logpath);
	const char *want[] = { "\xef\xbf\xbd\xef\xbf\xbd", "a\"b\\c", "\x01\x1b[31mred\x7f",
	                       "caf\xc3\xa9", "cut\xef\xbf\xbd\xef\xbf\xbd" };
	for (size_t i = 0; i < l.n; i++) {
		json_error_t e;
		json_t *root = json_loads(l.v[i], 0, &e);   /* jansson rejects bad UTF-8 */
		cr_assert_not_null(root, "line %zu: %s", i + 1, e.text);
		if (i < sizeof(want) / sizeof(want[0]))
			cr_expect_str_eq(json_string_value(json_object_get(root, "process")), want[i]);
		json_decref(root);
		for (const char *p = l.v[i]; *p; p++)
			cr_expect(*p != '\x1b' && *p != '\x7f', "raw control byte on line %zu", i + 1);
	}
	free_lines(&l);
}

/* A bad line is reported and the check goes on: a later edit is found too. */
Test(audit, verify_reports_a_bad_line_and_resynchronises)
{
	write_ten();
	struct lines l = read_lines(logpath);
	free(l.v[2]);
	l.v[2] = strdup("{\"process\":\"\xff\xfe\"\n");
	char *p = strstr(l.v[6], "\"net-6\"");
	cr_assert_not_null(p);
	p[5] = '9';
	write_lines(logpath, &l);
	free_lines(&l);
	char report[4096] = "";
	long bad;
	cr_expect_eq(verify(logpath, &bad, report, sizeof(report)), 1);
	cr_expect_eq(bad, 3);
	cr_expect_not_null(strstr(report, "line 3: not valid JSON"), "%s", report);
	cr_expect_not_null(strstr(report, "line 4: chain resumes at seq 4"), "%s", report);
	cr_expect_not_null(strstr(report, "line 7: hash mismatch"), "%s", report);
	cr_expect_not_null(strstr(report, "2 bad lines of 10, the first at line 3"), "%s", report);
	cr_expect_null(strstr(report, "line 8:"), "line 8 links to line 7: %s", report);
}

Test(audit, refuses_a_symlink_a_fifo_and_a_stranger_file)
{
	char target[160], err[256];
	struct audit *a = NULL;
	snprintf(target, sizeof(target), "%s/elsewhere", tmpdir);
	int fd = open(target, O_CREAT | O_WRONLY, 0600);
	cr_assert_geq(fd, 0);
	close(fd);
	cr_assert_eq(symlink(target, logpath), 0);
	cr_expect_eq(audit_open(logpath, AUDIT_FAILURE_DENY, &a, err, sizeof(err)), -ELOOP);
	cr_expect_not_null(strstr(err, "symbolic link"), "%s", err);
	struct stat st;
	cr_expect_eq(stat(target, &st), 0);
	cr_expect_eq(st.st_size, 0, "the symlink's target was written to");
	unlink(logpath);

	cr_assert_eq(mkfifo(logpath, 0600), 0);
	cr_expect_lt(audit_open(logpath, AUDIT_FAILURE_DENY, &a, err, sizeof(err)), 0);
	cr_expect_not_null(strstr(err, "FIFO"), "%s", err);
	unlink(logpath);

	if (geteuid() == 0) {
		fd = open(logpath, O_CREAT | O_WRONLY, 0666);
		cr_assert_geq(fd, 0);
		cr_assert_eq(fchown(fd, 65534, 65534), 0);
		close(fd);
		cr_expect_eq(audit_open(logpath, AUDIT_FAILURE_DENY, &a, err, sizeof(err)), -EPERM);
		cr_expect_not_null(strstr(err, "owned by another user"), "%s", err);
	}
	cr_expect_null(a);
}

/* rm of the log: the next line goes to a new file at the path, never into
 * the unlinked one; the new file's chain continues. */
Test(audit, a_removed_log_is_reopened_before_the_next_line)
{
	struct audit *a = open_log(logpath, AUDIT_FAILURE_DENY);
	write_n(a, 3, 0);
	struct audit_verify_options o = { .have_start = true, .start_seq = 3 };
	struct lines l = read_lines(logpath);
	json_t *last = parse(l.v[2]);
	snprintf(o.start_hash, sizeof(o.start_hash), "%s",
	         json_string_value(json_object_get(last, "hash")));
	json_decref(last);
	free_lines(&l);
	cr_assert_eq(unlink(logpath), 0);
	write_n(a, 2, 3);
	l = read_lines(logpath);
	cr_expect_eq(l.n, 2);
	if (l.n)
		cr_expect_eq(line_seq(l.v[0]), 4);
	free_lines(&l);
	/* the new file continues the chain from the checkpoint of line 3 */
	const char *files[] = { logpath };
	char report[4096] = "";
	size_t bad_file;
	long bad_line;
	cr_expect_eq(verify_chain(files, 1, &o, &bad_file, &bad_line, report, sizeof(report)), 0,
	             "%s", report);

	/* A symlink put in its place is not followed: the write fails. */
	cr_assert_eq(unlink(logpath), 0);
	char target[160];
	snprintf(target, sizeof(target), "%s/elsewhere", tmpdir);
	int fd = open(target, O_CREAT | O_WRONLY, 0600);
	close(fd);
	cr_assert_eq(symlink(target, logpath), 0);
	struct audit_record r = record(KEY_OP_GET, "net", true);
	cr_expect_eq(audit_write(a, &r), -EIO);
	struct stat st;
	cr_expect_eq(stat(target, &st), 0);
	cr_expect_eq(st.st_size, 0);
	audit_close(a);
}

/* mv of the log (without a SIGHUP): noticed within a second. */
Test(audit, a_renamed_log_is_noticed_within_a_second)
{
	struct audit *a = open_log(logpath, AUDIT_FAILURE_DENY);
	write_n(a, 2, 0);
	char moved[160];
	snprintf(moved, sizeof(moved), "%s.moved", logpath);
	cr_assert_eq(rename(logpath, moved), 0);
	usleep(1100 * 1000);
	write_n(a, 1, 2);
	audit_close(a);
	struct lines l = read_lines(logpath);
	cr_expect_eq(l.n, 1);
	free_lines(&l);
	expect_intact(moved, "audit log OK: 2 lines");
}
