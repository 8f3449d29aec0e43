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
 * Cross-cutting concerns (cache, metrics, audit, access control) are NOT done
 * in backends: the fs layer wraps every call in one place (fs/keystore.c).
 */
#ifndef OMIKUJI_BACKEND_H
#define OMIKUJI_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include "secret.h"
#include "strlist.h"

struct config;

#define BACKEND_ERR_MAX 200

struct backend_err {
	char msg[BACKEND_ERR_MAX];   /* "" when none */
	bool auth_failure;           /* set when the failure is an authentication one */
	double updated_at;           /* get, on success: the backend's own time of the value
	                              * (unix seconds; Vault's version created_time), 0 = none */
};

/* Format a reason into e (e may be NULL). */
void backend_err_set(struct backend_err *e, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

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

struct backend_ops {
	const char *name;          /* metrics label: file env keyring vault aws */
	const char *storage_type;  /* config name: file env keyring vault aws-secrets */
	bool remote;               /* true: put the TTL cache in front (vault, aws, keyring) */

	/* REQUIRED.  Create the backend from cfg (borrowed; the backend copies
	 * what it keeps).  Cheap: no network I/O that can block the mount from
	 * coming up for long (a first login may be attempted with the timeout).
	 * On success *out is owned by the caller, freed with close(). */
	int (*open)(const struct config *cfg, struct backend **out, struct backend_err *err);

	/* REQUIRED.  Fetch the key of `network` (already validated).  On success
	 * *out is a new secret owned by the caller (secret_free). */
	int (*get)(struct backend *b, const char *network, struct secret **out,
	           struct backend_err *err);

	/* REQUIRED (may answer -EROFS).  Create or replace.  `key` is borrowed
	 * and already validated; it holds the key text without the newline. */
	int (*store)(struct backend *b, const char *network, const struct secret *key,
	             struct backend_err *err);

	/* REQUIRED (may answer -EROFS).  -ENOENT when there is no such key. */
	int (*remove)(struct backend *b, const char *network, struct backend_err *err);

	/* REQUIRED.  Append the networks that have a key to *out (unsorted is
	 * fine; the caller sorts).  Names that are not valid network names are
	 * skipped by the caller. */
	int (*list)(struct backend *b, struct strlist *out, struct backend_err *err);

	/* REQUIRED.  A cheap liveness probe; fill *out (zeroed by the caller). */
	void (*health)(struct backend *b, struct backend_health *out);

	/* REQUIRED.  Free everything, wiping secrets (tokens, master keys). */
	void (*close)(struct backend *b);
};

struct backend {
	const struct backend_ops *ops;
};

/* The table for a storage type, or NULL when not built in. */
const struct backend_ops *backend_ops_for(int storage_type /* enum storage_type */);

/* Open the backend cfg->storage_type selects. */
int backend_open(const struct config *cfg, struct backend **out, struct backend_err *err);

/* Network names: [A-Za-z0-9][A-Za-z0-9._-]{0,63}. */
bool network_name_valid(const char *name);

/* The built-in backends. */
extern const struct backend_ops file_backend_ops;
extern const struct backend_ops env_backend_ops;
extern const struct backend_ops vault_backend_ops;

#endif
