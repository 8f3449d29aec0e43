/* tree.h - the mounted tree (contract section 5), described once.
 *
 *   /                               dir
 *   /keys                           dir, one file per network
 *   /keys/<network>                 key file
 *   /metrics                        snapshot file (Prometheus text)
 *   /health                         dir, one file per configured backend
 *   /health/<backend>               snapshot file
 *   /textfile                       dir
 *   /textfile/omikuji_keyfs.prom    snapshot file (same as /metrics)
 *   /addresses                      dir, one file per network (as keys/)
 *   /addresses/<network>            address file: snapshot of the key's address
 *
 * Every operation resolves its inode number (fuse_ops.c: fixed numbers for
 * the fixed entries, a table for the children) to a node and dispatches on
 * the node's family.  tree_resolve() does the same for a path: whole path
 * components are matched ("/keysfoo" is not "/keys").
 */
#ifndef OMIKUJI_TREE_H
#define OMIKUJI_TREE_H

#include <fuse_lowlevel.h>
#include "keyops.h"

enum node_kind {
	NODE_DIR,        /* root, keys/, health/, textfile/ */
	NODE_KEY,        /* keys/<network> */
	NODE_SNAPSHOT,   /* metrics, health/<backend>, textfile/omikuji_keyfs.prom */
	NODE_ADDRESS,    /* addresses/<network>: a snapshot with its own stat */
};

struct node;
typedef int (*node_render_fn)(struct mount_state *k, const struct node *n, struct strbuf *out);

struct tree_entry {
	const char *path;          /* absolute path of a fixed entry */
	enum node_kind kind;
	mode_t mode;               /* permission bits shown */
	node_render_fn render;     /* NODE_SNAPSHOT: content generated at open */
	enum node_kind child_kind; /* NODE_DIR with a family of children */
	bool has_children;         /* keys/, addresses/ (networks), health/ (backends) */
	bool monitoring;           /* metrics, textfile/, health/: keyfs.monitoring_mode/group */
};

struct node {
	const struct tree_entry *entry;   /* the fixed entry, or the family's directory */
	enum node_kind kind;
	const char *name;                 /* the child's name (network, backend), else NULL */
};

/* 0 and *n filled, or -ENOENT.  n->name points into path. */
int tree_resolve(struct mount_state *k, const char *path, struct node *n);

/* The FUSE operations of the whole tree (libfuse's low-level API). */
extern const struct fuse_lowlevel_ops keyfs_ll_ops;

/* The inode table of the children and the notifier thread that delivers
 * invalidation notices (mount_state_name_gone / _changed) to the kernel.
 * tree_start before the session serves; tree_start_notifier with the
 * daemon's threads; tree_stop_notifier before the session is unmounted;
 * tree_free (mount_state_free, once no thread can send a notice). */
int tree_start(struct mount_state *k, struct fuse_session *se);
int tree_start_notifier(struct mount_state *k);
void tree_stop_notifier(struct mount_state *k);
void tree_free(struct mount_state *k);
/* Children the kernel holds an inode number for. */
size_t tree_inode_count(struct mount_state *k);

/* Opens parked on a fetch in flight (keyfile.c, address.c) are counted here;
 * tree_drain_parked, once the session loop has ended, returns when every
 * one has been answered (by the threads making their fetches). */
void tree_parked(struct mount_state *k, int delta);
/* Answer a parked open, on the thread that ended its fetch: rc's error, or
 * fi; a reply the kernel no longer takes (the reader was interrupted, the
 * mount is going) releases fi's handle with release.  The open then no
 * longer counts as parked. */
void tree_parked_answer(struct mount_state *k, fuse_req_t req, struct fuse_file_info *fi, int rc,
                        void (*release)(struct mount_state *k, struct fuse_file_info *fi));
void tree_drain_parked(struct mount_state *k);

/* Families, implemented in keyfile.c and snapshot.c.  keyfile_open (and
 * address_open) return OPEN_PARKED when the open parked on a fetch in
 * flight: it is answered later (req replied to from another thread), the
 * handler must not reply. */
#define OPEN_PARKED 1
int keyfile_open(struct mount_state *k, const struct node *n, struct fuse_file_info *fi,
                 fuse_req_t req);
int keyfile_create(struct mount_state *k, const char *network, struct fuse_file_info *fi);
/* Reads: the length (0 at EOF) and *data pointing into the open's buffer,
 * or -errno. */
int keyfile_read(size_t size, off_t off, struct fuse_file_info *fi, const char **data);
int keyfile_write(struct mount_state *k, const char *buf, size_t size, off_t off,
                  struct fuse_file_info *fi);
int keyfile_flush(struct mount_state *k, struct fuse_file_info *fi);
void keyfile_release(struct mount_state *k, struct fuse_file_info *fi);
/* A file created on network is still open (after its flush: a copy of the
 * descriptor), so setting its times is not an error. */
bool keyfile_created_open(struct mount_state *k, const char *network);
int keyfile_truncate(struct fuse_file_info *fi, off_t size);

int snapshot_open(struct mount_state *k, const struct node *n, struct fuse_file_info *fi);
int snapshot_read(size_t size, off_t off, struct fuse_file_info *fi, const char **data);
void snapshot_release(struct mount_state *k, struct fuse_file_info *fi);
/* Give fi a snapshot handle serving len bytes of text (malloc'ed; the
 * snapshot owns it, freed on failure too).  0 or -ENOMEM. */
int snapshot_adopt(struct mount_state *k, struct fuse_file_info *fi, char *text, size_t len);
int snapshot_render_metrics(struct mount_state *k, const struct node *n, struct strbuf *out);
int snapshot_render_health(struct mount_state *k, const struct node *n, struct strbuf *out);

/* The addresses/ family, in address.c.  address_open renders
 * addresses/<network> into a snapshot handle (checked, and audited when it
 * fetches the key); it parks on the key's fetch in flight as keyfile_open
 * does (OPEN_PARKED). */
int address_open(struct mount_state *k, const struct node *n, struct fuse_file_info *fi,
                 fuse_req_t req);
/* getattr: 0 with the mtime to show, or -ENOENT (no key, or as for keys/,
 * a network the caller has no grant for); never fetches a key. */
int address_stat(struct mount_state *k, const struct caller *c, const char *network, double *mtime);
/* readdir: the networks of keys/ whose address c may read. */
int address_list(struct mount_state *k, const struct caller *c, struct strlist *out);

/* Every open file's fi->fh points to a family struct that begins with a
 * struct handle; `kind` says which family.  Open handles are on a list in
 * the keyfs, so that handles whose RELEASE never came (FUSE sends it after
 * close() returns; a SIGTERM can end the loop first) are still wiped and
 * freed when the filesystem is destroyed. */
enum handle_kind { HANDLE_SNAPSHOT, HANDLE_KEY };

struct handle {
	enum handle_kind kind;
	struct handle *prev, *next;
};

void handle_register(struct mount_state *k, struct handle *h, enum handle_kind kind);
void handle_unregister(struct mount_state *k, struct handle *h);

/* Free a handle whose RELEASE never came (at destroy). */
void keyfile_discard(struct mount_state *k, struct handle *h);
void snapshot_discard(struct handle *h);

#endif
