/* utf8.h - the one UTF-8 validity check (metrics label values, JSON strings
 * of the backends' answers). */
#ifndef OMIKUJI_UTF8_H
#define OMIKUJI_UTF8_H

#include <stddef.h>

/* Length of the valid UTF-8 sequence at p, of at most avail bytes: 1 for
 * ASCII, 2-4 for a well-formed multi-byte one; 0 when it is not valid (a
 * stray continuation byte, an overlong form, a surrogate, above U+10FFFF,
 * or cut by avail).  avail 0: 0. */
size_t utf8_sequence_len(const unsigned char *p, size_t avail);

#endif
