/* anomaly.c - the anomaly signals of the monitoring guide (rapid
 * successive reads, reads outside business hours, backend auth failure
 * spikes) and the per-uid read rate limit.
 *
 * Business hours are in a time zone: anomaly_new() sets TZ once (it runs
 * before any thread starts) and the open/closed state is computed with
 * localtime_r once a minute by the mount's maintenance thread
 * (anomaly_tick), published as one atomic; the C library reads the
 * zoneinfo files, so no time zone code lives here.
 */
#include "anomaly.h"
#include "log.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- anomalies -------------------------------------------------------- */

#define ANOMALY_MAX_CALLERS 1024
#define RATE_WINDOW 60.0
#define AUTH_WINDOW 60.0
#define CLOCK_BACK_SLACK 1.0   /* a wall clock step back beyond this resets the windows */

/* The newest timestamps of some events, oldest overwritten first.  It keeps
 * at most `limit` (the largest threshold that is checked), which is all a
 * "more than N within W" question needs: whether the N-th newest is inside W. */
struct ring {
	double *ts;
	size_t cap, head, count, limit;
};

struct read_log {
	uid_t uid;
	double last_seen;
	struct ring reads;   /* served reads; rate-limited ones are not counted */
};

struct anomaly {
	pthread_mutex_t lock;     /* callers and auth; held only for a few comparisons */
	clock_fn now;
	size_t burst_reads;       /* 0: off */
	double burst_window;
	size_t rate_per_minute;   /* 0: off */
	size_t auth_threshold;    /* 0: off */
	bool hours_set;
	int start_minute, end_minute;
	unsigned days_mask;
	/* atomic: (minute << 1) | open, published by anomaly_tick; -1: none.
	 * One word, so a reader never pairs one minute with another's state. */
	long long hours_state;
	struct read_log *callers;
	size_t n_callers, cap_callers;
	struct ring auth;
};

static double ring_recent(const struct ring *r, size_t k)
{
	return r->ts[(r->head + r->cap - k) % r->cap];
}

/* At least k events in (now - window, now]?  k = 0 is trivially true. */
static bool ring_has_within(const struct ring *r, size_t k, double now, double window)
{
	if (k == 0)
		return true;
	if (r->count < k)
		return false;
	return now - ring_recent(r, k) < window;
}

/* Record t; returns the time actually stored (never before the newest). */
static void ring_push(struct ring *r, double t)
{
	if (r->limit == 0)
		return;
	if (r->count && ring_recent(r, 1) - t > CLOCK_BACK_SLACK)
		r->count = 0;   /* the wall clock stepped back: old stamps would never age out */
	if (r->count && t < ring_recent(r, 1))
		t = ring_recent(r, 1);
	if (r->count == r->cap && r->cap < r->limit) {
		size_t cap = r->cap ? r->cap * 2 : 8;
		if (cap > r->limit)
			cap = r->limit;
		double *ts = malloc(cap * sizeof(*ts));
		if (ts) {
			for (size_t i = 0; i < r->count; i++)
				ts[i] = ring_recent(r, r->count - i);
			free(r->ts);
			r->ts = ts;
			r->head = r->count;
			r->cap = cap;
		}
		/* On ENOMEM keep overwriting the old ring: a smaller window. */
	}
	if (r->cap == 0)
		return;
	r->ts[r->head] = t;
	r->head = (r->head + 1) % r->cap;
	if (r->count < r->cap)
		r->count++;
}

/* As ring_has_within, with the same clock-step handling as ring_push. */
static bool ring_exceeds(const struct ring *r, size_t k, double now, double window)
{
	if (r->count && ring_recent(r, 1) - now > CLOCK_BACK_SLACK)
		return false;
	if (r->count && now < ring_recent(r, 1))
		now = ring_recent(r, 1);
	return ring_has_within(r, k, now, window);
}

/* The caller's log, created (evicting the least recently seen when the
 * table is full) if needed.  NULL on ENOMEM. */
static struct read_log *caller_log(struct anomaly *an, uid_t uid, double now)
{
	struct read_log *lru = NULL;
	for (size_t i = 0; i < an->n_callers; i++) {
		if (an->callers[i].uid == uid)
			return &an->callers[i];
		if (!lru || an->callers[i].last_seen < lru->last_seen)
			lru = &an->callers[i];
	}
	if (an->n_callers == ANOMALY_MAX_CALLERS) {
		lru->uid = uid;
		lru->reads.count = 0;
		lru->reads.head = 0;
		lru->last_seen = now;
		return lru;
	}
	if (an->n_callers == an->cap_callers) {
		size_t cap = an->cap_callers ? an->cap_callers * 2 : 16;
		struct read_log *callers = realloc(an->callers, cap * sizeof(*callers));
		if (!callers)
			return NULL;
		an->callers = callers;
		an->cap_callers = cap;
	}
	struct read_log *e = &an->callers[an->n_callers++];
	memset(e, 0, sizeof(*e));
	e->uid = uid;
	e->last_seen = now;
	e->reads.limit = an->burst_reads > an->rate_per_minute ? an->burst_reads : an->rate_per_minute;
	return e;
}

static bool day_on(unsigned mask, int wday)
{
	return mask & (1u << wday);
}

/* start < end: [start,end) on the masked days.  start > end: a shift over
 * midnight, the part after midnight belonging to the day it started.
 * start == end: the whole of every masked day. */
static bool business_open_at(const struct anomaly *an, int wday, int minute)
{
	int start = an->start_minute, end = an->end_minute;
	if (start < end)
		return day_on(an->days_mask, wday) && minute >= start && minute < end;
	if (start > end)
		return (day_on(an->days_mask, wday) && minute >= start) ||
		       (day_on(an->days_mask, (wday + 6) % 7) && minute < end);
	return day_on(an->days_mask, wday);
}

static long long minute_of(double wall)
{
	long long minute = (long long)(wall / 60.0);
	if (wall < 0 && (double)minute * 60.0 > wall)
		minute--;
	return minute;
}

/* Open or closed during minute (minutes since the epoch), by localtime_r:
 * safe from any thread because TZ was set once, in anomaly_new(), before
 * threads started. */
static bool business_open_in(const struct anomaly *an, long long minute)
{
	time_t t = (time_t)(minute * 60);
	struct tm tm;
	return localtime_r(&t, &tm) && business_open_at(an, tm.tm_wday, tm.tm_hour * 60 + tm.tm_min);
}

void anomaly_tick(struct anomaly *an)
{
	if (!an || !an->hours_set)
		return;
	long long minute = minute_of(an->now());
	long long state = __atomic_load_n(&an->hours_state, __ATOMIC_ACQUIRE);
	if (state >= 0 && state >> 1 == minute)
		return;
	state = minute << 1 | (business_open_in(an, minute) ? 1 : 0);
	__atomic_store_n(&an->hours_state, state, __ATOMIC_RELEASE);
}

/* Open or closed at wall time now: what anomaly_tick published for this
 * minute, one atomic load on the read path.  A minute nobody published
 * (no maintenance thread: the CLI, a report over past times; or the
 * thread a few milliseconds late at the turn of the minute) is computed
 * here, not published. */
static bool business_open(struct anomaly *an, double now)
{
	long long minute = minute_of(now);
	long long state = __atomic_load_n(&an->hours_state, __ATOMIC_ACQUIRE);
	if (state >= 0 && state >> 1 == minute)
		return state & 1;
	return business_open_in(an, minute);
}

bool anomaly_off_hours(struct anomaly *an, double wall)
{
	return an && an->hours_set && !business_open(an, wall);
}

/* The TZ value for a business_hours.timezone, checked: a zoneinfo file
 * (TZif) under $TZDIR or /usr/share/zoneinfo, an absolute path to one, or
 * a POSIX TZ string ("CET-1CEST,M3.5.0,M10.5.0/3").  glibc would take any
 * string and silently use UTC for one it cannot read. */
static const char *tz_posix_name(const char *p)
{
	const char *s = p;
	if (*p == '<') {
		for (p++; isalnum((unsigned char)*p) || *p == '+' || *p == '-'; p++)
			;
		return *p == '>' && p - s >= 4 ? p + 1 : NULL;
	}
	while (isalpha((unsigned char)*p))
		p++;
	return p - s >= 3 ? p : NULL;
}

/* [+-]h[h][:mm[:ss]] with hours up to max_hours. */
static const char *tz_posix_time(const char *p, int max_hours)
{
	if (*p == '+' || *p == '-')
		p++;
	int h = 0, digits = 0;
	for (; isdigit((unsigned char)*p) && digits < 3; p++, digits++)
		h = h * 10 + (*p - '0');
	if (!digits || h > max_hours)
		return NULL;
	for (int part = 0; part < 2 && *p == ':'; part++) {
		if (!isdigit((unsigned char)p[1]) || !isdigit((unsigned char)p[2]) ||
		    (p[1] - '0') * 10 + (p[2] - '0') > 59)
			return NULL;
		p += 3;
	}
	return p;
}

static const char *tz_posix_rule(const char *p)
{
	if (*p == 'M') {
		char *end;
		long m = strtol(p + 1, &end, 10);
		if (end == p + 1 || m < 1 || m > 12 || *end != '.')
			return NULL;
		long w = strtol(end + 1, &end, 10);
		if (w < 1 || w > 5 || *end != '.')
			return NULL;
		p = end + 1;
		if (!isdigit((unsigned char)*p) || *p > '6')
			return NULL;
		p++;
	} else {
		if (*p == 'J')
			p++;
		int digits = 0;
		for (; isdigit((unsigned char)*p) && digits < 3; p++)
			digits++;
		if (!digits)
			return NULL;
	}
	if (*p == '/')
		p = tz_posix_time(p + 1, 167);
	return p;
}

static bool tz_posix_valid(const char *p)
{
	if (!(p = tz_posix_name(p)) || !(p = tz_posix_time(p, 24)))
		return false;
	if (!*p)
		return true;
	if (!(p = tz_posix_name(p)))
		return false;
	if (*p && *p != ',' && !(p = tz_posix_time(p, 24)))
		return false;
	if (!*p)
		return true;
	for (int i = 0; i < 2; i++)
		if (*p != ',' || !(p = tz_posix_rule(p + 1)))
			return false;
	return *p == 0;
}

static bool tzif_file(const char *path)
{
	char magic[4];
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return false;
	struct stat st;
	bool ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
	          read(fd, magic, sizeof(magic)) == (ssize_t)sizeof(magic) &&
	          memcmp(magic, "TZif", 4) == 0;
	close(fd);
	return ok;
}

static int tz_value(const char *name, char *out, size_t size, char *err, size_t errlen)
{
	char path[4096];
	const char *dir = getenv("TZDIR");
	if (strcmp(name, "UTC") == 0) {
		snprintf(out, size, "UTC0");
		return 0;
	}
	if (*name && !strstr(name, "..")) {
		if (name[0] == '/')
			snprintf(path, sizeof(path), "%s", name);
		else
			snprintf(path, sizeof(path), "%s/%s", dir && *dir ? dir : "/usr/share/zoneinfo",
			         name);
		if (tzif_file(path) && (size_t)snprintf(out, size, ":%s", path) < size)
			return 0;
		if (tz_posix_valid(name) && (size_t)snprintf(out, size, "%s", name) < size)
			return 0;
	}
	snprintf(err, errlen, "business_hours: unknown or unreadable time zone '%s': "
	         "not a zoneinfo name or POSIX TZ string", name);
	return -EINVAL;
}

int anomaly_new(const struct config_keyfs *cfg, clock_fn wall_now, struct anomaly **out,
                char *err, size_t errlen)
{
	int rc;
	const struct config_business_hours *bh = &cfg->business_hours;
	if (cfg->rate_limit.set && cfg->rate_limit.reads_per_minute < 1) {
		snprintf(err, errlen, "rate_limit: reads_per_minute must be at least 1");
		return -EINVAL;
	}
	if (bh->set && (bh->start_minute < 0 || bh->start_minute > 1440 || bh->end_minute < 0 ||
	                bh->end_minute > 1440)) {
		snprintf(err, errlen, "business_hours: start and end must be within 00:00-24:00");
		return -EINVAL;
	}
	struct anomaly *an = calloc(1, sizeof(*an));
	if (!an) {
		snprintf(err, errlen, "anomaly detection: %s", strerror(ENOMEM));
		return -ENOMEM;
	}
	an->now = wall_now ? wall_now : clock_wall;
	if (cfg->anomaly.burst_reads > 0 && cfg->anomaly.burst_window_seconds > 0) {
		an->burst_reads = (size_t)cfg->anomaly.burst_reads;
		an->burst_window = cfg->anomaly.burst_window_seconds;
	}
	if (cfg->rate_limit.set)
		an->rate_per_minute = (size_t)cfg->rate_limit.reads_per_minute;
	if (cfg->anomaly.auth_failures_per_minute > 0)
		an->auth_threshold = (size_t)cfg->anomaly.auth_failures_per_minute;
	an->auth.limit = an->auth_threshold;
	if (bh->set) {
		an->hours_set = true;
		an->start_minute = bh->start_minute;
		an->end_minute = bh->end_minute;
		an->days_mask = bh->days_mask;
		an->hours_state = -1;
		char tz[4200];
		rc = tz_value(bh->timezone ? bh->timezone : "UTC", tz, sizeof(tz), err, errlen);
		if (rc)
			goto fail;
		/* Once, before any thread: localtime_r then reads it safely. */
		setenv("TZ", tz, 1);
		tzset();
	}
	rc = -pthread_mutex_init(&an->lock, NULL);
	if (rc) {
		snprintf(err, errlen, "anomaly detection: %s", strerror(-rc));
		goto fail;
	}
	*out = an;
	return 0;
fail:
	free(an);
	return rc;
}

struct anomaly_verdict anomaly_check_read(struct anomaly *an, const struct caller *c)
{
	struct anomaly_verdict v = { NULL, false };
	if (!an || !c)
		return v;
	size_t limit = an->burst_reads > an->rate_per_minute ? an->burst_reads : an->rate_per_minute;
	double now;
	if (limit) {
		pthread_mutex_lock(&an->lock);
		/* Read under the lock so stamps are stored in clock order. */
		now = an->now();
		struct read_log *e = caller_log(an, c->uid, now);
		if (e) {   /* on ENOMEM, fail open: these are signals, not the access rules */
			e->last_seen = now;
			if (an->rate_per_minute &&
			    ring_exceeds(&e->reads, an->rate_per_minute, now, RATE_WINDOW)) {
				v.kind = "rate_limited";
				v.deny = true;
			} else {
				if (an->burst_reads &&
				    ring_exceeds(&e->reads, an->burst_reads, now, an->burst_window))
					v.kind = "burst";
				ring_push(&e->reads, now);
			}
		}
		pthread_mutex_unlock(&an->lock);
	} else {
		now = an->now();
	}
	if (!v.kind && an->hours_set && !business_open(an, now))
		v.kind = "off_hours";
	return v;
}

const char *anomaly_auth_failure(struct anomaly *an)
{
	if (!an || !an->auth_threshold)
		return NULL;
	pthread_mutex_lock(&an->lock);
	double now = an->now();
	bool over = ring_exceeds(&an->auth, an->auth_threshold, now, AUTH_WINDOW);
	ring_push(&an->auth, now);
	pthread_mutex_unlock(&an->lock);
	return over ? "auth_failures" : NULL;
}

void anomaly_free(struct anomaly *an)
{
	if (!an)
		return;
	pthread_mutex_destroy(&an->lock);
	for (size_t i = 0; i < an->n_callers; i++)
		free(an->callers[i].reads.ts);
	free(an->callers);
	free(an->auth.ts);
	free(an);
}
