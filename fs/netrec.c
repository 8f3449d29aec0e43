/* netrec.c - the per-network record table (see netrec.h).
 *
 * Open addressing with linear probing over an array of record numbers,
 * kept at most 3/4 full and doubled past that: 4 bytes per slot, no chain
 * pointer in the record.  Records are never removed while the table
 * lives, so probing needs no tombstones, and they are carved from blocks of
 * ~64 KiB, 8-byte aligned, rather than malloc()ed one by one: no malloc
 * header or 16-byte rounding per network, and the records of a mount sit
 * together instead of between the transient allocations of the reads that
 * made them.
 */
#include "netrec.h"
#include "hash.h"

#include <errno.h>
#include <openssl/rand.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK_BYTES (64 * 1024 - 64)   /* under malloc's mmap threshold */

struct netrec_block {
	size_t used;                       /* bytes of data handed out */
	alignas(8) unsigned char data[];
};
#define BLOCK_DATA (BLOCK_BYTES - offsetof(struct netrec_block, data))
#define OFF_MASK ((1u << NETREC_OFF_BITS) - 1)
#define MAX_BLOCKS (NETREC_NONE >> NETREC_OFF_BITS)
_Static_assert(BLOCK_DATA / 8 < OFF_MASK, "a record's offset fits its number, never NETREC_NONE's");
_Static_assert((uint64_t)MAX_BLOCKS * BLOCK_DATA / 64 >= NETREC_MAX,
               "the numbers reach NETREC_MAX records");

int netrec_table_init(struct netrec_table *t, double initial_mtime)
{
	unsigned char key[32];
	memset(t, 0, sizeof(*t));
	t->initial_mtime = initial_mtime;
	int rc = RAND_bytes(key, sizeof(key)) == 1 ? 0 : -EIO;
	hmac_sha256_set_key(&t->digest_key, sizeof(key), key);
	explicit_bzero(key, sizeof(key));
	if (pthread_mutex_init(&t->lock, NULL) != 0)
		rc = -ENOMEM;
	return rc;
}

void netrec_digest(const struct netrec_table *t, const struct secret *key,
                   unsigned char out[NETREC_DIGEST])
{
	/* HMAC-SHA256 from the keyed state made once per table: a one-shot
	 * HMAC() fetched the digest and set the key on every call (22 800
	 * instructions per cold read under callgrind, BENCHMARKS.md).  Over
	 * the key and then the newline, the same MAC as over the file's
	 * content, without building that content in a locked buffer first. */
	struct hmac_sha256_ctx c = t->digest_key;
	hmac_sha256_update(&c, key->len, (const uint8_t *)key->data);
	hmac_sha256_update(&c, 1, (const uint8_t *)"\n");
	hmac_sha256_digest(&c, NETREC_DIGEST, out);
	explicit_bzero(&c, sizeof(c));
}

void netrec_table_clear(struct netrec_table *t)
{
	for (uint32_t i = 0; i < t->nblocks; i++) {
		/* fingerprints and MACs of keys: wiped with the records */
		explicit_bzero(t->blocks[i]->data, t->blocks[i]->used);
		free(t->blocks[i]);
	}
	free(t->blocks);
	t->blocks = NULL;
	free(t->backends);
	t->backends = NULL;
	t->nbackends = t->backends_cap = 0;
	t->nblocks = t->blocks_cap = 0;
	free(t->slots);
	t->slots = NULL;
	t->capacity = t->count = 0;
	explicit_bzero(&t->digest_key, sizeof(t->digest_key));
	pthread_mutex_destroy(&t->lock);
}

struct netrec *netrec_at(const struct netrec_table *t, netrec_no no)
{
	return (struct netrec *)(t->blocks[no >> NETREC_OFF_BITS]->data +
	                         ((size_t)(no & OFF_MASK) << 3));
}

/* size zeroed bytes, 8-byte aligned, from the last block or a new one;
 * *no their number.  NULL when out of memory. */
static void *carve(struct netrec_table *t, size_t size, netrec_no *no)
{
	size = (size + 7) & ~(size_t)7;
	if (size > BLOCK_DATA)
		return NULL;
	struct netrec_block *b = t->nblocks ? t->blocks[t->nblocks - 1] : NULL;
	if (!b || BLOCK_DATA - b->used < size) {
		if (t->nblocks >= MAX_BLOCKS)
			return NULL;
		if (t->nblocks == t->blocks_cap) {
			uint32_t cap = t->blocks_cap ? t->blocks_cap * 2 : 16;
			struct netrec_block **nb = realloc(t->blocks, cap * sizeof(*nb));
			if (!nb)
				return NULL;
			t->blocks = nb;
			t->blocks_cap = cap;
		}
		if (!(b = calloc(1, BLOCK_BYTES)))
			return NULL;
		t->blocks[t->nblocks++] = b;
	}
	*no = (t->nblocks - 1) << NETREC_OFF_BITS | (netrec_no)(b->used >> 3);
	void *p = b->data + b->used;
	b->used += size;
	return p;
}

void netrec_lock(struct netrec_table *t)
{
	pthread_mutex_lock(&t->lock);
}

void netrec_unlock(struct netrec_table *t)
{
	pthread_mutex_unlock(&t->lock);
}

/* The slot holding network, or the empty slot where it would go. */
static size_t probe(const struct netrec_table *t, const char *network)
{
	size_t mask = t->capacity - 1;
	size_t i = hash_string(network) & mask;
	while (t->slots[i] != NETREC_NONE && strcmp(netrec_at(t, t->slots[i])->network, network) != 0)
		i = (i + 1) & mask;
	return i;
}

struct netrec *netrec_find(struct netrec_table *t, const char *network)
{
	if (!t->capacity)
		return NULL;
	return netrec_slot(t, probe(t, network));
}

static int grow(struct netrec_table *t)
{
	size_t n = t->capacity ? t->capacity * 2 : 64;
	netrec_no *old = t->slots;
	size_t old_capacity = t->capacity;
	netrec_no *slots = malloc(n * sizeof(*slots));
	if (!slots)
		return -ENOMEM;
	memset(slots, 0xff, n * sizeof(*slots));   /* NETREC_NONE */
	t->slots = slots;
	t->capacity = n;
	for (size_t i = 0; i < old_capacity; i++)
		if (old[i] != NETREC_NONE)
			t->slots[probe(t, netrec_at(t, old[i])->network)] = old[i];
	free(old);
	return 0;
}

struct netrec *netrec_get(struct netrec_table *t, const char *network)
{
	struct netrec *r = netrec_find(t, network);
	if (r)
		return r;
	if (t->count >= NETREC_MAX)
		return NULL;
	/* at most 3/4 full, so a probe always ends on an empty slot */
	if ((t->count + 1) * 4 > t->capacity * 3 && grow(t) < 0)
		return NULL;
	size_t len = strlen(network) + 1;
	netrec_no no;
	if (!(r = carve(t, sizeof(*r) + len, &no)))
		return NULL;
	memcpy(r->network, network, len);
	r->mtime = t->initial_mtime;
	t->slots[probe(t, network)] = no;
	t->count++;
	return r;
}

uint16_t netrec_backend_id(struct netrec_table *t, const char *backend)
{
	for (uint16_t i = 0; i < t->nbackends; i++)
		if (t->backends[i] == backend)
			return (uint16_t)(i + 1);
	if (t->nbackends == UINT16_MAX)
		return 0;
	if (t->nbackends == t->backends_cap) {
		size_t cap = t->backends_cap ? (size_t)t->backends_cap * 2 : 4;
		if (cap > UINT16_MAX)
			cap = UINT16_MAX;
		const char **nb = realloc(t->backends, cap * sizeof(*nb));
		if (!nb)
			return 0;
		t->backends = nb;
		t->backends_cap = (uint16_t)cap;
	}
	t->backends[t->nbackends++] = backend;
	return t->nbackends;
}

const char *netrec_backend_name(const struct netrec_table *t, uint16_t id)
{
	return id && id <= t->nbackends ? t->backends[id - 1] : "";
}
