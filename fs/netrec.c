/* netrec.c - the per-network record table (see netrec.h).
 *
 * Open addressing with linear probing over an array of record pointers,
 * kept at most 3/4 full and doubled past that: one pointer per slot, no
 * chain pointer in the record.  Records are never removed while the table
 * lives, so probing needs no tombstones.
 */
#include "netrec.h"
#include "hash.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int netrec_table_init(struct netrec_table *t, double initial_mtime)
{
	memset(t, 0, sizeof(*t));
	t->initial_mtime = initial_mtime;
	return pthread_mutex_init(&t->lock, NULL) == 0 ? 0 : -ENOMEM;
}

void netrec_table_clear(struct netrec_table *t)
{
	for (size_t i = 0; i < t->capacity; i++) {
		struct netrec *r = t->slots[i];
		if (r) {
			/* fingerprints and MACs of keys: wiped with the record */
			explicit_bzero(r, sizeof(*r));
			free(r);
		}
	}
	free(t->slots);
	t->slots = NULL;
	t->capacity = t->count = 0;
	pthread_mutex_destroy(&t->lock);
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
	while (t->slots[i] && strcmp(t->slots[i]->network, network) != 0)
		i = (i + 1) & mask;
	return i;
}

struct netrec *netrec_find(struct netrec_table *t, const char *network)
{
	if (!t->capacity)
		return NULL;
	return t->slots[probe(t, network)];
}

static int grow(struct netrec_table *t)
{
	size_t n = t->capacity ? t->capacity * 2 : 64;
	struct netrec **old = t->slots;
	size_t old_capacity = t->capacity;
	struct netrec **slots = calloc(n, sizeof(*slots));
	if (!slots)
		return -ENOMEM;
	t->slots = slots;
	t->capacity = n;
	for (size_t i = 0; i < old_capacity; i++)
		if (old[i])
			t->slots[probe(t, old[i]->network)] = old[i];
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
	if (!(r = calloc(1, sizeof(*r) + len)))
		return NULL;
	memcpy(r->network, network, len);
	r->mtime = t->initial_mtime;
	t->slots[probe(t, network)] = r;
	t->count++;
	return r;
}
