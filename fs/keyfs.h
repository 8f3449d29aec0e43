/* keyfs.h - the state of one mount and the one place where backend calls are
 * wrapped with routing, access control, caching, metrics, health and audit.
 *
 * A mount has one or more backend instances (contract section 8): instance
 * 0 is key_storage, the others come from keyfs.backends.  Each owns its
 * backend, cache (its own TTL), health state and checker thread, metric
 * series, listing cache and bound on calls in flight, so that a hung
 * instance never starves the others.
 *
 * Every key operation of the FUSE layer goes through keystore_*(): they
 * route the network to its instance, check the caller against the access
 * rules, consult the instance's cache (remote backends), call the backend,
 * time the call into the metrics, feed the health state, and write the
 * audit line before returning.  Nothing else calls a backend's
 * get/store/remove/list on behalf of a caller.
 */
#ifndef OMIKUJI_KEYFS_H
#define OMIKUJI_KEYFS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/types.h>
#include "access.h"
#include "address.h"
#include "anomaly.h"
#include "audit.h"
#include "audit_lock.h"
#include "backend.h"
#include "cache.h"
#include "config.h"
#include "metrics.h"
#include "router.h"
#include "strbuf.h"
#include "strlist.h"

struct handle;


/* What health/<backend> shows; updated by the checker thread and by the
 * outcomes of real operations; read without ever waiting on a backend. */
struct health_state {
	pthread_mutex_t lock;
	atomic_bool checked;          /* at least one check or outcome recorded */
	atomic_bool up;               /* both read without the lock by health_record() */
	double checked_at;            /* wall seconds */
	double latency_seconds;
	long consecutive_failures;
	char last_error[BACKEND_ERR_MAX];
	char invalid_network[65];     /* last_error is about this network's value, else "" */
	atomic_bool auth_refused;     /* real requests were refused (403): down until one passes */
	atomic_llong check_started_ms; /* monotonic ms of the check in progress, 0 = none */
	char detail[BACKEND_HEALTH_DETAIL_MAX];
};

struct keyfs;

/* One backend instance of a mount. */
struct instance {
	struct keyfs *k;              /* the mount it belongs to */
	const struct config_backend *cfg;   /* borrowed from the keyfs's config */
	const char *name;             /* cfg->name: health/<name>, backend="<name>", audit */
	struct backend *backend;      /* owned */
	struct cache *cache;          /* NULL for local backends (file, env) */
	struct metrics_backend *metrics;
	int max_in_flight;            /* calls beyond it fail at once with EIO */
	int in_flight;                /* atomic */

	/* Its part of the keys/ listing, cached for keyfs.list_cache_seconds. */
	pthread_mutex_t list_lock;
	struct strlist list;
	double list_fetched_at;       /* monotonic; 0 = never */
	bool list_valid;
	bool list_refreshing;         /* one caller is asking the backend (unlocked) */
	int list_last_rc;             /* outcome of the last refresh */
	double list_failed_at;        /* monotonic time of the last failed refresh */
	char list_last_error[BACKEND_ERR_MAX];
	pthread_cond_t list_cond;     /* signalled when a refresh ends */

	struct health_state health;
	pthread_t health_thread;      /* probes every health_interval_seconds */
	bool health_thread_started;
	pthread_mutex_t wake_lock;
	pthread_cond_t wake_cond;     /* CLOCK_MONOTONIC */
	bool check_requested;         /* a store/remove changed what health/ shows */
};

struct keyfs {
	const struct config *cfg;     /* borrowed; outlives the keyfs */
	struct instance **instances;  /* [0] = key_storage, then keyfs.backends in order */
	size_t n_instances;
	struct router *router;        /* network -> index into instances */
	char *all_names;              /* "file,testnets,...": storage_type of a listing's audit line */
	struct audit *audit;          /* owned; NULL = audit disabled (tests, bench) */
	struct audit_lock *audit_lock; /* owned; held while audit is open (one writer) */
	atomic_ullong checkpoint_seq; /* seq of the last checkpoint logged */
	struct access *access;        /* owned */
	struct anomaly *anomaly;      /* owned */
	struct address_book *addresses;   /* owned; NULL unless key_format is evm */
	uid_t mount_uid;
	gid_t mount_gid;
	gid_t monitoring_gid;         /* group of metrics, textfile/, health/ */
	bool other_users;             /* mounted with allow_other (set before fuse_new) */
	double start_wall;

	pthread_mutex_t creating_lock;
	struct strlist creating;      /* keys/<net> created but not yet stored (open) */

	/* What the mount has seen of each network's key (keystore.c), hashed:
	 * the mtime shown (wall seconds of the last change seen), the size a
	 * read returns, and a keyed fingerprint of the value to notice rotations. */
	pthread_mutex_t mtime_lock;
	struct mtime_entry **mtime_table;
	size_t mtime_nbuckets;        /* 0 or a power of two */
	size_t mtime_count;
	unsigned char seen_key[32];   /* random per mount: fingerprints mean nothing elsewhere */

	/* Rotation notices (keys whose value changed), delivered by the
	 * maintenance thread: kernel caches dropped and an IN_ATTRIB raised by
	 * touching the file through the mount itself, so inotify watchers wake. */
	struct fuse *fuse;            /* keyfs_attach */
	char *mountpoint;             /* absolute; NULL = no self-touch (tests) */
	pthread_mutex_t changed_lock;
	struct strlist changed;
	_Atomic pid_t notify_tid;     /* the maintenance thread's tid: its touches are ours */
	pid_t on_change_pids[16];     /* keyfs.on_change runs not reaped yet (maintenance thread) */

	pthread_mutex_t handles_lock;
	struct handle *handles;       /* open files (see tree.h) */

	pthread_t maintenance_thread; /* SIGHUP reloads */
	bool maintenance_thread_started;
	int wake_pipe[2];             /* wakes the maintenance thread (SIGHUP, stop) */
	atomic_int stopping;
	atomic_int reload_requested;  /* set from the SIGHUP handler (lock-free atomic) */
};

/* Build a keyfs for cfg: opens every backend instance (no threads, no
 * network: before daemonizing), the audit log, access rules.
 * audit_enabled false skips the audit log (benchmarks of its cost).
 * 0 or -errno with one line in err. */
int keyfs_new(const struct config *cfg, uid_t mount_uid, gid_t mount_gid, bool audit_enabled,
              struct keyfs **out, char *err, size_t errlen);
/* After daemonizing (fork drops threads): start every backend (its
 * connections, a first login), the health checker of every instance and the
 * maintenance thread.  0 or -errno with one line in err. */
int keyfs_start(struct keyfs *k, char *err, size_t errlen);
/* Write the audit chain's end (seq, hash) to the application log, so that
 * `audit verify --start SEQ:HASH` can anchor it outside the file.  The
 * maintenance thread does it every keyfs.audit_checkpoint_seconds when
 * lines were added; at_stop writes it unconditionally (call after the
 * last request, from the thread that stops). */
void keyfs_audit_checkpoint(struct keyfs *k, bool at_stop);
/* Ask the maintenance thread to reopen logs and reload access rules. */
void keyfs_request_reload(struct keyfs *k);
/* Ask for a health check of one instance now (after a change the detail
 * lines show). */
void instance_request_check(struct instance *in);
/* The instance a network routes to. */
struct instance *keyfs_route(struct keyfs *k, const char *network);
/* The instance called name, or NULL. */
struct instance *keyfs_instance(struct keyfs *k, const char *name);
void keyfs_free(struct keyfs *k);

/* Fill a caller from the current FUSE request (fuse_get_context). */
void keyfs_caller_current(struct keyfs *k, struct caller *c);
/* Fill a caller from a peer's credentials (SO_PEERCRED of the control
 * socket, or the CLI's own ids): groups and command name from /proc. */
void keyfs_caller_from_peer(struct keyfs *k, uid_t uid, gid_t gid, pid_t pid, struct caller *c);

/* The wrapped operations.  Results are 0 or -errno as the FUSE layer returns
 * them (-EACCES denied or refused, -ENOENT, -EIO, -EROFS, ...). */
int keystore_get(struct keyfs *k, const struct caller *c, const char *network, bool refresh,
                 struct secret **out);
/* content is what the caller wrote (the key, maybe with surrounding
 * whitespace); it is validated against keyfs.key_format here, so a refusal
 * is audited too: -EINVAL invalid, -EFBIG larger than 4096 bytes. */
int keystore_store(struct keyfs *k, const struct caller *c, const char *network,
                   const struct secret *content);
int keystore_remove(struct keyfs *k, const struct caller *c, const char *network);
/* The keys/ listing (sorted, valid names only) for a caller: checked and
 * audited; only names the caller has some grant on.  *out must be empty;
 * caller clears it. */
int keystore_list(struct keyfs *k, const struct caller *c, struct strlist *out);
/* The address of network's key for addresses/<network>: checked against
 * ACCESS_ADDRESS (a denial is counted and audited as `address`); answered
 * from the address book when the mount has seen the key, else the key is
 * fetched once as the daemon (cache and backend as for a read; audited as
 * `address` with the caller's ids), its address derived and kept.  The key
 * itself never leaves this call.  0, -EACCES, -ENOENT, -EIO, ... */
int keystore_address(struct keyfs *k, const struct caller *c, const char *network,
                     char out[EVM_ADDRESS_TEXT + 1]);
/* The keys/ listing (the union of every instance's cached listing) without
 * access check or audit (addresses/ filters it per network itself).  *out must be empty; caller clears it. */
int keystore_names(struct keyfs *k, struct strlist *out);
/* Does network have a key?  From the cached listing (refreshed when older
 * than list_cache_seconds; the last good listing is kept when the backend
 * fails); never fetches a key.  Not audited.  A refresh made for it waits
 * at most a second (a per-call deadline), not the backend's full timeout.
 * When the backend cannot list in that time and no listing was ever had,
 * answers 0: the open's fetch then decides. */
int keystore_exists(struct keyfs *k, const char *network);
/* Does keys/<network> exist for this caller at all?  A caller with no grant
 * on network gets -ENOENT (audited and counted as a denied get: an attempt
 * to reach a key), so names and mtimes do not leak past the rules; else
 * keystore_exists(). */
int keystore_lookup(struct keyfs *k, const struct caller *c, const char *network);
/* Check op for caller before the operation itself (open of a key for
 * writing): a denial is counted and audited here and gives -EACCES. */
int keystore_check(struct keyfs *k, const struct caller *c, const char *network,
                   enum key_op op);
/* Mark keys/<network> as being created (an open file not yet stored), so it
 * exists for getattr; end with keystore_creating(k, net, false). */
void keystore_creating(struct keyfs *k, const char *network, bool on);
bool keystore_is_creating(struct keyfs *k, const char *network);
/* The reason of the last keystore_*() failure in this thread ("" when
 * none): what the audit line's `error` says, for the control socket and the
 * CLI to print.  Never key material. */
/* After a successful keystore_store on this thread: "created" or "replaced"
 * (by the listing before the store; "replaced" when it could not be told). */
const char *keystore_last_store(void);
const char *keystore_last_error(void);
/* Access decision without performing the operation (access(2)). */
bool keystore_allowed(struct keyfs *k, const struct caller *c, const char *network,
                      enum access_op op);
/* mtime to show for keys/<network> (wall seconds). */
double keystore_mtime(struct keyfs *k, const char *network);
void keystore_mtime_free(struct keyfs *k);
/* st_size to show for keys/<network>: what a read returns once the key is
 * known to the mount (key_format evm: always 67), else 0. */
off_t keystore_size(struct keyfs *k, const char *network);
/* The file content of a key as reads return it: the canonical form for
 * key_format evm ("0x" + 64 lowercase hex digits), then one newline.
 * NULL on allocation failure. */
struct secret *keystore_content(struct keyfs *k, const struct secret *key);
/* Tell the mount its FUSE object and where it is mounted, for rotation
 * notices (before keyfs_start).  0 or -errno from realpath. */
int keyfs_attach(struct keyfs *k, struct fuse *fuse, const char *mountpoint);
/* The mount saw a new value for network (a rotation): queue the notice. */
void keyfs_key_changed(struct keyfs *k, const char *network);
/* Is the current FUSE request the mount's own rotation notice? */
bool keyfs_request_is_own(struct keyfs *k);

/* health/<name> text: "up" or "down" then name: value lines. */
int health_render(struct instance *in, struct strbuf *out);
/* Record the outcome of a real backend call (feeds health/ and backend_up). */
void health_record(struct instance *in, int rc, const struct backend_err *err);
/* A value the backend returned for network failed validation: named in
 * last_error (the backend's up/down is unchanged) until a valid value of
 * that network is read (health_note_valid). */
void health_note_invalid(struct instance *in, const char *network, const char *msg);
void health_note_valid(struct instance *in, const char *network);
/* Run one health check now (the instance's checker thread calls this). */
void health_check_now(struct instance *in);

#endif
