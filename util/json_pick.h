/* json_pick.h - one validating pass over a JSON text that takes out only the
 * members a caller names, instead of building a jansson tree.
 *
 * Why this is not jansson (the measured need, per the style guide): the
 * uncached read parses one Vault or Secrets Manager answer of ~400 bytes.
 * json_loadb() of a 408-byte Vault KV answer costs ~73 000 instructions
 * (callgrind, jansson 2.14 built from source to see inside): its lexer
 * reads the input one byte at a time through a stream callback and copies
 * every token byte into a growable buffer (stream_get, lex_scan and
 * strbuffer_append_bytes are ~44 000 of them, ~110 per input byte), a parse
 * makes 56 mallocs (~8 000 with their frees), and the wiping free of
 * secret_json_allocator_install() adds ~4 000; hash seeding happens once per
 * process and does not show.  Every string of the tree, the key included,
 * is one more heap copy to wipe.  json_pick() checks the same text at a few
 * instructions per byte and decodes a picked string straight into a locked
 * struct secret: no heap copy of the key exists at any point.
 *
 * What it accepts is what jansson's json_loadb(..., JSON_DECODE_ANY, ...)
 * accepts, i.e. RFC 8259: any value at the top (a caller that wants an
 * object checks the root's type with an empty path); whitespace is space,
 * tab, LF and CR; strings are valid UTF-8 without control characters, with
 * the escapes \" \\ \/ \b \f \n \r \t and \uXXXX (surrogate pairs combined;
 * a lone surrogate and \u0000 are errors, as jansson has them without
 * JSON_ALLOW_NUL); numbers follow the RFC's grammar (their size is not
 * limited here: a caller converting one checks its range); nesting is
 * limited to JSON_PICK_MAX_DEPTH; nothing but whitespace may follow the
 * value.  A NUL byte outside a string is an error anywhere (the other
 * difference: jansson 2.14 skips one right after a number or a literal and
 * accepts "[5\0]").  Member names are compared after decoding
 * ("priv\u0061te_key" is private_key).  A member name that occurs twice in
 * one object: the last one wins, with everything under it, as with
 * jansson's json_object_set().
 *
 * Errors never quote the input: the reason says what was wrong and at which
 * byte offset.  Thread-safe (no global state).
 */
#ifndef OMIKUJI_JSON_PICK_H
#define OMIKUJI_JSON_PICK_H

#include <stdbool.h>
#include <stddef.h>
#include "secret.h"

#define JSON_PICK_MAX_DEPTH 2048     /* as jansson's JSON_PARSER_MAX_DEPTH */
#define JSON_PICK_MAX_PATH 8         /* member names in one pick's path */
#define JSON_PICK_MAX 32             /* picks per call */

enum json_pick_type {
	JSON_PICK_ABSENT = 0,   /* no value at that path (or a parent is not an object) */
	JSON_PICK_NULL,
	JSON_PICK_FALSE,
	JSON_PICK_TRUE,
	JSON_PICK_NUMBER,
	JSON_PICK_STRING,
	JSON_PICK_OBJECT,
	JSON_PICK_ARRAY,
};

struct json_pick {
	/* In: the member names from the root, NULL-terminated, at most
	 * JSON_PICK_MAX_PATH of them; an empty path ({ NULL }) is the root
	 * value itself.  Borrowed. */
	const char *const *path;
	/* In, optional: where a string value goes.  secret: decoded into a new
	 * struct secret of exactly its length (the caller secret_free()s it;
	 * NULL when the value is not a string).  buf/cap: decoded (or a
	 * number's text) NUL-terminated, cut to cap - 1 bytes (then `cut`).
	 * Neither: only type and len are reported. */
	struct secret **secret;
	char *buf;
	size_t cap;
	/* Out. */
	enum json_pick_type type;
	size_t len;             /* a string's decoded length, a number's text length */
	bool cut;               /* buf was too small for it */
};

/* Check text[0..len) and fill every pick.  0, or -EINVAL when the text is not
 * JSON (then every pick is ABSENT and nothing is allocated), -ENOMEM, -E2BIG
 * (too many picks or a path too long).  why (may be NULL) gets a short
 * reason with a byte offset, never a piece of the input. */
int json_pick(const void *text, size_t len, struct json_pick *picks, size_t n,
              char *why, size_t whylen);

/* Free what a call allocated (secrets) and wipe the buffers; types become
 * ABSENT.  For a caller's error paths. */
void json_pick_clear(struct json_pick *picks, size_t n);

#endif
