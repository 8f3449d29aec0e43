/* test_http.c - the HTTP layer: retry schedule and classification (pure),
 * path escaping, argument checks, and transfers against tiny in-test
 * loopback servers (closed port, oversized body, no answer). */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include "http.h"
#include "vmlck.h"

/* ---- retry schedule ------------------------------------------------------- */

Test(http_backoff, zero_for_no_retry)
{
	cr_expect_eq(http_backoff_delay(0, 0.1, 2.0, 0.5), 0.0);
}

Test(http_backoff, exponential_until_cap)
{
	const double u = 0.999999;   /* the top of the jitter range */
	double want[] = { 0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0 };
	for (unsigned r = 1; r <= 8; r++) {
		double d = http_backoff_delay(r, 0.1, 2.0, u);
		cr_expect(d <= want[r - 1] && d > want[r - 1] * 0.999,
		          "retry %u: %f, ceiling %f", r, d, want[r - 1]);
	}
	/* Huge retry numbers neither overflow nor pass the cap. */
	cr_expect(http_backoff_delay(70, 0.1, 2.0, u) <= 2.0);
	cr_expect(http_backoff_delay(4000000000u, 0.1, 2.0, u) <= 2.0);
	cr_expect(http_backoff_delay(70, 0.1, 2.0, u) > 1.99);
}

Test(http_backoff, full_jitter_bounds)
{
	cr_expect_eq(http_backoff_delay(3, 0.1, 2.0, 0.0), 0.0, "u=0 gives no wait");
	cr_expect(http_backoff_delay(3, 0.1, 2.0, 0.5) > 0.19 &&
	          http_backoff_delay(3, 0.1, 2.0, 0.5) < 0.21, "half of 0.4");
	/* Out-of-range u is clamped into [0,1). */
	cr_expect_eq(http_backoff_delay(2, 0.1, 2.0, -3.0), 0.0);
	cr_expect(http_backoff_delay(2, 0.1, 2.0, 7.0) < 0.2 + 1e-9);
	for (int i = 0; i < 1000; i++) {
		double u = (double)i / 1000.0;
		for (unsigned r = 1; r < 10; r++) {
			double d = http_backoff_delay(r, 0.05, 1.0, u);
			double ceiling = 0.05 * (double)(1u << (r - 1));
			if (ceiling > 1.0)
				ceiling = 1.0;
			cr_assert(d >= 0 && d < ceiling + 1e-12, "u=%f r=%u d=%f", u, r, d);
		}
	}
}

Test(http_retry, which_outcomes_retry)
{
	/* Never reached the server: always worth another try. */
	cr_expect(http_retryable(-ECONNREFUSED, 0, true));
	cr_expect(http_retryable(-ECONNREFUSED, 0, false));
	/* Broken after sending: only when repeating is harmless. */
	cr_expect(http_retryable(-ECONNRESET, 0, true));
	cr_expect_not(http_retryable(-ECONNRESET, 0, false));
	/* The server said it did not process it. */
	cr_expect(http_retryable(0, 429, false));
	cr_expect(http_retryable(0, 503, false));
	cr_expect(http_retryable(0, 500, true));
	cr_expect(http_retryable(0, 502, true));
	cr_expect(http_retryable(0, 599, true));
	cr_expect_not(http_retryable(0, 500, false));
	/* Final answers. */
	long finals[] = { 200, 204, 301, 307, 400, 401, 403, 404, 409, 412, 499, 600 };
	for (size_t i = 0; i < sizeof(finals) / sizeof(finals[0]); i++)
		cr_expect_not(http_retryable(0, finals[i], true), "status %ld", finals[i]);
	cr_expect_not(http_retryable(-ETIMEDOUT, 0, true), "deadline spent");
	cr_expect_not(http_retryable(-EMSGSIZE, 0, true), "would repeat");
	cr_expect_not(http_retryable(-EIO, 0, true));
	cr_expect_not(http_retryable(-ENOMEM, 0, true));
}

/* ---- escaping ----------------------------------------------------------------- */

Test(http_escape, segments)
{
	char out[64];
	cr_assert_eq(http_escape_segment("eth-mainnet_1.x~Z9", out, sizeof(out)), 0);
	cr_expect_str_eq(out, "eth-mainnet_1.x~Z9");
	cr_assert_eq(http_escape_segment("a/b c?#%", out, sizeof(out)), 0);
	cr_expect_str_eq(out, "a%2Fb%20c%3F%23%25");
	cr_assert_eq(http_escape_segment("\xc3\xa9", out, sizeof(out)), 0);
	cr_expect_str_eq(out, "%C3%A9");
	cr_assert_eq(http_escape_segment("", out, sizeof(out)), 0);
	cr_expect_str_eq(out, "");
}

Test(http_escape, bounds)
{
	char out[4];
	cr_expect_eq(http_escape_segment("abc", out, sizeof(out)), 0, "exact fit");
	cr_expect_eq(http_escape_segment("abcd", out, sizeof(out)), -ENAMETOOLONG);
	cr_expect_eq(http_escape_segment("a/", out, sizeof(out)), -ENAMETOOLONG, "%2F needs 3");
	cr_expect_eq(http_escape_segment("/", out, sizeof(out)), 0);
	cr_expect_str_eq(out, "%2F");
	cr_expect_eq(http_escape_segment("a", out, 0), -ENAMETOOLONG);
}

/* ---- client --------------------------------------------------------------------- */

static int sleeps;
static double slept[32];
static void record_sleep(double s)
{
	if (sleeps < 32)
		slept[sleeps] = s;
	sleeps++;
}
static double always_top(void) { return 0.999; }

static struct http_client *client(int timeout, int retries)
{
	struct http_client_opts o = { .timeout_seconds = timeout, .max_retries = retries,
	                              .sleep = record_sleep, .random01 = always_top };
	struct http_client *c = NULL;
	char err[128] = "";
	cr_assert_eq(http_client_new(&o, &c, err, sizeof(err)), 0, "%s", err);
	sleeps = 0;
	return c;
}

Test(http_client, defaults_and_clamps)
{
	struct http_client *c = client(0, -4);
	cr_expect_eq(http_client_timeout_seconds(c), 5);
	cr_expect_eq(http_client_max_retries(c), 0);
	http_client_free(c);
	c = client(2, 99);
	cr_expect_eq(http_client_timeout_seconds(c), 2);
	cr_expect_eq(http_client_max_retries(c), 10);
	http_client_free(c);
}

Test(http_client, rejects_bad_requests)
{
	struct http_client *c = client(1, 0);
	struct http_response r = { 0 };
	struct http_request q = { .method = "get", .url = "http://127.0.0.1:1/" };
	cr_expect_eq(http_perform(c, &q, 0, &r, NULL, 0), -EINVAL, "lower-case method");
	q.method = "GET";
	const char *bad[] = { "X-Test: a\r\nX-Injected: b", NULL };
	q.headers = bad;
	char err[64] = "";
	cr_expect_eq(http_perform(c, &q, 0, &r, err, sizeof(err)), -EINVAL, "CRLF in header");
	cr_expect_eq(r.status, 0);
	q.url = NULL;
	cr_expect_eq(http_perform(c, &q, 0, &r, NULL, 0), -EINVAL);
	http_client_free(c);
}

/* A port on loopback that nobody listens on: bind, read it, close. */
static int closed_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t l = sizeof(a);
	cr_assert(fd >= 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &l), 0);
	close(fd);
	return ntohs(a.sin_port);
}

Test(http_client, refused_is_retried_a_bounded_number_of_times)
{
	struct http_client *c = client(5, 3);
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", closed_port());
	struct http_request q = { .method = "GET", .url = url, .idempotent = false };
	struct http_response r = { 0 };
	char err[128] = "";
	cr_expect_eq(http_request(c, &q, 0, &r, err, sizeof(err)), -ECONNREFUSED);
	cr_expect_eq(sleeps, 3, "one back-off per retry");
	cr_expect(slept[0] <= 0.1 && slept[1] <= 0.2 && slept[2] <= 0.4 && slept[2] > 0.39,
	          "%f %f %f", slept[0], slept[1], slept[2]);
	cr_expect(err[0], "a reason is given");
	cr_expect_null(strstr(err, url), "no URL in the reason");
	http_response_clear(&r);
	http_client_free(c);
}

Test(http_client, backoff_sleep_respects_deadline)
{
	struct http_client *c = client(5, 3);
	cr_expect(http_backoff_sleep(c, 1, 0), "no deadline");
	cr_expect_eq(sleeps, 1);
	/* 0.001 s left: no room for a wait of up to 0.1 s plus an attempt. */
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	double now = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
	cr_expect_not(http_backoff_sleep(c, 1, now + 0.001));
	cr_expect_eq(sleeps, 1, "did not sleep");
	cr_expect(http_backoff_sleep(c, 1, now + 100));
	http_client_free(c);
}

/* ---- tiny loopback servers --------------------------------------------------------- */

struct mini_server {
	int listen_fd;
	int port;
	int mode;             /* 0: huge body, 1: never answer, 2: small 200,
	                       * 3: small 200 on two connections in turn,
	                       * 4: a 100 000-byte patterned body, 5: the same
	                       * body chunked */
	pthread_t thread;
};

static char last_request[4096];   /* what read_request() read last */

static void read_request(int fd)
{
	char *buf = last_request;
	const size_t size = sizeof(last_request);
	memset(last_request, 0, sizeof(last_request));
	size_t have = 0;
	while (have < size - 1) {
		ssize_t n = read(fd, buf + have, size - 1 - have);
		if (n <= 0)
			return;
		have += (size_t)n;
		buf[have] = 0;
		if (strstr(buf, "\r\n\r\n"))
			return;
	}
}

#define PATTERN_BYTES 100000

static void pattern_fill(char *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (char)('a' + (i * 7 + i / 251) % 26);
}

static void *mini_serve(void *arg)
{
	struct mini_server *s = arg;
	if (s->mode == 3) {
		static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n"
		                         "Connection: close\r\n\r\n{\"k\":\"0xab\"}";
		for (int i = 0; i < 2; i++) {
			int c = accept(s->listen_fd, NULL, NULL);
			if (c < 0)
				return NULL;
			read_request(c);
			if (write(c, ok, sizeof(ok) - 1) < 0) {
				/* the client's check fails */
			}
			close(c);
		}
		return NULL;
	}
	int fd = accept(s->listen_fd, NULL, NULL);
	if (fd < 0)
		return NULL;
	read_request(fd);
	if (s->mode == 0) {
		const size_t total = 2 * 1024 * 1024;
		char head[128];
		int n = snprintf(head, sizeof(head),
		                 "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", total);
		if (write(fd, head, (size_t)n) != n)
			goto out;
		static char chunk[65536];
		memset(chunk, 'a', sizeof(chunk));
		for (size_t sent = 0; sent < total; sent += sizeof(chunk))
			if (write(fd, chunk, sizeof(chunk)) < 0)
				break;
	} else if (s->mode == 4 || s->mode == 5) {
		static char body[PATTERN_BYTES];
		pattern_fill(body, sizeof(body));
		char head[160];
		int n = s->mode == 4
		        ? snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n",
		                   PATTERN_BYTES)
		        : snprintf(head, sizeof(head),
		                   "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
		if (write(fd, head, (size_t)n) != n)
			goto out;
		for (size_t off = 0; off < sizeof(body); off += 7000) {
			size_t len = sizeof(body) - off < 7000 ? sizeof(body) - off : 7000;
			if (s->mode == 5) {
				n = snprintf(head, sizeof(head), "%zx\r\n", len);
				if (write(fd, head, (size_t)n) != n)
					goto out;
			}
			if (write(fd, body + off, len) != (ssize_t)len ||
			    (s->mode == 5 && write(fd, "\r\n", 2) != 2))
				goto out;
		}
		if (s->mode == 5 && write(fd, "0\r\n\r\n", 5) != 5)
			goto out;
	} else if (s->mode == 1) {
		char b[16];
		/* Until the client gives up and closes. */
		while (read(fd, b, sizeof(b)) > 0)
			;
	} else {
		static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
		if (write(fd, ok, sizeof(ok) - 1) < 0)
			goto out;
	}
out:
	close(fd);
	return NULL;
}

static void mini_start(struct mini_server *s, int mode)
{
	s->mode = mode;
	s->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t l = sizeof(a);
	cr_assert(s->listen_fd >= 0);
	cr_assert_eq(bind(s->listen_fd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(listen(s->listen_fd, 4), 0);
	cr_assert_eq(getsockname(s->listen_fd, (struct sockaddr *)&a, &l), 0);
	s->port = ntohs(a.sin_port);
	cr_assert_eq(pthread_create(&s->thread, NULL, mini_serve, s), 0);
}

static void mini_stop(struct mini_server *s)
{
	shutdown(s->listen_fd, SHUT_RDWR);
	pthread_join(s->thread, NULL);
	close(s->listen_fd);
}

Test(http_transfer, oversized_body_is_refused)
{
	struct mini_server s;
	mini_start(&s, 0);
	struct http_client *c = client(10, 0);
	char url[64], err[128] = "";
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/big", s.port);
	struct http_request q = { .method = "GET", .url = url };
	struct http_response r = { 0 };
	cr_expect_eq(http_perform(c, &q, 0, &r, err, sizeof(err)), -EMSGSIZE, "%s", err);
	cr_expect_null(r.body, "no partial body handed out");
	cr_expect_not(http_retryable(-EMSGSIZE, 0, true));
	http_client_free(c);
	mini_stop(&s);
}

Test(http_transfer, no_answer_times_out)
{
	struct mini_server s;
	mini_start(&s, 1);
	struct http_client *c = client(1, 3);
	char url[64], err[128] = "";
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/hang", s.port);
	struct http_request q = { .method = "GET", .url = url, .idempotent = true };
	struct http_response r = { 0 };
	cr_expect_eq(http_request(c, &q, 0, &r, err, sizeof(err)), -ETIMEDOUT);
	cr_expect_eq(sleeps, 0, "a spent deadline is not retried");
	cr_expect_eq(r.status, 0);
	http_client_free(c);
	mini_stop(&s);
}

Test(http_transfer, small_answer_and_custom_method)
{
	struct mini_server s;
	mini_start(&s, 2);
	struct http_client *c = client(5, 0);
	char url[64], err[128] = "";
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/secret/metadata/x", s.port);
	const char *h[] = { "X-Vault-Request: true", NULL };
	struct http_request q = { .method = "LIST", .url = url, .headers = h };
	struct http_response r = { 0 };
	cr_assert_eq(http_perform(c, &q, 0, &r, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(r.status, 200);
	cr_assert_not_null(r.body);
	cr_expect_eq(r.body->len, 2);
	cr_expect_eq(memcmp(r.body->data, "{}", 2), 0);
	http_response_clear(&r);
	cr_expect_null(r.body);
	http_client_free(c);
	mini_stop(&s);
}

/* issue 15 (s3-15a): the locked response buffer is wiped when given back
 * and handed to the next request, instead of a new mlock()ed one each time. */
Test(http_transfer, response_buffer_is_wiped_and_reused)
{
	struct mini_server s;
	mini_start(&s, 3);
	struct http_client *c = client(5, 0);
	char url[64], err[128] = "";
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/secret/data/x", s.port);
	struct http_request q = { .method = "GET", .url = url };
	struct http_response r = { 0 };
	cr_assert_eq(http_perform(c, &q, 0, &r, err, sizeof(err)), 0, "%s", err);
	cr_assert_not_null(r.body);
	cr_expect_eq(r.body->len, 11);
	struct secret *first = r.body;
	cr_expect_eq(first->cap, HTTP_BODY_INITIAL);
	http_response_clear(&r);
	cr_expect_null(r.body);
	/* Kept by the client (not freed): it must hold nothing any more. */
	cr_expect_eq(first->len, 0);
	static const unsigned char zero[HTTP_BODY_INITIAL + 1];
	cr_expect_eq(memcmp(first->data, zero, sizeof(zero)), 0, "the kept buffer is wiped");
	cr_assert_eq(http_perform(c, &q, 0, &r, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(r.body, first, "the next request reuses the kept buffer");
	cr_expect_eq(r.body->len, 11);
	cr_expect_eq(memcmp(r.body->data, "{\"k\":\"0xab\"}", 11), 0);
	http_response_clear(&r);
	http_client_free(c);
	mini_stop(&s);
}

/* issue 15 (s5-cold): a request marked small_answer gets libcurl's small
 * receive buffer (HTTP_RECV_SMALL); an answer ~50 times that size, plain or
 * chunked, still arrives whole and byte for byte. */
Test(http_transfer, small_answer_buffer_still_takes_a_large_answer)
{
	static char want[PATTERN_BYTES];
	pattern_fill(want, sizeof(want));
	for (int mode = 4; mode <= 5; mode++) {
		struct mini_server s;
		mini_start(&s, mode);
		struct http_client *c = client(10, 0);
		char url[64], err[128] = "";
		snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/secret/data/x", s.port);
		struct http_request q = { .method = "GET", .url = url, .small_answer = true };
		struct http_response r = { 0 };
		cr_assert_eq(http_perform(c, &q, 0, &r, err, sizeof(err)), 0, "mode %d: %s", mode, err);
		cr_expect_eq(r.status, 200);
		cr_assert_not_null(r.body);
		cr_expect_eq(r.body->len, sizeof(want), "mode %d: %zu bytes", mode, r.body->len);
		cr_expect(r.body->len == sizeof(want) && memcmp(r.body->data, want, sizeof(want)) == 0,
		          "mode %d: the body arrived intact", mode);
		http_response_clear(&r);
		http_client_free(c);
		mini_stop(&s);
	}
}

/* s6-lock: a public answer (a listing) is received into ordinary memory,
 * any other into locked memory: VmLck with a 100 000-byte body held. */
Test(http_transfer, public_answer_is_not_locked)
{
	if (!vmlck_works())
		cr_skip_test("mlock() locks nothing here (sanitizer build, or no RLIMIT_MEMLOCK)");
	static char want[PATTERN_BYTES];
	pattern_fill(want, sizeof(want));
	long grew[2];
	for (int pub = 1; pub >= 0; pub--) {
		struct mini_server s;
		mini_start(&s, 4);
		struct http_client *c = client(10, 0);
		char url[64], err[128] = "";
		snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/secret/metadata/", s.port);
		struct http_request q = { .method = "GET", .url = url, .public_answer = pub };
		struct http_response r = { 0 };
		long base = vmlck_kb();
		cr_assert_eq(http_perform(c, &q, 0, &r, err, sizeof(err)), 0, "%s", err);
		grew[pub] = vmlck_kb() - base;
		cr_assert_not_null(r.body);
		cr_expect(r.body->len == sizeof(want) && memcmp(r.body->data, want, sizeof(want)) == 0,
		          "public %d: the body arrived intact", pub);
		http_response_clear(&r);
		cr_expect_null(r.body);
		http_client_free(c);
		mini_stop(&s);
	}
	cr_expect_lt(grew[1], 16, "a public answer locked %ld kB", grew[1]);
	cr_expect_geq(grew[0], 96, "an answer that may hold a key locked only %ld kB", grew[0]);
}

/* ---- the one loop with fail-over --------------------------------------------------- */

static bool refused_fails_over(int rc, long status)
{
	(void)status;
	return rc == -ECONNREFUSED;
}

static size_t moves[8][2];
static int n_moves;
static void note_move(void *ctx, size_t from, size_t to, int rc, long status)
{
	(void)ctx;
	(void)rc;
	(void)status;
	if (n_moves < 8) {
		moves[n_moves][0] = from;
		moves[n_moves][1] = to;
	}
	n_moves++;
}

Test(http_failover, dead_servers_are_skipped_without_waiting)
{
	struct mini_server s;
	mini_start(&s, 2);
	struct http_client *c = client(5, 2);
	char dead1[64], dead2[64], live[64], err[128] = "";
	snprintf(dead1, sizeof(dead1), "http://127.0.0.1:%d", closed_port());
	snprintf(dead2, sizeof(dead2), "http://127.0.0.1:%d", closed_port());
	snprintf(live, sizeof(live), "http://127.0.0.1:%d", s.port);
	const char *bases[] = { dead1, dead2, live };
	struct http_failover f = { .bases = bases, .n = 3, .start = 0,
	                           .should_failover = refused_fails_over, .moved = note_move };
	struct http_request q = { .method = "GET", .url = "/v1/sys/health", .idempotent = true };
	struct http_response r = { 0 };
	n_moves = 0;
	cr_assert_eq(http_request_failover(c, &q, &f, 0, &r, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(r.status, 200);
	cr_expect_eq(sleeps, 0, "servers not tried yet are tried at once");
	cr_expect_eq(n_moves, 2);
	cr_expect(moves[0][0] == 0 && moves[0][1] == 1 && moves[1][0] == 1 && moves[1][1] == 2);
	http_response_clear(&r);
	http_client_free(c);
	mini_stop(&s);
}

Test(http_failover, all_dead_is_bounded_and_backs_off_after_a_full_round)
{
	struct http_client *c = client(5, 2);
	char dead1[64], dead2[64], err[128] = "";
	snprintf(dead1, sizeof(dead1), "http://127.0.0.1:%d", closed_port());
	snprintf(dead2, sizeof(dead2), "http://127.0.0.1:%d", closed_port());
	const char *bases[] = { dead1, dead2 };
	struct http_failover f = { .bases = bases, .n = 2, .start = 1,
	                           .should_failover = refused_fails_over, .moved = note_move };
	struct http_request q = { .method = "GET", .url = "/x", .idempotent = true };
	struct http_response r = { 0 };
	n_moves = 0;
	cr_expect_eq(http_request_failover(c, &q, &f, 0, &r, err, sizeof(err)), -ECONNREFUSED);
	/* 2 servers + 2 retries = 4 attempts: 1 -> 0 at once, then two back-offs. */
	cr_expect_eq(n_moves, 3);
	cr_expect_eq(moves[0][0], 1, "starts where told");
	cr_expect_eq(sleeps, 2);
	http_response_clear(&r);
	http_client_free(c);
}

/* issue 15 (s3-15a): the fail-over loop joins base and path on the stack;
 * one longer than that buffer still goes out whole. */
Test(http_failover, long_url_is_joined_whole)
{
	struct mini_server s;
	mini_start(&s, 2);
	struct http_client *c = client(5, 0);
	char base[64], err[128] = "";
	snprintf(base, sizeof(base), "http://127.0.0.1:%d", s.port);
	static char path[2101];
	path[0] = '/';
	memset(path + 1, 'a', sizeof(path) - 2);
	const char *bases[] = { base };
	struct http_failover f = { .bases = bases, .n = 1 };
	struct http_request q = { .method = "GET", .url = path, .idempotent = true };
	struct http_response r = { 0 };
	cr_assert_eq(http_request_failover(c, &q, &f, 0, &r, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(r.status, 200);
	mini_stop(&s);   /* the server thread is done with last_request */
	char line[2200];
	snprintf(line, sizeof(line), "GET %s HTTP/1.1\r\n", path);
	cr_expect(!strncmp(last_request, line, strlen(line)), "the whole path arrived");
	http_response_clear(&r);
	http_client_free(c);
}

/* ---- issue 15 round 2 (s4-cold): handles keep their fixed options ------------------ */

/* A keep-alive server that records the head and body of each request. */
#define KEEP_MAX 8
struct keep_server {
	int listen_fd, port, n;
	char req[KEEP_MAX][2048];
	pthread_t thread;
};

static void *keep_serve(void *arg)
{
	struct keep_server *s = arg;
	int fd = accept(s->listen_fd, NULL, NULL);
	if (fd < 0)
		return NULL;
	for (s->n = 0; s->n < KEEP_MAX; s->n++) {
		char *b = s->req[s->n];
		size_t have = 0, need = 0;
		char *end = NULL;
		while (have < sizeof(s->req[0]) - 1) {
			ssize_t r = read(fd, b + have, sizeof(s->req[0]) - 1 - have);
			if (r <= 0)
				goto out;
			have += (size_t)r;
			b[have] = 0;
			if (!end && (end = strstr(b, "\r\n\r\n"))) {
				const char *cl = strcasestr(b, "\r\nContent-Length: ");
				need = (size_t)(end + 4 - b) + (cl && cl < end ? strtoul(cl + 18, NULL, 10) : 0);
			}
			if (end && have >= need)
				break;
		}
		static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
		if (write(fd, ok, sizeof(ok) - 1) < 0)
			break;
	}
out:
	close(fd);
	return NULL;
}

static int header_count(const char *req, const char *name)
{
	int n = 0;
	for (const char *p = req; (p = strcasestr(p, name)); p++)
		n++;
	return n;
}

Test(http_transfer, a_reused_handle_sends_only_this_requests_method_headers_and_body)
{
	struct keep_server s = { 0 };
	s.listen_fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t l = sizeof(a);
	cr_assert(s.listen_fd >= 0);
	cr_assert_eq(bind(s.listen_fd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(listen(s.listen_fd, 4), 0);
	cr_assert_eq(getsockname(s.listen_fd, (struct sockaddr *)&a, &l), 0);
	s.port = ntohs(a.sin_port);
	cr_assert_eq(pthread_create(&s.thread, NULL, keep_serve, &s), 0);

	struct http_client *c = client(5, 0);
	char url[96], err[128] = "";
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/secret/data/x", s.port);
	/* A token renewal between requests: each request must carry the token
	 * it was given, on the same (reused) handle and connection. */
	const char *ha[] = { "X-Vault-Token: token-A", NULL };
	const char *hb[] = { "X-Vault-Token: token-B", NULL };
	const char *hc[] = { "X-Vault-Token: token-C", "X-Vault-Request: true", NULL };
	static const char body[] = "{\"data\":{\"private_key\":\"x\"}}";
	struct http_request q[] = {
		{ .method = "GET", .url = url, .headers = ha },
		{ .method = "PUT", .url = url, .headers = hb, .body = body, .body_len = sizeof(body) - 1 },
		{ .method = "GET", .url = url, .headers = hc },
		{ .method = "POST", .url = url, .headers = ha, .body = body, .body_len = 5 },
		{ .method = "LIST", .url = url, .headers = hb },
		{ .method = "GET", .url = url },
	};
	const size_t nq = sizeof(q) / sizeof(q[0]);
	for (size_t i = 0; i < nq; i++) {
		struct http_response r = { 0 };
		cr_assert_eq(http_perform(c, &q[i], 0, &r, err, sizeof(err)), 0, "%zu: %s", i, err);
		cr_expect_eq(r.status, 200);
		if (i > 0)
			cr_expect(r.reused_connection, "request %zu reused the connection", i);
		http_response_clear(&r);
	}
	http_client_free(c);
	pthread_join(s.thread, NULL);
	close(s.listen_fd);

	cr_assert_eq(s.n, (int)nq, "the server saw %d requests", s.n);
	static const char *const line[] = { "GET /v1/", "PUT /v1/", "GET /v1/", "POST /v1/",
	                                    "LIST /v1/", "GET /v1/" };
	static const char *const token[] = { "token-A", "token-B", "token-C", "token-A", "token-B",
	                                     NULL };
	for (size_t i = 0; i < nq; i++) {
		const char *rq = s.req[i];
		cr_expect_eq(strncmp(rq, line[i], strlen(line[i])), 0, "%zu: %.20s", i, rq);
		cr_expect_eq(header_count(rq, "X-Vault-Token:"), token[i] ? 1 : 0, "%zu", i);
		if (token[i])
			cr_expect(strstr(rq, token[i]) != NULL, "%zu sent its own token", i);
		cr_expect_eq(header_count(rq, "X-Vault-Request:"), i == 2 ? 1 : 0, "%zu", i);
		bool has_body = q[i].body != NULL;
		cr_expect_eq(header_count(rq, "Content-Length:"), has_body ? 1 : 0,
		             "%zu: no stale body", i);
		cr_expect(strstr(rq, "User-Agent: omikuji-keyfs/") != NULL, "%zu keeps the agent", i);
	}
	cr_expect(strstr(s.req[1], body) != NULL);
	cr_expect(strstr(s.req[3], "Content-Length: 5\r\n") != NULL);
}
