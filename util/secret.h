/* secret.h - buffers for key material.
 *
 * Every byte of a private key that this program holds lives in a struct
 * secret: the pages are mlock()ed (best effort: a failed mlock is not an
 * error, RLIMIT_MEMLOCK may be small) and the bytes are wiped with
 * OPENSSL_cleanse() before the memory is released.  data[len] is always 0,
 * so a secret can be handed to APIs that want a C string.
 *
 * Small secrets (a key, a key file's content) come from a pool of slots in
 * pages locked once and excluded from core dumps (MADV_DONTDUMP), so the
 * key-read path makes no mlock/munlock system calls; larger ones are
 * locked one by one.
 */
#ifndef OMIKUJI_SECRET_H
#define OMIKUJI_SECRET_H

#include <stddef.h>

struct secret {
	size_t len;           /* bytes of key material in data */
	size_t cap;           /* usable bytes in data (excluding the final NUL) */
	unsigned char *data;  /* locked, zero-filled beyond len */
	int pooled;           /* internal: 0 = malloc'ed, -1 unlocked, else 1 + the pool class */
};

/* A zero-filled secret with room for cap bytes.  NULL on ENOMEM.
 * Caller frees with secret_free(). */
struct secret *secret_new(size_t cap);

/* A buffer with a secret's wiping (when freed, and when secret_append
 * grows it) but in ordinary memory, never locked, for bytes that by the
 * caller's knowledge hold no key: a backend's listing answer (1 MiB for
 * 100 000 names) would otherwise take an eighth of the default
 * RLIMIT_MEMLOCK while it is read.  Freed with secret_free().  NULL on
 * ENOMEM. */
struct secret *secret_new_unlocked(size_t cap);

/* A secret holding a copy of len bytes at p.  NULL on ENOMEM. */
struct secret *secret_from(const void *p, size_t len);

/* A copy of s (NULL in, NULL out). */
struct secret *secret_dup(const struct secret *s);

/* Append len bytes; grows the buffer (the old one is wiped).  0 or -ENOMEM. */
int secret_append(struct secret *s, const void *p, size_t len);

/* 1 when a and b hold the same bytes (constant time in the shorter length). */
int secret_equal(const struct secret *a, const struct secret *b);

/* Wipe, unlock and free.  NULL is allowed. */
void secret_free(struct secret *s);

/* A struct secret embedded in a larger record (no allocation of its own):
 * secret_move gives dst the bytes of src (dst must be empty or released)
 * and frees src's shell; secret_release wipes and frees dst's bytes and
 * leaves it empty (data NULL, len 0). */
void secret_move(struct secret *dst, struct secret *src);
void secret_release(struct secret *s);

/* Make jansson wipe every block it frees (its parse buffers and strings may
 * hold key bytes from backend responses).  Call once at start-up, before
 * threads. */
void secret_json_allocator_install(void);

/* Wipe every string value of a parsed jansson tree (bodies of backend
 * answers hold keys and tokens), then drop the reference.  NULL is allowed. */
struct json_t;
void secret_json_free(struct json_t *j);

/* Lock the pool's pages in this process (mapping the first chunk if there
 * is none yet).  Locks are not inherited across fork(): the serving process
 * calls this after daemonizing, so the pages that hold keys (including the
 * ones its parent mapped) are locked where the keys live.  0 or -errno
 * (RLIMIT_MEMLOCK); the pages stay usable either way. */
int secret_relock(void);

/* The locked pool, for tests and benchmarks: SECRET_POOL_CLASSES size
 * classes; the slot size of class i and how many of its slots hold a
 * secret now. */
#define SECRET_POOL_CLASSES 5
size_t secret_pool_slot_size(int cls);
size_t secret_pool_in_use(int cls);

/* Wipe len bytes at p (for stack buffers and library-owned copies). */
void secret_wipe(void *p, size_t len);

#endif
