/* test_cache.c - the TTL cache: freshness, stale-if-error, -ENOENT, LRU,
 * put/invalidate, the rotation flag and single-flight.  Time comes from an
 * injected clock; keys are random throwaway bytes. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>
#include <openssl/rand.h>
#include "cache.h"
#include "netrec.h"

static _Atomic double fake_time = 1000.0;
static atomic_int clock_calls;

static double fake_clock(void)
{
	atomic_fetch_add(&clock_calls, 1);
	return atomic_load(&fake_time);
}

/* A backend stand-in: counts calls, answers rc or a copy of value. */
struct fake_backend {
	atomic_int calls;
	int rc;
	const char *msg;
	struct secret *value;
	useconds_t delay_us;
	int wait_for_clock_calls;   /* hold the fetch until this many cache_get calls arrived */
};

static int fake_fetch(void *ctx, const char *network, struct secret **out,
                      struct backend_err *err)
{
	struct fake_backend *fb = ctx;
	(void)network;
	atomic_fetch_add(&fb->calls, 1);
	if (fb->delay_us)
		usleep(fb->delay_us);
	/* Bounded wait (30 s) so a bug shows as a failed count, not a hang. */
	for (int i = 0; i < 30000 && atomic_load(&clock_calls) < fb->wait_for_clock_calls; i++)
		usleep(1000);
	if (fb->rc) {
		backend_err_set(err, "%s", fb->msg ? fb->msg : "failed");
		return fb->rc;
	}
	*out = secret_dup(fb->value);
	return *out ? 0 : -ENOMEM;
}

static struct secret *random_key(void)
{
	unsigned char raw[32];
	char hex[65];
	cr_assert_eq(RAND_bytes(raw, sizeof(raw)), 1);
	for (size_t i = 0; i < sizeof(raw); i++)
		snprintf(hex + 2 * i, 3, "%02x", raw[i]);
	struct secret *s = secret_from(hex, 64);
	secret_wipe(raw, sizeof(raw));
	secret_wipe(hex, sizeof(hex));
	cr_assert_not_null(s);
	return s;
}

static struct cache *new_cache(double ttl, double max_stale, size_t max_entries)
{
	struct cache_config cfg = {
		.ttl_seconds = ttl, .max_stale_seconds = max_stale,
		.max_entries = max_entries, .now = fake_clock,
	};
	struct cache *c = cache_new(&cfg);
	cr_assert_not_null(c);
	return c;
}

/* cache_get with result checks left to the caller; frees the value unless kept. */
static int get(struct cache *c, const char *net, struct fake_backend *fb,
               enum cache_result *how, bool *changed, struct secret **keep,
               struct backend_err *err)
{
	struct secret *out = NULL;
	struct backend_err local;
	int rc = cache_get(c, net, fake_fetch, fb, &out, how, changed, err ? err : &local);
	if (rc == 0)
		cr_assert_not_null(out, "success without a value");
	else
		cr_assert_null(out, "failure with a value");
	if (keep)
		*keep = out;
	else
		secret_free(out);
	return rc;
}

Test(cache, fresh_within_ttl_then_refetch)
{
	struct cache *c = new_cache(300, 0, 16);
	struct fake_backend fb = { .value = random_key() };
	enum cache_result how;
	struct secret *got = NULL;

	atomic_store(&fake_time, 1000.0);
	cr_assert_eq(get(c, "mainnet", &fb, &how, NULL, &got, NULL), 0);
	cr_expect_eq(how, CACHE_MISS);
	cr_expect(secret_equal(got, fb.value), "first read returns the backend's value");
	secret_free(got);

	atomic_store(&fake_time, 1299.0);
	cr_assert_eq(get(c, "mainnet", &fb, &how, NULL, &got, NULL), 0);
	cr_expect_eq(how, CACHE_HIT);
	cr_expect(secret_equal(got, fb.value), "hit returns the cached value");
	secret_free(got);
	cr_expect_eq(atomic_load(&fb.calls), 1, "fresh entry: no second fetch");

	atomic_store(&fake_time, 1300.0);   /* now == fetched_at + ttl: expired */
	cr_assert_eq(get(c, "mainnet", &fb, &how, NULL, NULL, NULL), 0);
	cr_expect_eq(how, CACHE_MISS);
	cr_expect_eq(atomic_load(&fb.calls), 2, "expired entry: one more fetch");

	atomic_store(&fake_time, 1301.0);
	cr_assert_eq(get(c, "mainnet", &fb, &how, NULL, NULL, NULL), 0);
	cr_expect_eq(how, CACHE_HIT, "refetched entry is fresh again");
	cr_expect_eq(atomic_load(&fb.calls), 2);

	secret_free(fb.value);
	cache_free(c);
}

Test(cache, stale_if_error_window)
{
	struct cache *c = new_cache(10, 100, 16);
	struct fake_backend fb = { .value = random_key() };
	enum cache_result how;
	struct backend_err err;
	struct secret *got = NULL;

	atomic_store(&fake_time, 0.0);
	cr_assert_eq(get(c, "net", &fb, &how, NULL, NULL, NULL), 0);

	fb.rc = -EIO;
	fb.msg = "connection refused";
	atomic_store(&fake_time, 50.0);
	cr_assert_eq(get(c, "net", &fb, &how, NULL, &got, &err), 0, "served stale");
	cr_expect_eq(how, CACHE_STALE);
	cr_expect(secret_equal(got, fb.value));
	cr_expect_str_eq(err.msg, "connection refused", "the reason stays available");
	secret_free(got);
	cr_expect_eq(atomic_load(&fb.calls), 2, "a stale entry still tries the backend");

	atomic_store(&fake_time, 110.0);   /* == fetched_at + ttl + max_stale */
	cr_assert_eq(get(c, "net", &fb, &how, NULL, NULL, NULL), 0);
	cr_expect_eq(how, CACHE_STALE);
	cr_expect_eq(atomic_load(&fb.calls), 3, "stale is not fresh: each call retries");

	atomic_store(&fake_time, 110.5);
	cr_expect_eq(get(c, "net", &fb, &how, NULL, NULL, &err), -EIO, "past the window: the error");
	cr_expect_str_eq(err.msg, "connection refused");
	cr_expect_eq(cache_size(c), 0, "an unservable entry is dropped");

	/* The backend recovers. */
	fb.rc = 0;
	cr_assert_eq(get(c, "net", &fb, &how, NULL, NULL, NULL), 0);
	cr_expect_eq(how, CACHE_MISS);

	secret_free(fb.value);
	cache_free(c);
}

Test(cache, error_without_entry_caches_nothing)
{
	struct cache *c = new_cache(10, 100, 16);
	struct fake_backend fb = { .rc = -EACCES, .msg = "permission denied" };
	struct backend_err err;

	cr_expect_eq(get(c, "net", &fb, NULL, NULL, NULL, &err), -EACCES);
	cr_expect_str_eq(err.msg, "permission denied");
	cr_expect_eq(get(c, "net", &fb, NULL, NULL, NULL, &err), -EACCES);
	cr_expect_eq(atomic_load(&fb.calls), 2, "failures are not cached");
	cr_expect_eq(cache_size(c), 0);
	cache_free(c);
}

Test(cache, enoent_drops_entry)
{
	struct cache *c = new_cache(10, 1000, 16);
	struct fake_backend fb = { .value = random_key() };
	enum cache_result how;

	atomic_store(&fake_time, 0.0);
	cr_assert_eq(get(c, "gone", &fb, &how, NULL, NULL, NULL), 0);
	cr_assert_eq(cache_size(c), 1);

	atomic_store(&fake_time, 20.0);    /* expired, well inside the stale window */
	fb.rc = -ENOENT;
	fb.msg = "no such key";
	cr_expect_eq(get(c, "gone", &fb, &how, NULL, NULL, NULL), -ENOENT,
	             "a deleted key is not served stale");
	cr_expect_eq(cache_size(c), 0);

	fb.rc = -EIO;
	cr_expect_eq(get(c, "gone", &fb, &how, NULL, NULL, NULL), -EIO,
	             "nothing left to serve stale after -ENOENT");

	secret_free(fb.value);
	cache_free(c);
}

Test(cache, lru_eviction)
{
	struct cache *c = new_cache(1000, 0, 3);
	struct fake_backend fb = { .value = random_key() };
	enum cache_result how;
	const char *nets[] = { "a", "b", "c" };

	atomic_store(&fake_time, 0.0);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(get(c, nets[i], &fb, NULL, NULL, NULL, NULL), 0);
	cr_assert_eq(cache_size(c), 3);

	/* Read "a": now "b" is the least recently used. */
	cr_assert_eq(get(c, "a", &fb, &how, NULL, NULL, NULL), 0);
	cr_expect_eq(how, CACHE_HIT);

	cr_assert_eq(get(c, "d", &fb, NULL, NULL, NULL, NULL), 0);
	cr_expect_eq(cache_size(c), 3, "bounded by max_entries");
	int calls = atomic_load(&fb.calls);

	cr_assert_eq(get(c, "a", &fb, &how, NULL, NULL, NULL), 0);
	cr_expect_eq(how, CACHE_HIT, "recently read entry kept");
	cr_assert_eq(get(c, "c", &fb, &how, NULL, NULL, NULL), 0);
	cr_expect_eq(how, CACHE_HIT);
	cr_assert_eq(get(c, "d", &fb, &how, NULL, NULL, NULL), 0);
	cr_expect_eq(how, CACHE_HIT);
	cr_expect_eq(atomic_load(&fb.calls), calls);

	cr_assert_eq(get(c, "b", &fb, &how, NULL, NULL, NULL), 0);
	cr_expect_eq(how, CACHE_MISS, "least recently used entry was evicted");
	cr_expect_eq(atomic_load(&fb.calls), calls + 1);
	cr_expect_eq(cache_size(c), 3);

	secret_free(fb.value);
	cache_free(c);
}

Test(cache, put_and_invalidate)
{
	struct cache *c = new_cache(100, 0, 16);
	struct fake_backend fb = { .value = random_key() };
	struct secret *stored = random_key();
	struct secret *got = NULL;
	enum cache_result how;

	atomic_store(&fake_time, 0.0);
	cache_put(c, "net", stored);
	cr_expect_eq(cache_size(c), 1);
	cr_assert_eq(get(c, "net", &fb, &how, NULL, &got, NULL), 0);
	cr_expect_eq(how, CACHE_HIT, "a put value is served without a fetch");
	cr_expect(secret_equal(got, stored));
	cr_expect_not(secret_equal(got, fb.value));
	secret_free(got);
	cr_expect_eq(atomic_load(&fb.calls), 0);

	/* put replaces and restarts the TTL */
	atomic_store(&fake_time, 90.0);
	cache_put(c, "net", fb.value);
	atomic_store(&fake_time, 150.0);
	cr_assert_eq(get(c, "net", &fb, &how, NULL, &got, NULL), 0);
	cr_expect_eq(how, CACHE_HIT);
	cr_expect(secret_equal(got, fb.value));
	secret_free(got);

	cache_invalidate(c, "net");
	cr_expect_eq(cache_size(c), 0);
	cache_invalidate(c, "never-there");
	cr_assert_eq(get(c, "net", &fb, &how, NULL, NULL, NULL), 0);
	cr_expect_eq(how, CACHE_MISS, "invalidated entry is fetched again");
	cr_expect_eq(atomic_load(&fb.calls), 1);

	secret_free(stored);
	secret_free(fb.value);
	cache_free(c);
}

Test(cache, changed_flag)
{
	struct cache *c = new_cache(10, 0, 16);
	struct secret *first = random_key();
	struct secret *second = random_key();
	struct fake_backend fb = { .value = first };
	bool changed = true;

	atomic_store(&fake_time, 0.0);
	cr_assert_eq(get(c, "net", &fb, NULL, &changed, NULL, NULL), 0);
	cr_expect_not(changed, "a first fetch is not a change");

	atomic_store(&fake_time, 20.0);
	changed = true;
	cr_assert_eq(get(c, "net", &fb, NULL, &changed, NULL, NULL), 0);
	cr_expect_not(changed, "same value refetched");

	atomic_store(&fake_time, 40.0);
	fb.value = second;
	cr_assert_eq(get(c, "net", &fb, NULL, &changed, NULL, NULL), 0);
	cr_expect(changed, "rotated value detected");

	changed = true;
	cr_assert_eq(get(c, "net", &fb, NULL, &changed, NULL, NULL), 0);
	cr_expect_not(changed, "a hit is not a change");

	secret_free(first);
	secret_free(second);
	cache_free(c);
}

#define FLIGHT_THREADS 32

struct flight_arg {
	struct cache *c;
	struct fake_backend *fb;
	pthread_barrier_t *barrier;
	int rc;
	enum cache_result how;
	struct secret *got;
	struct backend_err err;
};

static void *flight_thread(void *p)
{
	struct flight_arg *a = p;
	pthread_barrier_wait(a->barrier);
	a->rc = cache_get(a->c, "slow", fake_fetch, a->fb, &a->got, &a->how, NULL, &a->err);
	return NULL;
}

/* Start FLIGHT_THREADS concurrent reads of one network; the fetch sleeps
 * 200 ms and is also held until every thread has entered cache_get (the
 * injected clock counts them), so the outcome does not depend on timing. */
static void run_flight(struct cache *c, struct fake_backend *fb, struct flight_arg *args)
{
	pthread_t th[FLIGHT_THREADS];
	pthread_barrier_t barrier;

	atomic_store(&clock_calls, 0);
	fb->delay_us = 200000;
	fb->wait_for_clock_calls = FLIGHT_THREADS;
	pthread_barrier_init(&barrier, NULL, FLIGHT_THREADS);
	for (int i = 0; i < FLIGHT_THREADS; i++) {
		args[i] = (struct flight_arg){ .c = c, .fb = fb, .barrier = &barrier };
		cr_assert_eq(pthread_create(&th[i], NULL, flight_thread, &args[i]), 0);
	}
	for (int i = 0; i < FLIGHT_THREADS; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&barrier);
}

Test(cache, single_flight_value)
{
	struct cache *c = new_cache(300, 0, 16);
	struct fake_backend fb = { .value = random_key() };
	struct flight_arg args[FLIGHT_THREADS];
	int misses = 0;

	run_flight(c, &fb, args);
	cr_expect_eq(atomic_load(&fb.calls), 1, "exactly one fetch for concurrent misses");
	for (int i = 0; i < FLIGHT_THREADS; i++) {
		cr_expect_eq(args[i].rc, 0, "thread %d", i);
		cr_expect(secret_equal(args[i].got, fb.value), "thread %d got the value", i);
		if (args[i].how == CACHE_MISS)
			misses++;
		else
			cr_expect_eq(args[i].how, CACHE_HIT, "waiters report a hit");
		secret_free(args[i].got);
	}
	cr_expect_eq(misses, 1, "only the fetching caller reports a miss");
	cr_expect_eq(cache_size(c), 1);

	secret_free(fb.value);
	cache_free(c);
}

Test(cache, single_flight_error)
{
	struct cache *c = new_cache(300, 0, 16);
	struct fake_backend fb = { .rc = -ETIMEDOUT, .msg = "backend timed out" };
	struct flight_arg args[FLIGHT_THREADS];

	run_flight(c, &fb, args);
	cr_expect_eq(atomic_load(&fb.calls), 1, "waiters share the failed fetch");
	for (int i = 0; i < FLIGHT_THREADS; i++) {
		cr_expect_eq(args[i].rc, -ETIMEDOUT, "thread %d", i);
		cr_expect_null(args[i].got);
		cr_expect_str_eq(args[i].err.msg, "backend timed out", "thread %d", i);
	}
	cr_expect_eq(cache_size(c), 0);
	cache_free(c);
}

Test(cache, single_flight_stale)
{
	struct cache *c = new_cache(10, 100, 16);
	struct fake_backend fb = { .value = random_key() };
	struct flight_arg args[FLIGHT_THREADS];

	atomic_store(&fake_time, 0.0);
	cr_assert_eq(get(c, "slow", &fb, NULL, NULL, NULL, NULL), 0);
	atomic_store(&fake_time, 30.0);
	fb.rc = -EIO;
	fb.msg = "unreachable";
	run_flight(c, &fb, args);
	cr_expect_eq(atomic_load(&fb.calls), 2);
	for (int i = 0; i < FLIGHT_THREADS; i++) {
		cr_expect_eq(args[i].rc, 0, "thread %d", i);
		cr_expect_eq(args[i].how, CACHE_STALE, "thread %d", i);
		cr_expect(secret_equal(args[i].got, fb.value));
		secret_free(args[i].got);
	}
	secret_free(fb.value);
	cache_free(c);
}

/* A cache_put that lands while a fetch is in flight wins over the fetch. */
static struct cache *race_cache;
static struct secret *race_value;

static int fetch_with_concurrent_put(void *ctx, const char *network, struct secret **out,
                                     struct backend_err *err)
{
	struct fake_backend *fb = ctx;
	cache_put(race_cache, network, race_value);   /* the lock is free during fetch */
	return fake_fetch(fb, network, out, err);
}

Test(cache, put_during_fetch_wins)
{
	struct cache *c = new_cache(100, 0, 16);
	struct fake_backend fb = { .value = random_key() };
	struct secret *got = NULL;
	enum cache_result how;

	race_cache = c;
	race_value = random_key();
	atomic_store(&fake_time, 0.0);
	cr_assert_eq(cache_get(c, "net", fetch_with_concurrent_put, &fb, &got, &how, NULL, NULL), 0);
	cr_expect(secret_equal(got, fb.value), "the caller gets what it fetched");
	secret_free(got);
	cr_assert_eq(get(c, "net", &fb, &how, NULL, &got, NULL), 0);
	cr_expect_eq(how, CACHE_HIT);
	cr_expect(secret_equal(got, race_value), "the stored value stays cached");
	secret_free(got);

	secret_free(race_value);
	secret_free(fb.value);
	cache_free(c);
}

Test(cache, many_networks)
{
	struct cache *c = new_cache(100, 0, 0);
	struct fake_backend fb = { .value = random_key() };
	char net[32];
	enum cache_result how;

	atomic_store(&fake_time, 0.0);
	for (int i = 0; i < 500; i++) {
		snprintf(net, sizeof(net), "net-%d", i);
		cr_assert_eq(get(c, net, &fb, NULL, NULL, NULL, NULL), 0);
	}
	cr_expect_eq(cache_size(c), 500, "max_entries 0 is unbounded; the table grows");
	for (int i = 0; i < 500; i++) {
		snprintf(net, sizeof(net), "net-%d", i);
		cr_assert_eq(get(c, net, &fb, &how, NULL, NULL, NULL), 0);
		cr_expect_eq(how, CACHE_HIT, "%s", net);
	}
	cr_expect_eq(atomic_load(&fb.calls), 500);
	secret_free(fb.value);
	cache_free(c);
}

/* --- issue 15: one allocation per cached network, its bytes in a pool slot
 * sized to them; every way out of the cache gives the slot back. -------- */

/* Slots of the class that holds a cached 64-hex-digit key: its 32 raw
 * bytes (33 with the NUL; fs/cache.c packs it). */
static int key_class(void)
{
	int cls = 0;
	while (secret_pool_slot_size(cls) < 33)
		cls++;
	return cls;
}

Test(cache, record_sized_slot_and_life_cycle)
{
	int cls = key_class();
	cr_expect_eq(secret_pool_slot_size(cls), 40,
	             "a cached 64-hex-digit key takes a 40-byte slot (its raw bytes), not 72 or 160");
	struct fake_backend fb = { .value = random_key() };
	size_t base = secret_pool_in_use(cls);
	struct cache *c = new_cache(1000, 0, 2);
	enum cache_result how;
	bool changed;
	atomic_store(&fake_time, 0.0);

	/* Two cached networks: one slot each (the callers' copies are freed). */
	cr_assert_eq(get(c, "a", &fb, NULL, NULL, NULL, NULL), 0);
	cr_assert_eq(get(c, "b", &fb, NULL, NULL, NULL, NULL), 0);
	cr_expect_eq(secret_pool_in_use(cls), base + 2);

	/* Evict: a third network pushes "a" out, its slot goes back. */
	cr_assert_eq(get(c, "c", &fb, NULL, NULL, NULL, NULL), 0);
	cr_expect_eq(cache_size(c), 2);
	cr_expect_not(cache_contains(c, "a"), "least recently used entry evicted");
	cr_expect_eq(secret_pool_in_use(cls), base + 2);

	/* Rotate: the backend returns a new value after the TTL; the record
	 * keeps one slot, now holding the new bytes. */
	struct secret *old = fb.value;
	fb.value = random_key();
	atomic_store(&fake_time, 2000.0);
	struct secret *got = NULL;
	cr_assert_eq(get(c, "b", &fb, &how, &changed, &got, NULL), 0);
	cr_expect_eq(how, CACHE_MISS);
	cr_expect(changed, "a new value is a rotation");
	cr_expect(secret_equal(got, fb.value));
	secret_free(got);
	secret_free(old);
	cr_expect_eq(secret_pool_in_use(cls), base + 2, "rotation replaced the slot's bytes");
	cr_assert_eq(get(c, "b", &fb, &how, NULL, NULL, NULL), 0);
	cr_expect_eq(how, CACHE_HIT);

	/* Remove (rm, touch): the record and its slot go. */
	cache_invalidate(c, "b");
	cr_expect_not(cache_contains(c, "b"));
	cr_expect_eq(secret_pool_in_use(cls), base + 1);

	/* A backend ENOENT drops the record too. */
	fb.rc = -ENOENT;
	atomic_store(&fake_time, 4000.0);
	cr_expect_eq(get(c, "c", &fb, NULL, NULL, NULL, NULL), -ENOENT);
	cr_expect_eq(cache_size(c), 0);
	cr_expect_eq(secret_pool_in_use(cls), base);

	/* A put caches a copy in a record of its own; cache_free gives every
	 * slot back. */
	cache_put(c, "d", fb.value);
	cr_expect_eq(secret_pool_in_use(cls), base + 1);
	cache_free(c);
	cr_expect_eq(secret_pool_in_use(cls), base);
	secret_free(fb.value);
}

Test(cache, record_keeps_long_names)
{
	/* The name lives in the record: a 64-byte name (the longest a network
	 * may have) is kept whole and found again. */
	char name[65];
	memset(name, 'n', 64);
	name[64] = 0;
	struct fake_backend fb = { .value = random_key() };
	struct cache *c = new_cache(1000, 0, 0);
	enum cache_result how;
	atomic_store(&fake_time, 0.0);
	cr_assert_eq(get(c, name, &fb, NULL, NULL, NULL, NULL), 0);
	cr_expect(cache_contains(c, name));
	name[63] = 'm';
	cr_expect_not(cache_contains(c, name), "names differing in the last byte are different");
	name[63] = 'n';
	cr_assert_eq(get(c, name, &fb, &how, NULL, NULL, NULL), 0);
	cr_expect_eq(how, CACHE_HIT);
	cr_expect_eq(atomic_load(&fb.calls), 1);
	cache_free(c);
	secret_free(fb.value);
}

/* --- parked callers (cache_get_or_park; s5-async) ------------------------ */

#define PARKED 8

static atomic_int gate_open, gate_entered;

/* A fetch held until the test opens the gate (bounded: 30 s). */
static int gated_fetch(void *ctx, const char *network, struct secret **out,
                       struct backend_err *err)
{
	atomic_store(&gate_entered, 1);
	for (int i = 0; i < 30000 && !atomic_load(&gate_open); i++)
		usleep(1000);
	return fake_fetch(ctx, network, out, err);
}

struct parked_waiter {
	struct cache_waiter w;   /* first */
	int order;
	atomic_int calls;
	int rc;
	enum cache_result how;
	struct secret *got;
	struct backend_err err;
	pthread_t thread;
};

static atomic_int parked_answered;

static void parked_done(struct cache_waiter *w, int rc, struct secret *value,
                        enum cache_result how, const struct backend_err *err)
{
	struct parked_waiter *p = (struct parked_waiter *)w;
	atomic_fetch_add(&p->calls, 1);
	p->order = atomic_fetch_add(&parked_answered, 1);
	p->rc = rc;
	p->how = how;
	p->got = value;
	p->err = *err;
	p->thread = pthread_self();
}

struct owner_arg {
	struct cache *c;
	struct fake_backend *fb;
	int rc;
	enum cache_result how;
	struct secret *got;
	pthread_t self;
};

static void *owner_thread(void *p)
{
	struct owner_arg *a = p;
	a->self = pthread_self();
	a->rc = cache_get(a->c, "slow", gated_fetch, a->fb, &a->got, &a->how, NULL, NULL);
	return NULL;
}

/* One caller fetches (held at the gate); PARKED callers park on its flight
 * and return at once; opening the gate answers each exactly once, in the
 * order they parked, from the fetching thread, each with its own copy.
 * invalidate: a cache_invalidate lands during the fetch. */
static void run_parked(struct cache *c, struct fake_backend *fb, struct owner_arg *owner,
                       struct parked_waiter *w, bool invalidate)
{
	pthread_t th;
	atomic_store(&gate_open, 0);
	atomic_store(&gate_entered, 0);
	atomic_store(&parked_answered, 0);
	*owner = (struct owner_arg){ .c = c, .fb = fb };
	cr_assert_eq(pthread_create(&th, NULL, owner_thread, owner), 0);
	for (int i = 0; i < 30000 && !atomic_load(&gate_entered); i++)
		usleep(1000);
	cr_assert(atomic_load(&gate_entered), "the fetch started");
	for (int i = 0; i < PARKED; i++) {
		memset(&w[i], 0, sizeof(w[i]));
		w[i].w.done = parked_done;
		struct secret *out = NULL;
		int rc = cache_get_or_park(c, "slow", gated_fetch, fb, &w[i].w, &out, NULL, NULL,
		                           NULL);
		cr_assert_eq(rc, CACHE_PARKED, "caller %d parks on the flight", i);
		cr_assert_null(out);
	}
	if (invalidate)
		cache_invalidate(c, "slow");
	cr_expect_eq(atomic_load(&parked_answered), 0, "nobody answered before the fetch ends");
	atomic_store(&gate_open, 1);
	pthread_join(th, NULL);
	cr_expect_eq(atomic_load(&fb->calls), 1, "one backend call for all of them");
	for (int i = 0; i < PARKED; i++) {
		cr_expect_eq(atomic_load(&w[i].calls), 1, "caller %d answered exactly once", i);
		cr_expect_eq(w[i].order, i, "answered in the order they parked");
		cr_expect(pthread_equal(w[i].thread, owner->self), "answered by the fetching thread");
	}
}

Test(cache, parked_callers_get_own_copies)
{
	struct cache *c = new_cache(300, 0, 16);
	struct fake_backend fb = { .value = random_key() };
	struct owner_arg owner;
	struct parked_waiter w[PARKED];

	run_parked(c, &fb, &owner, w, false);
	cr_expect_eq(owner.rc, 0);
	cr_expect_eq(owner.how, CACHE_MISS);
	for (int i = 0; i < PARKED; i++) {
		cr_expect_eq(w[i].rc, 0);
		cr_expect_eq(w[i].how, CACHE_HIT, "a parked caller cost the backend nothing");
		cr_expect_str_eq(w[i].err.msg, "");
		cr_assert_not_null(w[i].got);
		cr_expect(secret_equal(w[i].got, fb.value));
		cr_expect_neq(w[i].got, owner.got, "its own copy");
		for (int j = 0; j < i; j++)
			cr_expect_neq(w[i].got->data, w[j].got->data, "never shared across callers");
	}
	for (int i = 0; i < PARKED; i++)
		secret_free(w[i].got);
	secret_free(owner.got);
	cr_expect_eq(cache_size(c), 1, "the fetched value is cached");
	secret_free(fb.value);
	cache_free(c);
}

Test(cache, parked_callers_share_the_error)
{
	struct cache *c = new_cache(300, 0, 16);
	struct fake_backend fb = { .rc = -ETIMEDOUT, .msg = "backend timed out" };
	struct owner_arg owner;
	struct parked_waiter w[PARKED];

	run_parked(c, &fb, &owner, w, false);
	cr_expect_eq(owner.rc, -ETIMEDOUT);
	for (int i = 0; i < PARKED; i++) {
		cr_expect_eq(w[i].rc, -ETIMEDOUT, "caller %d gets the fetch's errno", i);
		cr_expect_null(w[i].got);
		cr_expect_str_eq(w[i].err.msg, "backend timed out");
	}
	cr_expect_eq(cache_size(c), 0);
	cache_free(c);
}

Test(cache, parked_callers_across_invalidate)
{
	struct cache *c = new_cache(300, 0, 16);
	struct fake_backend fb = { .value = random_key() };
	struct owner_arg owner;
	struct parked_waiter w[PARKED];

	run_parked(c, &fb, &owner, w, true);
	cr_expect_eq(owner.rc, 0);
	for (int i = 0; i < PARKED; i++) {
		cr_expect_eq(w[i].rc, 0, "the fetch's result is still handed to its callers");
		cr_expect(secret_equal(w[i].got, fb.value));
		secret_free(w[i].got);
	}
	secret_free(owner.got);
	cr_expect_eq(cache_size(c), 0, "but not cached over the invalidation");
	secret_free(fb.value);
	cache_free(c);
}

/* --- issue 15 round 3 (s5-mem): the first cache's entry lives in the
 * network's record of the mount's table; a second cache holding the same
 * network (two instances during `key migrate`) has a side entry. ------- */

static struct cache *new_shared_cache(struct netrec_table *t, size_t max_entries)
{
	struct cache_config cfg = {
		.ttl_seconds = 1000, .max_entries = max_entries, .now = fake_clock, .networks = t,
	};
	struct cache *c = cache_new(&cfg);
	cr_assert_not_null(c);
	return c;
}

/* The id of the cache holding the record's entry of network (0: nobody,
 * or no record). */
static unsigned record_owner(struct netrec_table *t, const char *network)
{
	netrec_lock(t);
	struct netrec *r = netrec_find(t, network);
	unsigned owner = r ? r->cache.owner : 0;
	netrec_unlock(t);
	return owner;
}

Test(cache, entry_lives_in_the_record)
{
	struct netrec_table t;
	cr_assert_eq(netrec_table_init(&t, 0), 0);
	int cls = key_class();
	struct fake_backend fb = { .value = random_key() };
	size_t base = secret_pool_in_use(cls);
	struct cache *c = new_shared_cache(&t, 0);
	atomic_store(&fake_time, 0.0);

	cr_assert_eq(get(c, "mainnet", &fb, NULL, NULL, NULL, NULL), 0);
	cr_expect_eq(record_owner(&t, "mainnet"), cache_id(c), "the record holds the entry");
	netrec_lock(&t);
	struct netrec *r = netrec_find(&t, "mainnet");
	cr_assert_not_null(r);
	cr_expect_eq(r->cache.packed, CACHE_PACKED_HEX, "64 hex digits are kept packed");
	unsigned char raw[32];
	cr_assert_eq(r->cache.len, sizeof(raw));
	for (size_t i = 0; i < sizeof(raw); i++)
		cr_assert_eq(sscanf((const char *)fb.value->data + 2 * i, "%2hhx", &raw[i]), 1);
	cr_expect_eq(memcmp(r->cache.data, raw, sizeof(raw)), 0, "the record holds the raw bytes");
	secret_wipe(raw, sizeof(raw));
	netrec_unlock(&t);
	cr_expect_eq(secret_pool_in_use(cls), base + 1);

	/* Invalidate: the value is wiped and the record's entry is free again. */
	cache_invalidate(c, "mainnet");
	cr_expect_eq(record_owner(&t, "mainnet"), 0);
	netrec_lock(&t);
	cr_expect_null(r->cache.data);
	cr_expect_eq(r->cache.len, 0);
	cr_expect_eq(r->cache.pooled, 0);
	netrec_unlock(&t);
	cr_expect_eq(secret_pool_in_use(cls), base);

	cache_put(c, "mainnet", fb.value);
	cr_expect_eq(record_owner(&t, "mainnet"), cache_id(c));
	cache_free(c);
	cr_expect_eq(record_owner(&t, "mainnet"), 0, "cache_free gives the entry back");
	cr_expect_eq(secret_pool_in_use(cls), base);
	netrec_table_clear(&t);
	secret_free(fb.value);
}

Test(cache, two_caches_hold_one_network)
{
	struct netrec_table t;
	cr_assert_eq(netrec_table_init(&t, 0), 0);
	int cls = key_class();
	struct fake_backend fa = { .value = random_key() }, fb = { .value = random_key() };
	size_t base = secret_pool_in_use(cls);
	struct cache *a = new_shared_cache(&t, 2), *b = new_shared_cache(&t, 2);
	enum cache_result how;
	struct secret *got = NULL;
	atomic_store(&fake_time, 0.0);

	/* Both instances cache "net" (migrate: the old and the new backend),
	 * each its own value. */
	cr_assert_eq(get(a, "net", &fa, NULL, NULL, NULL, NULL), 0);
	cr_assert_eq(get(b, "net", &fb, NULL, NULL, NULL, NULL), 0);
	cr_expect_eq(record_owner(&t, "net"), cache_id(a), "the first cache has the record's entry");
	cr_expect_eq(secret_pool_in_use(cls), base + 2);
	cr_assert_eq(get(a, "net", &fa, &how, NULL, &got, NULL), 0);
	cr_expect_eq(how, CACHE_HIT);
	cr_expect(secret_equal(got, fa.value), "a serves its own value");
	secret_free(got);
	cr_assert_eq(get(b, "net", &fb, &how, NULL, &got, NULL), 0);
	cr_expect_eq(how, CACHE_HIT);
	cr_expect(secret_equal(got, fb.value), "b serves its own value (side entry)");
	secret_free(got);
	cr_expect_eq(atomic_load(&fa.calls), 1);
	cr_expect_eq(atomic_load(&fb.calls), 1);

	/* a drops it (the migrate's remove from the old backend): b keeps its
	 * value; the record's entry is free, and a put on b does not move it. */
	cache_invalidate(a, "net");
	cr_expect_eq(record_owner(&t, "net"), 0);
	cr_expect(cache_contains(b, "net"));
	cr_expect_not(cache_contains(a, "net"));
	cr_assert_eq(get(b, "net", &fb, &how, NULL, &got, NULL), 0);
	cr_expect_eq(how, CACHE_HIT);
	cr_expect(secret_equal(got, fb.value));
	secret_free(got);
	cache_put(b, "net", fb.value);
	cr_expect_eq(record_owner(&t, "net"), 0, "b's entry stays in its side table");
	cr_expect_eq(cache_size(b), 1);
	cr_expect_eq(secret_pool_in_use(cls), base + 1);

	/* Eviction mixes both kinds: b holds "net" (side), then two more
	 * (records) with max_entries 2: the side entry, least recent, goes. */
	cr_assert_eq(get(b, "x", &fb, NULL, NULL, NULL, NULL), 0);
	cr_assert_eq(get(b, "y", &fb, NULL, NULL, NULL, NULL), 0);
	cr_expect_eq(cache_size(b), 2);
	cr_expect_not(cache_contains(b, "net"), "side entry evicted, least recently used");
	cr_expect_eq(record_owner(&t, "x"), cache_id(b));
	cr_expect_eq(record_owner(&t, "y"), cache_id(b));
	cr_expect_eq(secret_pool_in_use(cls), base + 2);
	/* now a takes "net" back into the record */
	cr_assert_eq(get(a, "net", &fa, NULL, NULL, NULL, NULL), 0);
	cr_expect_eq(record_owner(&t, "net"), cache_id(a));
	/* a record entry is evicted too, and freed for another cache */
	cr_assert_eq(get(b, "net", &fb, NULL, NULL, NULL, NULL), 0);   /* side, evicts x */
	cr_expect_not(cache_contains(b, "x"));
	cr_expect_eq(record_owner(&t, "x"), 0);
	cr_assert_eq(get(a, "x", &fa, NULL, NULL, NULL, NULL), 0);
	cr_expect_eq(record_owner(&t, "x"), cache_id(a));
	cr_expect_eq(secret_pool_in_use(cls), base + 4);

	cache_free(b);
	cr_expect_eq(record_owner(&t, "net"), cache_id(a), "freeing b leaves a's entries");
	cr_expect_eq(record_owner(&t, "y"), 0);
	cr_assert_eq(get(a, "net", &fa, &how, NULL, &got, NULL), 0);
	cr_expect_eq(how, CACHE_HIT);
	cr_expect(secret_equal(got, fa.value));
	secret_free(got);
	cache_free(a);
	cr_expect_eq(secret_pool_in_use(cls), base);
	netrec_table_clear(&t);
	secret_free(fa.value);
	secret_free(fb.value);
}

/* Many networks, some of them in two caches: the side table grows. */
Test(cache, side_table_grows)
{
	struct netrec_table t;
	cr_assert_eq(netrec_table_init(&t, 0), 0);
	struct fake_backend fb = { .value = random_key() };
	struct cache *a = new_shared_cache(&t, 0), *b = new_shared_cache(&t, 0);
	enum cache_result how;
	char net[32];
	atomic_store(&fake_time, 0.0);
	for (int i = 0; i < 300; i++) {
		snprintf(net, sizeof(net), "net-%d", i);
		cr_assert_eq(get(a, net, &fb, NULL, NULL, NULL, NULL), 0);
		cr_assert_eq(get(b, net, &fb, NULL, NULL, NULL, NULL), 0);
	}
	for (int i = 0; i < 300; i++) {
		snprintf(net, sizeof(net), "net-%d", i);
		cr_assert_eq(get(b, net, &fb, &how, NULL, NULL, NULL), 0);
		cr_expect_eq(how, CACHE_HIT, "%s", net);
	}
	cr_expect_eq(cache_size(b), 300);
	cr_expect_eq(atomic_load(&fb.calls), 600);
	cache_free(a);
	cache_free(b);
	netrec_table_clear(&t);
	secret_free(fb.value);
}

/* --- issue 15 round 6 (s6-diet): a value of 64 lowercase hex digits, with
 * "0x" or without, is kept as its 32 raw bytes in a 40-byte slot; every
 * copy out of the cache is the text that went in, byte for byte, and any
 * other value is kept as it is. ------------------------------------------ */

static struct secret *text_of(const char *s)
{
	struct secret *v = secret_from(s, strlen(s));
	cr_assert_not_null(v);
	return v;
}

/* How the record of network keeps its value (CACHE_PACKED_*, or 0). */
static int packed_of(struct netrec_table *t, const char *network, size_t *len)
{
	netrec_lock(t);
	struct netrec *r = netrec_find(t, network);
	cr_assert_not_null(r);
	int packed = r->cache.packed;
	*len = r->cache.len;
	netrec_unlock(t);
	return packed;
}

Test(cache, packed_values_come_out_as_they_went_in)
{
	static const struct {
		const char *value;
		int packed;
	} cases[] = {
		{ "0x00ff10a9b8c7d6e5f4031234567890abcdefabcdef0123456789fedcba987601", CACHE_PACKED_0X },
		{ "00ff10a9b8c7d6e5f4031234567890abcdefabcdef0123456789fedcba987601", CACHE_PACKED_HEX },
		{ "0xffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", CACHE_PACKED_0X },
		{ "0x0000000000000000000000000000000000000000000000000000000000000000", CACHE_PACKED_0X },
		/* not the canonical form: kept as text */
		{ "0x00FF10A9B8C7D6E5F4031234567890ABCDEFABCDEF0123456789FEDCBA987601", 0 },
		{ "0X00ff10a9b8c7d6e5f4031234567890abcdefabcdef0123456789fedcba987601", 0 },
		{ "0x00ff10a9b8c7d6e5f4031234567890abcdefabcdef0123456789fedcba98760g", 0 },
		{ "0x00ff10a9b8c7d6e5f4031234567890abcdefabcdef0123456789fedcba98760", 0 },
		{ "0x00ff10a9b8c7d6e5f4031234567890abcdefabcdef0123456789fedcba9876011", 0 },
		{ "1x00ff10a9b8c7d6e5f4031234567890abcdefabcdef0123456789fedcba987601", 0 },
		{ "00ff10a9b8c7d6e5f4031234567890abcdefabcdef0123456789fedcba98760 ", 0 },
		{ "not a key", 0 },
	};
	struct netrec_table t;
	cr_assert_eq(netrec_table_init(&t, 0), 0);
	struct cache *c = new_shared_cache(&t, 0);
	atomic_store(&fake_time, 0.0);
	int raw_class = key_class();
	size_t base = secret_pool_in_use(raw_class);
	size_t n = sizeof(cases) / sizeof(cases[0]), nsmall = 0;
	for (size_t i = 0; i < n; i++) {
		char net[16];
		snprintf(net, sizeof(net), "net-%zu", i);
		struct fake_backend fb = { .value = text_of(cases[i].value) };
		struct secret *got = NULL;
		enum cache_result how;
		cr_assert_eq(get(c, net, &fb, &how, NULL, &got, NULL), 0);
		cr_expect_eq(how, CACHE_MISS);
		cr_expect(secret_equal(got, fb.value), "%s: the fetch's copy", cases[i].value);
		secret_free(got);
		got = NULL;
		cr_assert_eq(get(c, net, &fb, &how, NULL, &got, NULL), 0);
		cr_expect_eq(how, CACHE_HIT);
		cr_expect(secret_equal(got, fb.value), "%s: a hit's copy", cases[i].value);
		cr_expect_eq(got->len, strlen(cases[i].value));
		cr_expect_eq(got->data[got->len], 0, "NUL-terminated");
		secret_free(got);
		size_t len;
		cr_expect_eq(packed_of(&t, net, &len), cases[i].packed, "%s", cases[i].value);
		cr_expect_eq(len, cases[i].packed ? 32 : strlen(cases[i].value));
		/* a packed value, or a short one kept as text, takes a 40-byte slot */
		nsmall += cases[i].packed || strlen(cases[i].value) < secret_pool_slot_size(raw_class);
		/* cache_put keeps the same form */
		cache_put(c, net, fb.value);
		cr_expect_eq(packed_of(&t, net, &len), cases[i].packed);
		cr_assert_eq(get(c, net, &fb, &how, NULL, &got, NULL), 0);
		cr_expect(secret_equal(got, fb.value), "%s: after a put", cases[i].value);
		secret_free(got);
		secret_free(fb.value);
	}
	cr_expect_eq(secret_pool_in_use(raw_class), base + nsmall, "one 40-byte slot each");
	cache_free(c);
	cr_expect_eq(secret_pool_in_use(raw_class), base);
	netrec_table_clear(&t);
}

Test(cache, packed_values_tell_a_rotation)
{
	struct netrec_table t;
	cr_assert_eq(netrec_table_init(&t, 0), 0);
	struct cache *c = new_shared_cache(&t, 0);
	atomic_store(&fake_time, 0.0);
	const char *a = "0x1111111111111111111111111111111111111111111111111111111111111111";
	const char *versions[] = {
		a,
		"0x1111111111111111111111111111111111111111111111111111111111111112", /* last digit */
		"1111111111111111111111111111111111111111111111111111111111111112",   /* no 0x */
		"0x1111111111111111111111111111111111111111111111111111111111111112", /* 0x again */
		"0x111111111111111111111111111111111111111111111111111111111111111A", /* text */
		a,
		a,
	};
	bool expect[] = { false, true, true, true, true, true, false };
	for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
		struct fake_backend fb = { .value = text_of(versions[i]) };
		bool changed = true;
		enum cache_result how;
		atomic_store(&fake_time, 2000.0 * (double)(i + 1));   /* past the TTL */
		cr_assert_eq(get(c, "net", &fb, &how, &changed, NULL, NULL), 0);
		cr_expect_eq(how, CACHE_MISS);
		cr_expect_eq(changed, expect[i], "version %zu", i);
		secret_free(fb.value);
	}
	cache_free(c);
	netrec_table_clear(&t);
}

/* Many random keys, each nibble value in each position many times: the
 * text that comes out of the cache is the text that went in. */
Test(cache, packed_random_round_trips)
{
	struct netrec_table t;
	cr_assert_eq(netrec_table_init(&t, 0), 0);
	struct cache *c = new_shared_cache(&t, 0);
	atomic_store(&fake_time, 0.0);
	for (int i = 0; i < 2000; i++) {
		struct fake_backend fb = { .value = random_key() };
		if (i % 2) {   /* with 0x as well */
			struct secret *x = secret_new(66);
			cr_assert_not_null(x);
			cr_assert_eq(secret_append(x, "0x", 2), 0);
			cr_assert_eq(secret_append(x, fb.value->data, fb.value->len), 0);
			secret_free(fb.value);
			fb.value = x;
		}
		char net[16];
		snprintf(net, sizeof(net), "r%d", i);
		struct secret *got = NULL;
		enum cache_result how;
		cr_assert_eq(get(c, net, &fb, NULL, NULL, NULL, NULL), 0);
		cr_assert_eq(get(c, net, &fb, &how, NULL, &got, NULL), 0);
		cr_assert_eq(how, CACHE_HIT);
		cr_assert(secret_equal(got, fb.value), "key %d", i);
		size_t len;
		cr_assert_eq(packed_of(&t, net, &len), i % 2 ? CACHE_PACKED_0X : CACHE_PACKED_HEX);
		secret_free(got);
		secret_free(fb.value);
	}
	cache_free(c);
	netrec_table_clear(&t);
}
