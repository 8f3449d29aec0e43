/* mount_state.h - the state of one mount ("mount state"): its backend
 * instances (contract section 8: instance 0 is key_storage, the others come
 * from keyfs.backends), the audit log, access rules and threads.  Each
 * instance owns its backend, cache (its own TTL), health state and checker
 * thread, metric series, listing cache and bound on calls in flight, so that
 * a hung instance never starves the others.
 *
 * The three layers of fs/: mount_state.c (this state's life cycle),
 * keyops.c (the key operations, keyops.h: every caller's operation on a key
 * goes through them) and keyfile.c (the files under keys/ that FUSE shows).
 */
#ifndef OMIKUJI_MOUNT_STATE_H
#define OMIKUJI_MOUNT_STATE_H

#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/types.h>
#include "access.h"
#include "address.h"
#include "anomaly.h"
#include "audit.h"
#include "audit_lock.h"
#include "netrec.h"
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

struct mount_state;

/* One backend instance of a mount. */
struct instance {
	struct mount_state *k;              /* the mount it belongs to */
	const struct config_backend *cfg;   /* borrowed from the keyfs's config */
	const char *name;             /* cfg->name: health/<name>, backend="<name>", audit */
	struct backend *backend;      /* owned */
	struct cache *cache;          /* NULL for local backends (file, env) */
	struct metrics_backend *metrics;
	int max_in_flight;            /* the bound on calls in flight (keyops.c) */
	int in_flight;                /* atomic */
	/* A call finding the bound reached waits for a place while calls keep
	 * completing (a busy backend) and fails with EIO once none completes
	 * for SLOT_PROGRESS_SECONDS (a hung one). */
	unsigned long calls_done;     /* atomic: calls that left the bound */
	int slot_waiters;             /* atomic: callers waiting for a place */
	pthread_mutex_t slot_lock;
	pthread_cond_t slot_cond;     /* CLOCK_MONOTONIC; signalled as a call leaves */

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
	bool list_requested;          /* a lookup found the listing stale: refresh it here */
};

struct mount_state {
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
	/* Group of metrics, textfile/, health/ (keyfs.monitoring_group, resolved
	 * at start and on SIGHUP); -1 while the name resolves to no group: then
	 * the group bits grant no one.  Read it with mount_state_monitoring_gid(). */
	atomic_llong monitoring_gid;
	bool other_users;             /* mounted with allow_other (set before fuse_new) */
	double start_wall;

	pthread_mutex_t creating_lock;
	struct strlist creating;      /* keys/<net> created but not yet stored (open) */

	/* What the mount has seen of each network (netrec.h): for keyops.c the
	 * mtime shown (wall seconds of the last change seen), the size a read
	 * returns, and a keyed digest of the value to notice rotations
	 * (netrec_digest, keyed per mount); for the address book its entry.
	 * One record per network. */
	struct netrec_table networks;

	/* Rotation notices (keys whose value changed), delivered by the
	 * maintenance thread: kernel caches dropped and an IN_ATTRIB raised by
	 * touching the file through the mount itself, so inotify watchers wake. */
	struct tree_table *tree;      /* fuse_ops.c: inode numbers, invalidation notices */
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

/* The group of the monitoring files: true and *gid, or false while
 * keyfs.monitoring_group names no existing group. */
bool mount_state_monitoring_gid(struct mount_state *k, gid_t *gid);

/* Build a keyfs for cfg: opens every backend instance (no threads, no
 * network: before daemonizing), the audit log, access rules.
 * audit_enabled false skips the audit log (benchmarks of its cost).
 * 0 or -errno with one line in err. */
int mount_state_new(const struct config *cfg, uid_t mount_uid, gid_t mount_gid, bool audit_enabled,
              struct mount_state **out, char *err, size_t errlen);
/* After daemonizing (fork drops threads): start every backend (its
 * connections, a first login), the health checker of every instance and the
 * maintenance thread.  0 or -errno with one line in err. */
int mount_state_start(struct mount_state *k, char *err, size_t errlen);
/* Write the audit chain's end (seq, hash) to the application log, so that
 * `audit verify --start SEQ:HASH` can anchor it outside the file.  The
 * maintenance thread does it every keyfs.audit_checkpoint_seconds when
 * lines were added; at_stop writes it unconditionally (call after the
 * last request, from the thread that stops). */
void mount_state_audit_checkpoint(struct mount_state *k, bool at_stop);
/* Ask the maintenance thread to reopen logs and reload access rules. */
void mount_state_request_reload(struct mount_state *k);
/* Ask for a health check of one instance now (after a change the detail
 * lines show). */
void instance_request_check(struct instance *in);
/* Ask the instance's checker thread to refresh its keys/ listing (a lookup
 * found it stale and answered from it).  false when the instance has no
 * checker thread (not started): the caller refreshes itself. */
bool instance_request_list_refresh(struct instance *in);
/* The instance a network routes to. */
struct instance *mount_state_route(struct mount_state *k, const char *network);
/* The instance called name, or NULL. */
struct instance *mount_state_instance(struct mount_state *k, const char *name);
void mount_state_free(struct mount_state *k);

/* The FUSE request this worker thread is answering (every handler sets it
 * first): mount_state_caller_current reads its caller.  Threads that never
 * answer one (control socket, maintenance, checkers) are not in a request. */
void mount_state_request(fuse_req_t req);
bool mount_state_in_request(void);
/* Fill a caller from the current FUSE request (fuse_req_ctx). */
void mount_state_caller_current(struct mount_state *k, struct caller *c);
/* Fill a caller from a peer's credentials (SO_PEERCRED of the control
 * socket, or the CLI's own ids): groups and command name from /proc. */
void mount_state_caller_from_peer(struct mount_state *k, uid_t uid, gid_t gid, pid_t pid, struct caller *c);

/* Tell the mount where it is mounted, for rotation notices (before
 * mount_state_start).  0 or -errno from realpath. */
int mount_state_attach(struct mount_state *k, const char *mountpoint);
/* keys/<network> stopped existing (removed, or gone from a listing) or got
 * a new value: drop what the kernel caches of it (fuse_ops.c; names the
 * kernel never looked up cost nothing).  wait: return once the kernel has
 * it; never from a handler, nor holding a lock a handler may wait on. */
void mount_state_name_gone(struct mount_state *k, const char *network, bool wait);
void mount_state_name_changed(struct mount_state *k, const char *network, bool wait);
/* The mount saw a new value for network (a rotation): queue the notice. */
void mount_state_key_changed(struct mount_state *k, const char *network);
/* Is the current FUSE request the mount's own rotation notice? */
bool mount_state_request_is_own(struct mount_state *k);

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
