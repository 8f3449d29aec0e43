/* keyfile.c - keys/<network>: the key files.
 *
 * Open for reading fetches the key once (checked and audited) into a
 * per-open secret; reads are served from it with direct I/O, so key bytes
 * never sit in the page cache.  Writes accumulate in a per-open secret and
 * are stored as soon as they form a complete line, inside that write(2),
 * so `echo KEY > keys/x` sees the outcome (bash ignores close errors);
 * content without a final newline is stored at flush (close).
 *
 * An open of a key whose fetch is already in flight for another opener
 * parks on that fetch (keyops_get_park) rather than holding a FUSE worker:
 * the open is answered (fuse_reply_open / fuse_reply_err) by the thread
 * that made the fetch, once it ends, checked and audited as its own caller,
 * with its own copy of the key.  Parked opens are counted (tree_parked), so
 * the daemon answers every one before the session ends.
 */
#include "tree.h"
#include "keyformat.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Room for a maximal key plus whitespace around it (`echo` adds "\n"). */
#define KEYFILE_MAX_WRITE (KEY_MAX_BYTES + 64)

struct keyfile {
	struct handle h;             /* first: kind HANDLE_KEY, list links */
	pthread_mutex_t lock;        /* the kernel may send writes from several threads */
	char network[65];
	struct caller opener;        /* audited as the caller of writes and flushes */
	struct secret *content;      /* readable content: key + "\n" */
	struct secret *written;      /* bytes written so far (writable opens) */
	bool pending;                /* written bytes not stored yet */
	bool creating;               /* registered with keyops_creating() */
	bool created;                /* opened by CREATE (stays after the flush) */
	/* A parked open (until it is answered): */
	struct keyops_park park;
	fuse_req_t req;
	struct fuse_file_info fi;    /* the open's, copied: libfuse's is on its stack */
};

static struct keyfile *keyfile_new(struct mount_state *k, const char *network, bool writable)
{
	struct keyfile *f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	pthread_mutex_init(&f->lock, NULL);
	snprintf(f->network, sizeof(f->network), "%s", network);
	mount_state_caller_current(k, &f->opener);
	if (writable) {
		f->written = secret_new(256);
		if (!f->written) {
			free(f);
			return NULL;
		}
	}
	return f;
}

static void keyfile_free(struct keyfile *f)
{
	secret_free(f->content);
	secret_free(f->written);
	pthread_mutex_destroy(&f->lock);
	free(f);
}

static void set_handle(struct mount_state *k, struct fuse_file_info *fi, struct keyfile *f)
{
	handle_register(k, &f->h, HANDLE_KEY);
	fi->fh = (uint64_t)(uintptr_t)f;
	fi->direct_io = 1;
	fi->keep_cache = 0;
}

/* The end of an open: its readable content made from key (freed; NULL for
 * a write-only open) and its handle set, or f freed on failure. */
static int open_finish(struct mount_state *k, struct keyfile *f, struct fuse_file_info *fi,
                       int rc, struct secret *key)
{
	if (rc == 0 && key) {
		f->content = keyops_content(k, key);
		if (!f->content)
			rc = -ENOMEM;
	}
	secret_free(key);
	if (rc < 0) {
		keyfile_free(f);
		return rc;
	}
	set_handle(k, fi, f);
	/* Nothing to store on close of a read-only open: spare the kernel the
	 * FLUSH round trip (a third of a cached read's cost). */
	fi->noflush = !f->written;
	return 0;
}

/* A parked open's fetch ended (on the fetching thread): answer it. */
static void keyfile_parked_done(struct keyops_park *p, int rc, struct secret *key)
{
	struct keyfile *f = (struct keyfile *)((char *)p - offsetof(struct keyfile, park));
	struct mount_state *k = p->k;
	fuse_req_t req = f->req;
	struct fuse_file_info fi = f->fi;
	rc = open_finish(k, f, &fi, rc, key);
	tree_parked_answer(k, req, &fi, rc, keyfile_release);
}

int keyfile_open(struct mount_state *k, const struct node *n, struct fuse_file_info *fi,
                 fuse_req_t req)
{
	int acc = fi->flags & O_ACCMODE;
	bool readable = acc == O_RDONLY || acc == O_RDWR;
	bool writable = acc == O_WRONLY || acc == O_RDWR;
	struct keyfile *f = keyfile_new(k, n->name, writable);
	int rc = 0;
	if (!f)
		return -ENOMEM;

	if (writable)
		rc = keyops_check(k, &f->opener, n->name, KEY_OP_STORE);
	struct secret *key = NULL;
	if (rc == 0 && readable) {
		f->req = req;
		f->fi = *fi;
		f->park.done = keyfile_parked_done;
		rc = keyops_get_park(k, &f->opener, f->network, &f->park, &key);
		if (rc == KEYOPS_PARKED) {
			/* f belongs to keyfile_parked_done now (maybe freed already) */
			tree_parked(k, 1);
			return OPEN_PARKED;
		}
	}
	return open_finish(k, f, fi, rc, key);
}

int keyfile_create(struct mount_state *k, const char *network, struct fuse_file_info *fi)
{
	if (!network_name_valid(network))
		return -EINVAL;
	struct keyfile *f = keyfile_new(k, network, true);
	if (!f)
		return -ENOMEM;
	int rc = keyops_check(k, &f->opener, network, KEY_OP_STORE);
	if (rc < 0) {
		keyfile_free(f);
		return rc;
	}
	f->creating = true;
	f->created = true;
	keyops_creating(k, network, true);
	set_handle(k, fi, f);
	return 0;
}

int keyfile_read(size_t size, off_t off, struct fuse_file_info *fi, const char **data)
{
	struct keyfile *f = (struct keyfile *)(uintptr_t)fi->fh;
	if (!f->content)
		return -EBADF;
	if (off < 0)
		return -EINVAL;
	if ((size_t)off >= f->content->len)
		return 0;
	size_t n = f->content->len - (size_t)off;
	if (n > size)
		n = size;
	*data = (const char *)f->content->data + off;
	return (int)n;
}

/* Forget what was written (after a store attempt fails, or a truncate). */
static void discard_written(struct keyfile *f)
{
	secret_wipe(f->written->data, f->written->len);
	f->written->len = 0;
	f->pending = false;
}

int keyfile_write(struct mount_state *k, const char *buf, size_t size, off_t off,
                  struct fuse_file_info *fi)
{
	struct keyfile *f = (struct keyfile *)(uintptr_t)fi->fh;
	int rc = 0;
	if (!f->written)
		return -EBADF;
	pthread_mutex_lock(&f->lock);
	if (off < 0 || (size_t)off > f->written->len) {
		rc = -EINVAL;   /* holes make no sense in a key */
		goto out;
	}
	if ((size_t)off + size > KEYFILE_MAX_WRITE) {
		discard_written(f);
		rc = -EFBIG;
		goto out;
	}
	secret_wipe(f->written->data + off, f->written->len - (size_t)off);
	f->written->len = (size_t)off;
	rc = secret_append(f->written, buf, size);
	/* buf is libfuse's receive buffer, reused for the next request but not
	 * wiped: the written key is in a locked secret now, so wipe it there.
	 * The write's reply does not use it. */
	secret_wipe((void *)(uintptr_t)buf, size);
	if (rc < 0)
		goto out;
	f->pending = true;
	const char *why = NULL;
	if (keyformat_prefix_ok(k->cfg->keyfs.key_format, f->written->data, f->written->len,
	                        &why) < 0) {
		/* Can never become a key: refuse this write(2) now (printf and
		 * `echo -n` see it); the store path validates, audits, counts. */
		f->pending = false;
		rc = keyops_store(k, &f->opener, f->network, f->written);
		discard_written(f);
		if (rc == 0)
			rc = -EINVAL;
		goto out;
	}
	if (f->written->len > 0 && f->written->data[f->written->len - 1] == '\n') {
		f->pending = false;
		rc = keyops_store(k, &f->opener, f->network, f->written);
		if (rc < 0)
			discard_written(f);
	}
out:
	pthread_mutex_unlock(&f->lock);
	return rc < 0 ? rc : (int)size;
}

int keyfile_flush(struct mount_state *k, struct fuse_file_info *fi)
{
	struct keyfile *f = (struct keyfile *)(uintptr_t)fi->fh;
	int rc = 0;
	pthread_mutex_lock(&f->lock);
	if (f->pending) {
		f->pending = false;
		rc = keyops_store(k, &f->opener, f->network, f->written);
		if (rc < 0)
			discard_written(f);
	}
	/* The close of a created file: from here on the name exists only if a
	 * key was stored.  Here, not at RELEASE, which the kernel sends after
	 * close() has returned (a stat right after the close would find the
	 * name still being created).  A copy of the descriptor (touch(1) dup2s
	 * it) may still set times: keyfile_created_open. */
	if (f->creating) {
		f->creating = false;
		keyops_creating(k, f->network, false);
	}
	pthread_mutex_unlock(&f->lock);
	return rc;
}

bool keyfile_created_open(struct mount_state *k, const char *network)
{
	bool found = false;
	pthread_mutex_lock(&k->handles_lock);
	for (struct handle *h = k->handles; h && !found; h = h->next)
		found = h->kind == HANDLE_KEY && ((struct keyfile *)h)->created &&
		        strcmp(((struct keyfile *)h)->network, network) == 0;
	pthread_mutex_unlock(&k->handles_lock);
	return found;
}

int keyfile_truncate(struct fuse_file_info *fi, off_t size)
{
	if (size != 0)
		return -EINVAL;   /* only `> file` truncation; a key is replaced, not resized */
	struct keyfile *f = fi ? (struct keyfile *)(uintptr_t)fi->fh : NULL;
	if (f && f->written) {
		pthread_mutex_lock(&f->lock);
		discard_written(f);
		pthread_mutex_unlock(&f->lock);
	}
	return 0;
}

void keyfile_release(struct mount_state *k, struct fuse_file_info *fi)
{
	struct keyfile *f = (struct keyfile *)(uintptr_t)fi->fh;
	if (!f)
		return;
	handle_unregister(k, &f->h);
	pthread_mutex_lock(&f->lock);
	bool creating = f->creating;
	pthread_mutex_unlock(&f->lock);
	if (creating)
		keyops_creating(k, f->network, false);
	keyfile_free(f);
	fi->fh = 0;
}

void keyfile_discard(struct mount_state *k, struct handle *h)
{
	struct keyfile *f = (struct keyfile *)h;
	if (f->creating)
		keyops_creating(k, f->network, false);
	keyfile_free(f);
}
