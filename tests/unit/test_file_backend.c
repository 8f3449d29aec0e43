/* test_file_backend.c - the embedded encrypted `file` backend: roundtrips,
 * passphrase and master-key modes, tamper and truncation detection,
 * concurrency across threads and instances, and crash safety under SIGKILL.
 *
 * Every test works in its own mkdtemp directory under /tmp and uses
 * throwaway random keys.  Key values never go into assertion messages. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <openssl/rand.h>
#include "backend.h"
#include "config.h"
#include "backend_test_open.h"
#include "file_internal.h"

#define HEADER_LEN 52
#define NONCE_LEN 12
#define TAG_LEN 16

/* --- fixture: a temp dir and the store path in it ------------------------ */

static char tmpdir[64];
static char store_path[128];

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	return remove(p);
}

static void setup(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/omikuji-file-test-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
	snprintf(store_path, sizeof(store_path), "%s/keys.enc", tmpdir);
	unsetenv("OMIKUJI_KEYFS_PASSPHRASE");
}

static void teardown(void)
{
	if (tmpdir[0])
		nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(file_backend, .init = setup, .fini = teardown, .timeout = 240);

/* --- helpers ---------------------------------------------------------------- */

static void random_hex(char *out, size_t bytes)
{
	unsigned char raw[64];
	cr_assert_leq(bytes, sizeof(raw));
	cr_assert_eq(RAND_bytes(raw, (int)bytes), 1);
	for (size_t i = 0; i < bytes; i++)
		snprintf(out + 2 * i, 3, "%02x", raw[i]);
}

/* A throwaway EVM-shaped key. */
static struct secret *random_key(void)
{
	char k[67] = "0x";
	random_hex(k + 2, 32);
	struct secret *s = secret_from(k, 66);
	cr_assert_not_null(s);
	return s;
}

/* Open the store at path; passphrase NULL = whatever the environment says. */
static int try_open(const char *path, const char *passphrase_file, struct backend **b,
                    struct backend_err *err)
{
	struct config_backend cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.type = backend_type_find("file");
	cfg.name = (char *)"file";
	cfg.file.path = (char *)path;
	cfg.file.passphrase_file = (char *)passphrase_file;
	memset(err, 0, sizeof(*err));
	*b = NULL;
	return backend_test_open(&cfg, b, err);
}

static struct backend *open_ok(const char *path, const char *passphrase_file)
{
	struct backend *b;
	struct backend_err err;
	int rc = try_open(path, passphrase_file, &b, &err);
	cr_assert_eq(rc, 0, "open failed (%d): %s", rc, err.msg);
	cr_assert_not_null(b);
	return b;
}

static void store_ok(struct backend *b, const char *net, const struct secret *key)
{
	struct backend_err err = { "", false };
	int rc = b->ops->store(b, net, key, 0, &err);
	cr_assert_eq(rc, 0, "store %s failed (%d): %s", net, rc, err.msg);
}

/* 1 when net holds exactly key. */
static bool holds(struct backend *b, const char *net, const struct secret *key)
{
	struct secret *s = NULL;
	struct backend_err err = { "", false };
	int rc = b->ops->get(b, net, &s, 0, &err);
	bool same = rc == 0 && secret_equal(s, key);
	secret_free(s);
	return same;
}

static int get_rc(struct backend *b, const char *net)
{
	struct secret *s = NULL;
	int rc = b->ops->get(b, net, &s, 0, NULL);
	secret_free(s);
	return rc;
}

static size_t list_count(struct backend *b)
{
	struct strlist l = STRLIST_INIT;
	cr_assert_eq(b->ops->list(b, &l, 0, NULL), 0);
	strlist_sort_unique(&l);
	size_t n = l.n;
	strlist_clear(&l);
	return n;
}

static void write_file(const char *path, const void *p, size_t len, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
	cr_assert_geq(fd, 0, "create %s", path);
	cr_assert_eq(write(fd, p, len), (ssize_t)len);
	cr_assert_eq(fchmod(fd, mode), 0);
	close(fd);
}

static unsigned char *read_file(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY);
	cr_assert_geq(fd, 0, "open %s", path);
	struct stat st;
	cr_assert_eq(fstat(fd, &st), 0);
	unsigned char *buf = malloc((size_t)st.st_size + 1);
	cr_assert_not_null(buf);
	cr_assert_eq(read(fd, buf, (size_t)st.st_size), st.st_size);
	close(fd);
	*len = (size_t)st.st_size;
	return buf;
}

/* Replace path atomically with the given bytes (a new inode, as a writer would). */
static void replace_file(const char *path, const void *p, size_t len)
{
	char tmp[256];
	snprintf(tmp, sizeof(tmp), "%s.replace", path);
	write_file(tmp, p, len, 0600);
	cr_assert_eq(rename(tmp, path), 0);
}

static bool contains(const unsigned char *hay, size_t n, const void *needle, size_t m)
{
	return m <= n && memmem(hay, n, needle, m) != NULL;
}

static void set_passphrase_env(char *out, size_t bytes)
{
	random_hex(out, bytes);
	cr_assert_eq(setenv("OMIKUJI_KEYFS_PASSPHRASE", out, 1), 0);
}

/* A store of `n` random keys under "net-<i>", written with the current mode. */
static struct secret **populate(struct backend *b, size_t n)
{
	struct secret **keys = calloc(n, sizeof(*keys));
	cr_assert_not_null(keys);
	for (size_t i = 0; i < n; i++) {
		char net[32];
		snprintf(net, sizeof(net), "net-%zu", i);
		keys[i] = random_key();
		store_ok(b, net, keys[i]);
	}
	return keys;
}

static void free_keys(struct secret **keys, size_t n)
{
	for (size_t i = 0; i < n; i++)
		secret_free(keys[i]);
	free(keys);
}

/* --- roundtrips --------------------------------------------------------------- */

Test(file_backend, roundtrip_many_networks)
{
	char pass[65];
	set_passphrase_env(pass, 16);
	struct backend *b = open_ok(store_path, NULL);
	cr_expect_str_eq(b->type->name, "file");
	cr_expect_not(b->type->flags & BACKEND_REMOTE);

	enum { N = 60 };
	struct secret **keys = populate(b, N);
	for (size_t i = 0; i < N; i++) {
		char net[32];
		snprintf(net, sizeof(net), "net-%zu", i);
		cr_expect(holds(b, net, keys[i]), "get %s: wrong value", net);
	}

	struct strlist l = STRLIST_INIT;
	cr_assert_eq(b->ops->list(b, &l, 0, NULL), 0);
	strlist_sort_unique(&l);
	cr_expect_eq(l.n, N);
	for (size_t i = 0; i < N; i++) {
		char net[32];
		snprintf(net, sizeof(net), "net-%zu", i);
		cr_expect(strlist_contains(&l, net), "%s not listed", net);
	}
	strlist_clear(&l);

	/* replace every third, remove every fifth */
	for (size_t i = 0; i < N; i += 3) {
		char net[32];
		snprintf(net, sizeof(net), "net-%zu", i);
		secret_free(keys[i]);
		keys[i] = random_key();
		store_ok(b, net, keys[i]);
	}
	size_t removed = 0;
	for (size_t i = 0; i < N; i += 5) {
		char net[32];
		snprintf(net, sizeof(net), "net-%zu", i);
		struct backend_err err = { "", false };
		cr_expect_eq(b->ops->remove(b, net, 0, &err), 0, "remove %s: %s", net, err.msg);
		cr_expect_eq(b->ops->remove(b, net, 0, &err), -ENOENT, "second remove %s", net);
		secret_free(keys[i]);
		keys[i] = NULL;
		removed++;
	}
	for (size_t i = 0; i < N; i++) {
		char net[32];
		snprintf(net, sizeof(net), "net-%zu", i);
		if (keys[i])
			cr_expect(holds(b, net, keys[i]), "get %s after updates: wrong value", net);
		else
			cr_expect_eq(get_rc(b, net), -ENOENT, "%s should be gone", net);
	}
	cr_expect_eq(list_count(b), N - removed);

	struct backend_health h;
	memset(&h, 0, sizeof(h));
	b->ops->health(b, &h);
	cr_expect(h.up, "health down: %s", h.error);
	char expect[256];
	snprintf(expect, sizeof(expect), "path: %s\nkeys: %zu\n", store_path, N - removed);
	cr_expect(strncmp(h.detail, expect, strlen(expect)) == 0, "detail: %s", h.detail);

	/* Encrypted at rest: no key (nor the passphrase) appears in the file,
	 * which is private to its owner. */
	size_t len;
	unsigned char *raw = read_file(store_path, &len);
	for (size_t i = 0; i < N; i++)
		if (keys[i])
			cr_expect_not(contains(raw, len, keys[i]->data + 2, 16),
			              "key %zu found in plaintext", i);
	cr_expect_not(contains(raw, len, "net-1", 5), "network names are encrypted too");
	cr_expect_not(contains(raw, len, pass, strlen(pass)), "passphrase in file");
	free(raw);
	struct stat st;
	cr_assert_eq(stat(store_path, &st), 0);
	cr_expect_eq(st.st_mode & 0777, 0600, "store mode %o", st.st_mode & 0777);

	b->ops->close(b);
	free_keys(keys, N);
}

Test(file_backend, missing_store_is_empty_and_dirs_created)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/a/b/keys.enc", tmpdir);
	struct backend *b = open_ok(path, NULL);
	cr_expect_eq(list_count(b), 0);
	cr_expect_eq(get_rc(b, "ethereum"), -ENOENT);
	struct backend_err err = { "", false };
	cr_expect_eq(b->ops->remove(b, "ethereum", 0, &err), -ENOENT);
	/* The master key file was created, and with it an empty store, so
	 * that a missing store later means a deleted one (issue 9). */
	cr_expect_eq(access(path, F_OK), 0, "an empty store is written with a new master key");

	char dir[256];
	snprintf(dir, sizeof(dir), "%s/a/b", tmpdir);
	struct stat st;
	cr_assert_eq(stat(dir, &st), 0);
	cr_expect_eq(st.st_mode & 0777, 0700, "dir mode %o", st.st_mode & 0777);

	struct backend_health h;
	memset(&h, 0, sizeof(h));
	b->ops->health(b, &h);
	cr_expect(h.up, "health down: %s", h.error);
	cr_expect_not_null(strstr(h.detail, "keys: 0\n"));

	struct secret *k = random_key();
	store_ok(b, "ethereum", k);
	cr_expect_eq(access(path, F_OK), 0);
	cr_expect(holds(b, "ethereum", k));
	secret_free(k);
	b->ops->close(b);
}

Test(file_backend, invalid_arguments)
{
	struct backend *b = open_ok(store_path, NULL);
	struct secret *k = random_key();
	struct secret *empty = secret_new(4);
	struct backend_err err = { "", false };
	cr_expect_eq(b->ops->store(b, "bad/name", k, 0, &err), -EINVAL);
	cr_expect_eq(b->ops->store(b, "", k, 0, &err), -EINVAL);
	cr_expect_eq(b->ops->store(b, "ok", empty, 0, &err), -EINVAL);
	cr_expect_eq(list_count(b), 0, "nothing stored");
	secret_free(empty);
	secret_free(k);
	b->ops->close(b);
}

/* --- passphrases -------------------------------------------------------------- */

Test(file_backend, reopen_same_passphrase_file_and_env)
{
	/* A passphrase file's trailing newline is not part of the passphrase:
	 * the file "P\n" and the variable "P" open the same store. */
	char pass[33], pfile[256], content[40];
	random_hex(pass, 16);
	snprintf(pfile, sizeof(pfile), "%s/pass", tmpdir);
	snprintf(content, sizeof(content), "%s\n", pass);
	write_file(pfile, content, strlen(content), 0600);

	struct backend *b = open_ok(store_path, pfile);
	struct secret **keys = populate(b, 5);
	b->ops->close(b);

	cr_assert_eq(setenv("OMIKUJI_KEYFS_PASSPHRASE", pass, 1), 0);
	b = open_ok(store_path, NULL);
	for (size_t i = 0; i < 5; i++) {
		char net[32];
		snprintf(net, sizeof(net), "net-%zu", i);
		cr_expect(holds(b, net, keys[i]), "%s after reopen", net);
	}
	/* a write from this instance reopens with the file again */
	struct secret *k = random_key();
	store_ok(b, "extra", k);
	b->ops->close(b);
	unsetenv("OMIKUJI_KEYFS_PASSPHRASE");
	b = open_ok(store_path, pfile);
	cr_expect(holds(b, "extra", k));
	cr_expect_eq(list_count(b), 6);
	b->ops->close(b);
	secret_free(k);
	free_keys(keys, 5);
}

Test(file_backend, wrong_passphrase_is_a_clear_error)
{
	char pass[33], wrong[33];
	set_passphrase_env(pass, 16);
	struct backend *b = open_ok(store_path, NULL);
	struct secret **keys = populate(b, 3);
	b->ops->close(b);

	size_t before_len;
	unsigned char *before = read_file(store_path, &before_len);

	set_passphrase_env(wrong, 16);
	struct backend_err err;
	int rc = try_open(store_path, NULL, &b, &err);
	cr_expect_eq(rc, -EIO);
	cr_expect_null(b);
	char expect[256];
	snprintf(expect, sizeof(expect), "cannot decrypt %s: wrong passphrase or corrupted file",
	         store_path);
	cr_expect_str_eq(err.msg, expect);
	cr_expect_null(strstr(err.msg, wrong), "passphrase leaked into the message");
	cr_expect_null(strstr(err.msg, pass), "passphrase leaked into the message");

	/* No passphrase at all: the store says it needs one. */
	unsetenv("OMIKUJI_KEYFS_PASSPHRASE");
	rc = try_open(store_path, NULL, &b, &err);
	cr_expect_eq(rc, -EIO);
	cr_expect_not_null(strstr(err.msg, "passphrase"), "message: %s", err.msg);
	cr_expect_eq(access(store_path, F_OK), 0);

	/* Failed opens changed nothing; the right passphrase still works. */
	size_t after_len;
	unsigned char *after = read_file(store_path, &after_len);
	cr_expect(before_len == after_len && memcmp(before, after, after_len) == 0,
	          "store modified by a failed open");
	free(before);
	free(after);
	cr_assert_eq(setenv("OMIKUJI_KEYFS_PASSPHRASE", pass, 1), 0);
	b = open_ok(store_path, NULL);
	cr_expect(holds(b, "net-0", keys[0]));
	b->ops->close(b);
	free_keys(keys, 3);
}

Test(file_backend, empty_or_missing_passphrase_file)
{
	char pfile[256];
	snprintf(pfile, sizeof(pfile), "%s/pass", tmpdir);
	struct backend *b;
	struct backend_err err;
	cr_expect_lt(try_open(store_path, pfile, &b, &err), 0, "missing passphrase file");
	cr_expect_not_null(strstr(err.msg, pfile), "message: %s", err.msg);
	write_file(pfile, "\n", 1, 0600);
	cr_expect_lt(try_open(store_path, pfile, &b, &err), 0, "empty passphrase file");
	cr_expect_not_null(strstr(err.msg, "empty"), "message: %s", err.msg);
	cr_expect_null(b);
}

/* --- master key file ---------------------------------------------------------- */

Test(file_backend, master_key_file_mode)
{
	char master[256];
	snprintf(master, sizeof(master), "%s.master", store_path);
	struct backend *b = open_ok(store_path, NULL);
	struct stat st;
	cr_assert_eq(stat(master, &st), 0, "master key file created at open");
	cr_expect_eq(st.st_mode & 0777, 0600, "master mode %o", st.st_mode & 0777);
	cr_expect_eq(st.st_size, 32);
	struct secret **keys = populate(b, 4);
	b->ops->close(b);

	size_t mlen;
	unsigned char *m1 = read_file(master, &mlen);
	cr_assert_eq(mlen, 32);
	b = open_ok(store_path, NULL);
	for (size_t i = 0; i < 4; i++) {
		char net[32];
		snprintf(net, sizeof(net), "net-%zu", i);
		cr_expect(holds(b, net, keys[i]), "%s after reopen", net);
	}
	b->ops->close(b);
	unsigned char *m2 = read_file(master, &mlen);
	cr_expect(mlen == 32 && memcmp(m1, m2, 32) == 0, "master key file was replaced");

	/* the key does not sit in the store */
	size_t slen;
	unsigned char *raw = read_file(store_path, &slen);
	cr_expect_not(contains(raw, slen, m1, 32));
	free(raw);

	/* A group-readable master key is refused. */
	cr_assert_eq(chmod(master, 0640), 0);
	struct backend_err err;
	cr_expect_lt(try_open(store_path, NULL, &b, &err), 0);
	cr_expect_not_null(strstr(err.msg, "chmod 600"), "message: %s", err.msg);
	cr_assert_eq(chmod(master, 0600), 0);

	/* A passphrase cannot open a master-key store. */
	char pass[33];
	set_passphrase_env(pass, 16);
	cr_expect_eq(try_open(store_path, NULL, &b, &err), -EIO);
	unsetenv("OMIKUJI_KEYFS_PASSPHRASE");

	/* A different master key is a clear error. */
	unsigned char other[32];
	cr_assert_eq(RAND_bytes(other, 32), 1);
	cr_assert_eq(unlink(master), 0);
	write_file(master, other, 32, 0600);
	cr_expect_eq(try_open(store_path, NULL, &b, &err), -EIO);
	cr_expect_not_null(strstr(err.msg, "corrupted file"), "message: %s", err.msg);

	/* Without its master key file the store cannot be opened, and no new
	 * master key is made up for it. */
	cr_assert_eq(unlink(master), 0);
	cr_expect_eq(try_open(store_path, NULL, &b, &err), -EIO);
	cr_expect_not_null(strstr(err.msg, "missing"), "message: %s", err.msg);
	cr_expect_eq(access(master, F_OK), -1);

	/* Restored, it opens again. */
	write_file(master, m1, 32, 0600);
	b = open_ok(store_path, NULL);
	cr_expect(holds(b, "net-3", keys[3]));
	b->ops->close(b);
	free(m1);
	free(m2);
	free_keys(keys, 4);
}

/* --- damage --------------------------------------------------------------------- */

/* Opening a store whose bytes are `data` must fail with -EIO. */
static void expect_rejected(const unsigned char *data, size_t len, const char *what,
                            const char *msg_part)
{
	replace_file(store_path, data, len);
	struct backend *b;
	struct backend_err err;
	int rc = try_open(store_path, NULL, &b, &err);
	cr_expect_eq(rc, -EIO, "%s: open returned %d", what, rc);
	cr_expect_null(b, "%s: got a backend", what);
	if (rc == 0 && b)
		b->ops->close(b);
	char prefix[256];
	snprintf(prefix, sizeof(prefix), "cannot decrypt %s: ", store_path);
	cr_expect(strncmp(err.msg, prefix, strlen(prefix)) == 0, "%s: message: %s", what, err.msg);
	if (msg_part)
		cr_expect_not_null(strstr(err.msg, msg_part), "%s: message: %s", what, err.msg);
}

Test(file_backend, truncated_store_is_rejected)
{
	struct backend *b = open_ok(store_path, NULL);
	struct secret **keys = populate(b, 5);
	b->ops->close(b);
	size_t len;
	unsigned char *orig = read_file(store_path, &len);
	cr_assert_gt(len, HEADER_LEN + NONCE_LEN + TAG_LEN + 20);

	size_t cuts[] = { 0, 1, 8, HEADER_LEN - 1, HEADER_LEN, HEADER_LEN + NONCE_LEN,
	                  HEADER_LEN + NONCE_LEN + TAG_LEN - 1, HEADER_LEN + NONCE_LEN + TAG_LEN,
	                  len / 2, len - TAG_LEN, len - 1 };
	for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
		char what[64];
		snprintf(what, sizeof(what), "cut to %zu of %zu bytes", cuts[i], len);
		expect_rejected(orig, cuts[i], what, "truncated");
	}
	/* trailing garbage is not accepted either */
	unsigned char *longer = malloc(len + 1);
	memcpy(longer, orig, len);
	longer[len] = 0;
	expect_rejected(longer, len + 1, "one extra byte", "corrupted");

	/* the intact file still opens */
	replace_file(store_path, orig, len);
	b = open_ok(store_path, NULL);
	cr_expect(holds(b, "net-4", keys[4]));
	b->ops->close(b);
	free(longer);
	free(orig);
	free_keys(keys, 5);
}

Test(file_backend, bit_flips_in_every_region_are_rejected)
{
	struct backend *b = open_ok(store_path, NULL);
	struct secret **keys = populate(b, 5);
	b->ops->close(b);
	size_t len;
	unsigned char *orig = read_file(store_path, &len);
	unsigned char *copy = malloc(len);

	/* every byte of header, nonce and tag; a spread of ciphertext bytes */
	for (size_t off = 0; off < len; off++) {
		bool ct = off >= HEADER_LEN + NONCE_LEN && off < len - TAG_LEN;
		if (ct && off % 7 != 0)
			continue;
		const char *region = off < HEADER_LEN ? "header" :
		                     off < HEADER_LEN + NONCE_LEN ? "nonce" :
		                     ct ? "ciphertext" : "tag";
		memcpy(copy, orig, len);
		copy[off] ^= (unsigned char)(1u << (off % 8));
		char what[64];
		snprintf(what, sizeof(what), "bit %zu flipped in %s byte %zu", off % 8, region, off);
		expect_rejected(copy, len, what, NULL);
	}

	replace_file(store_path, orig, len);
	b = open_ok(store_path, NULL);
	cr_expect(holds(b, "net-0", keys[0]));
	b->ops->close(b);
	free(copy);
	free(orig);
	free_keys(keys, 5);
}

Test(file_backend, bit_flips_in_scrypt_header_are_rejected)
{
	char pass[33];
	set_passphrase_env(pass, 16);
	struct backend *b = open_ok(store_path, NULL);
	struct secret **keys = populate(b, 2);
	b->ops->close(b);
	size_t len;
	unsigned char *orig = read_file(store_path, &len);
	unsigned char *copy = malloc(len);
	/* kdf byte, N, r, p, salt, length: each changes what is derived or read */
	size_t offs[] = { 9, 13, 18, 23, 27, 28, 43, 51 };
	for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
		memcpy(copy, orig, len);
		copy[offs[i]] ^= 0x01;
		char what[64];
		snprintf(what, sizeof(what), "scrypt header byte %zu", offs[i]);
		expect_rejected(copy, len, what, NULL);
	}
	free(copy);
	free(orig);
	free_keys(keys, 2);
}

Test(file_backend, damage_seen_by_a_running_instance)
{
	struct backend *b = open_ok(store_path, NULL);
	struct secret **keys = populate(b, 3);
	cr_expect(holds(b, "net-1", keys[1]));   /* cached now */
	size_t len;
	unsigned char *orig = read_file(store_path, &len);
	orig[len - 3] ^= 0x40;
	replace_file(store_path, orig, len);
	struct backend_err err = { "", false };
	struct secret *s = NULL;
	cr_expect_eq(b->ops->get(b, "net-1", &s, 0, &err), -EIO, "stale key served from cache");
	cr_expect_null(s);
	cr_expect_not_null(strstr(err.msg, "corrupted"), "message: %s", err.msg);
	struct backend_health h;
	memset(&h, 0, sizeof(h));
	b->ops->health(b, &h);
	cr_expect_not(h.up);
	cr_expect_neq(h.error[0], '\0');
	/* a store over a damaged file is refused rather than losing the others */
	cr_expect_eq(b->ops->store(b, "net-9", keys[0], 0, &err), -EIO);
	free(orig);
	b->ops->close(b);
	free_keys(keys, 3);
}

Test(file_backend, leftover_temp_files_are_cleaned)
{
	struct backend *b = open_ok(store_path, NULL);
	struct secret **keys = populate(b, 2);
	b->ops->close(b);
	char tmp[256];
	snprintf(tmp, sizeof(tmp), "%s.tmp.AbC123", store_path);
	write_file(tmp, "partial", 7, 0600);
	b = open_ok(store_path, NULL);
	cr_expect_eq(access(tmp, F_OK), -1, "temp file left behind");
	cr_expect(holds(b, "net-1", keys[1]));
	b->ops->close(b);
	free_keys(keys, 2);
}

/* --- concurrency ------------------------------------------------------------------ */

enum { THREADS = 8, PER_THREAD = 15 };

struct worker {
	struct backend *b;        /* shared, or NULL: open an own instance */
	int id;
	struct secret *keys[PER_THREAD];
	int failures;
};

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	struct backend *b = w->b;
	struct backend_err err;
	if (!b && try_open(store_path, NULL, &b, &err) != 0) {
		w->failures = PER_THREAD;
		return NULL;
	}
	for (int i = 0; i < PER_THREAD; i++) {
		char net[32];
		snprintf(net, sizeof(net), "t%d-n%d", w->id, i);
		if (b->ops->store(b, net, w->keys[i], 0, &err) != 0)
			w->failures++;
	}
	if (!w->b)
		b->ops->close(b);
	return NULL;
}

static void run_workers(bool shared)
{
	struct backend *b = open_ok(store_path, NULL);
	struct worker w[THREADS];
	pthread_t th[THREADS];
	for (int t = 0; t < THREADS; t++) {
		w[t].b = shared ? b : NULL;
		w[t].id = t;
		w[t].failures = 0;
		for (int i = 0; i < PER_THREAD; i++) {
			unsigned char raw[32];
			cr_assert_eq(RAND_bytes(raw, 32), 1);
			w[t].keys[i] = secret_from(raw, 32);   /* binary keys are fine here */
		}
	}
	for (int t = 0; t < THREADS; t++)
		cr_assert_eq(pthread_create(&th[t], NULL, worker_run, &w[t]), 0);
	for (int t = 0; t < THREADS; t++)
		pthread_join(th[t], NULL);

	/* check through the instance that wrote, and through a fresh one */
	struct backend *fresh = open_ok(store_path, NULL);
	struct backend *views[2] = { b, fresh };
	for (int v = 0; v < 2; v++) {
		cr_expect_eq(list_count(views[v]), THREADS * PER_THREAD, "view %d", v);
		for (int t = 0; t < THREADS; t++) {
			cr_expect_eq(w[t].failures, 0, "thread %d failures", t);
			for (int i = 0; i < PER_THREAD; i++) {
				char net[32];
				snprintf(net, sizeof(net), "t%d-n%d", t, i);
				cr_expect(holds(views[v], net, w[t].keys[i]), "view %d: %s", v, net);
			}
		}
	}
	for (int t = 0; t < THREADS; t++)
		for (int i = 0; i < PER_THREAD; i++)
			secret_free(w[t].keys[i]);
	fresh->ops->close(fresh);
	b->ops->close(b);
}

Test(file_backend, concurrent_stores_one_instance)
{
	run_workers(true);
}

/* Each thread its own instance: only the cross-process flock keeps the
 * read-modify-writes from losing each other's keys. */
Test(file_backend, concurrent_stores_separate_instances)
{
	run_workers(false);
}

Test(file_backend, cross_instance_visibility)
{
	struct backend *a = open_ok(store_path, NULL);
	struct backend *b = open_ok(store_path, NULL);
	struct secret *k1 = random_key(), *k2 = random_key(), *k3 = random_key();

	store_ok(a, "shared", k1);
	cr_expect(holds(b, "shared", k1), "b does not see a's store");
	/* same length value, quick succession: must not be hidden by b's cache */
	for (int i = 0; i < 20; i++) {
		store_ok(b, "shared", (i % 2) ? k1 : k2);
		cr_expect(holds(a, "shared", (i % 2) ? k1 : k2), "a is stale at round %d", i);
	}
	struct backend_err err = { "", false };
	cr_expect_eq(b->ops->remove(b, "shared", 0, &err), 0);
	cr_expect_eq(get_rc(a, "shared"), -ENOENT, "a still sees a removed key");
	cr_expect_eq(list_count(a), 0);

	/* another process (as `key import` during a mount) */
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct backend *c;
		struct backend_err cerr;
		if (try_open(store_path, NULL, &c, &cerr) != 0)
			_exit(1);
		int rc = c->ops->store(c, "from-child", k3, 0, &cerr);
		c->ops->close(c);
		_exit(rc == 0 ? 0 : 2);
	}
	int status;
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child failed");
	cr_expect(holds(a, "from-child", k3), "a does not see the child's store");
	cr_expect(holds(b, "from-child", k3), "b does not see the child's store");

	/* store file deleted behind our back: an error, neither the cache nor
	 * an empty store (every key would seem to have vanished; issue 9) */
	cr_assert_eq(unlink(store_path), 0);
	cr_expect_eq(get_rc(a, "from-child"), -EIO);

	secret_free(k1);
	secret_free(k2);
	secret_free(k3);
	a->ops->close(a);
	b->ops->close(b);
}

/* --- crash safety ------------------------------------------------------------------- */

enum { CRASH_ROUNDS = 200, CRASH_OTHERS = 10 };

static void hot_value(char out[67], int round, unsigned seq)
{
	char pad[33];
	random_hex(pad, 16);
	snprintf(out, 67, "r%04d-s%08u-%s", round, seq, pad);
}

/* The child: store ever newer values of "hot", reporting each completed seq
 * on fd, until killed. */
static void crash_child(int round, int fd)
{
	struct backend *b;
	struct backend_err err;
	if (try_open(store_path, NULL, &b, &err) != 0)
		_exit(3);
	for (unsigned seq = 0; ; seq++) {
		char v[67];
		hot_value(v, round, seq);
		struct secret *s = secret_from(v, strlen(v));
		if (!s || b->ops->store(b, "hot", s, 0, &err) != 0)
			_exit(4);
		secret_free(s);
		if (write(fd, &seq, sizeof(seq)) != (ssize_t)sizeof(seq))
			_exit(5);
	}
}

Test(file_backend, crash_safety_under_sigkill)
{
	struct backend *b = open_ok(store_path, NULL);
	struct secret **others = populate(b, CRASH_OTHERS);
	b->ops->close(b);
	unsigned seed;
	cr_assert_eq(RAND_bytes((unsigned char *)&seed, sizeof(seed)), 1);
	srand(seed);

	int progressed = 0;
	for (int round = 0; round < CRASH_ROUNDS; round++) {
		int p[2];
		cr_assert_eq(pipe(p), 0);
		pid_t pid = fork();
		cr_assert_geq(pid, 0);
		if (pid == 0) {
			close(p[0]);
			crash_child(round, p[1]);
		}
		close(p[1]);
		/* wait for the first completed store, then kill at a random moment */
		unsigned seq, last = 0;
		bool any = read(p[0], &seq, sizeof(seq)) == (ssize_t)sizeof(seq);
		if (any)
			last = seq;
		usleep((useconds_t)(rand() % 15000));
		kill(pid, SIGKILL);
		int status;
		cr_assert_eq(waitpid(pid, &status, 0), pid);
		cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
		          "round %d: child died on its own (status %d)", round, status);
		while (read(p[0], &seq, sizeof(seq)) == (ssize_t)sizeof(seq))
			last = seq;
		close(p[0]);
		cr_assert(any, "round %d: the child never completed a store", round);

		/* The store opens and holds the last completed value or the one
		 * in flight: never an older one, never garbage. */
		struct backend_err err;
		int rc = try_open(store_path, NULL, &b, &err);
		cr_assert_eq(rc, 0, "round %d: store does not open: %s", round, err.msg);
		struct secret *s = NULL;
		cr_assert_eq(b->ops->get(b, "hot", &s, 0, &err), 0, "round %d: hot missing", round);
		int r = -1;
		unsigned got = 0;
		/* hot_value: "rNNNN-sNNNNNNNN-" (16) + 32 hex digits */
		bool shaped = s->len == 48 && sscanf((const char *)s->data, "r%4d-s%8u-", &r, &got) == 2;
		cr_assert(shaped, "round %d: hot holds an unexpected value", round);
		cr_assert_eq(r, round, "round %d: value from round %d", round, r);
		cr_assert(got == last || got == last + 1,
		          "round %d: seq %u, last completed %u", round, got, last);
		if (got > 0)
			progressed++;
		secret_free(s);
		for (int i = 0; i < CRASH_OTHERS; i++) {
			char net[32];
			snprintf(net, sizeof(net), "net-%d", i);
			cr_assert(holds(b, net, others[i]), "round %d: %s damaged", round, net);
		}
		cr_assert_eq(list_count(b), CRASH_OTHERS + 1, "round %d", round);
		b->ops->close(b);

		/* the open removed any temp file the kill left behind */
		DIR *d = opendir(tmpdir);
		cr_assert_not_null(d);
		struct dirent *de;
		while ((de = readdir(d)) != NULL)
			cr_expect_null(strstr(de->d_name, ".tmp."), "round %d: left %s", round,
			               de->d_name);
		closedir(d);
	}
	/* sanity of the test itself: kills did land after several stores */
	cr_expect_gt(progressed, 0);
	free_keys(others, CRASH_OTHERS);
}

/* Issue 8: a writer waits for another process's write at most 10 s, and
 * readers never queue behind it (the flock is never taken under the lock
 * that get and list need). */
Test(file_backend, foreign_flock_times_out_writers_not_readers)
{
	struct backend *b = open_ok(store_path, NULL);
	struct secret *k = random_key();
	store_ok(b, "eth", k);
	char lock[160];
	snprintf(lock, sizeof(lock), "%s.lock", store_path);
	/* Another open file description: conflicts like another process. */
	int fd = open(lock, O_RDWR);
	cr_assert_geq(fd, 0);
	cr_assert_eq(flock(fd, LOCK_EX), 0);

	struct backend_err err = { "", false };
	struct secret *got = NULL;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	cr_expect_eq(b->ops->get(b, "eth", &got, 0, &err), 0, "%s", err.msg);
	struct strlist names = STRLIST_INIT;
	cr_expect_eq(b->ops->list(b, &names, 0, &err), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	cr_expect(secret_equal(got, k));
	cr_expect_lt((double)(t1.tv_sec - t0.tv_sec), 2.0, "readers waited on the flock");
	strlist_clear(&names);
	secret_free(got);

	clock_gettime(CLOCK_MONOTONIC, &t0);
	cr_expect_eq(b->ops->store(b, "eth", k, 0, &err), -ETIMEDOUT);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	cr_expect_not_null(strstr(err.msg, "locked by another writer"), "%s", err.msg);
	double waited = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	cr_expect(waited >= 9.5 && waited < 30, "waited %.1f s", waited);

	close(fd);   /* released: writes go through again */
	store_ok(b, "eth", k);
	secret_free(k);
	b->ops->close(b);
}

/* --- issue 9: a hostile file system ------------------------------------------- */

Test(file_backend, master_key_without_its_store_is_refused)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/keys.enc", tmpdir);
	struct backend *b = open_ok(path, NULL);
	struct secret *k = secret_from("0x1111", 6);
	struct backend_err err = { "", false };
	cr_assert_eq(b->ops->store(b, "eth", k, 0, &err), 0);
	b->ops->close(b);
	cr_assert_eq(unlink(path), 0);
	struct backend *c = NULL;
	cr_expect_eq(try_open(path, NULL, &c, &err), -EIO);
	cr_expect_not_null(strstr(err.msg, "master key file"), "%s", err.msg);
	cr_expect_not_null(strstr(err.msg, "start over"), "%s", err.msg);
	cr_expect_eq(access(path, F_OK), -1, "no empty store was made");
	/* Starting over is explicit: remove the master key file. */
	char master[300];
	snprintf(master, sizeof(master), "%s.master", path);
	cr_assert_eq(unlink(master), 0);
	b = open_ok(path, NULL);
	cr_expect_eq(list_count(b), 0);
	b->ops->close(b);
	secret_free(k);
}

/* A FIFO at the store's path fails at once instead of hanging, at start
 * and at run time. */
Test(file_backend, fifo_at_the_store_path_never_blocks)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/keys.enc", tmpdir);
	struct backend *b = open_ok(path, NULL);
	cr_assert_eq(unlink(path), 0);
	cr_assert_eq(mkfifo(path, 0600), 0);
	alarm(10);   /* a hang fails the test instead of blocking it */
	cr_expect_eq(get_rc(b, "eth"), -EIO);
	b->ops->close(b);
	struct backend *c = NULL;
	struct backend_err err = { "", false };
	cr_expect_eq(try_open(path, NULL, &c, &err), -EIO);
	cr_expect_not_null(strstr(err.msg, "not a regular file"), "%s", err.msg);
	alarm(0);
}

/* The decrypted map's parser (fuzz byte 7 found it): a stored name with a
 * NUL inside parsed as its prefix, so serialising gave other bytes.  Such
 * a name is damage, refused like any other; a sound map round-trips. */
Test(file_backend, map_name_with_nul_is_damage)
{
	static const unsigned char good[] = {
		0, 0, 0, 1,   3, 'a', 'b', 'c',   0, 0, 0, 2,   'k', 'v',   /* big-endian */
	};
	cr_assert_eq(file_map_roundtrip(good, sizeof(good)), 0);
	unsigned char bad[sizeof(good)];
	memcpy(bad, good, sizeof(good));
	bad[6] = '\0';   /* "a\0c" */
	cr_assert_eq(file_map_roundtrip(bad, sizeof(bad)), -EIO);
	bad[6] = 'b';
	bad[7] = '\0';   /* "ab\0" */
	cr_assert_eq(file_map_roundtrip(bad, sizeof(bad)), -EIO);
}
