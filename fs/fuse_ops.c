/* fuse_ops.c - the FUSE operation table and the one table of names it
 * dispatches through.  getattr, readdir and statfs of the root, metrics and
 * health/ never call a backend: node_exporter stats every FUSE mount, and a
 * hung stat is how FUSE mounts take monitoring down with them. */
#include "tree.h"
#include "clock.h"
#include "log.h"

#include <errno.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define DIR_MODE  0755
#define KEY_MODE  0600
#define VIRT_MODE 0444

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

/* health/<backend> files: the family's render function. */
static const struct tree_entry health_file = {
	"/health/*", NODE_SNAPSHOT, VIRT_MODE, snapshot_render_health, 0, false, true
};

/* addresses/<network> files: rendered at open, like health files. */
static const struct tree_entry address_file = {
	"/addresses/*", NODE_ADDRESS, VIRT_MODE, address_render, 0, false, false
};

static struct mount_state *current_keyfs(void)
{
	return fuse_get_context()->private_data;
}

/* The mount's state and the node of path, for every path-based op. */
static int resolve(const char *path, struct mount_state **k, struct node *n)
{
	*k = current_keyfs();
	return tree_resolve(*k, path, n);
}

/* Length of the parent part of an absolute path: "/keys/x" -> 5, "/metrics" -> 1. */
static size_t parent_len(const char *path)
{
	const char *slash = strrchr(path, '/');
	return slash == path ? 1 : (size_t)(slash - path);
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
		if (e->child_kind == NODE_KEY || e->child_kind == NODE_ADDRESS) {
			if (!network_name_valid(name))
				return -ENOENT;
			*n = (struct node){ e->child_kind == NODE_KEY ? e : &address_file,
			                    e->child_kind, name };
			return 0;
		}
		if (!mount_state_instance(k, name))
			return -ENOENT;
		*n = (struct node){ &health_file, NODE_SNAPSHOT, name };
		return 0;
	}
	return -ENOENT;
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

static bool monitoring_allowed(struct mount_state *k, const struct node *n)
{
	mode_t m = monitoring_mode(k, n);
	if ((m & 0444) == 0444)
		return true;
	const struct fuse_context *ctx = fuse_get_context();
	if (ctx->uid == 0 || ctx->uid == k->mount_uid)
		return m & 0400;
	if (m & 0040) {
		if (ctx->gid == k->monitoring_gid)
			return true;
		gid_t groups[CALLER_MAX_GROUPS];
		int ng = fuse_getgroups(CALLER_MAX_GROUPS, groups);
		for (int i = 0; i < ng && i < CALLER_MAX_GROUPS; i++)
			if (groups[i] == k->monitoring_gid)
				return true;
	}
	return m & 0004;
}

/* An evm key always reads as 67 bytes ("0x", 64 hex digits, newline: the
 * canonical form).  The size matters beyond stat: a MAP_PRIVATE mmap (the
 * kernel refuses MAP_SHARED of a direct-I/O file with ENODEV) reads pages
 * up to it, and past it the reader gets SIGBUS. */
static int op_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	(void)fi;
	struct mount_state *k;
	struct node n;
	int rc = resolve(path, &k, &n);
	if (rc < 0)
		return rc;
	switch (n.kind) {
	case NODE_DIR:
		fill_stat(k, st, S_IFDIR, n.entry->monitoring ? monitoring_mode(k, &n) : n.entry->mode,
		          k->start_wall);
		if (n.entry->monitoring)
			st->st_gid = k->monitoring_gid;
		return 0;
	case NODE_SNAPSHOT:
		fill_stat(k, st, S_IFREG, monitoring_mode(k, &n), clock_wall());
		st->st_gid = k->monitoring_gid;
		return 0;
	case NODE_KEY: {
		struct caller c;
		mount_state_caller_current(k, &c);
		rc = keyops_lookup(k, &c, n.name);
		if (rc < 0)
			return rc;
		fill_stat(k, st, S_IFREG, KEY_MODE, keyops_mtime(k, n.name));
		/* What a read returns (evm: always 67), without fetching. */
		st->st_size = keyops_size(k, n.name);
		return 0;
	}
	case NODE_ADDRESS: {
		double mtime;
		struct caller c;
		mount_state_caller_current(k, &c);
		rc = address_stat(k, &c, n.name, &mtime);
		if (rc < 0)
			return rc;
		fill_stat(k, st, S_IFREG, n.entry->mode, mtime);
		st->st_size = ADDRESS_FILE_SIZE;   /* fixed: no fetch needed to know it */
		return 0;
	}
	}
	return -ENOENT;
}

/* An open keys/ or addresses/: its listing, taken when the reading starts
 * (offset 0), served by offset.  Without offsets libfuse keeps the entries
 * on a list it walks from the head for every READDIR request, which made
 * `ls keys/` of 100 000 names quadratic (0.4-0.5 s; issue 15).  libfuse
 * serialises the READDIRs of one open directory. */
struct dir_listing {
	struct strlist names;
};

static bool dir_is_listing(const struct node *n)
{
	return n->kind == NODE_DIR && n->entry->has_children &&
	       n->entry->child_kind != NODE_SNAPSHOT;
}

static int op_opendir(const char *path, struct fuse_file_info *fi)
{
	struct mount_state *k;
	struct node n;
	fi->fh = 0;
	if (resolve(path, &k, &n) < 0 || !dir_is_listing(&n))
		return 0;   /* errors are readdir's, as before */
	struct dir_listing *d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	fi->fh = (uintptr_t)d;
	return 0;
}

static int op_releasedir(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	struct dir_listing *d = (struct dir_listing *)(uintptr_t)fi->fh;
	if (d) {
		strlist_clear(&d->names);
		free(d);
	}
	return 0;
}

/* Fill from entry `off` on: ".", "..", the fixed children, then the names. */
static int fill_listing(const struct tree_entry *dir, const struct strlist *names, void *buf,
                        fuse_fill_dir_t fill, off_t off)
{
	const char *fixed[TREE_SIZE + 2];
	size_t nfixed = 0;
	fixed[nfixed++] = ".";
	fixed[nfixed++] = "..";
	size_t plen = strlen(dir->path);
	for (size_t i = 0; i < TREE_SIZE; i++) {
		const char *p = tree[i].path;
		if (p[1] == 0 || parent_len(p) != plen || strncmp(p, dir->path, plen) != 0)
			continue;
		fixed[nfixed++] = strrchr(p, '/') + 1;
	}
	for (size_t i = off < 0 ? 0 : (size_t)off; i < nfixed + names->n; i++) {
		const char *name = i < nfixed ? fixed[i] : names->items[i - nfixed];
		if (fill(buf, name, NULL, (off_t)i + 1, 0))
			break;   /* the reply is full: the kernel asks again from i */
	}
	return 0;
}

static int op_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off,
                      struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
	(void)flags;
	struct mount_state *k;
	struct node n;
	int rc = resolve(path, &k, &n);
	if (rc < 0)
		return rc;
	if (n.kind != NODE_DIR)
		return -ENOTDIR;
	if (n.entry->monitoring && !monitoring_allowed(k, &n))
		return -EACCES;
	struct dir_listing *d = (struct dir_listing *)(uintptr_t)fi->fh;
	struct strlist tmp = STRLIST_INIT;
	struct strlist *names = d && dir_is_listing(&n) ? &d->names : &tmp;
	if (dir_is_listing(&n) && (off == 0 || names == &tmp)) {
		/* (Re)start: one listing per reading of the open directory,
		 * audited once. */
		struct caller c;
		strlist_clear(names);
		mount_state_caller_current(k, &c);
		if (n.entry->child_kind == NODE_ADDRESS)
			rc = address_list(k, &c, names);
		else
			rc = keyops_list(k, &c, names);
	} else if (n.entry->has_children && n.entry->child_kind == NODE_SNAPSHOT) {
		for (size_t i = 0; rc == 0 && i < k->n_instances; i++)
			if (strlist_add(&tmp, k->instances[i]->name) < 0)
				rc = -ENOMEM;
	}
	if (rc == 0)
		rc = fill_listing(n.entry, names, buf, fill, off);
	else
		strlist_clear(names);
	strlist_clear(&tmp);
	return rc;
}

static int op_open(const char *path, struct fuse_file_info *fi)
{
	struct mount_state *k;
	struct node n;
	int rc = resolve(path, &k, &n);
	if (rc < 0)
		return rc;
	switch (n.kind) {
	case NODE_KEY:
		return keyfile_open(k, &n, fi);
	case NODE_SNAPSHOT:
		if (!monitoring_allowed(k, &n))
			return -EACCES;
		return snapshot_open(k, &n, fi);
	case NODE_ADDRESS:
		return snapshot_open(k, &n, fi);
	case NODE_DIR:
		return -EISDIR;
	}
	return -ENOENT;
}

static int op_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	(void)mode;
	struct mount_state *k = current_keyfs();
	size_t plen = parent_len(path);
	if (plen != 5 || strncmp(path, "/keys", 5) != 0)
		return -EACCES;   /* only keys/ holds files one can create */
	return keyfile_create(k, path + 6, fi);
}

static enum handle_kind handle_kind(struct fuse_file_info *fi)
{
	return ((struct handle *)(uintptr_t)fi->fh)->kind;
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

static int op_read(const char *path, char *buf, size_t size, off_t off,
                   struct fuse_file_info *fi)
{
	(void)path;
	if (handle_kind(fi) == HANDLE_KEY)
		return keyfile_read(buf, size, off, fi);
	return snapshot_read(buf, size, off, fi);
}

static int op_write(const char *path, const char *buf, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
	(void)path;
	if (handle_kind(fi) != HANDLE_KEY)
		return -EBADF;
	return keyfile_write(current_keyfs(), buf, size, off, fi);
}

static int op_flush(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	if (handle_kind(fi) != HANDLE_KEY)
		return 0;
	return keyfile_flush(current_keyfs(), fi);
}

static int op_release(const char *path, struct fuse_file_info *fi)
{
	if (handle_kind(fi) == HANDLE_KEY) {
		keyfile_release(current_keyfs(), fi);
		/* A MAP_PRIVATE mapping read the key through the page cache:
		 * drop those pages now that the file is closed (nothing to drop
		 * after plain direct-I/O reads). */
		if (path)
			fuse_invalidate_path(fuse_get_context()->fuse, path);
	} else {
		snapshot_release(current_keyfs(), fi);
	}
	return 0;
}

static int op_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	struct mount_state *k;
	struct node n;
	int rc = resolve(path, &k, &n);
	if (rc < 0)
		return rc;
	if (n.kind != NODE_KEY)
		return -EACCES;
	if (!fi) {
		struct caller c;
		mount_state_caller_current(k, &c);
		rc = keyops_check(k, &c, n.name, KEY_OP_STORE);
		if (rc < 0)
			return rc;
	} else if (handle_kind(fi) != HANDLE_KEY) {
		return -EBADF;
	}
	return keyfile_truncate(fi, size);
}

static int op_unlink(const char *path)
{
	struct mount_state *k;
	struct node n;
	int rc = resolve(path, &k, &n);
	if (rc < 0)
		return rc;
	if (n.kind != NODE_KEY)
		return -EPERM;
	struct caller c;
	mount_state_caller_current(k, &c);
	return keyops_remove(k, &c, n.name);
}

/* `touch keys/<net>` forces a refetch of that key (audited as a refresh).
 * The mount's own touch (a rotation notice for inotify watchers) is not a
 * caller's: it is answered at once. */
static int op_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi)
{
	(void)tv;
	(void)fi;
	struct mount_state *k;
	struct node n;
	int rc = resolve(path, &k, &n);
	if (rc < 0)
		return rc;
	if (n.kind != NODE_KEY)
		return -EPERM;
	/* touch of a new name: nothing to refetch, nothing to audit */
	if (mount_state_request_is_own(k) || keyops_is_creating(k, n.name))
		return 0;
	struct caller c;
	struct secret *key = NULL;
	mount_state_caller_current(k, &c);
	rc = keyops_get(k, &c, n.name, true, &key);
	secret_free(key);
	/* A key being created (touch of a new name) has nothing to refetch. */
	return rc == -ENOENT && keyops_exists(k, n.name) == 0 ? 0 : rc;
}

static int op_access(const char *path, int mask)
{
	struct mount_state *k;
	struct node n;
	int rc = resolve(path, &k, &n);
	if (rc < 0)
		return rc;
	struct caller c;
	mount_state_caller_current(k, &c);
	switch (n.kind) {
	case NODE_DIR:
		if (n.entry->monitoring && !monitoring_allowed(k, &n))
			return -EACCES;
		if (n.entry->has_children && n.entry->child_kind == NODE_KEY) {
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
		return monitoring_allowed(k, &n) ? 0 : -EACCES;
	case NODE_ADDRESS:
		if (mask & (W_OK | X_OK))
			return -EACCES;
		if ((mask & R_OK) && !keyops_allowed(k, &c, n.name, ACCESS_ADDRESS))
			return -EACCES;
		if (mask == F_OK) {
			double mtime;
			return address_stat(k, &c, n.name, &mtime);
		}
		return 0;
	case NODE_KEY:
		if (!access_any_grant(k->access, &c, n.name))
			return -ENOENT;
		if (mask & X_OK)
			return -EACCES;
		if ((mask & R_OK) && !keyops_allowed(k, &c, n.name, ACCESS_READ))
			return -EACCES;
		if ((mask & W_OK) && !keyops_allowed(k, &c, n.name, ACCESS_WRITE))
			return -EACCES;
		if (mask == F_OK)
			return keyops_exists(k, n.name);
		return 0;
	}
	return -ENOENT;
}

static int op_statfs(const char *path, struct statvfs *st)
{
	(void)path;
	memset(st, 0, sizeof(*st));
	st->f_bsize = 4096;
	st->f_frsize = 4096;
	st->f_namemax = 64;
	return 0;
}

static int op_eperm_path(const char *path, mode_t mode)
{
	(void)path;
	(void)mode;
	return -EPERM;
}

static int op_eperm_two(const char *from, const char *to)
{
	(void)from;
	(void)to;
	return -EPERM;
}

static int op_rmdir(const char *path)
{
	(void)path;
	return -EPERM;
}

static int op_rename(const char *from, const char *to, unsigned int flags)
{
	(void)flags;
	return op_eperm_two(from, to);
}

static int op_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	(void)fi;
	return op_eperm_path(path, mode);
}

static int op_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi)
{
	(void)path;
	(void)uid;
	(void)gid;
	(void)fi;
	return -EPERM;
}

static int op_mknod(const char *path, mode_t mode, dev_t dev)
{
	(void)dev;
	return op_eperm_path(path, mode);
}

static void *op_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	/* Key files change behind our back (rotation, other writers): keep the
	 * kernel's attribute and entry caches short, and never cache data.
	 * With other users on the mount, whether keys/<name> exists depends on
	 * who asks (a caller without a grant gets ENOENT) while those caches
	 * are shared by all users: then none at all (a cached read costs about
	 * a fifth more, measured in the issue 9 report). */
	struct mount_state *k = fuse_get_context()->private_data;
	double timeout = k->other_users ? 0 : 1.0;
	cfg->entry_timeout = timeout;
	cfg->attr_timeout = timeout;
	cfg->negative_timeout = 0;
	cfg->kernel_cache = 0;
	cfg->direct_io = 1;
	cfg->use_ino = 0;
	cfg->hard_remove = 1;
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	return k;
}

/* After the loop: files closed by their programs whose RELEASE was still
 * queued when a signal ended the loop.  Their key bytes are wiped here. */
static void op_destroy(void *private_data)
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

const struct fuse_operations keyfs_operations = {
	.init = op_init,
	.destroy = op_destroy,
	.getattr = op_getattr,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.releasedir = op_releasedir,
	.open = op_open,
	.create = op_create,
	.read = op_read,
	.write = op_write,
	.flush = op_flush,
	.release = op_release,
	.truncate = op_truncate,
	.unlink = op_unlink,
	.utimens = op_utimens,
	.access = op_access,
	.statfs = op_statfs,
	.mkdir = op_eperm_path,
	.mknod = op_mknod,
	.rmdir = op_rmdir,
	.rename = op_rename,
	.link = op_eperm_two,
	.symlink = op_eperm_two,
	.chmod = op_chmod,
	.chown = op_chown,
};
