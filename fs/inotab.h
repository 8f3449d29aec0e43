/* inotab.h - the inode numbers the kernel holds for named children
 * (keys/<network>, addresses/<network>, health/<instance>): issue 15, goal 3.
 *
 * Each name the kernel looked up has one 28-byte entry carved from blocks
 * (its number's serial, the kernel's lookup count, its family and the name inline
 * up to INOTAB_INLINE characters; a longer name in a malloc'ed copy), and
 * an open-addressing index of 4-byte entry numbers by (family, name).  An
 * inode number names its entry itself (its low 32 bits are the entry's
 * number, the high ones a serial that only grows), so no index by number
 * is kept (issue 15, goal 3).  No malloc per name, no chain pointers.
 *
 * Rules (fs/fuse_ops.c relies on them):
 * - an inode number is never given out twice in a table's life: a name
 *   forgotten (its count back to 0) and looked up again gets a new one;
 *   the entry's slot is reused, its number never; each number is larger
 *   than every one given before it, and above UINT32_MAX;
 * - the lookup count is the kernel's: inotab_ref adds 1, inotab_unref
 *   subtracts what FORGET says; the entry goes at 0.  A count that would
 *   pass UINT32_MAX sticks there and the entry is kept for the table's life
 *   (never wrong, only never freed).
 *
 * Not locked: the caller serialises every call (fuse_ops.c's table lock).
 * Memory: blocks and indexes are kept (reused) until inotab_clear.
 */
#ifndef OMIKUJI_INOTAB_H
#define OMIKUJI_INOTAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define INOTAB_INLINE 17   /* longest name kept inside the entry */

struct inotab_entry;

struct inotab {
	struct inotab_entry **blocks;  /* INOTAB_BLOCK entries each */
	uint32_t nblocks, blocks_cap;
	uint32_t free_head;            /* free entry chain (UINT32_MAX = none) */
	uint32_t *by_name;             /* entry numbers; UINT32_MAX = empty */
	size_t cap;                    /* index size: 0 or a power of two */
	size_t count;                  /* entries in use */
	uint32_t next_serial;          /* the high half of the next number */
};

/* The numbers given are above UINT32_MAX (so above any fixed inode). */
void inotab_init(struct inotab *t);
/* Frees everything (the external name copies too). */
void inotab_clear(struct inotab *t);

/* A number's serial: unique to it in the table's life, from 1, growing
 * (the number itself is above 2^32; the serial fits a 32-bit st_ino). */
static inline uint32_t inotab_serial(uint64_t ino)
{
	return (uint32_t)(ino >> 32);
}

/* The kernel is told about (family, name): its number, lookup count + 1;
 * 0 when out of memory (nothing changed). */
uint64_t inotab_ref(struct inotab *t, unsigned family, const char *name);
/* FORGET: n lookups of ino dropped (an unknown ino is ignored). */
void inotab_unref(struct inotab *t, uint64_t ino, uint64_t n);
/* The number of (family, name) if held, else 0. */
uint64_t inotab_find(const struct inotab *t, unsigned family, const char *name);
/* The family and name of ino (copied into name, size bytes; truncated if
 * too small); false when not held. */
bool inotab_name(const struct inotab *t, uint64_t ino, unsigned *family, char *name, size_t size);
/* The lookup count of ino (0 when not held): for tests. */
uint64_t inotab_nlookup(const struct inotab *t, uint64_t ino);

#endif
