/* keyformat.h - validation of key content (contract section 5). */
#ifndef OMIKUJI_KEYFORMAT_H
#define OMIKUJI_KEYFORMAT_H

#include <stddef.h>
#include "config.h"

#define KEY_MAX_BYTES 4096

/* Validate the len bytes at p as a key of format fmt.  Surrounding ASCII
 * whitespace (the newline of `echo`) is ignored; on success *start and
 * *keylen give the key without it.
 *   evm: 64 hex digits (any case) with an optional 0x/0X prefix, non-zero
 *        and below the secp256k1 group order n.
 *   any: 1..4096 printable ASCII bytes (0x20..0x7e).
 * Returns 0, -EINVAL (with a reason in why, never the key), or -EFBIG when
 * the key without surrounding whitespace is larger than KEY_MAX_BYTES. */
int keyformat_validate(enum key_format fmt, const unsigned char *p, size_t len,
                       size_t *start, size_t *keylen, const char **why);

/* Length of the canonical evm form: "0x" + 64 hex digits. */
#define KEY_EVM_CANONICAL_LEN 66

/* Write the canonical form of a valid evm key (p, len as returned by
 * keyformat_validate: 64 hex digits with an optional 0x) to out, which has
 * room for KEY_EVM_CANONICAL_LEN bytes: "0x" and the digits in lower case.
 * Returns 0, or -EINVAL when p is not 64 hex digits with an optional 0x. */
int keyformat_evm_canonical(const unsigned char *p, size_t len, unsigned char *out);

#endif
