/* backend.h - the secret-backend interface.  This header is the specification.
 *
 * A backend stores one key per network.  Each backend is a `const struct
 * backend_ops` table plus a private state struct that embeds `struct backend`
 * as its FIRST member, so the fs layer holds a `struct backend *` and the
 * backend casts it back (see sqlite3_vfs / curl protocol handlers).
 *
 * Threads: get/store/remove/list/health are called concurrently from many
 * FUSE worker threads and from the health checker.  Every backend MUST be
 * thread-safe.  Calls MAY block (network I/O) but MUST honour the backend's
 * timeout.  A curl easy handle is never shared between threads.
 *
 * Deadlines: get/store/remove/list take `deadline`, a time on
 * clock_monotonic() by which the call MUST return (-ETIMEDOUT when it
 * could not finish), or 0 for the instance's own timeout.  A caller passes
 * a shorter one when a full timeout would be wrong (a getattr's existence
 * check); a backend never waits longer than its own timeout either way.
 * Local backends that cannot block for long MAY ignore it.
 *
 * Results: 0 on success, else a negative errno:
 *   -ENOENT     the network has no key (also: soft-deleted latest version)
 *   -EACCES     the backend refused us (auth failure, permission)
 *   -ETIMEDOUT  the backend did not answer in time
 *   -EIO        unreachable, sealed, malformed answer, local I/O failure
 *   -EINVAL     invalid argument (bad network name, empty key)
 *   -EROFS      the backend is read-only (env)
 *   -ENOMEM     out of memory
 * On failure the optional `err` gets a short human reason: it MUST NOT hold
 * key material, tokens or response bodies that might.
 *
 * Cross-cutting concerns (cache, metrics, audit, access control, routing,
 * the bound on calls in flight) are NOT done in backends: the fs layer wraps
 * every call in one place (fs/keyops.c).
 *
 * Types and instances.  A backend TYPE is one row of the registry
 * (backend_types[] in backend.c: name, ops, capability flags) and one file;
 * adding a type touches nothing else.  An INSTANCE is one opened backend:
 * key_storage (named after its type, e.g. "vault") or an entry of
 * keyfs.backends (named by the operator), so two Vaults are possible.
 * open() receives the instance's own config section and name, never the
 * whole configuration.
 *
 * Life cycle: open (config checks, local files; no threads, no network),
 * then start (threads, connections, a first login), then calls, then close.
 * The mount opens every instance before it mounts and starts them once it
 * is mounted, in the process that serves (locks, threads and connections
 * do not survive fork()); a failure of either reaches the terminal through
 * the start sequence's readiness pipe.  A key command opens, calls and
 * closes without start, so calls MUST work without it.
 */
#ifndef OMIKUJI_BACKEND_H
#define OMIKUJI_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include "secret.h"
#include "strbuf.h"
#include "strlist.h"

struct config_backend;

#define BACKEND_ERR_MAX 200

struct backend_err {
	char msg[BACKEND_ERR_MAX];   /* "" when none */
	bool auth_failure;           /* set when the failure is an authentication one */
	bool health_down;            /* the backend cannot serve anyone until an operator
	                                acts (a locked keyring), whatever the errno */
	double updated_at;           /* get, on success: the backend's own time of the value
	                              * (unix seconds; Vault's version created_time), 0 = none */
};

/* Format a reason into e (e may be NULL). */
void backend_err_set(struct backend_err *e, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Format a reason into the caller's buffer why[whylen] (why may be NULL):
 * the parsers' "why" out-parameters.  Never key material. */
#define backend_why text_setf   /* util/strbuf.h: shared with util's readers */

#define BACKEND_HEALTH_DETAIL_MAX 1024

struct backend_health {
	bool up;
	double latency_seconds;        /* of the check itself */
	char error[BACKEND_ERR_MAX];   /* "" when up */
	/* Extra lines for health/<backend>, each "name: value\n" (address in use,
	 * vault status, token expiry, ...).  Never secrets. */
	char detail[BACKEND_HEALTH_DETAIL_MAX];
};

struct backend;

/* One action of a paid API and how often it was called (see api_calls). */
struct backend_api_calls {
	const char *action;          /* static string, e.g. "GetSecretValue" */
	unsigned long long count;
};

struct backend_ops {
	/* REQUIRED.  Create the instance `name` from its own config section
	 * (borrowed; the backend copies what it keeps).  No network I/O and no
	 * threads: local checks only (a missing token file, an undecryptable
	 * store), so that a bad configuration fails at once, before mounting.
	 * On success *out is owned by the caller, freed with close(). */
	int (*open)(const struct config_backend *section, const char *name,
	            struct backend **out, struct backend_err *err);

	/* OPTIONAL.  Called once by the mount, in the serving process, before
	 * it serves: start threads, connections, a first login.  A backend that
	 * cannot reach its server yet MUST still return 0 (calls retry); an
	 * error here stops the mount.  Calls MUST NOT depend on it having run. */
	int (*start)(struct backend *b, struct backend_err *err);

	/* REQUIRED.  Fetch the key of `network` (already validated).  On success
	 * *out is a new secret owned by the caller (secret_free) holding the key
	 * as stored, without surrounding whitespace or a newline.  A key that
	 * does not exist (or whose latest version is deleted) is -ENOENT. */
	int (*get)(struct backend *b, const char *network, struct secret **out,
	           double deadline, struct backend_err *err);

	/* REQUIRED (may answer -EROFS).  Create or replace.  `key` is borrowed
	 * and already validated; it holds the key text without the newline. */
	int (*store)(struct backend *b, const char *network, const struct secret *key,
	             double deadline, struct backend_err *err);

	/* REQUIRED (may answer -EROFS).  -ENOENT when there is no such key. */
	int (*remove)(struct backend *b, const char *network, double deadline,
	              struct backend_err *err);

	/* REQUIRED.  Append the networks that have a key to *out (unsorted is
	 * fine; the caller sorts).  MAY over-report (a name whose get then says
	 * -ENOENT, e.g. a soft-deleted Vault key) but MUST NOT omit a key that
	 * get would return.  Names that are not valid network names are
	 * skipped by the caller. */
	int (*list)(struct backend *b, struct strlist *out, double deadline,
	            struct backend_err *err);

	/* REQUIRED.  A cheap liveness probe of what calls use now (the server
	 * in use answers, the credentials work); fill *out (zeroed by the
	 * caller).  Changes no state that calls depend on. */
	void (*health)(struct backend *b, struct backend_health *out);

	/* OPTIONAL.  Periodic upkeep, called by the instance's checker thread
	 * right before each health probe, never concurrently with itself:
	 * renew credentials that are due, log in again after a refusal, move
	 * a fail-over back to a preferred server.  Calls MUST NOT depend on it
	 * (they renew on demand); it keeps an idle mount ready. */
	void (*maintain)(struct backend *b);

	/* REQUIRED.  Free everything, wiping secrets (tokens, master keys). */
	void (*close)(struct backend *b);

	/* OPTIONAL (NULL: the backend calls no billed API).  Requests sent to
	 * the service since open, by action, for cost estimates (rendered as
	 * omikuji_keyfs_aws_api_calls_total{backend,action}).  Fills at most
	 * max entries, always the same actions in the same order, and returns
	 * how many.  Thread-safe, never blocks (atomic reads). */
	size_t (*api_calls)(struct backend *b, struct backend_api_calls *out, size_t max);
};

/* Capability flags of a type, read instead of calling to find out. */
enum backend_flags {
	BACKEND_REMOTE = 1u << 0,        /* over the network/IPC: a TTL cache goes in front */
	BACKEND_READ_ONLY = 1u << 1,     /* store and remove answer -EROFS */
	BACKEND_LISTS_CHEAPLY = 1u << 2, /* list costs about one get */
	BACKEND_SESSION_BUS = 1u << 3,   /* needs a D-Bus session bus */
};

/* One row of the registry: everything the rest of the program knows about
 * a type. */
struct backend_type {
	const char *name;           /* storage_type in the config: "vault", "aws-secrets" */
	const char *instance_name;  /* key_storage's instance name and metrics label: "aws" */
	const char *section;        /* its config section: "vault", "aws_secrets" */
	const struct backend_ops *ops;   /* NULL: known to the config, not in this build */
	unsigned flags;             /* enum backend_flags */
};

#define BACKEND_NAME_MAX 33     /* instance names: [a-z0-9][a-z0-9_-]{0,31} */

/* The base every backend's state embeds first.  type and name are filled by
 * backend_open() after ops->open() succeeded. */
struct backend {
	const struct backend_ops *ops;
	const struct backend_type *type;
	char name[BACKEND_NAME_MAX];   /* the instance's name */
	int cache_ttl_seconds;         /* set by open() of a BACKEND_REMOTE type */
};

/* The type called `name` (a storage_type), or NULL. */
const struct backend_type *backend_type_find(const char *name);
/* The registry in order, for messages and tests: NULL past the end. */
const struct backend_type *backend_type_at(size_t i);

/* Open the instance a config section describes (its type, its name).
 * -ENOTSUP with a reason when the type is not built in. */
int backend_open(const struct config_backend *section, struct backend **out,
                 struct backend_err *err);
/* The deadline a call should use: `deadline` when it is set and earlier
 * than now + timeout_seconds, else now + timeout_seconds. */
double backend_deadline(double deadline, double timeout_seconds);

/* Run the type's start hook, if any (after daemonizing). */
int backend_start(struct backend *b, struct backend_err *err);

/* Network names: [A-Za-z0-9][A-Za-z0-9._-]{0,63}. */
bool network_name_valid(const char *name);

/* The built-in backends. */
extern const struct backend_ops file_backend_ops;
extern const struct backend_ops env_backend_ops;
extern const struct backend_ops vault_backend_ops;
extern const struct backend_ops aws_backend_ops;
extern const struct backend_ops keyring_backend_ops;

#endif
