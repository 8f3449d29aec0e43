/* strbuf.c - size-capped growable text buffer. */
#include "strbuf.h"
#include "utf8.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int strbuf_reserve(struct strbuf *b, size_t extra)
{
	if (b->error)
		return b->error;
	if (b->limit && (extra > b->limit || b->len > b->limit - extra))
		return b->error = -E2BIG;
	if (b->len + extra + 1 <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + extra + 1)
		cap *= 2;
	char *p = realloc(b->buf, cap);
	if (!p)
		return b->error = -ENOMEM;
	b->buf = p;
	b->cap = cap;
	return 0;
}

int strbuf_append(struct strbuf *b, const void *p, size_t len)
{
	int rc = strbuf_reserve(b, len);
	if (rc)
		return rc;
	memcpy(b->buf + b->len, p, len);
	b->len += len;
	b->buf[b->len] = 0;
	return 0;
}

int strbuf_puts(struct strbuf *b, const char *s)
{
	return strbuf_append(b, s, strlen(s));
}

int strbuf_vprintf(struct strbuf *b, const char *fmt, va_list ap)
{
	va_list copy;
	va_copy(copy, ap);
	int n = vsnprintf(NULL, 0, fmt, copy);
	va_end(copy);
	if (n < 0)
		return b->error = -EINVAL;
	int rc = strbuf_reserve(b, (size_t)n);
	if (rc)
		return rc;
	vsnprintf(b->buf + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
	return 0;
}

int strbuf_printf(struct strbuf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = strbuf_vprintf(b, fmt, ap);
	va_end(ap);
	return rc;
}

/* Whatever the bytes (a caller's process name is theirs to choose), the
 * output is valid JSON string content and valid UTF-8: control characters
 * and DEL are escaped, bytes that are not well-formed UTF-8 become U+FFFD. */
int strbuf_json_escape(struct strbuf *b, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	while (*p) {
		/* A run of printable ASCII that needs no escape goes in whole
		 * (the audit line's fields are such runs: one append each). */
		const unsigned char *run = p;
		while (*p >= 0x20 && *p < 0x7f && *p != '"' && *p != '\\')
			p++;
		if (p > run && strbuf_append(b, run, (size_t)(p - run)))
			return b->error;
		if (!*p)
			break;
		int rc;
		size_t n = 1;
		switch (*p) {
		case '"':  rc = strbuf_puts(b, "\\\""); break;
		case '\\': rc = strbuf_puts(b, "\\\\"); break;
		case '\n': rc = strbuf_puts(b, "\\n"); break;
		case '\r': rc = strbuf_puts(b, "\\r"); break;
		case '\t': rc = strbuf_puts(b, "\\t"); break;
		default:
			if (*p < 0x20 || *p == 0x7f) {
				rc = strbuf_printf(b, "\\u%04x", *p);
			} else if ((n = utf8_sequence_len(p, 4)) == 0) {   /* stops at the NUL */
				n = 1;
				rc = strbuf_puts(b, "\\ufffd");
			} else {
				rc = strbuf_append(b, p, n);
			}
		}
		if (rc)
			return rc;
		p += n;
	}
	return b->error;
}

char *strbuf_detach(struct strbuf *b, size_t *len)
{
	char *p = b->buf ? b->buf : strdup("");
	if (len)
		*len = b->len;
	size_t limit = b->limit;
	memset(b, 0, sizeof(*b));
	b->limit = limit;
	return p;
}

void strbuf_reset(struct strbuf *b)
{
	size_t limit = b->limit;
	free(b->buf);
	memset(b, 0, sizeof(*b));
	b->limit = limit;
}

void text_setf(char *out, size_t outlen, const char *fmt, ...)
{
	if (!out || !outlen)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(out, outlen, fmt, ap);
	va_end(ap);
}
