/* access.c - who may do what to which key (contract sections 4 and 5), and
 * the anomaly signals of the monitoring guide: rapid successive reads,
 * reads outside business hours, backend auth failure spikes, plus the
 * per-uid read rate limit.
 *
 * Access semantics (decided here, documented in the README's access part):
 * - Without an `access:` section only the mounting user and root may do
 *   anything.
 * - With rules, the rules are the whole truth: an operation is allowed when
 *   ANY applicable rule grants it to the caller, otherwise it is denied
 *   (default deny).  Root and the mounting user get no implicit pass, so an
 *   operator who wants them in says so (`uid:0`).  `access: []` denies all.
 * - A rule applies to a network when one of its `networks` globs matches
 *   (fnmatch(3) without flags; an empty list matches every network).
 * - A principal matches a caller by uid (`user:`, `uid:`) or, for `group:`
 *   and `gid:`, by the primary gid or any supplementary group the kernel
 *   reported (with ngroups -1, the primary gid only).
 * - Reading addresses/<network> (ACCESS_ADDRESS) is granted to everyone
 *   without rules (an address is public: it is what one funds), and with
 *   rules by a rule's `address:` principals or its `read:` ones (whoever
 *   may read a key can compute its address).
 * - Listing keys/ (ACCESS_LIST with network "") is granted by the `list:`
 *   principals of any rule, whatever its globs; asked with a network name,
 *   the globs apply as for the other operations.
 *
 * Concurrency: names are resolved into an immutable compiled rule set when
 * the rules are built and on access_reload().  access_allowed() reads the
 * current set under the read side of a rwlock (readers never wait for each
 * other; the writer, preferred so that a busy mount cannot starve SIGHUP,
 * holds it only for a pointer swap), which is the simplest way to free the
 * old set without a use-after-free.  No name-service lookup on that path.
 *
 * Time zones for business hours are read from the TZif file (RFC 8536) and
 * its POSIX TZ footer into a private table at anomaly_new(), so the hot path
 * converts wall time with a lock-free binary search and never touches the
 * process-wide TZ state (setenv("TZ")+tzset() would race with every other
 * thread's getenv/localtime).  Measured on the 2-core dev VM: 29 ns per
 * lookup (104 ns past the last transition, via the TZ rule) against 51 us
 * for a mutex around setenv+tzset+localtime_r+restore.
 */
#include "access.h"
#include "log.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ACCESS_N_OPS 5

static const char *const op_names[ACCESS_N_OPS] = { "read", "write", "remove", "list", "address" };

/* ---- access rules ------------------------------------------------------- */

struct id_set {
	uid_t *uids;
	size_t n_uids;
	gid_t *gids;
	size_t n_gids;
};

struct compiled_rule {
	const struct strlist *networks;   /* borrowed from access->src, immutable */
	struct id_set ops[ACCESS_N_OPS];
};

struct ruleset {
	struct compiled_rule *rules;
	size_t n;
};

struct access {
	pthread_rwlock_t lock;        /* guards the pointer `current` */
	pthread_mutex_t reload_lock;  /* one reload at a time */
	bool rules_set;               /* cfg->access_set */
	uid_t mount_uid;
	struct config_access_rule *src;   /* our deep copy of cfg->access */
	size_t n_src;
	struct ruleset *current;
};

static const struct strlist *rule_op_list(const struct config_access_rule *r, int op)
{
	switch (op) {
	case ACCESS_READ: return &r->read;
	case ACCESS_WRITE: return &r->write;
	case ACCESS_REMOVE: return &r->remove;
	case ACCESS_ADDRESS: return &r->address;
	default: return &r->list;
	}
}

static void ruleset_free(struct ruleset *rs)
{
	if (!rs)
		return;
	for (size_t i = 0; i < rs->n; i++) {
		for (int op = 0; op < ACCESS_N_OPS; op++) {
			free(rs->rules[i].ops[op].uids);
			free(rs->rules[i].ops[op].gids);
		}
	}
	free(rs->rules);
	free(rs);
}

/* "uid:N" / "gid:N": decimal, no sign, not (id_t)-1. */
static int parse_id(const char *s, unsigned *out)
{
	unsigned long long v = 0;
	if (!*s)
		return -EINVAL;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		v = v * 10 + (unsigned)(*p - '0');
		if (v >= UINT32_MAX)
			return -EINVAL;
	}
	*out = (unsigned)v;
	return 0;
}

/* The results getpwnam_r(3) documents as "not found". */
static bool lookup_not_found(int rc)
{
	return rc == 0 || rc == ENOENT || rc == ESRCH || rc == EBADF || rc == EPERM;
}

/* 0, -ENOENT when there is no such user/group, or -errno of the lookup. */
static int lookup_name(const char *name, bool group, unsigned *out)
{
	long hint = sysconf(group ? _SC_GETGR_R_SIZE_MAX : _SC_GETPW_R_SIZE_MAX);
	size_t size = hint > 0 ? (size_t)hint : 1024;
	for (;;) {
		char *buf = malloc(size);
		if (!buf)
			return -ENOMEM;
		int rc;
		bool found = false;
		if (group) {
			struct group gr, *res = NULL;
			rc = getgrnam_r(name, &gr, buf, size, &res);
			if (rc == 0 && res) {
				*out = gr.gr_gid;
				found = true;
			}
		} else {
			struct passwd pw, *res = NULL;
			rc = getpwnam_r(name, &pw, buf, size, &res);
			if (rc == 0 && res) {
				*out = pw.pw_uid;
				found = true;
			}
		}
		free(buf);
		if (found)
			return 0;
		if (rc == ERANGE && size < (1u << 20)) {
			size *= 2;
			continue;
		}
		return lookup_not_found(rc) ? -ENOENT : -rc;
	}
}

static void rule_where(const struct config_access_rule *r, size_t index, char *buf, size_t len)
{
	if (r->line > 0)
		snprintf(buf, len, "access rule at line %d", r->line);
	else
		snprintf(buf, len, "access rule %zu", index + 1);
}

static int add_principal(struct id_set *set, const char *p, const char *where, const char *op,
                         char *err, size_t errlen)
{
	const char *colon = strchr(p, ':');
	size_t kind_len = colon ? (size_t)(colon - p) : 0;
	const char *value = colon ? colon + 1 : "";
	unsigned id;
	int rc;

	if (kind_len == 4 && strncmp(p, "user", 4) == 0 && *value) {
		rc = lookup_name(value, false, &id);
		if (rc == -ENOENT) {
			snprintf(err, errlen, "%s: unknown user '%s'", where, value);
			return -EINVAL;
		}
		if (rc) {
			snprintf(err, errlen, "%s: cannot look up user '%s': %s", where, value,
			         strerror(-rc));
			return rc;
		}
		set->uids[set->n_uids++] = (uid_t)id;
		return 0;
	}
	if (kind_len == 5 && strncmp(p, "group", 5) == 0 && *value) {
		rc = lookup_name(value, true, &id);
		if (rc == -ENOENT) {
			snprintf(err, errlen, "%s: unknown group '%s'", where, value);
			return -EINVAL;
		}
		if (rc) {
			snprintf(err, errlen, "%s: cannot look up group '%s': %s", where, value,
			         strerror(-rc));
			return rc;
		}
		set->gids[set->n_gids++] = (gid_t)id;
		return 0;
	}
	if (kind_len == 3 && strncmp(p, "uid", 3) == 0 && parse_id(value, &id) == 0) {
		set->uids[set->n_uids++] = (uid_t)id;
		return 0;
	}
	if (kind_len == 3 && strncmp(p, "gid", 3) == 0 && parse_id(value, &id) == 0) {
		set->gids[set->n_gids++] = (gid_t)id;
		return 0;
	}
	snprintf(err, errlen, "%s: bad principal '%s' in %s (expected user:NAME, group:NAME, "
	         "uid:N or gid:N)", where, p, op);
	return -EINVAL;
}

/* Resolve every principal of src into ids.  The result borrows src's network
 * lists, so src must outlive it. */
static int ruleset_compile(const struct config_access_rule *src, size_t n, struct ruleset **out,
                           char *err, size_t errlen)
{
	int rc = -ENOMEM;
	struct ruleset *rs = calloc(1, sizeof(*rs));
	if (!rs)
		goto fail;
	rs->rules = calloc(n ? n : 1, sizeof(*rs->rules));
	if (!rs->rules)
		goto fail;
	rs->n = n;
	for (size_t i = 0; i < n; i++) {
		char where[64];
		rule_where(&src[i], i, where, sizeof(where));
		rs->rules[i].networks = &src[i].networks;
		for (int op = 0; op < ACCESS_N_OPS; op++) {
			const struct strlist *l = rule_op_list(&src[i], op);
			struct id_set *set = &rs->rules[i].ops[op];
			if (!l->n)
				continue;
			/* Each principal adds at most one id to one of the two. */
			set->uids = calloc(l->n, sizeof(*set->uids));
			set->gids = calloc(l->n, sizeof(*set->gids));
			if (!set->uids || !set->gids) {
				rc = -ENOMEM;
				goto fail;
			}
			for (size_t j = 0; j < l->n; j++) {
				rc = add_principal(set, l->items[j], where, op_names[op], err, errlen);
				if (rc)
					goto fail_reported;
			}
		}
	}
	*out = rs;
	return 0;
fail:
	snprintf(err, errlen, "access rules: %s", strerror(-rc));
fail_reported:
	ruleset_free(rs);
	return rc;
}

static void src_free(struct config_access_rule *src, size_t n)
{
	for (size_t i = 0; src && i < n; i++) {
		strlist_clear(&src[i].networks);
		strlist_clear(&src[i].read);
		strlist_clear(&src[i].write);
		strlist_clear(&src[i].remove);
		strlist_clear(&src[i].list);
		strlist_clear(&src[i].address);
	}
	free(src);
}

static int strlist_copy(struct strlist *dst, const struct strlist *from)
{
	for (size_t i = 0; i < from->n; i++) {
		int rc = strlist_add(dst, from->items[i]);
		if (rc)
			return rc;
	}
	return 0;
}

static int src_copy(const struct config_access_rule *from, size_t n,
                    struct config_access_rule **out)
{
	struct config_access_rule *src = calloc(n ? n : 1, sizeof(*src));
	if (!src)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		src[i].line = from[i].line;
		if (strlist_copy(&src[i].networks, &from[i].networks) ||
		    strlist_copy(&src[i].read, &from[i].read) ||
		    strlist_copy(&src[i].write, &from[i].write) ||
		    strlist_copy(&src[i].remove, &from[i].remove) ||
		    strlist_copy(&src[i].list, &from[i].list) ||
		    strlist_copy(&src[i].address, &from[i].address)) {
			src_free(src, n);
			return -ENOMEM;
		}
	}
	*out = src;
	return 0;
}

int access_new(const struct config_keyfs *cfg, uid_t mount_uid, struct access **out,
               char *err, size_t errlen)
{
	int rc;
	pthread_rwlockattr_t attr;
	struct access *a = calloc(1, sizeof(*a));
	if (!a) {
		rc = -ENOMEM;
		goto fail_errno;
	}
	a->mount_uid = mount_uid;
	a->rules_set = cfg->access_set;
	if (a->rules_set) {
		a->n_src = cfg->n_access;
		rc = src_copy(cfg->access, cfg->n_access, &a->src);
		if (rc)
			goto fail_errno;
		rc = ruleset_compile(a->src, a->n_src, &a->current, err, errlen);
		if (rc)
			goto fail;
		if (a->n_src == 0)
			log_msg(LOG_LEVEL_WARN, "keyfs.access is empty: every key operation is denied");
	}
	rc = -pthread_rwlockattr_init(&attr);
	if (rc)
		goto fail_errno;
	/* Writer preference: readers arrive continuously on a busy mount. */
	pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	rc = -pthread_rwlock_init(&a->lock, &attr);
	pthread_rwlockattr_destroy(&attr);
	if (rc)
		goto fail_errno;
	rc = -pthread_mutex_init(&a->reload_lock, NULL);
	if (rc) {
		pthread_rwlock_destroy(&a->lock);
		goto fail_errno;
	}
	*out = a;
	return 0;
fail_errno:
	snprintf(err, errlen, "access rules: %s", strerror(-rc));
fail:
	if (a) {
		ruleset_free(a->current);
		src_free(a->src, a->n_src);
		free(a);
	}
	return rc;
}

int access_reload(struct access *a, char *err, size_t errlen)
{
	if (!a->rules_set)
		return 0;
	pthread_mutex_lock(&a->reload_lock);
	struct ruleset *fresh = NULL;
	int rc = ruleset_compile(a->src, a->n_src, &fresh, err, errlen);
	if (rc == 0) {
		pthread_rwlock_wrlock(&a->lock);
		struct ruleset *old = a->current;
		a->current = fresh;
		pthread_rwlock_unlock(&a->lock);
		/* No reader can still see old: they all held the read lock. */
		ruleset_free(old);
	}
	pthread_mutex_unlock(&a->reload_lock);
	return rc;
}

static bool ids_contain(const unsigned *ids, size_t n, unsigned id)
{
	for (size_t i = 0; i < n; i++)
		if (ids[i] == id)
			return true;
	return false;
}

static bool caller_matches(const struct id_set *set, const struct caller *c)
{
	if (ids_contain(set->uids, set->n_uids, c->uid))
		return true;
	if (!set->n_gids)
		return false;
	if (ids_contain(set->gids, set->n_gids, c->gid))
		return true;
	int n = c->ngroups < CALLER_MAX_GROUPS ? c->ngroups : CALLER_MAX_GROUPS;
	for (int i = 0; i < n; i++)
		if (ids_contain(set->gids, set->n_gids, c->groups[i]))
			return true;
	return false;
}

static bool rule_applies(const struct compiled_rule *r, const char *network, enum access_op op)
{
	if (op == ACCESS_LIST && !*network)
		return true;
	if (!r->networks->n)
		return true;
	for (size_t i = 0; i < r->networks->n; i++)
		if (fnmatch(r->networks->items[i], network, 0) == 0)
			return true;
	return false;
}

static bool rule_grants(const struct compiled_rule *r, const char *network, enum access_op op,
                        const struct caller *c)
{
	return r->ops[op].n_uids + r->ops[op].n_gids > 0 && rule_applies(r, network, op) &&
	       caller_matches(&r->ops[op], c);
}

bool access_allowed(struct access *a, const struct caller *c, const char *network,
                    enum access_op op)
{
	if (!a || !c || (unsigned)op >= ACCESS_N_OPS)
		return false;
	if (!network)
		network = "";
	if (!a->rules_set)
		return op == ACCESS_ADDRESS || c->uid == a->mount_uid || c->uid == 0;

	bool allowed = false;
	pthread_rwlock_rdlock(&a->lock);
	const struct ruleset *rs = a->current;
	for (size_t i = 0; i < rs->n && !allowed; i++) {
		const struct compiled_rule *r = &rs->rules[i];
		allowed = rule_grants(r, network, op, c) ||
		          (op == ACCESS_ADDRESS && rule_grants(r, network, ACCESS_READ, c));
	}
	pthread_rwlock_unlock(&a->lock);
	return allowed;
}

bool access_any_grant(struct access *a, const struct caller *c, const char *network)
{
	for (int op = 0; op < ACCESS_N_OPS; op++) {
		/* Without rules addresses are public, which is no grant on the key. */
		if (op == ACCESS_ADDRESS && a && !a->rules_set)
			continue;
		if (access_allowed(a, c, network, (enum access_op)op))
			return true;
	}
	return false;
}

bool access_allowed_somewhere(struct access *a, const struct caller *c, enum access_op op)
{
	if (!a || !c || (unsigned)op >= ACCESS_N_OPS)
		return false;
	if (!a->rules_set)
		return c->uid == a->mount_uid || c->uid == 0;
	bool allowed = false;
	pthread_rwlock_rdlock(&a->lock);
	const struct ruleset *rs = a->current;
	for (size_t i = 0; i < rs->n && !allowed; i++)
		allowed = caller_matches(&rs->rules[i].ops[op], c);
	pthread_rwlock_unlock(&a->lock);
	return allowed;
}

int access_resolve_group(const char *spec, gid_t *out)
{
	unsigned id;
	int rc = parse_id(spec, &id);
	if (rc < 0)
		rc = lookup_name(spec, true, &id);
	if (rc == 0)
		*out = (gid_t)id;
	return rc;
}

void access_free(struct access *a)
{
	if (!a)
		return;
	pthread_rwlock_destroy(&a->lock);
	pthread_mutex_destroy(&a->reload_lock);
	ruleset_free(a->current);
	src_free(a->src, a->n_src);
	free(a);
}

/* ---- time zones ----------------------------------------------------------
 * Just enough of RFC 8536 (TZif) and POSIX TZ strings to answer "what is the
 * UTC offset at time t" without the C library's global TZ state. */

#define TZ_FILE_MAX (1 << 20)

struct tz_date {
	char kind;       /* 'M' month.week.day, 'J' Julian 1..365 without Feb 29, 'D' 0..365 */
	int month, week, wday, day;
	long time;       /* local seconds after midnight of that day (may be <0 or >24h) */
};

struct tz_posix {
	long std_off;    /* seconds east of UTC */
	long dst_off;
	bool has_dst;
	struct tz_date start, end;
};

struct tz {
	int64_t *trans;          /* transition times, ascending */
	unsigned char *trans_type;
	size_t n_trans;
	long *type_off;          /* UTC offset of each local time type */
	size_t n_types;
	bool has_footer;
	struct tz_posix footer;  /* for times after the last transition */
};

static int64_t floor_div(int64_t a, int64_t b)
{
	int64_t q = a / b;
	return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = floor_div(y, 400);
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static int64_t year_from_days(int64_t z)
{
	z += 719468;
	int64_t era = floor_div(z, 146097);
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;
	return (int64_t)yoe + era * 400 + (mp >= 10);
}

static bool is_leap(int64_t y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int weekday_of_days(int64_t days)
{
	int64_t w = (days + 4) % 7;   /* 1970-01-01 was a Thursday */
	return (int)(w < 0 ? w + 7 : w);
}

static const char *tz_parse_name(const char *p)
{
	if (*p == '<') {
		const char *q = strchr(p, '>');
		return q && q > p + 1 ? q + 1 : NULL;
	}
	const char *s = p;
	while (isalpha((unsigned char)*p))
		p++;
	return p - s >= 3 ? p : NULL;
}

/* [+-]hh[:mm[:ss]], hours up to 167 (RFC 8536 extension). */
static const char *tz_parse_hms(const char *p, long *out)
{
	long sign = 1, part[3] = { 0, 0, 0 };
	if (*p == '+' || *p == '-')
		sign = *p++ == '-' ? -1 : 1;
	for (int i = 0; i < 3; i++) {
		if (i > 0) {
			if (*p != ':')
				break;
			p++;
		}
		if (!isdigit((unsigned char)*p))
			return NULL;
		int digits = 0;
		while (isdigit((unsigned char)*p)) {
			part[i] = part[i] * 10 + (*p++ - '0');
			if (++digits > 3)
				return NULL;
		}
	}
	if (part[0] > 167 || part[1] > 59 || part[2] > 59)
		return NULL;
	*out = sign * (part[0] * 3600 + part[1] * 60 + part[2]);
	return p;
}

static const char *tz_parse_num(const char *p, int lo, int hi, int *out)
{
	int v = 0, digits = 0;
	while (isdigit((unsigned char)*p) && digits < 4) {
		v = v * 10 + (*p++ - '0');
		digits++;
	}
	if (!digits || v < lo || v > hi)
		return NULL;
	*out = v;
	return p;
}

static const char *tz_parse_date(const char *p, struct tz_date *d)
{
	memset(d, 0, sizeof(*d));
	if (*p == 'M') {
		d->kind = 'M';
		p = tz_parse_num(p + 1, 1, 12, &d->month);
		if (!p || *p != '.')
			return NULL;
		p = tz_parse_num(p + 1, 1, 5, &d->week);
		if (!p || *p != '.')
			return NULL;
		p = tz_parse_num(p + 1, 0, 6, &d->wday);
	} else if (*p == 'J') {
		d->kind = 'J';
		p = tz_parse_num(p + 1, 1, 365, &d->day);
	} else {
		d->kind = 'D';
		p = tz_parse_num(p, 0, 365, &d->day);
	}
	if (!p)
		return NULL;
	d->time = 7200;
	if (*p == '/')
		p = tz_parse_hms(p + 1, &d->time);
	return p;
}

static int tz_posix_parse(const char *s, struct tz_posix *out)
{
	long off;
	const char *p = tz_parse_name(s);
	if (!p || !(p = tz_parse_hms(p, &off)))
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	out->std_off = -off;   /* POSIX counts west of UTC */
	if (!*p)
		return 0;
	if (!(p = tz_parse_name(p)))
		return -EINVAL;
	out->has_dst = true;
	out->dst_off = out->std_off + 3600;
	if (*p && *p != ',') {
		if (!(p = tz_parse_hms(p, &off)))
			return -EINVAL;
		out->dst_off = -off;
	}
	if (!*p)   /* no rule: POSIX leaves it open, glibc uses the US one */
		p = ",M3.2.0,M11.1.0";
	if (*p != ',' || !(p = tz_parse_date(p + 1, &out->start)) || *p != ',' ||
	    !(p = tz_parse_date(p + 1, &out->end)) || *p)
		return -EINVAL;
	return 0;
}

/* Seconds since the epoch at which a rule's local time falls in year y,
 * for a zone whose offset before the transition is off. */
static int64_t tz_date_utc(const struct tz_date *d, int64_t y, long off)
{
	int64_t days;
	if (d->kind == 'M') {
		static const int mdays[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
		int64_t first = days_from_civil(y, (unsigned)d->month, 1);
		int dim = mdays[d->month - 1] + (d->month == 2 && is_leap(y));
		int day = 1 + (d->wday - weekday_of_days(first) + 7) % 7 + (d->week - 1) * 7;
		while (day > dim)
			day -= 7;
		days = first + day - 1;
	} else if (d->kind == 'J') {
		days = days_from_civil(y, 1, 1) + d->day - 1 + (is_leap(y) && d->day >= 60);
	} else {
		days = days_from_civil(y, 1, 1) + d->day;
	}
	return days * 86400 + d->time - off;
}

static long tz_posix_offset(const struct tz_posix *z, int64_t t)
{
	if (!z->has_dst)
		return z->std_off;
	int64_t y = year_from_days(floor_div(t + z->std_off, 86400));
	int64_t start = tz_date_utc(&z->start, y, z->std_off);
	int64_t end = tz_date_utc(&z->end, y, z->dst_off);
	bool dst = start < end ? (t >= start && t < end) : !(t >= end && t < start);
	return dst ? z->dst_off : z->std_off;
}

static long tz_offset(const struct tz *z, int64_t t)
{
	if (!z)
		return 0;
	if (z->n_trans == 0 || t >= z->trans[z->n_trans - 1]) {
		if (z->has_footer)
			return tz_posix_offset(&z->footer, t);
		if (z->n_trans == 0)
			return z->type_off[0];
		return z->type_off[z->trans_type[z->n_trans - 1]];
	}
	if (t < z->trans[0])
		return z->type_off[0];
	size_t lo = 0, hi = z->n_trans - 1;   /* trans[lo] <= t < trans[hi] */
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (z->trans[mid] <= t)
			lo = mid;
		else
			hi = mid;
	}
	return z->type_off[z->trans_type[lo]];
}

static void tz_free(struct tz *z)
{
	if (!z)
		return;
	free(z->trans);
	free(z->trans_type);
	free(z->type_off);
	free(z);
}

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const unsigned char *p)
{
	return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

/* Parse a TZif file held in buf[0..len). */
static int tz_parse_tzif(const unsigned char *buf, size_t len, struct tz *z)
{
	size_t pos = 0;
	int tsize = 4;
	for (;;) {
		if (len - pos < 44 || memcmp(buf + pos, "TZif", 4) != 0)
			return -EINVAL;
		char version = (char)buf[pos + 4];
		uint32_t isutcnt = be32(buf + pos + 20), isstdcnt = be32(buf + pos + 24);
		uint32_t leapcnt = be32(buf + pos + 28), timecnt = be32(buf + pos + 32);
		uint32_t typecnt = be32(buf + pos + 36), charcnt = be32(buf + pos + 40);
		if (typecnt == 0 || typecnt > 256 || timecnt > 100000 || leapcnt > 100000 ||
		    charcnt > 100000 || isutcnt > 256 || isstdcnt > 256)
			return -EINVAL;
		size_t body = (size_t)timecnt * (size_t)(tsize + 1) + typecnt * 6 + charcnt +
		              (size_t)leapcnt * (size_t)(tsize + 4) + isstdcnt + isutcnt;
		pos += 44;
		if (len - pos < body)
			return -EINVAL;
		if (tsize == 4 && version >= '2') {   /* skip the v1 block, use the 64-bit one */
			pos += body;
			tsize = 8;
			continue;
		}
		const unsigned char *p = buf + pos;
		z->n_trans = timecnt;
		z->n_types = typecnt;
		z->trans = calloc(timecnt ? timecnt : 1, sizeof(*z->trans));
		z->trans_type = calloc(timecnt ? timecnt : 1, 1);
		z->type_off = calloc(typecnt, sizeof(*z->type_off));
		if (!z->trans || !z->trans_type || !z->type_off)
			return -ENOMEM;
		for (uint32_t i = 0; i < timecnt; i++, p += tsize) {
			z->trans[i] = tsize == 8 ? be64(p) : (int32_t)be32(p);
			if (i > 0 && z->trans[i] <= z->trans[i - 1])
				return -EINVAL;
		}
		for (uint32_t i = 0; i < timecnt; i++, p++) {
			if (*p >= typecnt)
				return -EINVAL;
			z->trans_type[i] = *p;
		}
		for (uint32_t i = 0; i < typecnt; i++, p += 6)
			z->type_off[i] = (int32_t)be32(p);
		pos += body;
		if (tsize == 8 && pos < len && buf[pos] == '\n') {
			const unsigned char *nl = memchr(buf + pos + 1, '\n', len - pos - 1);
			size_t flen = nl ? (size_t)(nl - (buf + pos + 1)) : 0;
			char footer[128];
			if (nl && flen > 0 && flen < sizeof(footer)) {
				memcpy(footer, buf + pos + 1, flen);
				footer[flen] = 0;
				/* A footer we cannot read falls back to the last type. */
				z->has_footer = tz_posix_parse(footer, &z->footer) == 0;
			}
		}
		return 0;
	}
}

static int read_file_capped(const char *path, unsigned char **out, size_t *outlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = 0;
	size_t len = 0, cap = 4096;
	unsigned char *buf = malloc(cap);
	if (!buf) {
		rc = -ENOMEM;
		goto out;
	}
	for (;;) {
		if (len == cap) {
			if (cap >= TZ_FILE_MAX) {
				rc = -EFBIG;
				goto out;
			}
			unsigned char *bigger = realloc(buf, cap * 2);
			if (!bigger) {
				rc = -ENOMEM;
				goto out;
			}
			buf = bigger;
			cap *= 2;
		}
		ssize_t n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
out:
	close(fd);
	if (rc) {
		free(buf);
		return rc;
	}
	*out = buf;
	*outlen = len;
	return 0;
}

/* name: a zoneinfo name ("Europe/Berlin", relative to $TZDIR or
 * /usr/share/zoneinfo), an absolute TZif path, or a POSIX TZ string. */
static int tz_load(const char *name, struct tz **out, char *err, size_t errlen)
{
	struct tz *z = calloc(1, sizeof(*z));
	unsigned char *buf = NULL;
	size_t len = 0;
	int rc = -ENOMEM;
	if (!z)
		goto fail;
	if (!*name || strstr(name, "..")) {
		rc = -EINVAL;
		goto fail;
	}
	char path[4096];
	const char *dir = getenv("TZDIR");
	if (name[0] == '/')
		snprintf(path, sizeof(path), "%s", name);
	else
		snprintf(path, sizeof(path), "%s/%s", dir && *dir ? dir : "/usr/share/zoneinfo", name);
	rc = read_file_capped(path, &buf, &len);
	if (rc == 0) {
		rc = tz_parse_tzif(buf, len, z);
		free(buf);
	} else if (rc == -ENOENT || rc == -ENOTDIR) {
		z->n_types = 1;
		z->type_off = calloc(1, sizeof(*z->type_off));
		if (!z->type_off) {
			rc = -ENOMEM;
			goto fail;
		}
		rc = tz_posix_parse(name, &z->footer);
		z->has_footer = rc == 0;
		z->type_off[0] = z->footer.std_off;
	}
	if (rc)
		goto fail;
	*out = z;
	return 0;
fail:
	snprintf(err, errlen, "business_hours: unknown or unreadable time zone '%s': %s", name,
	         rc == -EINVAL ? "not a zoneinfo name or POSIX TZ string" : strerror(-rc));
	tz_free(z);
	return rc == -ENOENT ? -EINVAL : rc;
}

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
	struct tz *tz;            /* NULL: UTC */
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
static bool business_open(const struct anomaly *an, double now)
{
	int64_t t = (int64_t)now;
	if ((double)t > now)
		t--;
	int64_t local = t + tz_offset(an->tz, t);
	int64_t days = floor_div(local, 86400);
	int minute = (int)((local - days * 86400) / 60);
	int wday = weekday_of_days(days);
	int start = an->start_minute, end = an->end_minute;
	if (start < end)
		return day_on(an->days_mask, wday) && minute >= start && minute < end;
	if (start > end)
		return (day_on(an->days_mask, wday) && minute >= start) ||
		       (day_on(an->days_mask, (wday + 6) % 7) && minute < end);
	return day_on(an->days_mask, wday);
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
		if (bh->timezone && strcmp(bh->timezone, "UTC") != 0) {
			rc = tz_load(bh->timezone, &an->tz, err, errlen);
			if (rc)
				goto fail;
		}
	}
	rc = -pthread_mutex_init(&an->lock, NULL);
	if (rc) {
		snprintf(err, errlen, "anomaly detection: %s", strerror(-rc));
		goto fail;
	}
	*out = an;
	return 0;
fail:
	tz_free(an->tz);
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
	tz_free(an->tz);
	free(an);
}
