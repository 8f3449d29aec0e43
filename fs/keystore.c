/* keystore.c - the one place where a caller's key operation meets the
 * backend: access rules, anomaly signals, cache, metrics, health and audit
 * wrap every call here, in that order, so the FUSE layer and the backends
 * stay free of cross-cutting code. */
#include "keyfs.h"
#include "clock.h"
#include "keyformat.h"
#include "hash.h"
#include "log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static enum access_op access_op_for(enum key_op op)
{
	switch (op) {
	case KEY_OP_GET:    return ACCESS_READ;
	case KEY_OP_STORE:  return ACCESS_WRITE;
	case KEY_OP_REMOVE: return ACCESS_REMOVE;
	default:            return ACCESS_LIST;
	}
}

static const char *errno_reason(int rc)
{
	switch (rc) {
	case -ENOENT:    return "not found";
	case -EACCES:    return "refused by backend";
	case -ETIMEDOUT: return "backend timeout";
	case -EROFS:     return "backend is read-only";
	case -EINVAL:    return "invalid key";
	case -EFBIG:     return "key too large";
	case -EILSEQ:    return "stored key is not an evm key";
	case -ENOMEM:    return "out of memory";
	default:         return "backend unavailable";
	}
}

/* The audit record of op by c on network, the outcome fields unset. */
static struct audit_record audit_record_for(struct keyfs *k, const struct caller *c,
                                            enum key_op op, const char *network)
{
	struct audit_record r = {
		.op = op,
		.network = network,
		.storage_type = k->backend_name,
		.uid = c->uid,
		.gid = c->gid,
		.pid = c->pid,
		.process = c->process,
	};
	return r;
}

static __thread char keystore_error[BACKEND_ERR_MAX];

const char *keystore_last_error(void)
{
	return keystore_error;
}

/* Write the audit line; in deny mode a failed write fails the operation. */
static int audit_finish(struct keyfs *k, const struct caller *c, enum key_op op,
                        const char *network, int rc, bool cached, bool refresh,
                        const char *error, const char *anomaly)
{
	snprintf(keystore_error, sizeof(keystore_error), "%s", rc == 0 ? "" : error ? error : "");
	if (!k->audit)
		return rc;
	struct audit_record r = audit_record_for(k, c, op, network);
	r.status = rc == 0;
	r.cached = cached;
	r.refresh = refresh;
	r.error = rc == 0 ? NULL : error;
	r.anomaly = anomaly;
	int arc = audit_write(k->audit, &r);
	if (arc < 0 && rc == 0) {
		snprintf(keystore_error, sizeof(keystore_error), "the audit log is not writable");
		return arc;
	}
	return rc;
}

/* Deny mode: record that a store or remove is about to change the backend,
 * before it does; when that line cannot be written the change is not made
 * (-EIO).  Allow mode writes no intent line: it proceeds either way. */
static int audit_intent(struct keyfs *k, const struct caller *c, enum key_op op,
                        const char *network)
{
	if (!k->audit || !audit_denies(k->audit))
		return 0;
	struct audit_record r = audit_record_for(k, c, op, network);
	r.status = true;
	r.intent = true;
	return audit_write(k->audit, &r);
}

/* Shared end of every denied attempt: counted, audited, EACCES. */
static int deny(struct keyfs *k, const struct caller *c, enum key_op op, const char *network,
                const char *why, const char *anomaly, double t0)
{
	metrics_access_denied(op);
	metrics_observe_op(k->metrics_index, op, false, clock_monotonic() - t0);
	log_kv(LOG_LEVEL_WARN, "key access denied", "operation", key_op_name(op),
	       "network", network, "reason", why, (char *)NULL);
	return audit_finish(k, c, op, network, -EACCES, false, false, why, anomaly);
}

/* Count a backend auth failure and the anomaly it may signal. */
static const char *note_auth_failure(struct keyfs *k, const struct backend_err *err)
{
	if (!err->auth_failure)
		return NULL;
	metrics_auth_failure(k->metrics_index);
	const char *kind = anomaly_auth_failure(k->anomaly);
	if (kind)
		metrics_anomaly(kind);
	return kind;
}

static void mtime_set(struct keyfs *k, const char *network, double wall)
{
	pthread_mutex_lock(&k->mtime_lock);
	size_t i;
	for (i = 0; i < k->mtime_names.n; i++)
		if (strcmp(k->mtime_names.items[i], network) == 0)
			break;
	if (i == k->mtime_names.n) {
		double *m = realloc(k->mtimes, (k->mtime_names.n + 1) * sizeof(*m));
		if (!m || strlist_add(&k->mtime_names, network) < 0) {
			if (m)
				k->mtimes = m;
			pthread_mutex_unlock(&k->mtime_lock);
			return;
		}
		k->mtimes = m;
	}
	k->mtimes[i] = wall;
	pthread_mutex_unlock(&k->mtime_lock);
}

double keystore_mtime(struct keyfs *k, const char *network)
{
	double t = k->start_wall;
	pthread_mutex_lock(&k->mtime_lock);
	for (size_t i = 0; i < k->mtime_names.n; i++) {
		if (strcmp(k->mtime_names.items[i], network) == 0) {
			t = k->mtimes[i];
			break;
		}
	}
	pthread_mutex_unlock(&k->mtime_lock);
	return t;
}

/* The listing cache follows our own stores and removes at once. */
static void list_note(struct keyfs *k, const char *network, bool present)
{
	pthread_mutex_lock(&k->list_lock);
	if (k->list_valid) {
		bool has = strlist_contains(&k->list, network);
		if (present && !has) {
			strlist_add(&k->list, network);
			strlist_sort_unique(&k->list);
		} else if (!present && has) {
			size_t out = 0;
			for (size_t i = 0; i < k->list.n; i++) {
				if (strcmp(k->list.items[i], network) == 0)
					free(k->list.items[i]);
				else
					k->list.items[out++] = k->list.items[i];
			}
			k->list.n = out;
		}
	}
	pthread_mutex_unlock(&k->list_lock);
}

/* What a backend returns is checked against key_format before anything
 * (the cache, a reader) sees it, and handed on in canonical form: a broken
 * or hostile backend cannot feed readers a 900 KB "key" or terminal escape
 * sequences.  An invalid value is EIO, counted, and named in health's
 * last_error; the backend itself answered, so it stays up. */
static int backend_value_check(struct keyfs *k, const char *network, struct secret **value,
                               struct backend_err *err)
{
	const char *why = NULL;
	struct secret *canonical = NULL;
	int rc = keyformat_canonical(k->cfg->keyfs.key_format, (*value)->data, (*value)->len,
	                             &canonical, &why);
	secret_free(*value);
	*value = canonical;
	if (rc == 0 || rc == -ENOMEM)
		return rc;
	snprintf(err->msg, sizeof(err->msg), "backend returned an invalid key: %s", why);
	metrics_invalid_value(k->metrics_index);
	health_note_invalid(k, network, err->msg);
	return -EIO;
}

static int backend_fetch(void *ctx, const char *network, struct secret **out,
                         struct backend_err *err)
{
	struct keyfs *k = ctx;
	int rc = k->backend->ops->get(k->backend, network, out, err);
	health_record(k, rc, err);
	if (rc == 0)
		rc = backend_value_check(k, network, out, err);
	if (rc == 0)
		health_note_valid(k, network);
	return rc;
}

/* The addresses/ book follows every key version the mount sees. */
static int address_note(struct keyfs *k, const char *network, const struct secret *key,
                        double seen)
{
	if (!k->addresses)
		return 0;
	int rc = address_book_note(k->addresses, network, k->backend_name, key, clock_wall(),
	                           seen);
	if (rc == -EINVAL)
		log_kv(LOG_LEVEL_WARN, "stored key is not an evm key: no address", "network", network,
		       (char *)NULL);
	return rc;
}

/* The key of network from the cache or the backend, counted in the cache
 * and freshness metrics, noted in the address book.  Not checked, not
 * audited: the callers do that. */
static int fetch(struct keyfs *k, const char *network, bool refresh, struct secret **out,
                 bool *cached, struct backend_err *err)
{
	int rc;
	double started = clock_monotonic();
	*cached = false;
	if (k->cache) {
		enum cache_result how = CACHE_MISS;
		bool changed = false;
		if (refresh)
			cache_invalidate(k->cache, network);
		rc = cache_get(k->cache, network, backend_fetch, k, out, &how, &changed, err);
		if (rc == 0 && how == CACHE_HIT) {
			metrics_cache_hit(k->metrics_index);
			*cached = true;
		} else if (rc == 0 && how == CACHE_STALE) {
			metrics_cache_stale_hit(k->metrics_index);
			*cached = true;
		} else {
			metrics_cache_miss(k->metrics_index);
		}
		if (rc == 0 && how == CACHE_MISS) {
			double now = clock_wall();
			if (k->cfg->keyfs.metrics_per_network)
				metrics_last_refresh(network, now);
			if (changed)
				mtime_set(k, network, now);
		}
		metrics_cache_size(k->metrics_index, (long)cache_size(k->cache));
	} else {
		rc = backend_fetch(k, network, out, err);
		if (rc == 0 && k->cfg->keyfs.metrics_per_network)
			metrics_last_refresh(network, clock_wall());
	}
	if (rc == 0)
		address_note(k, network, *out, started);
	else if (rc == -ENOENT && k->addresses)
		address_book_forget(k->addresses, network, started);
	return rc;
}

/* The end of an operation that fetched a key (get, address): timed into the
 * metrics, a failure logged, the audit line written. */
static int fetch_finish(struct keyfs *k, const struct caller *c, enum key_op op,
                        const char *network, int rc, bool cached, bool refresh,
                        const struct backend_err *err, const char *anomaly, double t0,
                        const char *failed)
{
	const char *why = err->msg[0] ? err->msg : errno_reason(rc);
	metrics_observe_op(k->metrics_index, op, rc == 0, clock_monotonic() - t0);
	if (rc < 0 && rc != -ENOENT)
		log_kv(LOG_LEVEL_WARN, failed, "network", network, "backend", k->backend_name,
		       "error", why, (char *)NULL);
	return audit_finish(k, c, op, network, rc, cached, refresh, why, anomaly);
}

bool keystore_allowed(struct keyfs *k, const struct caller *c, const char *network,
                      enum access_op op)
{
	return access_allowed(k->access, c, network, op);
}

int keystore_get(struct keyfs *k, const struct caller *c, const char *network, bool refresh,
                 struct secret **out)
{
	double t0 = clock_monotonic();
	struct backend_err err = { { 0 }, false };
	bool cached = false;
	int rc;

	*out = NULL;
	if (!access_allowed(k->access, c, network, ACCESS_READ))
		return deny(k, c, KEY_OP_GET, network, "access denied", NULL, t0);

	struct anomaly_verdict verdict = anomaly_check_read(k->anomaly, c);
	if (verdict.kind)
		metrics_anomaly(verdict.kind);
	if (verdict.deny)
		return deny(k, c, KEY_OP_GET, network, "rate limit exceeded", verdict.kind, t0);

	rc = fetch(k, network, refresh, out, &cached, &err);

	const char *anomaly = verdict.kind;
	const char *auth_anomaly = note_auth_failure(k, &err);
	if (auth_anomaly)
		anomaly = auth_anomaly;
	rc = fetch_finish(k, c, KEY_OP_GET, network, rc, cached, refresh, &err, anomaly, t0,
	                  "key read failed");
	if (rc < 0) {
		secret_free(*out);
		*out = NULL;
	}
	return rc;
}

int keystore_store(struct keyfs *k, const struct caller *c, const char *network,
                   const struct secret *content)
{
	double t0 = clock_monotonic();
	struct backend_err err = { { 0 }, false };
	const char *why = NULL;

	if (!access_allowed(k->access, c, network, ACCESS_WRITE))
		return deny(k, c, KEY_OP_STORE, network, "access denied", NULL, t0);

	/* Stored, cached and served in canonical form (evm: 0x + lower case). */
	struct secret *key = NULL;
	int rc = keyformat_canonical(k->cfg->keyfs.key_format, content->data, content->len,
	                             &key, &why);
	if (rc == 0) {
		if ((rc = audit_intent(k, c, KEY_OP_STORE, network)) < 0) {
			secret_free(key);
			why = "audit log not writable: the backend was not changed";
		} else {
			rc = k->backend->ops->store(k->backend, network, key, &err);
			health_record(k, rc, &err);
			if (rc == 0) {
				if (k->cache)
					cache_put(k->cache, network, key);
				address_note(k, network, key, clock_monotonic());
				list_note(k, network, true);
				mtime_set(k, network, clock_wall());
				keyfs_request_check(k);
			}
			secret_free(key);
		}
	}
	const char *anomaly = note_auth_failure(k, &err);
	metrics_observe_op(k->metrics_index, KEY_OP_STORE, rc == 0, clock_monotonic() - t0);
	if (rc == 0)
		log_kv(LOG_LEVEL_INFO, "key stored", "network", network, "backend", k->backend_name,
		       (char *)NULL);
	else
		log_kv(LOG_LEVEL_WARN, "key store failed", "network", network,
		       "backend", k->backend_name,
		       "error", why ? why : err.msg[0] ? err.msg : errno_reason(rc), (char *)NULL);
	return audit_finish(k, c, KEY_OP_STORE, network, rc, false, false,
	                    why ? why : err.msg[0] ? err.msg : errno_reason(rc), anomaly);
}

int keystore_remove(struct keyfs *k, const struct caller *c, const char *network)
{
	double t0 = clock_monotonic();
	struct backend_err err = { { 0 }, false };

	if (!access_allowed(k->access, c, network, ACCESS_REMOVE))
		return deny(k, c, KEY_OP_REMOVE, network, "access denied", NULL, t0);

	int rc = audit_intent(k, c, KEY_OP_REMOVE, network);
	if (rc < 0) {
		metrics_observe_op(k->metrics_index, KEY_OP_REMOVE, false, clock_monotonic() - t0);
		log_kv(LOG_LEVEL_ERROR, "key not removed: the audit log is not writable",
		       "network", network, (char *)NULL);
		snprintf(keystore_error, sizeof(keystore_error),
		         "audit log not writable: the backend was not changed");
		return rc;
	}
	rc = k->backend->ops->remove(k->backend, network, &err);
	health_record(k, rc, &err);
	if (rc == 0 || rc == -ENOENT) {
		if (k->cache)
			cache_invalidate(k->cache, network);
		if (k->addresses)
			address_book_forget(k->addresses, network, clock_monotonic());
		list_note(k, network, false);
		mtime_set(k, network, clock_wall());
		keyfs_request_check(k);
	}
	const char *anomaly = note_auth_failure(k, &err);
	metrics_observe_op(k->metrics_index, KEY_OP_REMOVE, rc == 0, clock_monotonic() - t0);
	log_kv(rc == 0 ? LOG_LEVEL_INFO : LOG_LEVEL_WARN, rc == 0 ? "key removed" : "key remove failed",
	       "network", network, "backend", k->backend_name,
	       "error", rc == 0 ? "" : err.msg[0] ? err.msg : errno_reason(rc), (char *)NULL);
	return audit_finish(k, c, KEY_OP_REMOVE, network, rc, false, false,
	                    err.msg[0] ? err.msg : errno_reason(rc), anomaly);
}

int keystore_address(struct keyfs *k, const struct caller *c, const char *network,
                     char out[EVM_ADDRESS_TEXT + 1])
{
	double t0 = clock_monotonic();
	struct backend_err err = { { 0 }, false };
	struct secret *key = NULL;
	bool cached = false;

	if (!k->addresses) {   /* key_format any: keys are not EVM keys */
		snprintf(keystore_error, sizeof(keystore_error), "key_format is not evm");
		return -ENOENT;
	}
	if (!access_allowed(k->access, c, network, ACCESS_ADDRESS))
		return deny(k, c, KEY_OP_ADDRESS, network, "access denied", NULL, t0);
	if (address_book_lookup(k->addresses, network, out, NULL) == 0) {
		metrics_observe_op(k->metrics_index, KEY_OP_ADDRESS, true, clock_monotonic() - t0);
		return 0;
	}

	/* Not seen yet: fetch as the daemon, derive, keep; the key stays here. */
	int rc = fetch(k, network, false, &key, &cached, &err);
	secret_free(key);
	if (rc == 0 && address_book_lookup(k->addresses, network, out, NULL) < 0)
		rc = -EILSEQ;   /* the stored key is not an EVM key (or no memory) */
	rc = fetch_finish(k, c, KEY_OP_ADDRESS, network, rc, cached, false, &err,
	                  note_auth_failure(k, &err), t0, "address not derived");
	/* The FUSE layer sees EIO for a key it cannot make an address of. */
	return rc == -EILSEQ ? -EIO : rc;
}

/* Make the cached listing usable; returns with list_lock held.
 * - fresh (younger than list_cache_seconds): used as it is;
 * - stale while another caller refreshes it: the stale one is used, so
 *   lookups never queue behind a slow backend;
 * - otherwise this caller asks the backend, without holding the lock.
 * With no listing at all, callers wait for the one refresh in flight and
 * share its outcome.  On a failed refresh the previous listing is kept. */
/* After a failed listing the backend is not asked again for this long:
 * every lookup of a name would otherwise ask a hung backend in turn. */
#define LIST_NEGATIVE_SECONDS 2.0

static int list_refresh(struct keyfs *k, struct backend_err *err, bool *called)
{
	pthread_mutex_lock(&k->list_lock);
	for (;;) {
		double now = clock_monotonic();
		if (k->list_valid && now - k->list_fetched_at < k->cfg->keyfs.list_cache_seconds)
			return 0;
		if (k->list_last_rc < 0 && now - k->list_failed_at < LIST_NEGATIVE_SECONDS) {
			snprintf(err->msg, sizeof(err->msg), "%s", k->list_last_error);
			return k->list_valid ? 0 : k->list_last_rc;
		}
		if (!k->list_refreshing)
			break;
		if (k->list_valid)
			return 0;
		pthread_cond_wait(&k->list_cond, &k->list_lock);
		if (!k->list_refreshing)
			return k->list_valid ? 0 : k->list_last_rc;
	}
	k->list_refreshing = true;
	pthread_mutex_unlock(&k->list_lock);

	struct strlist fresh = STRLIST_INIT;
	double t0 = clock_monotonic();
	int rc = k->backend->ops->list(k->backend, &fresh, err);
	*called = true;
	health_record(k, rc, err);
	metrics_observe_op(k->metrics_index, KEY_OP_LIST, rc == 0, clock_monotonic() - t0);
	/* Keep only names the tree can show. */
	struct strlist valid = STRLIST_INIT;
	for (size_t i = 0; rc == 0 && i < fresh.n; i++)
		if (network_name_valid(fresh.items[i]))
			strlist_add(&valid, fresh.items[i]);
	strlist_clear(&fresh);
	strlist_sort_unique(&valid);

	pthread_mutex_lock(&k->list_lock);
	k->list_refreshing = false;
	k->list_last_rc = rc;
	if (rc < 0) {
		k->list_failed_at = clock_monotonic();
		snprintf(k->list_last_error, sizeof(k->list_last_error), "%s",
		         err->msg[0] ? err->msg : errno_reason(rc));
	}
	if (rc == 0) {
		strlist_clear(&k->list);
		k->list = valid;
		k->list_valid = true;
		k->list_fetched_at = clock_monotonic();
	}
	pthread_cond_broadcast(&k->list_cond);
	return rc < 0 && !k->list_valid ? rc : 0;
}

/* Copy the (refreshed) cached listing into out: with a caller, only the
 * networks it has some grant for. */
static int list_copy(struct keyfs *k, const struct caller *c, struct strlist *out,
                     struct backend_err *err, bool *called)
{
	int rc = list_refresh(k, err, called);
	for (size_t i = 0; rc == 0 && i < k->list.n; i++)
		if ((!c || access_any_grant(k->access, c, k->list.items[i])) &&
		    strlist_add(out, k->list.items[i]) < 0)
			rc = -ENOMEM;
	pthread_mutex_unlock(&k->list_lock);
	return rc;
}

int keystore_list(struct keyfs *k, const struct caller *c, struct strlist *out)
{
	double t0 = clock_monotonic();
	struct backend_err err = { { 0 }, false };
	bool called = false;

	if (!access_allowed(k->access, c, "", ACCESS_LIST))
		return deny(k, c, KEY_OP_LIST, "", "access denied", NULL, t0);

	int rc = list_copy(k, c, out, &err, &called);
	const char *anomaly = note_auth_failure(k, &err);
	if (!called)   /* served from the listing cache: still an operation */
		metrics_observe_op(k->metrics_index, KEY_OP_LIST, rc == 0, clock_monotonic() - t0);
	return audit_finish(k, c, KEY_OP_LIST, "", rc, false, false,
	                    err.msg[0] ? err.msg : errno_reason(rc), anomaly);
}

int keystore_names(struct keyfs *k, struct strlist *out)
{
	struct backend_err err = { { 0 }, false };
	bool called = false;
	int rc = list_copy(k, NULL, out, &err, &called);
	if (called)
		note_auth_failure(k, &err);
	return rc;
}

/* The kernel looks a path up more than once for one open (path walk, then
 * open): a probe of one name by one process is audited once a second. */
#define PROBE_SLOTS 64
static struct {
	pthread_mutex_t lock;
	struct { pid_t pid; size_t name_hash; double at; } slot[PROBE_SLOTS];
} probes = { PTHREAD_MUTEX_INITIALIZER, { { 0, 0, 0 } } };

static bool probe_is_new(pid_t pid, const char *network)
{
	size_t h = hash_string(network);
	unsigned i = (unsigned)((h ^ (size_t)pid) % PROBE_SLOTS);
	double now = clock_monotonic();
	pthread_mutex_lock(&probes.lock);
	bool seen = probes.slot[i].pid == pid && probes.slot[i].name_hash == h &&
	            now - probes.slot[i].at < 1.0;
	probes.slot[i].pid = pid;
	probes.slot[i].name_hash = h;
	probes.slot[i].at = now;
	pthread_mutex_unlock(&probes.lock);
	return !seen;
}

int keystore_lookup(struct keyfs *k, const struct caller *c, const char *network)
{
	if (!access_any_grant(k->access, c, network)) {
		if (probe_is_new(c->pid, network))
			deny(k, c, KEY_OP_GET, network, "no grant for this network", NULL,
			     clock_monotonic());
		return -ENOENT;
	}
	return keystore_exists(k, network);
}

int keystore_check(struct keyfs *k, const struct caller *c, const char *network,
                   enum key_op op)
{
	if (access_allowed(k->access, c, network, access_op_for(op)))
		return 0;
	return deny(k, c, op, network, "access denied", NULL, clock_monotonic());
}

void keystore_creating(struct keyfs *k, const char *network, bool on)
{
	pthread_mutex_lock(&k->list_lock);
	if (on) {
		strlist_add(&k->creating, network);
	} else {
		for (size_t i = 0; i < k->creating.n; i++) {
			if (strcmp(k->creating.items[i], network) == 0) {
				free(k->creating.items[i]);
				k->creating.items[i] = k->creating.items[--k->creating.n];
				break;
			}
		}
	}
	pthread_mutex_unlock(&k->list_lock);
}

bool keystore_is_creating(struct keyfs *k, const char *network)
{
	pthread_mutex_lock(&k->list_lock);
	bool creating = strlist_contains(&k->creating, network);
	pthread_mutex_unlock(&k->list_lock);
	return creating;
}

int keystore_exists(struct keyfs *k, const char *network)
{
	struct backend_err err = { { 0 }, false };
	bool called = false;
	/* A cached key exists without asking for a listing. */
	if (k->cache && cache_contains(k->cache, network))
		return 0;
	if (keystore_is_creating(k, network))
		return 0;
	int rc = list_refresh(k, &err, &called);
	if (rc == 0)
		rc = strlist_contains(&k->list, network) ? 0 : -ENOENT;
	else
		rc = 0;   /* cannot list: let the open's own fetch decide (and be audited) */
	pthread_mutex_unlock(&k->list_lock);
	if (called)
		note_auth_failure(k, &err);
	return rc;
}
