/* test_address.c - addresses/ (issue 16): Keccak-256 against the standard
 * vectors, EIP-55 against the examples published in the EIP, key -> address
 * against known keys, the address book (versions, mtimes, forgetting,
 * key_info rendering) and the `address` access semantics.
 *
 * The Keccak vectors over patterned inputs were computed independently with
 * pycryptodome (Debian's python3-pycryptodome, Cryptodome.Hash.keccak);
 * the integration test test_addresses.py checks random keys against a pure
 * Python secp256k1 and pycryptodome's Keccak at run time. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "access.h"
#include "audit.h"
#include "address.h"
#include "evm_address.h"
#include "keccak.h"
#include "config.h"
#include <unistd.h>

static void hex(const uint8_t *p, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", p[i]);
}

static void expect_keccak(const void *data, size_t len, const char *want)
{
	uint8_t d[KECCAK256_DIGEST_SIZE];
	char got[65];
	keccak256(data, len, d);
	hex(d, sizeof(d), got);
	cr_expect_str_eq(got, want, "keccak256 of %zu bytes", len);
}

static uint8_t *pattern(size_t n)
{
	uint8_t *p = malloc(n ? n : 1);
	cr_assert_not_null(p);
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(i * 7 + 3);
	return p;
}

/* ---- Keccak-256 ---------------------------------------------------------- */

Test(keccak, standard_vectors)
{
	expect_keccak("", 0, "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470");
	expect_keccak("abc", 3, "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45");
	expect_keccak("The quick brown fox jumps over the lazy dog", 43,
	              "4d741b6f1eb29cb2a9b9911c82f56fa8d73b04959d3d9d222895df6c0b28aa15");
}

Test(keccak, differs_from_sha3)
{
	/* SHA3-256("") is a7ffc6f8...: the padding is what makes it Keccak. */
	uint8_t d[KECCAK256_DIGEST_SIZE];
	keccak256("", 0, d);
	cr_expect_neq(d[0], 0xa7);
}

Test(keccak, around_the_rate_and_multi_block)
{
	static const struct { size_t n; const char *want; } v[] = {
		{ 135, "00ef96af9cf4b24c7f269d922294444a197d0a33638c2e56634c57e892103a8f" },
		{ 136, "742061bcad767ed4c4f5883b1dcb1aad11afdcc140dc469d953759b127b9f9ed" },
		{ 137, "e3371f61e770abf254c34239c3b0099ad90594507415bc81dd0a10b9692bbf2a" },
		{ 200, "66d2cdf3ab4c5bd3c75add9b60b14ac5b7789534fa2da3f348853b847359a3a0" },
		{ 272, "ac141fd7b0a0ffcd2e967254d508da3ec616596493c36fa304425647d90e6de5" },
		{ 1000, "80cdc8dd52cbb3dbaea8f383209893fa2bb52efbd5aedbb4b26dcfe307fcdc9b" },
	};
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		uint8_t *p = pattern(v[i].n);
		expect_keccak(p, v[i].n, v[i].want);
		free(p);
	}
}

Test(keccak, one_million_a)
{
	size_t n = 1000000;
	char *p = malloc(n);
	cr_assert_not_null(p);
	memset(p, 'a', n);
	expect_keccak(p, n, "fadae6b49f129bbb812be8407b7b2894f34aecf6dbd1f9b0f0c7e9853098fc96");
	free(p);
}

Test(keccak, incremental_equals_one_shot)
{
	size_t n = 1000;
	uint8_t *p = pattern(n);
	uint8_t whole[KECCAK256_DIGEST_SIZE];
	keccak256(p, n, whole);
	static const size_t steps[] = { 1, 3, 7, 8, 9, 64, 135, 136, 137, 500 };
	for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
		struct keccak256 h;
		uint8_t d[KECCAK256_DIGEST_SIZE];
		keccak256_init(&h);
		/* A 5-byte head first, so the lane-aligned fast path starts unaligned. */
		keccak256_update(&h, p, 5);
		for (size_t off = 5; off < n; off += steps[s])
			keccak256_update(&h, p + off, off + steps[s] <= n ? steps[s] : n - off);
		keccak256_final(&h, d);
		cr_expect_eq(memcmp(d, whole, sizeof(d)), 0, "chunks of %zu", steps[s]);
		static const struct keccak256 zero;
		cr_expect_eq(memcmp(&h, &zero, sizeof(h)), 0, "final wipes the state");
	}
	free(p);
}

/* ---- EIP-55 -------------------------------------------------------------- */

static void parse_address(const char *text, uint8_t out[EVM_ADDRESS_BYTES])
{
	for (size_t i = 0; i < EVM_ADDRESS_BYTES; i++) {
		unsigned v;
		cr_assert_eq(sscanf(text + 2 + 2 * i, "%2x", &v), 1);
		out[i] = (uint8_t)v;
	}
}

Test(eip55, published_examples)
{
	/* The test cases of EIP-55 itself: all caps, all lower, normal. */
	static const char *const v[] = {
		"0x52908400098527886E0F7030069857D2E4169EE7",
		"0x8617E340B3D01FA5F11F306F4090FD50E238070D",
		"0xde709f2102306220921060314715629080e2fb77",
		"0x27b1fdb04752bbc536007a920d24acb045561c26",
		"0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
		"0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
		"0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
		"0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
	};
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		uint8_t raw[EVM_ADDRESS_BYTES];
		char got[EVM_ADDRESS_TEXT + 1];
		parse_address(v[i], raw);
		evm_address_checksum(raw, got);
		cr_expect_str_eq(got, v[i]);
	}
}

/* ---- key -> address ------------------------------------------------------ */

static void expect_address(const char *key, const char *want)
{
	char got[EVM_ADDRESS_TEXT + 1] = "";
	int rc = evm_address_derive((const unsigned char *)key, strlen(key), got);
	cr_expect_eq(rc, 0, "derive: %d", rc);
	cr_expect_str_eq(got, want);
}

Test(evm_address, known_keys)
{
	expect_address("0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318",
	               "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23");
	/* Without 0x, upper case, with the newline a key file has. */
	expect_address("4C0883A69102937D6231471B5DBB6204FE5129617082792AE468D01A3F362318\n",
	               "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23");
	/* The scalars 1 and 2: G and 2G, addresses every library agrees on. */
	expect_address("0x0000000000000000000000000000000000000000000000000000000000000001",
	               "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf");
	expect_address("0x0000000000000000000000000000000000000000000000000000000000000002",
	               "0x2B5AD5c4795c026514f8317c7a215E218DcCD6cF");
	/* n - 1, the largest valid scalar: -G, same x as G. */
	expect_address("0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364140",
	               "0x80C0dbf239224071c59dD8970ab9d542E3414aB2");
}

Test(evm_address, refuses_what_is_not_a_key)
{
	static const char *const bad[] = {
		"",
		"0x00",
		"0x0000000000000000000000000000000000000000000000000000000000000000",
		"0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141",   /* n */
		"0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f36231g",
		"not a key",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char out[EVM_ADDRESS_TEXT + 1] = "untouched";
		cr_expect_eq(evm_address_derive((const unsigned char *)bad[i], strlen(bad[i]), out),
		             -EINVAL, "case %zu", i);
	}
}

/* ---- the address book ---------------------------------------------------- */

static struct secret *key_of(const char *text)
{
	struct secret *s = secret_from(text, strlen(text));
	cr_assert_not_null(s);
	return s;
}

#define KEY_A "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
#define ADDR_A "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"
#define KEY_B "0x0000000000000000000000000000000000000000000000000000000000000001"
#define ADDR_B "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf"

Test(address_book, versions_and_mtimes)
{
	struct address_book *b = NULL;
	char out[EVM_ADDRESS_TEXT + 1];
	double mtime = 0;
	struct netrec_table nets;
	netrec_table_init(&nets, 0);
	cr_assert_eq(address_book_new(&nets, &b), 0);
	cr_expect_eq(address_book_lookup(b, "eth", out, &mtime), -ENOENT);

	struct secret *a = key_of(KEY_A), *a_upper = key_of("4C0883A69102937D6231471B5DBB6204FE5129617082792AE468D01A3F362318");
	struct secret *bkey = key_of(KEY_B), *junk = key_of("not an evm key");
	cr_expect_eq(address_book_note(b, "eth", "file", a, 100.0, 100.0), 0);
	cr_expect_eq(address_book_lookup(b, "eth", out, &mtime), 0);
	cr_expect_str_eq(out, ADDR_A);
	cr_expect_eq(mtime, 100.0);

	/* The same version again: nothing changes. */
	cr_expect_eq(address_book_note(b, "eth", "file", a, 200.0, 200.0), 0);
	address_book_lookup(b, "eth", out, &mtime);
	cr_expect_eq(mtime, 100.0, "same key version keeps the mtime");
	/* Other text, same key: derived again, same address, mtime kept. */
	cr_expect_eq(address_book_note(b, "eth", "file", a_upper, 300.0, 300.0), 0);
	address_book_lookup(b, "eth", out, &mtime);
	cr_expect_str_eq(out, ADDR_A);
	cr_expect_eq(mtime, 100.0, "an unchanged address keeps its mtime");
	/* Rotation. */
	cr_expect_eq(address_book_note(b, "eth", "vault", bkey, 400.0, 400.0), 0);
	address_book_lookup(b, "eth", out, &mtime);
	cr_expect_str_eq(out, ADDR_B);
	cr_expect_eq(mtime, 400.0);
	/* A second network does not disturb the first. */
	cr_expect_eq(address_book_note(b, "base", "file", a, 500.0, 500.0), 0);
	address_book_lookup(b, "eth", out, NULL);
	cr_expect_str_eq(out, ADDR_B);

	/* A key that is not an EVM key: no address, the old one dropped. */
	cr_expect_eq(address_book_note(b, "eth", "file", junk, 600.0, 600.0), -EINVAL);
	cr_expect_eq(address_book_lookup(b, "eth", out, NULL), -ENOENT);
	address_book_forget(b, "base", 700.0);
	cr_expect_eq(address_book_lookup(b, "base", out, NULL), -ENOENT);
	address_book_forget(b, "never-there", 700.0);

	secret_free(a);
	secret_free(a_upper);
	secret_free(bkey);
	secret_free(junk);
	address_book_free(b);
	netrec_table_clear(&nets);
}

Test(address_book, an_older_note_never_wins)
{
	struct address_book *b = NULL;
	char out[EVM_ADDRESS_TEXT + 1];
	double mtime;
	struct netrec_table nets;
	netrec_table_init(&nets, 0);
	cr_assert_eq(address_book_new(&nets, &b), 0);
	struct secret *a = key_of(KEY_A), *bkey = key_of(KEY_B), *junk = key_of("junk");
	/* A store of B completes at t=20; a fetch that started at t=10 read A. */
	cr_expect_eq(address_book_note(b, "eth", "file", bkey, 1000.0, 20.0), 0);
	cr_expect_eq(address_book_note(b, "eth", "file", a, 1001.0, 10.0), 0);
	cr_expect_eq(address_book_note(b, "eth", "file", junk, 1001.0, 10.0), 0, "ignored");
	address_book_lookup(b, "eth", out, &mtime);
	cr_expect_str_eq(out, ADDR_B);
	cr_expect_eq(mtime, 1000.0);
	/* A removal at t=25; a fetch that started at t=22 cannot bring B back,
	 * nor can a rendering show it. */
	address_book_forget(b, "eth", 25.0);
	cr_expect_eq(address_book_note(b, "eth", "file", bkey, 1001.5, 22.0), 0);
	cr_expect_eq(address_book_lookup(b, "eth", out, NULL), -ENOENT);
	struct strbuf info = STRBUF_INIT;
	cr_expect_eq(address_book_render_info(b, &info), 0);
	cr_expect(strstr(info.buf, "network=\"eth\"") == NULL, "%s", info.buf);
	strbuf_reset(&info);
	/* A later fetch sees A: a real rotation. */
	cr_expect_eq(address_book_note(b, "eth", "file", a, 1002.0, 30.0), 0);
	address_book_lookup(b, "eth", out, &mtime);
	cr_expect_str_eq(out, ADDR_A);
	cr_expect_eq(mtime, 1002.0);
	secret_free(a);
	secret_free(bkey);
	secret_free(junk);
	address_book_free(b);
	netrec_table_clear(&nets);
}

Test(address_book, many_networks_grow_the_table)
{
	struct address_book *b = NULL;
	struct netrec_table nets;
	netrec_table_init(&nets, 0);
	cr_assert_eq(address_book_new(&nets, &b), 0);
	struct secret *a = key_of(KEY_A);
	char name[32], out[EVM_ADDRESS_TEXT + 1];
	for (int i = 0; i < 300; i++) {
		snprintf(name, sizeof(name), "net-%d", i);
		cr_assert_eq(address_book_note(b, name, "file", a, i, i), 0);
	}
	for (int i = 0; i < 300; i++) {
		snprintf(name, sizeof(name), "net-%d", i);
		cr_assert_eq(address_book_lookup(b, name, out, NULL), 0, "%s", name);
		cr_expect_str_eq(out, ADDR_A);
	}
	secret_free(a);
	address_book_free(b);
	netrec_table_clear(&nets);
}

Test(address_book, key_info_rendering)
{
	struct address_book *b = NULL;
	struct strbuf out = STRBUF_INIT;
	struct netrec_table nets;
	netrec_table_init(&nets, 0);
	cr_assert_eq(address_book_new(&nets, &b), 0);
	cr_expect_eq(address_book_render_info(b, &out), 0);
	cr_expect(strstr(out.buf, "# TYPE omikuji_keyfs_key_info gauge\n") != NULL);
	cr_expect(strstr(out.buf, "omikuji_keyfs_key_info{") == NULL, "no entries, no samples");
	strbuf_reset(&out);

	struct secret *a = key_of(KEY_A), *bkey = key_of(KEY_B);
	address_book_note(b, "zeta", "vault", a, 1, 1);
	address_book_note(b, "alpha", "file", bkey, 1, 1);
	cr_expect_eq(address_book_render_info(b, &out), 0);
	const char *first = strstr(out.buf,
		"omikuji_keyfs_key_info{backend=\"file\",network=\"alpha\",address=\"" ADDR_B "\"} 1\n");
	const char *second = strstr(out.buf,
		"omikuji_keyfs_key_info{backend=\"vault\",network=\"zeta\",address=\"" ADDR_A "\"} 1\n");
	cr_expect(first && second && first < second, "sorted by network: %s", out.buf);
	cr_expect(strstr(out.buf, "4c0883") == NULL, "never the key");
	strbuf_reset(&out);
	secret_free(a);
	secret_free(bkey);
	address_book_free(b);
	netrec_table_clear(&nets);
}

/* ---- access -------------------------------------------------------------- */

static struct caller who(uid_t uid)
{
	struct caller c;
	memset(&c, 0, sizeof(c));
	c.uid = uid;
	c.gid = uid;
	c.ngroups = 0;
	return c;
}

Test(address_access, without_rules_everyone)
{
	struct config_keyfs cfg;
	memset(&cfg, 0, sizeof(cfg));
	struct access *a = NULL;
	char err[256];
	cr_assert_eq(access_new(&cfg, 1000, &a, err, sizeof(err)), 0);
	struct caller stranger = who(4242), owner = who(1000);
	cr_expect(access_allowed(a, &stranger, "eth", ACCESS_ADDRESS));
	cr_expect(!access_allowed(a, &stranger, "eth", ACCESS_READ));
	cr_expect(access_allowed(a, &owner, "eth", ACCESS_READ));
	access_free(a);
}

Test(address_access, address_grant_and_read_implies_it)
{
	struct config_access_rule r[2];
	memset(r, 0, sizeof(r));
	strlist_add(&r[0].networks, "eth*");
	strlist_add(&r[0].address, "uid:2001");
	strlist_add(&r[0].read, "uid:2002");
	strlist_add(&r[1].networks, "base");
	strlist_add(&r[1].list, "uid:2003");
	struct config_keyfs cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.access = r;
	cfg.n_access = 2;
	cfg.access_set = true;
	struct access *a = NULL;
	char err[256];
	cr_assert_eq(access_new(&cfg, 0, &a, err, sizeof(err)), 0, "%s", err);
	struct caller addr_only = who(2001), reader = who(2002), lister = who(2003), root = who(0);

	cr_expect(access_allowed(a, &addr_only, "eth-mainnet", ACCESS_ADDRESS));
	cr_expect(!access_allowed(a, &addr_only, "eth-mainnet", ACCESS_READ), "address is not read");
	cr_expect(!access_allowed(a, &addr_only, "base", ACCESS_ADDRESS), "globs apply");
	cr_expect(access_allowed(a, &reader, "eth-mainnet", ACCESS_ADDRESS), "read implies address");
	cr_expect(!access_allowed(a, &lister, "base", ACCESS_ADDRESS), "list does not");
	cr_expect(!access_allowed(a, &root, "eth-mainnet", ACCESS_ADDRESS), "root only by a rule");
	access_free(a);
	for (int i = 0; i < 2; i++) {
		strlist_clear(&r[i].networks);
		strlist_clear(&r[i].address);
		strlist_clear(&r[i].read);
		strlist_clear(&r[i].list);
	}
}

/* ---- configuration --------------------------------------------------------- */

static int load_yaml(const char *text, struct config *cfg, char *err, size_t errlen)
{
	char path[] = "/tmp/keyfs-address-config-XXXXXX";
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	int rc = config_load(path, 0, cfg, err, errlen);
	unlink(path);
	return rc;
}

Test(address_config, address_principals_and_metrics_addresses)
{
	struct config cfg;
	char err[512] = "";
	int rc = load_yaml("keyfs:\n"
	                   "  metrics_addresses: true\n"
	                   "  access:\n"
	                   "    - networks: [\"eth-*\"]\n"
	                   "      address: [\"uid:9100\", \"gid:42\"]\n", &cfg, err, sizeof(err));
	cr_assert_eq(rc, 0, "%s", err);
	cr_expect_eq(cfg.keyfs.metrics_addresses, 1);
	cr_assert_eq(cfg.keyfs.n_access, 1);
	cr_expect_eq(cfg.keyfs.access[0].address.n, 2);
	cr_expect_str_eq(cfg.keyfs.access[0].address.items[0], "uid:9100");
	config_free(&cfg);

	rc = load_yaml("keyfs:\n  access: []\n", &cfg, err, sizeof(err));
	cr_assert_eq(rc, 0, "%s", err);
	cr_expect_eq(cfg.keyfs.metrics_addresses, 0, "off by default");
	config_free(&cfg);

	rc = load_yaml("keyfs:\n  metrics_addresses: maybe\n", &cfg, err, sizeof(err));
	cr_expect_lt(rc, 0);
	cr_expect(strstr(err, ":2:") && strstr(err, "metrics_addresses"), "%s", err);
	rc = load_yaml("keyfs:\n  access:\n    - address: [\"root\"]\n", &cfg, err, sizeof(err));
	cr_expect_lt(rc, 0);
	cr_expect(strstr(err, "bad principal 'root'") != NULL, "%s", err);
}

/* ---- audit --------------------------------------------------------------- */

Test(address_audit, address_lines_verify)
{
	char dir[] = "/tmp/keyfs-address-audit-XXXXXX", path[128], err[256];
	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/audit.log", dir);
	struct audit *a = NULL;
	cr_assert_eq(audit_open(path, AUDIT_FAILURE_DENY, &a, err, sizeof(err)), 0, "%s", err);
	struct audit_record r = {
		.op = KEY_OP_ADDRESS, .network = "eth", .storage_type = "file", .status = true,
		.uid = 65534, .gid = 65534, .pid = 1, .process = "cat",
	};
	cr_assert_eq(audit_write(a, &r), 0);
	r.status = false;
	r.error = "access denied";
	cr_assert_eq(audit_write(a, &r), 0);
	audit_close(a);
	long bad = -1;
	FILE *report = fopen("/dev/null", "w");
	cr_expect_eq(audit_verify(path, report, &bad), 0, "bad line %ld", bad);
	fclose(report);
	FILE *f = fopen(path, "r");
	char line[1024];
	cr_assert(fgets(line, sizeof(line), f));
	cr_expect(strstr(line, "\"operation\":\"address\"") != NULL, "%s", line);
	cr_expect(strstr(line, "\"cached\"") == NULL, "cached is for get only");
	fclose(f);
	unlink(path);
	rmdir(dir);
}

/* ---- concurrency ----------------------------------------------------------- */

struct churn {
	struct address_book *book;
	const struct secret *keys[2];
	int id;
	long lookups_ok;
};

/* Notes alternate two versions on shared networks while others read: every
 * lookup must see one of the two addresses, never a torn one. */
static void *churn_main(void *arg)
{
	struct churn *c = arg;
	char name[16], out[EVM_ADDRESS_TEXT + 1];
	for (int i = 0; i < 300; i++) {
		snprintf(name, sizeof(name), "net-%d", i % 8);
		if ((i + c->id) % 3 == 0) {
			cr_assert_eq(address_book_note(c->book, name, "file", c->keys[(i / 3) % 2],
			                               1000.0 + i, (double)(c->id * 1000 + i)), 0);
		} else if ((i + c->id) % 7 == 0) {
			address_book_forget(c->book, name, (double)(c->id * 1000 + i));
		} else if (address_book_lookup(c->book, name, out, NULL) == 0) {
			cr_assert(strcmp(out, ADDR_A) == 0 || strcmp(out, ADDR_B) == 0, "%s", out);
			c->lookups_ok++;
		}
	}
	return NULL;
}

Test(address_book, concurrent_notes_lookups_forgets)
{
	struct address_book *b = NULL;
	struct netrec_table nets;
	netrec_table_init(&nets, 0);
	cr_assert_eq(address_book_new(&nets, &b), 0);
	struct secret *a = key_of(KEY_A), *bkey = key_of(KEY_B);
	struct churn c[8];
	pthread_t t[8];
	for (int i = 0; i < 8; i++) {
		c[i] = (struct churn){ b, { a, bkey }, i, 0 };
		cr_assert_eq(pthread_create(&t[i], NULL, churn_main, &c[i]), 0);
	}
	long ok = 0;
	for (int i = 0; i < 8; i++) {
		pthread_join(t[i], NULL);
		ok += c[i].lookups_ok;
	}
	cr_expect_gt(ok, 0, "some lookups found an entry");
	secret_free(a);
	secret_free(bkey);
	address_book_free(b);
	netrec_table_clear(&nets);
}

/* --- issue 15 round 6 (s6-diet): one digest per record.  The book knows
 * the version its address was derived from by the digest keys/ keeps for
 * the value as read (netrec_digest), not by a fingerprint of its own. --- */

/* What keyops.c's seen_note does with a value read: the record's digest
 * now names it; an address of another version is no longer known to be
 * this one's. */
static void seen(struct netrec_table *t, const char *network, const struct secret *key)
{
	unsigned char d[NETREC_DIGEST];
	netrec_digest(t, key, d);
	netrec_lock(t);
	struct netrec *r = netrec_get(t, network);
	cr_assert_not_null(r);
	if (!r->has_mac || memcmp(r->mac, d, sizeof(d)) != 0)
		r->address_of_mac = false;
	memcpy(r->mac, d, sizeof(d));
	r->has_mac = true;
	netrec_unlock(t);
}

/* The instance the book names for network, and whether its address is
 * known to be of the version the digest names. */
static const char *book_backend(struct netrec_table *t, const char *network, bool *of_mac)
{
	netrec_lock(t);
	struct netrec *r = netrec_find(t, network);
	cr_assert_not_null(r);
	const char *name = netrec_backend_name(t, r->backend);
	*of_mac = r->address_of_mac;
	netrec_unlock(t);
	return name;
}

Test(address_book, one_digest_tells_the_version)
{
	struct netrec_table nets, other;
	cr_assert_eq(netrec_table_init(&nets, 0), 0);
	cr_assert_eq(netrec_table_init(&other, 0), 0);
	struct address_book *b = NULL;
	cr_assert_eq(address_book_new(&nets, &b), 0);
	struct secret *a = key_of(KEY_A), *bkey = key_of(KEY_B);
	static const char file[] = "file", vault[] = "vault";
	char out[EVM_ADDRESS_TEXT + 1];
	bool of_mac;

	/* The digest: the same for the same key in one table, another for
	 * another key or in another table (keyed per table). */
	unsigned char d1[NETREC_DIGEST], d2[NETREC_DIGEST], d3[NETREC_DIGEST];
	netrec_digest(&nets, a, d1);
	netrec_digest(&nets, a, d2);
	cr_expect_eq(memcmp(d1, d2, sizeof(d1)), 0);
	netrec_digest(&nets, bkey, d2);
	cr_expect_neq(memcmp(d1, d2, sizeof(d1)), 0);
	netrec_digest(&other, a, d3);
	cr_expect_neq(memcmp(d1, d3, sizeof(d1)), 0);

	/* keys/ saw a, then the book derives its address: known as a's. */
	seen(&nets, "eth", a);
	cr_expect_eq(address_book_note(b, "eth", file, a, 100.0, 100.0), 0);
	cr_expect_str_eq(book_backend(&nets, "eth", &of_mac), file);
	cr_expect(of_mac);
	/* a again: known, not derived again (the instance stays, only the
	 * note's time moves). */
	cr_expect_eq(address_book_note(b, "eth", vault, a, 200.0, 200.0), 0);
	cr_expect_str_eq(book_backend(&nets, "eth", &of_mac), file, "a known version is not derived again");
	netrec_lock(&nets);
	cr_expect_eq(netrec_find(&nets, "eth")->address_seen, 200.0);
	netrec_unlock(&nets);

	/* keys/ saw b: the address (a's) is no longer known to be the
	 * version read, so a note of a derives again (same address). */
	seen(&nets, "eth", bkey);
	book_backend(&nets, "eth", &of_mac);
	cr_expect_not(of_mac, "a new digest: the address is of another version");
	cr_expect_eq(address_book_note(b, "eth", vault, a, 300.0, 300.0), 0);
	cr_expect_str_eq(book_backend(&nets, "eth", &of_mac), vault, "derived again");
	cr_expect_not(of_mac, "a's address is not b's");
	cr_expect_eq(address_book_lookup(b, "eth", out, NULL), 0);
	cr_expect_str_eq(out, ADDR_A);
	/* b's note: b's address, known as the version read. */
	cr_expect_eq(address_book_note(b, "eth", file, bkey, 400.0, 400.0), 0);
	cr_expect_eq(address_book_lookup(b, "eth", out, NULL), 0);
	cr_expect_str_eq(out, ADDR_B);
	cr_expect_str_eq(book_backend(&nets, "eth", &of_mac), file);
	cr_expect(of_mac);

	/* A tombstone forgets which version it was. */
	address_book_forget(b, "eth", 500.0);
	book_backend(&nets, "eth", &of_mac);
	cr_expect_not(of_mac);

	/* Without a digest from keys/, every note derives (never a wrong
	 * "known"). */
	cr_expect_eq(address_book_note(b, "base", file, a, 100.0, 100.0), 0);
	cr_expect_eq(address_book_note(b, "base", vault, a, 200.0, 200.0), 0);
	cr_expect_str_eq(book_backend(&nets, "base", &of_mac), vault);
	cr_expect_not(of_mac);

	secret_free(a);
	secret_free(bkey);
	address_book_free(b);
	netrec_table_clear(&nets);
	netrec_table_clear(&other);
}

/* address_book_note_digest: the note with the digest keys/ computed for the
 * same value (keyops hands it on instead of computing the HMAC twice) does
 * what address_book_note does: derives a new version, knows a seen one, and
 * with another key's digest never calls that key's address known. */
Test(address_book, note_with_the_digest_of_keys)
{
	struct netrec_table nets;
	cr_assert_eq(netrec_table_init(&nets, 0), 0);
	struct address_book *b = NULL;
	cr_assert_eq(address_book_new(&nets, &b), 0);
	struct secret *a = key_of(KEY_A), *bkey = key_of(KEY_B);
	static const char file[] = "file", vault[] = "vault";
	char out[EVM_ADDRESS_TEXT + 1];
	unsigned char da[NETREC_DIGEST], db[NETREC_DIGEST];
	bool of_mac;
	netrec_digest(&nets, a, da);
	netrec_digest(&nets, bkey, db);

	seen(&nets, "eth", a);
	cr_expect_eq(address_book_note_digest(b, "eth", file, a, da, 100.0, 100.0), 0);
	cr_expect_eq(address_book_lookup(b, "eth", out, NULL), 0);
	cr_expect_str_eq(out, ADDR_A);
	cr_expect_str_eq(book_backend(&nets, "eth", &of_mac), file);
	cr_expect(of_mac, "derived from the version keys/ read");
	/* the same version again: known, not derived again */
	cr_expect_eq(address_book_note_digest(b, "eth", vault, a, da, 200.0, 200.0), 0);
	cr_expect_str_eq(book_backend(&nets, "eth", &of_mac), file);
	/* keys/ read b: b's digest derives b's address */
	seen(&nets, "eth", bkey);
	cr_expect_eq(address_book_note_digest(b, "eth", vault, bkey, db, 300.0, 300.0), 0);
	cr_expect_eq(address_book_lookup(b, "eth", out, NULL), 0);
	cr_expect_str_eq(out, ADDR_B);
	cr_expect_str_eq(book_backend(&nets, "eth", &of_mac), vault);
	cr_expect(of_mac);
	/* a's note with a's digest while keys/ holds b's: derived, and not
	 * called the version keys/ read */
	cr_expect_eq(address_book_note_digest(b, "eth", file, a, da, 400.0, 400.0), 0);
	cr_expect_eq(address_book_lookup(b, "eth", out, NULL), 0);
	cr_expect_str_eq(out, ADDR_A);
	book_backend(&nets, "eth", &of_mac);
	cr_expect_not(of_mac);

	secret_free(a);
	secret_free(bkey);
	address_book_free(b);
	netrec_table_clear(&nets);
}
