/* curlget.c - the baselines of the uncached read benchmarks: N libcurl
 * requests with a single reused easy handle (so one kept-alive connection),
 * i.e. the least any client must do per uncached read.
 *
 *   VAULT_TOKEN=... curlget [-n N] URL
 *       Vault: GETs of URL with the X-Vault-Token header.
 *   AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... curlget [-n N] -a REGION -s SECRET_ID URL
 *       AWS Secrets Manager: POSTs of GetSecretValue for SECRET_ID to URL/,
 *       signed by libcurl's CURLOPT_AWS_SIGV4.
 *
 *   VAULT_TOKEN=... curlget -b -t T -l URLFILE
 *       The baseline of concurrent cold reads (bench/run.py --only scale):
 *       T threads, each with its own easy handle (so its own connection, as
 *       a client without the mount would), released by one barrier; thread
 *       i GETs line i % lines of URLFILE once.  Adds the distribution of
 *       the threads' latencies, barrier to answer (lat_*_ns).
 *
 * Tokens and keys come from the environment, never argv (argv is
 * world-readable in /proc).  The body is counted, never printed (it holds a
 * key).  Prints "ops=... ns_per_op=... errors=... bytes_min=...
 * bytes_max=..."; exit 0 when every request answered 200.
 */
#include <curl/curl.h>
#include <limits.h>
#include <pthread.h>
#include "latency.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct sink {
	long bytes;
};

static size_t sink_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct sink *s = userdata;
	size_t n = size * nmemb;
	explicit_bzero(ptr, n);   /* curl's buffer held key material */
	s->bytes += (long)n;
	return n;
}

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int usage(void)
{
	fprintf(stderr, "usage: VAULT_TOKEN=... curlget [-n N] URL\n"
	        "       VAULT_TOKEN=... curlget -b -t THREADS -l URLFILE\n"
	        "       AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... "
	        "curlget [-n N] -a REGION -s SECRET_ID URL\n");
	return 2;
}

/* The Vault request: GET with the token header. */
static int setup_vault(CURL *h, struct curl_slist **headers, char **header, size_t *hlen)
{
	const char *token = getenv("VAULT_TOKEN");
	if (!token || !*token)
		return usage();
	*hlen = strlen("X-Vault-Token: ") + strlen(token) + 1;
	*header = malloc(*hlen);
	if (!*header)
		return 2;
	snprintf(*header, *hlen, "X-Vault-Token: %s", token);
	*headers = curl_slist_append(NULL, *header);
	return *headers ? 0 : 2;
}

/* The Secrets Manager request: a signed POST of GetSecretValue.  No
 * header-removal lines: libcurl 7.88 would sign them (backends/http.h). */
static int setup_aws(CURL *h, const char *region, const char *secret_id,
                     struct curl_slist **headers, char *provider, size_t plen,
                     char *body, size_t blen)
{
	const char *ak = getenv("AWS_ACCESS_KEY_ID"), *sk = getenv("AWS_SECRET_ACCESS_KEY");
	if (!ak || !sk || !secret_id || strpbrk(secret_id, "\"\\"))
		return usage();
	snprintf(provider, plen, "aws:amz:%s:secretsmanager", region);
	snprintf(body, blen, "{\"SecretId\":\"%s\"}", secret_id);
	*headers = curl_slist_append(NULL, "Content-Type: application/x-amz-json-1.1");
	if (*headers)
		*headers = curl_slist_append(*headers, "X-Amz-Target: secretsmanager.GetSecretValue");
	if (!*headers)
		return 2;
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(h, CURLOPT_AWS_SIGV4, provider);
	curl_easy_setopt(h, CURLOPT_USERNAME, ak);
	curl_easy_setopt(h, CURLOPT_PASSWORD, sk);
	return 0;
}

/* --- concurrent mode (-b -t T -l URLFILE) ----------------------------------- */

struct getter {
	pthread_t thread;
	const char *url;
	struct curl_slist *headers;
	double lat_ns;
	long bytes;
	int failed;
};

static pthread_barrier_t start_barrier;

static void *getter_run(void *arg)
{
	struct getter *g = arg;
	struct sink sink = { 0 };
	long status = 0;
	CURL *h = curl_easy_init();
	if (h) {
		curl_easy_setopt(h, CURLOPT_URL, g->url);
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, g->headers);
		curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(h, CURLOPT_PROXY, "");
		curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 30000L);
		curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink_write);
		curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
	}
	pthread_barrier_wait(&start_barrier);
	double t0 = now_ns();
	CURLcode rc = h ? curl_easy_perform(h) : CURLE_FAILED_INIT;
	g->lat_ns = now_ns() - t0;
	if (rc == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	g->failed = rc != CURLE_OK || status != 200;
	g->bytes = sink.bytes;
	if (h)
		curl_easy_cleanup(h);
	return NULL;
}

static int concurrent(long threads, const char *list)
{
	struct curl_slist *headers = NULL;
	char *header = NULL, line[1024];
	size_t hlen = 0;
	char **urls = NULL;
	long nurls = 0;
	int code = 2;
	FILE *f = fopen(list, "r");
	if (!f)
		return usage();
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = 0;
		if (!line[0])
			continue;
		char **u = realloc(urls, (size_t)(nurls + 1) * sizeof(*urls));
		if (!u || !(u[nurls] = strdup(line))) {
			urls = u ? u : urls;
			fclose(f);
			goto out;
		}
		urls = u;
		nurls++;
	}
	fclose(f);
	struct getter *g = calloc((size_t)threads, sizeof(*g));
	if (!nurls || !g || setup_vault(NULL, &headers, &header, &hlen) != 0) {
		free(g);
		goto out;
	}
	pthread_barrier_init(&start_barrier, NULL, (unsigned)threads);
	for (long i = 0; i < threads; i++) {
		g[i].url = urls[i % nurls];
		g[i].headers = headers;
		if (pthread_create(&g[i].thread, NULL, getter_run, &g[i]) != 0) {
			fprintf(stderr, "curlget: cannot start thread %ld\n", i);
			exit(2);   /* the others wait at the barrier for ever */
		}
	}
	double t0 = now_ns();
	for (long i = 0; i < threads; i++)
		pthread_join(g[i].thread, NULL);
	double elapsed = now_ns() - t0;
	long errors = 0, bmin = LONG_MAX, bmax = 0;
	double *lat = malloc((size_t)threads * sizeof(*lat));
	for (long i = 0; i < threads; i++) {
		errors += g[i].failed;
		if (!g[i].failed && g[i].bytes < bmin)
			bmin = g[i].bytes;
		if (g[i].bytes > bmax)
			bmax = g[i].bytes;
		if (lat)
			lat[i] = g[i].lat_ns;
	}
	if (bmin == LONG_MAX)
		bmin = 0;
	printf("ops=%ld ns_per_op=%.1f errors=%ld bytes_min=%ld bytes_max=%ld elapsed_ns=%.0f",
	       threads, elapsed, errors, bmin, bmax, elapsed);
	if (lat) {
		latency_print(lat, threads);
		free(lat);
	}
	printf("\n");
	free(g);
	code = errors ? 1 : 0;
out:
	for (long i = 0; i < nurls; i++)
		free(urls[i]);
	free(urls);
	curl_slist_free_all(headers);
	if (header) {
		explicit_bzero(header, hlen);
		free(header);
	}
	return code;
}

int main(int argc, char **argv)
{
	long n = 1000;
	int opt;
	int code = 2;
	CURL *h = NULL;
	struct curl_slist *headers = NULL;
	char *header = NULL;
	size_t hlen = 0;
	const char *region = NULL, *secret_id = NULL;
	char provider[128], body[600], url[1024];
	long threads = 0;
	const char *list = NULL;
	int barrier = 0;

	while ((opt = getopt(argc, argv, "n:a:s:bt:l:")) != -1) {
		if (opt == 'n')
			n = strtol(optarg, NULL, 10);
		else if (opt == 'b')
			barrier = 1;
		else if (opt == 't')
			threads = strtol(optarg, NULL, 10);
		else if (opt == 'l')
			list = optarg;
		else if (opt == 'a')
			region = optarg;
		else if (opt == 's')
			secret_id = optarg;
		else
			return usage();
	}
	if (barrier || list || threads) {
		if (!barrier || !list || threads < 1 || optind != argc)
			return usage();
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
			return 2;
		code = concurrent(threads, list);
		curl_global_cleanup();
		return code;
	}
	if (optind != argc - 1 || n < 1)
		return usage();
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
		return 2;
	h = curl_easy_init();
	if (!h)
		goto out;
	if (region) {
		snprintf(url, sizeof(url), "%s/", argv[optind]);
		code = setup_aws(h, region, secret_id, &headers, provider, sizeof(provider),
		                 body, sizeof(body));
	} else {
		snprintf(url, sizeof(url), "%s", argv[optind]);
		code = setup_vault(h, &headers, &header, &hlen);
	}
	if (code)
		goto out;
	code = 2;

	struct sink sink = { 0 };
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_PROXY, "");
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);

	long errors = 0, bmin = LONG_MAX, bmax = 0;
	double t0 = now_ns();
	for (long i = 0; i < n; i++) {
		long status = 0;
		sink.bytes = 0;
		CURLcode rc = curl_easy_perform(h);
		if (rc == CURLE_OK)
			curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
		if (rc != CURLE_OK || status != 200) {
			if (!errors)
				fprintf(stderr, "curlget: request failed: %s, status %ld\n",
				        curl_easy_strerror(rc), status);
			errors++;
			continue;
		}
		if (sink.bytes < bmin)
			bmin = sink.bytes;
		if (sink.bytes > bmax)
			bmax = sink.bytes;
	}
	double elapsed = now_ns() - t0;
	if (bmin == LONG_MAX)
		bmin = 0;
	printf("ops=%ld ns_per_op=%.1f errors=%ld bytes_min=%ld bytes_max=%ld elapsed_ns=%.0f\n",
	       n, elapsed / (double)n, errors, bmin, bmax, elapsed);
	code = errors ? 1 : 0;
out:
	if (h)
		curl_easy_cleanup(h);
	curl_slist_free_all(headers);
	if (header) {
		explicit_bzero(header, hlen);
		free(header);
	}
	curl_global_cleanup();
	return code;
}
