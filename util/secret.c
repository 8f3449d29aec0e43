/* secret.c - locked, wiped buffers for key material. */
#include "secret.h"

#include <errno.h>
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

struct secret *secret_new(size_t cap)
{
	struct secret *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->data = calloc(1, cap + 1);
	if (!s->data) {
		free(s);
		return NULL;
	}
	s->cap = cap;
	/* Best effort: a small RLIMIT_MEMLOCK must not make keys unreadable. */
	(void)mlock(s->data, cap + 1);
	return s;
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
		unsigned char *d = calloc(1, cap + 1);
		if (!d)
			return -ENOMEM;
		(void)mlock(d, cap + 1);
		memcpy(d, s->data, s->len);
		secret_wipe(s->data, s->cap + 1);
		munlock(s->data, s->cap + 1);
		free(s->data);
		s->data = d;
		s->cap = cap;
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
	if (s->data) {
		secret_wipe(s->data, s->cap + 1);
		munlock(s->data, s->cap + 1);
		free(s->data);
	}
	free(s);
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
