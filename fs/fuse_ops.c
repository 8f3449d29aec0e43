/* fuse_ops.c - the FUSE operations (libfuse's low-level API) and the one
 * table of names they dispatch through.  getattr, readdir and statfs of the
 * root, metrics and health/ never call a backend: node_exporter stats every
 * FUSE mount, and a hung stat is how FUSE mounts take monitoring down with
 * them.
 *
 * Inode numbers: the fixed entries of tree.h are 1 (the root) to TREE_SIZE,
 * in table order.  Children (keys/<network>, addresses/<network>,
 * health/<backend>) get a number from a table (name <-> ino, with the
 * kernel's lookup count) when a LOOKUP, CREATE or MKNOD answers them, and
 * leave it when the kernel FORGETs them.  Numbers are never reused.  The
 * st_ino shown for a child is a 32-bit form of its number (st_ino_of).
 *
 * Entry cache: fixed entries and health/<backend> never stop existing and
 * are cached for an hour.  keys/<network> and addresses/<network> are
 * cached for KEY_ENTRY_SECONDS and dropped at once (an inval_entry notice)
 * when the mount learns the name is gone: a remove through the control
 * socket, a listing refresh that no longer has it.  A name that exists only
 * because a file is being created on it (touch, mknod, O_CREAT not written
 * yet) is never cached: it stops existing at the close.  Negative entries
 * are never cached.  With allow_other what exists depends on who asks while
 * the kernel's caches are shared: then keys/ and addresses/ names and every
 * attribute are not cached at all. */
#include "tree.h"
#include "clock.h"
#include "inotab.h"
#include "log.h"
#include "keyformat.h"

#include <errno.h>
#include <pthread.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define DIR_MODE  0755
#define KEY_MODE  0600
#define VIRT_MODE 0444

/* Fixed entries and health/<backend> exist for the whole mount. */
#define FIXED_ENTRY_SECONDS 3600.0
/* keys/<network>, addresses/<network>: the attribute cache's 1 s.  Every
 * removal the mount makes or sees is sent to the kernel at once, so this
 * only bounds what the mount cannot see (a writer beside it, before any
 * listing or fetch notices), as the attribute cache already did.  Longer
 * would save less than one LOOKUP a second per name read. */
#define KEY_ENTRY_SECONDS 1.0

static const struct tree_entry tree[] = {
	{ "/",                             NODE_DIR,      DIR_MODE,  NULL, 0, false },
	{ "/keys",                         NODE_DIR,      DIR_MODE,  NULL, NODE_KEY, true },
	{ "/metrics",                      NODE_SNAPSHOT, VIRT_MODE, snapshot_render_metrics, 0, false, true },
	{ "/health",                       NODE_DIR,      DIR_MODE,  NULL, NODE_SNAPSHOT, true, true },
	{ "/textfile",                     NODE_DIR,      DIR_MODE,  NULL, 0, false, true },
	{ "/textfile/omikuji_keyfs.prom",  NODE_SNAPSHOT, VIRT_MODE, snapshot_render_metrics, 0, false, true },
	{ "/addresses",                    NODE_DIR,      DIR_MODE,  NULL, NODE_ADDRESS, true, false },
};
#define TREE_SIZE (sizeof(tree) / sizeof(tree[0]))
#define INO_KEYS      2   /* tree[1] */
#define INO_ADDRESSES 7   /* tree[6] */

/* health/<backend> files: the family's render function. */
static const struct tree_entry health_file = {
	"/health/*", NODE_SNAPSHOT, VIRT_MODE, snapshot_render_health, 0, false, true
};

/* addresses/<network> files: rendered at open, like health files. */
static const struct tree_entry address_file = {
	"/addresses/*", NODE_ADDRESS, VIRT_MODE, NULL, 0, false, false
};

/* Length of the parent part of an absolute path: "/keys/x" -> 5, "/metrics" -> 1. */
static size_t parent_len(const char *path)
{
	const char *slash = strrchr(path, '/');
	return slash == path ? 1 : (size_t)(slash - path);
}

static fuse_ino_t fixed_ino(const struct tree_entry *e)
{
	return (fuse_ino_t)(e - tree) + 1;
}

/* The child `name` of a family directory (keys/, addresses/, health/). */
static int family_child(struct mount_state *k, const struct tree_entry *e, const char *name,
                        struct node *n)
{
	if (e->child_kind == NODE_KEY || e->child_kind == NODE_ADDRESS) {
		if (!network_name_valid(name))
			return -ENOENT;
		*n = (struct node){ e->child_kind == NODE_KEY ? e : &address_file, e->child_kind, name };
		return 0;
	}
	if (!mount_state_instance(k, name))
		return -ENOENT;
	*n = (struct node){ &health_file, NODE_SNAPSHOT, name };
	return 0;
}

int tree_resolve(struct mount_state *k, const char *path, struct node *n)
{
	for (size_t i = 0; i < TREE_SIZE; i++) {
		if (strcmp(tree[i].path, path) == 0) {
			*n = (struct node){ &tree[i], tree[i].kind, NULL };
			return 0;
		}
	}
	size_t plen = parent_len(path);
	const char *name = path + plen + (plen > 1 ? 1 : 0);
	if (plen == 1 && path[0] == '/')
		name = path + 1;
	for (size_t i = 0; i < TREE_SIZE; i++) {
		const struct tree_entry *e = &tree[i];
		if (!e->has_children || strlen(e->path) != plen || strncmp(e->path, path, plen) != 0)
			continue;
		return family_child(k, e, name, n);
	}
	return -ENOENT;
}

/* --- the inode table of children ------------------------------------------ */

struct tree_table {
	struct fuse_session *se;
	pthread_mutex_t lock;
	struct inotab inos;      /* the named children's inode numbers (inotab.h) */
	/* Invalidation notices, delivered by the notifier thread: never from a
	 * handler, which may run while the kernel holds the directory's lock
	 * (a notice there deadlocks).  Queue entries: 'g' name (gone) or 'c'
	 * name (changed). */
	pthread_t notifier;
	bool notifier_started, stopping;
	bool stuck;              /* the notifier did not end at stop: never freed */
	pthread_cond_t wake, drained;
	struct strlist queue;
	uint64_t queued, delivered;
	/* Opens parked on a fetch in flight (tree_parked). */
	long parked;
	pthread_mutex_t parked_lock;
	pthread_cond_t parked_done;
};

/* The kernel is told about (family, name): its ino, lookup count + 1. */
static uint64_t rec_ref(struct tree_table *t, unsigned family, const char *name)
{
	pthread_mutex_lock(&t->lock);
	uint64_t ino = inotab_ref(&t->inos, family, name);
	pthread_mutex_unlock(&t->lock);
	return ino;
}

/* FORGET: the kernel dropped n lookups of ino. */
static void rec_unref(struct tree_table *t, uint64_t ino, uint64_t n)
{
	pthread_mutex_lock(&t->lock);
	inotab_unref(&t->inos, ino, n);
	pthread_mutex_unlock(&t->lock);
}

/* The ino of (family, name) if the kernel holds one, else 0. */
static uint64_t rec_find(struct tree_table *t, unsigned family, const char *name)
{
	pthread_mutex_lock(&t->lock);
	uint64_t ino = inotab_find(&t->inos, family, name);
	pthread_mutex_unlock(&t->lock);
	return ino;
}

size_t tree_inode_count(struct mount_state *k)
{
	struct tree_table *t = k->tree;
	if (!t)
		return 0;
	pthread_mutex_lock(&t->lock);
	size_t n = t->inos.count;
	pthread_mutex_unlock(&t->lock);
	return n;
}

/* --- resolving requests ----------------------------------------------------- */

struct lnode {
	struct node n;
	char name[65];   /* network_name_valid: at most 64 */
};

/* The node of an inode number (the name copied: a FORGET may free it). */
static int node_of(struct mount_state *k, fuse_ino_t ino, struct lnode *ln)
{
	if (ino >= 1 && ino <= TREE_SIZE) {
		ln->n = (struct node){ &tree[ino - 1], tree[ino - 1].kind, NULL };
		return 0;
	}
	struct tree_table *t = k->tree;
	unsigned family = 0;
	pthread_mutex_lock(&t->lock);
	bool held = inotab_name(&t->inos, ino, &family, ln->name, sizeof(ln->name));
	pthread_mutex_unlock(&t->lock);
	if (!held)
		return -ENOENT;
	return family_child(k, &tree[family], ln->name, &ln->n);
}

/* The child name of directory parent: a fixed entry, or one of a family. */
static int node_child(struct mount_state *k, fuse_ino_t parent, const char *name, struct node *n)
{
	if (parent < 1 || parent > TREE_SIZE || tree[parent - 1].kind != NODE_DIR)
		return -ENOENT;
	const struct tree_entry *dir = &tree[parent - 1];
	size_t plen = strlen(dir->path);
	for (size_t i = 1; i < TREE_SIZE; i++) {
		const char *p = tree[i].path;
		if (parent_len(p) == plen && strncmp(p, dir->path, plen) == 0 &&
		    strcmp(strrchr(p, '/') + 1, name) == 0) {
			*n = (struct node){ &tree[i], tree[i].kind, NULL };
			return 0;
		}
	}
	if (!dir->has_children)
		return -ENOENT;
	return family_child(k, dir, name, n);
}

/* The directory a child node belongs to (its family), as an index in tree[]. */
static unsigned node_family(const struct node *n)
{
	if (n->kind == NODE_KEY)
		return INO_KEYS - 1;
	if (n->kind == NODE_ADDRESS)
		return INO_ADDRESSES - 1;
	return 3;   /* health/ */
}

/* Every handler starts here: the mount, and the request whose caller the
 * access rules and the audit see (mount_state_caller_current). */
static struct mount_state *begin(fuse_req_t req)
{
	mount_state_request(req);
	return fuse_req_userdata(req);
}

static void fill_stat(struct mount_state *k, struct stat *st, mode_t type, mode_t mode, double mtime)
{
	memset(st, 0, sizeof(*st));
	st->st_mode = type | mode;
	st->st_nlink = type == S_IFDIR ? 2 : 1;
	st->st_uid = k->mount_uid;
	st->st_gid = k->mount_gid;
	st->st_size = 0;   /* key files: keyops_size(), known without fetching */
	st->st_blksize = 4096;
	st->st_mtim.tv_sec = (time_t)mtime;
	st->st_mtim.tv_nsec = (long)((mtime - (double)(time_t)mtime) * 1e9);
	st->st_ctim = st->st_mtim;
	st->st_atim = st->st_mtim;
}

/* metrics, textfile/ and health/ carry keyfs.monitoring_mode and _group
 * (node_exporter runs as its own user); directories get x where they
 * have r.  Shown by getattr and enforced here, as default_permissions is
 * off. */
static mode_t monitoring_mode(const struct mount_state *k, const struct node *n)
{
	mode_t m = (mode_t)k->cfg->keyfs.monitoring_mode & 0444;
	return n->kind == NODE_DIR ? m | (m >> 2) : m;
}

static bool monitoring_allowed(struct mount_state *k, fuse_req_t req, const struct node *n)
{
	mode_t m = monitoring_mode(k, n);
	if ((m & 0444) == 0444)
		return true;
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	if (ctx->uid == 0 || ctx->uid == k->mount_uid)
		return m & 0400;
	gid_t gid;
	if ((m & 0040) && mount_state_monitoring_gid(k, &gid)) {
		if (ctx->gid == gid)
			return true;
		gid_t groups[CALLER_MAX_GROUPS];
		int ng = fuse_req_getgroups(req, CALLER_MAX_GROUPS, groups);
		for (int i = 0; i < ng && i < CALLER_MAX_GROUPS; i++)
			if (groups[i] == gid)
				return true;
	}
	return m & 0004;
}

/* An evm key always reads as 67 bytes ("0x", 64 hex digits, newline: the
 * canonical form).  The size matters beyond stat: a MAP_PRIVATE mmap (the
 * kernel refuses MAP_SHARED of a direct-I/O file with ENODEV) reads pages
 * up to it, and past it the reader gets SIGBUS: so a size is never 0. */
static int node_stat(struct mount_state *k, const struct node *n, struct stat *st)
{
	int rc;
	switch (n->kind) {
	case NODE_DIR:
		fill_stat(k, st, S_IFDIR, n->entry->monitoring ? monitoring_mode(k, n) : n->entry->mode,
		          k->start_wall);
		if (n->entry->monitoring)
			mount_state_monitoring_gid(k, &st->st_gid);   /* -1 shows as nogroup */
		return 0;
	case NODE_SNAPSHOT:
		fill_stat(k, st, S_IFREG, monitoring_mode(k, n), clock_wall());
		mount_state_monitoring_gid(k, &st->st_gid);
		return 0;
	case NODE_KEY: {
		struct caller c;
		mount_state_caller_current(k, &c);
		rc = keyops_lookup(k, &c, n->name);
		if (rc < 0)
			return rc;
		fill_stat(k, st, S_IFREG, KEY_MODE, keyops_mtime(k, n->name));
		/* What a read returns (evm: always 67), without fetching.  An
		 * `any` key the mount has not seen yet: the most a read can
		 * return (as sysfs says 4096), so that page 0 of a mapping is
		 * inside EOF; the short read then trims the kernel's size. */
		st->st_size = keyops_size(k, n->name);
		if (st->st_size == 0)
			st->st_size = KEY_MAX_BYTES + 1;
		return 0;
	}
	case NODE_ADDRESS: {
		double mtime;
		struct caller c;
		mount_state_caller_current(k, &c);
		rc = address_stat(k, &c, n->name, &mtime);
		if (rc < 0)
			return rc;
		fill_stat(k, st, S_IFREG, n->entry->mode, mtime);
		st->st_size = ADDRESS_FILE_SIZE;   /* fixed: no fetch needed to know it */
		return 0;
	}
	}
	return -ENOENT;
}

/* Key files change behind our back (rotation, other writers): the kernel's
 * attribute cache is short, and with other users on the mount, whether
 * keys/<name> exists depends on who asks (a caller without a grant gets
 * ENOENT) while that cache is shared by all users: then none at all. */
static double attr_timeout(const struct mount_state *k)
{
	return k->other_users ? 0 : 1.0;
}

/* The st_ino users see for inode ino.  A named child's FUSE node id is
 * above 2^32 (inotab.h), but a 32-bit program built without large-file
 * support gets EOVERFLOW from stat() on a number that does not fit its
 * ino_t; so it is shown as TREE_SIZE + its serial: below 2^32 for the first
 * ~4 billion lookups of a mount, and as unique and never reused as the node
 * id (the serial only grows). */
static ino_t st_ino_of(fuse_ino_t ino)
{
	return ino <= TREE_SIZE ? (ino_t)ino : (ino_t)(TREE_SIZE + inotab_serial(ino));
}

/* Answer a LOOKUP, CREATE or MKNOD of node n: its ino (counted), attributes
 * and timeouts.  fixed: the cache-for-long entries; `uncached`: a name
 * that exists only while a file is being created on it. */
static int entry_for(struct mount_state *k, const struct node *n, bool uncached,
                     struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	int rc = node_stat(k, n, &e->attr);
	if (rc < 0)
		return rc;
	if (!n->name) {
		e->ino = fixed_ino(n->entry);
		e->entry_timeout = FIXED_ENTRY_SECONDS;
	} else {
		e->ino = rec_ref(k->tree, node_family(n), n->name);
		if (!e->ino)
			return -ENOMEM;
		if (n->kind == NODE_SNAPSHOT)
			e->entry_timeout = FIXED_ENTRY_SECONDS;   /* health/<backend> */
		else if (!uncached && !k->other_users)
			e->entry_timeout = KEY_ENTRY_SECONDS;
	}
	e->attr.st_ino = st_ino_of(e->ino);
	e->attr_timeout = uncached ? 0 : attr_timeout(k);
	return 0;
}

/* The kernel did not get an entry we counted (the request was interrupted). */
static void entry_unsent(struct mount_state *k, const struct fuse_entry_param *e)
{
	if (e->ino > TREE_SIZE)
		rec_unref(k->tree, e->ino, 1);
}

static void ll_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct mount_state *k = begin(req);
	struct node n;
	struct fuse_entry_param e;
	int rc = node_child(k, parent, name, &n);
	if (rc == 0)
		rc = entry_for(k, &n, n.kind == NODE_KEY && keyops_is_creating(k, n.name), &e);
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else if (fuse_reply_entry(req, &e) < 0)
		entry_unsent(k, &e);
}

static void ll_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	struct mount_state *k = fuse_req_userdata(req);
	if (ino > TREE_SIZE)
		rec_unref(k->tree, ino, nlookup);
	fuse_reply_none(req);
}

static void ll_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	struct mount_state *k = fuse_req_userdata(req);
	for (size_t i = 0; i < count; i++)
		if (forgets[i].ino > TREE_SIZE)
			rec_unref(k->tree, forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

static void reply_attr(struct mount_state *k, fuse_req_t req, fuse_ino_t ino, const struct node *n)
{
	struct stat st;
	int rc = node_stat(k, n, &st);
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	st.st_ino = st_ino_of(ino);
	fuse_reply_attr(req, &st, attr_timeout(k));
}

static void ll_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)fi;
	struct mount_state *k = begin(req);
	struct lnode ln;
	int rc = node_of(k, ino, &ln);
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		reply_attr(k, req, ino, &ln.n);
}

/* An open keys/ or addresses/: its listing, taken when the reading starts
 * (offset 0), served by offset.  The kernel serialises the READDIRs of one
 * open directory. */
struct dir_listing {
	struct strlist names;
};

static bool dir_is_listing(const struct node *n)
{
	return n->kind == NODE_DIR && n->entry->has_children &&
	       n->entry->child_kind != NODE_SNAPSHOT;
}

static void ll_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct mount_state *k = begin(req);
	struct lnode ln;
	fi->fh = 0;
	if (node_of(k, ino, &ln) == 0 && dir_is_listing(&ln.n)) {
		struct dir_listing *d = calloc(1, sizeof(*d));
		if (!d) {
			fuse_reply_err(req, ENOMEM);
			return;
		}
		fi->fh = (uintptr_t)d;
	}
	/* errors are readdir's, as before */
	if (fuse_reply_open(req, fi) < 0 && fi->fh) {
		free((struct dir_listing *)(uintptr_t)fi->fh);
		fi->fh = 0;
	}
}

static void ll_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	struct dir_listing *d = (struct dir_listing *)(uintptr_t)fi->fh;
	if (d) {
		strlist_clear(&d->names);
		free(d);
	}
	fuse_reply_err(req, 0);
}

/* Fill from entry `off` on: ".", "..", the fixed children, then the names.
 * Returns the bytes used in buf. */
static size_t fill_listing(fuse_req_t req, const struct tree_entry *dir,
                           const struct strlist *names, char *buf, size_t size, off_t off)
{
	const char *fixed[TREE_SIZE + 2];
	fuse_ino_t fixed_inos[TREE_SIZE + 2];
	size_t nfixed = 0;
	fixed_inos[nfixed] = fixed_ino(dir);
	fixed[nfixed++] = ".";
	fixed_inos[nfixed] = FUSE_ROOT_ID;
	fixed[nfixed++] = "..";
	size_t plen = strlen(dir->path);
	for (size_t i = 0; i < TREE_SIZE; i++) {
		const char *p = tree[i].path;
		if (p[1] == 0 || parent_len(p) != plen || strncmp(p, dir->path, plen) != 0)
			continue;
		fixed_inos[nfixed] = fixed_ino(&tree[i]);
		fixed[nfixed++] = strrchr(p, '/') + 1;
	}
	struct stat st;
	memset(&st, 0, sizeof(st));
	size_t used = 0;
	for (size_t i = off < 0 ? 0 : (size_t)off; i < nfixed + names->n; i++) {
		const char *name = i < nfixed ? fixed[i] : names->items[i - nfixed];
		st.st_ino = i < nfixed ? fixed_inos[i] : 0xffffffff;   /* libfuse's FUSE_UNKNOWN_INO: d_ino unknown */
		st.st_mode = i < 2 || (i < nfixed && tree[fixed_inos[i] - 1].kind == NODE_DIR)
		             ? S_IFDIR : S_IFREG;
		size_t need = fuse_add_direntry(req, buf + used, size - used, name, &st, (off_t)i + 1);
		if (need > size - used)
			break;   /* the reply is full: the kernel asks again from i */
		used += need;
	}
	return used;
}

static void ll_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
	struct mount_state *k = begin(req);
	struct lnode ln;
	int rc = node_of(k, ino, &ln);
	struct node *n = &ln.n;
	if (rc == 0 && n->kind != NODE_DIR)
		rc = -ENOTDIR;
	if (rc == 0 && n->entry->monitoring && !monitoring_allowed(k, req, n))
		rc = -EACCES;
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	struct dir_listing *d = (struct dir_listing *)(uintptr_t)fi->fh;
	struct strlist tmp = STRLIST_INIT;
	struct strlist *names = d && dir_is_listing(n) ? &d->names : &tmp;
	if (dir_is_listing(n) && (off == 0 || names == &tmp)) {
		/* (Re)start: one listing per reading of the open directory,
		 * audited once. */
		struct caller c;
		strlist_clear(names);
		mount_state_caller_current(k, &c);
		if (n->entry->child_kind == NODE_ADDRESS)
			rc = address_list(k, &c, names);
		else
			rc = keyops_list(k, &c, names);
	} else if (n->entry->has_children && n->entry->child_kind == NODE_SNAPSHOT) {
		for (size_t i = 0; rc == 0 && i < k->n_instances; i++)
			if (strlist_add(&tmp, k->instances[i]->name) < 0)
				rc = -ENOMEM;
	}
	char *buf = rc == 0 ? malloc(size) : NULL;
	if (rc == 0 && !buf)
		rc = -ENOMEM;
	if (rc == 0) {
		fuse_reply_buf(req, buf, fill_listing(req, n->entry, names, buf, size, off));
	} else {
		strlist_clear(names);
		fuse_reply_err(req, -rc);
	}
	free(buf);
	strlist_clear(&tmp);
}

static enum handle_kind handle_kind(struct fuse_file_info *fi)
{
	return ((struct handle *)(uintptr_t)fi->fh)->kind;
}

/* The file handle of an open the kernel never saw (interrupted). */
static void release_handle(struct mount_state *k, struct fuse_file_info *fi)
{
	if (handle_kind(fi) == HANDLE_KEY)
		keyfile_release(k, fi);
	else
		snapshot_release(k, fi);
}

static void ll_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct mount_state *k = begin(req);
	struct lnode ln;
	int rc = node_of(k, ino, &ln);
	if (rc == 0) {
		switch (ln.n.kind) {
		case NODE_KEY:
		case NODE_ADDRESS:
			rc = ln.n.kind == NODE_KEY ? keyfile_open(k, &ln.n, fi, req)
			                           : address_open(k, &ln.n, fi, req);
			if (rc == OPEN_PARKED) {
				mount_state_request(NULL);   /* answered by another thread */
				return;
			}
			break;
		case NODE_SNAPSHOT:
			rc = monitoring_allowed(k, req, &ln.n) ? snapshot_open(k, &ln.n, fi) : -EACCES;
			break;
		case NODE_DIR:
			rc = -EISDIR;
			break;
		}
	}
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else if (fuse_reply_open(req, fi) < 0)
		release_handle(k, fi);
}

/* The count may dip below zero for a moment (an open answered before its
 * handler counted it); it is only waited on once no handler runs. */
void tree_parked(struct mount_state *k, int delta)
{
	struct tree_table *t = k->tree;
	if (!t)
		return;
	if (__atomic_add_fetch(&t->parked, delta, __ATOMIC_ACQ_REL) == 0) {
		pthread_mutex_lock(&t->parked_lock);
		pthread_cond_broadcast(&t->parked_done);
		pthread_mutex_unlock(&t->parked_lock);
	}
}

void tree_parked_answer(struct mount_state *k, fuse_req_t req, struct fuse_file_info *fi, int rc,
                        void (*release)(struct mount_state *k, struct fuse_file_info *fi))
{
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else if (fuse_reply_open(req, fi) < 0)   /* interrupted, or unmounted */
		release(k, fi);
	tree_parked(k, -1);
}

void tree_drain_parked(struct mount_state *k)
{
	struct tree_table *t = k->tree;
	if (!t)
		return;
	pthread_mutex_lock(&t->parked_lock);
	long n = __atomic_load_n(&t->parked, __ATOMIC_ACQUIRE);
	if (n > 0) {
		char count[24];
		snprintf(count, sizeof(count), "%ld", n);
		log_kv(LOG_LEVEL_INFO, "answering the opens still waiting for a fetch",
		       "opens", count, (char *)NULL);
	}
	while (__atomic_load_n(&t->parked, __ATOMIC_ACQUIRE) > 0)
		pthread_cond_wait(&t->parked_done, &t->parked_lock);
	pthread_mutex_unlock(&t->parked_lock);
}

/* A new name in keys/: the handle of a key being created. */
static int create_in(struct mount_state *k, fuse_ino_t parent, const char *name,
                     struct fuse_file_info *fi)
{
	if (parent != INO_KEYS)
		return -EACCES;   /* only keys/ holds files one can create */
	return keyfile_create(k, name, fi);
}

static void ll_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                      struct fuse_file_info *fi)
{
	(void)mode;
	struct mount_state *k = begin(req);
	struct fuse_entry_param e;
	int rc = create_in(k, parent, name, fi);
	if (rc == 0) {
		struct node n = { &tree[INO_KEYS - 1], NODE_KEY, name };
		rc = entry_for(k, &n, true, &e);
		if (rc < 0)
			keyfile_release(k, fi);
	}
	if (rc < 0) {
		fuse_reply_err(req, -rc);
	} else if (fuse_reply_create(req, &e, fi) < 0) {
		keyfile_release(k, fi);
		entry_unsent(k, &e);
	}
}

/* mknod of a regular file is a create and a close without writing (as
 * libfuse's high-level layer did it): the name exists for nobody after it,
 * so its entry is not cached. */
static void ll_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	(void)rdev;
	struct mount_state *k = begin(req);
	if (!S_ISREG(mode)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	struct fuse_file_info fi;
	memset(&fi, 0, sizeof(fi));
	fi.flags = O_CREAT | O_EXCL | O_WRONLY;
	struct fuse_entry_param e;
	int rc = create_in(k, parent, name, &fi);
	if (rc == 0) {
		struct node n = { &tree[INO_KEYS - 1], NODE_KEY, name };
		rc = entry_for(k, &n, true, &e);
		keyfile_release(k, &fi);
	}
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else if (fuse_reply_entry(req, &e) < 0)
		entry_unsent(k, &e);
}

void handle_register(struct mount_state *k, struct handle *h, enum handle_kind kind)
{
	h->kind = kind;
	h->prev = NULL;
	pthread_mutex_lock(&k->handles_lock);
	h->next = k->handles;
	if (h->next)
		h->next->prev = h;
	k->handles = h;
	pthread_mutex_unlock(&k->handles_lock);
}

void handle_unregister(struct mount_state *k, struct handle *h)
{
	pthread_mutex_lock(&k->handles_lock);
	if (h->prev)
		h->prev->next = h->next;
	else
		k->handles = h->next;
	if (h->next)
		h->next->prev = h->prev;
	pthread_mutex_unlock(&k->handles_lock);
}

/* The reply is a copy: the reader's close can bring the RELEASE (which
 * frees the open's buffer) while the reply's writev is still returning.  A
 * key is copied to the stack and wiped there, never to the heap. */
static void ll_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
	(void)ino;
	begin(req);
	const char *data = NULL;
	if (handle_kind(fi) == HANDLE_KEY) {
		char copy[KEY_MAX_BYTES + 64];
		int n = keyfile_read(size, off, fi, &data);
		if (n > (int)sizeof(copy))
			n = -EIO;   /* a key file holds a key and a newline */
		if (n < 0) {
			fuse_reply_err(req, -n);
			return;
		}
		if (n > 0)
			memcpy(copy, data, (size_t)n);
		fuse_reply_buf(req, copy, (size_t)n);
		secret_wipe(copy, (size_t)n);
		return;
	}
	int n = snapshot_read(size, off, fi, &data);
	char *copy = n > 0 ? malloc((size_t)n) : NULL;
	if (n > 0 && !copy)
		n = -ENOMEM;
	if (n < 0) {
		fuse_reply_err(req, -n);
	} else {
		if (n > 0)
			memcpy(copy, data, (size_t)n);
		fuse_reply_buf(req, copy, (size_t)n);
	}
	free(copy);
}

static void ll_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
	(void)ino;
	struct mount_state *k = begin(req);
	int rc = handle_kind(fi) != HANDLE_KEY ? -EBADF : keyfile_write(k, buf, size, off, fi);
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_write(req, (size_t)rc);
}

static void ll_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	struct mount_state *k = begin(req);
	int rc = handle_kind(fi) != HANDLE_KEY ? 0 : keyfile_flush(k, fi);
	fuse_reply_err(req, -rc);
}

static void ll_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct mount_state *k = begin(req);
	bool key = handle_kind(fi) == HANDLE_KEY;
	release_handle(k, fi);
	fuse_reply_err(req, 0);
	/* A MAP_PRIVATE mapping read the key through the page cache: drop
	 * those pages now that the file is closed (nothing to drop after plain
	 * direct-I/O reads).  After the reply; RELEASE holds no lock of the
	 * kernel's. */
	if (key && k->tree)
		fuse_lowlevel_notify_inval_inode(k->tree->se, ino, 0, 0);
}

/* `touch keys/<net>` forces a refetch of that key (audited as a refresh).
 * The mount's own touch (a rotation notice for inotify watchers) is not a
 * caller's: it is answered at once. */
static int touch_key(struct mount_state *k, const struct node *n)
{
	if (n->kind != NODE_KEY)
		return -EPERM;
	/* touch of a new name: nothing to refetch, nothing to audit */
	if (mount_state_request_is_own(k) || keyops_is_creating(k, n->name) ||
	    keyfile_created_open(k, n->name))
		return 0;
	struct caller c;
	struct secret *key = NULL;
	mount_state_caller_current(k, &c);
	int rc = keyops_get(k, &c, n->name, true, &key);
	secret_free(key);
	/* A key being created (touch of a new name) has nothing to refetch. */
	return rc == -ENOENT && keyops_exists(k, n->name) == 0 ? 0 : rc;
}

static int truncate_key(struct mount_state *k, const struct node *n, off_t size,
                        struct fuse_file_info *fi)
{
	if (n->kind != NODE_KEY)
		return -EACCES;
	if (!fi) {
		struct caller c;
		mount_state_caller_current(k, &c);
		int rc = keyops_check(k, &c, n->name, KEY_OP_STORE);
		if (rc < 0)
			return rc;
	} else if (handle_kind(fi) != HANDLE_KEY) {
		return -EBADF;
	}
	return keyfile_truncate(fi, size);
}

/* chmod and chown are refused; truncate (`> file`) and utimens (touch) as
 * above, in the order libfuse's high-level layer took them. */
static void ll_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                       struct fuse_file_info *fi)
{
	struct mount_state *k = begin(req);
	struct lnode ln;
	int rc = node_of(k, ino, &ln);
	if (rc == 0 && (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)))
		rc = -EPERM;
	if (rc == 0 && (to_set & FUSE_SET_ATTR_SIZE))
		rc = truncate_key(k, &ln.n, attr->st_size, fi);
	if (rc == 0 && (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME |
	                          FUSE_SET_ATTR_ATIME_NOW | FUSE_SET_ATTR_MTIME_NOW)))
		rc = touch_key(k, &ln.n);
	struct stat st;
	if (rc == 0 && ln.n.kind == NODE_KEY && node_stat(k, &ln.n, &st) == -ENOENT &&
	    keyfile_created_open(k, ln.n.name)) {
		/* touch(1) of a new name through a copy of the closed descriptor:
		 * the times of a file that holds nothing, not cached */
		fill_stat(k, &st, S_IFREG, KEY_MODE, clock_wall());
		st.st_size = KEY_MAX_BYTES + 1;
		st.st_ino = st_ino_of(ino);
		fuse_reply_attr(req, &st, 0);
		return;
	}
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		reply_attr(k, req, ino, &ln.n);
}

static void ll_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct mount_state *k = begin(req);
	struct node n;
	int rc = node_child(k, parent, name, &n);
	if (rc == 0 && n.kind != NODE_KEY)
		rc = -EPERM;
	if (rc == 0) {
		struct caller c;
		mount_state_caller_current(k, &c);
		rc = keyops_remove(k, &c, n.name);
	}
	fuse_reply_err(req, -rc);
}

static int access_node(struct mount_state *k, fuse_req_t req, const struct node *n, int mask)
{
	struct caller c;
	mount_state_caller_current(k, &c);
	switch (n->kind) {
	case NODE_DIR:
		if (n->entry->monitoring && !monitoring_allowed(k, req, n))
			return -EACCES;
		if (n->entry->has_children && n->entry->child_kind == NODE_KEY) {
			if ((mask & R_OK) && !keyops_allowed(k, &c, "", ACCESS_LIST))
				return -EACCES;
			/* keys/ is writable for a caller some rule lets create keys */
			if ((mask & W_OK) && !access_allowed_somewhere(k->access, &c, ACCESS_WRITE))
				return -EACCES;
			return 0;
		}
		return (mask & W_OK) ? -EACCES : 0;
	case NODE_SNAPSHOT:
		if (mask & (W_OK | X_OK))
			return -EACCES;
		return monitoring_allowed(k, req, n) ? 0 : -EACCES;
	case NODE_ADDRESS:
		if (mask & (W_OK | X_OK))
			return -EACCES;
		if ((mask & R_OK) && !keyops_allowed(k, &c, n->name, ACCESS_ADDRESS))
			return -EACCES;
		if (mask == F_OK) {
			double mtime;
			return address_stat(k, &c, n->name, &mtime);
		}
		return 0;
	case NODE_KEY:
		if (!access_any_grant(k->access, &c, n->name))
			return -ENOENT;
		if (mask & X_OK)
			return -EACCES;
		if ((mask & R_OK) && !keyops_allowed(k, &c, n->name, ACCESS_READ))
			return -EACCES;
		if ((mask & W_OK) && !keyops_allowed(k, &c, n->name, ACCESS_WRITE))
			return -EACCES;
		if (mask == F_OK)
			return keyops_exists(k, n->name);
		return 0;
	}
	return -ENOENT;
}

static void ll_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
	struct mount_state *k = begin(req);
	struct lnode ln;
	int rc = node_of(k, ino, &ln);
	if (rc == 0)
		rc = access_node(k, req, &ln.n, mask);
	fuse_reply_err(req, -rc);
}

static void ll_statfs(fuse_req_t req, fuse_ino_t ino)
{
	(void)ino;
	struct statvfs st;
	memset(&st, 0, sizeof(st));
	st.f_bsize = 4096;
	st.f_frsize = 4096;
	st.f_namemax = 64;
	fuse_reply_statfs(req, &st);
}

static void ll_eperm_name(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	(void)parent;
	(void)name;
	fuse_reply_err(req, EPERM);
}

static void ll_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	(void)mode;
	ll_eperm_name(req, parent, name);
}

static void ll_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	(void)link;
	ll_eperm_name(req, parent, name);
}

static void ll_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                      const char *newname, unsigned int flags)
{
	(void)newparent;
	(void)newname;
	(void)flags;
	ll_eperm_name(req, parent, name);
}

static void ll_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	(void)ino;
	ll_eperm_name(req, newparent, newname);
}

static void ll_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
}

/* After the loop: files closed by their programs whose RELEASE was still
 * queued when a signal ended the loop.  Their key bytes are wiped here. */
static void ll_destroy(void *private_data)
{
	struct mount_state *k = private_data;
	pthread_mutex_lock(&k->handles_lock);
	struct handle *h = k->handles;
	k->handles = NULL;
	pthread_mutex_unlock(&k->handles_lock);
	while (h) {
		struct handle *next = h->next;
		if (h->kind == HANDLE_KEY)
			keyfile_discard(k, h);
		else
			snapshot_discard(h);
		h = next;
	}
}

const struct fuse_lowlevel_ops keyfs_ll_ops = {
	.init = ll_init,
	.destroy = ll_destroy,
	.lookup = ll_lookup,
	.forget = ll_forget,
	.forget_multi = ll_forget_multi,
	.getattr = ll_getattr,
	.setattr = ll_setattr,
	.opendir = ll_opendir,
	.readdir = ll_readdir,
	.releasedir = ll_releasedir,
	.open = ll_open,
	.create = ll_create,
	.mknod = ll_mknod,
	.read = ll_read,
	.write = ll_write,
	.flush = ll_flush,
	.release = ll_release,
	.unlink = ll_unlink,
	.access = ll_access,
	.statfs = ll_statfs,
	.mkdir = ll_mkdir,
	.rmdir = ll_eperm_name,
	.rename = ll_rename,
	.link = ll_link,
	.symlink = ll_symlink,
};

/* --- invalidation notices ------------------------------------------------- */

/* keys/<network> and addresses/<network>: the name is gone ('g': drop the
 * kernel's entries) or its value changed ('c': drop its attributes and
 * pages).  Only for names the kernel holds. */
static void deliver(struct tree_table *t, const char *item)
{
	const char *name = item + 1;
	static const fuse_ino_t dirs[] = { INO_KEYS, INO_ADDRESSES };
	for (size_t i = 0; i < 2; i++) {
		uint64_t ino = rec_find(t, (unsigned)dirs[i] - 1, name);
		if (!ino)
			continue;
		if (item[0] == 'g')
			fuse_lowlevel_notify_inval_entry(t->se, dirs[i], name, strlen(name));
		else
			fuse_lowlevel_notify_inval_inode(t->se, ino, 0, 0);
	}
}

static void *notifier_main(void *arg)
{
	struct tree_table *t = arg;
	pthread_mutex_lock(&t->lock);
	while (!t->stopping) {
		if (t->queue.n == 0) {
			pthread_cond_wait(&t->wake, &t->lock);
			continue;
		}
		struct strlist batch = t->queue;
		t->queue = (struct strlist)STRLIST_INIT;
		uint64_t upto = t->queued;
		pthread_mutex_unlock(&t->lock);
		for (size_t i = 0; i < batch.n && !t->stopping; i++)
			deliver(t, batch.items[i]);
		strlist_clear(&batch);
		pthread_mutex_lock(&t->lock);
		t->delivered = upto;
		pthread_cond_broadcast(&t->drained);
	}
	pthread_mutex_unlock(&t->lock);
	return NULL;
}

/* Queue a notice; with wait, outside a FUSE request (the control socket's
 * thread), until it is delivered, so that `key remove` returns with the
 * name already gone from the kernel's cache.  A handler never waits: the
 * kernel may hold the directory's lock while it runs. */
static void notice(struct mount_state *k, char what, const char *network, bool wait)
{
	struct tree_table *t = k->tree;
	if (!t)
		return;
	char item[66];
	item[0] = what;
	snprintf(item + 1, sizeof(item) - 1, "%s", network);
	pthread_mutex_lock(&t->lock);
	/* Nothing to tell the kernel about a name it holds no inode for. */
	if (!t->notifier_started || t->stopping ||
	    (!inotab_find(&t->inos, INO_KEYS - 1, network) &&
	     !inotab_find(&t->inos, INO_ADDRESSES - 1, network))) {
		pthread_mutex_unlock(&t->lock);
		return;
	}
	if (strlist_add(&t->queue, item) == 0) {
		uint64_t mine = ++t->queued;
		pthread_cond_signal(&t->wake);
		while (wait && !mount_state_in_request() && !t->stopping &&
		       t->delivered < mine)
			pthread_cond_wait(&t->drained, &t->lock);
	}
	pthread_mutex_unlock(&t->lock);
}

void mount_state_name_gone(struct mount_state *k, const char *network, bool wait)
{
	notice(k, 'g', network, wait);
}

void mount_state_name_changed(struct mount_state *k, const char *network, bool wait)
{
	notice(k, 'c', network, wait);
}

int tree_start(struct mount_state *k, struct fuse_session *se)
{
	struct tree_table *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->se = se;
	inotab_init(&t->inos);   /* numbers above UINT32_MAX: never a fixed one */
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->wake, NULL);
	pthread_cond_init(&t->drained, NULL);
	pthread_mutex_init(&t->parked_lock, NULL);
	pthread_cond_init(&t->parked_done, NULL);
	k->tree = t;
	return 0;
}

int tree_start_notifier(struct mount_state *k)
{
	struct tree_table *t = k->tree;
	pthread_mutex_lock(&t->lock);
	int rc = pthread_create(&t->notifier, NULL, notifier_main, t);
	t->notifier_started = rc == 0;
	pthread_mutex_unlock(&t->lock);
	return -rc;
}

void tree_stop_notifier(struct mount_state *k)
{
	struct tree_table *t = k->tree;
	if (!t)
		return;
	pthread_mutex_lock(&t->lock);
	bool started = t->notifier_started;
	t->stopping = true;
	pthread_cond_broadcast(&t->wake);
	pthread_cond_broadcast(&t->drained);
	pthread_mutex_unlock(&t->lock);
	if (!started)
		return;
	/* A notice waits for the directory's lock, which the kernel may hold
	 * for a request the ended loop will never read: then leave the thread
	 * (and the table it reads) to the exit rather than hang the stop. */
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 2;
	if (pthread_timedjoin_np(t->notifier, NULL, &until) != 0) {
		pthread_detach(t->notifier);
		t->stuck = true;
		log_kv(LOG_LEVEL_WARN, "an invalidation notice was still waiting at stop", (char *)NULL);
	}
	pthread_mutex_lock(&t->lock);
	t->notifier_started = false;
	pthread_mutex_unlock(&t->lock);
}

void tree_free(struct mount_state *k)
{
	struct tree_table *t = k->tree;
	if (!t)
		return;
	tree_stop_notifier(k);
	k->tree = NULL;
	if (t->stuck)
		return;
	inotab_clear(&t->inos);
	strlist_clear(&t->queue);
	pthread_mutex_destroy(&t->lock);
	pthread_cond_destroy(&t->wake);
	pthread_cond_destroy(&t->drained);
	pthread_mutex_destroy(&t->parked_lock);
	pthread_cond_destroy(&t->parked_done);
	free(t);
}
