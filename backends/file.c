/* file.c - the embedded default backend: every key in one file, encrypted at
 * rest with AES-256-GCM.
 *
 * On-disk layout (integers big-endian):
 *
 *    0  magic "OMKKEYS1"                 \
 *    8  version (1)                       |
 *    9  kdf: 1 = master key file, 2 = scrypt
 *   10  reserved, 0                       |  header, authenticated as AAD
 *   12  scrypt N (u64; 0 with a master key)
 *   20  scrypt r (u32), 24 scrypt p (u32) |
 *   28  salt (16 bytes; 0 with a master key)
 *   44  ciphertext length (u64)          /
 *   52  nonce (12 bytes, fresh random per write)
 *   64  ciphertext
 *  end  GCM tag (16 bytes)
 *
 * Plaintext: u32 count, then per key: u8 name length, name, u32 key length,
 * key.  It is only ever held in a struct secret.
 *
 * The ciphertext length is in the header so that a cut-off file is reported
 * as "truncated" rather than as a bad tag.
 *
 * Writes go to a temp file in the same directory which is fsynced and renamed
 * over the store, then the directory is fsynced: a crash leaves the old or
 * the new store.  Read-modify-write is serialised by a mutex inside the
 * process and by flock(<path>.lock) across processes (`key import` while a
 * mount runs).  The decrypted map is cached in secret memory and reused while
 * the store file's identity (dev, inode, size, mtime and the nonce, which is
 * new on every write) is unchanged, so a get is an open + pread.
 */
#include "backend.h"
#include "clock.h"
#include "backend_config.h"
#include "file_internal.h"
#include "fileowner.h"
#include "keyformat.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#define FILE_MAGIC          "OMKKEYS1"
#define FILE_VERSION        1
#define FILE_KDF_MASTER     1
#define FILE_KDF_SCRYPT     2
#define FILE_SALT_LEN       16
#define FILE_HEADER_LEN     52   /* everything before the nonce: the AAD */
#define FILE_NONCE_OFF      52
#define FILE_NONCE_LEN      12
#define FILE_CT_OFF         64
#define FILE_TAG_LEN        16
#define FILE_KEY_LEN        32
#define FILE_MIN_SIZE       (FILE_CT_OFF + FILE_TAG_LEN)
#define FILE_MAX_PAYLOAD    (64u << 20)  /* far above any real key set */
#define FILE_NAME_MAX       64

/* scrypt cost for new stores: about 32 MiB and 50-100 ms, paid once at open. */
#define FILE_SCRYPT_N       (1u << 15)
#define FILE_SCRYPT_R       8u
#define FILE_SCRYPT_P       1u

#define FILE_PASSPHRASE_MAX 4096
#define FILE_TMP_SUFFIX     ".tmp."

struct file_entry {
	char name[FILE_NAME_MAX + 1];
	struct secret *key;
};

struct file_map {
	struct file_entry *v;
	size_t n;
	size_t cap;
};

struct file_backend {
	struct backend base;
	pthread_mutex_t lock;      /* guards everything below */
	char *path;
	char *dir;
	char *lock_path;
	char *master_path;
	char *tmp_prefix;          /* basename(path) + ".tmp." */
	bool scrypt_mode;          /* passphrase configured */
	struct secret *passphrase; /* scrypt mode: kept to re-derive if another process re-salts */
	struct secret *key;        /* AES key for (salt, n, r, p) below */
	uint64_t n;
	uint32_t r, p;
	unsigned char salt[FILE_SALT_LEN];

	/* The cached decrypted store and the identity of the file it came from. */
	struct file_map map;
	bool cached;
	bool absent;               /* cached: the store file does not exist */
	bool had_store;            /* the store existed (read or written) since open */
	bool master_created;       /* file_open() created the master key file */
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtim;
	unsigned char nonce[FILE_NONCE_LEN];
};

static struct file_backend *file_of(struct backend *b)
{
	return (struct file_backend *)b;
}

/* --- small helpers ------------------------------------------------------- */

static void file_put_u32(unsigned char *p, uint32_t v)
{
	p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v;
}

static void file_put_u64(unsigned char *p, uint64_t v)
{
	file_put_u32(p, (uint32_t)(v >> 32));
	file_put_u32(p + 4, (uint32_t)v);
}

static uint32_t file_get_u32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t file_get_u64(const unsigned char *p)
{
	return (uint64_t)file_get_u32(p) << 32 | file_get_u32(p + 4);
}

static bool file_all_zero(const unsigned char *p, size_t len)
{
	unsigned char acc = 0;
	for (size_t i = 0; i < len; i++)
		acc |= p[i];
	return acc == 0;
}

static char *file_concat(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	char *s = malloc(la + lb + 1);
	if (!s)
		return NULL;
	memcpy(s, a, la);
	memcpy(s + la, b, lb + 1);
	return s;
}

static int file_write_all(int fd, const void *p, size_t len)
{
	const unsigned char *c = p;
	while (len) {
		ssize_t w = write(fd, c, len);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		c += w;
		len -= (size_t)w;
	}
	return 0;
}

/* Read exactly len bytes at offset off; -EIO on a short read. */
static int file_pread_all(int fd, void *p, size_t len, off_t off)
{
	unsigned char *c = p;
	while (len) {
		ssize_t r = pread(fd, c, len, off);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -EIO;
		c += r;
		len -= (size_t)r;
		off += r;
	}
	return 0;
}

/* mkdir -p with mode 0700 for the directories it creates. */
static int file_mkdir_p(const char *dir)
{
	char *d = strdup(dir);
	if (!d)
		return -ENOMEM;
	int rc = 0;
	for (char *p = d + 1; ; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char c = *p;
		*p = '\0';
		if (fileowner_mkdir(d, 0700) < 0 && errno != EEXIST) {
			rc = -errno;
			break;
		}
		*p = c;
		if (c == '\0')
			break;
	}
	free(d);
	return rc;
}

static int file_fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = fsync(fd) < 0 ? -errno : 0;
	close(fd);
	return rc;
}

/* How long a writer waits for another process's write (`key import` beside
 * a mount) before it gives up with ETIMEDOUT. */
#define FILE_FLOCK_DEADLINE_SECONDS 10.0

/* Take the cross-process lock; returns the fd to close, or -errno.  Never
 * called with fb->lock held: readers must not queue behind another
 * process's write. */
static int file_flock(struct file_backend *fb, struct backend_err *err)
{
	int fd = open(fb->lock_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd >= 0)
		fileowner_inherit(fd, fb->lock_path, fb->path);
	else if (errno == EEXIST)
		fd = open(fb->lock_path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		int e = errno;
		backend_err_set(err, "cannot open lock file %s: %s", fb->lock_path, strerror(e));
		return -EIO;
	}
	double deadline = clock_monotonic() + FILE_FLOCK_DEADLINE_SECONDS;
	while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;
		if (e == EWOULDBLOCK && clock_monotonic() < deadline) {
			struct timespec pause = { 0, 5 * 1000 * 1000 };
			nanosleep(&pause, NULL);
			continue;
		}
		if (e == EINTR)
			continue;
		close(fd);
		if (e == EWOULDBLOCK) {
			backend_err_set(err, "%s is locked by another writer for more than %.0f s",
			                fb->lock_path, FILE_FLOCK_DEADLINE_SECONDS);
			return -ETIMEDOUT;
		}
		backend_err_set(err, "cannot lock %s: %s", fb->lock_path, strerror(e));
		return -EIO;
	}
	return fd;
}

/* Remove temp files of writers that died before their rename.  Called with
 * the flock held, so no live writer owns one. */
static void file_clean_temps(struct file_backend *fb)
{
	DIR *d = opendir(fb->dir);
	if (!d)
		return;
	size_t plen = strlen(fb->tmp_prefix);
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, fb->tmp_prefix, plen) != 0)
			continue;
		if (unlinkat(dirfd(d), de->d_name, 0) == 0)
			log_kv(LOG_LEVEL_INFO, "removed leftover temp file of the key store",
			       "storage_type", "file", "file", de->d_name, (char *)NULL);
	}
	closedir(d);
}

/* --- the decrypted map ------------------------------------------------------ */

static void file_map_clear(struct file_map *m)
{
	for (size_t i = 0; i < m->n; i++)
		secret_free(m->v[i].key);
	free(m->v);
	m->v = NULL;
	m->n = m->cap = 0;
}

static struct file_entry *file_map_find(struct file_map *m, const char *name)
{
	for (size_t i = 0; i < m->n; i++)
		if (strcmp(m->v[i].name, name) == 0)
			return &m->v[i];
	return NULL;
}

/* Add name -> key, taking ownership of key (freed on failure). */
static int file_map_add(struct file_map *m, const char *name, size_t name_len,
                        struct secret *key)
{
	if (m->n == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 16;
		struct file_entry *v = realloc(m->v, cap * sizeof(*v));
		if (!v) {
			secret_free(key);
			return -ENOMEM;
		}
		m->v = v;
		m->cap = cap;
	}
	struct file_entry *e = &m->v[m->n++];
	memcpy(e->name, name, name_len);
	e->name[name_len] = '\0';
	e->key = key;
	return 0;
}

static void file_map_delete(struct file_map *m, struct file_entry *e)
{
	secret_free(e->key);
	*e = m->v[--m->n];
}

/* Parse a decrypted payload; -EIO when it is not well formed. */
static int file_map_parse(const struct secret *plain, struct file_map *out)
{
	const unsigned char *p = plain->data, *end = plain->data + plain->len;
	if (end - p < 4)
		return -EIO;
	uint32_t count = file_get_u32(p);
	p += 4;
	for (uint32_t i = 0; i < count; i++) {
		if (end - p < 1)
			return -EIO;
		size_t nlen = *p++;
		/* a NUL inside would cut the name short: the store is damaged */
		if (nlen == 0 || nlen > FILE_NAME_MAX || (size_t)(end - p) < nlen + 4 ||
		    memchr(p, '\0', nlen))
			return -EIO;
		char name[FILE_NAME_MAX + 1];
		memcpy(name, p, nlen);
		name[nlen] = '\0';
		p += nlen;
		size_t klen = file_get_u32(p);
		p += 4;
		if (!network_name_valid(name) || klen == 0 || (size_t)(end - p) < klen)
			return -EIO;
		struct secret *key = secret_from(p, klen);
		if (!key)
			return -ENOMEM;
		p += klen;
		int rc = file_map_add(out, name, nlen, key);
		if (rc < 0)
			return rc;
	}
	return p == end ? 0 : -EIO;
}

/* Serialise m without `skip` and with (add_name, add_key) when given. */
static int file_map_serialise(const struct file_map *m, const char *skip,
                              const char *add_name, const struct secret *add_key,
                              struct secret **out)
{
	struct secret *s = secret_new(256);
	if (!s)
		return -ENOMEM;
	unsigned char b[4] = { 0 };
	uint32_t count = 0;
	int rc = secret_append(s, b, 4);
	for (size_t i = 0; rc == 0 && i <= m->n; i++) {
		const char *name;
		const struct secret *key;
		if (i < m->n) {
			name = m->v[i].name;
			key = m->v[i].key;
			if (skip && strcmp(name, skip) == 0)
				continue;
		} else if (add_name) {
			name = add_name;
			key = add_key;
		} else {
			break;
		}
		unsigned char nlen = (unsigned char)strlen(name);
		file_put_u32(b, (uint32_t)key->len);
		if ((rc = secret_append(s, &nlen, 1)) < 0 ||
		    (rc = secret_append(s, name, nlen)) < 0 ||
		    (rc = secret_append(s, b, 4)) < 0 ||
		    (rc = secret_append(s, key->data, key->len)) < 0)
			break;
		count++;
	}
	if (rc < 0) {
		secret_free(s);
		return rc;
	}
	file_put_u32(s->data, count);
	*out = s;
	return 0;
}

/* --- keys ------------------------------------------------------------------- */

static bool file_scrypt_params_ok(uint64_t n, uint32_t r, uint32_t p)
{
	if (n < (1u << 10) || n > (1u << 20) || (n & (n - 1)) != 0)
		return false;
	if (r < 1 || r > 16 || p < 1 || p > 4)
		return false;
	return n * r <= (1u << 23);   /* at most 1 GiB of scrypt memory */
}

/* Derive fb->key for the given salt and cost.  Slow by design. */
static int file_derive(struct file_backend *fb, const unsigned char *salt,
                       uint64_t n, uint32_t r, uint32_t p, struct backend_err *err)
{
	struct secret *key = secret_new(FILE_KEY_LEN);
	if (!key)
		return -ENOMEM;
	uint64_t maxmem = 128ull * r * (n + 2) + 128ull * r * p + (1u << 20);
	if (EVP_PBE_scrypt((const char *)fb->passphrase->data, fb->passphrase->len,
	                   salt, FILE_SALT_LEN, n, r, p, maxmem,
	                   key->data, FILE_KEY_LEN) != 1) {
		secret_free(key);
		backend_err_set(err, "key derivation (scrypt) failed for %s", fb->path);
		return -EIO;
	}
	key->len = FILE_KEY_LEN;
	secret_free(fb->key);
	fb->key = key;
	memcpy(fb->salt, salt, FILE_SALT_LEN);
	fb->n = n;
	fb->r = r;
	fb->p = p;
	return 0;
}

/* Read the passphrase file; trailing CR/LF are not part of the passphrase. */
static int file_read_passphrase(const char *path, struct secret **out, struct backend_err *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		backend_err_set(err, "cannot read passphrase file %s: %s", path, strerror(e));
		return -EIO;
	}
	struct secret *s = secret_new(FILE_PASSPHRASE_MAX + 1);
	int rc = 0;
	if (!s) {
		rc = -ENOMEM;
		goto out;
	}
	while (s->len <= FILE_PASSPHRASE_MAX) {
		ssize_t r = read(fd, s->data + s->len, s->cap - s->len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;
			backend_err_set(err, "cannot read passphrase file %s: %s", path, strerror(e));
			rc = -EIO;
			goto out;
		}
		if (r == 0)
			break;
		s->len += (size_t)r;
	}
	if (s->len > FILE_PASSPHRASE_MAX) {
		backend_err_set(err, "passphrase file %s is too large", path);
		rc = -EINVAL;
		goto out;
	}
	while (s->len && (s->data[s->len - 1] == '\n' || s->data[s->len - 1] == '\r'))
		s->data[--s->len] = 0;
	if (s->len == 0) {
		backend_err_set(err, "passphrase file %s is empty", path);
		rc = -EINVAL;
		goto out;
	}
	*out = s;
	s = NULL;
out:
	secret_free(s);
	close(fd);
	return rc;
}

/* Read <path>.master, or create it (random, 0600, atomically via a linked
 * temp file) when there is no store yet.  Called with the flock held. */
static int file_load_master(struct file_backend *fb, struct backend_err *err)
{
	struct secret *key = secret_new(FILE_KEY_LEN);
	char *tmp = NULL;
	int fd = -1, rc = 0;
	if (!key)
		return -ENOMEM;

	for (int attempt = 0; attempt < 2; attempt++) {
		fd = open(fb->master_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd >= 0)
			break;
		if (errno != ENOENT) {
			int e = errno;
			backend_err_set(err, "cannot open master key file %s: %s",
			                fb->master_path, strerror(e));
			rc = -EIO;
			goto out;
		}
		if (access(fb->path, F_OK) == 0) {
			backend_err_set(err, "cannot decrypt %s: no passphrase configured and "
			                "master key file %s is missing", fb->path, fb->master_path);
			rc = -EIO;
			goto out;
		}
		/* First use: write a temp file completely, then link() it into
		 * place, so nobody ever sees a partial master key. */
		tmp = file_concat(fb->path, FILE_TMP_SUFFIX "XXXXXX");
		if (!tmp) {
			rc = -ENOMEM;
			goto out;
		}
		int tfd = mkostemp(tmp, O_CLOEXEC);
		if (tfd < 0) {
			int e = errno;
			backend_err_set(err, "cannot create master key file in %s: %s",
			                fb->dir, strerror(e));
			rc = -EIO;
			goto out;
		}
		fileowner_inherit(tfd, fb->master_path, NULL);
		unsigned char raw[FILE_KEY_LEN];
		rc = RAND_bytes(raw, sizeof(raw)) == 1 ? 0 : -EIO;
		if (rc == 0)
			rc = file_write_all(tfd, raw, sizeof(raw));
		secret_wipe(raw, sizeof(raw));
		if (rc == 0 && fsync(tfd) < 0)
			rc = -errno;
		close(tfd);
		if (rc == 0 && link(tmp, fb->master_path) < 0 && errno != EEXIST)
			rc = -errno;
		unlink(tmp);
		free(tmp);
		tmp = NULL;
		if (rc < 0) {
			backend_err_set(err, "cannot create master key file %s: %s",
			                fb->master_path, strerror(-rc));
			rc = -EIO;
			goto out;
		}
		(void)file_fsync_dir(fb->dir);
		fb->master_created = true;
		/* loop: read it back (ours, or the one that won a race) */
	}
	if (fd < 0) {
		backend_err_set(err, "cannot open master key file %s", fb->master_path);
		rc = -EIO;
		goto out;
	}

	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		backend_err_set(err, "master key file %s is not a regular file", fb->master_path);
		rc = -EIO;
		goto out;
	}
	if (st.st_mode & 077) {
		backend_err_set(err, "master key file %s is accessible by group or others "
		                "(mode %03o); chmod 600 it", fb->master_path,
		                (unsigned)(st.st_mode & 0777));
		rc = -EACCES;
		goto out;
	}
	if (st.st_size != FILE_KEY_LEN || file_pread_all(fd, key->data, FILE_KEY_LEN, 0) < 0) {
		backend_err_set(err, "master key file %s is invalid (expected %d bytes)",
		                fb->master_path, FILE_KEY_LEN);
		rc = -EIO;
		goto out;
	}
	key->len = FILE_KEY_LEN;
	fb->key = key;
	key = NULL;
out:
	if (fd >= 0)
		close(fd);
	free(tmp);
	secret_free(key);
	return rc;
}

/* --- reading and writing the store ------------------------------------------ */

static void file_set_identity(struct file_backend *fb, const struct stat *st,
                              const unsigned char *nonce)
{
	fb->cached = true;
	fb->absent = false;
	fb->dev = st->st_dev;
	fb->ino = st->st_ino;
	fb->size = st->st_size;
	fb->mtim = st->st_mtim;
	memcpy(fb->nonce, nonce, FILE_NONCE_LEN);
}

static bool file_same_identity(const struct file_backend *fb, const struct stat *st)
{
	return fb->cached && !fb->absent && fb->dev == st->st_dev && fb->ino == st->st_ino &&
	       fb->size == st->st_size && fb->mtim.tv_sec == st->st_mtim.tv_sec &&
	       fb->mtim.tv_nsec == st->st_mtim.tv_nsec;
}

/* Decrypt and parse the open store fd into *out. */
static int file_load(struct file_backend *fb, int fd, const struct stat *st,
                     struct file_map *out, struct backend_err *err)
{
	unsigned char *buf = NULL;
	struct secret *plain = NULL;
	EVP_CIPHER_CTX *ctx = NULL;
	int rc = -EIO;

	if (st->st_size < FILE_MIN_SIZE) {
		backend_err_set(err, "cannot decrypt %s: truncated", fb->path);
		goto out;
	}
	if ((uint64_t)st->st_size > (uint64_t)FILE_MIN_SIZE + FILE_MAX_PAYLOAD) {
		backend_err_set(err, "cannot decrypt %s: corrupted file (too large)", fb->path);
		goto out;
	}
	size_t size = (size_t)st->st_size;
	buf = malloc(size);
	if (!buf) {
		rc = -ENOMEM;
		goto out;
	}
	if (file_pread_all(fd, buf, size, 0) < 0) {
		backend_err_set(err, "cannot read %s (changed while reading?)", fb->path);
		goto out;
	}

	if (memcmp(buf, FILE_MAGIC, 8) != 0) {
		backend_err_set(err, "cannot decrypt %s: not a key store or corrupted file (bad magic)",
		                fb->path);
		goto out;
	}
	if (buf[8] != FILE_VERSION) {
		backend_err_set(err, "cannot decrypt %s: unsupported store version %u or corrupted file",
		                fb->path, buf[8]);
		goto out;
	}
	unsigned kdf = buf[9];
	uint64_t n = file_get_u64(buf + 12);
	uint32_t r = file_get_u32(buf + 20), p = file_get_u32(buf + 24);
	const unsigned char *salt = buf + 28;
	uint64_t ct_len = file_get_u64(buf + 44);
	bool header_ok = buf[10] == 0 && buf[11] == 0;
	if (kdf == FILE_KDF_MASTER)
		header_ok = header_ok && file_all_zero(buf + 12, 32);
	else if (kdf == FILE_KDF_SCRYPT)
		header_ok = header_ok && file_scrypt_params_ok(n, r, p);
	else
		header_ok = false;
	if (!header_ok || ct_len > FILE_MAX_PAYLOAD) {
		backend_err_set(err, "cannot decrypt %s: corrupted file (bad header)", fb->path);
		goto out;
	}
	if (size < FILE_MIN_SIZE + ct_len) {
		backend_err_set(err, "cannot decrypt %s: truncated", fb->path);
		goto out;
	}
	if (size > FILE_MIN_SIZE + ct_len) {
		backend_err_set(err, "cannot decrypt %s: corrupted file (trailing data)", fb->path);
		goto out;
	}
	if (kdf == FILE_KDF_SCRYPT && !fb->scrypt_mode) {
		backend_err_set(err, "cannot decrypt %s: the store is protected by a passphrase, "
		                "but none is configured (passphrase_file or "
		                "$OMIKUJI_KEYFS_PASSPHRASE)", fb->path);
		goto out;
	}
	if (kdf == FILE_KDF_MASTER && fb->scrypt_mode) {
		backend_err_set(err, "cannot decrypt %s: the store is protected by the master key "
		                "file %s, but a passphrase is configured", fb->path, fb->master_path);
		goto out;
	}
	if (kdf == FILE_KDF_SCRYPT &&
	    (!fb->key || fb->n != n || fb->r != r || fb->p != p ||
	     memcmp(fb->salt, salt, FILE_SALT_LEN) != 0)) {
		/* Another process created the store with its own salt. */
		rc = file_derive(fb, salt, n, r, p, err);
		if (rc < 0)
			goto out;
		rc = -EIO;
	}

	plain = secret_new((size_t)ct_len);
	ctx = EVP_CIPHER_CTX_new();
	if (!plain || !ctx) {
		rc = -ENOMEM;
		goto out;
	}
	int outl = 0, finl = 0;
	if (EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, FILE_NONCE_LEN, NULL) != 1 ||
	    EVP_DecryptInit_ex(ctx, NULL, NULL, fb->key->data, buf + FILE_NONCE_OFF) != 1 ||
	    EVP_DecryptUpdate(ctx, NULL, &outl, buf, FILE_HEADER_LEN) != 1 ||
	    EVP_DecryptUpdate(ctx, plain->data, &outl, buf + FILE_CT_OFF, (int)ct_len) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, FILE_TAG_LEN,
	                        buf + FILE_CT_OFF + ct_len) != 1 ||
	    EVP_DecryptFinal_ex(ctx, plain->data + outl, &finl) != 1) {
		backend_err_set(err, "cannot decrypt %s: wrong %s or corrupted file", fb->path,
		                fb->scrypt_mode ? "passphrase" : "master key file");
		goto out;
	}
	plain->len = (size_t)outl + (size_t)finl;

	rc = file_map_parse(plain, out);
	if (rc < 0) {
		file_map_clear(out);
		if (rc == -EIO)
			backend_err_set(err, "cannot decrypt %s: corrupted content", fb->path);
		goto out;
	}
	file_set_identity(fb, st, buf + FILE_NONCE_OFF);
	rc = 0;
out:
	EVP_CIPHER_CTX_free(ctx);
	secret_free(plain);
	free(buf);
	return rc;
}

/* Bring the cached map up to date with the file.  Called with fb->lock. */
static int file_refresh(struct file_backend *fb, struct backend_err *err)
{
	/* Never block in open (a FIFO put at the path would hang every key
	 * operation behind fb->lock) and never follow a symlink. */
	int fd = open(fb->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW);
	if (fd < 0) {
		int e = errno;
		file_map_clear(&fb->map);
		if (e == ENOENT && fb->had_store) {
			/* Not an empty store: every key would seem to have gone. */
			fb->cached = false;
			backend_err_set(err, "the key store %s was removed while in use", fb->path);
			return -EIO;
		}
		if (e == ENOENT) {
			fb->cached = true;
			fb->absent = true;
			return 0;
		}
		fb->cached = false;
		backend_err_set(err, "cannot read %s: %s", fb->path, strerror(e));
		return -EIO;
	}
	struct stat st;
	int rc = 0;
	if (fstat(fd, &st) < 0) {
		int e = errno;
		backend_err_set(err, "cannot stat %s: %s", fb->path, strerror(e));
		rc = -EIO;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		file_map_clear(&fb->map);
		fb->cached = false;
		backend_err_set(err, "%s is not a regular file", fb->path);
		rc = -EIO;
		goto out;
	}
	fb->had_store = true;
	if (file_same_identity(fb, &st)) {
		unsigned char nonce[FILE_NONCE_LEN];
		if (file_pread_all(fd, nonce, sizeof(nonce), FILE_NONCE_OFF) == 0 &&
		    memcmp(nonce, fb->nonce, sizeof(nonce)) == 0)
			goto out;
	}
	struct file_map fresh = { NULL, 0, 0 };
	rc = file_load(fb, fd, &st, &fresh, err);
	file_map_clear(&fb->map);
	if (rc < 0) {
		fb->cached = false;   /* never serve keys from a store we cannot read */
		goto out;
	}
	fb->map = fresh;
out:
	close(fd);
	return rc;
}

/* Encrypt plain and atomically replace the store with it.  Called with
 * fb->lock and the flock held. */
static int file_write_store(struct file_backend *fb, const struct secret *plain,
                            struct backend_err *err)
{
	size_t total = FILE_MIN_SIZE + plain->len;
	unsigned char *buf = malloc(total);
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	char *tmp = file_concat(fb->path, FILE_TMP_SUFFIX "XXXXXX");
	int fd = -1, rc = -EIO;
	bool tmp_created = false;

	if (!buf || !ctx || !tmp) {
		rc = -ENOMEM;
		goto out;
	}
	memset(buf, 0, FILE_CT_OFF);
	memcpy(buf, FILE_MAGIC, 8);
	buf[8] = FILE_VERSION;
	if (fb->scrypt_mode) {
		buf[9] = FILE_KDF_SCRYPT;
		file_put_u64(buf + 12, fb->n);
		file_put_u32(buf + 20, fb->r);
		file_put_u32(buf + 24, fb->p);
		memcpy(buf + 28, fb->salt, FILE_SALT_LEN);
	} else {
		buf[9] = FILE_KDF_MASTER;
	}
	file_put_u64(buf + 44, plain->len);
	if (RAND_bytes(buf + FILE_NONCE_OFF, FILE_NONCE_LEN) != 1) {
		backend_err_set(err, "no randomness for a nonce");
		goto out;
	}
	int outl = 0, finl = 0;
	if (EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, FILE_NONCE_LEN, NULL) != 1 ||
	    EVP_EncryptInit_ex(ctx, NULL, NULL, fb->key->data, buf + FILE_NONCE_OFF) != 1 ||
	    EVP_EncryptUpdate(ctx, NULL, &outl, buf, FILE_HEADER_LEN) != 1 ||
	    EVP_EncryptUpdate(ctx, buf + FILE_CT_OFF, &outl, plain->data, (int)plain->len) != 1 ||
	    EVP_EncryptFinal_ex(ctx, buf + FILE_CT_OFF + outl, &finl) != 1 ||
	    (size_t)outl + (size_t)finl != plain->len ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, FILE_TAG_LEN,
	                        buf + FILE_CT_OFF + plain->len) != 1) {
		backend_err_set(err, "encryption failed");
		goto out;
	}

	fd = mkostemp(tmp, O_CLOEXEC);   /* O_CREAT|O_EXCL, mode 0600 */
	if (fd < 0) {
		int e = errno;
		backend_err_set(err, "cannot create a temp file in %s: %s", fb->dir, strerror(e));
		goto out;
	}
	tmp_created = true;
	struct stat st;
	/* Root (`key import`) keeps the store readable by a run_as daemon. */
	int e = fileowner_inherit(fd, fb->path, fb->path);
	if (e == 0)
		e = file_write_all(fd, buf, total);
	if (e == 0 && fsync(fd) < 0)
		e = -errno;
	if (e == 0 && fstat(fd, &st) < 0)
		e = -errno;
	if (e == 0 && close(fd) < 0)
		e = -errno;
	else if (e != 0)
		close(fd);
	fd = -1;
	if (e == 0 && rename(tmp, fb->path) < 0)
		e = -errno;
	if (e != 0) {
		backend_err_set(err, "cannot write %s: %s", fb->path, strerror(-e));
		goto out;
	}
	tmp_created = false;
	/* The new store is in place; a failed directory sync only weakens
	 * durability across a power cut, so it is logged, not returned. */
	if (file_fsync_dir(fb->dir) < 0)
		log_kv(LOG_LEVEL_WARN, "cannot fsync the key store directory",
		       "storage_type", "file", "path", fb->dir, (char *)NULL);
	file_set_identity(fb, &st, buf + FILE_NONCE_OFF);
	fb->had_store = true;
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	if (tmp_created)
		unlink(tmp);
	free(tmp);
	EVP_CIPHER_CTX_free(ctx);
	free(buf);
	return rc;
}

int file_map_roundtrip(const void *data, size_t len)
{
	struct file_map m = { NULL, 0, 0 };
	struct secret *plain = secret_from(data, len), *again = NULL;
	if (!plain)
		return -ENOMEM;
	int rc = file_map_parse(plain, &m);
	if (rc == 0)
		rc = file_map_serialise(&m, NULL, NULL, NULL, &again);
	if (rc == 0 && !secret_equal(again, plain))
		rc = -EPROTO;
	secret_free(again);
	file_map_clear(&m);
	secret_free(plain);
	return rc;
}

/* --- backend ops ------------------------------------------------------------ */

static void file_close(struct backend *b)
{
	struct file_backend *fb = file_of(b);
	if (!fb)
		return;
	file_map_clear(&fb->map);
	secret_free(fb->key);
	secret_free(fb->passphrase);
	secret_wipe(fb->salt, sizeof(fb->salt));
	pthread_mutex_destroy(&fb->lock);
	free(fb->path);
	free(fb->dir);
	free(fb->lock_path);
	free(fb->master_path);
	free(fb->tmp_prefix);
	free(fb);
}

/* A master key file without its store.  Just created: write the empty
 * store now, so that from here on a missing store always means a deleted
 * one.  Otherwise the store was deleted (or never restored): refuse, rather
 * than start an empty store that looks like every key vanished. */
static int file_master_without_store(struct file_backend *fb, struct backend_err *err)
{
	if (!fb->master_created) {
		backend_err_set(err, "%s is missing but its master key file exists: restore it, or "
		                "to start over empty remove %s", fb->path, fb->master_path);
		return -EIO;
	}
	struct secret *plain = NULL;
	int rc = file_map_serialise(&fb->map, NULL, NULL, NULL, &plain);
	if (rc == 0)
		rc = file_write_store(fb, plain, err);
	secret_free(plain);
	if (rc == 0)
		fb->absent = false;
	return rc;
}

static int file_open(const struct config_backend *cfg, const char *name, struct backend **out,
                     struct backend_err *err)
{
	(void)name;
	const char *path = cfg->file.path;
	if (!path || !*path || path[strlen(path) - 1] == '/') {
		backend_err_set(err, "file backend: key_storage.file.path is not set to a file");
		return -EINVAL;
	}
	struct file_backend *fb = calloc(1, sizeof(*fb));
	if (!fb)
		return -ENOMEM;
	fb->base.ops = &file_backend_ops;
	pthread_mutex_init(&fb->lock, NULL);
	int rc = -ENOMEM, lockfd = -1;

	fb->path = strdup(path);
	const char *slash = strrchr(path, '/');
	if (slash == path)
		fb->dir = strdup("/");
	else if (slash)
		fb->dir = strndup(path, (size_t)(slash - path));
	else
		fb->dir = strdup(".");
	fb->lock_path = file_concat(path, ".lock");
	fb->master_path = file_concat(path, ".master");
	fb->tmp_prefix = file_concat(slash ? slash + 1 : path, FILE_TMP_SUFFIX);
	if (!fb->path || !fb->dir || !fb->lock_path || !fb->master_path || !fb->tmp_prefix)
		goto fail;

	rc = file_mkdir_p(fb->dir);
	if (rc < 0) {
		backend_err_set(err, "cannot create directory %s: %s", fb->dir, strerror(-rc));
		rc = -EIO;
		goto fail;
	}

	const char *env_pass = getenv("OMIKUJI_KEYFS_PASSPHRASE");
	if (cfg->file.passphrase_file) {
		rc = file_read_passphrase(cfg->file.passphrase_file, &fb->passphrase, err);
		if (rc < 0)
			goto fail;
	} else if (env_pass && *env_pass) {
		fb->passphrase = secret_from(env_pass, strlen(env_pass));
		if (!fb->passphrase) {
			rc = -ENOMEM;
			goto fail;
		}
	}
	fb->scrypt_mode = fb->passphrase != NULL;

	lockfd = file_flock(fb, err);
	if (lockfd < 0) {
		rc = lockfd;
		goto fail;
	}
	file_clean_temps(fb);
	if (!fb->scrypt_mode) {
		rc = file_load_master(fb, err);
		if (rc < 0)
			goto fail;
	}
	/* Read the store now, so that a wrong passphrase or a damaged file
	 * fails the mount at start instead of the first read. */
	rc = file_refresh(fb, err);
	if (rc == 0 && !fb->scrypt_mode && fb->absent)
		rc = file_master_without_store(fb, err);
	if (rc < 0)
		goto fail;
	if (fb->scrypt_mode && !fb->key) {
		/* No store yet: choose the salt it will be created with. */
		unsigned char salt[FILE_SALT_LEN];
		if (RAND_bytes(salt, sizeof(salt)) != 1) {
			backend_err_set(err, "no randomness for a salt");
			rc = -EIO;
			goto fail;
		}
		rc = file_derive(fb, salt, FILE_SCRYPT_N, FILE_SCRYPT_R, FILE_SCRYPT_P, err);
		if (rc < 0)
			goto fail;
	}
	close(lockfd);
	*out = &fb->base;
	return 0;
fail:
	if (lockfd >= 0)
		close(lockfd);
	file_close(&fb->base);
	return rc;
}

static int file_get(struct backend *b, const char *network, struct secret **out, double deadline,
                    struct backend_err *err)
{
	struct file_backend *fb = file_of(b);
	pthread_mutex_lock(&fb->lock);
	int rc = file_refresh(fb, err);
	if (rc == 0) {
		struct file_entry *e = file_map_find(&fb->map, network);
		if (!e)
			rc = -ENOENT;
		else if (!(*out = secret_dup(e->key)))
			rc = -ENOMEM;
	}
	pthread_mutex_unlock(&fb->lock);
	return rc;
}

/* Read-modify-write: remove `network`, then add (network, key) if key. */
static int file_update(struct file_backend *fb, const char *network, const struct secret *key,
                       struct backend_err *err)
{
	struct secret *plain = NULL, *copy = NULL;
	/* The cross-process lock first, then the in-process one. */
	int lockfd = file_flock(fb, err);
	if (lockfd < 0)
		return lockfd;
	pthread_mutex_lock(&fb->lock);
	int rc = file_refresh(fb, err);
	if (rc < 0)
		goto out;
	struct file_entry *e = file_map_find(&fb->map, network);
	if (!key && !e) {
		rc = -ENOENT;
		goto out;
	}
	if (key && !(copy = secret_dup(key))) {
		rc = -ENOMEM;
		goto out;
	}
	rc = file_map_serialise(&fb->map, network, key ? network : NULL, key, &plain);
	if (rc == 0)
		rc = file_write_store(fb, plain, err);
	if (rc < 0)
		goto out;
	/* On disk now: mirror the change in the cache. */
	if (e && copy) {
		secret_free(e->key);
		e->key = copy;
		copy = NULL;
	} else if (e) {
		file_map_delete(&fb->map, e);
	} else {
		rc = file_map_add(&fb->map, network, strlen(network), copy);
		copy = NULL;
		if (rc < 0) {
			fb->cached = false;   /* re-read next time */
			rc = 0;
		}
	}
out:
	if (lockfd >= 0)
		close(lockfd);
	pthread_mutex_unlock(&fb->lock);
	secret_free(copy);
	secret_free(plain);
	return rc;
}

static int file_store(struct backend *b, const char *network, const struct secret *key,
                      double deadline, struct backend_err *err)
{
	if (!network_name_valid(network)) {
		backend_err_set(err, "invalid network name");
		return -EINVAL;
	}
	if (!key || key->len == 0 || key->len > KEY_MAX_BYTES) {
		backend_err_set(err, "key is empty or too large");
		return -EINVAL;
	}
	return file_update(file_of(b), network, key, err);
}

static int file_remove(struct backend *b, const char *network, double deadline,
                       struct backend_err *err)
{
	if (!network_name_valid(network)) {
		backend_err_set(err, "invalid network name");
		return -EINVAL;
	}
	return file_update(file_of(b), network, NULL, err);
}

static int file_list(struct backend *b, struct strlist *out, double deadline,
                     struct backend_err *err)
{
	struct file_backend *fb = file_of(b);
	pthread_mutex_lock(&fb->lock);
	int rc = file_refresh(fb, err);
	for (size_t i = 0; rc == 0 && i < fb->map.n; i++)
		rc = strlist_add(out, fb->map.v[i].name);
	pthread_mutex_unlock(&fb->lock);
	return rc;
}

static void file_health(struct backend *b, struct backend_health *out)
{
	struct file_backend *fb = file_of(b);
	struct backend_err err = { "", false };
	double t0 = clock_monotonic();

	pthread_mutex_lock(&fb->lock);
	int rc = file_refresh(fb, &err);
	size_t n = fb->map.n;
	bool absent = fb->absent;
	pthread_mutex_unlock(&fb->lock);

	if (rc == 0 && absent && access(fb->dir, W_OK) < 0) {
		int e = errno;
		backend_err_set(&err, "store %s does not exist and %s is not writable: %s",
		                fb->path, fb->dir, strerror(e));
		rc = -EIO;
	}
	out->up = rc == 0;
	out->latency_seconds = clock_monotonic() - t0;
	snprintf(out->error, sizeof(out->error), "%s", rc == 0 ? "" : err.msg);
	snprintf(out->detail, sizeof(out->detail), "path: %s\nkeys: %zu\nkdf: %s\n",
	         fb->path, rc == 0 ? n : (size_t)0,
	         fb->scrypt_mode ? "scrypt" : "master-key-file");
}

const struct backend_ops file_backend_ops = {
	.open = file_open,
	.get = file_get,
	.store = file_store,
	.remove = file_remove,
	.list = file_list,
	.health = file_health,
	.close = file_close,
};
