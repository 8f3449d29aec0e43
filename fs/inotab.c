/* inotab.c - the inode table of named children (see inotab.h). */
#include "inotab.h"

#include <stdlib.h>
#include <string.h>
#include "hash.h"

#define BLOCK_SHIFT 8                       /* 256 entries (8 KiB) a block */
#define BLOCK (1u << BLOCK_SHIFT)
#define NONE UINT32_MAX

/* 28 bytes.  A free entry has serial 0 and nlookup = the next free one.
 * Its inode number is serial << 32 | the entry's number (ino_of). */
struct inotab_entry {
	uint32_t serial;
	uint32_t nlookup;
	uint8_t family;
	uint8_t len;                        /* > INOTAB_INLINE: name holds a char *;
	                                     * UINT8_MAX: that long or longer */
	char name[INOTAB_INLINE + 1];
};

_Static_assert(sizeof(struct inotab_entry) == 28, "an inode entry is 28 bytes");

static struct inotab_entry *entry(const struct inotab *t, uint32_t e)
{
	return &t->blocks[e >> BLOCK_SHIFT][e & (BLOCK - 1)];
}

static uint64_t ino_of(const struct inotab *t, uint32_t e)
{
	return (uint64_t)entry(t, e)->serial << 32 | e;
}

static const char *entry_name(const struct inotab_entry *r)
{
	if (r->len <= INOTAB_INLINE)
		return r->name;
	char *p;
	memcpy(&p, r->name, sizeof(p));
	return p;
}

static size_t name_home(const struct inotab *t, unsigned family, const char *name)
{
	return (hash_string(name) ^ ((size_t)family * UINT64_C(0x9E3779B97F4A7C15))) & (t->cap - 1);
}

static size_t home_of(const struct inotab *t, uint32_t e)
{
	const struct inotab_entry *r = entry(t, e);
	return name_home(t, r->family, entry_name(r));
}

static void init_serial(struct inotab *t, uint32_t serial)
{
	memset(t, 0, sizeof(*t));
	t->free_head = NONE;
	t->next_serial = serial;
}

void inotab_init(struct inotab *t)
{
	init_serial(t, 1);
}

void inotab_clear(struct inotab *t)
{
	for (uint32_t b = 0; b < t->nblocks; b++) {
		for (uint32_t i = 0; i < BLOCK; i++) {
			struct inotab_entry *r = &t->blocks[b][i];
			if (r->serial && r->len > INOTAB_INLINE)
				free((char *)entry_name(r));
		}
		free(t->blocks[b]);
	}
	free(t->blocks);
	free(t->by_name);
	init_serial(t, t->next_serial);
}

static uint32_t find_name(const struct inotab *t, unsigned family, const char *name, size_t *pos)
{
	if (!t->cap)
		return NONE;
	for (size_t p = name_home(t, family, name);; p = (p + 1) & (t->cap - 1)) {
		uint32_t e = t->by_name[p];
		if (e == NONE)
			return NONE;
		const struct inotab_entry *r = entry(t, e);
		if (r->family == family && strcmp(entry_name(r), name) == 0) {
			if (pos)
				*pos = p;
			return e;
		}
	}
}

/* The entry that ino names, if it is held under that number. */
static uint32_t find_ino(const struct inotab *t, uint64_t ino)
{
	uint32_t e = (uint32_t)ino, serial = inotab_serial(ino);
	if (!serial || e >= (uint64_t)t->nblocks << BLOCK_SHIFT || entry(t, e)->serial != serial)
		return NONE;
	return e;
}

static void index_put(struct inotab *t, uint32_t e)
{
	uint32_t *a = t->by_name;
	size_t p = home_of(t, e);
	while (a[p] != NONE)
		p = (p + 1) & (t->cap - 1);
	a[p] = e;
}

/* Linear probing's deletion: later entries of the run move back over the
 * hole when their home allows it (no tombstones). */
static void index_del(struct inotab *t, size_t i)
{
	uint32_t *a = t->by_name;
	size_t m = t->cap - 1;
	for (size_t j = (i + 1) & m; a[j] != NONE; j = (j + 1) & m) {
		size_t k = home_of(t, a[j]);
		if ((j > i && (k <= i || k > j)) || (j < i && k <= i && k > j)) {
			a[i] = a[j];
			i = j;
		}
	}
	a[i] = NONE;
}

/* Room for one more entry in the index (kept at most 3/4 full). */
static int index_reserve(struct inotab *t)
{
	if ((t->count + 1) * 4 <= t->cap * 3)
		return 0;
	size_t cap = t->cap ? t->cap * 2 : 64;
	uint32_t *bn = malloc(cap * sizeof(*bn));
	if (!bn)
		return -1;
	memset(bn, 0xff, cap * sizeof(*bn));
	free(t->by_name);
	t->by_name = bn;
	t->cap = cap;
	for (uint32_t b = 0; b < t->nblocks; b++)
		for (uint32_t i = 0; i < BLOCK; i++)
			if (t->blocks[b][i].serial)
				index_put(t, b << BLOCK_SHIFT | i);
	return 0;
}

/* A free entry's number, carving a new block when none is left. */
static uint32_t entry_alloc(struct inotab *t)
{
	if (t->free_head == NONE) {
		if (t->nblocks >= (NONE >> BLOCK_SHIFT))
			return NONE;
		if (t->nblocks == t->blocks_cap) {
			uint32_t nc = t->blocks_cap ? t->blocks_cap * 2 : 16;
			struct inotab_entry **nb = realloc(t->blocks, nc * sizeof(*nb));
			if (!nb)
				return NONE;
			t->blocks = nb;
			t->blocks_cap = nc;
		}
		struct inotab_entry *blk = calloc(BLOCK, sizeof(*blk));
		if (!blk)
			return NONE;
		uint32_t base = t->nblocks << BLOCK_SHIFT;
		t->blocks[t->nblocks++] = blk;
		for (uint32_t i = BLOCK; i-- > 0;) {
			blk[i].nlookup = t->free_head;
			t->free_head = base + i;
		}
	}
	uint32_t e = t->free_head;
	t->free_head = entry(t, e)->nlookup;
	return e;
}

static void entry_release(struct inotab *t, uint32_t e)
{
	struct inotab_entry *r = entry(t, e);
	if (r->len > INOTAB_INLINE)
		free((char *)entry_name(r));
	memset(r, 0, sizeof(*r));
	r->nlookup = t->free_head;
	t->free_head = e;
}

uint64_t inotab_ref(struct inotab *t, unsigned family, const char *name)
{
	uint32_t e = find_name(t, family, name, NULL);
	if (e == NONE) {
		size_t len = strlen(name);
		char *copy = NULL;
		if (family > UINT8_MAX || t->next_serial == 0 || index_reserve(t) < 0)
			return 0;   /* (serial 0: every number was given) */
		if (len > INOTAB_INLINE && !(copy = strdup(name)))
			return 0;
		e = entry_alloc(t);
		if (e == NONE) {
			free(copy);
			return 0;
		}
		struct inotab_entry *r = entry(t, e);
		r->serial = t->next_serial++;
		r->nlookup = 0;
		r->family = (uint8_t)family;
		r->len = (uint8_t)(len < UINT8_MAX ? len : UINT8_MAX);
		if (copy)
			memcpy(r->name, &copy, sizeof(copy));
		else
			memcpy(r->name, name, len + 1);
		index_put(t, e);
		t->count++;
	}
	struct inotab_entry *r = entry(t, e);
	if (r->nlookup < UINT32_MAX)
		r->nlookup++;
	return ino_of(t, e);
}

void inotab_unref(struct inotab *t, uint64_t ino, uint64_t n)
{
	uint32_t e = find_ino(t, ino);
	if (e == NONE)
		return;
	struct inotab_entry *r = entry(t, e);
	if (r->nlookup == UINT32_MAX)
		return;                      /* saturated: kept for the table's life */
	r->nlookup = r->nlookup > n ? (uint32_t)(r->nlookup - n) : 0;
	if (r->nlookup)
		return;
	size_t pn = 0;
	find_name(t, r->family, entry_name(r), &pn);
	index_del(t, pn);
	entry_release(t, e);
	t->count--;
}

uint64_t inotab_find(const struct inotab *t, unsigned family, const char *name)
{
	uint32_t e = find_name(t, family, name, NULL);
	return e == NONE ? 0 : ino_of(t, e);
}

bool inotab_name(const struct inotab *t, uint64_t ino, unsigned *family, char *name, size_t size)
{
	uint32_t e = find_ino(t, ino);
	if (e == NONE)
		return false;
	const struct inotab_entry *r = entry(t, e);
	*family = r->family;
	if (size) {
		size_t len = r->len < UINT8_MAX ? r->len : strlen(entry_name(r));
		if (len >= size)
			len = size - 1;
		memcpy(name, entry_name(r), len);
		name[len] = '\0';
	}
	return true;
}

uint64_t inotab_nlookup(const struct inotab *t, uint64_t ino)
{
	uint32_t e = find_ino(t, ino);
	return e == NONE ? 0 : entry(t, e)->nlookup;
}
