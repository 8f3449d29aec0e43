/* latency.h - the latency distribution line of the barrier modes of
 * readloop and curlget (bench/run.py parses it). */
#ifndef OMIKUJI_BENCH_LATENCY_H
#define OMIKUJI_BENCH_LATENCY_H

#include <stdio.h>
#include <stdlib.h>

static int latency_compare(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Sort lat[0..n) and print " lat_min_ns=... lat_max_ns=..." (no newline). */
static inline void latency_print(double *lat, long n)
{
	if (n < 1)
		return;
	qsort(lat, (size_t)n, sizeof(*lat), latency_compare);
	printf(" lat_min_ns=%.0f lat_p50_ns=%.0f lat_p90_ns=%.0f lat_p99_ns=%.0f lat_max_ns=%.0f",
	       lat[0], lat[n / 2], lat[n * 9 / 10], lat[n * 99 / 100], lat[n - 1]);
}

#endif
