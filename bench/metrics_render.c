/* metrics_render.c - in-process cost of rendering `metrics`: records the
 * traffic of NETWORKS networks through fs/metrics.h (what a vault mount
 * records for a cold read of each: a get, a cache miss, a refresh time),
 * then times metrics_render() N times.  The same core library as the daemon.
 *
 *   metrics_render [-k NETWORKS] [-n N]
 *
 * Prints "ops=... ns_per_op=... bytes=... networks=...".
 */
#include "metrics.h"
#include "strbuf.h"

#include <stdio.h>
#include <stdlib.h>
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
	long networks = 1000, n = 200;
	int opt;

	while ((opt = getopt(argc, argv, "k:n:")) != -1) {
		switch (opt) {
		case 'k': networks = strtol(optarg, NULL, 10); break;
		case 'n': n = strtol(optarg, NULL, 10); break;
		default:
			fprintf(stderr, "usage: metrics_render [-k NETWORKS] [-n N]\n");
			return 2;
		}
	}
	if (networks < 0 || n < 1) {
		fprintf(stderr, "usage: metrics_render [-k NETWORKS] [-n N]\n");
		return 2;
	}

	metrics_init();
	metrics_backend_register("vault", true);
	metrics_backend_up(metrics_backend_register("vault", true), true);
	struct timespec wall;
	clock_gettime(CLOCK_REALTIME, &wall);
	for (long i = 0; i < networks; i++) {
		char name[64];
		snprintf(name, sizeof(name), "bench-net-%05ld", i);
		metrics_cache_miss(metrics_backend_register("vault", true));
		metrics_observe_op(metrics_backend_register("vault", true), KEY_OP_GET, true, 0.0004 + 1e-6 * (double)(i % 50));
		metrics_last_refresh(name, (double)wall.tv_sec + (double)i * 1e-3);
		metrics_cache_hit(metrics_backend_register("vault", true));
		metrics_observe_op(metrics_backend_register("vault", true), KEY_OP_GET, true, 0.00001);
	}
	metrics_cache_size(metrics_backend_register("vault", true), networks);

	size_t bytes = 0;
	double t0 = now_ns();
	for (long i = 0; i < n; i++) {
		struct strbuf out = STRBUF_INIT;
		if (metrics_render(&out) < 0) {
			fprintf(stderr, "metrics_render: render failed\n");
			strbuf_reset(&out);
			return 1;
		}
		bytes = out.len;
		strbuf_reset(&out);
	}
	double elapsed = now_ns() - t0;
	printf("ops=%ld ns_per_op=%.1f bytes=%zu networks=%ld\n", n, elapsed / (double)n, bytes,
	       networks);
	return 0;
}
