/* backend_get.c - a remote backend's get, in process, N times: the same
 * code path a cache miss runs inside the daemon, without FUSE.  Set against
 * curlget (bare libcurl) and a read through the mount, it splits the
 * mount's overhead into backend code and FUSE round trips.
 *
 *   VAULT_TOKEN=... backend_get -u URL -k NETWORK [-n N]
 *   AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... backend_get -a REGION -u ENDPOINT
 *       -k NETWORK [-n N]       (aws-secrets, prefix "omikuji")
 *
 * Prints "ops=... ns_per_op=... errors=...".  Never prints the key.
 */
#include "backend.h"
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
	const char *url = NULL, *network = NULL, *region = NULL;
	long n = 1000;
	int opt;
	while ((opt = getopt(argc, argv, "u:k:n:a:")) != -1) {
		switch (opt) {
		case 'a': region = optarg; break;
		case 'u': url = optarg; break;
		case 'k': network = optarg; break;
		case 'n': n = strtol(optarg, NULL, 10); break;
		default: goto usage;
		}
	}
	if (!url || !network || n < 1 || (!region && !getenv("VAULT_TOKEN")))
		goto usage;

	char yaml[] = "/tmp/backend-get-XXXXXX";
	int fd = mkstemp(yaml);
	if (fd < 0)
		return 1;
	if (region)
		dprintf(fd, "key_storage:\n  storage_type: aws-secrets\n  aws_secrets:\n"
		        "    region: %s\n    prefix: omikuji\n    endpoint_url: %s\n", region, url);
	else
		dprintf(fd, "key_storage:\n  storage_type: vault\n  vault:\n    url: %s\n"
		        "    token: ${VAULT_TOKEN}\n", url);
	close(fd);
	struct config cfg;
	char err[512];
	int rc = config_load(yaml, 0, &cfg, err, sizeof(err));
	unlink(yaml);
	if (rc < 0) {
		fprintf(stderr, "config: %s\n", err);
		return 1;
	}
	struct backend *b = NULL;
	struct backend_err berr = { { 0 }, false };
	if (backend_open(&cfg.key_storage, &b, &berr) < 0 || backend_start(b, &berr) < 0) {
		fprintf(stderr, "open: %s\n", berr.msg);
		return 1;
	}
	long errors = 0;
	struct secret *key = NULL;
	if (b->ops->get(b, network, &key, 0, &berr) < 0)   /* warm: token, connection */
		errors++;
	secret_free(key);
	double t0 = now_ns();
	for (long i = 0; i < n; i++) {
		key = NULL;
		if (b->ops->get(b, network, &key, 0, &berr) < 0)
			errors++;
		secret_free(key);
	}
	double elapsed = now_ns() - t0;
	printf("ops=%ld ns_per_op=%.1f errors=%ld\n", n, elapsed / (double)n, errors);
	b->ops->close(b);
	config_free(&cfg);
	return errors ? 1 : 0;
usage:
	fprintf(stderr, "usage: VAULT_TOKEN=... backend_get -u URL -k NETWORK [-n N]\n"
	        "       AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... backend_get -a REGION "
	        "-u ENDPOINT -k NETWORK [-n N]\n");
	return 2;
}
