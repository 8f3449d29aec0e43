/* vault_internal.h - the pure pieces of the Vault KV v2 backend (paths,
 * response parsing, token timing, status classification) and a few hooks,
 * exposed so that unit tests check them without a server.  Not an interface
 * for other modules: the fs layer only sees vault_backend_ops (backend.h).
 *
 * Parsing functions take the raw body (it may hold a key or a token), never
 * log it, never copy it into `why`, and wipe every string of the parsed JSON
 * tree before freeing it.  `why` (may be NULL) gets a short reason.
 */
#ifndef OMIKUJI_VAULT_INTERNAL_H
#define OMIKUJI_VAULT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include "backend.h"
#include "credential.h"
#include "clock.h"
#include "secret.h"
#include "strlist.h"

#define VAULT_PATH_MAX 2048
/* Longest accepted `url:` (scheme, host, port, optional base path); checked
 * at open, so request URLs are never cut. */
#define VAULT_URL_MAX 1024

/* ---- paths --------------------------------------------------------------- */

/* Normalise a slash-separated config path (mount_path, path_prefix): empty
 * segments (leading, trailing, doubled slashes) are dropped and every
 * remaining segment is percent-encoded on its own (http_escape_segment), the
 * '/' between them kept.  "" is a valid result (no segments).  -EINVAL for a
 * "." or ".." segment, -ENAMETOOLONG when out is too small. */
int vault_path_normalize(const char *path, char *out, size_t outlen);

/* Build "/v1/<mount>/<kind>/<prefix>/<network>" from NORMALISED mount and
 * prefix, kind "data" or "metadata"; network NULL leaves it off (a list).
 * The network is escaped here.  0 or -ENAMETOOLONG / -EINVAL. */
int vault_kv_path(const char *mount, const char *prefix, const char *kind,
                  const char *network, char *out, size_t outlen);

/* ---- responses ------------------------------------------------------------- */

/* A KV v2 read (GET .../data/...).  status 200: data.data's `private_key`,
 * else `key`, else `value` (the first one present and not JSON null; it
 * must be a non-empty string) goes to *out (caller secret_free()s).
 * 404, or data.data null with metadata.deletion_time set or destroyed true
 * (a soft-deleted or destroyed latest version): -ENOENT.  Malformed JSON,
 * missing or mistyped members, an empty key, a body over HTTP_BODY_MAX,
 * any other status: -EIO. */
/* The created_time of the version a KV v2 read answer holds (unix seconds,
 * the fraction kept), or 0 when absent or malformed. */
double vault_parse_kv_created(const void *body, size_t len);
int vault_parse_kv_read(long status, const void *body, size_t len, struct secret **out,
                        char *why, size_t whylen);
/* Both in one pass over the answer (what a fetch uses): the key as
 * vault_parse_kv_read() (out NULL: checked, not kept) and, when the answer
 * parsed, the created_time into *created (may be NULL). */
int vault_parse_kv_version(long status, const void *body, size_t len, struct secret **out,
                           double *created, char *why, size_t whylen);

/* A KV v2 list (LIST .../metadata/...).  200: the strings of data.keys that
 * do not end in '/' (folders are skipped) are appended to out; 404: nothing
 * to append, 0.  A non-string key, missing data.keys: -EIO. */
int vault_parse_kv_list(long status, const void *body, size_t len, struct strlist *out,
                        char *why, size_t whylen);

/* The JSON body of a KV v2 write:
 * {"data":{"private_key":K,"network":N,"created_at":T,"created_by":B}}
 * built directly into a new secret (*out, caller frees), every value JSON-
 * escaped.  0 or -ENOMEM. */
int vault_build_write_body(const struct secret *key, const char *network,
                           const char *created_at, const char *created_by,
                           struct secret **out);

/* The `auth` object of an approle login or a renew-self answer (status 200
 * only): auth.client_token (*token, NULL allowed when the caller already has
 * it), auth.lease_duration (-> ttl) and auth.renewable.  The token must be
 * printable ASCII without spaces.  403: -EACCES; 400 (bad role or secret
 * ID): -EACCES; other: -EIO. */
int vault_parse_auth(long status, const void *body, size_t len, double now,
                     struct secret **token, struct credential_timing *timing,
                     char *why, size_t whylen);

/* A lookup-self answer: data.ttl and data.renewable into *timing. */
/* A KV v2 metadata answer: is the latest version deleted or destroyed? */
bool vault_parse_metadata_deleted(long status, const void *body, size_t len);

int vault_parse_lookup(long status, const void *body, size_t len, double now,
                       struct credential_timing *timing, char *why, size_t whylen);

/* ---- status classification -------------------------------------------------- */

enum vault_node_status {
	VAULT_NODE_ACTIVE,
	VAULT_NODE_STANDBY,
	VAULT_NODE_SEALED,
	VAULT_NODE_UNINITIALIZED,
	VAULT_NODE_UNREACHABLE,
};

/* GET /v1/sys/health?standbyok=false status code -> node status: 200
 * active, 429/472/473 standby, 503 sealed, 501 not initialised, anything
 * else (and no answer, code 0) unreachable. */
enum vault_node_status vault_node_status_from_health(long code);
/* "active" "standby" "sealed" "not initialized" "unreachable" */
const char *vault_node_status_name(enum vault_node_status s);

/* Should a request answered with (rc from http_perform, status) go to the
 * next URL?  Connection failures, 5xx (sealed, standby, errors) and 3xx (a
 * standby redirecting) fail over; 429 is retried on the same URL; other
 * answers are final. */
bool vault_should_failover(int rc, long status);
/* Should it be attempted again at all (fail-over or same-URL retry)? */
bool vault_should_retry(int rc, long status);

/* A final HTTP status -> errno: 2xx 0, 404 -ENOENT, 401/403 -EACCES,
 * everything else -EIO. */
int vault_status_errno(long status);

/* ---- hooks for tests --------------------------------------------------------- */

/* Replace the clock used for token timing (default clock_monotonic).  Call
 * before any concurrent use. */
void vault_backend_set_clock(struct backend *b, clock_fn now);
/* Index into cfg->vault.urls of the URL in use. */
size_t vault_backend_url_index(struct backend *b);
/* A copy of the current token (NULL when not logged in); caller frees.
 * Only tests use this (to expire it on the test server). */
struct secret *vault_backend_token_copy(struct backend *b);

#endif
