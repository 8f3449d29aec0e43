/* hash.h - the string hash shared by the in-memory tables (cache, metrics). */
#ifndef OMIKUJI_HASH_H
#define OMIKUJI_HASH_H

#include <stddef.h>
#include <stdint.h>

/* FNV-1a, 64-bit: fast and good enough for network names, which are not
 * attacker-chosen beyond what the access rules already let through. */
static inline size_t hash_string(const char *s)
{
	uint64_t h = UINT64_C(14695981039346656037);
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= UINT64_C(1099511628211);
	}
	return (size_t)h;
}

#endif
