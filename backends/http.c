/* http.c - the libcurl client of the remote backends: pooled easy handles,
 * strict TLS, capped secret bodies, retries with jittered back-off.  The
 * contract is in http.h. */
#include "http.h"
#include "clock.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/random.h>
#include <curl/curl.h>
#include <malloc.h>
#include <openssl/ssl.h>

#include "secret.h"

#ifndef KEYFS_VERSION
#define KEYFS_VERSION "unknown"
#endif

#define HTTP_DEFAULT_TIMEOUT 5
#define HTTP_MAX_RETRIES_CAP 10
/* Below this much time left there is no point in starting an attempt. */
#define HTTP_MIN_ATTEMPT_SECONDS 0.01

struct http_client {
	char *ca_cert;
	char *client_cert;
	char *client_key;
	int timeout_seconds;
	int max_retries;
	double backoff_base;
	double backoff_cap;
	void (*sleep)(double seconds);
	double (*random01)(void);

	pthread_mutex_t pool_lock;        /* idle and spare */
	CURL *idle[HTTP_POOL_MAX];
	size_t n_idle;
	/* Locked response buffers kept between requests (wiped), so that a
	 * request does not mlock and munlock a fresh one. */
	struct secret *spare[HTTP_POOL_MAX];
	size_t n_spare;

	CURLSH *share;
	pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];
};

static pthread_once_t http_once = PTHREAD_ONCE_INIT;
static CURLcode http_global_rc = CURLE_FAILED_INIT;

/* curl's own buffers hold what passes through it: request headers (the
 * Vault token), receive buffers (key bytes before our write callback sees
 * them).  Every block curl frees is wiped first, so those copies do not
 * linger in the heap.  explicit_bzero (glibc's vectorised memset behind a
 * compiler barrier) rather than OPENSSL_cleanse, which stores 8 bytes per
 * loop of 5 instructions: curl frees ~45 blocks per request, and natively
 * (issue 15) explicit_bzero wiped 400 bytes in 6-20 ns against 32-90 ns,
 * 16 KiB in 0.2-0.7 us against 1.4-1.8 us.  (callgrind counts glibc's
 * `rep stosb` per byte, so it shows no gain there.) */
static void http_wipe_free(void *p)
{
	if (p) {
		explicit_bzero(p, malloc_usable_size(p));
		free(p);
	}
}

static void *http_wipe_realloc(void *p, size_t size)
{
	if (!p)
		return malloc(size);
	if (size == 0) {
		http_wipe_free(p);
		return NULL;
	}
	size_t old = malloc_usable_size(p);
	void *q = malloc(size);
	if (!q)
		return NULL;
	memcpy(q, p, old < size ? old : size);
	http_wipe_free(p);
	return q;
}

static void http_global_init(void)
{
	http_global_rc = curl_global_init_mem(CURL_GLOBAL_DEFAULT, malloc, http_wipe_free,
	                                      http_wipe_realloc, strdup, calloc);
}

/* TLS: OpenSSL keeps the last decrypted record in its read buffer unless
 * asked to cleanse it after handing it over. */
static CURLcode http_ssl_ctx(CURL *h, void *ssl_ctx, void *arg)
{
	(void)h;
	(void)arg;
#ifdef SSL_OP_CLEANSE_PLAINTEXT
	SSL_CTX_set_options((SSL_CTX *)ssl_ctx, SSL_OP_CLEANSE_PLAINTEXT);
#endif
	return CURLE_OK;
}

static void http_share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *ctx)
{
	(void)h; (void)access;
	struct http_client *c = ctx;
	if ((int)data >= 0 && data < CURL_LOCK_DATA_LAST)
		pthread_mutex_lock(&c->share_locks[data]);
}

static void http_share_unlock(CURL *h, curl_lock_data data, void *ctx)
{
	(void)h;
	struct http_client *c = ctx;
	if ((int)data >= 0 && data < CURL_LOCK_DATA_LAST)
		pthread_mutex_unlock(&c->share_locks[data]);
}

static void http_set_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void http_set_err(char *err, size_t errlen, const char *fmt, ...)
{
	if (!err || !errlen)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static char *http_strdup_or_null(const char *s, int *rc)
{
	if (!s)
		return NULL;
	char *d = strdup(s);
	if (!d)
		*rc = -ENOMEM;
	return d;
}

int http_client_new(const struct http_client_opts *opts, struct http_client **out,
                    char *err, size_t errlen)
{
	int rc = 0;
	*out = NULL;
	pthread_once(&http_once, http_global_init);
	if (http_global_rc != CURLE_OK) {
		http_set_err(err, errlen, "curl initialisation failed");
		return -EIO;
	}
	struct http_client *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	pthread_mutex_init(&c->pool_lock, NULL);
	for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_init(&c->share_locks[i], NULL);

	c->ca_cert = http_strdup_or_null(opts->ca_cert, &rc);
	c->client_cert = http_strdup_or_null(opts->client_cert, &rc);
	c->client_key = http_strdup_or_null(opts->client_key, &rc);
	if (rc)
		goto fail;
	c->timeout_seconds = opts->timeout_seconds > 0 ? opts->timeout_seconds
	                                               : HTTP_DEFAULT_TIMEOUT;
	c->max_retries = opts->max_retries < 0 ? 0 : opts->max_retries;
	if (c->max_retries > HTTP_MAX_RETRIES_CAP)
		c->max_retries = HTTP_MAX_RETRIES_CAP;
	c->backoff_base = opts->backoff_base > 0 ? opts->backoff_base : HTTP_BACKOFF_BASE;
	c->backoff_cap = opts->backoff_cap > 0 ? opts->backoff_cap : HTTP_BACKOFF_CAP;
	c->sleep = opts->sleep;
	c->random01 = opts->random01;

	c->share = curl_share_init();
	if (!c->share) {
		rc = -ENOMEM;
		goto fail;
	}
	curl_share_setopt(c->share, CURLSHOPT_LOCKFUNC, http_share_lock);
	curl_share_setopt(c->share, CURLSHOPT_UNLOCKFUNC, http_share_unlock);
	curl_share_setopt(c->share, CURLSHOPT_USERDATA, c);
	curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
	curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
	*out = c;
	return 0;
fail:
	http_set_err(err, errlen, "out of memory");
	http_client_free(c);
	return rc;
}

void http_client_free(struct http_client *c)
{
	if (!c)
		return;
	/* Easy handles first: they reference the share. */
	for (size_t i = 0; i < c->n_idle; i++)
		curl_easy_cleanup(c->idle[i]);
	for (size_t i = 0; i < c->n_spare; i++)
		secret_free(c->spare[i]);
	if (c->share)
		curl_share_cleanup(c->share);
	pthread_mutex_destroy(&c->pool_lock);
	for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_destroy(&c->share_locks[i]);
	free(c->ca_cert);
	free(c->client_cert);
	free(c->client_key);
	free(c);
}

int http_client_timeout_seconds(const struct http_client *c)
{
	return c->timeout_seconds;
}

int http_client_max_retries(const struct http_client *c)
{
	return c->max_retries;
}

/* A response buffer: a spare one when there is one (no system call), else
 * a new locked one. */
static struct secret *http_body_take(struct http_client *c)
{
	struct secret *s = NULL;
	pthread_mutex_lock(&c->pool_lock);
	if (c->n_spare)
		s = c->spare[--c->n_spare];
	pthread_mutex_unlock(&c->pool_lock);
	return s ? s : secret_new(HTTP_BODY_INITIAL);
}

/* Wipe what the buffer held and keep it for the next request, unless it
 * grew past HTTP_BODY_KEEP (a large listing) or enough are kept. */
static void http_body_give(struct http_client *c, struct secret *s)
{
	if (!s)
		return;
	if (s->cap <= HTTP_BODY_KEEP) {
		secret_wipe(s->data, s->len);
		s->len = 0;
		pthread_mutex_lock(&c->pool_lock);
		if (c->n_spare < HTTP_POOL_MAX) {
			c->spare[c->n_spare++] = s;
			s = NULL;
		}
		pthread_mutex_unlock(&c->pool_lock);
	}
	secret_free(s);
}

void http_response_clear(struct http_response *r)
{
	if (!r)
		return;
	if (r->owner)
		http_body_give(r->owner, r->body);
	else
		secret_free(r->body);
	r->body = NULL;
	r->owner = NULL;
	r->status = 0;
	r->reused_connection = false;
}

/* The pool: LIFO, so a thread doing requests in a row gets back the handle
 * (and the kept-alive connection) it just used. */
static int http_setup_fixed(struct http_client *c, CURL *h);

static CURL *http_pool_take(struct http_client *c)
{
	CURL *h = NULL;
	pthread_mutex_lock(&c->pool_lock);
	if (c->n_idle)
		h = c->idle[--c->n_idle];
	pthread_mutex_unlock(&c->pool_lock);
	if (!h && (h = curl_easy_init()) && http_setup_fixed(c, h) < 0) {
		curl_easy_cleanup(h);
		h = NULL;
	}
	return h;
}

/* A handle goes back to the pool with the client's fixed options
 * (http_setup_fixed) still set, so the next request sets only what differs
 * per request (http_setup): curl_easy_reset and setting every option again
 * cost ~8 000 instructions a request, with the frees (and wipes) of curl's
 * copies of the option strings (issue 15).  What pointed at this request's
 * memory (headers, body, sink) is dropped here.  A handle that signed with
 * libcurl's SigV4 is reset whole (that frees libcurl's copies of the keys
 * and its signing state), and so is one whose request failed in an option
 * (dirty). */
static void http_pool_put(struct http_client *c, CURL *h, bool dirty)
{
	if (dirty) {
		curl_easy_reset(h);
		if (http_setup_fixed(c, h) < 0) {
			curl_easy_cleanup(h);
			return;
		}
	} else {
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, (struct curl_slist *)NULL);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, (char *)NULL);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)-1);
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, (char *)NULL);
		curl_easy_setopt(h, CURLOPT_WRITEDATA, (void *)NULL);
	}
	pthread_mutex_lock(&c->pool_lock);
	if (c->n_idle < HTTP_POOL_MAX) {
		c->idle[c->n_idle++] = h;
		h = NULL;
	}
	pthread_mutex_unlock(&c->pool_lock);
	if (h)
		curl_easy_cleanup(h);
}

struct http_sink {
	struct secret *body;
	bool too_big;
	bool no_memory;
};

static size_t http_write_cb(char *p, size_t size, size_t n, void *ctx)
{
	struct http_sink *s = ctx;
	size_t len = size * n;
	if (len > HTTP_BODY_MAX || s->body->len > HTTP_BODY_MAX - len) {
		s->too_big = true;
		return 0;   /* CURLE_WRITE_ERROR stops the transfer */
	}
	if (secret_append(s->body, p, len)) {
		s->no_memory = true;
		return 0;
	}
	/* p is curl's receive buffer: the bytes now live in the body (a locked
	 * secret, unless the answer is public: wiped all the same), and curl
	 * does not read delivered data again. */
	secret_wipe(p, len);
	return len;
}

static void http_slist_wipe_free(struct curl_slist *l)
{
	for (struct curl_slist *i = l; i; i = i->next)
		if (i->data)
			secret_wipe(i->data, strlen(i->data));
	curl_slist_free_all(l);
}

/* The options every request of this client shares: set once per handle. */
static int http_setup_fixed(struct http_client *c, CURL *h)
{
	CURLcode cc = CURLE_OK;
#define SET(opt, val) do { if (cc == CURLE_OK) cc = curl_easy_setopt(h, opt, val); } while (0)
#if LIBCURL_VERSION_NUM >= 0x075500
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
#else
	SET(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_FOLLOWLOCATION, 0L);
	SET(CURLOPT_PROXY, "");       /* "" disables proxies from the environment */
	SET(CURLOPT_SSL_VERIFYPEER, 1L);
	SET(CURLOPT_SSL_VERIFYHOST, 2L);
	/* Best effort: other TLS back-ends lack it; used on https only. */
	(void)curl_easy_setopt(h, CURLOPT_SSL_CTX_FUNCTION, http_ssl_ctx);
	if (c->ca_cert)
		SET(CURLOPT_CAINFO, c->ca_cert);
	if (c->client_cert)
		SET(CURLOPT_SSLCERT, c->client_cert);
	if (c->client_key)
		SET(CURLOPT_SSLKEY, c->client_key);
	SET(CURLOPT_USERAGENT, "omikuji-keyfs/" KEYFS_VERSION);
	SET(CURLOPT_WRITEFUNCTION, http_write_cb);
	SET(CURLOPT_SHARE, c->share);
#undef SET
	return cc == CURLE_OK ? 0 : -EINVAL;
}

/* What differs per request, on a handle with the fixed options set.  Every
 * option a previous request of the handle may have set is set again here
 * or was cleared by http_pool_put(). */
static int http_setup(CURL *h, const struct http_request *req, struct curl_slist *headers,
                      struct http_sink *sink, long timeout_ms, long connect_ms)
{
	CURLcode cc = CURLE_OK;
#define SET(opt, val) do { if (cc == CURLE_OK) cc = curl_easy_setopt(h, opt, val); } while (0)
	SET(CURLOPT_URL, req->url);
	SET(CURLOPT_TIMEOUT_MS, timeout_ms);
	SET(CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
	SET(CURLOPT_HTTPHEADER, headers);
	SET(CURLOPT_WRITEDATA, sink);
	/* Best effort, like the TLS option: libcurl refuses a new size only
	 * while a transfer's buffer is allocated, and then keeps its size.
	 * 0 is libcurl's default (16 KiB). */
	(void)curl_easy_setopt(h, CURLOPT_BUFFERSIZE, req->small_answer ? (long)HTTP_RECV_SMALL : 0L);
	if (req->aws_sigv4) {
		SET(CURLOPT_AWS_SIGV4, req->aws_sigv4);
		SET(CURLOPT_USERNAME, req->aws_access_key ? req->aws_access_key : "");
		SET(CURLOPT_PASSWORD, req->aws_secret_key ? req->aws_secret_key : "");
	}

	const char *m = req->method;
	if (!strcmp(m, "GET") && !req->body) {
		SET(CURLOPT_HTTPGET, 1L);   /* also clears NOBODY and UPLOAD */
	} else if (!strcmp(m, "HEAD")) {
		SET(CURLOPT_NOBODY, 1L);
	} else if (req->body || !strcmp(m, "POST") || !strcmp(m, "PUT")) {
		SET(CURLOPT_NOBODY, 0L);
		/* POSTFIELDS does not copy: the caller's (secret) buffer is sent
		 * as is and never duplicated by curl. */
		SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(req->body ? req->body_len : 0));
		SET(CURLOPT_POSTFIELDS, req->body ? (const char *)req->body : "");
		if (strcmp(m, "POST"))
			SET(CURLOPT_CUSTOMREQUEST, m);
	} else {
		SET(CURLOPT_HTTPGET, 1L);
		SET(CURLOPT_CUSTOMREQUEST, m);
	}
#undef SET
	return cc == CURLE_OK ? 0 : -EINVAL;
}

static bool http_method_valid(const char *m)
{
	if (!m || !*m || strlen(m) > 16)
		return false;
	for (const char *p = m; *p; p++)
		if (*p < 'A' || *p > 'Z')
			return false;
	return true;
}

int http_perform(struct http_client *c, const struct http_request *req, double deadline,
                 struct http_response *resp, char *err, size_t errlen)
{
	int rc;
	http_response_clear(resp);
	if (!c || !req || !req->url || !http_method_valid(req->method)) {
		http_set_err(err, errlen, "invalid request");
		return -EINVAL;
	}
	double now = clock_monotonic();
	if (deadline <= 0)
		deadline = now + c->timeout_seconds;
	double left = deadline - now;
	if (left < HTTP_MIN_ATTEMPT_SECONDS) {
		http_set_err(err, errlen, "timed out");
		return -ETIMEDOUT;
	}
	long timeout_ms = (long)(left * 1000.0);
	if (timeout_ms < 1)
		timeout_ms = 1;
	long connect_ms = (long)c->timeout_seconds * 500L;
	if (connect_ms > timeout_ms || connect_ms < 1)
		connect_ms = timeout_ms;

	struct curl_slist *headers = NULL;
	struct http_sink sink = { 0 };
	CURL *h = NULL;
	bool dirty = req->aws_sigv4 != NULL;

	/* "Expect:" stops curl from waiting for a 100-continue on big bodies.
	 * Not with SigV4: libcurl 7.88 would sign it (see http.h). */
	struct curl_slist *t;
	if (!req->aws_sigv4) {
		t = curl_slist_append(NULL, "Expect:");
		if (!t) {
			rc = -ENOMEM;
			goto out;
		}
		headers = t;
	}
	for (const char *const *hl = req->headers; hl && *hl; hl++) {
		if (strpbrk(*hl, "\r\n")) {
			http_set_err(err, errlen, "invalid header line");
			rc = -EINVAL;
			goto out;
		}
		t = curl_slist_append(headers, *hl);
		if (!t) {
			rc = -ENOMEM;
			goto out;
		}
		headers = t;
	}
	/* A public answer's buffer is not one of the locked spares, and is
	 * freed rather than kept (owner NULL below). */
	sink.body = req->public_answer ? secret_new_unlocked(HTTP_BODY_INITIAL) : http_body_take(c);
	h = http_pool_take(c);
	if (!sink.body || !h) {
		rc = -ENOMEM;
		goto out;
	}
	rc = http_setup(h, req, headers, &sink, timeout_ms, connect_ms);
	if (rc) {
		dirty = true;
		http_set_err(err, errlen, "curl rejected an option");
		goto out;
	}

	CURLcode cc = curl_easy_perform(h);
	switch (cc) {
	case CURLE_OK: {
		long status = 0, connects = 0;
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
		curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &connects);
		resp->status = status;
		resp->reused_connection = connects == 0;
		resp->body = sink.body;
		resp->owner = req->public_answer ? NULL : c;
		sink.body = NULL;
		rc = 0;
		break;
	}
	case CURLE_WRITE_ERROR:
		if (sink.too_big) {
			http_set_err(err, errlen, "response body larger than %d bytes", HTTP_BODY_MAX);
			rc = -EMSGSIZE;
		} else if (sink.no_memory) {
			rc = -ENOMEM;
		} else {
			http_set_err(err, errlen, "%s", curl_easy_strerror(cc));
			rc = -EIO;
		}
		break;
	case CURLE_OPERATION_TIMEDOUT: {
		curl_off_t connect_us = 0;
		curl_easy_getinfo(h, CURLINFO_CONNECT_TIME_T, &connect_us);
		if (connect_us == 0 && clock_monotonic() < deadline - HTTP_MIN_ATTEMPT_SECONDS) {
			http_set_err(err, errlen, "connect timed out");
			rc = -ECONNREFUSED;
		} else {
			http_set_err(err, errlen, "timed out");
			rc = -ETIMEDOUT;
		}
		break;
	}
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_CRL_BADFILE:
		http_set_err(err, errlen, "%s", curl_easy_strerror(cc));
		rc = -ECONNREFUSED;
		break;
	case CURLE_GOT_NOTHING:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_PARTIAL_FILE:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		http_set_err(err, errlen, "%s", curl_easy_strerror(cc));
		rc = -ECONNRESET;
		break;
	case CURLE_OUT_OF_MEMORY:
		rc = -ENOMEM;
		break;
	default:
		http_set_err(err, errlen, "%s", curl_easy_strerror(cc));
		rc = -EIO;
		break;
	}
out:
	if (rc == -ENOMEM)
		http_set_err(err, errlen, "out of memory");
	if (h)
		http_pool_put(c, h, dirty);
	http_slist_wipe_free(headers);
	if (sink.body && req->public_answer)
		secret_free(sink.body);
	else if (sink.body)
		http_body_give(c, sink.body);
	return rc;
}

bool http_retryable(int rc, long status, bool idempotent)
{
	if (rc == -ECONNREFUSED)
		return true;
	if (rc == -ECONNRESET)
		return idempotent;
	if (rc != 0)
		return false;
	if (status == 429 || status == 503)
		return true;
	if (status >= 500 && status <= 599)
		return idempotent;
	return false;
}

double http_backoff_delay(unsigned retry, double base, double cap, double u)
{
	if (retry == 0 || base <= 0 || cap <= 0)
		return 0;
	if (u < 0)
		u = 0;
	if (u >= 1)
		u = 0.9999999999;
	double ceiling = cap;
	/* 2^(retry-1) overflows nothing below 2^62; past the cap it is moot. */
	if (retry <= 62) {
		double exp = base * (double)(1ULL << (retry - 1));
		if (exp < ceiling)
			ceiling = exp;
	}
	return u * ceiling;
}

/* xorshift64*, one state per thread, seeded from the kernel: jitter only
 * needs to decorrelate clients, not to be unpredictable. */
static double http_default_random01(void)
{
	static __thread uint64_t state;
	if (state == 0) {
		if (getrandom(&state, sizeof(state), GRND_NONBLOCK) != sizeof(state))
			state = (uint64_t)(uintptr_t)&state ^ (uint64_t)time(NULL);
		if (state == 0)
			state = 0x9E3779B97F4A7C15ULL;
	}
	state ^= state >> 12;
	state ^= state << 25;
	state ^= state >> 27;
	return (double)((state * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0;
}

static void http_default_sleep(double seconds)
{
	if (seconds <= 0)
		return;
	struct timespec ts = { (time_t)seconds,
	                       (long)((seconds - (double)(time_t)seconds) * 1e9) };
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

bool http_backoff_sleep(struct http_client *c, unsigned retry, double deadline)
{
	double u = c->random01 ? c->random01() : http_default_random01();
	double d = http_backoff_delay(retry, c->backoff_base, c->backoff_cap, u);
	if (deadline > 0) {
		double left = deadline - clock_monotonic();
		if (left - d < HTTP_MIN_ATTEMPT_SECONDS)
			return false;
	}
	if (c->sleep)
		c->sleep(d);
	else
		http_default_sleep(d);
	return true;
}

/* The one retry loop: same-server retries with back-off and, with several
 * servers, fail-over (a server not tried yet is tried at once, without
 * waiting).  At most n servers + max_retries attempts, all within one
 * deadline. */
int http_request_failover(struct http_client *c, const struct http_request *req,
                          const struct http_failover *f, double deadline,
                          struct http_response *resp, char *err, size_t errlen)
{
	if (deadline <= 0)
		deadline = clock_monotonic() + c->timeout_seconds;
	bool servers = f && f->n;
	size_t n = servers ? f->n : 1;
	size_t idx = servers ? f->start % n : 0;
	unsigned max_attempts = (unsigned)n + (unsigned)c->max_retries;
	unsigned backoffs = 0, distinct = 1;
	int rc;
	for (unsigned attempt = 1; ; attempt++) {
		struct http_request one = *req;
		char buf[2048], *url = NULL;   /* base + path; the heap only when long */
		if (servers) {
			size_t bl = strlen(f->bases[idx]), pl = strlen(req->url);
			if (bl + pl < sizeof(buf)) {
				memcpy(buf, f->bases[idx], bl);
				memcpy(buf + bl, req->url, pl + 1);
				one.url = buf;
			} else {
				if (asprintf(&url, "%s%s", f->bases[idx], req->url) < 0)
					return -ENOMEM;
				one.url = url;
			}
		}
		rc = http_perform(c, &one, deadline, resp, err, errlen);
		free(url);
		bool again = f && f->should_retry ? f->should_retry(rc, resp->status, req->idempotent)
		                                  : http_retryable(rc, resp->status, req->idempotent);
		if (!again || attempt >= max_attempts)
			break;
		size_t next = idx;
		if (n > 1 && f->should_failover && f->should_failover(rc, resp->status)) {
			next = (idx + 1) % n;
			if (f->moved)
				f->moved(f->ctx, idx, next, rc, resp->status);
		}
		if (next != idx && distinct < n)
			distinct++;   /* a server not tried yet: no reason to wait */
		else if (!http_backoff_sleep(c, ++backoffs, deadline))
			break;
		idx = next;
	}
	return rc;
}

int http_request(struct http_client *c, const struct http_request *req, double deadline,
                 struct http_response *resp, char *err, size_t errlen)
{
	return http_request_failover(c, req, NULL, deadline, resp, err, errlen);
}

int http_escape_segment(const char *s, char *out, size_t outlen)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		bool keep = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
		            (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' ||
		            *p == '_' || *p == '~';
		size_t need = keep ? 1 : 3;
		if (o >= outlen || outlen - o <= need)
			return -ENAMETOOLONG;
		if (keep) {
			out[o++] = (char)*p;
		} else {
			out[o++] = '%';
			out[o++] = hex[*p >> 4];
			out[o++] = hex[*p & 15];
		}
	}
	if (o >= outlen)
		return -ENAMETOOLONG;
	out[o] = 0;
	return 0;
}
