/* keyops.c - the one place where a caller's key operation meets the
 * backend: routing, access rules, anomaly signals, cache, the bound on
 * calls in flight, metrics, health and audit wrap every call here, in that
 * order, so the FUSE layer and the backends stay free of cross-cutting
 * code. */
#include "keyops.h"
#include "clock.h"
#include "hash.h"
#include "keyformat.h"
#include "log.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* How long an existence check (getattr, lookup) waits for a listing. */
#define KEYSTORE_LOOKUP_SECONDS 1.0

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
static struct audit_record audit_record_for(const char *storage_type, const struct caller *c,
                                            enum key_op op, const char *network)
{
	struct audit_record r = {
		.op = op,
		.network = network,
		.storage_type = storage_type,
		.uid = c->uid,
		.gid = c->gid,
		.pid = c->pid,
		.process = c->process,
	};
	return r;
}

static __thread char keyops_error[BACKEND_ERR_MAX];

const char *keyops_last_error(void)
{
	return keyops_error;
}

/* Whether this thread's last successful store replaced a key. */
static __thread bool keyops_replaced;

const char *keyops_last_store(void)
{
	return keyops_replaced ? "replaced" : "created";
}

/* Write the audit line; in deny mode a failed write fails the operation. */
static int audit_finish(struct mount_state *k, const char *storage_type, const struct caller *c,
                        enum key_op op, const char *network, int rc, bool cached, bool refresh,
                        const char *error, const char *anomaly)
{
	snprintf(keyops_error, sizeof(keyops_error), "%s", rc == 0 ? "" : error ? error : "");
	if (!k->audit)
		return rc;
	struct audit_record r = audit_record_for(storage_type, c, op, network);
	r.status = rc == 0;
	r.cached = cached;
	r.refresh = refresh;
	r.error = rc == 0 ? NULL : error;
	r.anomaly = anomaly;
	int arc = audit_write(k->audit, &r);
	if (arc < 0 && rc == 0) {
		snprintf(keyops_error, sizeof(keyops_error), "the audit log is not writable");
		return arc;
	}
	return rc;
}

/* Deny mode: record that a store or remove is about to change the backend,
 * before it does; when that line cannot be written the change is not made
 * (-EIO).  Allow mode writes no intent line: it proceeds either way. */
static int audit_intent(struct mount_state *k, const char *storage_type, const struct caller *c,
                        enum key_op op, const char *network)
{
	if (!k->audit || !audit_denies(k->audit))
		return 0;
	struct audit_record r = audit_record_for(storage_type, c, op, network);
	r.status = true;
	r.intent = true;
	return audit_write(k->audit, &r);
}

/* Shared end of every denied attempt: counted, audited, EACCES. */
static int deny(struct mount_state *k, struct instance *in, const struct caller *c, enum key_op op,
                const char *network, const char *why, const char *anomaly, double t0)
{
	metrics_access_denied(op);
	metrics_observe_op(in->metrics, op, false, clock_monotonic() - t0);
	log_kv(LOG_LEVEL_WARN, "key access denied", "operation", key_op_name(op),
	       "network", network, "reason", why, (char *)NULL);
	return audit_finish(k, op == KEY_OP_LIST ? k->all_names : in->name, c, op, network,
	                    -EACCES, false, false, why, anomaly);
}

/* The bound on calls in flight: a hung backend holds at most max_in_flight
 * FUSE threads in backend calls, so the other instances and the monitoring
 * files keep their threads.  A call that finds the bound reached waits for a
 * place as long as the calls in flight keep completing (a busy backend: a
 * burst of cold reads is served, not failed), and fails with EIO (counted)
 * once none has completed for SLOT_PROGRESS_SECONDS (a hung backend) or
 * after SLOT_WAIT_SECONDS in all. */
#define SLOT_PROGRESS_SECONDS 1.0
#define SLOT_WAIT_SECONDS 10.0

static bool in_flight_try(struct instance *in)
{
	int n = __atomic_load_n(&in->in_flight, __ATOMIC_ACQUIRE);
	while (n < in->max_in_flight)
		if (__atomic_compare_exchange_n(&in->in_flight, &n, n + 1, false,
		                                __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
			return true;
	return false;
}

static bool in_flight_wait(struct instance *in)
{
	double start = clock_monotonic();
	bool got = false;
	__atomic_add_fetch(&in->slot_waiters, 1, __ATOMIC_ACQ_REL);
	pthread_mutex_lock(&in->slot_lock);
	for (;;) {
		unsigned long done = __atomic_load_n(&in->calls_done, __ATOMIC_ACQUIRE);
		if ((got = in_flight_try(in)))
			break;
		double now = clock_monotonic();
		if (now - start >= SLOT_WAIT_SECONDS)
			break;
		double until = now + SLOT_PROGRESS_SECONDS;
		struct timespec ts = { .tv_sec = (time_t)until,
		                       .tv_nsec = (long)((until - (double)(time_t)until) * 1e9) };
		int w = 0;
		while (w == 0 && __atomic_load_n(&in->calls_done, __ATOMIC_ACQUIRE) == done)
			w = pthread_cond_timedwait(&in->slot_cond, &in->slot_lock, &ts);
		if (w != 0 && __atomic_load_n(&in->calls_done, __ATOMIC_ACQUIRE) == done) {
			got = in_flight_try(in);   /* no call completed: hung */
			break;
		}
	}
	pthread_mutex_unlock(&in->slot_lock);
	__atomic_sub_fetch(&in->slot_waiters, 1, __ATOMIC_ACQ_REL);
	return got;
}

static int in_flight_enter(struct instance *in, struct backend_err *err)
{
	if (!in_flight_try(in) && !in_flight_wait(in)) {
		metrics_in_flight_rejected(in->metrics);
		backend_err_set(err, "%d calls already in flight to backend '%s' and none completing "
		                "(max_calls_in_flight)", in->max_in_flight, in->name);
		return -EIO;
	}
	metrics_in_flight_add(in->metrics, 1);
	return 0;
}

static void in_flight_leave(struct instance *in)
{
	__atomic_sub_fetch(&in->in_flight, 1, __ATOMIC_ACQ_REL);
	__atomic_add_fetch(&in->calls_done, 1, __ATOMIC_ACQ_REL);
	metrics_in_flight_add(in->metrics, -1);
	if (__atomic_load_n(&in->slot_waiters, __ATOMIC_ACQUIRE) > 0) {
		pthread_mutex_lock(&in->slot_lock);
		pthread_cond_broadcast(&in->slot_cond);
		pthread_mutex_unlock(&in->slot_lock);
	}
}

/* Count a backend auth failure and the anomaly it may signal. */
static const char *note_auth_failure(struct mount_state *k, struct instance *in,
                                     const struct backend_err *err)
{
	if (!err->auth_failure)
		return NULL;
	metrics_auth_failure(in->metrics);
	const char *kind = anomaly_auth_failure(k->anomaly);
	if (kind)
		metrics_anomaly(kind);
	return kind;
}

/* Per-network mtimes live in the mount's per-network records (netrec.h),
 * so the getattr of every key file (ls -l keys/) is one probe of one table
 * rather than a scan of every network seen. */
static void mtime_set(struct mount_state *k, const char *network, double wall)
{
	netrec_lock(&k->networks);
	struct netrec *r = netrec_get(&k->networks, network);
	if (r)   /* out of memory: the key keeps the mount's start time */
		r->mtime = wall;
	netrec_unlock(&k->networks);
}

/* A value's digest (netrec_digest), computed once by seen_note for keys/
 * and handed on to the address book's note of the same value (which would
 * otherwise compute the same HMAC again: ~10 000 instructions per fetch).
 * Wiped by its owner (noted_digest_wipe). */
struct noted_digest {
	bool known;
	unsigned char d[NETREC_DIGEST];
};

static void noted_digest_wipe(struct noted_digest *nd)
{
	explicit_bzero(nd, sizeof(*nd));
}

/* Note the value the mount now has for network: key, whose file content
 * is key and a newline (keyops_content).  Returns true when it differs from
 * the value seen before: a rotation, which moves the mtime.  key NULL with
 * forget: the key was removed.  With nd, key's digest is left there. */
static bool seen_note(struct mount_state *k, const char *network, const struct secret *key,
                      bool forget, struct noted_digest *nd)
{
	unsigned char mac[NETREC_DIGEST];
	size_t content_len = key ? key->len + 1 : 0;
	if (key)
		netrec_digest(&k->networks, key, mac);
	if (key && nd) {
		memcpy(nd->d, mac, sizeof(mac));
		nd->known = true;
	}
	bool changed = false;
	double now = clock_wall();
	netrec_lock(&k->networks);
	struct netrec *r = netrec_get(&k->networks, network);
	if (r && forget) {
		r->has_mac = false;
		r->address_of_mac = false;
		r->size = 0;
		r->mtime = now;
	} else if (r && key) {
		bool same = r->has_mac && memcmp(r->mac, mac, sizeof(r->mac)) == 0;
		changed = r->has_mac && !same;
		if (changed)
			r->mtime = now;
		if (!same)   /* the book's address is of another version, if any */
			r->address_of_mac = false;
		memcpy(r->mac, mac, sizeof(r->mac));
		r->has_mac = true;
		r->size = content_len <= UINT32_MAX ? (uint32_t)content_len : UINT32_MAX;
	}
	netrec_unlock(&k->networks);
	explicit_bzero(mac, sizeof(mac));
	return changed;
}

/* "0x", 64 hex digits and the newline: what a read of an evm key returns. */
#define KEYSTORE_EVM_FILE_SIZE 67

double keyops_mtime(struct mount_state *k, const char *network)
{
	double t = k->start_wall;
	netrec_lock(&k->networks);
	struct netrec *r = netrec_find(&k->networks, network);
	if (r)
		t = r->mtime;
	netrec_unlock(&k->networks);
	return t;
}

off_t keyops_size(struct mount_state *k, const char *network)
{
	size_t size = 0;
	netrec_lock(&k->networks);
	struct netrec *r = netrec_find(&k->networks, network);
	if (r)
		size = r->size;
	netrec_unlock(&k->networks);
	if (size == 0 && k->cfg->keyfs.key_format == KEY_FORMAT_EVM)
		size = KEYSTORE_EVM_FILE_SIZE;
	return (off_t)size;
}

struct secret *keyops_content(struct mount_state *k, const struct secret *key)
{
	(void)k;   /* keys reach here canonical (backend_value_check, keyops_store) */
	struct secret *out = secret_new(key->len + 1);
	if (out && (secret_append(out, key->data, key->len) < 0 || secret_append(out, "\n", 1) < 0)) {
		secret_free(out);
		out = NULL;
	}
	return out;
}

/* A value fetched from the backend: remember it; a rotation moves the
 * mtime and wakes inotify watchers (mount_state_key_changed). */
static void note_fetched(struct mount_state *k, const char *network, const struct secret *key,
                         const struct backend_err *err, struct noted_digest *nd)
{
	if (err->updated_at > 0 && k->cfg->keyfs.metrics_per_network)
		metrics_key_updated(network, err->updated_at);
	if (seen_note(k, network, key, false, nd))
		mount_state_key_changed(k, network);
}

/* The listing cache follows our own stores and removes at once. */
static void list_note(struct instance *in, const char *network, bool present)
{
	pthread_mutex_lock(&in->list_lock);
	if (in->list_valid) {
		bool has = strlist_contains(&in->list, network);
		if (present && !has) {
			strlist_add(&in->list, network);
			strlist_sort_unique(&in->list);
		} else if (!present && has) {
			strlist_remove(&in->list, network);
		}
	}
	pthread_mutex_unlock(&in->list_lock);
}

/* What a backend returns is checked against key_format before anything
 * (the cache, a reader) sees it, and handed on in canonical form: a broken
 * or hostile backend cannot feed readers a 900 KB "key" or terminal escape
 * sequences.  An invalid value is EIO, counted, and named in health's
 * last_error; the backend itself answered, so it stays up. */
static int backend_value_check(struct instance *in, const char *network, struct secret **value,
                               struct backend_err *err)
{
	const char *why = NULL;
	struct secret *canonical = NULL;
	int rc = keyformat_canonical(in->k->cfg->keyfs.key_format, (*value)->data, (*value)->len,
	                             &canonical, &why);
	secret_free(*value);
	*value = canonical;
	if (rc == 0 || rc == -ENOMEM)
		return rc;
	snprintf(err->msg, sizeof(err->msg), "backend returned an invalid key: %s", why);
	metrics_invalid_value(in->metrics);
	health_note_invalid(in, network, err->msg);
	return -EIO;
}

static int backend_fetch(void *ctx, const char *network, struct secret **out,
                         struct backend_err *err)
{
	struct instance *in = ctx;
	int rc = in_flight_enter(in, err);
	if (rc == 0) {
		rc = in->backend->ops->get(in->backend, network, out, 0, err);
		in_flight_leave(in);
	}
	health_record(in, rc, err);
	if (rc == 0)
		rc = backend_value_check(in, network, out, err);
	if (rc == 0)
		health_note_valid(in, network);
	return rc;
}

/* The addresses/ book follows every key version the mount sees; the book
 * names the instance the key came from. */
static int address_note(struct instance *in, const char *network, const struct secret *key,
                        double seen, const struct noted_digest *nd)
{
	struct mount_state *k = in->k;
	if (!k->addresses)
		return 0;
	int rc = nd && nd->known
	         ? address_book_note_digest(k->addresses, network, in->name, key, nd->d,
	                                    clock_wall(), seen)
	         : address_book_note(k->addresses, network, in->name, key, clock_wall(), seen);
	if (rc == -EINVAL)
		log_kv(LOG_LEVEL_WARN, "stored key is not an evm key: no address", "network", network,
		       "storage_type", in->name, (char *)NULL);
	return rc;
}

/* A cache call's outcome counted (hit, stale hit or miss), a fetched value
 * noted: fetch_or_park, and a parked open when its fetch ends. */
static void cache_account(struct instance *in, const char *network, bool routed, int rc,
                          enum cache_result how, struct secret **out, bool *cached,
                          struct backend_err *err, struct noted_digest *nd)
{
	struct mount_state *k = in->k;
	if (rc == 0 && how == CACHE_HIT) {
		metrics_cache_hit(in->metrics);
		*cached = true;
	} else if (rc == 0 && how == CACHE_STALE) {
		metrics_cache_stale_hit(in->metrics);
		*cached = true;
	} else {
		metrics_cache_miss(in->metrics);
	}
	if (rc == 0 && how == CACHE_MISS && routed) {
		if (k->cfg->keyfs.metrics_per_network)
			metrics_last_refresh(network, clock_wall());
		note_fetched(k, network, *out, err, nd);
	}
	metrics_cache_size(in->metrics, (long)cache_size(in->cache));
}

/* The address book follows what a routed fetch found. */
static int fetch_noted(struct instance *in, const char *network, bool routed, int rc,
                       const struct secret *value, bool cached, double started,
                       const struct noted_digest *nd)
{
	struct mount_state *k = in->k;
	if (!routed)
		return rc;
	/* A value is noted when it enters the cache (here on a miss, and by
	 * store_in), so a hit is not noted again: the note's digest (then a
	 * salted Keccak) was 7 530 of a cached read's 53 283 instructions
	 * (bench/profile.py).
	 * keyops_address notes a hit itself, for a book that lost the entry. */
	if (rc == 0 && !cached)
		address_note(in, network, value, started, nd);
	else if (rc == -ENOENT && k->addresses)
		address_book_forget(k->addresses, network, started);
	return rc;
}

/* The key of network from the instance's cache or its backend, counted in
 * the cache and freshness metrics, noted in the address book.  Not checked,
 * not audited: the callers do that.  routed: network routes to in, so what
 * is fetched is what keys/<network> shows (`key migrate` also reads the
 * instances a network does not route to; those reads leave the mount's
 * view of the network alone).
 * With w, a caller that finds the key's fetch in flight parks on it
 * (CACHE_PARKED: nothing counted yet, w->done ends it). */
static int fetch_or_park(struct instance *in, const char *network, bool refresh, bool routed,
                         struct cache_waiter *w, struct secret **out, bool *cached,
                         struct backend_err *err)
{
	struct mount_state *k = in->k;
	struct noted_digest nd = { false, { 0 } };
	int rc;
	double started = clock_monotonic();
	*cached = false;
	if (in->cache) {
		enum cache_result how = CACHE_MISS;
		bool changed = false;
		if (refresh)
			cache_invalidate(in->cache, network);
		rc = cache_get_or_park(in->cache, network, backend_fetch, in, w, out, &how, &changed,
		                       err);
		if (rc == CACHE_PARKED)
			return rc;
		cache_account(in, network, routed, rc, how, out, cached, err, &nd);
	} else {
		rc = backend_fetch(in, network, out, err);
		if (rc == 0 && routed) {
			if (k->cfg->keyfs.metrics_per_network)
				metrics_last_refresh(network, clock_wall());
			note_fetched(k, network, *out, err, &nd);
		}
	}
	rc = fetch_noted(in, network, routed, rc, *out, *cached, started, &nd);
	noted_digest_wipe(&nd);
	return rc;
}

/* The end of an operation that fetched a key (get, address): timed into the
 * instance's metrics, a failure logged, the audit line written. */
static int fetch_finish(struct mount_state *k, struct instance *in, const struct caller *c,
                        enum key_op op, const char *network, int rc, bool cached, bool refresh,
                        const struct backend_err *err, const char *anomaly, double t0,
                        const char *failed)
{
	const char *why = err->msg[0] ? err->msg : errno_reason(rc);
	metrics_observe_op(in->metrics, op, rc == 0, clock_monotonic() - t0);
	if (rc < 0 && rc != -ENOENT)
		log_kv(LOG_LEVEL_WARN, failed, "network", network, "storage_type", in->name,
		       "error", why, (char *)NULL);
	return audit_finish(k, in->name, c, op, network, rc, cached, refresh, why, anomaly);
}

bool keyops_allowed(struct mount_state *k, const struct caller *c, const char *network,
                      enum access_op op)
{
	return access_allowed(k->access, c, network, op);
}

/* The check part of a read: the access rules, then the anomaly signals.
 * 0 (*anomaly: the signal to audit with the read, or NULL) or the denial,
 * counted and audited. */
static int get_check(struct mount_state *k, const struct caller *c, struct instance *in,
                     const char *network, double t0, const char **anomaly)
{
	if (!access_allowed(k->access, c, network, ACCESS_READ))
		return deny(k, in, c, KEY_OP_GET, network, "access denied", NULL, t0);
	struct anomaly_verdict verdict = anomaly_check_read(k->anomaly, c);
	if (verdict.kind)
		metrics_anomaly(verdict.kind);
	if (verdict.deny)
		return deny(k, in, c, KEY_OP_GET, network, "rate limit exceeded", verdict.kind, t0);
	*anomaly = verdict.kind;
	return 0;
}

/* The end of a read: timed, logged, audited; *out dropped on failure. */
static int get_finish(struct mount_state *k, const struct caller *c, struct instance *in,
                      const char *network, int rc, bool cached, bool refresh,
                      const struct backend_err *err, const char *anomaly, double t0,
                      struct secret **out)
{
	const char *auth_anomaly = note_auth_failure(k, in, err);
	if (auth_anomaly)
		anomaly = auth_anomaly;
	rc = fetch_finish(k, in, c, KEY_OP_GET, network, rc, cached, refresh, err, anomaly, t0,
	                  "key read failed");
	if (rc < 0) {
		secret_free(*out);
		*out = NULL;
	}
	return rc;
}

/* Fill p before it can be answered: once queued on a flight it may be
 * answered at once, by the fetching thread. */
static void parked_done(struct cache_waiter *w, int rc, struct secret *value,
                        enum cache_result how, const struct backend_err *ferr);

static void park_fill(struct keyops_park *p, struct mount_state *k, struct instance *in,
                      const struct caller *c, const char *network, const char *anomaly,
                      double t0, bool routed, char *address)
{
	p->w.done = parked_done;
	p->k = k;
	p->in = in;
	p->c = c;
	p->network = network;
	p->anomaly = anomaly;
	p->t0 = t0;
	p->routed = routed;
	p->address = address;
}

/* A read: checked, fetched, audited.  With p, a read that finds the key's
 * fetch in flight parks on it once checked (KEYOPS_PARKED). */
static int get_or_park(struct mount_state *k, const struct caller *c, struct instance *in,
                       bool routed, const char *network, bool refresh, struct keyops_park *p,
                       struct secret **out)
{
	double t0 = clock_monotonic();
	struct backend_err err = { { 0 }, false };
	const char *anomaly = NULL;
	bool cached = false;

	*out = NULL;
	int rc = get_check(k, c, in, network, t0, &anomaly);
	if (rc < 0)
		return rc;
	if (p)
		park_fill(p, k, in, c, network, anomaly, t0, routed, NULL);
	rc = fetch_or_park(in, network, refresh, routed, p ? &p->w : NULL, out, &cached, &err);
	if (rc == CACHE_PARKED)
		return KEYOPS_PARKED;
	return get_finish(k, c, in, network, rc, cached, refresh, &err, anomaly, t0, out);
}

static int get_in(struct mount_state *k, const struct caller *c, struct instance *in, bool routed,
                  const char *network, bool refresh, struct secret **out)
{
	return get_or_park(k, c, in, routed, network, refresh, NULL, out);
}

int keyops_get_park(struct mount_state *k, const struct caller *c, const char *network,
                    struct keyops_park *p, struct secret **out)
{
	return get_or_park(k, c, mount_state_route(k, network), true, network, false, p, out);
}

int keyops_get(struct mount_state *k, const struct caller *c, const char *network, bool refresh,
                 struct secret **out)
{
	return get_in(k, c, mount_state_route(k, network), true, network, refresh, out);
}

int keyops_get_in(struct mount_state *k, const struct caller *c, struct instance *in,
                  const char *network, bool refresh, struct secret **out)
{
	return get_in(k, c, in, in == mount_state_route(k, network), network, refresh, out);
}

static int exists_in(struct mount_state *k, struct instance *in, const char *network);

static int store_in(struct mount_state *k, const struct caller *c, struct instance *in, bool routed,
                    const char *network, const struct secret *content)
{
	double t0 = clock_monotonic();
	struct backend_err err = { { 0 }, false };
	const char *why = NULL;

	if (!access_allowed(k->access, c, network, ACCESS_WRITE))
		return deny(k, in, c, KEY_OP_STORE, network, "access denied", NULL, t0);

	/* Stored, cached and served in canonical form (evm: 0x + lower case). */
	struct secret *key = NULL;
	int rc = keyformat_canonical(k->cfg->keyfs.key_format, content->data, content->len,
	                             &key, &why);
	/* Created or replaced, as the listing (not a fetch of the old key) says. */
	keyops_replaced = rc == 0 && exists_in(k, in, network) == 0;
	if (rc == 0) {
		if ((rc = audit_intent(k, in->name, c, KEY_OP_STORE, network)) < 0) {
			secret_free(key);
			why = "audit log not writable: the backend was not changed";
		} else {
			rc = in_flight_enter(in, &err);
			if (rc == 0) {
				rc = in->backend->ops->store(in->backend, network, key, 0, &err);
				in_flight_leave(in);
			}
			health_record(in, rc, &err);
			if (rc == 0) {
				if (in->cache)
					cache_put(in->cache, network, key);
				list_note(in, network, true);
				if (routed) {
					/* A new value stored through the mount (a write, or a
					 * key command through the control socket, which raises
					 * no VFS event of its own) is a rotation too.  keys/
					 * notes it first, so the book's address is known to be
					 * of this version; watchers wake once both know it. */
					struct noted_digest nd = { false, { 0 } };
					bool changed = seen_note(k, network, key, false, &nd);
					address_note(in, network, key, clock_monotonic(), &nd);
					noted_digest_wipe(&nd);
					if (changed)
						mount_state_key_changed(k, network);
					mtime_set(k, network, clock_wall());
					/* Its size and mtime, as the kernel caches them. */
					mount_state_name_changed(k, network, true);
				}
				instance_request_check(in);
			}
			secret_free(key);
		}
	}
	const char *anomaly = note_auth_failure(k, in, &err);
	metrics_observe_op(in->metrics, KEY_OP_STORE, rc == 0, clock_monotonic() - t0);
	if (rc == 0)
		log_kv(LOG_LEVEL_INFO, "key stored", "network", network, "storage_type", in->name,
		       (char *)NULL);
	else
		log_kv(LOG_LEVEL_WARN, "key store failed", "network", network,
		       "storage_type", in->name,
		       "error", why ? why : err.msg[0] ? err.msg : errno_reason(rc), (char *)NULL);
	return audit_finish(k, in->name, c, KEY_OP_STORE, network, rc, false, false,
	                    why ? why : err.msg[0] ? err.msg : errno_reason(rc), anomaly);
}

int keyops_store(struct mount_state *k, const struct caller *c, const char *network,
                   const struct secret *content)
{
	return store_in(k, c, mount_state_route(k, network), true, network, content);
}

int keyops_store_in(struct mount_state *k, const struct caller *c, struct instance *in,
                    const char *network, const struct secret *content)
{
	return store_in(k, c, in, in == mount_state_route(k, network), network, content);
}

static int remove_in(struct mount_state *k, const struct caller *c, struct instance *in,
                     bool routed, const char *network)
{
	double t0 = clock_monotonic();
	struct backend_err err = { { 0 }, false };

	if (!access_allowed(k->access, c, network, ACCESS_REMOVE))
		return deny(k, in, c, KEY_OP_REMOVE, network, "access denied", NULL, t0);

	int rc = audit_intent(k, in->name, c, KEY_OP_REMOVE, network);
	if (rc < 0) {
		metrics_observe_op(in->metrics, KEY_OP_REMOVE, false, clock_monotonic() - t0);
		log_kv(LOG_LEVEL_ERROR, "key not removed: the audit log is not writable",
		       "network", network, (char *)NULL);
		snprintf(keyops_error, sizeof(keyops_error),
		         "audit log not writable: the backend was not changed");
		return rc;
	}
	rc = in_flight_enter(in, &err);
	if (rc == 0) {
		rc = in->backend->ops->remove(in->backend, network, 0, &err);
		in_flight_leave(in);
	}
	health_record(in, rc, &err);
	if (rc == 0 || rc == -ENOENT) {
		if (in->cache)
			cache_invalidate(in->cache, network);
		list_note(in, network, false);
		if (routed) {
			if (k->addresses)
				address_book_forget(k->addresses, network, clock_monotonic());
			seen_note(k, network, NULL, true, NULL);
			/* The kernel's cached entry goes now, not at its timeout. */
			mount_state_name_gone(k, network, true);
		}
		instance_request_check(in);
	}
	const char *anomaly = note_auth_failure(k, in, &err);
	metrics_observe_op(in->metrics, KEY_OP_REMOVE, rc == 0, clock_monotonic() - t0);
	log_kv(rc == 0 ? LOG_LEVEL_INFO : LOG_LEVEL_WARN, rc == 0 ? "key removed" : "key remove failed",
	       "network", network, "storage_type", in->name,
	       "error", rc == 0 ? "" : err.msg[0] ? err.msg : errno_reason(rc), (char *)NULL);
	return audit_finish(k, in->name, c, KEY_OP_REMOVE, network, rc, false, false,
	                    err.msg[0] ? err.msg : errno_reason(rc), anomaly);
}

int keyops_remove(struct mount_state *k, const struct caller *c, const char *network)
{
	return remove_in(k, c, mount_state_route(k, network), true, network);
}

int keyops_remove_in(struct mount_state *k, const struct caller *c, struct instance *in,
                     const char *network)
{
	return remove_in(k, c, in, in == mount_state_route(k, network), network);
}

/* The end of an address request that fetched the key (its own fetch or,
 * parked, another caller's): a key that came from the cache is noted (the
 * book may have lost its entry), the address looked up, the request timed
 * and audited.  key is freed. */
static int address_finish(struct mount_state *k, const struct caller *c, struct instance *in,
                          const char *network, int rc, bool cached, struct secret *key,
                          struct backend_err *err, double t0, char out[EVM_ADDRESS_TEXT + 1])
{
	if (rc == 0 && cached)
		address_note(in, network, key, t0, NULL);
	secret_free(key);
	if (rc == 0 && address_book_lookup(k->addresses, network, out, NULL) < 0)
		rc = -EILSEQ;   /* the stored key is not an EVM key (or no memory) */
	rc = fetch_finish(k, in, c, KEY_OP_ADDRESS, network, rc, cached, false, err,
	                  note_auth_failure(k, in, err), t0, "address not derived");
	/* The FUSE layer sees EIO for a key it cannot make an address of. */
	return rc == -EILSEQ ? -EIO : rc;
}

/* A parked read's or address request's fetch ended (on the fetching
 * thread): counted, noted and audited as the parked caller's own, then
 * handed to its opener. */
static void parked_done(struct cache_waiter *w, int rc, struct secret *value,
                        enum cache_result how, const struct backend_err *ferr)
{
	struct keyops_park *p = (struct keyops_park *)w;
	struct backend_err err = *ferr;
	bool cached = false;
	struct noted_digest nd = { false, { 0 } };
	cache_account(p->in, p->network, p->routed, rc, how, &value, &cached, &err, &nd);
	rc = fetch_noted(p->in, p->network, p->routed, rc, value, cached, p->t0, &nd);
	noted_digest_wipe(&nd);
	if (p->address) {
		rc = address_finish(p->k, p->c, p->in, p->network, rc, cached, value, &err, p->t0,
		                    p->address);
		value = NULL;   /* freed there */
	} else {
		rc = get_finish(p->k, p->c, p->in, p->network, rc, cached, false, &err, p->anomaly,
		                p->t0, &value);
	}
	p->done(p, rc, value);
}

/* An address: checked, from the book, else the key fetched as the daemon
 * (or, with p, parked on its fetch in flight: KEYOPS_PARKED). */
static int address_or_park(struct mount_state *k, const struct caller *c, const char *network,
                           struct keyops_park *p, char out[EVM_ADDRESS_TEXT + 1])
{
	double t0 = clock_monotonic();
	struct backend_err err = { { 0 }, false };
	struct instance *in = mount_state_route(k, network);
	struct secret *key = NULL;
	bool cached = false;

	if (!k->addresses) {   /* key_format any: keys are not EVM keys */
		snprintf(keyops_error, sizeof(keyops_error), "key_format is not evm");
		return -ENOENT;
	}
	if (!access_allowed(k->access, c, network, ACCESS_ADDRESS))
		return deny(k, in, c, KEY_OP_ADDRESS, network, "access denied", NULL, t0);
	if (address_book_lookup(k->addresses, network, out, NULL) == 0) {
		metrics_observe_op(in->metrics, KEY_OP_ADDRESS, true, clock_monotonic() - t0);
		return 0;
	}
	if (p)
		park_fill(p, k, in, c, network, NULL, t0, true, out);

	/* Not seen yet: fetch as the daemon, derive, keep; the key stays here. */
	int rc = fetch_or_park(in, network, false, true, p ? &p->w : NULL, &key, &cached, &err);
	if (rc == CACHE_PARKED)
		return KEYOPS_PARKED;
	return address_finish(k, c, in, network, rc, cached, key, &err, t0, out);
}

int keyops_address(struct mount_state *k, const struct caller *c, const char *network,
                     char out[EVM_ADDRESS_TEXT + 1])
{
	return address_or_park(k, c, network, NULL, out);
}

int keyops_address_park(struct mount_state *k, const struct caller *c, const char *network,
                        struct keyops_park *p, char out[EVM_ADDRESS_TEXT + 1])
{
	return address_or_park(k, c, network, p, out);
}

/* Names of the old listing (sorted) missing from the new one, routed to
 * this instance: gone, so the kernel's cached entries go too. */
static void list_gone(struct instance *in, const struct strlist *old, const struct strlist *fresh)
{
	size_t j = 0;
	for (size_t i = 0; i < old->n; i++) {
		int cmp = 1;
		while (j < fresh->n && (cmp = strcmp(fresh->items[j], old->items[i])) < 0)
			j++;
		if (j < fresh->n && cmp == 0)
			continue;
		if (mount_state_route(in->k, old->items[i]) == in)
			mount_state_name_gone(in->k, old->items[i], false);
	}
}

/* After a failed listing the backend is not asked again for this long:
 * every lookup of a name would otherwise ask a hung backend in turn. */
#define LIST_NEGATIVE_SECONDS 2.0

/* Make an instance's cached listing usable; returns with its list_lock held.
 * - fresh (younger than list_cache_seconds): used as it is;
 * - stale while another caller refreshes it: the stale one is used, so
 *   lookups never queue behind a slow backend;
 * - otherwise this caller asks the backend, without holding the lock.
 * With no listing at all, callers wait for the one refresh in flight and
 * share its outcome.  On a failed refresh the previous listing is kept.
 * deadline (0: the instance's own timeout) bounds the backend call. */
static int list_refresh(struct instance *in, double deadline, struct backend_err *err,
                        bool *called, bool bounded)
{
	struct mount_state *k = in->k;
	pthread_mutex_lock(&in->list_lock);
	for (;;) {
		double now = clock_monotonic();
		if (in->list_valid && now - in->list_fetched_at < k->cfg->keyfs.list_cache_seconds)
			return 0;
		if (in->list_last_rc < 0 && now - in->list_failed_at < LIST_NEGATIVE_SECONDS) {
			snprintf(err->msg, sizeof(err->msg), "%s", in->list_last_error);
			return in->list_valid ? 0 : in->list_last_rc;
		}
		if (!in->list_refreshing)
			break;
		if (in->list_valid)
			return 0;
		pthread_cond_wait(&in->list_cond, &in->list_lock);
		if (!in->list_refreshing)
			return in->list_valid ? 0 : in->list_last_rc;
	}
	in->list_refreshing = true;
	pthread_mutex_unlock(&in->list_lock);

	struct strlist fresh = STRLIST_INIT;
	double t0 = clock_monotonic();
	/* The checker thread's refresh (bounded false) is one call at most
	 * and never takes a place that a caller's read needs. */
	int rc = bounded ? in_flight_enter(in, err) : 0;
	if (rc == 0) {
		rc = in->backend->ops->list(in->backend, &fresh, deadline, err);
		if (bounded)
			in_flight_leave(in);
	}
	*called = true;
	/* A timeout of a call we cut short says nothing about the backend. */
	if (!(deadline > 0 && rc == -ETIMEDOUT))
		health_record(in, rc, err);
	metrics_observe_op(in->metrics, KEY_OP_LIST, rc == 0, clock_monotonic() - t0);
	/* Keep only names the tree can show (moved, not copied: a listing of
	 * 100 000 names is 100 000 allocations). */
	struct strlist valid = STRLIST_INIT;
	for (size_t i = 0; rc == 0 && i < fresh.n; i++) {
		if (network_name_valid(fresh.items[i])) {
			strlist_take(&valid, fresh.items[i]);
			fresh.items[i] = NULL;
		}
	}
	strlist_clear(&fresh);
	strlist_sort_unique(&valid);
	/* Kept until the next refresh: its names in one block (a failure
	 * only keeps them apart). */
	if (rc == 0)
		strlist_pack(&valid);

	pthread_mutex_lock(&in->list_lock);
	in->list_refreshing = false;
	in->list_last_rc = rc;
	if (rc < 0) {
		in->list_failed_at = clock_monotonic();
		snprintf(in->list_last_error, sizeof(in->list_last_error), "%s",
		         err->msg[0] ? err->msg : errno_reason(rc));
	}
	if (rc == 0) {
		if (in->list_valid)
			list_gone(in, &in->list, &valid);
		strlist_clear(&in->list);
		in->list = valid;
		in->list_valid = true;
		in->list_fetched_at = clock_monotonic();
	} else {
		strlist_clear(&valid);
	}
	pthread_cond_broadcast(&in->list_cond);
	return rc < 0 && !in->list_valid ? rc : 0;
}

/* One instance's part of a keys/ listing: a copy of its names. */
struct list_part {
	struct instance *in;
	struct strlist names;
	struct backend_err err;
	bool called;
	int rc;
};

/* Is the instance's listing young enough to be used without a refresh? */
static bool list_fresh(struct instance *in)
{
	pthread_mutex_lock(&in->list_lock);
	bool fresh = in->list_valid &&
	             clock_monotonic() - in->list_fetched_at < in->k->cfg->keyfs.list_cache_seconds;
	pthread_mutex_unlock(&in->list_lock);
	return fresh;
}

static void *list_part_run(void *arg)
{
	struct list_part *p = arg;
	p->rc = list_refresh(p->in, 0, &p->err, &p->called, true);
	for (size_t i = 0; p->rc == 0 && i < p->in->list.n; i++)
		if (strlist_add(&p->names, p->in->list.items[i]) < 0)
			p->rc = -ENOMEM;
	pthread_mutex_unlock(&p->in->list_lock);
	return NULL;
}

/* The union of every instance's listing (the router decides which
 * instance a name shown belongs to), as keys/ shows it: with a caller, only
 * the networks it has some grant on.  The listing fails only when no
 * instance could answer; err then says why. */
static int list_union(struct mount_state *k, const struct caller *c, struct strlist *out,
                      struct backend_err *err_out, double t0)
{
	/* Every instance lists at once, each bounded by its own timeout and
	 * in-flight bound: a slow one delays the listing by its own deadline,
	 * not by the sum of all of them. */
	size_t n = k->n_instances;
	struct list_part *parts = calloc(n, sizeof(*parts));
	pthread_t *threads = calloc(n, sizeof(*threads));
	bool *started = calloc(n, sizeof(*started));
	const struct strlist **lists = calloc(n, sizeof(*lists));
	int rc = parts && threads && started && lists ? 0 : -ENOMEM;
	for (size_t i = 0; rc == 0 && i < n; i++) {
		parts[i].in = k->instances[i];
		if (n > 1 && !list_fresh(parts[i].in) &&
		    pthread_create(&threads[i], NULL, list_part_run, &parts[i]) == 0)
			started[i] = true;
		else
			list_part_run(&parts[i]);
	}
	size_t failed = 0;
	int first_rc = 0;
	struct backend_err err = { { 0 }, false };
	for (size_t i = 0; rc == 0 && i < n; i++) {
		if (started[i])
			pthread_join(threads[i], NULL);
		struct list_part *p = &parts[i];
		lists[i] = p->rc == 0 ? &p->names : NULL;
		if (p->rc < 0) {
			failed++;
			if (!first_rc) {
				first_rc = p->rc;
				err = p->err;
			}
			log_kv(LOG_LEVEL_WARN, "backend could not list; its keys are missing from keys/",
			       "storage_type", p->in->name,
			       "error", p->err.msg[0] ? p->err.msg : errno_reason(p->rc), (char *)NULL);
		}
		if (p->called)
			note_auth_failure(k, p->in, &p->err);
		else if (c)   /* keys/ served from the listing cache: still an operation */
			metrics_observe_op(p->in->metrics, KEY_OP_LIST, p->rc == 0, clock_monotonic() - t0);
	}
	/* The listing fails only when no instance could answer. */
	if (rc == 0 && failed == n)
		rc = first_rc;
	/* Names the caller has no grant on are not shown (the rules decide
	 * what exists for whom). */
	struct strlist all = STRLIST_INIT;
	if (rc == 0 && n == 1) {
		/* One instance: every name routes to it, and its listing is
		 * already sorted and unique (list_refresh): taken as it is. */
		all = parts[0].names;
		parts[0].names = (struct strlist)STRLIST_INIT;
	} else if (rc == 0) {
		rc = router_union(k->router, lists, &all);
	}
	for (size_t i = 0; rc == 0 && i < all.n; i++) {
		char *name = all.items[i];   /* moved, not copied: 100 000 names */
		all.items[i] = NULL;
		if (!c || access_any_grant(k->access, c, name))
			rc = strlist_take(out, name);
		else
			free(name);
	}
	strlist_clear(&all);
	for (size_t i = 0; parts && i < n; i++)
		strlist_clear(&parts[i].names);
	free(parts);
	free(threads);
	free(started);
	free(lists);
	*err_out = err;
	return rc;
}

int keyops_list(struct mount_state *k, const struct caller *c, struct strlist *out)
{
	double t0 = clock_monotonic();
	struct instance *first = k->instances[0];

	if (!access_allowed(k->access, c, "", ACCESS_LIST))
		return deny(k, first, c, KEY_OP_LIST, "", "access denied", NULL, t0);

	struct backend_err err = { { 0 }, false };
	int rc = list_union(k, c, out, &err, t0);
	return audit_finish(k, k->all_names, c, KEY_OP_LIST, "", rc, false, false,
	                    err.msg[0] ? err.msg : errno_reason(rc), NULL);
}

int keyops_list_in(struct mount_state *k, const struct caller *c, struct instance *in,
                   struct strlist *out)
{
	double t0 = clock_monotonic();
	if (!access_allowed(k->access, c, "", ACCESS_LIST))
		return deny(k, in, c, KEY_OP_LIST, "", "access denied", NULL, t0);
	struct backend_err err = { { 0 }, false };
	bool called = false;
	int rc = list_refresh(in, 0, &err, &called, true);
	for (size_t i = 0; rc == 0 && i < in->list.n; i++)
		if (access_any_grant(k->access, c, in->list.items[i]) &&
		    strlist_add(out, in->list.items[i]) < 0)
			rc = -ENOMEM;
	pthread_mutex_unlock(&in->list_lock);
	if (called)
		note_auth_failure(k, in, &err);
	else
		metrics_observe_op(in->metrics, KEY_OP_LIST, rc == 0, clock_monotonic() - t0);
	return audit_finish(k, in->name, c, KEY_OP_LIST, "", rc, false, false,
	                    err.msg[0] ? err.msg : errno_reason(rc), NULL);
}

int keyops_names(struct mount_state *k, struct strlist *out)
{
	struct backend_err err = { { 0 }, false };
	return list_union(k, NULL, out, &err, clock_monotonic());
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

int keyops_lookup(struct mount_state *k, const struct caller *c, const char *network)
{
	if (!access_any_grant(k->access, c, network)) {
		if (probe_is_new(c->pid, network))
			deny(k, mount_state_route(k, network), c, KEY_OP_GET, network,
			     "no grant for this network", NULL, clock_monotonic());
		return -ENOENT;
	}
	return keyops_exists(k, network);
}

int keyops_check(struct mount_state *k, const struct caller *c, const char *network,
                   enum key_op op)
{
	if (access_allowed(k->access, c, network, access_op_for(op)))
		return 0;
	return deny(k, mount_state_route(k, network), c, op, network, "access denied", NULL,
	            clock_monotonic());
}

void keyops_creating(struct mount_state *k, const char *network, bool on)
{
	pthread_mutex_lock(&k->creating_lock);
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
	pthread_mutex_unlock(&k->creating_lock);
}

bool keyops_is_creating(struct mount_state *k, const char *network)
{
	pthread_mutex_lock(&k->creating_lock);
	bool creating = strlist_contains(&k->creating, network);
	pthread_mutex_unlock(&k->creating_lock);
	return creating;
}

static int compare_names(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The listing is kept sorted and unique (list_refresh, list_note): a lookup
 * is a binary search, not a scan of every key. */
static bool list_has(const struct strlist *l, const char *network)
{
	return l->n && bsearch(&network, l->items, l->n, sizeof(*l->items), compare_names);
}

/* After a large listing was replaced: hand the free pages in the middle of
 * the heap back to the kernel.  A refresh allocates and frees every name
 * two or three times over (the backend's parse, its copy, the old listing),
 * and glibc only returns the top of the heap by itself: at 100 000 cached
 * keys 12.5 MiB of RSS were free heap (BENCHMARKS.md, round 4).  Outside
 * every lock; a few milliseconds against the tens a listing of that size
 * takes. */
#define LIST_TRIM_NAMES 10000

static void list_trim(bool called, size_t names)
{
	if (called && names >= LIST_TRIM_NAMES)
		malloc_trim(0);
}

int keyops_exists(struct mount_state *k, const char *network)
{
	return exists_in(k, mount_state_route(k, network), network);
}

static int exists_in(struct mount_state *k, struct instance *in, const char *network)
{
	struct backend_err err = { { 0 }, false };
	bool called = false;
	int rc;
	/* A cached key exists without asking for a listing. */
	if (in->cache && cache_contains(in->cache, network))
		return 0;
	if (keyops_is_creating(k, network))
		return 0;
	/* A name in a listing past list_cache_seconds exists at once while the
	 * instance's checker thread refreshes the listing: a lookup of a known
	 * key never waits on a full listing (100 000 names take 0.1-0.5 s).
	 * A name not in it (perhaps added beside the mount) waits for the
	 * refresh below, as before. */
	pthread_mutex_lock(&in->list_lock);
	if (in->list_valid && !in->list_refreshing &&
	    clock_monotonic() - in->list_fetched_at >= k->cfg->keyfs.list_cache_seconds &&
	    list_has(&in->list, network) && instance_request_list_refresh(in)) {
		pthread_mutex_unlock(&in->list_lock);
		return 0;
	}
	pthread_mutex_unlock(&in->list_lock);
	/* A lookup (stat, open) should not wait a full timeout_seconds for a
	 * listing: KEYSTORE_LOOKUP_SECONDS, then the open's own fetch decides. */
	rc = list_refresh(in, clock_monotonic() + KEYSTORE_LOOKUP_SECONDS, &err, &called, true);
	if (rc == 0)
		rc = list_has(&in->list, network) ? 0 : -ENOENT;
	else
		rc = 0;   /* cannot list: let the open's own fetch decide (and be audited) */
	size_t names = in->list.n;
	pthread_mutex_unlock(&in->list_lock);
	if (called)
		note_auth_failure(k, in, &err);
	list_trim(called, names);
	return rc;
}

void keyops_list_refresh(struct instance *in)
{
	struct backend_err err = { { 0 }, false };
	bool called = false;
	list_refresh(in, 0, &err, &called, false);
	size_t names = in->list.n;
	pthread_mutex_unlock(&in->list_lock);
	if (called)
		note_auth_failure(in->k, in, &err);
	list_trim(called, names);
}
