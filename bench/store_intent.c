/* store_intent.c - the cost of deny mode's intent audit line on a store:
 * keyops_store() through the same core library as the daemon, file
 * backend and audit log on a tmpfs directory (so fsync does not drown the
 * difference), `audit_failure: deny` (intent line + outcome line) against
 * `allow` (outcome line only), interleaved, median of REPS runs of N stores.
 *
 *   store_intent [-d TMPFS_DIR] [-n N] [-r REPS]
 *
 * Prints "deny_us=... allow_us=... ratio=... intent_us=...".
 */
#include "config.h"
#include "keyops.h"
#include "log.h"
#include "metrics.h"
#include "secret.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static struct mount_state *open_mode(const char *dir, const char *mode, struct config *cfg)
{
	char path[512], yaml[2048], err[512] = "";
	snprintf(path, sizeof(path), "%s/%s.yaml", dir, mode);
	snprintf(yaml, sizeof(yaml),
	         "key_storage:\n  storage_type: file\n  file:\n    path: %s/%s/keys.enc\n"
	         "logging:\n  level: error\n"
	         "keyfs:\n  audit_log: %s/%s/audit.log\n  audit_failure: %s\n",
	         dir, mode, dir, mode, mode);
	FILE *f = fopen(path, "w");
	if (!f || fputs(yaml, f) < 0 || fclose(f) != 0)
		return NULL;
	if (config_load(path, 0, cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		return NULL;
	}
	struct mount_state *k = NULL;
	if (mount_state_new(cfg, getuid(), getgid(), true, &k, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		return NULL;
	}
	return k;
}

static double run(struct mount_state *k, const struct caller *c, const struct secret *key, long n)
{
	char net[16];
	double t0 = now_us();
	for (long i = 0; i < n; i++) {
		snprintf(net, sizeof(net), "net%ld", i % 8);
		if (keyops_store(k, c, net, key) != 0) {
			fprintf(stderr, "store failed\n");
			exit(1);
		}
	}
	return (now_us() - t0) / (double)n;
}

int main(int argc, char **argv)
{
	const char *dir = "/dev/shm";
	long n = 2000, reps = 7;
	int opt;
	while ((opt = getopt(argc, argv, "d:n:r:")) != -1) {
		switch (opt) {
		case 'd': dir = optarg; break;
		case 'n': n = strtol(optarg, NULL, 10); break;
		case 'r': reps = strtol(optarg, NULL, 10); break;
		default:
			fprintf(stderr, "usage: store_intent [-d TMPFS_DIR] [-n N] [-r REPS]\n");
			return 2;
		}
	}
	if (n < 1 || reps < 1 || reps > 99)
		return 2;
	char tmp[512];
	snprintf(tmp, sizeof(tmp), "%s/keyfs-bench-XXXXXX", dir);
	if (!mkdtemp(tmp)) {
		perror("mkdtemp");
		return 1;
	}
	secret_json_allocator_install();
	metrics_init();
	struct config cd, ca;
	struct mount_state *deny = open_mode(tmp, "deny", &cd);
	struct mount_state *allow = open_mode(tmp, "allow", &ca);
	if (!deny || !allow)
		return 1;
	log_configure(&cd.logging, (char[256]){ 0 }, 256);
	static const char hex[] = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
	struct secret *key = secret_from(hex, 64);
	struct caller c;
	mount_state_caller_from_peer(deny, getuid(), getgid(), getpid(), &c);
	double d[99], a[99];
	run(deny, &c, key, n / 10 + 1);    /* warm up both */
	run(allow, &c, key, n / 10 + 1);
	for (long r = 0; r < reps; r++) {
		d[r] = run(deny, &c, key, n);
		a[r] = run(allow, &c, key, n);
	}
	qsort(d, (size_t)reps, sizeof(double), cmp);
	qsort(a, (size_t)reps, sizeof(double), cmp);
	double dm = d[reps / 2], am = a[reps / 2];
	printf("deny_us=%.2f allow_us=%.2f ratio=%.3f intent_us=%.2f stores=%ld reps=%ld\n",
	       dm, am, dm / am, dm - am, n, reps);
	secret_free(key);
	mount_state_free(deny);
	mount_state_free(allow);
	config_free(&cd);
	config_free(&ca);
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
	return system(cmd) == 0 ? 0 : 1;
}
