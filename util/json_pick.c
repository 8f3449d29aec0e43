/* json_pick.c - a validating, non-recursive JSON scanner that keeps only the
 * values a caller asked for.  The rules it enforces are listed in
 * json_pick.h; the reason for it being here, too. */
#include "json_pick.h"
#include "utf8.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Byte classes inside a string. */
enum { C_PLAIN = 0, C_QUOTE, C_ESCAPE, C_CONTROL, C_UTF8 };

static const unsigned char str_class[256] = {
	[0x00 ... 0x1f] = C_CONTROL,
	['"'] = C_QUOTE,
	['\\'] = C_ESCAPE,
	[0x80 ... 0xff] = C_UTF8,
};

struct scan {
	const unsigned char *start, *p, *end;
	const char *err;          /* what was wrong, at p */
};

static int fail(struct scan *s, const char *what)
{
	if (!s->err)
		s->err = what;
	return -EINVAL;
}

static void skip_ws(struct scan *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t'))
		s->p++;
}

static int hex4(const unsigned char *p, unsigned *out)
{
	unsigned v = 0;
	for (int i = 0; i < 4; i++) {
		unsigned char c = p[i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return -1;
	}
	*out = v;
	return 0;
}

static size_t utf8_put(unsigned cp, unsigned char *o)
{
	if (cp < 0x80) {
		o[0] = (unsigned char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (unsigned char)(0xc0 | (cp >> 6));
		o[1] = (unsigned char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (unsigned char)(0xe0 | (cp >> 12));
		o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		o[2] = (unsigned char)(0x80 | (cp & 0x3f));
		return 3;
	}
	o[0] = (unsigned char)(0xf0 | (cp >> 18));
	o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
	o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
	o[3] = (unsigned char)(0x80 | (cp & 0x3f));
	return 4;
}

/* The string whose opening quote is at s->p: checked, and decoded into
 * out[0..cap) when out is not NULL (bytes past cap are counted, not
 * written).  *declen gets the decoded length.  On success s->p is past the
 * closing quote. */
static int scan_string(struct scan *s, unsigned char *out, size_t cap, size_t *declen)
{
	const unsigned char *p = s->p + 1, *end = s->end;
	size_t o = 0;
	for (;;) {
		const unsigned char *run = p;
		while (p < end && str_class[*p] == C_PLAIN)
			p++;
		if (out && p > run) {
			size_t n = (size_t)(p - run);
			if (o < cap)
				memcpy(out + o, run, n <= cap - o ? n : cap - o);
			o += n;
		} else {
			o += (size_t)(p - run);
		}
		if (p >= end) {
			s->p = p;
			return fail(s, "unterminated string");
		}
		switch (str_class[*p]) {
		case C_QUOTE:
			s->p = p + 1;
			*declen = o;
			return 0;
		case C_CONTROL:
			s->p = p;
			return fail(s, "control character in a string");
		case C_UTF8: {
			size_t n = utf8_sequence_len(p, (size_t)(end - p));
			if (!n) {
				s->p = p;
				return fail(s, "invalid UTF-8 in a string");
			}
			for (size_t i = 0; i < n; i++, o++)
				if (out && o < cap)
					out[o] = p[i];
			p += n;
			break;
		}
		default: {   /* C_ESCAPE */
			unsigned char tmp[4];
			size_t n = 1;
			if (end - p < 2) {
				s->p = p;
				return fail(s, "unterminated string");
			}
			switch (p[1]) {
			case '"': tmp[0] = '"'; break;
			case '\\': tmp[0] = '\\'; break;
			case '/': tmp[0] = '/'; break;
			case 'b': tmp[0] = '\b'; break;
			case 'f': tmp[0] = '\f'; break;
			case 'n': tmp[0] = '\n'; break;
			case 'r': tmp[0] = '\r'; break;
			case 't': tmp[0] = '\t'; break;
			case 'u': {
				unsigned cp, lo;
				if (end - p < 6 || hex4(p + 2, &cp)) {
					s->p = p;
					return fail(s, "invalid \\u escape");
				}
				if (cp >= 0xdc00 && cp <= 0xdfff) {
					s->p = p;
					return fail(s, "lone low surrogate in a \\u escape");
				}
				if (cp >= 0xd800 && cp <= 0xdbff) {
					if (end - p < 12 || p[6] != '\\' || p[7] != 'u' ||
					    hex4(p + 8, &lo) || lo < 0xdc00 || lo > 0xdfff) {
						s->p = p;
						return fail(s, "high surrogate without a low one in a \\u escape");
					}
					cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
					p += 6;
				}
				if (cp == 0) {
					s->p = p;
					return fail(s, "\\u0000 in a string");
				}
				n = utf8_put(cp, tmp);
				p += 4;
				break;
			}
			default:
				s->p = p;
				return fail(s, "invalid escape in a string");
			}
			p += 2;
			for (size_t i = 0; i < n; i++, o++)
				if (out && o < cap)
					out[o] = tmp[i];
			memset(tmp, 0, sizeof(tmp));
			break;
		}
		}
	}
}

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

/* One or more digits at *pp (moved past them); false when there is none. */
static bool digits(const unsigned char **pp, const unsigned char *end)
{
	const unsigned char *p = *pp;
	while (p < end && is_digit(*p))
		p++;
	bool some = p > *pp;
	*pp = p;
	return some;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? at s->p. */
static int scan_number(struct scan *s)
{
	const unsigned char *p = s->p, *end = s->end;
	bool ok = true;
	if (p < end && *p == '-')
		p++;
	if (p < end && *p == '0') {
		p++;
		if (p < end && is_digit(*p)) {
			s->p = p;
			return fail(s, "number with a leading zero");
		}
	} else {
		ok = digits(&p, end);
	}
	if (ok && p < end && *p == '.') {
		p++;
		ok = digits(&p, end);
	}
	if (ok && p < end && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < end && (*p == '+' || *p == '-'))
			p++;
		ok = digits(&p, end);
	}
	s->p = p;
	return ok ? 0 : fail(s, "invalid number");
}

static int scan_literal(struct scan *s, const char *word, size_t n)
{
	if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
		return fail(s, "invalid literal");
	s->p += n;
	return 0;
}

static void pick_reset(struct json_pick *k)
{
	if (k->secret && *k->secret) {
		secret_free(*k->secret);
		*k->secret = NULL;
	}
	if (k->buf && k->cap)
		secret_wipe(k->buf, k->cap);
	k->type = JSON_PICK_ABSENT;
	k->len = 0;
	k->cut = false;
}

void json_pick_clear(struct json_pick *picks, size_t n)
{
	for (size_t i = 0; i < n; i++)
		pick_reset(&picks[i]);
}

/* Record the value at s->p (a string starting at its quote, or another
 * scalar's text [a, s->p) already scanned) in every pick of `here`. */
static int record(struct scan *s, struct json_pick *picks, uint32_t here,
                  enum json_pick_type type, const unsigned char *a, size_t declen)
{
	for (size_t i = 0; here; i++, here >>= 1) {
		if (!(here & 1))
			continue;
		struct json_pick *k = &picks[i];
		k->type = type;
		if (type == JSON_PICK_STRING) {
			struct scan again = { s->start, a, s->end, NULL };
			size_t n;
			k->len = declen;
			if (k->secret) {
				struct secret *v = secret_new(declen);
				if (!v)
					return -ENOMEM;
				scan_string(&again, v->data, declen, &n);
				v->len = declen;
				*k->secret = v;
			}
			if (k->buf && k->cap) {
				scan_string(&again, (unsigned char *)k->buf, k->cap - 1, &n);
				k->cut = declen > k->cap - 1;
				k->buf[declen < k->cap - 1 ? declen : k->cap - 1] = 0;
			}
		} else if (type == JSON_PICK_NUMBER) {
			size_t n = (size_t)(s->p - a);
			k->len = n;
			if (k->buf && k->cap) {
				size_t c = n < k->cap - 1 ? n : k->cap - 1;
				memcpy(k->buf, a, c);
				k->buf[c] = 0;
				k->cut = n > c;
			}
		}
	}
	return 0;
}

/* Which picks of `mask` name `key` as their member at path index `depth`.
 * namelen: the length of every path name, measured once per call of
 * json_pick (a strlen per pick per member was ~6 % of a Vault answer's
 * parse under callgrind). */
static uint32_t match_member(const struct json_pick *picks,
                             const unsigned short namelen[][JSON_PICK_MAX_PATH],
                             uint32_t mask, size_t depth, const unsigned char *key, size_t keylen)
{
	uint32_t out = 0;
	for (size_t i = 0; mask; i++, mask >>= 1) {
		if (!(mask & 1) || depth >= JSON_PICK_MAX_PATH)
			continue;
		const char *name = picks[i].path[depth];
		if (name && namelen[i][depth] == keylen && memcmp(name, key, keylen) == 0)
			out |= (uint32_t)1 << i;
	}
	return out;
}

/* The picks among `mask` whose path ends at index `depth`. */
static uint32_t ends_at(const struct json_pick *picks, uint32_t mask, size_t depth)
{
	uint32_t out = 0;
	for (size_t i = 0; mask; i++, mask >>= 1)
		if ((mask & 1) && !picks[i].path[depth])
			out |= (uint32_t)1 << i;
	return out;
}

static void reset_mask(struct json_pick *picks, uint32_t mask)
{
	for (size_t i = 0; mask; i++, mask >>= 1)
		if (mask & 1)
			pick_reset(&picks[i]);
}

#define KEY_MAX 128   /* longer member names match no pick */

int json_pick(const void *text, size_t len, struct json_pick *picks, size_t n,
              char *why, size_t whylen)
{
	struct scan s = { text, text, (const unsigned char *)text + len, NULL };
	unsigned char kinds[JSON_PICK_MAX_DEPTH / 8];   /* bit set: an object, clear: an array */
	uint32_t masks[JSON_PICK_MAX_PATH + 1];         /* picks under the container at each depth */
	unsigned char key[KEY_MAX];
	unsigned short namelen[JSON_PICK_MAX][JSON_PICK_MAX_PATH];
	size_t depth = 0;   /* open containers */
	uint32_t here, below;
	int rc = 0;

	if (n > JSON_PICK_MAX) {
		if (why && whylen)
			snprintf(why, whylen, "too many JSON picks");
		return -E2BIG;
	}
	for (size_t i = 0; i < n; i++) {
		size_t d = 0;
		while (picks[i].path[d]) {
			if (d >= JSON_PICK_MAX_PATH) {
				if (why && whylen)
					snprintf(why, whylen, "JSON pick path too long");
				return -E2BIG;
			}
			size_t l = strlen(picks[i].path[d]);
			/* a name longer than any member name compared: never matches */
			namelen[i][d] = (unsigned short)(l <= KEY_MAX ? l : KEY_MAX + 1);
			d++;
		}
		if (picks[i].secret)
			*picks[i].secret = NULL;
		if (picks[i].buf && picks[i].cap)
			picks[i].buf[0] = 0;
		picks[i].type = JSON_PICK_ABSENT;
		picks[i].len = 0;
		picks[i].cut = false;
	}
	uint32_t all = n == 32 ? UINT32_MAX : (((uint32_t)1 << n) - 1);
	here = ends_at(picks, all, 0);
	below = all & ~here;

value:
	skip_ws(&s);
	if (s.p >= s.end) {
		rc = fail(&s, "unexpected end of input");
		goto out;
	}
	if (depth >= JSON_PICK_MAX_DEPTH) {   /* jansson counts every value */
		rc = fail(&s, "nested too deeply");
		goto out;
	}
	switch (*s.p) {
	case '{':
	case '[': {
		bool obj = *s.p == '{';
		if ((rc = record(&s, picks, here, obj ? JSON_PICK_OBJECT : JSON_PICK_ARRAY, NULL, 0)))
			goto out;
		if (obj)
			kinds[depth / 8] |= (unsigned char)(1u << (depth % 8));
		else
			kinds[depth / 8] &= (unsigned char)~(1u << (depth % 8));
		if (depth <= JSON_PICK_MAX_PATH)
			masks[depth] = obj ? below : 0;
		depth++;
		s.p++;
		skip_ws(&s);
		if (s.p < s.end && *s.p == (obj ? '}' : ']')) {
			s.p++;
			depth--;
			goto after;
		}
		if (obj)
			goto member;
		here = below = 0;
		goto value;
	}
	case '"': {
		const unsigned char *a = s.p;
		size_t declen;
		if ((rc = scan_string(&s, NULL, 0, &declen)))
			goto out;
		if ((rc = record(&s, picks, here, JSON_PICK_STRING, a, declen)))
			goto out;
		goto after;
	}
	case 't':
	case 'f':
	case 'n': {
		enum json_pick_type t = *s.p == 't' ? JSON_PICK_TRUE :
		                        *s.p == 'f' ? JSON_PICK_FALSE : JSON_PICK_NULL;
		const char *word = t == JSON_PICK_TRUE ? "true" : t == JSON_PICK_FALSE ? "false" : "null";
		if ((rc = scan_literal(&s, word, strlen(word))) ||
		    (rc = record(&s, picks, here, t, NULL, 0)))
			goto out;
		goto after;
	}
	default: {
		const unsigned char *a = s.p;
		if ((rc = scan_number(&s)) ||
		    (rc = record(&s, picks, here, JSON_PICK_NUMBER, a, 0)))
			goto out;
		goto after;
	}
	}

member: {
	/* At the opening quote of a member name in the object at depth - 1. */
	size_t d = depth - 1;
	uint32_t mask = d <= JSON_PICK_MAX_PATH ? masks[d] : 0;
	size_t keylen;
	skip_ws(&s);
	if (s.p >= s.end || *s.p != '"') {
		rc = fail(&s, "expected a member name");
		goto out;
	}
	if ((rc = scan_string(&s, mask ? key : NULL, sizeof(key), &keylen)))
		goto out;
	uint32_t matched = mask && keylen <= sizeof(key) ? match_member(picks, namelen, mask, d, key, keylen) : 0;
	/* A repeated name replaces what its earlier value gave (last wins). */
	reset_mask(picks, matched);
	here = ends_at(picks, matched, d + 1);
	below = matched & ~here;
	skip_ws(&s);
	if (s.p >= s.end || *s.p != ':') {
		rc = fail(&s, "expected ':' after a member name");
		goto out;
	}
	s.p++;
	goto value;
}

after:
	if (depth == 0) {
		skip_ws(&s);
		if (s.p != s.end)
			rc = fail(&s, "text after the JSON value");
		goto out;
	}
	skip_ws(&s);
	if (s.p >= s.end) {
		rc = fail(&s, "unexpected end of input");
		goto out;
	} else {
		bool obj = kinds[(depth - 1) / 8] & (1u << ((depth - 1) % 8));
		if (*s.p == ',') {
			s.p++;
			if (obj)
				goto member;
			here = below = 0;
			goto value;
		}
		if (*s.p == (obj ? '}' : ']')) {
			s.p++;
			depth--;
			goto after;
		}
		rc = fail(&s, obj ? "expected ',' or '}'" : "expected ',' or ']'");
		goto out;
	}

out:
	secret_wipe(key, sizeof(key));
	if (rc) {
		json_pick_clear(picks, n);
		if (why && whylen) {
			if (rc == -ENOMEM)
				snprintf(why, whylen, "out of memory");
			else
				snprintf(why, whylen, "%s at byte %zu", s.err ? s.err : "malformed JSON",
				         (size_t)(s.p - s.start));
		}
	}
	return rc;
}
