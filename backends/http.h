/* http.h - the HTTP client shared by the remote backends (vault, aws).
 * This header is the specification.
 *
 * A thin, careful layer over libcurl:
 *   - TLS verification is always on (peer and host name); `ca_cert` replaces
 *     the system CA bundle, `client_cert`/`client_key` enable mutual TLS.
 *   - Redirects are never followed (a 3xx is returned as a status), proxies
 *     from the environment are NOT honoured (http_proxy & co. would silently
 *     route tokens and keys through a third party; none is configurable yet).
 *   - Connections are reused: the client keeps a small pool of curl easy
 *     handles (each holds its own connection cache).  A handle is taken out
 *     of the pool for one request and put back after it, so a handle is never
 *     used by two threads at once; TLS sessions and DNS answers are shared
 *     between the handles through a locked CURLSH.  A pooled handle keeps
 *     the client's fixed options (TLS, protocols, proxy, user agent, write
 *     callback, share); each request sets its URL, timeouts, headers and
 *     method again, and what pointed at its memory is cleared when the
 *     handle goes back (a handle that signed with libcurl's SigV4 is reset).
 *   - Response bodies are read into a struct secret (they may hold keys or
 *     tokens) and capped at HTTP_BODY_MAX bytes: a larger body fails the
 *     request with -EMSGSIZE.  The client keeps up to HTTP_POOL_MAX of these
 *     locked buffers between requests (wiped when given back by
 *     http_response_clear()), so a request does not mlock and munlock one.
 *     An answer that cannot hold a secret (http_request.public_answer: a
 *     listing) is read into ordinary memory instead, wiped all the same.
 *     Request bodies are borrowed, never copied by this layer; header lines
 *     this layer copies are wiped before release.
 *     Nothing here logs a URL, header or body.
 *   - curl_global_init runs once per process (pthread_once).
 *
 * Retries: http_request() retries with exponential back-off and full jitter
 * on connection failures, on 429 and on 5xx, never on other statuses, and at
 * most max_retries times.  A request marked !idempotent is retried only when
 * it cannot have reached the server (connection refused, DNS failure) or the
 * server said it did not process it (429, 503).  The
 * schedule (http_backoff_delay) and the classification (http_retryable) are
 * pure functions so that tests check them without sleeping; the sleep itself
 * is injectable through http_client_opts.sleep.  Fail-over between servers
 * (vault's urls) is the same loop, http_request_failover(), with the
 * backend's own classification: there is one retry loop.
 *
 * Time: every request has a deadline on the monotonic clock (seconds, see
 * clock.h).  One attempt gets CURLOPT_TIMEOUT_MS = what is left of it;
 * connecting gets at most half of the client's timeout, so that a black-holed
 * address leaves time for a retry or fail-over.  An attempt cut by the
 * deadline fails with -ETIMEDOUT.
 *
 * Thread-safety: every function may be called from any thread concurrently
 * with the same client, except http_client_free().
 */
#ifndef OMIKUJI_HTTP_H
#define OMIKUJI_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include "secret.h"

#define HTTP_BODY_MAX (1024 * 1024)     /* response body cap, bytes */
#define HTTP_POOL_MAX 16                /* idle easy handles kept, and spare bodies */
#define HTTP_BODY_INITIAL 4096          /* a response buffer's first size */
#define HTTP_BODY_KEEP (16 * 1024)      /* larger ones are freed, not kept */
/* libcurl's receive buffer for a request that expects a small answer
 * (http_request.small_answer): one secret, a token, an error. */
#define HTTP_RECV_SMALL 2048
#define HTTP_BACKOFF_BASE 0.1           /* seconds: first retry waits up to this */
#define HTTP_BACKOFF_CAP 2.0            /* seconds: no wait is longer */

struct http_client;

struct http_client_opts {
	const char *ca_cert;        /* PEM bundle path, NULL = system CAs */
	const char *client_cert;    /* PEM path, NULL = none */
	const char *client_key;     /* PEM path, NULL = none (or in client_cert) */
	int timeout_seconds;        /* <= 0: 5 */
	int max_retries;            /* < 0: 0; capped at 10 */
	/* Seconds of back-off; 0 = HTTP_BACKOFF_BASE / HTTP_BACKOFF_CAP. */
	double backoff_base;
	double backoff_cap;
	/* Injectable for tests: how to wait (NULL = nanosleep) and a uniform
	 * random number in [0,1) (NULL = a per-thread PRNG seeded from
	 * getrandom).  Called from request threads; must be thread-safe. */
	void (*sleep)(double seconds);
	double (*random01)(void);
};

/* Create a client; opts is borrowed (strings are copied).  0, or -ENOMEM /
 * -EIO (curl could not be initialised) with a reason in err (may be NULL). */
int http_client_new(const struct http_client_opts *opts, struct http_client **out,
                    char *err, size_t errlen);

/* Close pooled connections and free.  NULL is allowed.  No request may be
 * running on the client. */
void http_client_free(struct http_client *c);

/* The client's timeout and retry bound (after defaults and clamping). */
int http_client_timeout_seconds(const struct http_client *c);
int http_client_max_retries(const struct http_client *c);

struct http_request {
	const char *method;         /* GET HEAD POST PUT DELETE PATCH LIST ... */
	const char *url;            /* absolute, already escaped */
	/* NULL-terminated "Name: value" lines, borrowed.  They may hold tokens:
	 * the copies made for curl are wiped after the request. */
	const char *const *headers;
	const void *body;           /* borrowed, NULL = none */
	size_t body_len;
	bool idempotent;            /* see "Retries" above */
	/* AWS Signature Version 4 by libcurl (CURLOPT_AWS_SIGV4), NULL = none:
	 * "aws:amz:REGION:SERVICE".  libcurl signs every header of `headers`
	 * (so X-Amz-Security-Token and Content-Type are signed) and adds
	 * Authorization and X-Amz-Date.  With signing on, this layer does NOT
	 * add its "Expect:" line: libcurl 7.88 signs that header-removal line
	 * as a header "expect" it then does not send, and every such request
	 * is refused (tests/integration/test_aws_mount.py shows it).
	 * aws_access_key/aws_secret_key are borrowed; libcurl keeps its own
	 * copies until the handle returns to the pool (curl_easy_reset frees
	 * them; libcurl does not wipe them). */
	const char *aws_sigv4;
	const char *aws_access_key;
	const char *aws_secret_key;
	/* The answer is expected to be small (one key, a token, an error), not
	 * a listing: libcurl's receive buffer is then HTTP_RECV_SMALL bytes
	 * instead of its default 16 KiB.  libcurl allocates that buffer for
	 * every transfer and frees it at the end, and every block libcurl
	 * frees is wiped whole (it held what was received), so a small buffer
	 * is a small wipe: 2 KiB instead of 16 KiB per request (issue 15,
	 * ~14 000 instructions per uncached read under callgrind).  A larger
	 * answer still arrives whole, in more recv calls. */
	bool small_answer;
	/* Neither the request's body nor its answer can hold a secret (a
	 * listing of names, metadata, a health status): the body is received
	 * into ordinary memory (secret_new_unlocked: wiped when freed, never
	 * locked) rather than a locked buffer.  A Vault LIST or AWS
	 * ListSecrets answer of 100 000 names is ~1 MiB, an eighth of the
	 * default RLIMIT_MEMLOCK that the cached keys need (issue 15).  Leave
	 * it false for anything that answers a key, a token or a credential,
	 * and for requests that send one (an error answer may echo it). */
	bool public_answer;
};

struct http_response {
	long status;                /* HTTP status, 0 when no response */
	struct secret *body;        /* owned; NULL before any answer; locked
	                             * unless the request was public_answer.
	                             * Free with http_response_clear(). */
	bool reused_connection;     /* the request went over a kept-alive connection */
	struct http_client *owner;  /* internal: the client body goes back to
	                             * (NULL: body is freed, not kept) */
};

/* Wipe the body and give it back to its client (or free it); the response
 * is reusable after.  Call it before http_client_free() of that client. */
void http_response_clear(struct http_response *r);

/* One attempt, no retry.  deadline is on clock_monotonic(); <= 0 means now +
 * the client's timeout.  Returns 0 when an HTTP answer arrived (any status,
 * in resp->status, body in resp->body), else:
 *   -ETIMEDOUT    the deadline passed (resp->status 0)
 *   -ECONNREFUSED the request certainly did not reach the server (refused,
 *                 DNS failure, connect timeout, TLS handshake/certificate)
 *   -ECONNRESET   the connection broke after the request may have been sent
 *   -EMSGSIZE     the body was larger than HTTP_BODY_MAX
 *   -EIO          any other transfer failure
 *   -ENOMEM, -EINVAL (bad argument)
 * A short reason (never a URL, header or body) goes to err (may be NULL).
 * resp is cleared first. */
int http_perform(struct http_client *c, const struct http_request *req, double deadline,
                 struct http_response *resp, char *err, size_t errlen);

/* http_perform() with the retry policy above, within one deadline (<= 0:
 * now + the client's timeout).  Returns like http_perform(); after the last
 * retry the last answer (e.g. a 503) is returned with 0. */
int http_request(struct http_client *c, const struct http_request *req, double deadline,
                 struct http_response *resp, char *err, size_t errlen);

/* Fail-over between servers for http_request_failover(). */
struct http_failover {
	const char *const *bases;   /* base URLs (no trailing '/'); req->url is the path */
	size_t n;
	size_t start;               /* the base to try first */
	/* Should this outcome move on to the next base?  NULL: never. */
	bool (*should_failover)(int rc, long status);
	/* Is it worth another attempt at all?  NULL: http_retryable. */
	bool (*should_retry)(int rc, long status, bool idempotent);
	/* Told when the loop moves from base `from` to `to`; NULL allowed. */
	void (*moved)(void *ctx, size_t from, size_t to, int rc, long status);
	void *ctx;
};

/* The retry loop of http_request() over several servers: at most n +
 * max_retries attempts within one deadline; an outcome should_failover
 * accepts moves to the next base (a base not tried yet is tried at once,
 * otherwise the usual back-off applies).  f NULL or f->n 0: req->url is
 * absolute, exactly http_request(). */
int http_request_failover(struct http_client *c, const struct http_request *req,
                          const struct http_failover *f, double deadline,
                          struct http_response *resp, char *err, size_t errlen);

/* Pure: should this outcome be retried?  rc is http_perform()'s result,
 * status the HTTP status when rc == 0.  Retried: -ECONNREFUSED, 429 and 503
 * always; -ECONNRESET and the other 5xx only when idempotent; nothing else
 * (-ETIMEDOUT means the deadline is spent, -EMSGSIZE would repeat). */
bool http_retryable(int rc, long status, bool idempotent);

/* Pure: the wait before retry number `retry` (1 = the first retry), full
 * jitter: u * min(cap, base * 2^(retry-1)) with u in [0,1). */
double http_backoff_delay(unsigned retry, double base, double cap, double u);

/* Wait before retry `retry` using the client's back-off settings, its
 * random source and sleep function, clipped so that at least a little time
 * remains before deadline.  Returns false (without sleeping) when the
 * deadline leaves no room for another attempt. */
bool http_backoff_sleep(struct http_client *c, unsigned retry, double deadline);

/* Percent-encode one path segment into out (RFC 3986: unreserved characters
 * A-Z a-z 0-9 - . _ ~ stay, every other byte becomes %XX, '/' included), as
 * curl_easy_escape() does.  0, or -ENAMETOOLONG when out is too small. */
int http_escape_segment(const char *s, char *out, size_t outlen);

#endif
