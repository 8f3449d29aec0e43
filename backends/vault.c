/* vault.c - the HashiCorp Vault KV v2 backend: keys at
 * <mount_path>/data/<path_prefix>/<network> (contract section 4), token or
 * AppRole auth with lazy renewal, fail-over between configured URLs.
 *
 * Choices worth knowing:
 *   - Every request is treated as idempotent for retries: a KV write that is
 *     repeated after a lost answer only adds an identical version, a repeated
 *     login only mints another token.
 *   - One backend call (get/store/remove/list/health) runs within ONE
 *     deadline of timeout_seconds: login, renewal, retries, back-off and
 *     fail-over all share it, so a FUSE request never waits longer.
 *   - Attempts per call: every URL once plus max_retries more (so exactly
 *     1 + max_retries with a single URL).  Moving on to a URL not yet tried
 *     in this call does not wait; a repeated URL waits the jittered back-off.
 *   - The URL in use is shared by all threads: a failure moves it on (only
 *     if nobody moved it meanwhile), the health check moves it back to the
 *     first active node.
 *   - list is Vault's LIST of metadata: a key whose latest version was
 *     removed (soft-deleted) still has metadata and so is still listed; get
 *     answers -ENOENT for it, as does a second remove.
 *   - health's token_expires is "unknown" while no token works yet.
 *   - Tokens: a mutex guards the token state (short sections, no I/O); a
 *     second mutex serialises login/renewal/re-read, and a generation number
 *     lets the threads that queued behind a re-login use its result instead
 *     of logging in again.
 */
#include "backend.h"
#include "backend_config.h"
#include "http.h"
#include "credential.h"
#include "clock.h"
#include "json_pick.h"
#include "log.h"
#include "secret_file.h"
#include "vault_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <jansson.h>

#define VAULT_TOKEN_FILE_MAX 8192
#define VAULT_WHY 160

enum vault_auth { VAULT_AUTH_TOKEN, VAULT_AUTH_APPROLE };

struct vault_backend {
	struct backend base;              /* first: the fs layer holds &base */
	struct http_client *http;
	char **urls;                      /* without trailing '/' */
	size_t n_urls;
	char mount[VAULT_PATH_MAX];       /* normalised, escaped */
	char prefix[VAULT_PATH_MAX];
	/* "/v1/<mount>/data/<prefix>/", built once: a key's path is this and
	 * its escaped network (vault_kv_path's snprintf was 2 200
	 * instructions of every uncached read). */
	char data_prefix[2 * VAULT_PATH_MAX + 16];
	size_t data_prefix_len;
	char approle_mount[VAULT_PATH_MAX];
	char *namespace;
	enum vault_auth auth;
	char *token_file;
	char *role_id;
	struct secret *secret_id;
	char *secret_id_file;
	char created_by[300];
	clock_fn now;

	pthread_mutex_t state_lock;       /* url_index */
	struct credential token;          /* refresh_lock held across login/renew I/O */
	size_t url_index;
};

/* ---- small helpers -------------------------------------------------------- */

static json_t *vault_json_load(const void *body, size_t len, char *why, size_t whylen)
{
	if (!body || len == 0) {
		backend_why(why, whylen, "empty response");
		return NULL;
	}
	if (len > HTTP_BODY_MAX) {
		backend_why(why, whylen, "response too large");
		return NULL;
	}
	json_error_t e;
	json_t *j = json_loadb(body, len, 0, &e);
	/* e.text may quote the input: never pass it on. */
	secret_wipe(&e, sizeof(e));
	if (!j)
		backend_why(why, whylen, "malformed JSON in response");
	return j;
}

static bool vault_token_chars_ok(const unsigned char *p, size_t len)
{
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++)
		if (p[i] < 0x21 || p[i] > 0x7e)
			return false;
	return true;
}

/* ---- paths ------------------------------------------------------------------ */

int vault_path_normalize(const char *path, char *out, size_t outlen)
{
	size_t o = 0;
	if (!outlen)
		return -ENAMETOOLONG;
	out[0] = 0;
	const char *p = path ? path : "";
	while (*p) {
		while (*p == '/')
			p++;
		if (!*p)
			break;
		size_t n = strcspn(p, "/");
		char seg[256], esc[768];
		if (n >= sizeof(seg))
			return -ENAMETOOLONG;
		memcpy(seg, p, n);
		seg[n] = 0;
		p += n;
		if (!strcmp(seg, ".") || !strcmp(seg, ".."))
			return -EINVAL;
		if (http_escape_segment(seg, esc, sizeof(esc)))
			return -ENAMETOOLONG;
		int w = snprintf(out + o, outlen - o, "%s%s", o ? "/" : "", esc);
		if (w < 0 || (size_t)w >= outlen - o)
			return -ENAMETOOLONG;
		o += (size_t)w;
	}
	return 0;
}

int vault_kv_path(const char *mount, const char *prefix, const char *kind,
                  const char *network, char *out, size_t outlen)
{
	char esc[256];
	if (!mount || !*mount || !kind)
		return -EINVAL;
	if (network && http_escape_segment(network, esc, sizeof(esc)))
		return -ENAMETOOLONG;
	bool has_prefix = prefix && *prefix;
	int w = snprintf(out, outlen, "/v1/%s/%s%s%s%s%s", mount, kind,
	                 has_prefix ? "/" : "", has_prefix ? prefix : "",
	                 network ? "/" : "", network ? esc : "");
	if (w < 0 || (size_t)w >= outlen)
		return -ENAMETOOLONG;
	/* An empty list path needs the folder's slash: /v1/secret/metadata/ */
	if (!has_prefix && !network) {
		if ((size_t)w + 1 >= outlen)
			return -ENAMETOOLONG;
		out[w] = '/';
		out[w + 1] = 0;
	}
	return 0;
}

/* ---- responses ---------------------------------------------------------------- */

/* vault_kv_path(mount, prefix, "data", network) from the instance's
 * prebuilt prefix: the same bytes, the same limits. */
static int vault_data_path(const struct vault_backend *v, const char *network, char *out,
                           size_t outlen)
{
	char esc[256];
	if (http_escape_segment(network, esc, sizeof(esc)))
		return -ENAMETOOLONG;
	size_t n = strlen(esc);
	if (v->data_prefix_len + n >= outlen)
		return -ENAMETOOLONG;
	memcpy(out, v->data_prefix, v->data_prefix_len);
	memcpy(out + v->data_prefix_len, esc, n + 1);
	return 0;
}

/* created_time ("2026-11-29T21:45:11.123456789Z") -> unix seconds with the
 * fraction, 0 when malformed.  Vault always writes RFC 3339 UTC, read digit
 * by digit (clock_parse_rfc3339: strptime, timegm and strtod took ~2 us of
 * CPU per uncached read, perf, issue 15); anything else the general way. */
static double vault_created_seconds(const char *text)
{
	double fast;
	if (clock_parse_rfc3339(text, strlen(text), &fast) == 0)
		return fast;
	struct tm tm;
	double t = 0;
	memset(&tm, 0, sizeof(tm));
	const char *rest = text[0] ? strptime(text, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
	if (rest) {
		t = (double)timegm(&tm);
		if (*rest == '.')
			t += strtod(rest, NULL);   /* ".123456789Z": strtod stops at the Z */
	}
	return t;
}

/* The members of a KV v2 read answer, taken in one pass (json_pick.h says
 * why not jansson).  The key field is decoded straight into a locked
 * secret. */
static const char *const vault_p_data[] = { "data", NULL };
static const char *const vault_p_inner[] = { "data", "data", NULL };
static const char *const vault_p_private_key[] = { "data", "data", "private_key", NULL };
static const char *const vault_p_key[] = { "data", "data", "key", NULL };
static const char *const vault_p_value[] = { "data", "data", "value", NULL };
static const char *const vault_p_deletion[] = { "data", "metadata", "deletion_time", NULL };
static const char *const vault_p_destroyed[] = { "data", "metadata", "destroyed", NULL };
static const char *const vault_p_created[] = { "data", "metadata", "created_time", NULL };

int vault_parse_kv_version(long status, const void *body, size_t len, struct secret **out,
                           double *created, char *why, size_t whylen)
{
	enum { DATA, INNER, F_PRIVATE_KEY, F_KEY, F_VALUE, DELETION, DESTROYED, CREATED, NPICK };
	static const char *const fields[] = { "private_key", "key", "value" };
	struct secret *vals[3] = { NULL, NULL, NULL };
	char created_text[64];
	struct json_pick p[NPICK] = {
		[DATA] = { .path = vault_p_data },
		[INNER] = { .path = vault_p_inner },
		[F_PRIVATE_KEY] = { .path = vault_p_private_key, .secret = out ? &vals[0] : NULL },
		[F_KEY] = { .path = vault_p_key, .secret = out ? &vals[1] : NULL },
		[F_VALUE] = { .path = vault_p_value, .secret = out ? &vals[2] : NULL },
		[DELETION] = { .path = vault_p_deletion },
		[DESTROYED] = { .path = vault_p_destroyed },
		[CREATED] = { .path = vault_p_created, .buf = created_text,
		              .cap = sizeof(created_text) },
	};
	int rc = -EIO;
	if (out)
		*out = NULL;
	if (created)
		*created = 0;
	if (status == 404 && body && memmem(body, len, "no handler for route", 20)) {
		/* Not a missing key: the KV mount is not there (wrong
		 * mount_path, or a namespace that is missing or wrong). */
		backend_why(why, whylen, "no such KV mount (check mount_path and namespace)");
		return -EIO;
	}
	if (status == 404) {
		backend_why(why, whylen, "no such key");
		return -ENOENT;
	}
	if (status != 200) {
		backend_why(why, whylen, "unexpected HTTP status %ld", status);
		return vault_status_errno(status) ? vault_status_errno(status) : -EIO;
	}
	if (!body || len == 0) {
		backend_why(why, whylen, "empty response");
		return -EIO;
	}
	if (len > HTTP_BODY_MAX) {
		backend_why(why, whylen, "response too large");
		return -EIO;
	}
	char jwhy[96];
	int prc = json_pick(body, len, p, NPICK, jwhy, sizeof(jwhy));
	if (prc) {
		if (prc == -ENOMEM) {
			backend_why(why, whylen, "out of memory");
			return -ENOMEM;
		}
		backend_why(why, whylen, "malformed JSON in response (%s)", jwhy);
		return -EIO;
	}
	if (created && p[CREATED].type == JSON_PICK_STRING && !p[CREATED].cut)
		*created = vault_created_seconds(created_text);
	if (p[DATA].type != JSON_PICK_OBJECT) {
		backend_why(why, whylen, "response has no data object");
		goto out;
	}
	if (p[INNER].type == JSON_PICK_ABSENT || p[INNER].type == JSON_PICK_NULL) {
		/* A soft-deleted or destroyed latest version. */
		if ((p[DELETION].type == JSON_PICK_STRING && p[DELETION].len > 0) ||
		    p[DESTROYED].type == JSON_PICK_TRUE) {
			backend_why(why, whylen, "latest version is deleted");
			rc = -ENOENT;
		} else {
			backend_why(why, whylen, "response has no data.data object");
		}
		goto out;
	}
	if (p[INNER].type != JSON_PICK_OBJECT) {
		backend_why(why, whylen, "data.data is not an object");
		goto out;
	}
	/* The first field present and not null. */
	size_t f = 0;
	while (f < 3 && (p[F_PRIVATE_KEY + f].type == JSON_PICK_ABSENT ||
	                 p[F_PRIVATE_KEY + f].type == JSON_PICK_NULL))
		f++;
	if (f == 3) {
		backend_why(why, whylen, "secret has no private_key, key or value field");
		goto out;
	}
	if (p[F_PRIVATE_KEY + f].type != JSON_PICK_STRING) {
		backend_why(why, whylen, "field %s is not a string", fields[f]);
		goto out;
	}
	if (p[F_PRIVATE_KEY + f].len == 0) {
		backend_why(why, whylen, "field %s is empty", fields[f]);
		goto out;
	}
	if (out) {
		*out = vals[f];
		vals[f] = NULL;
	}
	rc = 0;
out:
	for (size_t i = 0; i < 3; i++)
		secret_free(vals[i]);
	return rc;
}

int vault_parse_kv_read(long status, const void *body, size_t len, struct secret **out,
                        char *why, size_t whylen)
{
	return vault_parse_kv_version(status, body, len, out, NULL, why, whylen);
}

double vault_parse_kv_created(const void *body, size_t len)
{
	double t = 0;
	vault_parse_kv_version(200, body, len, NULL, &t, NULL, 0);
	return t;
}

int vault_parse_kv_list(long status, const void *body, size_t len, struct strlist *out,
                        char *why, size_t whylen)
{
	int rc = -EIO;
	if (status == 404)
		return 0;
	if (status != 200) {
		backend_why(why, whylen, "unexpected HTTP status %ld", status);
		return vault_status_errno(status) ? vault_status_errno(status) : -EIO;
	}
	json_t *root = vault_json_load(body, len, why, whylen);
	if (!root)
		return -EIO;
	json_t *keys = json_object_get(json_object_get(root, "data"), "keys");
	if (!json_is_array(keys)) {
		backend_why(why, whylen, "response has no data.keys array");
		goto out;
	}
	size_t i;
	json_t *k;
	json_array_foreach(keys, i, k) {
		if (!json_is_string(k)) {
			backend_why(why, whylen, "data.keys holds a non-string");
			goto out;
		}
	}
	json_array_foreach(keys, i, k) {
		const char *s = json_string_value(k);
		size_t n = json_string_length(k);
		if (n == 0 || s[n - 1] == '/' || memchr(s, 0, n))
			continue;
		if (strlist_add(out, s)) {
			rc = -ENOMEM;
			goto out;
		}
	}
	rc = 0;
out:
	secret_json_free(root);
	return rc;
}

/* Append s as a JSON string (with quotes) to a secret. */
static int vault_json_append_string(struct secret *b, const void *p, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *s = p;
	int rc = secret_append(b, "\"", 1);
	for (size_t i = 0; i < len && !rc; i++) {
		unsigned char c = s[i];
		if (c == '"' || c == '\\') {
			char e[2] = { '\\', (char)c };
			rc = secret_append(b, e, 2);
		} else if (c < 0x20 || c == 0x7f) {
			char e[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
			rc = secret_append(b, e, 6);
		} else {
			rc = secret_append(b, &c, 1);
		}
	}
	if (!rc)
		rc = secret_append(b, "\"", 1);
	return rc;
}

static int vault_json_append_member(struct secret *b, const char *name, const void *p,
                                    size_t len, bool last)
{
	int rc = vault_json_append_string(b, name, strlen(name));
	if (!rc)
		rc = secret_append(b, ":", 1);
	if (!rc)
		rc = vault_json_append_string(b, p, len);
	if (!rc && !last)
		rc = secret_append(b, ",", 1);
	return rc;
}

int vault_build_write_body(const struct secret *key, const char *network,
                           const char *created_at, const char *created_by,
                           struct secret **out)
{
	struct secret *b = secret_new(256);
	*out = NULL;
	if (!b)
		return -ENOMEM;
	int rc = secret_append(b, "{\"data\":{", 9);
	if (!rc)
		rc = vault_json_append_member(b, "private_key", key->data, key->len, false);
	if (!rc)
		rc = vault_json_append_member(b, "network", network, strlen(network), false);
	if (!rc)
		rc = vault_json_append_member(b, "created_at", created_at, strlen(created_at), false);
	if (!rc)
		rc = vault_json_append_member(b, "created_by", created_by, strlen(created_by), true);
	if (!rc)
		rc = secret_append(b, "}}", 2);
	if (rc) {
		secret_free(b);
		return rc;
	}
	*out = b;
	return 0;
}

static int vault_auth_status(long status, char *why, size_t whylen)
{
	if (status == 200)
		return 0;
	if (status == 400 || status == 401 || status == 403) {
		backend_why(why, whylen, status == 400 ? "login rejected (invalid role or secret ID)"
		                                     : "permission denied");
		return -EACCES;
	}
	backend_why(why, whylen, "unexpected HTTP status %ld", status);
	return -EIO;
}

int vault_parse_auth(long status, const void *body, size_t len, double now,
                     struct secret **token, struct credential_timing *timing,
                     char *why, size_t whylen)
{
	int rc = vault_auth_status(status, why, whylen);
	if (token)
		*token = NULL;
	if (rc)
		return rc;
	rc = -EIO;
	json_t *root = vault_json_load(body, len, why, whylen);
	if (!root)
		return -EIO;
	json_t *auth = json_object_get(root, "auth");
	if (!json_is_object(auth)) {
		backend_why(why, whylen, "response has no auth object");
		goto out;
	}
	json_t *lease = json_object_get(auth, "lease_duration");
	if (!json_is_integer(lease) || json_integer_value(lease) < 0) {
		backend_why(why, whylen, "auth.lease_duration missing or not a number");
		goto out;
	}
	json_t *renewable = json_object_get(auth, "renewable");
	if (renewable && !json_is_boolean(renewable)) {
		backend_why(why, whylen, "auth.renewable is not a boolean");
		goto out;
	}
	if (token) {
		json_t *t = json_object_get(auth, "client_token");
		if (!json_is_string(t) ||
		    !vault_token_chars_ok((const unsigned char *)json_string_value(t),
		                          json_string_length(t))) {
			backend_why(why, whylen, "auth.client_token missing or malformed");
			goto out;
		}
		*token = secret_from(json_string_value(t), json_string_length(t));
		if (!*token) {
			rc = -ENOMEM;
			goto out;
		}
	}
	timing->renewable = json_is_true(renewable);
	timing->ttl = (double)json_integer_value(lease);
	timing->obtained_at = now;
	rc = 0;
out:
	secret_json_free(root);
	return rc;
}

int vault_parse_lookup(long status, const void *body, size_t len, double now,
                       struct credential_timing *timing, char *why, size_t whylen)
{
	int rc = vault_auth_status(status, why, whylen);
	if (rc)
		return rc;
	rc = -EIO;
	json_t *root = vault_json_load(body, len, why, whylen);
	if (!root)
		return -EIO;
	json_t *data = json_object_get(root, "data");
	json_t *ttl = json_object_get(data, "ttl");
	json_t *renewable = json_object_get(data, "renewable");
	if (!json_is_integer(ttl) || json_integer_value(ttl) < 0) {
		backend_why(why, whylen, "data.ttl missing or not a number");
		goto out;
	}
	timing->renewable = json_is_true(renewable);
	timing->ttl = (double)json_integer_value(ttl);
	timing->obtained_at = now;
	rc = 0;
out:
	secret_json_free(root);
	return rc;
}

/* ---- classification ------------------------------------------------------------- */

enum vault_node_status vault_node_status_from_health(long code)
{
	switch (code) {
	case 200: return VAULT_NODE_ACTIVE;
	case 429: case 472: case 473: return VAULT_NODE_STANDBY;
	case 503: return VAULT_NODE_SEALED;
	case 501: return VAULT_NODE_UNINITIALIZED;
	default:  return VAULT_NODE_UNREACHABLE;
	}
}

const char *vault_node_status_name(enum vault_node_status s)
{
	switch (s) {
	case VAULT_NODE_ACTIVE:        return "active";
	case VAULT_NODE_STANDBY:       return "standby";
	case VAULT_NODE_SEALED:        return "sealed";
	case VAULT_NODE_UNINITIALIZED: return "not initialized";
	case VAULT_NODE_UNREACHABLE:   break;
	}
	return "unreachable";
}

bool vault_should_failover(int rc, long status)
{
	if (rc == -ECONNREFUSED || rc == -ECONNRESET)
		return true;
	if (rc != 0)
		return false;
	return (status >= 500 && status <= 599) || (status >= 300 && status <= 399);
}

bool vault_should_retry(int rc, long status)
{
	return vault_should_failover(rc, status) || (rc == 0 && status == 429);
}

int vault_status_errno(long status)
{
	if (status >= 200 && status <= 299)
		return 0;
	if (status == 404)
		return -ENOENT;
	if (status == 401 || status == 403)
		return -EACCES;
	return -EIO;
}

/* ---- requests ------------------------------------------------------------------------- */

static struct vault_backend *vault_of(struct backend *b)
{
	return (struct vault_backend *)b;
}

static double vault_deadline(struct vault_backend *v)
{
	return clock_monotonic() + http_client_timeout_seconds(v->http);
}

/* A call's deadline: the caller's when earlier than the instance's own. */
static double vault_call_deadline(struct vault_backend *v, double deadline)
{
	return backend_deadline(deadline, http_client_timeout_seconds(v->http));
}

static const char *vault_http_reason(int rc, long status)
{
	if (rc == -ETIMEDOUT)
		return "timed out";
	if (rc == -EMSGSIZE)
		return "response too large";
	if (rc)
		return "unreachable";
	switch (status) {
	case 503: return "sealed or standby (503)";
	case 429: return "rate limited (429)";
	case 500: return "internal error (500)";
	default:  return NULL;
	}
}

/* One logical request with retries and fail-over; token may be NULL (login,
 * health).  Returns 0 with an answer in resp (any status), or -ETIMEDOUT /
 * -EIO / -ENOMEM with a reason in why. */
static bool vault_retry_policy(int rc, long status, bool idempotent)
{
	(void)idempotent;   /* every Vault request here is */
	return vault_should_retry(rc, status);
}

/* The shared retry loop moved on: the next request starts there too,
 * unless another thread already moved it. */
static void vault_moved(void *ctx, size_t from, size_t to, int rc, long status)
{
	struct vault_backend *v = ctx;
	bool moved = false;
	pthread_mutex_lock(&v->state_lock);
	if (v->url_index == from) {
		v->url_index = to;
		moved = true;
	}
	pthread_mutex_unlock(&v->state_lock);
	if (moved) {
		const char *r = vault_http_reason(rc, status);
		log_kv(LOG_LEVEL_WARN, "vault: failing over to the next URL",
		       "backend", v->base.name, "from", v->urls[from], "to", v->urls[to],
		       "reason", r ? r : "error", (char *)NULL);
	}
}

/* public_answer: the answer holds no secret (a listing, metadata), see
 * http_request.public_answer. */
static int vault_send(struct vault_backend *v, const char *method, const char *path,
                      const struct secret *token, const struct secret *body, bool public_answer,
                      double deadline, struct http_response *resp,
                      char *why, size_t whylen)
{
	int rc;
	struct secret *token_hdr = NULL;
	char *ns_hdr = NULL;
	char err[128] = "";
	const char *headers[5];
	size_t nh = 0;

	headers[nh++] = "X-Vault-Request: true";
	if (token) {
		static const char name[] = "X-Vault-Token: ";
		token_hdr = secret_new(sizeof(name) + token->len);
		if (!token_hdr || secret_append(token_hdr, name, sizeof(name) - 1) ||
		    secret_append(token_hdr, token->data, token->len)) {
			rc = -ENOMEM;
			goto out;
		}
		headers[nh++] = (const char *)token_hdr->data;
	}
	if (v->namespace) {
		if (asprintf(&ns_hdr, "X-Vault-Namespace: %s", v->namespace) < 0) {
			ns_hdr = NULL;
			rc = -ENOMEM;
			goto out;
		}
		headers[nh++] = ns_hdr;
	}
	if (body)
		headers[nh++] = "Content-Type: application/json";
	headers[nh] = NULL;

	pthread_mutex_lock(&v->state_lock);
	size_t idx = v->url_index;
	pthread_mutex_unlock(&v->state_lock);

	struct http_request req = {
		.method = method, .url = path, .headers = headers,
		.body = body ? body->data : NULL, .body_len = body ? body->len : 0,
		.idempotent = true,
		/* Only a LIST answer (a listing) can be large in Vault's API. */
		.small_answer = strcmp(method, "LIST") != 0,
		.public_answer = public_answer,
	};
	struct http_failover fo = {
		.bases = (const char *const *)v->urls, .n = v->n_urls, .start = idx,
		.should_failover = vault_should_failover, .should_retry = vault_retry_policy,
		.moved = vault_moved, .ctx = v,
	};
	rc = http_request_failover(v->http, &req, &fo, deadline, resp, err, sizeof(err));
	if (rc == -EMSGSIZE) {
		backend_why(why, whylen, "vault response too large");
		rc = -EIO;
	} else if (rc == -ETIMEDOUT) {
		backend_why(why, whylen, "vault did not answer in time");
	} else if (rc == -ENOMEM) {
		backend_why(why, whylen, "out of memory");
	} else if (rc) {
		backend_why(why, whylen, "vault unreachable: %s", err);
		rc = -EIO;
	}
out:
	secret_free(token_hdr);
	free(ns_hdr);
	return rc;
}

/* Read a token or secret_id file: trimmed, printable, into a new secret. */
static int vault_read_secret_file(const char *path, struct secret **out, char *why, size_t whylen)
{
	return secret_file_read(path, VAULT_TOKEN_FILE_MAX, SECRET_FILE_TOKEN | SECRET_FILE_NO_BLANKS,
	                        out, why, whylen);
}

/* AppRole login.  Caller holds token.refresh_lock. */
static int vault_login(struct vault_backend *v, double deadline, char *why, size_t whylen)
{
	int rc;
	struct secret *sid = NULL, *body = NULL, *token = NULL;
	struct http_response resp = { 0 };
	char path[VAULT_PATH_MAX + 32];

	if (v->secret_id_file) {
		rc = vault_read_secret_file(v->secret_id_file, &sid, why, whylen);
		if (rc)
			goto out;
	} else if (v->secret_id) {
		sid = secret_dup(v->secret_id);
		if (!sid) {
			rc = -ENOMEM;
			goto out;
		}
	}
	body = secret_new(256);
	rc = body ? 0 : -ENOMEM;
	if (!rc)
		rc = secret_append(body, "{", 1);
	if (!rc)
		rc = vault_json_append_member(body, "role_id", v->role_id, strlen(v->role_id), !sid);
	if (!rc && sid)
		rc = vault_json_append_member(body, "secret_id", sid->data, sid->len, true);
	if (!rc)
		rc = secret_append(body, "}", 1);
	if (rc)
		goto out;
	snprintf(path, sizeof(path), "/v1/auth/%s/login", v->approle_mount);  /* fits: mount < VAULT_PATH_MAX */
	rc = vault_send(v, "POST", path, NULL, body, false, deadline, &resp, why, whylen);
	if (rc)
		goto out;
	struct credential_timing timing;
	rc = vault_parse_auth(resp.status, resp.body ? resp.body->data : NULL,
	                      resp.body ? resp.body->len : 0, v->now(), &token, &timing,
	                      why, whylen);
	if (rc)
		goto out;
	credential_install(&v->token, token, &timing);
	token = NULL;
out:
	if (rc)
		log_kv(LOG_LEVEL_WARN, "vault: approle login failed", "storage_type", v->base.name,
		       "error", why ? why : "", (char *)NULL);
	http_response_clear(&resp);
	secret_free(sid);
	secret_free(body);
	secret_free(token);
	return rc;
}

/* renew-self (or lookup-self when `lookup`) with the current token.  Caller
 * holds token.refresh_lock.  Updates the timing on success. */
static int vault_token_refresh_timing(struct vault_backend *v, bool lookup, double deadline,
                                      char *why, size_t whylen)
{
	struct http_response resp = { 0 };
	struct secret *tok = credential_snapshot(&v->token, NULL);
	struct secret *body = NULL;
	int rc;
	if (!tok)
		return -EACCES;
	if (!lookup) {
		body = secret_from("{}", 2);
		if (!body) {
			rc = -ENOMEM;
			goto out;
		}
	}
	rc = vault_send(v, lookup ? "GET" : "POST",
	                lookup ? "/v1/auth/token/lookup-self" : "/v1/auth/token/renew-self",
	                tok, body, false, deadline, &resp, why, whylen);
	if (rc)
		goto out;
	struct credential_timing timing;
	const void *b = resp.body ? resp.body->data : NULL;
	size_t bl = resp.body ? resp.body->len : 0;
	rc = lookup ? vault_parse_lookup(resp.status, b, bl, v->now(), &timing, why, whylen)
	            : vault_parse_auth(resp.status, b, bl, v->now(), NULL, &timing, why, whylen);
	if (!rc)
		credential_install(&v->token, NULL, &timing);
out:
	http_response_clear(&resp);
	secret_free(tok);
	secret_free(body);
	return rc;
}

/* Make sure there is a token worth sending: log in when there is none or it
 * expired (approle), renew when due.  Errors of a renewal are not fatal
 * while the token is still valid. */
static int vault_ensure_token(struct vault_backend *v, double deadline, char *why, size_t whylen)
{
	int rc = 0;
	bool need_login, need_renew;

	bool approle = v->auth == VAULT_AUTH_APPROLE;
	/* Someone else may be doing it: queue, then look again. */
	if (!credential_begin(&v->token, approle, true, &need_login, &need_renew))
		return 0;
	if (need_login) {
		rc = vault_login(v, deadline, why, whylen);
	} else {
		rc = vault_token_refresh_timing(v, false, deadline, why, whylen);
		if (rc) {
			log_kv(LOG_LEVEL_WARN, "vault: token renewal failed", "storage_type", v->base.name,
			       "error", why ? why : "", (char *)NULL);
			if (v->auth == VAULT_AUTH_APPROLE) {
				rc = vault_login(v, deadline, why, whylen);
			} else {
				/* Keep using it while it lasts; try again later. */
				credential_retry_later(&v->token);
				rc = 0;
			}
		}
	}
	credential_end(&v->token);
	return rc;
}

/* After a 403 with token generation `used`: get a fresh token unless another
 * thread already did.  0 when retrying is worth it. */
static int vault_reauth(struct vault_backend *v, unsigned used, double deadline,
                        char *why, size_t whylen)
{
	int rc = -EACCES;
	pthread_mutex_lock(&v->token.refresh_lock);
	if (credential_changed(&v->token, used)) {
		rc = 0;
	} else if (v->auth == VAULT_AUTH_APPROLE) {
		rc = vault_login(v, deadline, why, whylen);
	} else if (v->token_file) {
		struct secret *t = NULL;
		rc = vault_read_secret_file(v->token_file, &t, why, whylen);
		if (!rc) {
			struct secret *cur = credential_snapshot(&v->token, NULL);
			bool same = secret_equal(cur, t);
			secret_free(cur);
			if (same) {
				secret_free(t);
				rc = -EACCES;   /* nothing new to try */
			} else {
				credential_install(&v->token, t, NULL);
			}
		}
	}
	pthread_mutex_unlock(&v->token.refresh_lock);
	return rc;
}

/* An authenticated request: token, retries, fail-over, one re-login on 403.
 * Returns 0 with the final answer in resp, or -errno with err filled.  A
 * final 403 (or failed login) returns -EACCES with err->auth_failure. */
static int vault_call(struct vault_backend *v, const char *method, const char *path,
                      const struct secret *body, bool public_answer, double deadline,
                      struct http_response *resp, struct backend_err *err)
{
	char why[VAULT_WHY] = "";
	int rc = 0;
	for (int round = 0; round < 2; round++) {
		rc = vault_ensure_token(v, deadline, why, sizeof(why));
		if (rc)
			break;
		unsigned gen;
		struct secret *tok = credential_snapshot(&v->token, &gen);
		if (!tok) {
			backend_why(why, sizeof(why), "not logged in");
			rc = -EACCES;
			break;
		}
		rc = vault_send(v, method, path, tok, body, public_answer, deadline, resp, why,
		                sizeof(why));
		secret_free(tok);
		if (rc || (resp->status != 403 && resp->status != 401))
			break;
		backend_why(why, sizeof(why), "permission denied");
		rc = -EACCES;
		if (round == 0) {
			char why2[VAULT_WHY] = "";
			if (vault_reauth(v, gen, deadline, why2, sizeof(why2)) == 0) {
				rc = 0;
				continue;
			}
			if (why2[0])
				snprintf(why, sizeof(why), "permission denied (%s)", why2);
		}
		break;
	}
	if (rc) {
		http_response_clear(resp);
		backend_err_set(err, "vault: %s", why);
		if (rc == -EACCES && err)
			err->auth_failure = true;
		if (rc != -EACCES && rc != -ETIMEDOUT && rc != -ENOMEM)
			rc = -EIO;
	}
	return rc;
}

/* Map a final non-2xx answer that the caller did not handle. */
static int vault_fail_status(long status, struct backend_err *err)
{
	int rc = vault_status_errno(status);
	const char *r = vault_http_reason(0, status);
	if (r)
		backend_err_set(err, "vault: %s", r);
	else
		backend_err_set(err, "vault: unexpected HTTP status %ld", status);
	return rc ? rc : -EIO;
}

/* ---- backend ops ------------------------------------------------------------------ */

/* GET the latest version of network's key within deadline.  *answered is
 * set when Vault gave a KV answer (200 or 404), so a caller can tell a
 * malformed version from an unreachable server. */
static int vault_fetch(struct vault_backend *v, const char *network, double deadline,
                       struct secret **out, bool *answered, struct backend_err *err)
{
	struct http_response resp = { 0 };
	char path[VAULT_PATH_MAX * 2 + 300], why[VAULT_WHY] = "";
	*out = NULL;
	*answered = false;
	if (vault_data_path(v, network, path, sizeof(path))) {
		backend_err_set(err, "vault: path too long");
		return -EINVAL;
	}
	int rc = vault_call(v, "GET", path, NULL, false, deadline, &resp, err);
	if (rc)
		return rc;
	if (resp.status == 200 || resp.status == 404) {
		*answered = true;
		double created = 0;
		rc = vault_parse_kv_version(resp.status, resp.body ? resp.body->data : NULL,
		                            resp.body ? resp.body->len : 0, out, &created,
		                            why, sizeof(why));
		if (rc)
			backend_err_set(err, "vault: %s", why);
		else if (err)
			err->updated_at = created;
	} else {
		rc = vault_fail_status(resp.status, err);
	}
	http_response_clear(&resp);
	return rc;
}

static int vault_get(struct backend *b, const char *network, struct secret **out,
                     double deadline, struct backend_err *err)
{
	bool answered;
	return vault_fetch(vault_of(b), network, vault_call_deadline(vault_of(b), deadline), out,
	                   &answered, err);
}

static void vault_created_at(char *buf, size_t size)
{
	/* RFC 3339 UTC, whole seconds, as Omikuji's chrono writes it. */
	time_t t = time(NULL);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int vault_store(struct backend *b, const char *network, const struct secret *key,
                       double deadline, struct backend_err *err)
{
	struct vault_backend *v = vault_of(b);
	struct http_response resp = { 0 };
	struct secret *body = NULL;
	char path[VAULT_PATH_MAX * 2 + 300], created_at[40];
	if (vault_data_path(v, network, path, sizeof(path))) {
		backend_err_set(err, "vault: path too long");
		return -EINVAL;
	}
	vault_created_at(created_at, sizeof(created_at));
	int rc = vault_build_write_body(key, network, created_at, v->created_by, &body);
	if (rc) {
		backend_err_set(err, "vault: out of memory");
		return rc;
	}
	rc = vault_call(v, "POST", path, body, false, vault_call_deadline(v, deadline), &resp, err);
	if (!rc && (resp.status < 200 || resp.status > 299))
		rc = vault_fail_status(resp.status, err);
	http_response_clear(&resp);
	secret_free(body);
	return rc;
}

static int vault_remove(struct backend *b, const char *network, double call_deadline,
                        struct backend_err *err)
{
	struct vault_backend *v = vault_of(b);
	struct http_response resp = { 0 };
	struct secret *old = NULL;
	char path[VAULT_PATH_MAX * 2 + 300];
	bool answered;
	if (vault_data_path(v, network, path, sizeof(path))) {
		backend_err_set(err, "vault: path too long");
		return -EINVAL;
	}
	double deadline = vault_call_deadline(v, call_deadline);
	/* Vault answers 204 to a DELETE of nothing: look first, so that rm of a
	 * missing (or already deleted) key is ENOENT.  A read, not metadata,
	 * because policies that let us use keys grant read on data/.  A latest
	 * version that is malformed (no key field) can still be removed: only
	 * "not there" or no answer stops us. */
	int rc = vault_fetch(v, network, deadline, &old, &answered, err);
	secret_free(old);
	if (rc == -ENOENT || !answered)
		return rc;
	if (err)
		err->msg[0] = 0;   /* a malformed old version is not this call's error */
	rc = vault_call(v, "DELETE", path, NULL, true, deadline, &resp, err);
	if (!rc && (resp.status < 200 || resp.status > 299))
		rc = vault_fail_status(resp.status, err);
	http_response_clear(&resp);
	return rc;
}

/* Does the metadata answer say the latest version is deleted or destroyed?
 * Vault keeps a removed key's metadata, so LIST still names it. */
static bool vault_metadata_latest_deleted(const struct http_response *resp)
{
	if (!resp->body)
		return false;
	return vault_parse_metadata_deleted(resp->status, resp->body->data, resp->body->len);
}

bool vault_parse_metadata_deleted(long status, const void *body, size_t len)
{
	if (status != 200)
		return false;
	json_error_t jerr;
	json_t *root = json_loadb((const char *)body, len, 0, &jerr);
	bool deleted = false;
	json_t *data = root ? json_object_get(root, "data") : NULL;
	json_t *current = data ? json_object_get(data, "current_version") : NULL;
	json_t *versions = data ? json_object_get(data, "versions") : NULL;
	if (json_is_integer(current) && json_is_object(versions)) {
		char key[32];
		snprintf(key, sizeof(key), "%lld", (long long)json_integer_value(current));
		json_t *ver = json_object_get(versions, key);
		const char *dt = json_string_value(json_object_get(ver, "deletion_time"));
		deleted = (dt && *dt) || json_is_true(json_object_get(ver, "destroyed"));
	}
	json_decref(root);
	return deleted;
}

/* Above this many keys the deleted-version filter is skipped: it costs one
 * request per key on every listing refresh.  Omikuji keeps one key per
 * network, so real listings are far below it. */
#define VAULT_LIST_FILTER_MAX 64

/* Drop listed networks whose latest version is deleted, so `ls keys` after
 * `rm` does not show them.  One metadata read per key, within the same
 * deadline; a key whose metadata cannot be read is kept (it may exist). */
static void vault_list_drop_deleted(struct vault_backend *v, struct strlist *names, double deadline)
{
	static atomic_bool warned;
	if (names->n > VAULT_LIST_FILTER_MAX) {
		if (!atomic_exchange_explicit(&warned, true, memory_order_relaxed)) {
			char n[32];
			snprintf(n, sizeof(n), "%zu", names->n);
			log_kv(LOG_LEVEL_INFO, "vault listing too long to filter deleted keys",
			       "keys", n, (char *)NULL);
		}
		return;
	}
	size_t keep = 0;
	for (size_t i = 0; i < names->n; i++) {
		char path[VAULT_PATH_MAX * 2 + 300];
		struct http_response resp = { 0 };
		struct backend_err ignored = { { 0 }, false };
		bool deleted = false;
		if (vault_kv_path(v->mount, v->prefix, "metadata", names->items[i], path, sizeof(path)) == 0 &&
		    vault_call(v, "GET", path, NULL, true, deadline, &resp, &ignored) == 0)
			deleted = vault_metadata_latest_deleted(&resp);
		http_response_clear(&resp);
		if (deleted)
			free(names->items[i]);
		else
			names->items[keep++] = names->items[i];
	}
	names->n = keep;
}

static int vault_list(struct backend *b, struct strlist *out, double call_deadline,
                      struct backend_err *err)
{
	struct vault_backend *v = vault_of(b);
	struct http_response resp = { 0 };
	char path[VAULT_PATH_MAX * 2 + 300], why[VAULT_WHY] = "";
	if (vault_kv_path(v->mount, v->prefix, "metadata", NULL, path, sizeof(path))) {
		backend_err_set(err, "vault: path too long");
		return -EINVAL;
	}
	double deadline = vault_call_deadline(v, call_deadline);
	int rc = vault_call(v, "LIST", path, NULL, true, deadline, &resp, err);
	if (rc)
		return rc;
	if (resp.status == 200 || resp.status == 404) {
		struct strlist names = STRLIST_INIT;
		rc = vault_parse_kv_list(resp.status, resp.body ? resp.body->data : NULL,
		                         resp.body ? resp.body->len : 0, &names, why, sizeof(why));
		if (rc)
			backend_err_set(err, "vault: %s", why);
		http_response_clear(&resp);
		if (rc == 0)
			vault_list_drop_deleted(v, &names, deadline);
		for (size_t i = 0; rc == 0 && i < names.n; i++)
			rc = strlist_add(out, names.items[i]);
		strlist_clear(&names);
	} else {
		rc = vault_fail_status(resp.status, err);
	}
	http_response_clear(&resp);
	return rc;
}

/* One node's sys/health: its status, or unreachable. */
static enum vault_node_status vault_node_probe(struct vault_backend *v, size_t i, double deadline)
{
	struct http_response resp = { 0 };
	char url[VAULT_URL_MAX + 64];
	static const char *const hdrs[] = { "X-Vault-Request: true", NULL };
	snprintf(url, sizeof(url), "%s/v1/sys/health?standbyok=false", v->urls[i]);  /* fits */
	struct http_request req = { .method = "GET", .url = url, .headers = hdrs,
	                            .idempotent = true, .public_answer = true };
	int rc = http_perform(v->http, &req, deadline, &resp, NULL, 0);
	enum vault_node_status st = vault_node_status_from_health(rc ? 0 : resp.status);
	http_response_clear(&resp);
	return st;
}

/* Upkeep, from the checker thread before each probe: settle on the first
 * active node in configured order (a fail-over moves back to a preferred
 * URL once it recovers) and keep the token alive on an idle mount (renew
 * when due, log in again when it was refused). */
static void vault_maintain(struct backend *b)
{
	struct vault_backend *v = vault_of(b);
	double deadline = vault_deadline(v);
	char why[VAULT_WHY] = "";

	for (size_t i = 0; i < v->n_urls; i++) {
		if (vault_node_probe(v, i, deadline) == VAULT_NODE_ACTIVE) {
			pthread_mutex_lock(&v->state_lock);
			v->url_index = i;
			pthread_mutex_unlock(&v->state_lock);
			break;
		}
	}
	if (vault_ensure_token(v, deadline, why, sizeof(why)) != 0)
		return;
	pthread_mutex_lock(&v->token.refresh_lock);
	int rc = vault_token_refresh_timing(v, true, deadline, why, sizeof(why));
	pthread_mutex_unlock(&v->token.refresh_lock);
	if (rc == -EACCES) {
		unsigned gen;
		secret_free(credential_snapshot(&v->token, &gen));
		vault_reauth(v, gen, deadline, why, sizeof(why));
	}
}

/* The probe: the node in use answers as active and the token works. */
static void vault_health(struct backend *b, struct backend_health *out)
{
	struct vault_backend *v = vault_of(b);
	double t0 = clock_monotonic();
	double deadline = t0 + http_client_timeout_seconds(v->http);
	char why[VAULT_WHY] = "";

	pthread_mutex_lock(&v->state_lock);
	size_t cur = v->url_index;
	pthread_mutex_unlock(&v->state_lock);
	enum vault_node_status st = vault_node_probe(v, cur, deadline);

	out->up = st == VAULT_NODE_ACTIVE;
	if (!out->up) {
		snprintf(out->error, sizeof(out->error), "no active vault node (%s: %s)",
		         v->urls[cur], vault_node_status_name(st));
	} else {
		int rc = -EACCES;
		struct secret *tok = credential_snapshot(&v->token, NULL);
		if (tok) {
			secret_free(tok);
			pthread_mutex_lock(&v->token.refresh_lock);
			rc = vault_token_refresh_timing(v, true, deadline, why, sizeof(why));
			pthread_mutex_unlock(&v->token.refresh_lock);
		}
		if (rc) {
			out->up = false;
			snprintf(out->error, sizeof(out->error), "%s",
			         rc == -EACCES ? "authentication failed" : why);
		}
	}

	char expires[64];
	credential_expiry_text(&v->token, expires, sizeof(expires));

	snprintf(out->detail, sizeof(out->detail),
	         "address: %s\nvault_status: %s\ntoken_expires: %s\nauth_method: %s\n",
	         v->urls[cur], vault_node_status_name(st), expires,
	         v->auth == VAULT_AUTH_APPROLE ? "approle" : "token");
	out->latency_seconds = clock_monotonic() - t0;
}

static void vault_close(struct backend *b)
{
	struct vault_backend *v = vault_of(b);
	if (!v)
		return;
	http_client_free(v->http);
	for (size_t i = 0; i < v->n_urls; i++)
		free(v->urls[i]);
	free(v->urls);
	free(v->namespace);
	free(v->token_file);
	free(v->role_id);
	secret_free(v->secret_id);
	free(v->secret_id_file);
	credential_destroy(&v->token);
	pthread_mutex_destroy(&v->state_lock);
	free(v);
}

static int vault_dup(const char *s, char **out)
{
	*out = NULL;
	if (!s)
		return 0;
	*out = strdup(s);
	return *out ? 0 : -ENOMEM;
}

static int vault_open_config(struct vault_backend *v, const struct config_vault *c,
                             struct backend_err *err)
{
	int rc;
	if (c->urls.n == 0) {
		backend_err_set(err, "vault: no url configured");
		return -EINVAL;
	}
	v->urls = calloc(c->urls.n, sizeof(*v->urls));
	if (!v->urls)
		return -ENOMEM;
	for (size_t i = 0; i < c->urls.n; i++) {
		const char *u = c->urls.items[i];
		if (strncmp(u, "http://", 7) && strncmp(u, "https://", 8)) {
			backend_err_set(err, "vault: url must start with http:// or https://");
			return -EINVAL;
		}
		if (strpbrk(u, " \t\r\n?#")) {
			backend_err_set(err, "vault: url must not hold spaces, a query or a fragment");
			return -EINVAL;
		}
		if (strlen(u) > VAULT_URL_MAX) {
			backend_err_set(err, "vault: url longer than %d characters", VAULT_URL_MAX);
			return -EINVAL;
		}
		if (!(v->urls[v->n_urls] = strdup(u)))
			return -ENOMEM;
		size_t n = strlen(v->urls[v->n_urls]);
		while (n > 8 && v->urls[v->n_urls][n - 1] == '/')
			v->urls[v->n_urls][--n] = 0;
		v->n_urls++;
	}
	if (vault_path_normalize(c->mount_path ? c->mount_path : "secret", v->mount, sizeof(v->mount)) ||
	    !v->mount[0]) {
		backend_err_set(err, "vault: invalid mount_path");
		return -EINVAL;
	}
	if (vault_path_normalize(c->path_prefix ? c->path_prefix : "omikuji/keys", v->prefix,
	                         sizeof(v->prefix))) {
		backend_err_set(err, "vault: invalid path_prefix");
		return -EINVAL;
	}
	if (vault_kv_path(v->mount, v->prefix, "data", "", v->data_prefix, sizeof(v->data_prefix))) {
		backend_err_set(err, "vault: mount_path and path_prefix too long");
		return -EINVAL;
	}
	v->data_prefix_len = strlen(v->data_prefix);
	if (vault_path_normalize(c->approle_mount ? c->approle_mount : "approle", v->approle_mount,
	                         sizeof(v->approle_mount)) || !v->approle_mount[0]) {
		backend_err_set(err, "vault: invalid approle_mount");
		return -EINVAL;
	}
	if (c->namespace && *c->namespace) {
		if (strpbrk(c->namespace, "\r\n")) {
			backend_err_set(err, "vault: invalid namespace");
			return -EINVAL;
		}
		if ((rc = vault_dup(c->namespace, &v->namespace)))
			return rc;
	}
	if (!c->auth_method || !strcmp(c->auth_method, "token")) {
		v->auth = VAULT_AUTH_TOKEN;
		char why[VAULT_WHY] = "";
		struct secret *t = NULL;
		if (c->token && *c->token) {
			if (!vault_token_chars_ok((const unsigned char *)c->token, strlen(c->token))) {
				backend_err_set(err, "vault: token holds spaces or non-printable characters");
				return -EINVAL;
			}
			t = secret_from(c->token, strlen(c->token));
			if (!t)
				return -ENOMEM;
		} else if (c->token_file) {
			if ((rc = vault_dup(c->token_file, &v->token_file)))
				return rc;
			rc = vault_read_secret_file(c->token_file, &t, why, sizeof(why));
			if (rc) {
				backend_err_set(err, "vault: token_file: %s", why);
				return rc;
			}
		} else {
			backend_err_set(err, "vault: auth_method token needs token or token_file");
			return -EINVAL;
		}
		credential_install(&v->token, t, NULL);
	} else if (!strcmp(c->auth_method, "approle")) {
		v->auth = VAULT_AUTH_APPROLE;
		if (!c->role_id || !*c->role_id) {
			backend_err_set(err, "vault: auth_method approle needs role_id");
			return -EINVAL;
		}
		if ((rc = vault_dup(c->role_id, &v->role_id)) ||
		    (rc = vault_dup(c->secret_id_file, &v->secret_id_file)))
			return rc;
		if (c->secret_id && *c->secret_id) {
			v->secret_id = secret_from(c->secret_id, strlen(c->secret_id));
			if (!v->secret_id)
				return -ENOMEM;
		}
	} else {
		backend_err_set(err, "vault: unknown auth_method (token or approle)");
		return -EINVAL;
	}

	char host[256] = "";
	if (gethostname(host, sizeof(host) - 1) != 0 || !host[0])
		snprintf(host, sizeof(host), "localhost");
	snprintf(v->created_by, sizeof(v->created_by), "omikuji-keyfs@%s", host);

	struct http_client_opts ho = {
		.ca_cert = c->ca_cert, .client_cert = c->client_cert, .client_key = c->client_key,
		.timeout_seconds = c->timeout_seconds, .max_retries = c->max_retries,
	};
	char herr[BACKEND_ERR_MAX] = "";
	rc = http_client_new(&ho, &v->http, herr, sizeof(herr));
	if (rc)
		backend_err_set(err, "vault: %s", herr);
	return rc;
}

static int vault_open(const struct config_backend *cfg, const char *name, struct backend **out,
                      struct backend_err *err)
{
	(void)name;
	*out = NULL;
	struct vault_backend *v = calloc(1, sizeof(*v));
	if (!v) {
		backend_err_set(err, "vault: out of memory");
		return -ENOMEM;
	}
	v->base.ops = &vault_backend_ops;
	v->now = clock_monotonic;
	pthread_mutex_init(&v->state_lock, NULL);
	credential_init(&v->token, v->now);
	int rc = vault_open_config(v, &cfg->vault, err);
	if (rc) {
		if (rc == -ENOMEM)
			backend_err_set(err, "vault: out of memory");
		vault_close(&v->base);
		return rc;
	}
	v->base.cache_ttl_seconds = cfg->vault.cache_ttl_seconds;
	*out = &v->base;
	return 0;
}

static int vault_start(struct backend *b, struct backend_err *err)
{
	(void)err;
	struct vault_backend *v = vault_of(b);
	int rc;

	/* A first contact, bounded by the timeout and never fatal: the mount
	 * comes up even while Vault is away, and calls retry the login. */
	char why[VAULT_WHY] = "";
	double deadline = vault_deadline(v);
	pthread_mutex_lock(&v->token.refresh_lock);
	if (v->auth == VAULT_AUTH_APPROLE)
		rc = vault_login(v, deadline, why, sizeof(why));
	else
		rc = vault_token_refresh_timing(v, true, deadline, why, sizeof(why));
	pthread_mutex_unlock(&v->token.refresh_lock);
	if (rc)
		log_kv(LOG_LEVEL_WARN, "vault: no working token yet, will retry on use",
		       "storage_type", v->base.name, "error", why, (char *)NULL);
	return 0;
}

/* ---- hooks for tests ----------------------------------------------------------------- */

void vault_backend_set_clock(struct backend *b, clock_fn now)
{
	vault_of(b)->now = now ? now : clock_monotonic;
	credential_set_clock(&vault_of(b)->token, now);
}

size_t vault_backend_url_index(struct backend *b)
{
	struct vault_backend *v = vault_of(b);
	pthread_mutex_lock(&v->state_lock);
	size_t i = v->url_index;
	pthread_mutex_unlock(&v->state_lock);
	return i;
}

struct secret *vault_backend_token_copy(struct backend *b)
{
	return credential_snapshot(&vault_of(b)->token, NULL);
}

const struct backend_ops vault_backend_ops = {
	.open = vault_open,
	.start = vault_start,
	.get = vault_get,
	.store = vault_store,
	.remove = vault_remove,
	.list = vault_list,
	.health = vault_health,
	.maintain = vault_maintain,
	.close = vault_close,
};
