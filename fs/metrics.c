/* metrics.c - the Prometheus registry and its text rendering (contract
 * section 6, exposition format 0.0.4).
 *
 * Every counter, gauge and histogram bucket is a C11 atomic, so the
 * key-read path only does relaxed atomic adds.  Backend series live in one
 * struct per registered instance, on a list that only grows (registration
 * at start, under a lock; rendering walks it without one).  The one
 * dynamic family (last refresh per network) lives in a small hash table
 * under its own mutex, touched only on backend fetches and, briefly, by
 * metrics_render() to snapshot it.
 *
 * Rendering decisions:
 * - operations / duration series exist for every configured backend (and
 *   any backend that recorded an operation anyway), all 5 ops x 2 statuses,
 *   zeros included, so rate() works from the first scrape.
 * - cache series exist only for backends configured as remote: the cache
 *   sits in front of those only (contract), and a backend without a cache
 *   must not look like one with a 0% hit rate.  The guide's LowCacheHitRate
 *   rule divides 0 by 0 on an idle cache, which is NaN and never fires.
 * - backend_up is rendered only once a health check has set it, or one has
 *   run past its deadline (a stalled backend is down): no series is better
 *   than a guessed 1 or 0.
 * - a histogram's _count is the sum of its bucket snapshot, so +Inf bucket
 *   and _count always agree within one rendering, even under updates.
 */
#include "backend.h"
#include "hash.h"
#include "metrics.h"
#include "netrec.h"
#include "utf8.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "clock.h"

#define METRICS_BUCKETS 17                       /* finite bounds; +Inf is extra */
#define METRICS_ANOMALY_COUNT 4
#define METRICS_NETWORKS_MAX 100000              /* bound on the freshness table */
#define VALUE_TEXT_MAX 32                        /* "-1.2345678901234567e+308" fits */

static const double bucket_bounds[METRICS_BUCKETS] = {
	0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
	0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};
/* Written out once, so le labels read as the bounds were meant, not 5e-05. */
static const char *const bucket_labels[METRICS_BUCKETS] = {
	"0.00005", "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01",
	"0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10",
};

static const char *const op_names[KEY_OP_COUNT] = { "get", "store", "remove", "list", "address" };
static const char *const anomaly_names[METRICS_ANOMALY_COUNT] = {
	"burst", "off_hours", "auth_failures", "rate_limited",
};

struct histogram {
	atomic_uint_fast64_t buckets[METRICS_BUCKETS + 1];   /* not cumulative; last = +Inf */
	atomic_uint_fast64_t sum_ns;   /* integer nanoseconds: one fetch_add, no CAS loop */
};

struct metrics_backend {
	char *name;
	char *label;                 /* name escaped for a label value */
	bool cached;
	atomic_uint_fast64_t ops[KEY_OP_COUNT][2];   /* [..][0]=success */
	struct histogram durations[KEY_OP_COUNT];
	atomic_uint_fast64_t cache_hits;
	atomic_uint_fast64_t cache_misses;
	atomic_uint_fast64_t cache_stale_hits;
	atomic_long cache_size;
	atomic_int backend_up;            /* -1 = never set */
	atomic_llong check_deadline_ms;   /* monotonic ms a running check must end by; 0: none */
	atomic_uint_fast64_t auth_failures;
	atomic_uint_fast64_t invalid_values;
	atomic_long in_flight;
	atomic_uint_fast64_t in_flight_rejected;
	struct metrics_backend *_Atomic next;   /* registration order */
};

static pthread_mutex_t backends_lock = PTHREAD_MUTEX_INITIALIZER;
static struct metrics_backend *_Atomic backends_head;

static struct {
	atomic_uint_fast64_t access_denied[KEY_OP_COUNT];
	atomic_uint_fast64_t anomalies[METRICS_ANOMALY_COUNT];
	atomic_uint_fast64_t audit_write_errors;
	atomic_uint_fast64_t audit_last_seq;
	atomic_bool audit_enabled;
	_Atomic double start_time;
} reg;

/* The freshness series live in per-network records (netrec.h): the
 * module's own table, or the mount's once it lends it
 * (metrics_use_networks), so a network's times share the record that holds
 * its mtime and address.  Times are kept as numbers and labels escaped when
 * rendering: text kept per network was most of the memory of every cached
 * key (issue 15).  count = records with a series in the table in use, under
 * its lock. */
static struct {
	struct netrec_table own;
	struct netrec_table *_Atomic in_use;   /* NULL = &own */
	size_t count;
} refresh = { .own = { .lock = PTHREAD_MUTEX_INITIALIZER } };

static struct netrec_table *refresh_table(void)
{
	struct netrec_table *t = atomic_load(&refresh.in_use);
	return t ? t : &refresh.own;
}

const char *key_op_name(enum key_op op)
{
	return (unsigned)op < KEY_OP_COUNT ? op_names[op] : "unknown";
}

static int escape_label(struct strbuf *b, const char *s);

#define FOR_EACH_BACKEND(b) \
	for (struct metrics_backend *b = atomic_load_explicit(&backends_head, memory_order_acquire); \
	     b; b = atomic_load_explicit(&b->next, memory_order_acquire))

static void counter_inc(atomic_uint_fast64_t *c)
{
	atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

static uint64_t counter_get(atomic_uint_fast64_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

/* Drop every freshness series of t (its records stay).  t's lock held. */
static void refresh_clear_locked(struct netrec_table *t)
{
	for (size_t i = 0; i < t->capacity; i++) {
		struct netrec *r = netrec_slot(t, i);
		if (r)
			r->fresh = false;
	}
	refresh.count = 0;
}

void metrics_use_networks(struct netrec_table *t)
{
	struct netrec_table *expected = NULL;
	/* Only the first mount of the process lends its table; its series
	 * start empty (nothing is fetched before the mount exists). */
	if (!atomic_compare_exchange_strong(&refresh.in_use, &expected, t))
		return;
	netrec_lock(t);
	refresh_clear_locked(t);
	netrec_unlock(t);
}

void metrics_release_networks(struct netrec_table *t)
{
	struct netrec_table *expected = t;
	if (atomic_compare_exchange_strong(&refresh.in_use, &expected, NULL)) {
		netrec_lock(&refresh.own);
		refresh_clear_locked(&refresh.own);
		netrec_unlock(&refresh.own);
	}
}

void metrics_init(void)
{
	/* Only tests re-init, with no thread updating a registered series. */
	pthread_mutex_lock(&backends_lock);
	struct metrics_backend *b = atomic_exchange(&backends_head, NULL);
	while (b) {
		struct metrics_backend *next = atomic_load(&b->next);
		free(b->name);
		free(b->label);
		free(b);
		b = next;
	}
	pthread_mutex_unlock(&backends_lock);
	for (int op = 0; op < KEY_OP_COUNT; op++)
		atomic_store(&reg.access_denied[op], 0);
	for (int k = 0; k < METRICS_ANOMALY_COUNT; k++)
		atomic_store(&reg.anomalies[k], 0);
	atomic_store(&reg.audit_write_errors, 0);
	atomic_store(&reg.audit_last_seq, 0);
	atomic_store(&reg.audit_enabled, false);
	/* The process started before its first init; a re-init (tests) keeps it. */
	if (atomic_load(&reg.start_time) == 0.0)
		atomic_store(&reg.start_time, clock_wall());

	struct netrec_table *t = refresh_table();
	netrec_lock(t);
	refresh_clear_locked(t);
	netrec_unlock(t);
}

struct metrics_backend *metrics_backend_register(const char *name, bool cached)
{
	struct metrics_backend *found = NULL, *last = NULL;
	pthread_mutex_lock(&backends_lock);
	FOR_EACH_BACKEND(b) {
		if (strcmp(b->name, name) == 0)
			found = b;
		last = b;
	}
	if (found)
		goto out;
	struct strbuf label = STRBUF_INIT;
	found = calloc(1, sizeof(*found));
	if (!found || !(found->name = strdup(name)) || escape_label(&label, name) != 0) {
		strbuf_reset(&label);
		if (found)
			free(found->name);
		free(found);
		found = NULL;
		goto out;
	}
	found->label = strbuf_detach(&label, NULL);
	found->cached = cached;
	atomic_init(&found->backend_up, -1);
	/* Published last, fully built: render walks the list without the lock. */
	if (last)
		atomic_store_explicit(&last->next, found, memory_order_release);
	else
		atomic_store_explicit(&backends_head, found, memory_order_release);
out:
	pthread_mutex_unlock(&backends_lock);
	return found;
}

void metrics_observe_op(struct metrics_backend *b, enum key_op op, bool success, double seconds)
{
	if (!b || (unsigned)op >= KEY_OP_COUNT)
		return;
	counter_inc(&b->ops[op][success ? 0 : 1]);

	if (!(seconds > 0))   /* negative, zero or NaN: a clock step, count as 0 */
		seconds = 0;
	int i = 0;
	while (i < METRICS_BUCKETS && seconds > bucket_bounds[i])
		i++;
	struct histogram *h = &b->durations[op];
	counter_inc(&h->buckets[i]);
	/* 2^64 ns is 584 years; clamp one absurd observation rather than wrap. */
	double ns = seconds * 1e9;
	uint64_t add = ns >= 1.8e19 ? UINT64_C(18000000000000000000) : (uint64_t)(ns + 0.5);
	atomic_fetch_add_explicit(&h->sum_ns, add, memory_order_relaxed);
}

void metrics_cache_hit(struct metrics_backend *b)
{
	if (b)
		counter_inc(&b->cache_hits);
}

void metrics_cache_stale_hit(struct metrics_backend *b)
{
	if (!b)
		return;
	counter_inc(&b->cache_stale_hits);
	counter_inc(&b->cache_hits);
}

void metrics_cache_miss(struct metrics_backend *b)
{
	if (b)
		counter_inc(&b->cache_misses);
}

void metrics_cache_size(struct metrics_backend *b, long entries)
{
	if (b)
		atomic_store_explicit(&b->cache_size, entries, memory_order_relaxed);
}

void metrics_backend_up(struct metrics_backend *b, bool up)
{
	if (b)
		atomic_store_explicit(&b->backend_up, up ? 1 : 0, memory_order_relaxed);
}

void metrics_backend_check(struct metrics_backend *b, double deadline)
{
	if (b)
		atomic_store_explicit(&b->check_deadline_ms,
		                      deadline > 0 ? (long long)(deadline * 1000) + 1 : 0LL,
		                      memory_order_relaxed);
}

void metrics_auth_failure(struct metrics_backend *b)
{
	if (b)
		counter_inc(&b->auth_failures);
}

void metrics_in_flight_add(struct metrics_backend *b, long delta)
{
	if (b)
		atomic_fetch_add_explicit(&b->in_flight, delta, memory_order_relaxed);
}

void metrics_in_flight_rejected(struct metrics_backend *b)
{
	if (b)
		counter_inc(&b->in_flight_rejected);
}

void metrics_invalid_value(struct metrics_backend *b)
{
	if (b)
		counter_inc(&b->invalid_values);
}

void metrics_access_denied(enum key_op op)
{
	if ((unsigned)op < KEY_OP_COUNT)
		counter_inc(&reg.access_denied[op]);
}

void metrics_anomaly(const char *kind)
{
	if (!kind)
		return;
	for (int k = 0; k < METRICS_ANOMALY_COUNT; k++) {
		if (strcmp(anomaly_names[k], kind) == 0) {
			counter_inc(&reg.anomalies[k]);
			return;
		}
	}
	/* An unknown kind is a programming error; a fixed label set keeps the
	 * series count bounded, so it is dropped rather than added. */
}

void metrics_audit_write_error(void)
{
	counter_inc(&reg.audit_write_errors);
}

void metrics_audit_last_seq(unsigned long long seq)
{
	atomic_store(&reg.audit_last_seq, seq);
	atomic_store(&reg.audit_enabled, true);
}

/* --- the freshness table ------------------------------------------------- */

/* Shortest text that reads back as the same double; Prometheus spellings for
 * the non-finite values. */
static void format_double(char *buf, size_t size, double v)
{
	if (isnan(v)) {
		snprintf(buf, size, "NaN");
		return;
	}
	if (isinf(v)) {
		snprintf(buf, size, v > 0 ? "+Inf" : "-Inf");
		return;
	}
	for (int prec = 15; prec <= 17; prec++) {
		snprintf(buf, size, "%.*g", prec, v);
		if (strtod(buf, NULL) == v)
			return;
	}
}

/* A wall-clock time as seconds with microseconds ("1795743953.021178"):
 * integer arithmetic only, since this runs on every backend fetch (every
 * read, for the local backends). */
static void format_timestamp(char *buf, size_t size, double v)
{
	if (!(v >= 0 && v < 9e15 / 1e6)) {
		format_double(buf, size, v);
		return;
	}
	long long usec = (long long)(v * 1e6 + 0.5);   /* v >= 0: rounds to nearest */
	char digits[32];
	int n = 0;
	long long secs = usec / 1000000, frac = usec % 1000000;
	do {
		digits[n++] = (char)('0' + secs % 10);
		secs /= 10;
	} while (secs && n < 20);
	size_t len = 0;
	while (n && len + 1 < size)
		buf[len++] = digits[--n];
	if (len + 8 > size) {
		format_double(buf, size, v);
		return;
	}
	buf[len++] = '.';
	for (int i = 5; i >= 0; i--) {
		buf[len + (size_t)i] = (char)('0' + frac % 10);
		frac /= 10;
	}
	buf[len + 6] = 0;
}

/* Label value escaping of the text format: backslash, quote, newline.  The
 * format also wants UTF-8, so a stray byte becomes U+FFFD rather than making
 * the whole scrape unparsable. */
static int escape_label(struct strbuf *b, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	const unsigned char *run = p;
	while (*p) {
		const char *rep = NULL;
		size_t n = 1;
		if (*p == '\\')
			rep = "\\\\";
		else if (*p == '"')
			rep = "\\\"";
		else if (*p == '\n')
			rep = "\\n";
		else if ((n = utf8_sequence_len(p, 4)) == 0)   /* stops at the NUL */
			rep = "\xef\xbf\xbd";
		if (!rep) {
			p += n;
			continue;
		}
		strbuf_append(b, run, (size_t)(p - run));
		strbuf_puts(b, rep);
		p++;
		run = p;
	}
	strbuf_append(b, run, (size_t)(p - run));
	return b->error;
}

/* Set one of a network's timestamps (offset of the field in the record). */
static void network_time_set(const char *network, size_t field, double wall_seconds)
{
	if (!network)
		return;
	struct netrec_table *t = refresh_table();
	netrec_lock(t);
	/* Past the bound a new network goes unrecorded: a metric is not worth
	 * unbounded memory. */
	struct netrec *r = netrec_find(t, network);
	if (!(r && r->fresh) && refresh.count >= METRICS_NETWORKS_MAX)
		goto out;
	if (!r && !(r = netrec_get(t, network)))
		goto out;
	if (!r->fresh) {
		r->fresh = true;
		r->last_refresh = r->updated = NAN;
		refresh.count++;
	}
	memcpy((char *)r + field, &wall_seconds, sizeof(wall_seconds));
out:
	netrec_unlock(t);
}

void metrics_last_refresh(const char *network, double wall_seconds)
{
	network_time_set(network, offsetof(struct netrec, last_refresh), wall_seconds);
}

void metrics_key_updated(const char *network, double wall_seconds)
{
	network_time_set(network, offsetof(struct netrec, updated), wall_seconds);
}

/* --- rendering ----------------------------------------------------------- */

/* Lines are assembled with memcpy in a stack buffer and appended once:
 * printf per sample made a rendering several times slower. */
struct line {
	char buf[512];
	size_t len;
	bool overflow;
};

/* No initialiser: zeroing 512 bytes per sample would cost more than the line. */
static void line_init(struct line *l)
{
	l->len = 0;
	l->overflow = false;
}

static void line_put(struct line *l, const char *s)
{
	size_t n = strlen(s);
	if (n > sizeof(l->buf) - l->len) {
		l->overflow = true;
		return;
	}
	memcpy(l->buf + l->len, s, n);
	l->len += n;
}

static void line_u64(struct line *l, uint64_t v)
{
	char digits[24];
	size_t n = sizeof(digits);
	digits[--n] = 0;
	do {
		digits[--n] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	line_put(l, digits + n);
}

/* Append "name{labels} value\n"; labels is "" or the text inside the braces. */
static void sample_text(struct strbuf *out, const char *name, const char *labels,
                        const char *value)
{
	struct line l;
	line_init(&l);
	line_put(&l, name);
	if (*labels) {
		line_put(&l, "{");
		line_put(&l, labels);
		line_put(&l, "}");
	}
	line_put(&l, " ");
	line_put(&l, value);
	line_put(&l, "\n");
	if (!l.overflow)
		strbuf_append(out, l.buf, l.len);
	else
		strbuf_printf(out, "%s%s%s%s %s\n", name, *labels ? "{" : "", labels,
		              *labels ? "}" : "", value);
}

static void sample_u64(struct strbuf *out, const char *name, const char *labels, uint64_t v)
{
	struct line num;
	line_init(&num);
	line_u64(&num, v);
	num.buf[num.len] = 0;
	sample_text(out, name, labels, num.buf);
}

static void sample_double(struct strbuf *out, const char *name, const char *labels, double v)
{
	char num[VALUE_TEXT_MAX];
	format_double(num, sizeof(num), v);
	sample_text(out, name, labels, num);
}

static void family(struct strbuf *out, const char *name, const char *type, const char *help)
{
	struct line l;
	line_init(&l);
	line_put(&l, "# HELP ");
	line_put(&l, name);
	line_put(&l, " ");
	line_put(&l, help);
	line_put(&l, "\n# TYPE ");
	line_put(&l, name);
	line_put(&l, " ");
	line_put(&l, type);
	line_put(&l, "\n");
	if (!l.overflow)
		strbuf_append(out, l.buf, l.len);
	else
		strbuf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* "a=\"x\",b=\"y\"" from fixed, escape-free values; NULL name ends. */
static const char *labels_of(struct line *l, const char *n1, const char *v1,
                             const char *n2, const char *v2, const char *n3, const char *v3)
{
	const char *names[3] = { n1, n2, n3 }, *values[3] = { v1, v2, v3 };
	line_init(l);
	for (int i = 0; i < 3 && names[i]; i++) {
		if (i)
			line_put(l, ",");
		line_put(l, names[i]);
		line_put(l, "=\"");
		line_put(l, values[i]);
		line_put(l, "\"");
	}
	if (l->len >= sizeof(l->buf))
		l->len = sizeof(l->buf) - 1;
	l->buf[l->len] = 0;
	return l->buf;
}

static void render_operations(struct strbuf *out)
{
	static const char *const status_names[2] = { "success", "failure" };
	const char *name = "omikuji_key_operations_total";
	struct line l;

	family(out, name, "counter", "Key operations by operation, backend and outcome.");
	FOR_EACH_BACKEND(b) {
		for (int op = 0; op < KEY_OP_COUNT; op++)
			for (int s = 0; s < 2; s++)
				sample_u64(out, name,
				           labels_of(&l, "operation", op_names[op], "backend",
				                     b->label, "status", status_names[s]),
				           counter_get(&b->ops[op][s]));
	}
}

static void render_durations(struct strbuf *out)
{
	struct line l;

	family(out, "omikuji_key_operation_duration_seconds", "histogram",
	       "Duration of key operations in seconds, as the caller saw them.");
	FOR_EACH_BACKEND(b) {
		for (int op = 0; op < KEY_OP_COUNT; op++) {
			struct histogram *h = &b->durations[op];
			uint64_t cumulative = 0;
			for (int i = 0; i <= METRICS_BUCKETS; i++) {
				cumulative += counter_get(&h->buckets[i]);
				labels_of(&l, "operation", op_names[op], "backend", b->label,
				          "le", i < METRICS_BUCKETS ? bucket_labels[i] : "+Inf");
				sample_u64(out, "omikuji_key_operation_duration_seconds_bucket",
				           l.buf, cumulative);
			}
			labels_of(&l, "operation", op_names[op], "backend", b->label,
			          NULL, NULL);
			sample_double(out, "omikuji_key_operation_duration_seconds_sum", l.buf,
			              (double)counter_get(&h->sum_ns) / 1e9);
			sample_u64(out, "omikuji_key_operation_duration_seconds_count", l.buf,
			           cumulative);
		}
	}
}

/* One counter family with a sample per backend (cached ones only when
 * only_cached); value picks the counter of a backend. */
static void render_per_backend(struct strbuf *out, const char *name, const char *help,
                               size_t offset, bool only_cached)
{
	struct line l;
	family(out, name, "counter", help);
	FOR_EACH_BACKEND(b)
		if (b->cached || !only_cached)
			sample_u64(out, name,
			           labels_of(&l, "backend", b->label, NULL, NULL, NULL, NULL),
			           counter_get((atomic_uint_fast64_t *)((char *)b + offset)));
}

static void render_cache(struct strbuf *out)
{
	struct line l;

	render_per_backend(out, "omikuji_key_cache_hits_total",
	                   "Key reads served from the cache (stale ones included).",
	                   offsetof(struct metrics_backend, cache_hits), true);
	render_per_backend(out, "omikuji_key_cache_misses_total",
	                   "Key reads that had to ask the backend.",
	                   offsetof(struct metrics_backend, cache_misses), true);
	render_per_backend(out, "omikuji_key_cache_stale_hits_total",
	                   "Expired cache entries served because the backend failed.",
	                   offsetof(struct metrics_backend, cache_stale_hits), true);
	family(out, "omikuji_key_cache_size", "gauge", "Keys currently cached.");
	FOR_EACH_BACKEND(b) {
		if (!b->cached)
			continue;
		long size = atomic_load(&b->cache_size);
		sample_u64(out, "omikuji_key_cache_size",
		           labels_of(&l, "backend", b->label, NULL, NULL, NULL, NULL),
		           size > 0 ? (uint64_t)size : 0);
	}
}

static void render_backend_up(struct strbuf *out)
{
	struct line l;
	family(out, "omikuji_key_backend_up", "gauge",
	       "1 when the last health check of the backend succeeded and none is stalled, else 0.");
	long long now_ms = (long long)(clock_monotonic() * 1000);
	FOR_EACH_BACKEND(b) {
		int up = atomic_load(&b->backend_up);
		long long check_deadline = atomic_load(&b->check_deadline_ms);
		if (check_deadline && now_ms > check_deadline)
			up = 0;   /* a stalled check (the first one too): down, as health/ says */
		if (up >= 0)
			sample_u64(out, "omikuji_key_backend_up",
			           labels_of(&l, "backend", b->label, NULL, NULL, NULL, NULL),
			           (uint64_t)up);
	}
	family(out, "omikuji_key_backend_calls_in_flight", "gauge",
	       "Calls to the backend waiting for its answer now.");
	FOR_EACH_BACKEND(b) {
		long n = atomic_load(&b->in_flight);
		sample_u64(out, "omikuji_key_backend_calls_in_flight",
		           labels_of(&l, "backend", b->label, NULL, NULL, NULL, NULL),
		           n > 0 ? (uint64_t)n : 0);
	}
	render_per_backend(out, "omikuji_key_backend_calls_rejected_total",
	                   "Calls failed at once (EIO) because max_calls_in_flight were pending.",
	                   offsetof(struct metrics_backend, in_flight_rejected), false);
}

static void render_security(struct strbuf *out)
{
	struct line l;

	family(out, "omikuji_key_access_denied_total", "counter",
	       "Key operations refused by the access rules.");
	for (int op = 0; op < KEY_OP_COUNT; op++)
		sample_u64(out, "omikuji_key_access_denied_total",
		           labels_of(&l, "operation", op_names[op], NULL, NULL, NULL, NULL),
		           counter_get(&reg.access_denied[op]));
	render_per_backend(out, "omikuji_key_backend_auth_failures_total",
	                   "Backend calls that failed to authenticate.",
	                   offsetof(struct metrics_backend, auth_failures), false);
	render_per_backend(out, "omikuji_key_backend_invalid_values_total",
	                   "Values read from the backend that are not valid keys (never served).",
	                   offsetof(struct metrics_backend, invalid_values), false);
	family(out, "omikuji_key_anomalies_total", "counter",
	       "Unusual key access patterns detected, by kind.");
	for (int k = 0; k < METRICS_ANOMALY_COUNT; k++)
		sample_u64(out, "omikuji_key_anomalies_total",
		           labels_of(&l, "kind", anomaly_names[k], NULL, NULL, NULL, NULL),
		           counter_get(&reg.anomalies[k]));
	family(out, "omikuji_keyfs_audit_write_errors_total", "counter",
	       "Audit records that could not be written.");
	sample_u64(out, "omikuji_keyfs_audit_write_errors_total", "",
	           counter_get(&reg.audit_write_errors));
	if (atomic_load(&reg.audit_enabled)) {
		family(out, "omikuji_keyfs_audit_last_seq", "gauge",
		       "Sequence number of the last audit line written (audit verify --expect-seq).");
		sample_u64(out, "omikuji_keyfs_audit_last_seq", "",
		           (uint64_t)atomic_load(&reg.audit_last_seq));
	}
}

struct refresh_snapshot {
	const char *network;
	double value;
	double updated;
};

/* Does s need escaping as a label value (see escape_label)? */
static bool label_plain(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p == '\\' || *p == '"' || *p == '\n' || *p >= 0x80)
			return false;
	return true;
}

static void render_network_times(struct strbuf *out, const char *prefix,
                                 const struct refresh_snapshot *snap, size_t n, size_t field)
{
	struct strbuf esc = STRBUF_INIT;
	for (size_t i = 0; i < n; i++) {
		double v;
		memcpy(&v, (const char *)&snap[i] + field, sizeof(v));
		if (isnan(v))
			continue;
		char value[VALUE_TEXT_MAX];
		format_timestamp(value, sizeof(value), v);
		const char *label = snap[i].network;
		if (!label_plain(label)) {
			strbuf_reset(&esc);
			if (escape_label(&esc, label) != 0) {
				out->error = -ENOMEM;
				continue;
			}
			label = esc.buf;
		}
		struct line l;
		line_init(&l);
		line_put(&l, prefix);
		line_put(&l, label);
		line_put(&l, "\"} ");
		line_put(&l, value);
		line_put(&l, "\n");
		if (!l.overflow) {
			strbuf_append(out, l.buf, l.len);
			continue;
		}
		strbuf_printf(out, "%s%s\"} %s\n", prefix, label, value);
	}
	strbuf_reset(&esc);
}

static void render_refresh(struct strbuf *out)
{
	static const char prefix[] = "omikuji_key_last_refresh_timestamp_seconds{network=\"";
	struct refresh_snapshot *snap = NULL;
	size_t n = 0;

	family(out, "omikuji_key_last_refresh_timestamp_seconds", "gauge",
	       "Unix time of the last successful backend fetch of a network's key.");

	/* Copy under the lock, append outside it: a fetch waits for a copy at
	 * most.  Records (and their names) live as long as their table: the
	 * module's, or the mount's, which is unlent before it is freed. */
	struct netrec_table *t = refresh_table();
	netrec_lock(t);
	if (refresh.count && (snap = malloc(refresh.count * sizeof(*snap)))) {
		for (size_t i = 0; i < t->capacity && n < refresh.count; i++) {
			const struct netrec *r = netrec_slot(t, i);
			if (!r || !r->fresh)
				continue;
			snap[n].network = r->network;
			snap[n].value = r->last_refresh;
			snap[n].updated = r->updated;
			n++;
		}
	}
	bool lost = refresh.count && !snap;
	netrec_unlock(t);
	if (lost && !out->error)
		out->error = -ENOMEM;

	render_network_times(out, prefix, snap, n, offsetof(struct refresh_snapshot, value));
	family(out, "omikuji_key_updated_timestamp_seconds", "gauge",
	       "Unix time the backend itself says a network's current key was written "
	       "(Vault: the version's created_time; AWS: its CreatedDate); for rotation-age alerts.");
	render_network_times(out, "omikuji_key_updated_timestamp_seconds{network=\"", snap, n,
	                     offsetof(struct refresh_snapshot, updated));
	free(snap);
}

int metrics_render_api_calls(struct strbuf *out, const char *backend,
                             const struct backend_api_calls *calls, size_t n, bool header)
{
	static const char name[] = "omikuji_keyfs_aws_api_calls_total";
	struct line l;
	if (!n)
		return out->error;
	if (header)
		family(out, name, "counter",
		       "Requests sent to AWS Secrets Manager, by action (each is billed).");
	for (size_t i = 0; i < n; i++)
		sample_u64(out, name, labels_of(&l, "backend", backend, "action", calls[i].action,
		                                NULL, NULL), calls[i].count);
	return out->error;
}

int metrics_render(struct strbuf *out)
{
	render_operations(out);
	render_durations(out);
	render_cache(out);
	render_backend_up(out);
	render_security(out);
	render_refresh(out);

	family(out, "omikuji_keyfs_build_info", "gauge", "Build information; the value is always 1.");
	sample_u64(out, "omikuji_keyfs_build_info", "version=\"" KEYFS_VERSION "\"", 1);

	family(out, "omikuji_keyfs_start_time_seconds", "gauge",
	       "Unix time the mount started (named apart from node_exporter's process_*).");
	double start = atomic_load(&reg.start_time);
	if (start == 0.0) {   /* rendered before metrics_init() */
		start = clock_wall();
		atomic_store(&reg.start_time, start);
	}
	sample_double(out, "omikuji_keyfs_start_time_seconds", "", start);

	/* -ENOMEM, or -E2BIG when the caller capped the buffer. */
	return out->error;
}
