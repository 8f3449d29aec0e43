/* metrics.h - the Prometheus registry (contract section 6).
 *
 * Updates are lock-free (C11 atomics in each backend instance's own series,
 * registered by name at start), so the key-read path never takes a global
 * lock.  The only
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

/* The series of one backend instance (label backend="<name>"), registered
 * at start; the pointer stays valid until the next metrics_init(). */
struct metrics_backend;

/* "get" "store" "remove" "list" "address" */
const char *key_op_name(enum key_op op);

/* Reset everything, dropping every registered backend.  Call once at
 * start-up (tests may call again). */
void metrics_init(void);
/* Register the series of instance `name` (cache series only when cached).
 * Registering a name twice returns the first registration.  NULL when out
 * of memory: every update below accepts NULL and does nothing. */
struct metrics_backend *metrics_backend_register(const char *name, bool cached);

void metrics_observe_op(struct metrics_backend *b, enum key_op op, bool success, double seconds);
void metrics_cache_hit(struct metrics_backend *b);
void metrics_cache_stale_hit(struct metrics_backend *b);   /* also counts as a hit */
void metrics_cache_miss(struct metrics_backend *b);
void metrics_cache_size(struct metrics_backend *b, long entries);
void metrics_backend_up(struct metrics_backend *b, bool up);
/* A health check started that must end by deadline (clock_monotonic()
 * seconds; 0: it ended).  Past it backend_up renders 0: a stalled backend. */
void metrics_backend_check(struct metrics_backend *b, double deadline);
void metrics_auth_failure(struct metrics_backend *b);
/* Calls in flight to the backend now (gauge, moved by +1/-1), and calls
 * refused because max_calls_in_flight were already pending (counter). */
void metrics_in_flight_add(struct metrics_backend *b, long delta);
void metrics_in_flight_rejected(struct metrics_backend *b);
void metrics_invalid_value(struct metrics_backend *b);   /* a backend value failed key_format */
void metrics_access_denied(enum key_op op);
void metrics_anomaly(const char *kind);     /* "burst" "off_hours" "auth_failures" "rate_limited" */
void metrics_audit_write_error(void);
/* The seq of the last audit line written (0: none yet); the gauge
 * omikuji_keyfs_audit_last_seq is shown once this was called. */
void metrics_audit_last_seq(unsigned long long seq);
void metrics_last_refresh(const char *network, double wall_seconds);
/* The backend's own time of the network's current value (key age). */
void metrics_key_updated(const char *network, double wall_seconds);
/* Keep the per-network series in t, the mount's record table (netrec.h),
 * rather than in the module's own: one record per network (issue 15).  The
 * first table lent wins; the series start empty.  Release it before t is
 * cleared, with no metrics call racing; the module's own table, emptied,
 * is used again. */
struct netrec_table;
void metrics_use_networks(struct netrec_table *t);
void metrics_release_networks(struct netrec_table *t);

/* Append omikuji_keyfs_aws_api_calls_total{backend,action}: the requests a
 * backend instance sent to a billed API (backend_ops.api_calls), one sample
 * per action, preceded by the family's HELP and TYPE when `header` (the
 * first instance).  n 0 renders nothing. */
struct backend_api_calls;
int metrics_render_api_calls(struct strbuf *out, const char *backend,
                             const struct backend_api_calls *calls, size_t n, bool header);

/* Render the exposition format 0.0.4 (ends with a newline, no timestamps).
 * 0 or -ENOMEM. */
int metrics_render(struct strbuf *out);

#endif
