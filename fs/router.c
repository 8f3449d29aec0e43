/* router.c - network -> backend instance, first matching glob wins.
 *
 * Matching is fnmatch(3) over each instance's globs, in order.  With 8
 * instances of 100 globs that is 800 fnmatch calls, far more than a cached
 * read costs, so each answer is kept in an open-addressing table of
 * immutable entries published with compare-and-swap: a lookup is a hash,
 * an atomic load and a strcmp.  The table is bounded (ROUTE_SLOTS); once it
 * is half full new names are matched every time, still correctly.
 */
#include "router.h"
#include "config.h"
#include "hash.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define ROUTE_SLOTS 8192          /* power of two */
#define ROUTE_MAX_ENTRIES (ROUTE_SLOTS / 2)

struct route_entry {
	size_t index;
	char name[];
};

struct router {
	const struct strlist *const *globs;   /* owned array of borrowed lists */
	size_t n;
	size_t default_index;
	bool any_glob;
	atomic_size_t entries;
	struct route_entry *_Atomic slots[ROUTE_SLOTS];
};

int router_new(const struct strlist *const *globs, size_t n, size_t default_index,
               struct router **out)
{
	*out = NULL;
	struct router *r = calloc(1, sizeof(*r));
	const struct strlist **copy = calloc(n ? n : 1, sizeof(*copy));
	if (!r || !copy) {
		free(r);
		free(copy);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		copy[i] = globs[i];
		if (globs[i] && globs[i]->n)
			r->any_glob = true;
	}
	r->globs = copy;
	r->n = n;
	r->default_index = default_index;
	*out = r;
	return 0;
}

int router_from_config(const struct config *cfg, struct router **out)
{
	size_t n = 1 + cfg->keyfs.n_backends;
	const struct strlist **globs = calloc(n, sizeof(*globs));
	if (!globs)
		return -ENOMEM;
	globs[0] = NULL;
	for (size_t i = 0; i < cfg->keyfs.n_backends; i++)
		globs[i + 1] = &cfg->keyfs.backends[i].networks;
	int rc = router_new(globs, n, 0, out);
	free(globs);
	return rc;
}

void router_free(struct router *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < ROUTE_SLOTS; i++)
		free(atomic_load(&r->slots[i]));
	free((void *)r->globs);
	free(r);
}

size_t router_count(const struct router *r)
{
	return r->n;
}

static size_t route_match(const struct router *r, const char *network)
{
	for (size_t i = 0; i < r->n; i++) {
		const struct strlist *g = r->globs[i];
		for (size_t j = 0; g && j < g->n; j++)
			if (fnmatch(g->items[j], network, 0) == 0)
				return i;
	}
	return r->default_index;
}

size_t router_route(struct router *r, const char *network)
{
	if (!r->any_glob)
		return r->default_index;
	size_t mask = ROUTE_SLOTS - 1;
	size_t h = hash_string(network) & mask;
	for (size_t probe = 0; probe < ROUTE_SLOTS; probe++, h = (h + 1) & mask) {
		struct route_entry *e = atomic_load_explicit(&r->slots[h], memory_order_acquire);
		if (!e)
			break;
		if (strcmp(e->name, network) == 0)
			return e->index;
	}
	size_t index = route_match(r, network);
	if (atomic_load_explicit(&r->entries, memory_order_relaxed) >= ROUTE_MAX_ENTRIES)
		return index;
	size_t len = strlen(network);
	struct route_entry *e = malloc(sizeof(*e) + len + 1);
	if (!e)
		return index;
	e->index = index;
	memcpy(e->name, network, len + 1);
	h = hash_string(network) & mask;
	for (size_t probe = 0; probe < ROUTE_SLOTS; probe++, h = (h + 1) & mask) {
		struct route_entry *expected = NULL;
		if (atomic_compare_exchange_strong_explicit(&r->slots[h], &expected, e,
		                                            memory_order_acq_rel,
		                                            memory_order_acquire)) {
			atomic_fetch_add_explicit(&r->entries, 1, memory_order_relaxed);
			return index;
		}
		if (strcmp(expected->name, network) == 0)   /* another thread was first */
			break;
	}
	free(e);
	return index;
}

int router_union(struct router *r, const struct strlist *const *lists, struct strlist *out)
{
	for (size_t i = 0; i < r->n; i++) {
		const struct strlist *l = lists[i];
		for (size_t j = 0; l && j < l->n; j++)
			if (router_route(r, l->items[j]) == i && strlist_add(out, l->items[j]) < 0)
				return -ENOMEM;
	}
	strlist_sort_unique(out);
	return 0;
}
