/* netrec.h - one record per network the mount has seen, in one table.
 *
 * What the mount keeps of each network between operations used to live in
 * three records in three chained hash tables (keyops.c's mtime record, the
 * address book's entry, the metrics freshness entry), each with its own
 * copy of the name, its own malloc header and its own bucket array that
 * doubled.  A netrec holds all three, with the name inline, in one
 * open-addressing table (issue 15, goal 3).
 *
 * Lifetime: per mount, kept until netrec_table_clear() (the records, like
 * the ones they replace, are never dropped while mounted; at most
 * NETREC_MAX).  The metrics module keeps its freshness series in a table of
 * its own until a mount lends it this one (metrics_use_networks).  The
 * first cache entry of the network (fs/cache.c) is here too, inline: a
 * cache claims it (and gives it back on eviction); a second cache holding
 * the same network keeps a side entry of its own.
 *
 * Locking: one mutex per table.  Every field of every record, and the table
 * itself, is read and written only with it held (netrec_lock), except the
 * cache entry's fields past its owner (the owning cache's lock); a record
 * pointer is valid until netrec_table_clear (a grow moves the slots, never
 * the records).
 */
#ifndef OMIKUJI_NETREC_H
#define OMIKUJI_NETREC_H

#include <nettle/hmac.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "cache.h"

#define NETREC_MAX 200000   /* bound on records; a lookup past it finds nothing new */
#define NETREC_DIGEST 16    /* bytes of a value's digest (netrec_digest) */

struct netrec {
	/* keys/<network> (keyops.c): the mtime shown, the size a read returns
	 * (0 = not known yet) and the digest of the value as read
	 * (netrec_digest), to tell a rotation. */
	double mtime;                 /* wall seconds */
	uint32_t size;
	bool has_mac;
	/* addresses/<network> (address.c): in_book = the book has an entry
	 * (an address, or a tombstone when !has_address); the address as its
	 * 20 raw bytes (the EIP-55 text is made when it is read), when it last
	 * changed (wall), the newest note applied (monotonic), the instance the
	 * key came from (backend: its number in the table, netrec_backend_id;
	 * the name is borrowed, see address_book_note); address_of_mac: the
	 * address was derived from the value whose digest is mac (set when
	 * derived from a value of that digest, cleared whenever mac changes or
	 * goes), so the book tells a known version with the one digest that
	 * keys/ keeps rather than a second one of its own (issue 15, goal 3). */
	bool in_book;
	bool has_address;
	/* metrics (metrics.c), when this table holds the process's freshness
	 * series: fresh = the network has one; last_refresh = the wall time of
	 * the last fetch, updated = the backend's own time of the value, each
	 * NAN when unknown. */
	bool fresh;
	bool address_of_mac;
	unsigned char mac[NETREC_DIGEST];
	uint8_t address[20];
	uint16_t backend;             /* 2 bytes where a pointer took 8 */
	double address_mtime;
	double address_seen;
	double last_refresh;
	double updated;
	/* The cache entry of the first cache holding this network (cache.h). */
	struct cache_entry cache;
	char network[];               /* NUL-terminated */
};
#if UINTPTR_MAX == UINT64_MAX
_Static_assert(offsetof(struct netrec, network) == 128,
               "a record is 128 bytes and its name (issue 15, goal 3)");
#endif

struct netrec_block;

/* A record's number in its table: its block and its offset there in
 * 8-byte units (NETREC_OFF_BITS bits), so a slot of the table is 4 bytes
 * rather than an 8-byte pointer (issue 15, goal 3). */
typedef uint32_t netrec_no;
#define NETREC_NONE UINT32_MAX        /* an empty slot */
#define NETREC_OFF_BITS 13            /* a block is under 64 KiB */

struct netrec_table {
	pthread_mutex_t lock;
	netrec_no *slots;             /* open addressing, linear probing */
	size_t capacity;              /* 0 or a power of two */
	size_t count;
	double initial_mtime;         /* mtime of a new record (the mount's start) */
	uint16_t cache_ids;           /* ids given to the caches sharing the table (cache.c) */
	uint32_t nblocks, blocks_cap;
	struct netrec_block **blocks; /* where the records are carved from, in order */
	const char **backends;        /* netrec_backend_id's names (borrowed) */
	struct hmac_sha256_ctx digest_key;   /* keyed once at init (netrec_digest) */
	uint16_t nbackends, backends_cap;
};

/* 0, -ENOMEM or -EIO (no random bytes for the digest key).  The table
 * starts empty; slots are allocated on the first insert. */
int netrec_table_init(struct netrec_table *t, double initial_mtime);

/* The digest of a key version, as the records keep it: the first
 * NETREC_DIGEST bytes of HMAC-SHA256, keyed with random bytes per table
 * (a digest means nothing outside it), over the key and a newline (the
 * key file's content).  No lock needed; out is wiped by the caller when
 * done. */
void netrec_digest(const struct netrec_table *t, const struct secret *key,
                   unsigned char out[NETREC_DIGEST]);
/* Wipes and frees every record and the table (no other call may race). */
void netrec_table_clear(struct netrec_table *t);

void netrec_lock(struct netrec_table *t);
void netrec_unlock(struct netrec_table *t);

/* With the lock held.  The record of network, or NULL. */
struct netrec *netrec_find(struct netrec_table *t, const char *network);
/* With the lock held.  The record of network, added (zeroed, mtime =
 * initial_mtime) when missing; NULL when out of memory or at NETREC_MAX. */
struct netrec *netrec_get(struct netrec_table *t, const char *network);

/* With the lock held.  The number (1 or more) that a record keeps for the
 * instance name backend (compared as a pointer: the name must outlive the
 * table, as the instances' names do); 0 when out of memory or past
 * UINT16_MAX names. */
uint16_t netrec_backend_id(struct netrec_table *t, const char *backend);
/* With the lock held.  The name of id (from netrec_backend_id), or "". */
const char *netrec_backend_name(const struct netrec_table *t, uint16_t id);

/* The record numbered no (not NETREC_NONE) in t. */
struct netrec *netrec_at(const struct netrec_table *t, netrec_no no);

/* With the lock held: slot i (i < t->capacity) or NULL; for walking every
 * record (rendering). */
static inline struct netrec *netrec_slot(const struct netrec_table *t, size_t i)
{
	return t->slots[i] == NETREC_NONE ? NULL : netrec_at(t, t->slots[i]);
}

#endif
