/* file_internal.h - file.c's parser of the decrypted store, for the fuzz
 * harness and its corpus replay (tests/fuzz).  Not for other callers. */
#ifndef OMIKUJI_FILE_INTERNAL_H
#define OMIKUJI_FILE_INTERNAL_H

#include <stddef.h>

/* Parse data as a decrypted store payload; when it parses, serialise the
 * map again and compare.  0 parsed and round-tripped, -EIO/-ENOMEM as the
 * parser answers, -EPROTO when the round trip differs (a bug). */
int file_map_roundtrip(const void *data, size_t len);

#endif
