/* cache.c - the TTL cache in front of remote backends (see cache.h).
 *
 * One mutex guards the cache's entries, an LRU list of them and a short list
 * of fetches in flight.  An entry lives in the network's record of the
 * mount's netrec table (struct netrec's cache, found through that table:
 * no allocation, no name, no chain of its own) unless another cache holds
 * that one; then, rarely (two instances caching one network during `key
 * migrate`, or a table at NETREC_MAX), in this cache's side table, a
 * chained hash of malloc'ed entries.  The owner of a record's entry is
 * claimed and given back under the table's lock (lock order: the cache's,
 * then the table's), and the entry is wiped before it is given back.  A hit is a lookup and
 * a secret_dup under the lock.  A miss registers a "flight" for the network,
 * drops the lock, calls the backend, retakes the lock and publishes the
 * result to every caller that arrived meanwhile (single-flight).
 *
 * Semantics the header leaves open, decided here:
 * - *changed is true only when a value was cached before and the fetch
 *   returned different bytes; a first fetch is not a change.  Only the caller
 *   that made the fetch sees it, so a rotation is reported once.
 * - Callers that waited on another caller's fetch get its result with
 *   *how = CACHE_HIT (they cost the backend nothing; metrics then count one
 *   miss per backend call) or CACHE_STALE, and the same error otherwise.
 * - On CACHE_STALE, err still holds the backend's reason, for logging.
 * - An expired entry that can no longer be served stale is dropped (and
 *   wiped) when a fetch for it fails.
 * - A cache_put or cache_invalidate during a fetch wins: the fetch's result
 *   is handed to its callers but not cached over the newer state.
 * - max_entries 0 means no bound.
 * - Parked callers (cache_get_or_park) are answered by the fetching caller
 *   after the result is published, in the order they parked, each with its
 *   own copy, before that caller's own cache call returns.
 * cache_free must not race with other calls (the owner stops FUSE first).
 */
#include "hash.h"
#include "cache.h"
#include "netrec.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* An entry outside the netrec table: one allocation with its name.  The
 * value's bytes are in a locked pool slot sized to them, either way. */
struct cache_side {
	struct cache_entry e;   /* e.owner == SIDE */
	struct cache_side *hash_next;
	char network[];
};
#define SIDE UINT16_MAX   /* the owner of a side entry; a cache's id is below */

/* A fetch in progress and, once done, its result until every waiter took it. */
struct cache_flight {
	char *network;
	pthread_cond_t done_cond;
	bool done;
	bool superseded;        /* put/invalidate happened during the fetch */
	unsigned refs;          /* the fetching caller + waiters */
	int rc;
	enum cache_result how;  /* what waiters report */
	struct secret *value;   /* waiters take a copy */
	struct backend_err err;
	struct cache_waiter *parked, **parked_tail;   /* answered by the fetcher */
	struct cache_flight *next;
};

struct cache {
	struct cache_config cfg;
	pthread_mutex_t lock;
	struct netrec_table *networks;     /* cfg.networks or own_networks */
	struct netrec_table own_networks;
	uint16_t id;                       /* the owner of this cache's record entries */
	struct cache_side **table;         /* the side table */
	size_t nbuckets;
	size_t sides;                      /* entries in the side table */
	size_t count;                      /* every entry */
	struct cache_entry *lru_head, *lru_tail;   /* head = most recently used */
	struct cache_flight *flights;
};

static double cache_now(const struct cache *c)
{
	return c->cfg.now ? c->cfg.now() : clock_monotonic();
}

struct cache *cache_new(const struct cache_config *cfg)
{
	struct cache *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	if (cfg)
		c->cfg = *cfg;
	c->networks = c->cfg.networks;
	if (!c->networks && netrec_table_init(&c->own_networks, 0) == 0)
		c->networks = &c->own_networks;
	if (c->networks) {
		netrec_lock(c->networks);
		if (c->networks->cache_ids < SIDE - 1)
			c->id = ++c->networks->cache_ids;
		netrec_unlock(c->networks);
	}
	c->nbuckets = 16;
	c->table = calloc(c->nbuckets, sizeof(*c->table));
	if (!c->networks || !c->id || !c->table || pthread_mutex_init(&c->lock, NULL) != 0) {
		if (c->networks == &c->own_networks)
			netrec_table_clear(&c->own_networks);
		free(c->table);
		free(c);
		return NULL;
	}
	return c;
}

static struct cache_side *side_of(struct cache_entry *e)
{
	return (struct cache_side *)((char *)e - offsetof(struct cache_side, e));
}

/* The bytes the entry holds, as a struct secret (its cap is its len): the
 * value itself, or its 32 raw bytes when packed.  To release through. */
static struct secret entry_bytes(const struct cache_entry *e)
{
	return (struct secret){ .len = e->len, .cap = e->len, .data = e->data,
	                        .pooled = e->pooled };
}

/* Wipe and free the entry's value; it is left empty. */
static void value_release(struct cache_entry *e)
{
	struct secret v = entry_bytes(e);
	secret_release(&v);
	e->data = NULL;
	e->len = 0;
	e->pooled = 0;
	e->packed = 0;
}

/* A value of 64 lowercase hex digits, alone or after "0x" (an EVM key in
 * its canonical form, the usual value), is kept as its 32 raw bytes in a
 * 40-byte slot instead of its text in a 72-byte one, and made text again
 * for every copy out of the cache: the same bytes come out.  No branch or
 * table lookup depends on a digit's value. */
#define PACKED_RAW 32

static unsigned nibble_of(unsigned char c, unsigned *bad)
{
	unsigned d = (unsigned)c - '0', a = (unsigned)c - 'a';
	unsigned is_d = (d < 10), is_a = (a < 6);
	*bad |= !(is_d | is_a);
	return (d & -is_d) | ((a + 10) & -is_a);
}

#if !(defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__)
static unsigned char hex_digit(unsigned n)
{
	/* '0' + n for n < 10, 'a' + n - 10 above */
	return (unsigned char)('0' + n + ((((9u - n) >> 8) & 1u) * ('a' - '0' - 10)));
}
#endif

/* The 64 hex digits of raw into out.  Four bytes at a time in a 64-bit
 * word where the byte order allows (each byte's two nibbles spread to two
 * bytes, then '0' + n, or 'a' + n - 10 where n + 6 carries into bit 4),
 * one digit at a time elsewhere: the same digits, no branch or table
 * lookup on a nibble either way. */
static void hex_encode(unsigned char *out, const unsigned char raw[PACKED_RAW])
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	for (size_t i = 0; i < PACKED_RAW; i += 4) {
		uint32_t v;
		memcpy(&v, raw + i, sizeof(v));
		uint64_t x = v;
		x = (x | x << 16) & UINT64_C(0x0000ffff0000ffff);
		x = (x | x << 8) & UINT64_C(0x00ff00ff00ff00ff);   /* a byte per 16 bits */
		uint64_t n = (x >> 4 & UINT64_C(0x000f000f000f000f)) |
		             (x & UINT64_C(0x000f000f000f000f)) << 8;   /* high nibble first */
		uint64_t letter = (n + UINT64_C(0x0606060606060606)) >> 4 & UINT64_C(0x0101010101010101);
		uint64_t digits = n + UINT64_C(0x3030303030303030) + letter * ('a' - '0' - 10);
		memcpy(out + 2 * i, &digits, sizeof(digits));
	}
#else
	for (size_t i = 0; i < PACKED_RAW; i++) {
		out[2 * i] = hex_digit(raw[i] >> 4);
		out[2 * i + 1] = hex_digit(raw[i] & 15u);
	}
#endif
}

/* The packed kind of value (CACHE_PACKED_*) with its raw bytes in raw
 * (the caller wipes them), or 0 when it is not 64 lowercase hex digits. */
static uint8_t value_raw(const struct secret *value, unsigned char raw[PACKED_RAW])
{
	size_t pre = value->len == 2 + 2 * PACKED_RAW && value->data[0] == '0' &&
	             value->data[1] == 'x' ? 2 : 0;
	if (value->len != pre + 2 * PACKED_RAW)
		return 0;
	unsigned bad = 0;
	for (size_t i = 0; i < PACKED_RAW; i++)
		raw[i] = (unsigned char)(nibble_of(value->data[pre + 2 * i], &bad) << 4 |
		                         nibble_of(value->data[pre + 2 * i + 1], &bad));
	return bad ? 0 : pre ? CACHE_PACKED_0X : CACHE_PACKED_HEX;
}

/* A value on its way into the cache, decoded once: its packed kind
 * (value_raw) and raw bytes.  Wiped by value_done. */
struct value_in {
	const struct secret *text;
	uint8_t packed;
	unsigned char raw[PACKED_RAW];
};

static void value_in(struct value_in *v, const struct secret *text)
{
	v->text = text;
	v->packed = value_raw(text, v->raw);
}

static void value_done(struct value_in *v)
{
	secret_wipe(v->raw, sizeof(v->raw));
}

/* A copy of v in the form an entry keeps: the raw bytes when packed, or
 * the text (its cap its len).  NULL when out of memory or too long. */
static struct secret *value_pack(const struct value_in *v)
{
	if (v->packed)
		return secret_from(v->raw, sizeof(v->raw));
	return v->text->len <= UINT32_MAX ? secret_dup(v->text) : NULL;
}

/* Does the entry hold the same text as v?  (Constant time in the bytes
 * compared.) */
static bool entry_equals(const struct cache_entry *e, const struct value_in *v)
{
	struct secret held = entry_bytes(e);
	if (!e->packed)
		return secret_equal(&held, v->text);
	struct secret raw = { .len = PACKED_RAW, .cap = PACKED_RAW, .data = (unsigned char *)v->raw };
	return v->packed == e->packed && secret_equal(&raw, &held);
}

/* A copy of the entry's value, as it was stored (the text of a packed
 * one).  NULL when out of memory. */
static struct secret *entry_copy(const struct cache_entry *e)
{
	struct secret v = entry_bytes(e);
	if (!e->packed)
		return secret_dup(&v);
	size_t pre = e->packed == CACHE_PACKED_0X ? 2 : 0;
	struct secret *t = secret_new(pre + 2 * PACKED_RAW);
	if (!t)
		return NULL;
	memcpy(t->data, "0x", pre);
	hex_encode(t->data + pre, e->data);
	t->len = pre + 2 * PACKED_RAW;
	return t;
}

/* Give the (empty) entry the bytes of value (from value_pack, with its
 * packed), whose shell is freed. */
static void value_store(struct cache_entry *e, struct secret *value, uint8_t packed)
{
	struct secret v;
	secret_move(&v, value);
	e->data = v.data;
	e->len = (uint32_t)v.len;
	e->pooled = (uint8_t)v.pooled;
	e->packed = packed;
}

/* Wipe the value, then free a side entry or give a record's back. */
static void entry_free(struct cache *c, struct cache_entry *e)
{
	value_release(e);
	if (e->owner == SIDE) {
		free(side_of(e));
		return;
	}
	e->fetched_at = 0;
	netrec_lock(c->networks);
	e->owner = 0;
	netrec_unlock(c->networks);
}

void cache_free(struct cache *c)
{
	if (!c)
		return;
	struct cache_entry *e = c->lru_head;
	while (e) {
		struct cache_entry *next = e->lru_next;
		entry_free(c, e);
		e = next;
	}
	if (c->networks == &c->own_networks)
		netrec_table_clear(&c->own_networks);
	free(c->table);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

/* --- table and LRU, all with c->lock held ------------------------------- */

static struct cache_side **side_bucket(struct cache *c, const char *network)
{
	return &c->table[hash_string(network) & (c->nbuckets - 1)];
}

static struct cache_entry *entry_find(struct cache *c, const char *network)
{
	netrec_lock(c->networks);
	struct netrec *r = netrec_find(c->networks, network);
	bool mine = r && r->cache.owner == c->id;
	netrec_unlock(c->networks);
	if (mine)
		return &r->cache;
	if (!c->sides)
		return NULL;
	for (struct cache_side *s = *side_bucket(c, network); s; s = s->hash_next)
		if (strcmp(s->network, network) == 0)
			return &s->e;
	return NULL;
}

static void lru_unlink(struct cache *c, struct cache_entry *e)
{
	if (e->lru_prev)
		e->lru_prev->lru_next = e->lru_next;
	else
		c->lru_head = e->lru_next;
	if (e->lru_next)
		e->lru_next->lru_prev = e->lru_prev;
	else
		c->lru_tail = e->lru_prev;
	e->lru_prev = e->lru_next = NULL;
}

static void lru_push_front(struct cache *c, struct cache_entry *e)
{
	e->lru_prev = NULL;
	e->lru_next = c->lru_head;
	if (c->lru_head)
		c->lru_head->lru_prev = e;
	c->lru_head = e;
	if (!c->lru_tail)
		c->lru_tail = e;
}

static void lru_touch(struct cache *c, struct cache_entry *e)
{
	if (c->lru_head != e) {
		lru_unlink(c, e);
		lru_push_front(c, e);
	}
}

static void entry_remove(struct cache *c, struct cache_entry *e)
{
	if (e->owner == SIDE) {
		struct cache_side **pp = side_bucket(c, side_of(e)->network);
		while (*pp != side_of(e))
			pp = &(*pp)->hash_next;
		*pp = side_of(e)->hash_next;
		c->sides--;
	}
	lru_unlink(c, e);
	c->count--;
	entry_free(c, e);
}

/* Growing is best effort: a failed calloc only makes chains longer. */
static void table_grow(struct cache *c)
{
	size_t n = c->nbuckets * 2;
	struct cache_side **t = calloc(n, sizeof(*t));
	if (!t)
		return;
	for (size_t i = 0; i < c->nbuckets; i++) {
		struct cache_side *s = c->table[i], *next;
		for (; s; s = next) {
			next = s->hash_next;
			size_t h = hash_string(s->network) & (n - 1);
			s->hash_next = t[h];
			t[h] = s;
		}
	}
	free(c->table);
	c->table = t;
	c->nbuckets = n;
}

/* A new, empty entry for network: the record's when free, else a side one.
 * NULL when out of memory. */
static struct cache_entry *entry_new(struct cache *c, const char *network)
{
	struct cache_entry *e = NULL;
	netrec_lock(c->networks);
	struct netrec *r = netrec_get(c->networks, network);
	if (r && !r->cache.owner) {
		r->cache.owner = c->id;
		e = &r->cache;
	}
	netrec_unlock(c->networks);
	if (e)
		return e;
	size_t len = strlen(network) + 1;
	struct cache_side *s = calloc(1, sizeof(*s) + len);
	if (!s)
		return NULL;
	memcpy(s->network, network, len);
	s->e.owner = SIDE;
	if (c->sides >= c->nbuckets)
		table_grow(c);
	struct cache_side **b = side_bucket(c, network);
	s->hash_next = *b;
	*b = s;
	c->sides++;
	return &s->e;
}

/* Cache a copy of v under network.  Out of memory: nothing cached, and no
 * older value left behind. */
static int entry_set(struct cache *c, const char *network, const struct value_in *v,
                     double now)
{
	struct cache_entry *e = entry_find(c, network);
	uint8_t packed = v->packed;
	struct secret *value = value_pack(v);
	if (!value) {
		if (e)
			entry_remove(c, e);   /* never leave the old value behind */
		return -ENOMEM;
	}
	if (e) {
		value_release(e);
		value_store(e, value, packed);
		e->fetched_at = now;
		lru_touch(c, e);
		return 0;
	}
	if (!(e = entry_new(c, network))) {
		secret_free(value);
		return -ENOMEM;
	}
	value_store(e, value, packed);
	e->fetched_at = now;
	lru_push_front(c, e);
	c->count++;
	while (c->cfg.max_entries && c->count > c->cfg.max_entries && c->lru_tail != e)
		entry_remove(c, c->lru_tail);
	return 0;
}

static struct cache_flight *flight_find(struct cache *c, const char *network)
{
	for (struct cache_flight *f = c->flights; f; f = f->next)
		if (strcmp(f->network, network) == 0)
			return f;
	return NULL;
}

static void flight_unlink(struct cache *c, struct cache_flight *f)
{
	for (struct cache_flight **pp = &c->flights; *pp; pp = &(*pp)->next) {
		if (*pp == f) {
			*pp = f->next;
			return;
		}
	}
}

static void flight_release(struct cache_flight *f)
{
	if (--f->refs)
		return;
	secret_free(f->value);
	pthread_cond_destroy(&f->done_cond);
	free(f->network);
	free(f);
}

static void flight_supersede(struct cache *c, const char *network)
{
	struct cache_flight *f = flight_find(c, network);
	if (f)
		f->superseded = true;
}

/* --- the public calls ----------------------------------------------------- */

static void err_copy(struct backend_err *dst, const struct backend_err *src)
{
	if (dst)
		*dst = *src;
}

/* Copy of a cached value for the caller. */
static int value_out(const struct secret *v, struct secret **out, struct backend_err *err)
{
	*out = secret_dup(v);
	if (*out)
		return 0;
	backend_err_set(err, "out of memory");
	return -ENOMEM;
}

/* A waiter's share of a finished flight: its own copy of the value and how
 * (a stale hit with the backend's reason in err), or the fetch's error. */
static int flight_take(const struct cache_flight *f, struct secret **out,
                       enum cache_result *how, struct backend_err *err)
{
	if (f->rc != 0) {
		err_copy(err, &f->err);
		return f->rc;
	}
	int rc = value_out(f->value, out, err);
	if (rc == 0) {
		*how = f->how;
		if (f->how == CACHE_STALE)
			err_copy(err, &f->err);
	}
	return rc;
}

/* Wait for another caller's fetch and take its result.  Lock held. */
static int flight_wait(struct cache *c, struct cache_flight *f, struct secret **out,
                       enum cache_result *how, struct backend_err *err)
{
	int rc;
	f->refs++;
	while (!f->done)
		pthread_cond_wait(&f->done_cond, &c->lock);
	rc = flight_take(f, out, how, err);
	flight_release(f);
	return rc;
}

/* Answer the callers parked on a finished flight, without the lock (their
 * done callbacks audit and reply); the caller's reference keeps f.  The
 * result fields are not written after done. */
static void flight_answer_parked(struct cache *c, struct cache_flight *f)
{
	struct cache_waiter *w = f->parked;
	f->parked = NULL;
	if (!w)
		return;
	pthread_mutex_unlock(&c->lock);
	while (w) {
		struct cache_waiter *next = w->next;   /* done may free w */
		struct backend_err err = { .msg = "" };
		struct secret *value = NULL;
		enum cache_result how = f->how;
		int rc = flight_take(f, &value, &how, &err);
		w->done(w, rc, value, how, &err);
		w = next;
	}
	pthread_mutex_lock(&c->lock);
}

/* Make the fetch for a flight we own; returns with the lock held again. */
static int flight_run(struct cache *c, struct cache_flight *f, const char *network,
                      cache_fetch_fn fetch, void *ctx, struct secret **out,
                      enum cache_result *how, bool *changed, double started)
{
	struct secret *value = NULL;
	struct backend_err ferr = { .msg = "" };

	pthread_mutex_unlock(&c->lock);
	int rc = fetch(ctx, network, &value, &ferr);
	if (rc == 0 && !value) {
		rc = -EIO;
		backend_err_set(&ferr, "backend returned no value");
	} else if (rc > 0) {
		rc = -EIO;   /* a fetch that broke the 0/-errno rule */
	}
	if (rc != 0) {
		secret_free(value);
		value = NULL;
	}
	pthread_mutex_lock(&c->lock);

	double now = cache_now(c);
	struct cache_entry *e = entry_find(c, network);
	f->err = ferr;
	if (rc == 0) {
		struct value_in in;
		value_in(&in, value);
		*changed = !f->superseded && e && !entry_equals(e, &in);
		f->how = CACHE_HIT;
		*how = CACHE_MISS;
		f->value = value;
		if (!f->superseded) {
			/* Fresh from when the fetch started: the backend may have
			 * changed since, never earlier. */
			entry_set(c, network, &in, started);
		}
		value_done(&in);
	} else if (rc == -ENOENT) {
		if (e && !f->superseded)
			entry_remove(c, e);
	} else if (e && now <= e->fetched_at + c->cfg.ttl_seconds + c->cfg.max_stale_seconds) {
		/* Fresh again only if a cache_put landed while we fetched. */
		f->how = now < e->fetched_at + c->cfg.ttl_seconds ? CACHE_HIT : CACHE_STALE;
		*how = f->how;
		lru_touch(c, e);
		f->value = entry_copy(e);
		if (f->value) {
			rc = 0;
		} else {
			rc = -ENOMEM;
			backend_err_set(&f->err, "out of memory");
		}
	} else if (e) {
		entry_remove(c, e);   /* too old to ever be served again */
	}
	f->rc = rc;
	f->done = true;
	flight_unlink(c, f);
	pthread_cond_broadcast(&f->done_cond);

	if (rc == 0)
		rc = value_out(f->value, out, &f->err);
	return rc;
}

int cache_get_or_park(struct cache *c, const char *network, cache_fetch_fn fetch, void *ctx,
                      struct cache_waiter *w, struct secret **out, enum cache_result *how,
                      bool *changed, struct backend_err *err)
{
	enum cache_result how_local;
	bool changed_local;
	int rc;

	if (!how)
		how = &how_local;
	if (!changed)
		changed = &changed_local;
	*out = NULL;
	*changed = false;
	if (err) {
		err->msg[0] = 0;
		err->auth_failure = false;
		err->updated_at = 0;
	}

	pthread_mutex_lock(&c->lock);
	double now = cache_now(c);
	struct cache_entry *e = entry_find(c, network);
	if (e && now < e->fetched_at + c->cfg.ttl_seconds) {
		lru_touch(c, e);
		rc = (*out = entry_copy(e)) ? 0 : -ENOMEM;
		if (rc)
			backend_err_set(err, "out of memory");
		*how = CACHE_HIT;
		goto out;
	}

	struct cache_flight *f = flight_find(c, network);
	if (f && w) {
		w->next = NULL;
		*f->parked_tail = w;
		f->parked_tail = &w->next;
		rc = CACHE_PARKED;
		goto out;
	}
	if (f) {
		rc = flight_wait(c, f, out, how, err);
		goto out;
	}

	f = calloc(1, sizeof(*f));
	if (!f || !(f->network = strdup(network)) ||
	    pthread_cond_init(&f->done_cond, NULL) != 0) {
		if (f)
			free(f->network);
		free(f);
		backend_err_set(err, "out of memory");
		rc = -ENOMEM;
		goto out;
	}
	f->refs = 1;
	f->parked_tail = &f->parked;
	f->next = c->flights;
	c->flights = f;
	rc = flight_run(c, f, network, fetch, ctx, out, how, changed, now);
	flight_answer_parked(c, f);
	err_copy(err, &f->err);
	flight_release(f);
out:
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int cache_get(struct cache *c, const char *network, cache_fetch_fn fetch, void *ctx,
              struct secret **out, enum cache_result *how, bool *changed,
              struct backend_err *err)
{
	return cache_get_or_park(c, network, fetch, ctx, NULL, out, how, changed, err);
}

void cache_put(struct cache *c, const char *network, const struct secret *key)
{
	pthread_mutex_lock(&c->lock);
	flight_supersede(c, network);
	/* Without the new value, the old one is not served (entry_set). */
	struct value_in in;
	value_in(&in, key);
	entry_set(c, network, &in, cache_now(c));
	value_done(&in);
	pthread_mutex_unlock(&c->lock);
}

void cache_invalidate(struct cache *c, const char *network)
{
	pthread_mutex_lock(&c->lock);
	flight_supersede(c, network);
	struct cache_entry *e = entry_find(c, network);
	if (e)
		entry_remove(c, e);
	pthread_mutex_unlock(&c->lock);
}

bool cache_contains(struct cache *c, const char *network)
{
	pthread_mutex_lock(&c->lock);
	bool found = entry_find(c, network) != NULL;
	pthread_mutex_unlock(&c->lock);
	return found;
}

size_t cache_size(struct cache *c)
{
	pthread_mutex_lock(&c->lock);
	size_t n = c->count;
	pthread_mutex_unlock(&c->lock);
	return n;
}

unsigned cache_id(const struct cache *c)
{
	return c->id;
}
