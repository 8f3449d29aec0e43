/* test_netrec.c - the per-network record table (fs/netrec.c): insert,
 * find, grow past many doublings with records that do not move, the
 * bound, and many threads inserting and updating under the table's lock
 * (the counts and fields are checked here; criterion cannot start under
 * TSan, so the races are the TSan build's daemon suites' to find: every
 * key read takes this table's lock from a FUSE worker).  Also that the address book,
 * the mtime side and the metrics freshness series share one record per
 * network. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "address.h"
#include "metrics.h"
#include "strbuf.h"
#include "netrec.h"

static void name_of(char *buf, size_t size, unsigned i)
{
	snprintf(buf, size, "net-%06u", i);
}

Test(netrec, insert_find_grow)
{
	struct netrec_table t;
	cr_assert_eq(netrec_table_init(&t, 42.5), 0);
	netrec_lock(&t);
	cr_expect_null(netrec_find(&t, "eth"), "an empty table finds nothing");

	enum { N = 20000 };
	static struct netrec *first[N];
	char name[32];
	for (unsigned i = 0; i < N; i++) {
		name_of(name, sizeof(name), i);
		first[i] = netrec_get(&t, name);
		cr_assert_not_null(first[i]);
		cr_assert_str_eq(first[i]->network, name);
		cr_assert_eq((uintptr_t)first[i] % 8, 0, "records are carved 8-byte aligned");
		cr_assert_eq(first[i]->mtime, 42.5, "a new record starts at the mount's start");
		cr_assert(!first[i]->in_book && !first[i]->has_mac && first[i]->size == 0);
		first[i]->size = i + 1;
	}
	cr_expect_eq(t.count, N);
	/* a power of two, at most 3/4 full */
	cr_expect_eq(t.capacity & (t.capacity - 1), 0);
	cr_expect_leq(t.count * 4, t.capacity * 3);
	cr_expect_geq(t.capacity, 32768, "grew past many doublings");
	/* after every grow, the same records (pointers stable) with their fields */
	for (unsigned i = 0; i < N; i++) {
		name_of(name, sizeof(name), i);
		cr_assert_eq(netrec_find(&t, name), first[i]);
		cr_assert_eq(netrec_get(&t, name), first[i], "get of a known name adds nothing");
		cr_assert_eq(first[i]->size, i + 1);
	}
	cr_expect_eq(t.count, N);
	cr_expect_null(netrec_find(&t, "net-999999"));
	cr_expect_null(netrec_find(&t, "net-00000"), "a prefix is not a match");

	/* a walk over the slots sees every record once */
	size_t seen = 0;
	for (size_t i = 0; i < t.capacity; i++)
		if (netrec_slot(&t, i))
			seen++;
	cr_expect_eq(seen, N);

	/* the longest network name */
	char longest[65];
	memset(longest, 'x', 64);
	longest[64] = 0;
	struct netrec *r = netrec_get(&t, longest);
	cr_assert_not_null(r);
	cr_expect_str_eq(r->network, longest);
	netrec_unlock(&t);
	netrec_table_clear(&t);
	cr_expect_eq(t.count, 0);
	cr_expect_null(t.slots);
}

Test(netrec, bounded)
{
	struct netrec_table t;
	netrec_table_init(&t, 0);
	netrec_lock(&t);
	char name[32];
	for (unsigned i = 0; i < NETREC_MAX; i++) {
		name_of(name, sizeof(name), i);
		cr_assert_not_null(netrec_get(&t, name));
	}
	cr_expect_null(netrec_get(&t, "one-more"), "past the bound nothing new is added");
	cr_expect_null(netrec_find(&t, "one-more"));
	name_of(name, sizeof(name), 7);
	cr_expect_not_null(netrec_get(&t, name), "known names are still found at the bound");
	cr_expect_eq(t.count, NETREC_MAX);
	netrec_unlock(&t);
	netrec_table_clear(&t);
}

/* Threads insert overlapping ranges of names and update them, each under
 * the lock, as keyops.c and address.c do from FUSE workers. */
enum { THREADS = 8, STRIDE = 2000, PER_THREAD = 2 * STRIDE };

struct worker {
	struct netrec_table *t;
	unsigned id;
};

static void *work(void *arg)
{
	struct worker *w = arg;
	char name[32];
	for (unsigned i = 0; i < PER_THREAD; i++) {
		name_of(name, sizeof(name), w->id * STRIDE + i);
		netrec_lock(w->t);
		struct netrec *r = netrec_get(w->t, name);
		if (r)
			r->size++;
		netrec_unlock(w->t);
		/* a reader's find between writers */
		name_of(name, sizeof(name), (w->id * STRIDE + i * 7) % (THREADS * STRIDE));
		netrec_lock(w->t);
		(void)netrec_find(w->t, name);
		netrec_unlock(w->t);
	}
	return NULL;
}

Test(netrec, concurrent_insert_and_update)
{
	struct netrec_table t;
	netrec_table_init(&t, 0);
	pthread_t th[THREADS];
	struct worker w[THREADS];
	for (unsigned i = 0; i < THREADS; i++) {
		w[i] = (struct worker){ &t, i };
		cr_assert_eq(pthread_create(&th[i], NULL, work, &w[i]), 0);
	}
	for (unsigned i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	/* names 0 .. (THREADS-1)*STRIDE + PER_THREAD - 1, each once */
	size_t expect = (THREADS - 1) * STRIDE + PER_THREAD;
	cr_expect_eq(t.count, expect);
	char name[32];
	for (unsigned i = 0; i < expect; i++) {
		name_of(name, sizeof(name), i);
		struct netrec *r = netrec_find(&t, name);
		cr_assert_not_null(r, "%s lost", name);
		/* thread n covers [n * STRIDE, n * STRIDE + 2 * STRIDE) */
		unsigned touched = i < STRIDE || i >= THREADS * STRIDE ? 1 : 2;
		cr_assert_eq(r->size, touched, "%s updated %u times, not %u", name, r->size, touched);
	}
	netrec_table_clear(&t);
}

/* The address book keeps its entries in the mount's records: one record
 * per network for both keys/ and addresses/. */
Test(netrec, address_book_shares_the_record)
{
	struct netrec_table t;
	netrec_table_init(&t, 0);
	struct address_book *b = NULL;
	cr_assert_eq(address_book_new(&t, &b), 0);
	const char *k = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
	struct secret *key = secret_from(k, strlen(k));
	cr_assert_not_null(key);

	netrec_lock(&t);
	struct netrec *r = netrec_get(&t, "eth");   /* as keyops' seen_note makes it */
	r->size = 67;
	netrec_unlock(&t);
	cr_assert_eq(address_book_note(b, "eth", "file", key, 100.0, 1.0), 0);
	cr_expect_eq(t.count, 1, "the book's entry is the same record");
	netrec_lock(&t);
	cr_expect(r->in_book && r->has_address);
	cr_expect_eq(r->size, 67, "the keys/ side of the record is untouched");
	/* the address is kept as its 20 raw bytes */
	static const uint8_t raw[20] = { 0x2c, 0x75, 0x36, 0xe3, 0x60, 0x5d, 0x9c, 0x16, 0xa7, 0xa3,
	                                 0xd7, 0xb1, 0x89, 0x8e, 0x52, 0x93, 0x96, 0xa6, 0x5c, 0x23 };
	cr_expect_eq(memcmp(r->address, raw, sizeof(raw)), 0);
	netrec_unlock(&t);
	char out[EVM_ADDRESS_TEXT + 1];
	double mtime = 0;
	cr_assert_eq(address_book_lookup(b, "eth", out, &mtime), 0);
	cr_expect_str_eq(out, "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23");
	cr_expect_eq(mtime, 100.0);

	/* forgetting a network the mount never saw makes one record (a tombstone) */
	address_book_forget(b, "gone", 5.0);
	cr_expect_eq(t.count, 2);
	cr_expect_eq(address_book_lookup(b, "gone", out, NULL), -ENOENT);

	secret_free(key);
	address_book_free(b);
	netrec_table_clear(&t);
}

/* A mount lends its table to the metrics module: a network's freshness
 * series live in the record that holds its mtime and address; released,
 * the module's own (empty) table is used again. */
static bool rendered(const char *needle)
{
	struct strbuf b = STRBUF_INIT;
	cr_assert_eq(metrics_render(&b), 0);
	bool found = b.buf && strstr(b.buf, needle) != NULL;
	strbuf_reset(&b);
	return found;
}

Test(netrec, freshness_series_share_the_record)
{
	struct netrec_table t;
	netrec_table_init(&t, 0);
	metrics_init();
	metrics_last_refresh("before", 3.0);   /* in the module's own table */
	metrics_use_networks(&t);
	cr_expect(!rendered("network=\"before\""), "a lent table starts empty");

	netrec_lock(&t);
	struct netrec *r = netrec_get(&t, "eth");   /* as keyops' seen_note makes it */
	netrec_unlock(&t);
	metrics_last_refresh("eth", 1700000000.5);
	metrics_key_updated("eth", 1600000000.0);
	cr_expect_eq(t.count, 1, "the series is in the network's record");
	netrec_lock(&t);
	cr_expect(r->fresh);
	cr_expect_eq(r->last_refresh, 1700000000.5);
	cr_expect_eq(r->updated, 1600000000.0);
	netrec_unlock(&t);
	cr_expect(rendered("omikuji_key_last_refresh_timestamp_seconds{network=\"eth\"} 1700000000.500000\n"));
	cr_expect(rendered("omikuji_key_updated_timestamp_seconds{network=\"eth\"} 1600000000.000000\n"));

	/* a second table is not taken while one is lent */
	struct netrec_table other;
	netrec_table_init(&other, 0);
	metrics_use_networks(&other);
	metrics_last_refresh("polygon", 1.0);
	cr_expect_eq(other.count, 0);
	cr_expect_eq(t.count, 2);
	metrics_release_networks(&other);   /* not lent: no effect */
	cr_expect(rendered("network=\"eth\""));

	/* metrics_init drops the series, not the records */
	metrics_init();
	cr_expect(!rendered("network=\"eth\""));
	cr_expect_eq(t.count, 2);
	metrics_last_refresh("eth", 5.0);
	cr_expect(rendered("omikuji_key_last_refresh_timestamp_seconds{network=\"eth\"} 5.000000\n"));

	metrics_release_networks(&t);
	cr_expect(!rendered("network=\"eth\""), "released: the module's own table, emptied");
	metrics_last_refresh("eth", 6.0);
	cr_expect_eq(t.count, 2, "no longer written after release");
	cr_expect(rendered("network=\"eth\"} 6.000000\n"));
	metrics_init();
	netrec_table_clear(&other);
	netrec_table_clear(&t);
}

/* Issue 15 round 6 (s6-diet): a slot is a 4-byte record number (block and
 * offset), not a pointer; numbers name the same records after every grow,
 * across many blocks. */
Test(netrec, slots_are_record_numbers)
{
	_Static_assert(sizeof(netrec_no) == 4, "a slot is 4 bytes");
	struct netrec_table t;
	cr_assert_eq(netrec_table_init(&t, 0), 0);
	netrec_lock(&t);
	enum { N = 30000 };
	static struct netrec *rec[N];
	char name[80];
	for (unsigned i = 0; i < N; i++) {
		/* names of many lengths, so records straddle no block */
		snprintf(name, sizeof(name), "n%u-%.*s", i, (int)(i % 60), "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
		cr_assert_not_null(rec[i] = netrec_get(&t, name));
		rec[i]->size = i;
	}
	cr_expect_gt(t.nblocks, 10, "records in many blocks");
	size_t seen = 0;
	for (size_t i = 0; i < t.capacity; i++) {
		if (t.slots[i] == NETREC_NONE) {
			cr_expect_null(netrec_slot(&t, i));
			continue;
		}
		struct netrec *r = netrec_at(&t, t.slots[i]);
		cr_assert_eq(netrec_slot(&t, i), r);
		cr_assert_lt(r->size, N);
		cr_assert_eq(rec[r->size], r, "slot %zu names record %u", i, r->size);
		cr_assert_eq(netrec_find(&t, r->network), r);
		seen++;
	}
	cr_expect_eq(seen, N);
	netrec_unlock(&t);
	netrec_table_clear(&t);
	cr_expect_eq(t.nblocks, 0);
	cr_expect_null(t.blocks);
}

/* A record keeps the instance a key came from as a 2-byte number: one per
 * name pointer, the same pointer back, "" for no number. */
Test(netrec, backend_ids)
{
	struct netrec_table t;
	cr_assert_eq(netrec_table_init(&t, 0), 0);
	static const char vault[] = "vault", file[] = "file";
	char names[40][8];
	netrec_lock(&t);
	cr_expect_str_eq(netrec_backend_name(&t, 0), "");
	uint16_t v = netrec_backend_id(&t, vault), f = netrec_backend_id(&t, file);
	cr_expect_geq(v, 1);
	cr_expect_neq(v, f);
	cr_expect_eq(netrec_backend_id(&t, vault), v, "the same name, the same number");
	cr_expect_eq(netrec_backend_name(&t, v), vault, "the name itself, borrowed");
	cr_expect_eq(netrec_backend_name(&t, f), file);
	for (int i = 0; i < 40; i++) {   /* past a few grows of the name array */
		snprintf(names[i], sizeof(names[i]), "b%d", i);
		uint16_t id = netrec_backend_id(&t, names[i]);
		cr_assert_eq(netrec_backend_name(&t, id), names[i]);
	}
	cr_expect_eq(netrec_backend_name(&t, v), vault);
	cr_expect_str_eq(netrec_backend_name(&t, (uint16_t)(t.nbackends + 1)), "");
	netrec_unlock(&t);
	netrec_table_clear(&t);
	cr_expect_eq(t.nbackends, 0);
}
