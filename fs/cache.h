/* cache.h - the TTL cache in front of remote backends.
 *
 * - TTL per entry; a fresh entry is served without a backend call.
 * - Single-flight: concurrent misses for one network make one fetch; the
 *   other callers wait for its result.
 * - Stale-if-error: when the fetch fails (not -ENOENT), an entry up to
 *   max_stale seconds past its TTL is served and reported as CACHE_STALE.
 * - Bounded: at most max_entries, least recently used evicted.
 * - Key bytes are secrets (mlocked, wiped on eviction, replacement and free).
 * Thread-safe.  Time comes from cfg->now, so tests inject a clock.
 */
#ifndef OMIKUJI_CACHE_H
#define OMIKUJI_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "backend.h"
#include "clock.h"

struct cache;
struct netrec_table;

struct cache_config {
	double ttl_seconds;
	double max_stale_seconds;
	size_t max_entries;
	clock_fn now;          /* NULL = clock_monotonic */
	/* The mount's per-network records (netrec.h), shared by its caches:
	 * NULL = the cache keeps a table of its own. */
	struct netrec_table *networks;
};

/* One cached value (internal to cache.c).  Every per-network record
 * (struct netrec) embeds one: the first cache holding a network keeps its
 * entry there, with no allocation and no copy of the name; a second cache
 * holding the same network (two instances during `key migrate`) keeps its
 * entry in a side table of its own (issue 15, goal 3). */
struct cache_entry {
	struct cache_entry *lru_prev, *lru_next;   /* lru_prev toward most recent */
	double fetched_at;
	/* The value: a struct secret whose cap is its len (what secret_dup
	 * makes), kept as its three fields so that the entry is 40 bytes,
	 * not 64 (issue 15, goal 3): its locked bytes, their count and the
	 * pool class (secret.h's pooled); data NULL when empty. */
	unsigned char *data;
	uint32_t len;
	uint8_t pooled;
	/* CACHE_PACKED_*: data holds the 32 raw bytes of a value that was 64
	 * lowercase hex digits, with "0x" before them or not (cache.c); 0: data
	 * holds the value itself. */
	uint8_t packed;
	/* In a netrec: the id of the cache holding it (cache.c), 0 when free
	 * (read and written with the netrec table's lock).  A side entry:
	 * cache.c's mark.  The other fields belong to the owning cache (its
	 * lock). */
	uint16_t owner;
};

#define CACHE_PACKED_HEX 1
#define CACHE_PACKED_0X 2
_Static_assert(sizeof(struct cache_entry) == 40, "a cache entry is 40 bytes (issue 15, goal 3)");

enum cache_result {
	CACHE_HIT,     /* fresh entry */
	CACHE_STALE,   /* fetch failed, expired entry served */
	CACHE_MISS,    /* fetched from the backend now */
};

/* Fetch callback: the backend get.  Called without cache locks held. */
typedef int (*cache_fetch_fn)(void *ctx, const char *network, struct secret **out,
                              struct backend_err *err);

struct cache *cache_new(const struct cache_config *cfg);
void cache_free(struct cache *c);   /* wipes everything */

/* Get the key of network.  On success *out is a new secret (caller frees),
 * *how says where it came from, and *changed is set when a fetch returned a
 * value different from the one cached before (rotation).  On failure returns
 * the fetch's error (err filled) and nothing is cached; an -ENOENT from the
 * backend also drops a cached entry. */
int cache_get(struct cache *c, const char *network, cache_fetch_fn fetch, void *ctx,
              struct secret **out, enum cache_result *how, bool *changed,
              struct backend_err *err);

/* A caller parked on a fetch already in flight (cache_get_or_park), so it
 * holds no thread while the backend answers.  done is called exactly once,
 * by the thread that made the fetch, once the fetch's result is published
 * and without cache locks held: rc 0 with value the waiter's own copy
 * (which it frees) and how CACHE_HIT or CACHE_STALE (err then holds the
 * backend's reason), or the fetch's error with value NULL.  A cache_put or
 * cache_invalidate during the fetch does not change what waiters get (as
 * for cache_get's waiters). */
struct cache_waiter {
	struct cache_waiter *next;   /* the cache's */
	void (*done)(struct cache_waiter *w, int rc, struct secret *value,
	             enum cache_result how, const struct backend_err *err);
};

#define CACHE_PARKED 1

/* cache_get, except that when another caller's fetch for network is in
 * flight, w is queued on it and CACHE_PARKED returned at once (w->done
 * reports the result later; w must live until then).  A hit, or no fetch
 * in flight (this caller makes it, and answers the waiters queued on it
 * before returning), are as for cache_get. */
int cache_get_or_park(struct cache *c, const char *network, cache_fetch_fn fetch, void *ctx,
                      struct cache_waiter *w, struct secret **out, enum cache_result *how,
                      bool *changed, struct backend_err *err);

/* After a successful store through the mount: cache this value (copied). */
void cache_put(struct cache *c, const char *network, const struct secret *key);
/* Drop one entry (remove, touch-refresh). */
void cache_invalidate(struct cache *c, const char *network);
size_t cache_size(struct cache *c);
/* The id that marks this cache's entries in the records of its netrec
 * table (struct cache_entry's owner), 1 or more: for tests. */
unsigned cache_id(const struct cache *c);
/* Is there an entry for network (fresh or expired)?  Does not touch the LRU. */
bool cache_contains(struct cache *c, const char *network);

#endif
