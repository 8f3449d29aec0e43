/* report_audit.c - the audit half of the report: one streaming pass over
 * the audit files.
 *
 * Memory: nothing here keeps a line.  Each line is checked (audit.c's
 * audit_chain_check, the same check as `audit verify`), its fields are
 * folded into small tables keyed by network, caller (uid + process), the
 * pair of both, failure reason and denial, and it is dropped.  So memory
 * grows with the number of distinct networks and callers, not with the
 * number of lines (bench/run.py measures the peak RSS on 10 M lines).
 *
 * Input: every file is read through zlib's gzread, which reads plain files
 * as they are and gzip files (logrotate's `compress`) decompressed, in the
 * order given, as one chain.  A bad line (edited, removed, reordered,
 * truncated, not JSON) is recorded in "chain" (the first one with its file,
 * line and reason, and how many) and the check resynchronises on the next
 * line, so one bad line does not hide the rest of the history; lines that
 * parse are counted either way.
 *
 * Lifecycle events are inferred from the order of lines: a successful store
 * on a network whose key the log has seen (a successful get or store, and no
 * remove since) is "replaced", otherwise "created"; a successful remove is
 * "removed", a successful get with "refresh" (touch) is "refreshed".  Lines
 * written for the `key` commands (process "omikuji-keyfs", or a "source"/
 * "via" field "cli") count as CLI, the others as mount.
 */
#include "report.h"
#include "clock.h"
#include "anomaly.h"
#include "audit.h"
#include "hash.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define READ_CHUNK (1024 * 1024)      /* also the longest line read whole */
#define KEY_MAX 512
#define EVENTS_MAX 1000               /* lifecycle events listed (all are counted) */

enum { CUR = 0, PREV = 1 };
enum { ST_SUCCESS, ST_FAILURE, ST_DENIED, ST_COUNT };
enum { OP_GET, OP_STORE, OP_REMOVE, OP_LIST, OP_ADDRESS, OP_OTHER, OP_COUNT };
static const char *const op_names[OP_COUNT] = { "get", "store", "remove", "list", "address",
                                                "other" };
enum { LC_CREATED, LC_REPLACED, LC_REMOVED, LC_REFRESHED, LC_COUNT };
static const char *const lc_names[LC_COUNT] = { "created", "replaced", "removed", "refreshed" };
enum { SRC_MOUNT, SRC_CLI };
enum { KEY_UNKNOWN, KEY_PRESENT, KEY_ABSENT };

/* --- a small string-keyed hash table of fixed-size zeroed values -------- */

struct rt_entry {
	size_t hash;
	char *key;
	long long val[];    /* value storage, zeroed, suitably aligned */
};

struct rtable {
	struct rt_entry **slots;
	size_t cap, n, val_size;
};

static void rt_init(struct rtable *t, size_t val_size)
{
	memset(t, 0, sizeof(*t));
	t->val_size = val_size;
}

static void rt_free(struct rtable *t)
{
	for (size_t i = 0; i < t->cap; i++) {
		if (t->slots[i]) {
			free(t->slots[i]->key);
			free(t->slots[i]);
		}
	}
	free(t->slots);
	t->slots = NULL;
	t->cap = t->n = 0;
}

static int rt_grow(struct rtable *t)
{
	size_t cap = t->cap ? t->cap * 2 : 64;
	struct rt_entry **slots = calloc(cap, sizeof(*slots));
	if (!slots)
		return -ENOMEM;
	for (size_t i = 0; i < t->cap; i++) {
		struct rt_entry *e = t->slots[i];
		if (!e)
			continue;
		size_t j = e->hash & (cap - 1);
		while (slots[j])
			j = (j + 1) & (cap - 1);
		slots[j] = e;
	}
	free(t->slots);
	t->slots = slots;
	t->cap = cap;
	return 0;
}

/* The value for key, created zeroed when new; NULL when out of memory. */
static void *rt_get(struct rtable *t, const char *key)
{
	if ((t->n + 1) * 4 > t->cap * 3 && rt_grow(t) < 0)
		return NULL;
	size_t h = hash_string(key);
	size_t j = h & (t->cap - 1);
	for (struct rt_entry *e; (e = t->slots[j]); j = (j + 1) & (t->cap - 1))
		if (e->hash == h && strcmp(e->key, key) == 0)
			return e->val;
	struct rt_entry *e = calloc(1, sizeof(*e) + t->val_size);
	if (!e || !(e->key = strdup(key))) {
		free(e);
		return NULL;
	}
	e->hash = h;
	t->slots[j] = e;
	t->n++;
	return e->val;
}

/* The value for key, or NULL when absent (never inserts). */
static void *rt_find(const struct rtable *t, const char *key)
{
	if (!t->cap)
		return NULL;
	size_t h = hash_string(key);
	for (size_t j = h & (t->cap - 1); t->slots[j]; j = (j + 1) & (t->cap - 1))
		if (t->slots[j]->hash == h && strcmp(t->slots[j]->key, key) == 0)
			return t->slots[j]->val;
	return NULL;
}

/* The entries as an array (caller frees the array, not the entries). */
static struct rt_entry **rt_entries(const struct rtable *t)
{
	struct rt_entry **out = malloc((t->n + 1) * sizeof(*out));
	size_t k = 0;
	if (!out)
		return NULL;
	for (size_t i = 0; i < t->cap; i++)
		if (t->slots[i])
			out[k++] = t->slots[i];
	return out;
}

/* Split a composite key ("a\x1fb\x1fc") into at most n parts, in place of a
 * copy the caller frees. */
static char *key_split(const char *key, char **parts, int n)
{
	char *copy = strdup(key);
	if (!copy)
		return NULL;
	char *p = copy;
	for (int i = 0; i < n; i++) {
		parts[i] = p;
		char *sep = p ? strchr(p, '\x1f') : NULL;
		if (sep) {
			*sep = 0;
			p = sep + 1;
		} else {
			p = NULL;
		}
		if (!parts[i])
			parts[i] = copy + strlen(key);   /* "" */
	}
	return copy;
}

/* --- the tables' values ------------------------------------------------- */

struct counts {               /* per period */
	long ops, reads, cached, stores, removes, denials, failures, off_hours;
};

struct net_stat {
	struct counts c[2];
	double first, last;          /* any line up to the end of the period */
	int key_state;
	long lifecycle[LC_COUNT];    /* current period */
	long callers;                /* distinct callers, current period */
};

struct caller_stat {
	struct counts c[2];
	double first, last;
	long networks;               /* distinct networks, current period */
};

struct pair_stat {
	long reads, denials, ops;    /* current period */
	double first, last;
};

struct count2 {
	long n[2];
	double first, last;
};

struct agg {
	const struct report_period *p;
	const struct report_audit_opts *o;
	long ops[2][OP_COUNT][ST_COUNT];
	long lines[2];
	long anomalies_total[2];
	long off_hours[2];
	long lifecycle[LC_COUNT][2];     /* current period, by source */
	long daily[REPORT_MAX_DAYS][3];         /* operations, failures, denials */
	long hours[24];
	long older, newer, unparsed;     /* lines outside both periods / without a time */
	long intents;                    /* intent lines (deny mode), not operations */
	struct rtable nets, callers, pairs, fails, denials, reasons, anomalies, backends;
	json_t *events;
	long events_total;
	/* chain */
	long lines_total, bad_lines, first_bad_line;
	char first_bad_file[4096];
	char first_bad_reason[256];
	int first_bad_set;
};

/* --- time ---------------------------------------------------------------- */

int report_parse_time(const char *s, size_t len, double *out)
{
	if (len != 10)
		return clock_parse_rfc3339(s, len, out);
	if (s[4] != '-' || s[7] != '-')
		return -EINVAL;
	/* A date: up to the end of that day. */
	char day[21];
	memcpy(day, s, 10);
	memcpy(day + 10, "T00:00:00Z", 11);
	int rc = clock_parse_rfc3339(day, 20, out);
	if (rc == 0)
		*out += 86400.0;
	return rc;
}

int report_day_count(const struct report_period *p)
{
	int64_t first = (int64_t)(p->start / 86400.0), last = (int64_t)((p->end - 1e-6) / 86400.0);
	int n = (int)(last - first + 1);
	return n < 1 ? 1 : n > REPORT_MAX_DAYS ? REPORT_MAX_DAYS : n;
}

double report_day_start(const struct report_period *p, int i)
{
	return ((double)(int64_t)(p->start / 86400.0) + i) * 86400.0;
}

void report_format_time(double t, char *buf, size_t size)
{
	time_t secs = (time_t)t;
	struct tm tm;
	gmtime_r(&secs, &tm);
	strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static json_t *json_time(double t)
{
	char buf[32];
	if (t <= 0)
		return json_null();
	report_format_time(t, buf, sizeof(buf));
	return json_string(buf);
}

/* --- folding one line ----------------------------------------------------- */

static const char *jstr(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "";
}

static int op_index(const char *op)
{
	for (int i = 0; i < OP_OTHER; i++)
		if (strcmp(op, op_names[i]) == 0)
			return i;
	return OP_OTHER;
}

/* Denials are written by the access checks with these reasons (keyops.c);
 * a backend's own refusal ("permission denied") is a failure. */
static bool is_denial(const char *error)
{
	return strncmp(error, "access denied", 13) == 0 ||
	       strcmp(error, "rate limit exceeded") == 0 ||
	       strcmp(error, "no grant for this network") == 0;
}

static bool is_cli(json_t *o, const char *process)
{
	return strcmp(process, "omikuji-keyfs") == 0 || strcmp(jstr(o, "source"), "cli") == 0 ||
	       strcmp(jstr(o, "via"), "cli") == 0;
}

static void span(double *first, double *last, double t)
{
	if (*first == 0 || t < *first)
		*first = t;
	if (t > *last)
		*last = t;
}

static void count_period(struct counts *c, int op, int st, bool cached, bool off)
{
	c->ops++;
	if (st == ST_DENIED)
		c->denials++;
	else if (st == ST_FAILURE)
		c->failures++;
	else if (op == OP_GET) {
		c->reads++;
		if (cached)
			c->cached++;
	} else if (op == OP_STORE)
		c->stores++;
	else if (op == OP_REMOVE)
		c->removes++;
	if (off)
		c->off_hours++;
}

static void add_event(struct agg *a, int kind, int src, double t, const char *network,
                      json_t *o, const char *process)
{
	a->lifecycle[kind][src]++;
	a->events_total++;
	if (json_array_size(a->events) >= EVENTS_MAX)
		return;
	json_array_append_new(a->events, json_pack("{s:o,s:s,s:s,s:I,s:s,s:s,s:s}",
		"timestamp", json_time(t), "event", lc_names[kind], "network", network,
		"uid", (json_int_t)json_integer_value(json_object_get(o, "uid")),
		"process", process, "source", src == SRC_CLI ? "cli" : "mount",
		"backend", jstr(o, "storage_type")));
}

static int fold(struct agg *a, json_t *o)
{
	const char *ts = jstr(o, "timestamp");
	double t;
	/* In deny mode a store or remove writes an intent line before the
	 * change and its outcome line after: count the outcome only. */
	if (json_is_true(json_object_get(o, "intent"))) {
		a->intents++;
		return 0;
	}
	if (report_parse_time(ts, strlen(ts), &t) < 0 || strlen(ts) <= 10) {
		a->unparsed++;
		return 0;
	}
	if (t >= a->p->end) {
		a->newer++;
		return 0;
	}
	int period = t >= a->p->start ? CUR : t >= a->p->prev_start ? PREV : -1;
	const char *opname = jstr(o, "operation");
	const char *network = jstr(o, "network");
	const char *process = jstr(o, "process");
	const char *error = jstr(o, "error");
	const char *anomaly = jstr(o, "anomaly");
	long long uid = json_integer_value(json_object_get(o, "uid"));
	bool ok = json_is_true(json_object_get(o, "status"));
	bool cached = json_is_true(json_object_get(o, "cached"));
	bool refresh = json_is_true(json_object_get(o, "refresh"));
	int op = op_index(opname);
	int st = ok ? ST_SUCCESS : is_denial(error) ? ST_DENIED : ST_FAILURE;
	char key[KEY_MAX];

	snprintf(key, sizeof(key), "%lld\x1f%s", uid, process);
	struct caller_stat *cs = rt_get(&a->callers, key);
	struct net_stat *ns = network[0] ? rt_get(&a->nets, network) : NULL;
	if (!cs || (network[0] && !ns))
		return -ENOMEM;
	span(&cs->first, &cs->last, t);
	if (ns)
		span(&ns->first, &ns->last, t);

	/* Key state for lifecycle inference, over the whole history. */
	int lc = -1;
	if (ns && ok) {
		if (op == OP_STORE) {
			lc = ns->key_state == KEY_PRESENT ? LC_REPLACED : LC_CREATED;
			ns->key_state = KEY_PRESENT;
		} else if (op == OP_REMOVE) {
			lc = LC_REMOVED;
			ns->key_state = KEY_ABSENT;
		} else if (op == OP_GET) {
			ns->key_state = KEY_PRESENT;
			if (refresh)
				lc = LC_REFRESHED;
		}
	}
	if (period < 0) {
		a->older++;
		return 0;
	}

	bool off = a->o->hours ? anomaly_off_hours(a->o->hours, t) : strcmp(anomaly, "off_hours") == 0;
	a->lines[period]++;
	a->ops[period][op][st]++;
	if (off)
		a->off_hours[period]++;
	count_period(&cs->c[period], op, st, cached, off);
	if (ns)
		count_period(&ns->c[period], op, st, cached, off);
	struct count2 *bs = rt_get(&a->backends, jstr(o, "storage_type"));
	if (!bs)
		return -ENOMEM;
	bs->n[period]++;
	/* backends: n = operations; failures in a second table entry */
	if (st == ST_FAILURE) {
		snprintf(key, sizeof(key), "%s\x1f%s", jstr(o, "storage_type"), "failure");
		struct count2 *bf = rt_get(&a->backends, key);
		if (!bf)
			return -ENOMEM;
		bf->n[period]++;
	} else if (st == ST_DENIED) {
		snprintf(key, sizeof(key), "%s\x1f%s", jstr(o, "storage_type"), "denied");
		struct count2 *bd = rt_get(&a->backends, key);
		if (!bd)
			return -ENOMEM;
		bd->n[period]++;
	}
	if (anomaly[0]) {
		struct count2 *an = rt_get(&a->anomalies, anomaly);
		if (!an)
			return -ENOMEM;
		an->n[period]++;
		a->anomalies_total[period]++;
	}
	if (st != ST_SUCCESS) {
		struct count2 *r = rt_get(&a->reasons, error[0] ? error : "(no reason given)");
		if (!r)
			return -ENOMEM;
		r->n[period]++;
		span(&r->first, &r->last, t);
		if (st == ST_FAILURE) {
			snprintf(key, sizeof(key), "%s\x1f%s\x1f%.300s", opname, network, error);
			struct count2 *f = rt_get(&a->fails, key);
			if (!f)
				return -ENOMEM;
			f->n[period]++;
			span(&f->first, &f->last, t);
		} else {
			snprintf(key, sizeof(key), "%lld\x1f%s\x1f%s\x1f%s", uid, process, opname,
			         network);
			struct count2 *d = rt_get(&a->denials, key);
			if (!d)
				return -ENOMEM;
			d->n[period]++;
			span(&d->first, &d->last, t);
		}
	}
	if (period != CUR)
		return 0;

	if (lc >= 0) {
		ns->lifecycle[lc]++;
		add_event(a, lc, is_cli(o, process) ? SRC_CLI : SRC_MOUNT, t, network, o, process);
	}
	int day = (int)((t - report_day_start(a->p, 0)) / 86400.0);
	if (day >= 0 && day < report_day_count(a->p)) {
		a->daily[day][0]++;
		if (st == ST_FAILURE)
			a->daily[day][1]++;
		if (st == ST_DENIED)
			a->daily[day][2]++;
	}
	int64_t secs = (int64_t)t;
	a->hours[(secs % 86400) / 3600]++;
	if (network[0]) {
		snprintf(key, sizeof(key), "%s\x1f%lld\x1f%s", network, uid, process);
		struct pair_stat *ps = rt_get(&a->pairs, key);
		if (!ps)
			return -ENOMEM;
		if (ps->ops++ == 0) {
			ns->callers++;
			cs->networks++;
		}
		if (op == OP_GET && st == ST_SUCCESS)
			ps->reads++;
		if (st == ST_DENIED)
			ps->denials++;
		span(&ps->first, &ps->last, t);
	}
	return 0;
}

/* --- reading the files ---------------------------------------------------- */

struct progress {
	bool on;
	double started, last_print;
	long long total_bytes, done_bytes;
	bool printed;
};

static double now_mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void progress_show(struct progress *pr, long long file_bytes, long lines, bool final)
{
	if (!pr->on)
		return;
	double now = now_mono();
	if (final) {
		if (pr->printed)
			fputs("\r\033[K", stderr);
		return;
	}
	if (now - pr->started < 1.0 || now - pr->last_print < 0.25)
		return;
	pr->last_print = now;
	pr->printed = true;
	long long done = pr->done_bytes + file_bytes;
	double pct = pr->total_bytes ? 100.0 * (double)done / (double)pr->total_bytes : 0;
	fprintf(stderr, "\r\033[Kreading the audit log: %ld lines, %.0f%% (%.0f s)", lines, pct,
	        now - pr->started);
	fflush(stderr);
}

static void note_bad(struct agg *a, const char *path, long lineno, const char *why)
{
	a->bad_lines++;
	if (a->first_bad_set)
		return;
	a->first_bad_set = 1;
	a->first_bad_line = lineno;
	snprintf(a->first_bad_file, sizeof(a->first_bad_file), "%s", path);
	snprintf(a->first_bad_reason, sizeof(a->first_bad_reason), "%s", why);
	/* parser messages may quote the bad bytes: keep them off terminals */
	for (char *c = a->first_bad_reason; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = '?';
}

static int check_line(struct agg *a, struct audit_chain *chain, const char *path, long lineno,
                      const char *line, size_t len, bool complete)
{
	char why[256];
	json_t *o = NULL;
	a->lines_total++;
	int rc = audit_chain_check(chain, line, len, complete, why, sizeof(why), &o);
	if (rc != 0)
		note_bad(a, path, lineno, why);
	if (o && json_is_object(o))
		rc = fold(a, o);
	else
		rc = 0;
	json_decref(o);
	return rc;
}

static int read_file(struct agg *a, struct audit_chain *chain, const char *path, char *buf,
                     struct progress *pr, json_t *inputs, char *err, size_t errlen)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		snprintf(err, errlen, "cannot read the audit log %s: %s", path, strerror(e));
		return -e;
	}
	unsigned char magic[2] = { 0, 0 };
	bool compressed = pread(fd, magic, 2, 0) == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
	gzFile gz = gzdopen(fd, "rb");
	if (!gz) {
		close(fd);
		snprintf(err, errlen, "cannot read the audit log %s: out of memory", path);
		return -ENOMEM;
	}
	gzbuffer(gz, 256 * 1024);
	size_t have = 0;
	long lineno = 0, lines_before = a->lines_total;
	bool skipping = false;    /* inside a line longer than READ_CHUNK */
	int rc = 0;
	for (;;) {
		int n = gzread(gz, buf + have, (unsigned)(READ_CHUNK - have));
		if (n < 0) {
			int zerr;
			const char *msg = gzerror(gz, &zerr);
			snprintf(err, errlen, "cannot read the audit log %s: %s", path,
			         zerr == Z_ERRNO ? strerror(errno) : msg);
			rc = -EIO;
			goto out;
		}
		if (n == 0)
			break;
		have += (size_t)n;
		size_t pos = 0;
		for (;;) {
			char *nl = memchr(buf + pos, '\n', have - pos);
			if (!nl)
				break;
			size_t len = (size_t)(nl - (buf + pos));
			lineno++;
			if (skipping) {
				skipping = false;
				a->lines_total++;
				note_bad(a, path, lineno, "line longer than 1 MiB");
				audit_chain_restart(chain);   /* what follows anchors anew */
			} else if ((rc = check_line(a, chain, path, lineno, buf + pos, len, true)) < 0) {
				snprintf(err, errlen, "out of memory");
				goto out;
			}
			pos += len + 1;
		}
		memmove(buf, buf + pos, have - pos);
		have -= pos;
		if (have == READ_CHUNK) {      /* no newline in a whole chunk */
			skipping = true;
			have = 0;
		}
		progress_show(pr, compressed ? gzoffset(gz) : gztell(gz), a->lines_total, false);
	}
	if (have > 0 || skipping) {
		lineno++;
		if (skipping) {
			a->lines_total++;
			note_bad(a, path, lineno, "line longer than 1 MiB");
		} else if ((rc = check_line(a, chain, path, lineno, buf, have, false)) < 0) {
			snprintf(err, errlen, "out of memory");
			goto out;
		}
	}
	pr->done_bytes += st.st_size;
	json_array_append_new(inputs, json_pack("{s:s,s:b,s:I,s:I}", "path", path,
		"compressed", compressed, "bytes", (json_int_t)st.st_size,
		"lines", (json_int_t)(a->lines_total - lines_before)));
out:
	gzclose(gz);
	return rc;
}

/* --- building the document -------------------------------------------------- */

static json_t *trend(long cur, long prev)
{
	json_t *pct = prev ? json_real((double)(cur - prev) * 100.0 / (double)prev) : json_null();
	return json_pack("{s:I,s:I,s:o}", "current", (json_int_t)cur, "previous", (json_int_t)prev,
	                 "change_pct", pct);
}

static json_t *user_name(long long uid)
{
	struct passwd pw, *res = NULL;
	char buf[1024];
	if (uid < 0 || getpwuid_r((uid_t)uid, &pw, buf, sizeof(buf), &res) != 0 || !res)
		return json_null();
	return json_string(res->pw_name);
}

static long long to_ll(const char *s)
{
	return strtoll(s, NULL, 10);
}

/* Sort entries by a count (descending), then key.  qsort has no context
 * argument; the report is single-threaded. */
static long (*sort_fn)(const struct rt_entry *e);

static int cmp_entries(const void *x, const void *y)
{
	const struct rt_entry *a = *(const struct rt_entry *const *)x;
	const struct rt_entry *b = *(const struct rt_entry *const *)y;
	long ca = sort_fn(a), cb = sort_fn(b);
	if (ca != cb)
		return ca > cb ? -1 : 1;
	return strcmp(a->key, b->key);
}

static struct rt_entry **sorted(const struct rtable *t, long (*fn)(const struct rt_entry *))
{
	struct rt_entry **v = rt_entries(t);
	if (!v)
		return NULL;
	sort_fn = fn;
	qsort(v, t->n, sizeof(*v), cmp_entries);
	return v;
}

static long by_count2(const struct rt_entry *e) { return ((const struct count2 *)e->val)->n[CUR]; }
static long by_net(const struct rt_entry *e) { return ((const struct net_stat *)e->val)->c[CUR].ops; }
static long by_caller(const struct rt_entry *e) { return ((const struct caller_stat *)e->val)->c[CUR].ops; }
static long by_pair(const struct rt_entry *e) { return ((const struct pair_stat *)e->val)->ops; }

/* Each build_* adds one section to doc.  Containers are attached to doc as
 * soon as they exist, so an early return on ENOMEM leaks nothing (the
 * caller frees doc). */

static json_t *section(json_t *parent, const char *name, json_t *value)
{
	json_object_set_new(parent, name, value);
	return value;
}

static void build_chain(struct agg *a, json_t *doc)
{
	json_object_set_new(doc, "chain", json_pack("{s:b,s:I,s:I,s:o,s:o,s:o,s:I,s:I}",
		"verified", a->bad_lines == 0 && a->lines_total > 0,
		"lines", (json_int_t)a->lines_total, "bad_lines", (json_int_t)a->bad_lines,
		"first_bad_line", a->first_bad_set ? json_integer(a->first_bad_line) : json_null(),
		"first_bad_file", a->first_bad_set ? json_string(a->first_bad_file) : json_null(),
		"reason", a->first_bad_set ? json_string(a->first_bad_reason) :
		          a->lines_total == 0 ? json_string("no audit lines") : json_null(),
		"first_seq", (json_int_t)0, "last_seq", (json_int_t)0));
}

/* Called once the chain is read: where it starts and ends. */
static void chain_seqs(json_t *doc, const struct audit_chain *chain)
{
	json_t *ch = json_object_get(doc, "chain");
	unsigned long long first = audit_chain_first_seq(chain);
	json_object_set_new(ch, "first_seq", json_integer((json_int_t)first));
	json_object_set_new(ch, "last_seq", json_integer((json_int_t)audit_chain_last_seq(chain)));
	json_object_set_new(ch, "starts_at_seq_1", json_boolean(first == 1));
}

/* Operations by type and status; sums per status into totals[period][status]. */
static void build_operations(struct agg *a, json_t *doc, long totals[2][ST_COUNT])
{
	json_t *ops = section(doc, "operations", json_array());
	for (int i = 0; i < OP_COUNT; i++) {
		long *c = a->ops[CUR][i], *q = a->ops[PREV][i];
		long cur = c[0] + c[1] + c[2], prev = q[0] + q[1] + q[2];
		for (int st = 0; st < ST_COUNT; st++) {
			totals[CUR][st] += c[st];
			totals[PREV][st] += q[st];
		}
		if (!cur && !prev && i >= OP_ADDRESS)
			continue;
		json_array_append_new(ops, json_pack("{s:s,s:I,s:I,s:I,s:I,s:o}",
			"operation", op_names[i], "success", (json_int_t)c[ST_SUCCESS],
			"failure", (json_int_t)c[ST_FAILURE], "denied", (json_int_t)c[ST_DENIED],
			"total", (json_int_t)cur, "trend", trend(cur, prev)));
	}
}

static int build_networks(struct agg *a, json_t *access, long *accessed, long *cached)
{
	json_t *nets = section(access, "networks", json_array());
	struct rt_entry **v = sorted(&a->nets, by_net);
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < a->nets.n; i++) {
		struct net_stat *s = (struct net_stat *)v[i]->val;
		if (!s->c[CUR].ops && !s->c[PREV].ops)
			continue;
		*cached += s->c[CUR].cached;
		if (s->c[CUR].ops)
			(*accessed)++;
		json_array_append_new(nets, json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:o,s:o,s:o}",
			"network", v[i]->key, "operations", (json_int_t)s->c[CUR].ops,
			"reads", (json_int_t)s->c[CUR].reads, "cached_reads", (json_int_t)s->c[CUR].cached,
			"stores", (json_int_t)s->c[CUR].stores, "removes", (json_int_t)s->c[CUR].removes,
			"denials", (json_int_t)s->c[CUR].denials, "failures", (json_int_t)s->c[CUR].failures,
			"callers", (json_int_t)s->callers,
			"first_seen", json_time(s->first), "last_seen", json_time(s->last),
			"reads_trend", trend(s->c[CUR].reads, s->c[PREV].reads)));
	}
	free(v);
	return 0;
}

static int build_callers(struct agg *a, json_t *access, long *n_callers, long *n_new)
{
	json_t *callers = section(access, "callers", json_array());
	json_t *new_callers = section(access, "new_callers", json_array());
	struct rt_entry **v = sorted(&a->callers, by_caller);
	char *parts[2];
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < a->callers.n; i++) {
		struct caller_stat *s = (struct caller_stat *)v[i]->val;
		if (!s->c[CUR].ops)
			continue;
		char *copy = key_split(v[i]->key, parts, 2);
		if (!copy) {
			free(v);
			return -ENOMEM;
		}
		long long uid = to_ll(parts[0]);
		bool is_new = s->first >= a->p->start;
		json_t *c = json_pack("{s:I,s:o,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:o,s:o,s:b,s:o}",
			"uid", (json_int_t)uid, "user", user_name(uid), "process", parts[1],
			"operations", (json_int_t)s->c[CUR].ops, "reads", (json_int_t)s->c[CUR].reads,
			"denials", (json_int_t)s->c[CUR].denials, "failures", (json_int_t)s->c[CUR].failures,
			"off_hours", (json_int_t)s->c[CUR].off_hours, "networks", (json_int_t)s->networks,
			"first_seen", json_time(s->first), "last_seen", json_time(s->last), "new", is_new,
			"operations_trend", trend(s->c[CUR].ops, s->c[PREV].ops));
		(*n_callers)++;
		if (is_new) {
			(*n_new)++;
			json_array_append_new(new_callers, json_deep_copy(c));
		}
		json_array_append_new(callers, c);
		free(copy);
	}
	free(v);
	return 0;
}

static int build_pairs(struct agg *a, json_t *access)
{
	json_t *pairs = section(access, "pairs", json_array());
	struct rt_entry **v = sorted(&a->pairs, by_pair);
	char *parts[3];
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < a->pairs.n; i++) {
		struct pair_stat *s = (struct pair_stat *)v[i]->val;
		char *copy = key_split(v[i]->key, parts, 3);
		if (!copy) {
			free(v);
			return -ENOMEM;
		}
		long long uid = to_ll(parts[1]);
		json_array_append_new(pairs, json_pack("{s:s,s:I,s:o,s:s,s:I,s:I,s:I,s:o,s:o}",
			"network", parts[0], "uid", (json_int_t)uid, "user", user_name(uid),
			"process", parts[2], "operations", (json_int_t)s->ops,
			"reads", (json_int_t)s->reads, "denials", (json_int_t)s->denials,
			"first_seen", json_time(s->first), "last_seen", json_time(s->last)));
		free(copy);
	}
	free(v);
	return 0;
}

static int build_failures(struct agg *a, json_t *doc, long totals[2][ST_COUNT])
{
	json_t *sec = section(doc, "failures", json_object());
	json_object_set_new(sec, "total", trend(totals[CUR][ST_FAILURE], totals[PREV][ST_FAILURE]));
	json_t *reasons = section(sec, "by_reason", json_array());
	json_t *list = section(sec, "list", json_array());
	struct rt_entry **v = sorted(&a->reasons, by_count2);
	char *parts[3];
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < a->reasons.n; i++) {
		struct count2 *s = (struct count2 *)v[i]->val;
		if (!s->n[CUR] && !s->n[PREV])
			continue;
		json_array_append_new(reasons, json_pack("{s:s,s:b,s:o}", "reason", v[i]->key,
			"denial", is_denial(v[i]->key), "count", trend(s->n[CUR], s->n[PREV])));
	}
	free(v);
	if (!(v = sorted(&a->fails, by_count2)))
		return -ENOMEM;
	for (size_t i = 0; i < a->fails.n; i++) {
		struct count2 *s = (struct count2 *)v[i]->val;
		if (!s->n[CUR])
			continue;
		char *copy = key_split(v[i]->key, parts, 3);
		if (!copy) {
			free(v);
			return -ENOMEM;
		}
		json_array_append_new(list, json_pack("{s:s,s:s,s:s,s:I,s:o,s:o}",
			"operation", parts[0], "network", parts[1], "reason", parts[2],
			"count", (json_int_t)s->n[CUR], "first_seen", json_time(s->first),
			"last_seen", json_time(s->last)));
		free(copy);
	}
	free(v);
	return 0;
}

static int build_denials(struct agg *a, json_t *doc, long totals[2][ST_COUNT])
{
	json_t *sec = section(doc, "denials", json_object());
	json_object_set_new(sec, "total", trend(totals[CUR][ST_DENIED], totals[PREV][ST_DENIED]));
	json_t *list = section(sec, "by_caller", json_array());
	json_t *by_net = section(sec, "by_network", json_array());
	json_t *per_net = section(sec, "_per_network", json_object());   /* removed below */
	struct rt_entry **v = sorted(&a->denials, by_count2);
	char *parts[4];
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < a->denials.n; i++) {
		struct count2 *s = (struct count2 *)v[i]->val;
		if (!s->n[CUR])
			continue;
		char *copy = key_split(v[i]->key, parts, 4);
		if (!copy) {
			free(v);
			return -ENOMEM;
		}
		long long uid = to_ll(parts[0]);
		json_array_append_new(list, json_pack("{s:I,s:o,s:s,s:s,s:s,s:I,s:o,s:o}",
			"uid", (json_int_t)uid, "user", user_name(uid), "process", parts[1],
			"operation", parts[2], "network", parts[3], "count", (json_int_t)s->n[CUR],
			"first_seen", json_time(s->first), "last_seen", json_time(s->last)));
		json_int_t before = json_integer_value(json_object_get(per_net, parts[3]));
		json_object_set_new(per_net, parts[3], json_integer(before + s->n[CUR]));
		free(copy);
	}
	free(v);
	const char *k;
	json_t *n;
	json_object_foreach(per_net, k, n)
		json_array_append_new(by_net, json_pack("{s:s,s:O}", "network", k, "count", n));
	json_object_del(sec, "_per_network");
	return 0;
}

static int build_backends(struct agg *a, json_t *doc)
{
	json_t *backends = section(doc, "backends", json_array());
	struct rt_entry **v = sorted(&a->backends, by_count2);
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < a->backends.n; i++) {
		if (strchr(v[i]->key, '\x1f'))
			continue;
		struct count2 *s = (struct count2 *)v[i]->val;
		char key[KEY_MAX];
		snprintf(key, sizeof(key), "%s\x1f" "failure", v[i]->key);
		struct count2 *fc = rt_find(&a->backends, key);
		snprintf(key, sizeof(key), "%s\x1f" "denied", v[i]->key);
		struct count2 *dc = rt_find(&a->backends, key);
		long f = fc ? fc->n[CUR] : 0, d = dc ? dc->n[CUR] : 0;
		long attempted = s->n[CUR] - d;
		json_array_append_new(backends, json_pack("{s:s,s:I,s:I,s:I,s:o}",
			"backend", v[i]->key, "operations", (json_int_t)s->n[CUR],
			"failures", (json_int_t)f, "denials", (json_int_t)d,
			"success_ratio", attempted > 0 ? json_real((double)(attempted - f) / (double)attempted)
			                               : json_null()));
	}
	free(v);
	return 0;
}

static void build_lifecycle(struct agg *a, json_t *doc)
{
	json_t *lc = section(doc, "lifecycle", json_object());
	for (int i = 0; i < LC_COUNT; i++)
		json_object_set_new(lc, lc_names[i], json_pack("{s:I,s:I,s:I}",
			"mount", (json_int_t)a->lifecycle[i][SRC_MOUNT],
			"cli", (json_int_t)a->lifecycle[i][SRC_CLI],
			"total", (json_int_t)(a->lifecycle[i][SRC_MOUNT] + a->lifecycle[i][SRC_CLI])));
	json_object_set_new(lc, "events", json_incref(a->events));
	json_object_set_new(lc, "events_total", json_integer(a->events_total));
	json_object_set_new(lc, "events_listed_max", json_integer(EVENTS_MAX));
}

static int build_anomalies(struct agg *a, json_t *doc)
{
	json_t *an = section(doc, "anomalies", json_array());
	struct rt_entry **v = sorted(&a->anomalies, by_count2);
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < a->anomalies.n; i++) {
		struct count2 *s = (struct count2 *)v[i]->val;
		json_array_append_new(an, json_pack("{s:s,s:o}", "kind", v[i]->key,
			"count", trend(s->n[CUR], s->n[PREV])));
	}
	free(v);
	return 0;
}

static void build_time_of_day(struct agg *a, json_t *doc)
{
	json_t *hours = json_array(), *busiest = json_array();
	int order[24];
	for (int h = 0; h < 24; h++) {
		json_array_append_new(hours, json_integer(a->hours[h]));
		order[h] = h;
	}
	for (int i = 0; i < 3; i++)          /* the top three, earlier hour first on ties */
		for (int j = i + 1; j < 24; j++)
			if (a->hours[order[j]] > a->hours[order[i]]) {
				int t = order[i];
				order[i] = order[j];
				order[j] = t;
			}
	for (int i = 0; i < 3; i++)
		if (a->hours[order[i]])
			json_array_append_new(busiest, json_pack("{s:i,s:I}", "hour", order[i],
				"operations", (json_int_t)a->hours[order[i]]));
	json_object_set_new(doc, "hours", json_pack("{s:s,s:o,s:o}", "timezone", "UTC",
	                    "operations", hours, "busiest", busiest));
	json_object_set_new(doc, "off_hours", json_pack("{s:b,s:s?,s:s,s:o}",
		"business_hours_configured", a->o->hours != NULL, "business_hours", a->o->hours_text,
		"basis", a->o->hours ? "timestamps against keyfs.business_hours" :
		                       "lines the daemon flagged anomaly=off_hours",
		"count", trend(a->off_hours[CUR], a->off_hours[PREV])));

	json_t *daily = section(doc, "daily", json_array());
	for (int d = 0; d < report_day_count(a->p); d++) {
		char date[32];
		report_format_time(report_day_start(a->p, d), date, sizeof(date));
		date[10] = 0;
		json_array_append_new(daily, json_pack("{s:s,s:I,s:I,s:I}", "date", date,
			"operations", (json_int_t)a->daily[d][0], "failures", (json_int_t)a->daily[d][1],
			"denials", (json_int_t)a->daily[d][2]));
	}
}

static int build(struct agg *a, json_t *doc)
{
	long totals[2][ST_COUNT] = { { 0 } };
	long accessed = 0, cached = 0, n_callers = 0, n_new = 0;
	int rc;

	build_chain(a, doc);
	json_t *summary = section(doc, "summary", json_object());
	build_operations(a, doc, totals);
	json_t *access = section(doc, "access", json_object());
	if ((rc = build_networks(a, access, &accessed, &cached)) < 0 ||
	    (rc = build_callers(a, access, &n_callers, &n_new)) < 0 ||
	    (rc = build_pairs(a, access)) < 0 ||
	    (rc = build_failures(a, doc, totals)) < 0 ||
	    (rc = build_denials(a, doc, totals)) < 0 ||
	    (rc = build_backends(a, doc)) < 0 ||
	    (rc = build_anomalies(a, doc)) < 0)
		return rc;
	long gets = a->ops[CUR][OP_GET][ST_SUCCESS];
	json_object_set_new(doc, "cache", json_pack("{s:I,s:I,s:o}", "reads", (json_int_t)gets,
		"cached_reads", (json_int_t)cached,
		"hit_ratio", gets ? json_real((double)cached / (double)gets) : json_null()));
	build_lifecycle(a, doc);
	build_time_of_day(a, doc);

	long ops_cur = 0, ops_prev = 0;
	for (int st = 0; st < ST_COUNT; st++) {
		ops_cur += totals[CUR][st];
		ops_prev += totals[PREV][st];
	}
	json_t *figures = json_pack("{s:o,s:o,s:o,s:o,s:o,s:I,s:I,s:I,s:o}",
		"operations", trend(ops_cur, ops_prev),
		"failures", trend(totals[CUR][ST_FAILURE], totals[PREV][ST_FAILURE]),
		"denials", trend(totals[CUR][ST_DENIED], totals[PREV][ST_DENIED]),
		"anomalies", trend(a->anomalies_total[CUR], a->anomalies_total[PREV]),
		"off_hours", trend(a->off_hours[CUR], a->off_hours[PREV]),
		"networks_accessed", (json_int_t)accessed, "callers", (json_int_t)n_callers,
		"new_callers", (json_int_t)n_new,
		"lines", json_pack("{s:I,s:I,s:I,s:I,s:I,s:I}", "current_period", (json_int_t)a->lines[CUR],
		                   "intent", (json_int_t)a->intents,
		                   "previous_period", (json_int_t)a->lines[PREV],
		                   "older", (json_int_t)a->older, "after_period", (json_int_t)a->newer,
		                   "without_timestamp", (json_int_t)a->unparsed));
	json_object_update(summary, figures);
	json_decref(figures);
	return 0;
}

int report_audit(const struct report_period *p, const struct report_audit_opts *o,
                 json_t *doc, char *err, size_t errlen)
{
	struct agg *a = calloc(1, sizeof(*a));
	struct audit_verify_options vo = { .key = o->key };
	struct audit_chain *chain = audit_chain_new(&vo);
	char *buf = malloc(READ_CHUNK);
	json_t *inputs = json_array();
	int rc = 0;

	if (!a || !chain || !buf || !inputs) {
		snprintf(err, errlen, "out of memory");
		rc = -ENOMEM;
		goto out;
	}
	a->p = p;
	a->o = o;
	/* Logrotate deletes the oldest rotations: an input that starts past
	 * seq 1 is normal for a report.  Its first line anchors the chain, and
	 * "chain.first_seq" with a finding says that the start is not there
	 * (audit verify, without --start, fails such an input). */
	audit_chain_restart(chain);
	a->events = json_array();
	rt_init(&a->nets, sizeof(struct net_stat));
	rt_init(&a->callers, sizeof(struct caller_stat));
	rt_init(&a->pairs, sizeof(struct pair_stat));
	rt_init(&a->fails, sizeof(struct count2));
	rt_init(&a->denials, sizeof(struct count2));
	rt_init(&a->reasons, sizeof(struct count2));
	rt_init(&a->anomalies, sizeof(struct count2));
	rt_init(&a->backends, sizeof(struct count2));

	struct progress pr = { .on = o->progress, .started = now_mono() };
	for (size_t i = 0; i < o->paths->n; i++) {
		struct stat st;
		if (stat(o->paths->items[i], &st) == 0)
			pr.total_bytes += st.st_size;
	}
	for (size_t i = 0; i < o->paths->n && rc == 0; i++)
		rc = read_file(a, chain, o->paths->items[i], buf, &pr, inputs, err, errlen);
	progress_show(&pr, 0, 0, true);
	if (rc == 0) {
		json_object_set_new(doc, "inputs", json_incref(inputs));
		rc = build(a, doc);
		if (rc < 0)
			snprintf(err, errlen, "out of memory");
		if (rc == 0)
			chain_seqs(doc, chain);
	}
out:
	if (a) {
		rt_free(&a->nets);
		rt_free(&a->callers);
		rt_free(&a->pairs);
		rt_free(&a->fails);
		rt_free(&a->denials);
		rt_free(&a->reasons);
		rt_free(&a->anomalies);
		rt_free(&a->backends);
		json_decref(a->events);
	}
	free(a);
	json_decref(inputs);
	free(buf);
	audit_chain_free(chain);
	return rc;
}
