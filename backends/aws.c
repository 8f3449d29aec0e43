/* aws.c - the AWS Secrets Manager backend (storage_type aws-secrets, metrics
 * label aws): secret <prefix>/<network> whose SecretString is Omikuji's JSON
 * (contract section 4), over the JSON 1.1 protocol through the shared HTTP
 * layer (http.h), signed with SigV4 by aws_sigv4.c (the day's signing key
 * cached; libcurl's CURLOPT_AWS_SIGV4 derived it for every request).
 *
 * Choices worth knowing:
 *   - store = PutSecretValue; CreateSecret when the secret does not exist;
 *     a secret scheduled for deletion is restored (RestoreSecret) first.
 *     Every write carries a fresh ClientRequestToken, so a retried
 *     PutSecretValue never makes a second version.
 *   - remove = DeleteSecret with RecoveryWindowInDays (7 by default, never
 *     ForceDeleteWithoutRecovery).  A secret scheduled for deletion reads,
 *     and removes again, as -ENOENT, and ListSecrets does not list it.
 *   - Retries: throttling, 5xx and connection failures, with the HTTP
 *     layer's jittered back-off, all within ONE deadline of timeout_seconds
 *     per backend call; DeleteSecret only when AWS cannot have done it
 *     (throttled, 503, not connected).  After the last retry: -EIO.
 *   - Credentials come from the SDK chain (aws_credentials.c), resolved on
 *     first use and kept by the shared credential-lifetime helper
 *     (util/credential.h, as Vault's token): temporary ones are renewed by
 *     the first caller that finds them due (2/3 of their lifetime) while
 *     the others keep signing with the still-valid ones; the health check
 *     renews them on an idle mount.  A refused signature or an
 *     expired/unknown token makes one re-resolution and one retry.
 *   - Every request sent counts in api_calls (the cost estimate), retries
 *     included: AWS bills each one.
 */
#include "aws_internal.h"
#include "backend.h"
#include "clock.h"
#include "backend_config.h"
#include "credential.h"
#include "http.h"
#include "json_pick.h"
#include "log.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/random.h>

#define AWS_URL_MAX 512
#define AWS_NAME_MAX 512
#define AWS_WHY 200
#define AWS_LIST_PAGES_MAX 1000

enum aws_action {
	AWS_CREATE, AWS_GET, AWS_PUT, AWS_DESCRIBE, AWS_LIST, AWS_DELETE, AWS_RESTORE,
	AWS_ACTION_COUNT
};

static const char *const aws_action_names[AWS_ACTION_COUNT] = {
	"CreateSecret", "GetSecretValue", "PutSecretValue", "DescribeSecret", "ListSecrets",
	"DeleteSecret", "RestoreSecret",
};

struct aws_backend {
	struct backend base;              /* first: the fs layer holds &base */
	struct http_client *http;
	char region[72];
	const char *region_from;          /* static: config, AWS_REGION, ... */
	char endpoint[AWS_URL_MAX];       /* scheme://host[:port], no slash */
	char url[AWS_URL_MAX + 2];        /* endpoint + "/" */
	char host[AWS_URL_MAX];           /* the Host header's value (endpoint, no scheme) */
	struct aws_sigv4 signer;          /* "secretsmanager" in region */
	char *prefix;                     /* without trailing '/'; "" = none */
	char *profile;                    /* config's, NULL */
	char created_by[300];
	int recovery_window_days;

	/* The signing keys, packed by aws_creds_pack(), with their lifetime and
	 * source: renewed at 2/3 of it by one thread (credential.h). */
	struct credential creds;
	char last_cred_error[AWS_WHY];    /* guarded by creds.refresh_lock */

	atomic_uint_fast64_t calls[AWS_ACTION_COUNT];
};

struct aws_reply {
	long status;
	char code[64];
	char message[160];
	struct http_response resp;
};

static struct aws_backend *aws_of(struct backend *b)
{
	return (struct aws_backend *)b;
}

/* The call's deadline: the caller's when set and sooner, else the timeout. */
static double aws_deadline(struct aws_backend *a, double deadline)
{
	return backend_deadline(deadline, http_client_timeout_seconds(a->http));
}

/* ---- credentials ------------------------------------------------------------------ */

/* A signing copy of the credentials: the packed value split in place. */
struct aws_cred_copy {
	struct secret *packed;
	const char *access_key_id;
	const char *secret_key;
	const char *session_token;        /* NULL for long-term keys */
	unsigned generation;
};

static void aws_cred_copy_clear(struct aws_cred_copy *c)
{
	secret_free(c->packed);
	memset(c, 0, sizeof(*c));
}

/* The value kept in a->creds: "AKID\nSECRET" or "AKID\nSECRET\nTOKEN".  The
 * parsers accept printable characters only, so '\n' separates.  NULL on
 * ENOMEM. */
static struct secret *aws_creds_pack(const struct aws_credentials *c)
{
	size_t akl = strlen(c->access_key_id);
	size_t tl = c->session_token ? c->session_token->len + 1 : 0;
	struct secret *s = secret_new(akl + 1 + c->secret_key->len + tl);
	if (!s || secret_append(s, c->access_key_id, akl) || secret_append(s, "\n", 1) ||
	    secret_append(s, c->secret_key->data, c->secret_key->len) ||
	    (c->session_token && (secret_append(s, "\n", 1) ||
	                          secret_append(s, c->session_token->data, c->session_token->len)))) {
		secret_free(s);
		return NULL;
	}
	return s;
}

/* Resolve the chain and install the result with its lifetime: an
 * Expiration makes it renewable at 2/3 of what is left of it now.  The
 * same keys again (an endpoint that has not rotated yet) keep their
 * generation and only move the renewal point, to 2/3 of the rest.
 * Caller holds creds.refresh_lock.  0, -EEXIST (the same keys), -errno. */
static int aws_creds_resolve_locked(struct aws_backend *a, double deadline, char *why,
                                    size_t whylen)
{
	struct aws_credentials fresh;
	struct aws_chain chain = { .http = a->http, .profile = a->profile, .region = a->region };
	int rc = aws_credentials_resolve(&chain, deadline, &fresh, why, whylen);
	if (rc) {
		/* Logged once per distinct reason: every call retries the chain. */
		bool news = strcmp(a->last_cred_error, why ? why : "") != 0;
		snprintf(a->last_cred_error, sizeof(a->last_cred_error), "%s", why ? why : "");
		if (news)
			log_kv(LOG_LEVEL_WARN, "aws: no credentials", "backend", "aws",
			       "error", why ? why : "", (char *)NULL);
		return rc == -ENOENT ? -EACCES : rc;
	}
	a->last_cred_error[0] = 0;
	char expires[40] = "never";
	struct credential_timing timing = { .renewable = false, .ttl = 0 };   /* never expires */
	if (fresh.expires_at > 0) {
		clock_rfc3339(fresh.expires_at, expires, sizeof(expires));
		timing = credential_timing_left(&a->creds, fresh.expires_at - clock_wall());
	}
	struct secret *packed = aws_creds_pack(&fresh);
	char source[sizeof(fresh.source)];
	memcpy(source, fresh.source, sizeof(source));
	aws_credentials_clear(&fresh);
	if (!packed)
		return -ENOMEM;
	struct secret *cur = credential_snapshot(&a->creds, NULL);
	bool same = cur && secret_equal(cur, packed);
	secret_free(cur);
	if (same) {
		secret_free(packed);
		packed = NULL;
	}
	credential_install_from(&a->creds, packed, &timing, source);
	if (!same)
		log_kv(LOG_LEVEL_INFO, "aws: credentials obtained", "backend", "aws",
		       "source", source, "expires", expires, (char *)NULL);
	return same ? -EEXIST : 0;
}

/* Make sure there are credentials worth signing with: resolve the chain
 * when there are none or they expired (callers queue behind one resolver),
 * renew them when due (one thread; the others keep signing with the
 * still-valid ones).  A failed renewal is not an error while they last. */
static int aws_creds_ensure(struct aws_backend *a, double deadline, char *why, size_t whylen)
{
	bool login, renew;
	if (!credential_begin(&a->creds, true, false, &login, &renew))
		return 0;
	int rc = aws_creds_resolve_locked(a, deadline, why, whylen);
	if (rc == -EEXIST)
		rc = 0;
	if (rc && !login) {
		credential_retry_later(&a->creds);
		rc = 0;
	}
	credential_end(&a->creds);
	return rc;
}

/* After AWS refused credentials of generation `used`: resolve again unless
 * another thread already did.  0 when a retry is worth it. */
static int aws_creds_reresolve(struct aws_backend *a, unsigned used, double deadline)
{
	char why[AWS_WHY] = "";
	pthread_mutex_lock(&a->creds.refresh_lock);
	int rc = credential_changed(&a->creds, used)
	         ? 0 : aws_creds_resolve_locked(a, deadline, why, sizeof(why));
	pthread_mutex_unlock(&a->creds.refresh_lock);
	return rc;   /* -EEXIST: the same credentials again, no point */
}

static int aws_creds_snapshot(struct aws_backend *a, struct aws_cred_copy *out)
{
	memset(out, 0, sizeof(*out));
	out->packed = credential_snapshot(&a->creds, &out->generation);
	if (!out->packed)
		return -EACCES;
	char *p = (char *)out->packed->data;
	char *nl = strchr(p, '\n');
	if (!nl) {
		aws_cred_copy_clear(out);
		return -EACCES;
	}
	*nl = 0;
	out->access_key_id = p;
	out->secret_key = nl + 1;
	char *nl2 = strchr(nl + 1, '\n');
	if (nl2) {
		*nl2 = 0;
		out->session_token = nl2 + 1;
	}
	return 0;
}

/* ---- requests ------------------------------------------------------------------------ */

static void aws_reply_clear(struct aws_reply *r)
{
	http_response_clear(&r->resp);
	r->status = 0;
	r->code[0] = r->message[0] = 0;
}

/* Serialise obj into a new secret (it may hold a key), then wipe and free
 * obj.  0 or -ENOMEM. */
static int aws_json_body(json_t *obj, struct secret **out)
{
	*out = NULL;
	if (!obj)
		return -ENOMEM;
	size_t n = json_dumpb(obj, NULL, 0, JSON_COMPACT);
	struct secret *s = n ? secret_new(n + 1) : NULL;
	if (s && json_dumpb(obj, (char *)s->data, n, JSON_COMPACT) == n) {
		s->len = n;
		s->data[n] = 0;
		*out = s;
	} else {
		secret_free(s);
	}
	secret_json_free(obj);
	return *out ? 0 : -ENOMEM;
}

/* One signed attempt. */
static int aws_send(struct aws_backend *a, enum aws_action act, const struct secret *body,
                    const struct aws_cred_copy *cred, double deadline, struct aws_reply *r,
                    char *err, size_t errlen)
{
	static const char content_type[] = "application/x-amz-json-1.1";
	char target[80], target_hdr[100], host_hdr[AWS_URL_MAX + 8];
	struct secret *tok_hdr = NULL;
	const char *headers[7];
	size_t nh = 0;
	snprintf(target, sizeof(target), "secretsmanager.%s", aws_action_names[act]);
	snprintf(target_hdr, sizeof(target_hdr), "X-Amz-Target: %s", target);
	snprintf(host_hdr, sizeof(host_hdr), "Host: %s", a->host);
	struct aws_sigv4_request sr = {
		.access_key_id = cred->access_key_id, .secret_key = cred->secret_key,
		.session_token = cred->session_token, .generation = cred->generation,
		.host = a->host, .content_type = content_type, .target = target,
		.body = body->data, .body_len = body->len,
	};
	struct aws_sigv4_out sig;
	int rc = aws_sigv4_sign(&a->signer, &sr, time(NULL), &sig);
	if (rc) {
		snprintf(err, errlen, "cannot sign the request");
		return rc;
	}
	headers[nh++] = host_hdr;
	headers[nh++] = "Content-Type: application/x-amz-json-1.1";
	headers[nh++] = target_hdr;
	headers[nh++] = sig.date_header;
	headers[nh++] = sig.authorization;
	if (cred->session_token) {
		static const char name[] = "X-Amz-Security-Token: ";
		size_t tl = strlen(cred->session_token);
		tok_hdr = secret_new(sizeof(name) + tl);
		if (!tok_hdr || secret_append(tok_hdr, name, sizeof(name) - 1) ||
		    secret_append(tok_hdr, cred->session_token, tl)) {
			secret_free(tok_hdr);
			return -ENOMEM;
		}
		headers[nh++] = (const char *)tok_hdr->data;
	}
	headers[nh] = NULL;
	struct http_request req = {
		.method = "POST", .url = a->url, .headers = headers,
		.body = body->data, .body_len = body->len,
		/* Only a ListSecrets page can be large. */
		.small_answer = act != AWS_LIST,
		/* ListSecrets and DescribeSecret answer names and metadata, never
		 * a value: see http_request.public_answer. */
		.public_answer = act == AWS_LIST || act == AWS_DESCRIBE,
	};
	aws_reply_clear(r);
	rc = http_perform(a->http, &req, deadline, &r->resp, err, errlen);
	secret_free(tok_hdr);
	if (rc == 0) {
		atomic_fetch_add_explicit(&a->calls[act], 1, memory_order_relaxed);
		r->status = r->resp.status;
		if (r->status != 200 && r->resp.body)
			aws_parse_error(r->resp.body->data, r->resp.body->len, r->code, sizeof(r->code),
			                r->message, sizeof(r->message));
	}
	return rc;
}

/* One logical call: credentials, retries with back-off, one credential
 * re-resolution after a refused signature or token.  0 with the final
 * answer in r (any status; r->code set for errors), or -errno with err. */
static int aws_call(struct aws_backend *a, enum aws_action act, const struct secret *body,
                    bool idempotent, double deadline, struct aws_reply *r,
                    struct backend_err *err)
{
	char why[AWS_WHY] = "", herr[128] = "";
	int rc = 0;
	for (int round = 0; round < 2; round++) {
		rc = aws_creds_ensure(a, deadline, why, sizeof(why));
		if (rc)
			break;
		struct aws_cred_copy cred;
		rc = aws_creds_snapshot(a, &cred);
		if (rc) {
			snprintf(why, sizeof(why), "no credentials");
			break;
		}
		unsigned max = (unsigned)http_client_max_retries(a->http);
		for (unsigned attempt = 0;; attempt++) {
			rc = aws_send(a, act, body, &cred, deadline, r, herr, sizeof(herr));
			bool retry;
			if (rc)
				retry = http_retryable(rc, 0, idempotent);
			else if (r->status == 200)
				retry = false;
			else
				retry = aws_classify_error(r->status, r->code) == AWS_ERR_RETRY &&
				        (idempotent || r->status < 500 || r->status == 503);
			if (!retry || attempt >= max || !http_backoff_sleep(a->http, attempt + 1, deadline))
				break;
		}
		unsigned gen = cred.generation;
		aws_cred_copy_clear(&cred);
		if (rc == 0 && round == 0 && r->status != 200 && aws_error_refreshable(r->code) &&
		    aws_creds_reresolve(a, gen, deadline) == 0)
			continue;
		break;
	}
	if (rc) {
		aws_reply_clear(r);
		if (rc == -EACCES) {
			backend_err_set(err, "aws: %s", why[0] ? why : "no credentials");
			if (err)
				err->auth_failure = true;
		} else if (rc == -ETIMEDOUT) {
			backend_err_set(err, "aws: Secrets Manager did not answer in time");
		} else if (rc == -ENOMEM) {
			backend_err_set(err, "aws: out of memory");
		} else if (why[0]) {
			backend_err_set(err, "aws: %s", why);
			rc = -EIO;
		} else {
			backend_err_set(err, "aws: Secrets Manager unreachable: %s", herr);
			rc = -EIO;
		}
	}
	return rc;
}

/* Map a final non-200 answer. */
static int aws_fail(const struct aws_reply *r, struct backend_err *err)
{
	enum aws_error_class c = aws_classify_error(r->status, r->code);
	if (r->code[0])
		backend_err_set(err, "aws: %s%s%s", r->code, r->message[0] ? ": " : "", r->message);
	else
		backend_err_set(err, "aws: unexpected HTTP status %ld", r->status);
	switch (c) {
	case AWS_ERR_AUTH:
	case AWS_ERR_DENIED:
		if (err)
			err->auth_failure = true;
		return -EACCES;
	case AWS_ERR_KMS:
		return -EACCES;
	case AWS_ERR_NOT_FOUND:
		return -ENOENT;
	default:
		return -EIO;
	}
}

/* The parsed body of an answer (NULL when none or not JSON). */
static json_t *aws_reply_json(const struct aws_reply *r)
{
	return aws_json_load(r->resp.body ? r->resp.body->data : NULL,
	                     r->resp.body ? r->resp.body->len : 0);
}

static bool aws_is(const struct aws_reply *r, const char *code)
{
	return r->status != 200 && !strcmp(r->code, code);
}

static int aws_secret_name(struct aws_backend *a, const char *network, char *out, size_t outlen)
{
	int w = snprintf(out, outlen, "%s%s%s", a->prefix, a->prefix[0] ? "/" : "", network);
	return w < 0 || (size_t)w >= outlen ? -ENAMETOOLONG : 0;
}

/* {"SecretId": name}.  Written directly when name needs no JSON escaping
 * (network names and prefixes are plain ASCII): jansson's pack and dump of
 * this one member cost ~10 000 instructions per read under callgrind. */
static int aws_id_body(const char *name, struct secret **out)
{
	static const char head[] = "{\"SecretId\":\"", tail[] = "\"}";
	size_t n = strlen(name);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)name[i] < 0x20 || (unsigned char)name[i] > 0x7e ||
		    name[i] == '"' || name[i] == '\\')
			return aws_json_body(json_pack("{s:s}", "SecretId", name), out);
	struct secret *s = secret_new(sizeof(head) + n + sizeof(tail));
	if (!s || secret_append(s, head, sizeof(head) - 1) || secret_append(s, name, n) ||
	    secret_append(s, tail, sizeof(tail) - 1)) {
		secret_free(s);
		return -ENOMEM;
	}
	*out = s;
	return 0;
}

/* GetSecretValue's answer, in one pass (json_pick.h says why not jansson):
 * SecretString decoded into a locked secret, CreatedDate (epoch seconds). */
static const char *const aws_p_secret_string[] = { "SecretString", NULL };
static const char *const aws_p_created_date[] = { "CreatedDate", NULL };

int aws_parse_get_secret_value(const void *body, size_t len, struct secret **out,
                               double *created, char *why, size_t whylen)
{
	struct secret *ss = NULL;
	char date[48];
	struct json_pick p[] = {
		{ .path = aws_p_secret_string, .secret = &ss },
		{ .path = aws_p_created_date, .buf = date, .cap = sizeof(date) },
	};
	*out = NULL;
	if (created)
		*created = 0;
	int rc = body && len && len <= HTTP_BODY_MAX ? json_pick(body, len, p, 2, NULL, 0) : -EINVAL;
	if (rc == -ENOMEM)
		return rc;
	if (rc || p[0].type != JSON_PICK_STRING) {
		backend_why(why, whylen, "secret has no SecretString");
		secret_free(ss);
		return -EIO;
	}
	rc = aws_parse_secret_string(ss->data, ss->len, out, why, whylen);
	secret_free(ss);
	if (rc == 0 && created && p[1].type == JSON_PICK_NUMBER && !p[1].cut) {
		double t = strtod(date, NULL);
		if (isfinite(t) && t > 0 && t < 1e11)   /* epoch seconds; else not plausible */
			*created = t;
	}
	return rc;
}

/* ---- backend ops ------------------------------------------------------------------- */

static int aws_get(struct backend *b, const char *network, struct secret **out,
                   double deadline, struct backend_err *err)
{
	struct aws_backend *a = aws_of(b);
	struct aws_reply r = { 0 };
	struct secret *body = NULL;
	char name[AWS_NAME_MAX], why[AWS_WHY] = "";
	*out = NULL;
	if (aws_secret_name(a, network, name, sizeof(name)))
		return -EINVAL;
	int rc = aws_id_body(name, &body);
	if (rc)
		return rc;
	rc = aws_call(a, AWS_GET, body, true, aws_deadline(a, deadline), &r, err);
	secret_free(body);
	if (rc)
		return rc;
	if (r.status != 200) {
		/* Scheduled for deletion: removed, as far as a reader is concerned. */
		rc = aws_is(&r, "InvalidRequestException") && strstr(r.message, "deletion")
		     ? -ENOENT : aws_fail(&r, err);
		if (rc == -ENOENT)
			backend_err_set(err, "aws: no such key");
		goto out;
	}
	double created = 0;
	rc = aws_parse_get_secret_value(r.resp.body ? r.resp.body->data : NULL,
	                                r.resp.body ? r.resp.body->len : 0, out, &created,
	                                why, sizeof(why));
	if (rc)
		backend_err_set(err, "aws: %s", why);
	else if (err)
		err->updated_at = created;
out:
	aws_reply_clear(&r);
	return rc;
}

static void aws_request_token(char *out, size_t outlen)
{
	unsigned char b[16];
	if (getrandom(b, sizeof(b), 0) != sizeof(b)) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		for (size_t i = 0; i < sizeof(b); i++)
			b[i] = (unsigned char)((ts.tv_nsec >> (i % 4 * 8)) ^ (getpid() >> (i % 2 * 8)) ^ i);
	}
	b[6] = (b[6] & 0x0f) | 0x40;
	b[8] = (b[8] & 0x3f) | 0x80;
	snprintf(out, outlen, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
	         b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
	         b[13], b[14], b[15]);
}

/* The SecretString of a write: Omikuji's JSON layout. */
static int aws_secret_string(struct aws_backend *a, const char *network, const struct secret *key,
                             struct secret **out)
{
	char created_at[40], desc[128];
	time_t t = time(NULL);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(created_at, sizeof(created_at), "%Y-%m-%dT%H:%M:%SZ", &tm);
	snprintf(desc, sizeof(desc), "Private key for %s", network);
	json_t *o = json_object();
	if (o) {
		json_object_set_new(o, "private_key", json_stringn((const char *)key->data, key->len));
		json_object_set_new(o, "network", json_string(network));
		json_object_set_new(o, "created_at", json_string(created_at));
		json_object_set_new(o, "created_by", json_string(a->created_by));
		json_object_set_new(o, "description", json_string(desc));
		if (json_object_size(o) != 5) {
			secret_json_free(o);
			o = NULL;
		}
	}
	return aws_json_body(o, out);
}

/* {"SecretId"|"Name": name, "SecretString": ss, "ClientRequestToken": tok[, "Description"]} */
static int aws_write_body(const char *id_member, const char *name, const struct secret *ss,
                          const char *token, const char *network, struct secret **out)
{
	json_t *o = json_object();
	if (o) {
		json_object_set_new(o, id_member, json_string(name));
		json_object_set_new(o, "SecretString", json_stringn((const char *)ss->data, ss->len));
		json_object_set_new(o, "ClientRequestToken", json_string(token));
		size_t want = 3;
		if (network) {
			char desc[128];
			snprintf(desc, sizeof(desc), "Omikuji private key for %s", network);
			json_object_set_new(o, "Description", json_string(desc));
			want++;
		}
		if (json_object_size(o) != want) {
			secret_json_free(o);
			o = NULL;
		}
	}
	return aws_json_body(o, out);
}

/* Is the secret scheduled for deletion?  1 yes, 0 no, <0 could not tell. */
static int aws_deleted(struct aws_backend *a, const char *name, double deadline,
                       struct backend_err *err)
{
	struct aws_reply r = { 0 };
	struct secret *body = NULL;
	int rc = aws_id_body(name, &body);
	if (!rc)
		rc = aws_call(a, AWS_DESCRIBE, body, true, deadline, &r, err);
	secret_free(body);
	if (!rc && r.status != 200)
		rc = aws_fail(&r, err);
	if (!rc) {
		json_t *root = aws_reply_json(&r);
		json_t *d = json_object_get(root, "DeletedDate");
		rc = d && !json_is_null(d) ? 1 : 0;
		secret_json_free(root);
	}
	aws_reply_clear(&r);
	return rc;
}

static int aws_store(struct backend *b, const char *network, const struct secret *key,
                     double call_deadline, struct backend_err *err)
{
	struct aws_backend *a = aws_of(b);
	struct aws_reply r = { 0 };
	struct secret *ss = NULL, *put = NULL, *create = NULL, *idb = NULL;
	char name[AWS_NAME_MAX], token[40];
	double deadline = aws_deadline(a, call_deadline);
	if (aws_secret_name(a, network, name, sizeof(name)))
		return -EINVAL;
	aws_request_token(token, sizeof(token));
	int rc = aws_secret_string(a, network, key, &ss);
	if (!rc)
		rc = aws_write_body("SecretId", name, ss, token, NULL, &put);
	if (rc)
		goto out;
	rc = aws_call(a, AWS_PUT, put, true, deadline, &r, err);
	if (rc || r.status == 200)
		goto out;
	if (aws_is(&r, "ResourceNotFoundException")) {
		rc = aws_write_body("Name", name, ss, token, network, &create);
		if (!rc)
			rc = aws_call(a, AWS_CREATE, create, true, deadline, &r, err);
		if (!rc && aws_is(&r, "ResourceExistsException"))   /* created meanwhile */
			rc = aws_call(a, AWS_PUT, put, true, deadline, &r, err);
	} else if (aws_is(&r, "InvalidRequestException")) {
		/* Most likely scheduled for deletion: restore, then write. */
		int d = aws_deleted(a, name, deadline, err);
		if (d < 0) {
			rc = d;
			goto out;
		}
		if (d == 1) {
			rc = aws_id_body(name, &idb);
			if (!rc)
				rc = aws_call(a, AWS_RESTORE, idb, true, deadline, &r, err);
			if (!rc && r.status == 200)
				rc = aws_call(a, AWS_PUT, put, true, deadline, &r, err);
		}
	}
	if (!rc && r.status != 200)
		rc = aws_fail(&r, err);
out:
	if (rc == -ENOMEM)
		backend_err_set(err, "aws: out of memory");
	aws_reply_clear(&r);
	secret_free(ss);
	secret_free(put);
	secret_free(create);
	secret_free(idb);
	return rc;
}

static int aws_remove(struct backend *b, const char *network, double deadline,
                      struct backend_err *err)
{
	struct aws_backend *a = aws_of(b);
	struct aws_reply r = { 0 };
	struct secret *body = NULL;
	char name[AWS_NAME_MAX];
	if (aws_secret_name(a, network, name, sizeof(name)))
		return -EINVAL;
	json_t *o = json_pack("{s:s,s:i}", "SecretId", name, "RecoveryWindowInDays",
	                      a->recovery_window_days);
	int rc = aws_json_body(o, &body);
	if (rc)
		return rc;
	rc = aws_call(a, AWS_DELETE, body, false, aws_deadline(a, deadline), &r, err);
	secret_free(body);
	if (!rc && r.status != 200) {
		if (aws_is(&r, "InvalidRequestException") && strstr(r.message, "deletion")) {
			backend_err_set(err, "aws: no such key (already scheduled for deletion)");
			rc = -ENOENT;
		} else {
			rc = aws_fail(&r, err);
		}
	}
	aws_reply_clear(&r);
	return rc;
}

/* One ListSecrets page; names under the prefix go to out; *next gets the
 * NextToken (malloc'd) or NULL. */
static int aws_list_page(struct aws_backend *a, const char *token, int max_results,
                         double deadline, struct strlist *out, char **next,
                         struct backend_err *err)
{
	struct aws_reply r = { 0 };
	struct secret *body = NULL;
	char filter[AWS_NAME_MAX];
	*next = NULL;
	snprintf(filter, sizeof(filter), "%s%s", a->prefix, a->prefix[0] ? "/" : "");
	json_t *o = json_pack("{s:i}", "MaxResults", max_results);
	if (o && filter[0])
		json_object_set_new(o, "Filters", json_pack("[{s:s,s:[s]}]", "Key", "name",
		                                             "Values", filter));
	if (o && token)
		json_object_set_new(o, "NextToken", json_string(token));
	int rc = aws_json_body(o, &body);
	if (rc)
		return rc;
	rc = aws_call(a, AWS_LIST, body, true, deadline, &r, err);
	secret_free(body);
	if (!rc && r.status != 200)
		rc = aws_fail(&r, err);
	if (rc)
		goto out;
	json_t *root = aws_reply_json(&r);
	json_t *list = json_object_get(root, "SecretList");
	if (!json_is_array(list)) {
		backend_err_set(err, "aws: ListSecrets answer has no SecretList");
		rc = -EIO;
	}
	size_t i, plen = strlen(filter);
	json_t *item;
	json_array_foreach(list, i, item) {
		const char *n = json_string_value(json_object_get(item, "Name"));
		/* AWS's name filter is a prefix match that ignores case: check
		 * it exactly here.  Deeper names are not networks. */
		if (!rc && n && !strncmp(n, filter, plen) && n[plen] && !strchr(n + plen, '/'))
			rc = strlist_add(out, n + plen);
	}
	const char *nt = json_string_value(json_object_get(root, "NextToken"));
	if (!rc && nt && *nt && !(*next = strdup(nt)))
		rc = -ENOMEM;
	secret_json_free(root);
out:
	aws_reply_clear(&r);
	return rc;
}

static int aws_list(struct backend *b, struct strlist *out, double call_deadline,
                    struct backend_err *err)
{
	struct aws_backend *a = aws_of(b);
	double deadline = aws_deadline(a, call_deadline);
	char *token = NULL;
	int rc = 0;
	for (int page = 0; page < AWS_LIST_PAGES_MAX; page++) {
		char *next = NULL;
		rc = aws_list_page(a, token, 100, deadline, out, &next, err);
		bool same = next && token && !strcmp(next, token);
		free(token);
		token = next;
		if (rc || !token)
			break;
		if (same) {
			backend_err_set(err, "aws: ListSecrets returned the same NextToken twice");
			rc = -EIO;
			break;
		}
	}
	free(token);
	return rc;
}

static void aws_health(struct backend *b, struct backend_health *out)
{
	struct aws_backend *a = aws_of(b);
	double t0 = clock_monotonic();
	struct strlist names = STRLIST_INIT;
	struct backend_err err = { { 0 }, false };
	char *next = NULL;
	/* The cheapest call that proves endpoint, credentials and signature. */
	int rc = aws_list_page(a, NULL, 1, aws_deadline(a, 0), &names, &next, &err);
	free(next);
	strlist_clear(&names);
	out->up = rc == 0;
	if (rc)
		snprintf(out->error, sizeof(out->error), "%s", err.msg[0] ? err.msg : strerror(-rc));

	char expires[48], source[96];
	credential_source_text(&a->creds, source, sizeof(source));
	credential_expiry_text(&a->creds, expires, sizeof(expires));
	snprintf(out->detail, sizeof(out->detail),
	         "region: %s\nregion_from: %s\nendpoint: %s\nprefix: %s\n"
	         "credential_source: %s\ncredentials_expire: %s\n",
	         a->region, a->region_from, a->endpoint, a->prefix[0] ? a->prefix : "(none)",
	         source, expires);
	out->latency_seconds = clock_monotonic() - t0;
}

static size_t aws_api_calls(struct backend *b, struct backend_api_calls *out, size_t max)
{
	struct aws_backend *a = aws_of(b);
	size_t n = 0;
	for (; n < AWS_ACTION_COUNT && n < max; n++) {
		out[n].action = aws_action_names[n];
		out[n].count = atomic_load_explicit(&a->calls[n], memory_order_relaxed);
	}
	return n;
}

static void aws_close(struct backend *b)
{
	struct aws_backend *a = aws_of(b);
	if (!a)
		return;
	http_client_free(a->http);
	credential_destroy(&a->creds);
	aws_sigv4_free(&a->signer);
	free(a->prefix);
	free(a->profile);
	free(a);
}

static int aws_open_section(struct aws_backend *a, const struct config_aws *c,
                            struct backend_err *err)
{
	char why[AWS_WHY] = "";
	if (c->profile && *c->profile && !(a->profile = strdup(c->profile)))
		return -ENOMEM;
	const char *pre = c->prefix ? c->prefix : "omikuji";
	size_t pl = strlen(pre);
	while (pl && pre[pl - 1] == '/')
		pl--;
	if (!(a->prefix = strndup(pre, pl)))
		return -ENOMEM;
	/* Secret names allow letters, digits and /_+=.@- only. */
	bool prefix_ok = strlen(a->prefix) <= 256;
	for (const char *p = a->prefix; *p && prefix_ok; p++)
		prefix_ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		            (*p >= '0' && *p <= '9') || strchr("/_+=.@-", *p);
	if (!prefix_ok) {
		backend_err_set(err, "aws: prefix must be at most 256 letters, digits or /_+=.@-");
		return -EINVAL;
	}

	/* Region: config, environment, then the profile's `region`. */
	char *ppath = aws_config_file_path();
	struct aws_profile prof = { 0 };
	if (!ppath)
		return -ENOMEM;
	int rc = aws_profile_load(NULL, ppath, aws_profile_name(a->profile), &prof, why, sizeof(why));
	free(ppath);
	if (rc) {
		backend_err_set(err, "aws: %s", why);
		return rc;
	}
	const char *region = aws_resolve_region(c->region, aws_profile_get(&prof, "region"),
	                                        &a->region_from);
	snprintf(a->region, sizeof(a->region), "%s", region);
	aws_profile_clear(&prof);
	rc = aws_resolve_endpoint(c->endpoint_url, a->region, a->endpoint, sizeof(a->endpoint));
	if (rc) {
		backend_err_set(err, "aws: %s", rc == -EINVAL
		                ? "invalid region or endpoint URL (http:// or https://, no path)"
		                : "endpoint URL too long");
		return rc;
	}
	snprintf(a->url, sizeof(a->url), "%s/", a->endpoint);
	const char *sep = strstr(a->endpoint, "://");
	snprintf(a->host, sizeof(a->host), "%s", sep ? sep + 3 : a->endpoint);
	rc = aws_sigv4_init(&a->signer, a->region, "secretsmanager");
	if (rc) {
		backend_err_set(err, "aws: %s", rc == -ENOMEM ? "out of memory" : "region too long");
		return rc;
	}
	a->recovery_window_days = c->recovery_window_days >= 7 && c->recovery_window_days <= 30
	                          ? c->recovery_window_days : 7;

	char host[256] = "";
	if (gethostname(host, sizeof(host) - 1) != 0 || !host[0])
		snprintf(host, sizeof(host), "localhost");
	snprintf(a->created_by, sizeof(a->created_by), "omikuji-keyfs@%s", host);

	struct http_client_opts ho = {
		.ca_cert = c->ca_cert, .timeout_seconds = c->timeout_seconds,
		.max_retries = c->max_retries,
	};
	char herr[BACKEND_ERR_MAX] = "";
	rc = http_client_new(&ho, &a->http, herr, sizeof(herr));
	if (rc)
		backend_err_set(err, "aws: %s", herr);
	return rc;
}

static int aws_open(const struct config_backend *cfg, const char *name, struct backend **out,
                    struct backend_err *err)
{
	(void)name;
	*out = NULL;
	struct aws_backend *a = calloc(1, sizeof(*a));
	if (!a) {
		backend_err_set(err, "aws: out of memory");
		return -ENOMEM;
	}
	a->base.ops = &aws_backend_ops;
	credential_init(&a->creds, NULL);
	for (int i = 0; i < AWS_ACTION_COUNT; i++)
		atomic_init(&a->calls[i], 0);
	int rc = aws_open_section(a, &cfg->aws, err);
	if (rc) {
		if (rc == -ENOMEM)
			backend_err_set(err, "aws: out of memory");
		aws_close(&a->base);
		return rc;
	}
	a->base.cache_ttl_seconds = cfg->aws.cache_ttl_seconds;
	*out = &a->base;
	return 0;
}

/* After the fork: a first resolution, bounded by the timeout and never
 * fatal (the mount comes up while credentials are missing; calls retry). */
static int aws_start(struct backend *b, struct backend_err *err)
{
	(void)err;
	struct aws_backend *a = aws_of(b);
	char why[AWS_WHY] = "";
	pthread_mutex_lock(&a->creds.refresh_lock);
	aws_creds_resolve_locked(a, aws_deadline(a, 0), why, sizeof(why));
	pthread_mutex_unlock(&a->creds.refresh_lock);
	return 0;
}

/* Upkeep before each health probe: refresh credentials that are due, so an
 * idle mount keeps working ones (calls refresh on demand too). */
static void aws_maintain(struct backend *b)
{
	struct aws_backend *a = aws_of(b);
	char why[AWS_WHY] = "";
	aws_creds_ensure(a, aws_deadline(a, 0), why, sizeof(why));
}

const struct backend_ops aws_backend_ops = {
	.open = aws_open,
	.start = aws_start,
	.get = aws_get,
	.store = aws_store,
	.remove = aws_remove,
	.list = aws_list,
	.health = aws_health,
	.maintain = aws_maintain,
	.close = aws_close,
	.api_calls = aws_api_calls,
};
