/* audit.c - the audit trail: one hash-chained JSON line per key access.
 *
 * Exact bytes.  Every line is
 *
 *     PREFIX ,"hash":"<64 lower-hex>"} \n        (no spaces; shown spaced)
 *
 * where PREFIX is everything from the opening '{' up to and including the
 * digits of the seq field, i.e. it ends with `,"seq":<N>`.  The fields come
 * in this order: timestamp, level, target, message, operation, network,
 * storage_type, status, cached (get only), refresh (only when true), uid,
 * gid, pid, process, error (only when set), anomaly (only when set), seq,
 * hash.  The hash is
 *
 *     hex(SHA-256(PREV || PREFIX))
 *
 * with PREV the 64 ASCII hex characters of the previous line's hash (64 '0'
 * characters for seq 1).  So the hash covers raw bytes, not a re-serialised
 * JSON object, and audit_verify() checks it on the bytes as read.
 *
 * Chain state (seq, previous hash) and the write(2) of the line are taken
 * under one mutex, so file order, seq order and the chain always agree.
 * Each line is a single write(2) on an O_APPEND descriptor, with no stdio
 * buffering and no fsync: once write(2) returned the line is in the kernel's
 * page cache, so a crash of the daemon loses nothing, while a crash of the
 * machine may lose the last lines (the chain then ends early; it does not
 * break).  A failed or short write does not advance the chain; the torn part
 * of a short write is truncated away (the daemon is the only writer), or,
 * if that fails, terminated with a newline so the next line starts clean,
 * and verify flags the torn line.
 *
 * Restart: audit_open() reads the file backwards from its end to the last
 * line that parses and continues its seq and hash.  A torn last line (no
 * final newline) is skipped and terminated with a newline, so it stays in
 * the file as evidence and verify reports it.
 *
 * Rotation: audit_reopen() opens the path again and the chain carries on, so
 * the first line of a rotated-in file has seq > 1.  Verify takes the files
 * oldest first as one chain.  A chain that does not start at seq 1 is a
 * failure (lines are missing at the start) unless --start SEQ:HASH, a
 * checkpoint the daemon wrote to its application log, says where it
 * resumes; a chain that ends before --expect-seq (the gauge
 * omikuji_keyfs_audit_last_seq) is missing lines at the end.
 *
 * Intent lines: in deny mode a store or remove first writes a line with
 * `"intent":true` (after `status`, status true: the change is about to be
 * made) and only then changes the backend; the usual line with the outcome
 * follows.  When the intent line cannot be written, the backend is left
 * unchanged and the caller gets EIO.
 */
#include "audit.h"
#include "clock.h"
#include "fileowner.h"
#include "log.h"
#include "secret.h"
#include "strbuf.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <nettle/hmac.h>
#include <nettle/sha2.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define AUDIT_HASH_HEX 64
/* `,"hash":"` + 64 hex + `"}`: the bytes after PREFIX, before the newline. */
#define AUDIT_SUFFIX_LEN (9 + AUDIT_HASH_HEX + 2)
/* No record comes near this (network names are <= 64 bytes, comm <= 16);
 * the cap bounds what a caller's mistake can write and what open() scans. */
#define AUDIT_LINE_MAX (64 * 1024)
/* Recovery on open reads at most this much of the file's tail. */
#define AUDIT_TAIL_MAX (16 * 1024 * 1024)

#define LIT(s) s, sizeof(s) - 1

struct audit {
	pthread_mutex_t lock;           /* guards everything below */
	char *path;
	int fd;
	enum audit_failure mode;
	unsigned long long seq;         /* seq of the last line written, 0 = none */
	char prev_hash[AUDIT_HASH_HEX + 1];
	struct strbuf line;             /* reused for every line (no malloc per write) */
	double path_checked_at;         /* monotonic time the path was last compared */
	struct secret *mac;             /* keyed chain (audit_set_key), else NULL */
	time_t ts_second;               /* second that ts_prefix formats */
	char ts_prefix[32];             /* "YYYY-MM-DDTHH:MM:SS" */
	mode_t file_mode;               /* audit_set_access(); 0 = as created (0600) */
	gid_t file_gid;                 /* (gid_t)-1 = keep */
};

static const char audit_zero_hash[AUDIT_HASH_HEX + 1] =
	"0000000000000000000000000000000000000000000000000000000000000000";

/* The link: hex(SHA-256(prev || data)), or with a keyed chain
 * (keyfs.audit_key_file) HMAC-SHA256 under the key over the same bytes, so
 * that whoever can write the log but does not hold the key cannot recompute
 * the chain.  mac: the keyed HMAC state (audit_mac_new()), NULL for the plain
 * link.  nettle directly rather than OpenSSL's EVP layer: the EVP calls cost
 * 12 700 instructions per line under callgrind (issue 15), two thirds of the
 * line, against ~5 000 for the same compression function behind nettle's
 * plain calls. */
static int audit_link_hex(const struct secret *mac, const char *prev, const char *data,
                          size_t len, char out[AUDIT_HASH_HEX + 1])
{
	static const char hex[] = "0123456789abcdef";
	uint8_t digest[SHA256_DIGEST_SIZE];

	if (!mac) {
		struct sha256_ctx c;
		sha256_init(&c);
		sha256_update(&c, AUDIT_HASH_HEX, (const uint8_t *)prev);
		sha256_update(&c, len, (const uint8_t *)data);
		sha256_digest(&c, sizeof(digest), digest);
	} else {
		struct hmac_sha256_ctx c;
		memcpy(&c, mac->data, sizeof(c));
		hmac_sha256_update(&c, AUDIT_HASH_HEX, (const uint8_t *)prev);
		hmac_sha256_update(&c, len, (const uint8_t *)data);
		hmac_sha256_digest(&c, sizeof(digest), digest);
		explicit_bzero(&c, sizeof(c));   /* key-derived state */
	}
	for (size_t i = 0; i < sizeof(digest); i++) {
		out[2 * i] = hex[digest[i] >> 4];
		out[2 * i + 1] = hex[digest[i] & 0xf];
	}
	out[AUDIT_HASH_HEX] = 0;
	return 0;
}

/* The keyed HMAC-SHA256 state of key, in a locked secret; NULL on failure. */
static struct secret *audit_mac_new(const struct secret *key)
{
	struct hmac_sha256_ctx c;
	struct secret *s = secret_new(sizeof(c));
	if (!s)
		return NULL;
	hmac_sha256_set_key(&c, key->len, key->data);
	memcpy(s->data, &c, sizeof(c));
	s->len = sizeof(c);
	explicit_bzero(&c, sizeof(c));
	return s;
}

static bool audit_is_hash(const char *s, size_t len)
{
	if (len != AUDIT_HASH_HEX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

/* The PREFIX length of a line (without its newline) that has the hash
 * suffix, with the stored hash copied out; -1 when the suffix is missing. */
static long audit_split(const char *line, size_t len, char hash[AUDIT_HASH_HEX + 1])
{
	if (len < AUDIT_SUFFIX_LEN + 2)
		return -1;
	const char *s = line + len - AUDIT_SUFFIX_LEN;
	if (memcmp(s, LIT(",\"hash\":\"")) != 0 || s[9 + AUDIT_HASH_HEX] != '"' ||
	    s[10 + AUDIT_HASH_HEX] != '}' || !audit_is_hash(s + 9, AUDIT_HASH_HEX))
		return -1;
	memcpy(hash, s + 9, AUDIT_HASH_HEX);
	hash[AUDIT_HASH_HEX] = 0;
	return (long)(len - AUDIT_SUFFIX_LEN);
}

/* snprintf is slow enough to show on the read path; numbers are simple. */
static void audit_append_u64(struct strbuf *b, unsigned long long v)
{
	char tmp[24];
	size_t i = sizeof(tmp);
	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	strbuf_append(b, tmp + i, sizeof(tmp) - i);
}

static void audit_append_i64(struct strbuf *b, long long v)
{
	if (v < 0) {
		strbuf_append(b, LIT("-"));
		audit_append_u64(b, 0ULL - (unsigned long long)v);
	} else {
		audit_append_u64(b, (unsigned long long)v);
	}
}

static void audit_append_string(struct strbuf *b, const char *name, size_t name_len,
                                const char *value)
{
	strbuf_append(b, name, name_len);
	strbuf_json_escape(b, value ? value : "");
	strbuf_append(b, LIT("\""));
}

/* Called with the lock held: the timestamp is taken in file order too. */
static void audit_append_timestamp(struct audit *a, struct strbuf *b)
{
	double wall = clock_wall();
	time_t secs = (time_t)wall;
	if (secs != a->ts_second || !a->ts_prefix[0]) {
		char full[40];
		clock_rfc3339((double)secs, full, sizeof(full));
		memcpy(a->ts_prefix, full, 19);
		a->ts_prefix[19] = 0;
		a->ts_second = secs;
	}
	/* Same rounding as clock_rfc3339(). */
	long usec = (long)((wall - (double)secs) * 1e6);
	if (usec < 0)
		usec = 0;
	if (usec > 999999)
		usec = 999999;
	char frac[9] = ".000000Z";
	for (int i = 6; i >= 1; i--) {
		frac[i] = (char)('0' + usec % 10);
		usec /= 10;
	}
	strbuf_append(b, LIT("{\"timestamp\":\""));
	strbuf_append(b, a->ts_prefix, 19);
	strbuf_append(b, frac, 8);
	strbuf_append(b, LIT("\""));
}

static void audit_format_prefix(struct audit *a, const struct audit_record *r,
                                unsigned long long seq)
{
	struct strbuf *b = &a->line;

	audit_append_timestamp(a, b);
	if (r->status)
		strbuf_append(b, LIT(",\"level\":\"info\""));
	else
		strbuf_append(b, LIT(",\"level\":\"warn\""));
	strbuf_append(b, LIT(",\"target\":\"omikuji::audit\""
	                     ",\"message\":\"Key storage operation\""));
	audit_append_string(b, LIT(",\"operation\":\""), key_op_name(r->op));
	audit_append_string(b, LIT(",\"network\":\""),
	                    r->op == KEY_OP_LIST ? "" : r->network);
	audit_append_string(b, LIT(",\"storage_type\":\""), r->storage_type);
	if (r->status)
		strbuf_append(b, LIT(",\"status\":true"));
	else
		strbuf_append(b, LIT(",\"status\":false"));
	if (r->intent)
		strbuf_append(b, LIT(",\"intent\":true"));
	if (r->op == KEY_OP_GET) {
		if (r->cached)
			strbuf_append(b, LIT(",\"cached\":true"));
		else
			strbuf_append(b, LIT(",\"cached\":false"));
		if (r->refresh)
			strbuf_append(b, LIT(",\"refresh\":true"));
	}
	strbuf_append(b, LIT(",\"uid\":"));
	audit_append_u64(b, (unsigned long long)r->uid);
	strbuf_append(b, LIT(",\"gid\":"));
	audit_append_u64(b, (unsigned long long)r->gid);
	strbuf_append(b, LIT(",\"pid\":"));
	audit_append_i64(b, (long long)r->pid);
	audit_append_string(b, LIT(",\"process\":\""), r->process);
	if (r->error)
		audit_append_string(b, LIT(",\"error\":\""), r->error);
	if (r->anomaly)
		audit_append_string(b, LIT(",\"anomaly\":\""), r->anomaly);
	strbuf_append(b, LIT(",\"seq\":"));
	audit_append_u64(b, seq);
}

static int audit_check_file(struct audit *a);

/* One write(2); anything but the whole line is a failure. */
static int audit_write_line(int fd, const char *buf, size_t len)
{
	ssize_t n;
	do {
		n = write(fd, buf, len);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	if ((size_t)n != len) {
		/* A short write (disk full): this process is the log's only
		 * writer (audit_lock.h), so cut the torn part off again and the
		 * file stays a clean chain.  If that fails, end the torn line so
		 * the next one parses; verify flags it. */
		struct stat st;
		if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size >= n &&
		    ftruncate(fd, st.st_size - n) == 0)
			return -EIO;
		if (write(fd, "\n", 1) < 0) {
			/* nothing more to do: the failure is reported anyway */
		}
		return -EIO;
	}
	return 0;
}

int audit_write(struct audit *a, const struct audit_record *r)
{
	char hash[AUDIT_HASH_HEX + 1];
	struct strbuf *b = &a->line;
	int rc;

	pthread_mutex_lock(&a->lock);
	b->len = 0;
	b->error = 0;
	audit_format_prefix(a, r, a->seq + 1);
	rc = b->error;
	if (rc == 0)
		rc = audit_link_hex(a->mac, a->prev_hash, b->buf, b->len, hash);
	if (rc == 0) {
		strbuf_append(b, LIT(",\"hash\":\""));
		strbuf_append(b, hash, AUDIT_HASH_HEX);
		strbuf_append(b, LIT("\"}\n"));
		rc = b->error;
	}
	if (rc == 0)
		rc = audit_check_file(a);
	if (rc == 0)
		rc = audit_write_line(a->fd, b->buf, b->len);
	if (rc == 0) {
		a->seq++;
		memcpy(a->prev_hash, hash, sizeof(hash));
		metrics_audit_last_seq(a->seq);
	}
	pthread_mutex_unlock(&a->lock);
	if (rc == 0)
		return 0;

	/* Name only the operation and network: the rest of the record is for
	 * the audit log, which just failed. */
	char ebuf[128];
	const char *reason = rc == -E2BIG ? "record too long" : strerror_r(-rc, ebuf, sizeof(ebuf));
	metrics_audit_write_error();
	log_kv(LOG_LEVEL_ERROR, "audit write failed", "error", reason,
	       "operation", key_op_name(r->op),
	       "network", r->network ? r->network : "", (char *)NULL);
	return a->mode == AUDIT_FAILURE_DENY ? -EIO : 0;
}

/* mkdir -p of path's directory, new directories 0700. */
static int audit_make_parent(const char *path)
{
	char *dir = strdup(path);
	int rc = 0;

	if (!dir)
		return -ENOMEM;
	char *slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		goto out;
	*slash = 0;
	for (char *p = dir + 1; ; p++) {
		if (*p != '/' && *p != 0)
			continue;
		char saved = *p;
		*p = 0;
		if (fileowner_mkdir(dir, 0700) < 0 && errno != EEXIST) {
			rc = -errno;
			goto out;
		}
		*p = saved;
		if (saved == 0)
			break;
	}
out:
	free(dir);
	return rc;
}

/* Does this line (without newline) look like one of ours?  Sets seq and
 * hash; the hash itself is verify's business. */
static bool audit_parse_state(const char *line, size_t len, unsigned long long *seq,
                              char hash[AUDIT_HASH_HEX + 1])
{
	if (audit_split(line, len, hash) < 0)
		return false;
	json_t *root = json_loadb(line, len, JSON_REJECT_DUPLICATES, NULL);
	if (!root)
		return false;
	json_t *s = json_object_get(root, "seq");
	bool ok = json_is_integer(s) && json_integer_value(s) > 0;
	if (ok)
		*seq = (unsigned long long)json_integer_value(s);
	json_decref(root);
	return ok;
}

static int audit_pread_all(int fd, char *buf, size_t len, off_t off)
{
	while (len > 0) {
		ssize_t n = pread(fd, buf, len, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;   /* the file shrank under us */
		buf += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

/* Find the last complete line that parses, reading a growing window from
 * the end.  *torn is set when the file does not end with a newline. */
static int audit_recover(int fd, off_t size, unsigned long long *seq,
                         char hash[AUDIT_HASH_HEX + 1], bool *torn)
{
	size_t window = 64 * 1024;
	char *buf = NULL;
	int rc = 0;

	*seq = 0;
	memcpy(hash, audit_zero_hash, sizeof(audit_zero_hash));
	*torn = false;
	if (size == 0)
		return 0;
	for (;;) {
		if ((off_t)window > size)
			window = (size_t)size;
		off_t start = size - (off_t)window;
		char *p = realloc(buf, window);
		if (!p) {
			rc = -ENOMEM;
			goto out;
		}
		buf = p;
		rc = audit_pread_all(fd, buf, window, start);
		if (rc < 0)
			goto out;
		*torn = buf[window - 1] != '\n';
		/* Complete lines end at a newline; the first one in the window
		 * is complete only when the window starts the file. */
		size_t end = window;
		while (end > 0 && buf[end - 1] != '\n')
			end--;
		while (end > 0) {
			size_t line_end = end - 1;   /* index of its newline */
			size_t line_start = line_end;
			while (line_start > 0 && buf[line_start - 1] != '\n')
				line_start--;
			if (line_start == 0 && start > 0)
				break;               /* may be cut: widen the window */
			if (audit_parse_state(buf + line_start, line_end - line_start, seq, hash))
				goto out;
			end = line_start;
		}
		if (start == 0 || window >= AUDIT_TAIL_MAX) {
			/* Nothing usable: start a new chain; verify will say why. */
			*seq = 0;
			memcpy(hash, audit_zero_hash, sizeof(audit_zero_hash));
			goto out;
		}
		window *= 4;
	}
out:
	free(buf);
	return rc;
}

/* Whose files may the log be?  Ours, root's, or (as fileowner_inherit()
 * gives a file root creates for a run_as daemon) the directory owner's. */
static bool audit_owner_ok(const char *path, uid_t owner)
{
	if (owner == geteuid() || owner == 0)
		return true;
	struct stat st;
	return fileowner_stat_dir(path, &st) == 0 && st.st_uid == owner;
}

/* Open the log for appending.  Never through a symlink (a user who can
 * write the directory must not point the daemon's lines at another file),
 * never a FIFO (it would block), and a regular file only when its owner is
 * one audit_owner_ok() accepts.  A character device (/dev/null) is the
 * operator's explicit choice and allowed.  *why says what was wrong. */
static int audit_open_fd(const char *path, const char **why)
{
	struct stat st;
	*why = NULL;
	int rc = audit_make_parent(path);
	if (rc < 0)
		return rc;
	int flags = O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK;
	int fd = open(path, flags | O_CREAT | O_EXCL, 0600);
	if (fd >= 0) {
		/* Created by root (`key import`): keep it writable for run_as. */
		fileowner_inherit(fd, path, NULL);
		return fd;
	}
	if (errno == EEXIST)
		fd = open(path, flags);
	if (fd < 0) {
		rc = -errno;
		if (rc == -ELOOP)
			*why = "is a symbolic link (refused: the audit log is never opened through one)";
		else if (rc == -ENXIO)
			*why = "is a FIFO (refused: the audit log must be a regular file)";
		return rc;
	}
	if (fstat(fd, &st) < 0) {
		rc = -errno;
	} else if (!S_ISREG(st.st_mode) && !S_ISCHR(st.st_mode)) {
		rc = -EINVAL;
		*why = "is not a regular file";
	} else if (S_ISREG(st.st_mode) && !audit_owner_ok(path, st.st_uid)) {
		rc = -EPERM;
		*why = "is owned by another user (refused: it must be owned by the daemon's user "
		       "or root)";
	}
	if (rc < 0) {
		close(fd);
		return rc;
	}
	return fd;
}

/* The type, link count and inode of fd (or of path, not followed), without
 * asking for its times.  Linux's multigrain timestamps (6.13+) remember that
 * a stat read the ctime and then give the next write a fresh fine-grained
 * one, which dirties the inode in the journal: with an fstat before every
 * line each write(2) paid ext4_dirty_inode (perf, issue 15); asking only
 * for STATX_TYPE | STATX_NLINK | STATX_INO leaves the times coarse, so a
 * write dirties the inode at most once a clock tick, as a bare write does. */
static int audit_statx(int fd, const char *path, struct statx *st)
{
	unsigned mask = STATX_TYPE | STATX_NLINK | STATX_INO;
	if (path)
		return statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, mask, st);
	return statx(fd, "", AT_EMPTY_PATH, mask, st);
}

/* Called with the lock held before each line: has the file we append to
 * been removed or replaced at its path (rm, mv, a new file or symlink put
 * there)?  Then reopen the path, so lines never go into an unlinked file.
 * One statx per line; the path itself is looked at at most once a second. */
static int audit_check_file(struct audit *a)
{
	struct statx fst, pst;
	if (audit_statx(a->fd, NULL, &fst) < 0)
		return -errno;
	if (!S_ISREG(fst.stx_mode))
		return 0;
	bool replaced = fst.stx_nlink == 0;
	double now = clock_monotonic();
	if (!replaced && now - a->path_checked_at >= 1.0) {
		a->path_checked_at = now;
		/* A path we may not look at (run_as below a private directory)
		 * is not a replaced one. */
		if (audit_statx(-1, a->path, &pst) < 0)
			replaced = errno == ENOENT || errno == ENOTDIR;
		else
			replaced = pst.stx_dev_major != fst.stx_dev_major ||
			           pst.stx_dev_minor != fst.stx_dev_minor || pst.stx_ino != fst.stx_ino;
	}
	if (!replaced)
		return 0;
	const char *why = NULL;
	int fd = audit_open_fd(a->path, &why);
	if (fd < 0) {
		log_kv(LOG_LEVEL_ERROR, "the audit log was removed or replaced and cannot be reopened",
		       "path", a->path, "error", why ? why : strerror(-fd), (char *)NULL);
		return fd;
	}
	log_kv(LOG_LEVEL_WARN, "the audit log was removed or replaced: reopened it", "path", a->path,
	       (char *)NULL);
	close(a->fd);
	a->fd = fd;
	a->path_checked_at = now;
	return 0;
}

/* Continue the chain of an existing file. */
static int audit_load_state(struct audit *a)
{
	struct stat st;
	bool torn = false;
	int rc = 0;

	struct stat wst;
	int rfd = open(a->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (rfd < 0)
		return -errno;
	if (fstat(rfd, &st) < 0 || fstat(a->fd, &wst) < 0) {
		rc = -errno;
		goto out;
	}
	if (st.st_dev != wst.st_dev || st.st_ino != wst.st_ino) {
		rc = -EAGAIN;   /* replaced between the two opens */
		goto out;
	}
	if (!S_ISREG(st.st_mode))
		goto out;   /* a device (/dev/null, /dev/full): no history */
	rc = audit_recover(rfd, st.st_size, &a->seq, a->prev_hash, &torn);
	if (rc == 0 && torn)
		rc = audit_write_line(a->fd, "\n", 1);
out:
	close(rfd);
	return rc;
}

int audit_open(const char *path, enum audit_failure mode, struct audit **out,
               char *err, size_t errlen)
{
	struct audit *a;
	int rc;

	*out = NULL;
	if (!path || !*path) {
		snprintf(err, errlen, "audit log: no path configured");
		return -EINVAL;
	}
	a = calloc(1, sizeof(*a));
	if (!a) {
		snprintf(err, errlen, "audit log: out of memory");
		return -ENOMEM;
	}
	a->fd = -1;
	a->mode = mode;
	a->file_gid = (gid_t)-1;
	a->line.limit = AUDIT_LINE_MAX;
	memcpy(a->prev_hash, audit_zero_hash, sizeof(audit_zero_hash));
	pthread_mutex_init(&a->lock, NULL);
	a->path = strdup(path);
	if (!a->path) {
		snprintf(err, errlen, "audit log: cannot set up SHA-256");
		rc = -ENOMEM;
		goto fail;
	}
	const char *why = NULL;
	a->fd = audit_open_fd(path, &why);
	if (a->fd < 0) {
		rc = a->fd;
		snprintf(err, errlen, "audit log %s: %s", path, why ? why : strerror(-rc));
		goto fail;
	}
	rc = audit_load_state(a);
	if (rc < 0) {
		snprintf(err, errlen, "audit log %s: cannot read the chain state: %s",
		         path, strerror(-rc));
		goto fail;
	}
	metrics_audit_last_seq(a->seq);
	*out = a;
	return 0;
fail:
	audit_close(a);
	return rc;
}

/* Mode and group of the file on fd, and a directory the log shippers of
 * that group can enter when it is ours and closed to the group. */
static int audit_apply_access(struct audit *a, int fd)
{
	if (!a->file_mode)
		return 0;
	if (a->file_gid != (gid_t)-1 && fchown(fd, (uid_t)-1, a->file_gid) < 0)
		return -errno;
	if (fchmod(fd, a->file_mode) < 0)
		return -errno;
	char *dir = strdup(a->path);
	char *slash = dir ? strrchr(dir, '/') : NULL;
	struct stat st;
	if (slash && slash != dir && (a->file_mode & 0040)) {
		*slash = 0;
		if (stat(dir, &st) == 0 && st.st_uid == geteuid() && !(st.st_mode & 0010)) {
			if (a->file_gid != (gid_t)-1 && st.st_gid != a->file_gid)
				(void)chown(dir, (uid_t)-1, a->file_gid);
			(void)chmod(dir, (st.st_mode & 07777) | 0050);
		}
	}
	free(dir);
	return 0;
}

int audit_set_access(struct audit *a, mode_t mode, gid_t gid)
{
	pthread_mutex_lock(&a->lock);
	a->file_mode = mode;
	a->file_gid = gid;
	int rc = audit_apply_access(a, a->fd);
	pthread_mutex_unlock(&a->lock);
	return rc;
}

int audit_reopen(struct audit *a)
{
	const char *why = NULL;
	int fd = audit_open_fd(a->path, &why);
	if (fd < 0)
		return fd;   /* keep writing to the old file rather than lose lines */
	pthread_mutex_lock(&a->lock);
	int arc = audit_apply_access(a, fd);
	pthread_mutex_unlock(&a->lock);
	if (arc < 0)
		log_kv(LOG_LEVEL_WARN, "audit log reopened without its mode or group", "path", a->path,
		       "error", strerror(-arc), (char *)NULL);
	pthread_mutex_lock(&a->lock);
	int old = a->fd;
	a->fd = fd;
	pthread_mutex_unlock(&a->lock);
	close(old);
	return 0;
}

int audit_set_key(struct audit *a, const struct secret *key)
{
	struct secret *mac = audit_mac_new(key);
	if (!mac)
		return -EIO;
	pthread_mutex_lock(&a->lock);
	secret_free(a->mac);
	a->mac = mac;
	pthread_mutex_unlock(&a->lock);
	return 0;
}

int audit_key_load(const char *path, struct secret **out, char *err, size_t errlen)
{
	struct stat st;
	int rc = 0;
	*out = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "audit key %s: %s", path, strerror(errno));
		return rc;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		rc = -EINVAL;
		snprintf(err, errlen, "audit key %s: not a regular file", path);
	} else if (st.st_mode & 077) {
		rc = -EPERM;
		snprintf(err, errlen, "audit key %s is readable by group or others: chmod 600 it", path);
	} else if (st.st_size < AUDIT_KEY_MIN || st.st_size > AUDIT_KEY_MAX) {
		rc = -EINVAL;
		snprintf(err, errlen, "audit key %s: %d to %d bytes expected", path, AUDIT_KEY_MIN,
		         AUDIT_KEY_MAX);
	}
	struct secret *key = rc == 0 ? secret_new((size_t)st.st_size) : NULL;
	if (rc == 0 && !key)
		rc = -ENOMEM;
	while (rc == 0 && key->len < (size_t)st.st_size) {
		ssize_t n = read(fd, key->data + key->len, (size_t)st.st_size - key->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? -errno : -EIO;
			snprintf(err, errlen, "audit key %s: cannot read it", path);
			break;
		}
		key->len += (size_t)n;
	}
	close(fd);
	if (rc < 0) {
		secret_free(key);
		return rc;
	}
	*out = key;
	return 0;
}

bool audit_denies(const struct audit *a)
{
	return a->mode == AUDIT_FAILURE_DENY;
}

void audit_checkpoint(struct audit *a, unsigned long long *seq, char hash[AUDIT_HASH_HEX + 1])
{
	pthread_mutex_lock(&a->lock);
	*seq = a->seq;
	memcpy(hash, a->prev_hash, AUDIT_HASH_HEX + 1);
	pthread_mutex_unlock(&a->lock);
}

void audit_close(struct audit *a)
{
	if (!a)
		return;
	if (a->fd >= 0)
		close(a->fd);
	strbuf_reset(&a->line);
	secret_free(a->mac);
	pthread_mutex_destroy(&a->lock);
	free(a->path);
	free(a);
}

/* --- verify: jansson checks the fields, the chain works on raw bytes. -- */

static bool audit_json_string_is(json_t *root, const char *key, const char *value)
{
	json_t *v = json_object_get(root, key);
	return json_is_string(v) && strcmp(json_string_value(v), value) == 0;
}

/* NULL when the object has every field with its type, else what is wrong. */
static const char *audit_check_fields(json_t *root)
{
	static const char *strings[] = { "timestamp", "level", "target", "message", "operation",
	                                 "network", "storage_type", "process" };
	static const char *integers[] = { "uid", "gid", "pid", "seq" };
	static const char *optional_strings[] = { "error", "anomaly" };

	if (!json_is_object(root))
		return "not a JSON object";
	for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++)
		if (!json_is_string(json_object_get(root, strings[i])))
			return "a string field is missing or not a string";
	for (size_t i = 0; i < sizeof(integers) / sizeof(integers[0]); i++)
		if (!json_is_integer(json_object_get(root, integers[i])))
			return "a number field (uid, gid, pid, seq) is missing or not an integer";
	for (size_t i = 0; i < sizeof(optional_strings) / sizeof(optional_strings[0]); i++) {
		json_t *v = json_object_get(root, optional_strings[i]);
		if (v && !json_is_string(v))
			return "error/anomaly is not a string";
	}
	json_t *status = json_object_get(root, "status");
	if (!json_is_boolean(status))
		return "status is missing or not a boolean";
	if (!audit_json_string_is(root, "level", json_is_true(status) ? "info" : "warn"))
		return "level does not match status";
	if (!audit_json_string_is(root, "target", "omikuji::audit") ||
	    !audit_json_string_is(root, "message", "Key storage operation"))
		return "wrong target or message";
	bool is_get = audit_json_string_is(root, "operation", "get");
	bool known_op = false;
	for (int op = 0; op < KEY_OP_COUNT && !known_op; op++)
		known_op = audit_json_string_is(root, "operation", key_op_name((enum key_op)op));
	if (!known_op)
		return "unknown operation";
	json_t *cached = json_object_get(root, "cached");
	if (is_get ? !json_is_boolean(cached) : cached != NULL)
		return "cached must be a boolean on get and absent otherwise";
	json_t *refresh = json_object_get(root, "refresh");
	if (refresh && (!is_get || !json_is_true(refresh)))
		return "refresh is only present, as true, on get";
	json_t *intent = json_object_get(root, "intent");
	if (intent && (!json_is_true(intent) || !json_is_true(status) ||
	               !(audit_json_string_is(root, "operation", "store") ||
	                 audit_json_string_is(root, "operation", "remove"))))
		return "intent is only present, as true, on a successful store or remove";
	if (json_integer_value(json_object_get(root, "seq")) < 1)
		return "seq is not positive";
	return NULL;
}

/* The state of one chain across the files that hold it. */
struct audit_chain {
	const struct audit_verify_options *opt;
	struct secret *mac;          /* --key: a keyed chain */
	char prev[AUDIT_HASH_HEX + 1];
	unsigned long long first_seq, last_seq;
	long lines;                  /* over all files */
	long bad_lines;              /* reported so far */
	long read;                   /* lines read, good and bad */
	long links;                  /* hashes checked and matching */
	bool resync;                 /* after a malformed line: anchor on the next good one */
	bool anchor_next;            /* audit_chain_restart(): trust the next line */
};

struct audit_chain *audit_chain_new(const struct audit_verify_options *opt)
{
	static const struct audit_verify_options none;
	struct audit_chain *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->opt = opt ? opt : &none;
	if (c->opt->key)
		c->mac = audit_mac_new(c->opt->key);
	if (c->opt->key && !c->mac) {
		audit_chain_free(c);
		return NULL;
	}
	return c;
}

void audit_chain_free(struct audit_chain *c)
{
	if (!c)
		return;
	secret_free(c->mac);
	free(c);
}

void audit_chain_restart(struct audit_chain *c)
{
	c->anchor_next = true;
}

unsigned long long audit_chain_first_seq(const struct audit_chain *c)
{
	return c->first_seq;
}

unsigned long long audit_chain_last_seq(const struct audit_chain *c)
{
	return c->last_seq;
}

/* Check one line (without its newline) against the chain.
 *
 * A bad line does not end the check.  A malformed one (not JSON, a field
 * missing, torn) sets c->resync: the next well-formed line is taken as the
 * chain's new anchor ("chain resumes").  A well-formed line that does not
 * link (edited, removed or reordered lines) is reported and becomes the
 * anchor itself, so the line after it is checked against it.  A caller
 * who gets one bad line written cannot hide what follows it. */
int audit_chain_check(struct audit_chain *c, const char *line, size_t len, bool complete,
                      char *why, size_t whylen, json_t **parsed)
{
	char stored[AUDIT_HASH_HEX + 1], computed[AUDIT_HASH_HEX + 1];

	why[0] = 0;
	if (parsed)
		*parsed = NULL;
	c->read++;
	if (!complete) {
		snprintf(why, whylen, "truncated (no newline at the end of the file)");
		c->resync = true;
		return 1;
	}
	json_error_t jerr;
	json_t *root = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		snprintf(why, whylen, "not valid JSON (column %d: %s)", jerr.column, jerr.text);
		c->resync = true;
		return 1;
	}
	const char *bad = audit_check_fields(root);
	unsigned long long seq = bad ? 0 : (unsigned long long)json_integer_value(
		json_object_get(root, "seq"));
	if (parsed)
		*parsed = root;
	else
		json_decref(root);
	if (bad) {
		snprintf(why, whylen, "%s", bad);
		c->resync = true;
		return 1;
	}
	long prefix_len = audit_split(line, len, stored);
	if (prefix_len < 0) {
		snprintf(why, whylen, "does not end with the hash field");
		c->resync = true;
		return 1;
	}
	if (c->anchor_next) {
		/* Its predecessor is not in the input: its stored hash anchors
		 * what follows. */
		c->anchor_next = false;
		c->resync = false;
		goto anchor;
	}
	if (c->resync) {
		snprintf(why, whylen, "chain resumes at seq %llu", seq);
		c->resync = false;
		goto anchor;
	}
	if (c->lines == 0) {
		const struct audit_verify_options *o = c->opt;
		c->first_seq = seq;
		if (o->have_start && seq == o->start_seq) {
			/* The checkpointed line itself: its hash is the anchor. */
			if (strcmp(stored, o->start_hash) != 0) {
				snprintf(why, whylen, "seq %llu does not have the hash --start gives", seq);
				goto mislinked;
			}
			memcpy(c->prev, stored, sizeof(c->prev));
			c->last_seq = seq;
			c->lines++;
			return 0;
		}
		unsigned long long want = o->have_start ? o->start_seq + 1 : 1;
		if (seq != want) {
			if (o->have_start)
				snprintf(why, whylen, "chain starts at seq %llu, but --start resumes after "
				         "seq %llu", seq, o->start_seq);
			else
				snprintf(why, whylen, "chain starts at seq %llu: lines 1..%llu are missing "
				         "(give the rotated files first, or --start SEQ:HASH from a "
				         "checkpoint)", seq, seq - 1);
			goto mislinked;
		}
		memcpy(c->prev, o->have_start ? o->start_hash : audit_zero_hash, sizeof(c->prev));
	} else if (seq != c->last_seq + 1) {
		snprintf(why, whylen, "seq %llu, expected %llu (a line was removed, inserted or "
		         "reordered)", seq, c->last_seq + 1);
		goto mislinked;
	}
	if (audit_link_hex(c->mac, c->prev, line, (size_t)prefix_len,
	                   computed) < 0) {
		snprintf(why, whylen, "cannot compute SHA-256");
		return 1;
	}
	if (strcmp(computed, stored) != 0) {
		snprintf(why, whylen, "hash mismatch (the line was edited, or the line before it "
		         "was replaced%s)", c->mac ? ", or the key is not the log's" :
		         c->links == 0 ? "; a keyed log needs --key" : "");
		goto mislinked;
	}
	c->links++;
anchor:
	if (c->lines == 0)
		c->first_seq = seq;
	memcpy(c->prev, stored, sizeof(c->prev));
	c->last_seq = seq;
	c->lines++;
	return 0;
mislinked:
	if (c->lines == 0)
		c->first_seq = seq;
	memcpy(c->prev, stored, sizeof(c->prev));
	c->last_seq = seq;
	c->lines++;
	return 1;
}

/* One file of the chain: 0, 1 (with *bad_line) or -errno. */
static int audit_chain_file(struct audit_chain *c, const char *path, FILE *report,
                            long *bad_line)
{
	char why[256];
	char *line = NULL;
	size_t cap = 0;
	long lineno = 0;
	int result = 0;
	FILE *f = fopen(path, "re");
	if (!f)
		return -errno;
	for (;;) {
		errno = 0;
		ssize_t n = getline(&line, &cap, f);
		if (n < 0) {
			if (ferror(f))
				result = errno ? -errno : -EIO;
			break;
		}
		lineno++;
		size_t len = (size_t)n;
		bool complete = line[len - 1] == '\n';
		int bad = audit_chain_check(c, line, complete ? len - 1 : len, complete, why,
		                            sizeof(why), NULL);
		if (why[0])
			fprintf(report, "%s: line %ld: %s\n", path, lineno, why);
		if (bad) {
			if (!c->bad_lines++)
				*bad_line = lineno;
			result = 1;
		}
	}
	free(line);
	fclose(f);
	return result;
}

int audit_parse_start(const char *text, struct audit_verify_options *opt)
{
	char *end = NULL;
	if (!text || *text < '0' || *text > '9')
		return -EINVAL;
	errno = 0;
	unsigned long long seq = strtoull(text, &end, 10);
	if (errno || *end != ':' || !audit_is_hash(end + 1, strlen(end + 1)))
		return -EINVAL;
	opt->have_start = true;
	opt->start_seq = seq;
	memcpy(opt->start_hash, end + 1, AUDIT_HASH_HEX + 1);
	return 0;
}

int audit_verify_files(const char *const *files, size_t n,
                       const struct audit_verify_options *opt, FILE *report,
                       size_t *bad_file, long *bad_line)
{
	int result = 0;

	*bad_file = 0;
	*bad_line = 0;
	struct audit_chain *c = audit_chain_new(opt);
	if (!c)
		return opt && opt->key ? -EIO : -ENOMEM;
	/* Every file is checked, past bad lines; *bad_file and *bad_line keep
	 * the first problem. */
	for (size_t i = 0; i < n && result >= 0; i++) {
		long bad = 0;
		int rc = audit_chain_file(c, files[i], report, &bad);
		if (rc < 0 || (rc > 0 && result == 0)) {
			*bad_file = i;
			*bad_line = bad;
		}
		if (rc != 0)
			result = rc;
	}
	if (result < 0)
		goto out;
	if (c->bad_lines) {
		fprintf(report, "audit log NOT intact: %ld bad line%s of %ld, the first at line %ld "
		        "of %s\n", c->bad_lines, c->bad_lines == 1 ? "" : "s", c->read,
		        *bad_line, files[*bad_file]);
		goto out;
	}
	const char *last = n ? files[n - 1] : "";
	unsigned long long end = c->lines ? c->last_seq : c->opt->have_start ? c->opt->start_seq : 0;
	if (c->opt->have_expect && end < c->opt->expect_seq) {
		fprintf(report, "%s: chain ends at seq %llu, but the daemon wrote up to seq %llu: "
		        "lines are missing at the end\n", last, end, c->opt->expect_seq);
		result = 1;
		goto out;
	}
	if (c->lines == 0)
		fprintf(report, "audit log OK: 0 lines\n");
	else
		fprintf(report, "audit log OK: %ld lines, seq %llu..%llu\n", c->lines, c->first_seq,
		        c->last_seq);
out:
	audit_chain_free(c);
	return result;
}

int audit_verify(const char *path, FILE *report, long *bad_line)
{
	size_t bad_file;
	return audit_verify_files(&path, 1, NULL, report, &bad_file, bad_line);
}
