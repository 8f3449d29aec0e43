/* strbuf.h - a size-capped growable text buffer (rendering of virtual files,
 * JSON lines, messages).  Never used for key material: see secret.h. */
#ifndef OMIKUJI_STRBUF_H
#define OMIKUJI_STRBUF_H

#include <stdarg.h>
#include <stddef.h>

struct strbuf {
	char *buf;       /* NUL-terminated when len > 0 or after any append */
	size_t len;
	size_t cap;
	size_t limit;    /* 0 = no limit; appends past it fail with -E2BIG */
	int error;       /* first error of any append (sticky), 0 if none */
};

#define STRBUF_INIT { NULL, 0, 0, 0, 0 }

int strbuf_append(struct strbuf *b, const void *p, size_t len);
int strbuf_puts(struct strbuf *b, const char *s);
int strbuf_printf(struct strbuf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
int strbuf_vprintf(struct strbuf *b, const char *fmt, va_list ap);
/* Append s as the inside of a JSON string (quotes not added). */
int strbuf_json_escape(struct strbuf *b, const char *s);
/* Take ownership of the buffer ("" when empty); b is reset. */
char *strbuf_detach(struct strbuf *b, size_t *len);
void strbuf_reset(struct strbuf *b);   /* free and reinitialise (limit kept) */

/* Format into a fixed caller buffer out[outlen] (out may be NULL): the
 * one-line reasons ("why") that parsers and readers hand back. */
void text_setf(char *out, size_t outlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
