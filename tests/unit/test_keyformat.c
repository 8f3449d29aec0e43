/* test_keyformat.c - key validation and network names. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>
#include "backend.h"
#include "keyformat.h"

static int check(enum key_format f, const char *s)
{
	return keyformat_validate(f, (const unsigned char *)s, strlen(s), NULL, NULL, NULL);
}

Test(keyformat, order_boundaries)
{
	cr_expect_eq(check(KEY_FORMAT_EVM, "0000000000000000000000000000000000000000000000000000000000000000"), -EINVAL, "zero");
	cr_expect_eq(check(KEY_FORMAT_EVM, "0000000000000000000000000000000000000000000000000000000000000001"), 0, "one");
	cr_expect_eq(check(KEY_FORMAT_EVM, "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364140"), 0, "n-1");
	cr_expect_eq(check(KEY_FORMAT_EVM, "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141"), -EINVAL, "n");
	cr_expect_eq(check(KEY_FORMAT_EVM, "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364142"), -EINVAL, "n+1");
	cr_expect_eq(check(KEY_FORMAT_EVM, "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"), -EINVAL, "max");
}

Test(keyformat, shapes)
{
	cr_expect_eq(check(KEY_FORMAT_EVM, "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"), 0);
	cr_expect_eq(check(KEY_FORMAT_EVM, "0X4C0883A69102937D6231471B5DBB6204FE5129617082792AE468D01A3F362318"), 0, "uppercase");
	cr_expect_eq(check(KEY_FORMAT_EVM, "  0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318\n"), 0, "surrounding whitespace");
	cr_expect_eq(check(KEY_FORMAT_EVM, "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f36231"), -EINVAL, "63 digits");
	cr_expect_eq(check(KEY_FORMAT_EVM, "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f3623181"), -EINVAL, "65 digits");
	cr_expect_eq(check(KEY_FORMAT_EVM, "0x"), -EINVAL, "0x alone");
	cr_expect_eq(check(KEY_FORMAT_EVM, ""), -EINVAL, "empty");
	cr_expect_eq(check(KEY_FORMAT_EVM, "\n"), -EINVAL, "newline only");
	cr_expect_eq(check(KEY_FORMAT_EVM, "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f36231g"), -EINVAL, "non-hex");
	cr_expect_eq(check(KEY_FORMAT_EVM, "0x4c0883a69102937d6231471b5dbb6204 e5129617082792ae468d01a3f362318"), -EINVAL, "inner space");
	cr_expect_eq(check(KEY_FORMAT_EVM, "00x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f3623"), -EINVAL, "bad prefix");
}

Test(keyformat, trimmed_span)
{
	const char *s = " \t0xab4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f3623\n";
	size_t start = 99, len = 99;
	cr_assert_eq(keyformat_validate(KEY_FORMAT_EVM, (const unsigned char *)s, strlen(s), &start, &len, NULL), 0);
	cr_expect_eq(start, 2);
	cr_expect_eq(len, 66);
}

Test(keyformat, any_format)
{
	cr_expect_eq(check(KEY_FORMAT_ANY, "hello world"), 0);
	cr_expect_eq(check(KEY_FORMAT_ANY, "bad\x01"), -EINVAL);
	char big[KEY_MAX_BYTES + 2];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	cr_expect_eq(check(KEY_FORMAT_ANY, big), -EFBIG, "4097 bytes");
	big[KEY_MAX_BYTES] = 0;
	cr_expect_eq(check(KEY_FORMAT_ANY, big), 0, "4096 bytes");
}

Test(network, names)
{
	cr_expect(network_name_valid("ethereum-mainnet"));
	cr_expect(network_name_valid("a"));
	cr_expect(network_name_valid("Base_Sepolia.2"));
	cr_expect_not(network_name_valid(""));
	cr_expect_not(network_name_valid("-eth"));
	cr_expect_not(network_name_valid(".hidden"));
	cr_expect_not(network_name_valid("a/b"));
	cr_expect_not(network_name_valid("a b"));
	cr_expect_not(network_name_valid(".."));
	char name[66];
	memset(name, 'a', 64);
	name[64] = 0;
	cr_expect(network_name_valid(name), "64 chars");
	name[64] = 'a';
	name[65] = 0;
	cr_expect_not(network_name_valid(name), "65 chars");
}

/* issue 9: the write-time check never refuses what can still become a key
 * (found by the fuzz harness: trailing blanks after a newline). */
Test(keyformat, prefix_check_accepts_every_prefix_of_a_valid_key)
{
	static const char *valid_any[] = { "approle_mo0\"]\n     \r\r\r", "a b\n", "  x  " };
	for (size_t k = 0; k < sizeof(valid_any) / sizeof(valid_any[0]); k++) {
		const unsigned char *p = (const unsigned char *)valid_any[k];
		size_t len = strlen(valid_any[k]);
		cr_assert_eq(keyformat_validate(KEY_FORMAT_ANY, p, len, NULL, NULL, NULL), 0);
		for (size_t i = 0; i <= len; i++) {
			const char *why = NULL;
			cr_expect_eq(keyformat_prefix_ok(KEY_FORMAT_ANY, p, i, &why), 0,
			             "prefix %zu of case %zu: %s", i, k, why);
		}
	}
	const char *why = NULL;
	cr_expect_eq(keyformat_prefix_ok(KEY_FORMAT_ANY, (const unsigned char *)"a\tb", 3, &why),
	             -EINVAL);
	cr_expect_eq(keyformat_prefix_ok(KEY_FORMAT_EVM, (const unsigned char *)"0x12 3", 6, &why),
	             -EINVAL);
	cr_expect_eq(keyformat_prefix_ok(KEY_FORMAT_EVM, (const unsigned char *)" 0X1f", 5, &why), 0);
}

/* The digit-by-digit range check against OpenSSL's BIGNUM comparison (what
 * it replaced) on keys that share a random-length prefix with the order, in
 * random case: every split point and both sides of it. */
#include <openssl/bn.h>
#include <stdlib.h>
#include <ctype.h>

Test(keyformat, range_check_agrees_with_bignum_near_the_order)
{
	static const char order[] = "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141";
	static const char hex[] = "0123456789abcdef";
	BIGNUM *n = NULL;
	cr_assert(BN_hex2bn(&n, order));
	srandom(15);
	for (int i = 0; i < 20000; i++) {
		char k[65];
		int keep = (int)(random() % 65);
		for (int j = 0; j < 64; j++) {
			char c = j < keep ? order[j] : hex[random() % 16];
			k[j] = (char)(random() % 2 ? tolower((unsigned char)c) : toupper((unsigned char)c));
		}
		k[64] = 0;
		if (i % 1000 == 0)
			memset(k, '0', 64 - (size_t)(random() % 3));   /* zero and tiny keys */
		BIGNUM *b = NULL;
		cr_assert(BN_hex2bn(&b, k));
		int want = !BN_is_zero(b) && BN_cmp(b, n) < 0 ? 0 : -EINVAL;
		cr_assert_eq(check(KEY_FORMAT_EVM, k), want, "%s", k);
		BN_free(b);
	}
	BN_free(n);
}
