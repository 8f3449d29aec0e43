/* secret.c - locked, wiped buffers for key material. */
#include "secret.h"
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <malloc.h>
#include <jansson.h>
#include <openssl/crypto.h>

void secret_wipe(void *p, size_t len)
{
	if (p && len)
		OPENSSL_cleanse(p, len);
}

/* The pool: slots in size classes carved from CHUNK_SIZE chunks that are
 * mmap()ed, mlock()ed and marked MADV_DONTDUMP once.  Each class has its
 * own chunks and free list (the link lives in the wiped slot).  The classes
 * fit what the mount holds most of (issue 15): a raw 32-byte key (how the
 * cache keeps an evm key, fs/cache.c) in 40, up to 47 bytes in 48, an evm
 * key in canonical form ("0x" + 64 hex, 66 bytes + NUL) or as a file's
 * content (67 with the newline) in 72, anything up to 159 bytes in 96 or
 * 160.  One 160-byte slot per cached key made the locked memory of 100 000
 * keys twice the default RLIMIT_MEMLOCK (8 MiB); 72 bytes kept it under,
 * 40 keep it at about half. */
#define CHUNK_SIZE (64 * 1024)
#define POOL_CLASSES SECRET_POOL_CLASSES
static const size_t slot_sizes[POOL_CLASSES] = { 40, 48, 72, 96, 160 };
#define FIRST_CLASS 2   /* secret_relock's first chunk: the keys' text */
static size_t pool_in_use[POOL_CLASSES];   /* under pool_lock */

struct free_slot {
	struct free_slot *next;
};

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static struct free_slot *pool_free[POOL_CLASSES];

/* Every chunk ever mapped (they are never unmapped), so that a child of
 * fork(), which inherits the pages but not their locks, can lock them again. */
struct pool_chunk {
	struct pool_chunk *next;
	unsigned char *base;
};
static struct pool_chunk *pool_chunks;

/* Past RLIMIT_MEMLOCK secrets stay readable but may be swapped out: say so
 * once, so an operator with many keys knows to raise the limit. */
static void note_mlock_failure(int err)
{
	static atomic_bool warned;
	if (!atomic_exchange_explicit(&warned, true, memory_order_relaxed))
		log_kv(LOG_LEVEL_WARN, "key memory no longer locked (raise RLIMIT_MEMLOCK, "
		       "LimitMEMLOCK= in the unit); keys stay readable", "error", strerror(err),
		       (char *)NULL);
}

/* The smallest class that holds n bytes, POOL_CLASSES when none does. */
static int pool_class(size_t n)
{
	int i = 0;
	while (i < POOL_CLASSES && n > slot_sizes[i])
		i++;
	return i;
}

/* Add one chunk's slots to a class's free list.  Called with pool_lock held. */
static int pool_grow(int cls)
{
	unsigned char *chunk = mmap(NULL, CHUNK_SIZE, PROT_READ | PROT_WRITE,
	                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (chunk == MAP_FAILED)
		return -ENOMEM;
	struct pool_chunk *rec = malloc(sizeof(*rec));
	if (!rec) {
		munmap(chunk, CHUNK_SIZE);
		return -ENOMEM;
	}
	rec->base = chunk;
	rec->next = pool_chunks;
	pool_chunks = rec;
	if (mlock(chunk, CHUNK_SIZE) < 0)
		note_mlock_failure(errno);
	(void)madvise(chunk, CHUNK_SIZE, MADV_DONTDUMP);
	size_t size = slot_sizes[cls];
	for (size_t off = 0; off + size <= CHUNK_SIZE; off += size) {
		struct free_slot *slot = (struct free_slot *)(chunk + off);
		slot->next = pool_free[cls];
		pool_free[cls] = slot;
	}
	return 0;
}

static unsigned char *pool_take(int cls)
{
	pthread_mutex_lock(&pool_lock);
	if (!pool_free[cls] && pool_grow(cls) < 0) {
		pthread_mutex_unlock(&pool_lock);
		return NULL;
	}
	struct free_slot *slot = pool_free[cls];
	pool_free[cls] = slot->next;
	pool_in_use[cls]++;
	pthread_mutex_unlock(&pool_lock);
	memset(slot, 0, slot_sizes[cls]);
	return (unsigned char *)slot;
}

static void pool_give(unsigned char *p, int cls)
{
	OPENSSL_cleanse(p, slot_sizes[cls]);
	struct free_slot *slot = (struct free_slot *)p;
	pthread_mutex_lock(&pool_lock);
	slot->next = pool_free[cls];
	pool_free[cls] = slot;
	pool_in_use[cls]--;
	pthread_mutex_unlock(&pool_lock);
}

size_t secret_pool_slot_size(int cls)
{
	return cls >= 0 && cls < POOL_CLASSES ? slot_sizes[cls] : 0;
}

size_t secret_pool_in_use(int cls)
{
	if (cls < 0 || cls >= POOL_CLASSES)
		return 0;
	pthread_mutex_lock(&pool_lock);
	size_t n = pool_in_use[cls];
	pthread_mutex_unlock(&pool_lock);
	return n;
}

int secret_relock(void)
{
	int rc = 0;
	pthread_mutex_lock(&pool_lock);
	if (!pool_chunks && pool_grow(FIRST_CLASS) < 0)
		rc = -ENOMEM;
	for (struct pool_chunk *c = pool_chunks; c; c = c->next)
		if (mlock(c->base, CHUNK_SIZE) < 0 && rc == 0)
			rc = -errno;
	pthread_mutex_unlock(&pool_lock);
	return rc;
}

#define UNLOCKED (-1)   /* struct secret.pooled of secret_new_unlocked's buffers */

/* Zeroed storage for cap + 1 bytes, locked unless *pooled is UNLOCKED on
 * entry.  *pooled: 0 = malloc'ed, UNLOCKED, else 1 + the pool class. */
static unsigned char *data_alloc(size_t cap, int *pooled)
{
	if (*pooled == UNLOCKED)
		return calloc(1, cap + 1);
	int cls = pool_class(cap + 1);
	if (cls < POOL_CLASSES) {
		*pooled = 1 + cls;
		return pool_take(cls);
	}
	*pooled = 0;
	unsigned char *d = calloc(1, cap + 1);
	/* Best effort: a small RLIMIT_MEMLOCK must not make keys unreadable. */
	if (d && mlock(d, cap + 1) < 0)
		note_mlock_failure(errno);
	return d;
}

static void data_free(unsigned char *d, size_t cap, int pooled)
{
	if (!d)
		return;
	if (pooled > 0) {
		pool_give(d, pooled - 1);
		return;
	}
	secret_wipe(d, cap + 1);
	if (pooled == 0)
		munlock(d, cap + 1);
	free(d);
}

static struct secret *secret_alloc(size_t cap, int pooled)
{
	struct secret *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->data = data_alloc(cap, &pooled);
	if (!s->data) {
		free(s);
		return NULL;
	}
	s->cap = cap;
	s->pooled = pooled;
	return s;
}

struct secret *secret_new(size_t cap)
{
	return secret_alloc(cap, 0);
}

struct secret *secret_new_unlocked(size_t cap)
{
	return secret_alloc(cap, UNLOCKED);
}

struct secret *secret_from(const void *p, size_t len)
{
	struct secret *s = secret_new(len);
	if (!s)
		return NULL;
	if (len)
		memcpy(s->data, p, len);
	s->len = len;
	return s;
}

struct secret *secret_dup(const struct secret *s)
{
	return s ? secret_from(s->data, s->len) : NULL;
}

int secret_append(struct secret *s, const void *p, size_t len)
{
	if (len > s->cap - s->len) {
		size_t cap = s->cap ? s->cap : 64;
		while (cap - s->len < len) {
			if (cap > (size_t)-1 / 2)
				return -ENOMEM;
			cap *= 2;
		}
		int pooled = s->pooled == UNLOCKED ? UNLOCKED : 0;
		unsigned char *d = data_alloc(cap, &pooled);
		if (!d)
			return -ENOMEM;
		memcpy(d, s->data, s->len);
		data_free(s->data, s->cap, s->pooled);
		s->data = d;
		s->cap = cap;
		s->pooled = pooled;
	}
	memcpy(s->data + s->len, p, len);
	s->len += len;
	s->data[s->len] = 0;
	return 0;
}

int secret_equal(const struct secret *a, const struct secret *b)
{
	if (!a || !b)
		return a == b;
	if (a->len != b->len)
		return 0;
	return CRYPTO_memcmp(a->data, b->data, a->len) == 0;
}

void secret_free(struct secret *s)
{
	if (!s)
		return;
	data_free(s->data, s->cap, s->pooled);
	free(s);
}

void secret_move(struct secret *dst, struct secret *src)
{
	*dst = *src;
	free(src);
}

void secret_release(struct secret *s)
{
	data_free(s->data, s->cap, s->pooled);
	memset(s, 0, sizeof(*s));
}

/* jansson's free() gets no size: ask the allocator how big the block is. */
static void wiping_free(void *p)
{
	if (!p)
		return;
	OPENSSL_cleanse(p, malloc_usable_size(p));
	free(p);
}

void secret_json_allocator_install(void)
{
	json_set_alloc_funcs(malloc, wiping_free);
}

static void secret_json_wipe(json_t *j)
{
	const char *k;
	json_t *v;
	size_t i;
	switch (json_typeof(j)) {
	case JSON_STRING:
		secret_wipe((void *)json_string_value(j), json_string_length(j));
		break;
	case JSON_OBJECT:
		json_object_foreach(j, k, v)
			secret_json_wipe(v);
		break;
	case JSON_ARRAY:
		json_array_foreach(j, i, v)
			secret_json_wipe(v);
		break;
	default:
		break;
	}
}

void secret_json_free(json_t *j)
{
	if (!j)
		return;
	secret_json_wipe(j);
	json_decref(j);
}
