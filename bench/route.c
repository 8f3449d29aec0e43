/* route.c - the cost of routing one network name in process: the router of
 * 8 instances of 100 globs each, for a name that matches none of them (the
 * worst case: every glob is tried once, then the answer is remembered),
 * against the router of key_storage alone.
 *
 *   route [-n N] [-i INSTANCES] [-g GLOBS]
 *
 * Prints "ns_per_op=... first_ns=... ns_per_op_1=..." : a remembered route,
 * the first (unremembered) route, and the route with one instance. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "router.h"

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static volatile size_t sink;

static double loop(struct router *r, const char *net, long n)
{
	double t0 = now_ns();
	for (long i = 0; i < n; i++)
		sink += router_route(r, net);
	return (now_ns() - t0) / (double)n;
}

int main(int argc, char **argv)
{
	long n = 1000000;
	int instances = 8, globs = 100, c;
	while ((c = getopt(argc, argv, "n:i:g:")) != -1) {
		if (c == 'n')
			n = atol(optarg);
		else if (c == 'i')
			instances = atoi(optarg);
		else if (c == 'g')
			globs = atoi(optarg);
		else
			return 2;
	}
	struct strlist *lists = calloc((size_t)instances + 1, sizeof(*lists));
	const struct strlist **g = calloc((size_t)instances + 1, sizeof(*g));
	char glob[64];
	for (int i = 0; i < instances; i++) {
		for (int j = 0; j < globs; j++) {
			snprintf(glob, sizeof(glob), "route%d-%d-*", i, j);
			strlist_add(&lists[i + 1], glob);
		}
		g[i + 1] = &lists[i + 1];
	}
	struct router *many, *one;
	if (router_new(g, (size_t)instances + 1, 0, &many) < 0 || router_new(g, 1, 0, &one) < 0)
		return 1;
	double t0 = now_ns();
	sink += router_route(many, "bench-hot");
	double first = now_ns() - t0;
	double remembered = loop(many, "bench-hot", n);
	double single = loop(one, "bench-hot", n);
	printf("ns_per_op=%.1f first_ns=%.0f ns_per_op_1=%.1f\n", remembered, first, single);
	router_free(many);
	router_free(one);
	for (int i = 0; i <= instances; i++)
		strlist_clear(&lists[i]);
	free(lists);
	free(g);
	return 0;
}
