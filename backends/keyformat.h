/* keyformat.h - validation of key content (contract section 5). */
#ifndef OMIKUJI_KEYFORMAT_H
#define OMIKUJI_KEYFORMAT_H

#include <stddef.h>

#define KEY_MAX_BYTES 4096

enum key_format { KEY_FORMAT_EVM, KEY_FORMAT_ANY };   /* keyfs.key_format */

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

/* Can the len bytes at p, written so far, still become a valid key of
 * format fmt when more bytes are appended?  0 when they can; -EINVAL (a
 * byte no key can contain there, e.g. a non-hex character or a 65th hex
 * digit for evm, text after the key's final whitespace) or -EFBIG (more
 * than KEY_MAX_BYTES significant bytes) as soon as they cannot, with a
 * reason in why.  Lets a write(2) fail at once instead of at close. */
int keyformat_prefix_ok(enum key_format fmt, const unsigned char *p, size_t len,
                        const char **why);

/* A validated key in the form readers get: evm "0x" + 64 lower-case hex
 * digits (contract section 9), any: the key without surrounding
 * whitespace.  0 with *out a new secret (caller frees), -EINVAL/-EFBIG as
 * keyformat_validate() with why set, or -ENOMEM. */
struct secret;
int keyformat_canonical(enum key_format fmt, const unsigned char *p, size_t len,
                        struct secret **out, const char **why);

#endif
