/* curlget.c - the baseline of the Vault read benchmark: N libcurl GETs of
 * one URL with a single reused easy handle (so one kept-alive connection)
 * and the X-Vault-Token header, i.e. the least any Vault client must do
 * per uncached read.
 *
 *   VAULT_TOKEN=... curlget [-n N] URL
 *
 * The token comes from the environment, never argv (argv is world-readable
 * in /proc).  The body is counted, never printed (it holds a key).  Prints
 * "ops=... ns_per_op=... errors=... bytes_min=... bytes_max=..."; exit 0
 * when every request answered 200.
 */
#include <curl/curl.h>
#include <limits.h>
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

int main(int argc, char **argv)
{
	long n = 1000;
	int opt;
	int code = 2;
	CURL *h = NULL;
	struct curl_slist *headers = NULL;
	char *header = NULL;

	while ((opt = getopt(argc, argv, "n:")) != -1) {
		if (opt != 'n') {
			fprintf(stderr, "usage: VAULT_TOKEN=... curlget [-n N] URL\n");
			return 2;
		}
		n = strtol(optarg, NULL, 10);
	}
	const char *token = getenv("VAULT_TOKEN");
	if (optind != argc - 1 || n < 1 || !token || !*token) {
		fprintf(stderr, "usage: VAULT_TOKEN=... curlget [-n N] URL\n");
		return 2;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
		return 2;
	size_t hlen = strlen("X-Vault-Token: ") + strlen(token) + 1;
	header = malloc(hlen);
	if (!header)
		goto out;
	snprintf(header, hlen, "X-Vault-Token: %s", token);
	headers = curl_slist_append(NULL, header);
	h = curl_easy_init();
	if (!headers || !h)
		goto out;

	struct sink sink = { 0 };
	curl_easy_setopt(h, CURLOPT_URL, argv[optind]);
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
