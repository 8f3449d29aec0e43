/* awscurl.c - the baseline of the AWS read benchmark: N libcurl POSTs of
 * Secrets Manager's GetSecretValue for one secret, signed by libcurl's
 * CURLOPT_AWS_SIGV4, with a single reused easy handle (one kept-alive
 * connection), i.e. the least any Secrets Manager client must do per
 * uncached read.
 *
 *   AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... \
 *       awscurl [-n N] -r REGION -s SECRET_ID ENDPOINT_URL
 *
 * Credentials come from the environment, never argv (argv is world-readable
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

static int usage(void)
{
	fprintf(stderr, "usage: AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... "
	        "awscurl [-n N] -r REGION -s SECRET_ID ENDPOINT_URL\n");
	return 2;
}

int main(int argc, char **argv)
{
	long n = 1000;
	int opt;
	const char *region = NULL, *secret_id = NULL;
	while ((opt = getopt(argc, argv, "n:r:s:")) != -1) {
		if (opt == 'n')
			n = strtol(optarg, NULL, 10);
		else if (opt == 'r')
			region = optarg;
		else if (opt == 's')
			secret_id = optarg;
		else
			return usage();
	}
	const char *ak = getenv("AWS_ACCESS_KEY_ID"), *sk = getenv("AWS_SECRET_ACCESS_KEY");
	if (optind != argc - 1 || n < 1 || !region || !secret_id || !ak || !sk ||
	    strpbrk(secret_id, "\"\\"))
		return usage();
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
		return 2;
	char provider[128], body[600], url[600];
	snprintf(provider, sizeof(provider), "aws:amz:%s:secretsmanager", region);
	snprintf(body, sizeof(body), "{\"SecretId\":\"%s\"}", secret_id);
	snprintf(url, sizeof(url), "%s/", argv[optind]);
	struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/x-amz-json-1.1");
	headers = curl_slist_append(headers, "X-Amz-Target: secretsmanager.GetSecretValue");
	CURL *h = curl_easy_init();
	int code = 2;
	if (!headers || !h)
		goto out;

	struct sink sink = { 0 };
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(h, CURLOPT_AWS_SIGV4, provider);
	curl_easy_setopt(h, CURLOPT_USERNAME, ak);
	curl_easy_setopt(h, CURLOPT_PASSWORD, sk);
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
				fprintf(stderr, "awscurl: request failed: %s, status %ld\n",
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
	curl_global_cleanup();
	return code;
}
