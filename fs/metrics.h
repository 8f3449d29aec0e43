/* metrics.h - the Prometheus registry (contract section 6).
 *
 * Updates are lock-free (C11 atomics on fixed arrays indexed by backend and
 * operation), so the key-read path never takes a global lock.  The only
 * dynamic family, per-network freshness, is updated on backend fetches
 * (not on cache hits) under its own lock.  metrics_render() reads a
 * snapshot into a buffer; it never blocks updates for long.
 */
#ifndef OMIKUJI_METRICS_H
#define OMIKUJI_METRICS_H

#include <stdbool.h>
#include "strbuf.h"

/* KEY_OP_ADDRESS: a read of addresses/<network> (contract section 12). */
enum key_op { KEY_OP_GET, KEY_OP_STORE, KEY_OP_REMOVE, KEY_OP_LIST, KEY_OP_ADDRESS, KEY_OP_COUNT };

enum metrics_backend {
	METRICS_BACKEND_FILE, METRICS_BACKEND_ENV, METRICS_BACKEND_KEYRING,
	METRICS_BACKEND_VAULT, METRICS_BACKEND_AWS, METRICS_BACKEND_COUNT
};

/* "get" "store" "remove" "list" "address" */
const char *key_op_name(enum key_op op);
/* Index for a backend label ("file" ... "aws"); -1 when unknown. */
int metrics_backend_index(const char *name);

/* Reset everything and record which backends are configured (only those get
 * backend_up / cache series).  Call once at start-up (tests may call again). */
void metrics_init(void);
void metrics_set_configured(enum metrics_backend b, bool remote);

void metrics_observe_op(enum metrics_backend b, enum key_op op, bool success, double seconds);
void metrics_cache_hit(enum metrics_backend b);
void metrics_cache_stale_hit(enum metrics_backend b);   /* also counts as a hit */
void metrics_cache_miss(enum metrics_backend b);
void metrics_cache_size(enum metrics_backend b, long entries);
void metrics_backend_up(enum metrics_backend b, bool up);
void metrics_auth_failure(enum metrics_backend b);
void metrics_invalid_value(enum metrics_backend b);   /* a backend value failed key_format */
void metrics_access_denied(enum key_op op);
void metrics_anomaly(const char *kind);     /* "burst" "off_hours" "auth_failures" "rate_limited" */
void metrics_audit_write_error(void);
/* The seq of the last audit line written (0: none yet); the gauge
 * omikuji_keyfs_audit_last_seq is shown once this was called. */
void metrics_audit_last_seq(unsigned long long seq);
void metrics_last_refresh(const char *network, double wall_seconds);

/* Render the exposition format 0.0.4 (ends with a newline, no timestamps).
 * 0 or -ENOMEM. */
int metrics_render(struct strbuf *out);

#endif
