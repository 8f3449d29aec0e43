/* access.c - who may do what to which key (contract sections 4 and 5).
 * (The anomaly signals and the rate limit are in anomaly.c.)
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
