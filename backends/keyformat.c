/* keyformat.c - key content validation.  The secp256k1 range check
 * compares the 64 hex digits with the group order digit by digit (equal
 * lengths, so the text order is the numeric one): OpenSSL BIGNUMs did the
 * same with two BN_hex2bn heap allocations, 8 900 instructions per key read
 * under callgrind (issue 15, BENCHMARKS.md), against ~500 now. */
#include "keyformat.h"

#include <errno.h>

#include "secret.h"

/* n, the order of the secp256k1 group (SEC 2, section 2.4.1). */
static const char SECP256K1_ORDER_HEX[] =
	"FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141";

static int is_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static int is_hex(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static unsigned hex_value(unsigned char c)
{
	return c <= '9' ? (unsigned)(c - '0') : (unsigned)((c | 0x20) - 'a' + 10);
}

/* hex: 64 hex digits.  Every digit is looked at, whatever the key, so the
 * time does not depend on where the key first differs from the order. */
static int evm_in_range(const unsigned char *hex, const char **why)
{
	unsigned nonzero = 0, decided = 0, below = 0;
	for (int i = 0; i < 64; i++) {
		unsigned d = hex_value(hex[i]);
		unsigned o = hex_value((unsigned char)SECP256K1_ORDER_HEX[i]);
		nonzero |= d;
		unsigned lt = d < o, gt = d > o;
		below |= lt & !decided;
		decided |= lt | gt;
	}
	if (!nonzero) {
		*why = "key is zero";
		return -EINVAL;
	}
	if (!below) {
		*why = "key is not below the secp256k1 group order";
		return -EINVAL;
	}
	return 0;
}

int keyformat_validate(enum key_format fmt, const unsigned char *p, size_t len,
                       size_t *start, size_t *keylen, const char **why)
{
	const char *reason = NULL;
	if (!why)
		why = &reason;
	*why = NULL;
	size_t b = 0, e = len;
	while (b < e && is_space(p[b]))
		b++;
	while (e > b && is_space(p[e - 1]))
		e--;
	if (b == e) {
		*why = "empty key";
		return -EINVAL;
	}
	const unsigned char *k = p + b;
	size_t n = e - b;
	if (n > KEY_MAX_BYTES) {
		*why = "key larger than 4096 bytes";
		return -EFBIG;
	}

	if (fmt == KEY_FORMAT_ANY) {
		for (size_t i = 0; i < n; i++) {
			if (k[i] < 0x20 || k[i] > 0x7e) {
				*why = "key contains non-printable bytes";
				return -EINVAL;
			}
		}
	} else {
		const unsigned char *hex = k;
		size_t nhex = n;
		if (nhex >= 2 && hex[0] == '0' && (hex[1] == 'x' || hex[1] == 'X')) {
			hex += 2;
			nhex -= 2;
		}
		if (nhex != 64) {
			*why = "an evm key is 64 hex digits with an optional 0x";
			return -EINVAL;
		}
		for (size_t i = 0; i < 64; i++) {
			if (!is_hex(hex[i])) {
				*why = "key contains a character that is not a hex digit";
				return -EINVAL;
			}
		}
		int rc = evm_in_range(hex, why);
		if (rc)
			return rc;
	}
	if (start)
		*start = b;
	if (keylen)
		*keylen = n;
	return 0;
}

int keyformat_prefix_ok(enum key_format fmt, const unsigned char *p, size_t len,
                        const char **why)
{
	size_t b = 0;
	while (b < len && is_space(p[b]))
		b++;
	size_t e = b;   /* end of the key's significant bytes so far */
	if (fmt == KEY_FORMAT_ANY) {
		for (size_t i = b; i < len; i++) {
			if (is_space(p[i]))
				continue;   /* significant only once more text follows */
			if (p[i] < 0x20 || p[i] > 0x7e)
				goto not_printable;
			e = i + 1;
		}
		/* Whitespace other than a space inside the key is not printable. */
		for (size_t i = b; i < e; i++)
			if (p[i] < 0x20)
				goto not_printable;
		if (e - b > KEY_MAX_BYTES) {
			*why = "key larger than 4096 bytes";
			return -EFBIG;
		}
		return 0;
not_printable:
		*why = "key contains non-printable bytes";
		return -EINVAL;
	}
	size_t i = b;
	if (i < len && p[i] == '0' && i + 1 < len && (p[i + 1] == 'x' || p[i + 1] == 'X'))
		i += 2;
	size_t digits = 0;
	for (; i < len && !is_space(p[i]); i++) {
		if (!is_hex(p[i])) {
			*why = "key contains a character that is not a hex digit";
			return -EINVAL;
		}
		if (++digits > 64) {
			*why = "an evm key is 64 hex digits with an optional 0x";
			return -EINVAL;
		}
	}
	for (; i < len; i++) {
		if (!is_space(p[i])) {
			*why = "text after the key";
			return -EINVAL;
		}
	}
	return 0;
}

int keyformat_canonical(enum key_format fmt, const unsigned char *p, size_t len,
                        struct secret **out, const char **why)
{
	static const char hex[] = "0123456789abcdef";
	size_t start = 0, n = 0;
	*out = NULL;
	int rc = keyformat_validate(fmt, p, len, &start, &n, why);
	if (rc < 0)
		return rc;
	if (fmt == KEY_FORMAT_ANY) {
		*out = secret_from(p + start, n);
		return *out ? 0 : -ENOMEM;
	}
	const unsigned char *digits = p + start + (n == 66 ? 2 : 0);
	struct secret *s = secret_new(66);
	if (!s)
		return -ENOMEM;
	s->data[0] = '0';
	s->data[1] = 'x';
	for (size_t i = 0; i < 64; i++) {
		unsigned char c = digits[i];
		s->data[2 + i] = c >= 'A' && c <= 'F' ? (unsigned char)hex[c - 'A' + 10] : c;
	}
	s->len = 66;
	*out = s;
	return 0;
}
