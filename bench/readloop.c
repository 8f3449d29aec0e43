/* readloop.c - the tight loop behind the read benchmarks: open + read to EOF
 * + close of a path, timed in C so that the loop itself costs nothing next
 * to what is measured (a Python loop would dominate a ~10 us FUSE read).
 *
 *   readloop [-n N] PATH            N opens of PATH, one thread
 *   readloop -n N -t T PATH         T threads, N opens each
 *   readloop -b -t T PATH           T threads open PATH once, all released
 *                                   by one barrier (concurrent cold reads)
 *   readloop -l LISTFILE            every path in LISTFILE (one per line) once
 *   readloop -b -t T -l LISTFILE    T threads released by one barrier, thread i
 *                                   opens path i mod (paths in LISTFILE) once;
 *                                   adds each thread's latency distribution
 *
 * Prints one line: "ops=... ns_per_op=... errors=... bytes_min=... bytes_max=..."
 * (ns_per_op is wall time divided by the opens of one thread: with one
 * thread, the mean latency of an open+read+close).  Exit status 0
 * when every open and read succeeded, 1 otherwise.  The content read is
 * never printed: it may be a key.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "latency.h"

#define READLOOP_MAX_THREADS 1024
#define READLOOP_BUF 65536

struct worker {
	pthread_t thread;
	const char *path;
	char **paths;           /* list mode: paths[0..n) */
	long n;
	long errors;
	long bytes_min;
	long bytes_max;
	int first_errno;
	double lat_ns;          /* barrier mode: release to the end of this thread's reads */
};

static pthread_barrier_t start_barrier;
static int use_barrier;

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* One open+read-to-EOF+close; the byte count, or -errno. */
static long read_once(const char *path, char *buf)
{
	long total = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	for (;;) {
		ssize_t r = read(fd, buf, READLOOP_BUF);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			total = -errno;
			break;
		}
		if (r == 0)
			break;
		total += r;
	}
	close(fd);
	return total;
}

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	char *buf = malloc(READLOOP_BUF);
	if (!buf) {
		w->errors = w->n;
		w->first_errno = ENOMEM;
		return NULL;
	}
	w->bytes_min = LONG_MAX;
	w->bytes_max = 0;
	if (use_barrier)
		pthread_barrier_wait(&start_barrier);
	double t0 = now_ns();
	for (long i = 0; i < w->n; i++) {
		long got = read_once(w->paths ? w->paths[i] : w->path, buf);
		if (got < 0) {
			if (!w->errors)
				w->first_errno = (int)-got;
			w->errors++;
			continue;
		}
		if (got < w->bytes_min)
			w->bytes_min = got;
		if (got > w->bytes_max)
			w->bytes_max = got;
	}
	w->lat_ns = now_ns() - t0;
	/* The buffer held whatever was read (possibly a key). */
	explicit_bzero(buf, READLOOP_BUF);
	free(buf);
	return NULL;
}

/* Read LISTFILE into a NULL-terminated array; 0 or -errno. */
static int load_list(const char *file, char ***out, long *count)
{
	FILE *f = fopen(file, "re");
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	char **v = NULL;
	long n = 0, room = 0;
	int rc = 0;

	if (!f)
		return -errno;
	while ((len = getline(&line, &cap, f)) >= 0) {
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = 0;
		if (len == 0)
			continue;
		if (n == room) {
			room = room ? room * 2 : 1024;
			char **nv = realloc(v, (size_t)room * sizeof(*v));
			if (!nv) {
				rc = -ENOMEM;
				goto out;
			}
			v = nv;
		}
		v[n] = strdup(line);
		if (!v[n]) {
			rc = -ENOMEM;
			goto out;
		}
		n++;
	}
out:
	free(line);
	fclose(f);
	if (rc < 0) {
		for (long i = 0; i < n; i++)
			free(v[i]);
		free(v);
		return rc;
	}
	*out = v;
	*count = n;
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: readloop [-n N] [-t THREADS] [-b] PATH | readloop -l LISTFILE\n");
}

int main(int argc, char **argv)
{
	long n = 10000, threads = 1;
	const char *list = NULL;
	char **paths = NULL;
	int opt;

	while ((opt = getopt(argc, argv, "n:t:bl:")) != -1) {
		switch (opt) {
		case 'n': n = strtol(optarg, NULL, 10); break;
		case 't': threads = strtol(optarg, NULL, 10); break;
		case 'b': use_barrier = 1; break;
		case 'l': list = optarg; break;
		default: usage(); return 2;
		}
	}
	if (n < 1 || threads < 1 || threads > READLOOP_MAX_THREADS ||
	    (list ? optind != argc : optind != argc - 1)) {
		usage();
		return 2;
	}
	if (use_barrier)
		n = 1;
	if (list) {
		int rc = load_list(list, &paths, &n);
		if (rc < 0 || n == 0) {
			fprintf(stderr, "readloop: cannot load %s: %s\n", list,
			        rc < 0 ? strerror(-rc) : "empty");
			return 2;
		}
		if (!use_barrier)
			threads = 1;
	}

	struct worker *w = calloc((size_t)threads, sizeof(*w));
	if (!w)
		return 2;
	if (use_barrier)
		pthread_barrier_init(&start_barrier, NULL, (unsigned)threads);
	for (long i = 0; i < threads; i++) {
		w[i].path = list ? NULL : argv[optind];
		w[i].paths = paths;
		w[i].n = n;
		if (list && use_barrier) {   /* one path each, round robin */
			w[i].path = paths[i % n];
			w[i].paths = NULL;
			w[i].n = 1;
		}
	}
	double t0 = now_ns();
	long started = 0;
	for (; started < threads; started++) {
		if (pthread_create(&w[started].thread, NULL, worker_run, &w[started]) != 0) {
			fprintf(stderr, "readloop: cannot start thread %ld\n", started);
			break;
		}
	}
	if (started < threads) {
		/* Threads already started may wait at the barrier for ever: do
		 * not join them, returning from main ends the process. */
		return 1;
	}
	for (long i = 0; i < threads; i++)
		pthread_join(w[i].thread, NULL);
	double elapsed = now_ns() - t0;

	long errors = 0, bmin = LONG_MAX, bmax = 0, ops = 0;
	int first_errno = 0;
	for (long i = 0; i < threads; i++) {
		ops += w[i].n;
		errors += w[i].errors;
		if (w[i].errors && !first_errno)
			first_errno = w[i].first_errno;
		if (w[i].bytes_min < bmin)
			bmin = w[i].bytes_min;
		if (w[i].bytes_max > bmax)
			bmax = w[i].bytes_max;
	}
	if (bmin == LONG_MAX)
		bmin = 0;
	printf("ops=%ld ns_per_op=%.1f errors=%ld bytes_min=%ld bytes_max=%ld elapsed_ns=%.0f",
	       ops, elapsed / (double)(ops / threads), errors, bmin, bmax, elapsed);
	if (use_barrier) {
		double *lat = malloc((size_t)threads * sizeof(*lat));
		if (lat) {
			for (long i = 0; i < threads; i++)
				lat[i] = w[i].lat_ns;
			latency_print(lat, threads);
			free(lat);
		}
	}
	printf("\n");
	if (errors)
		fprintf(stderr, "readloop: %ld of %ld reads failed (first: %s)\n", errors, ops,
		        strerror(first_errno));
	if (paths) {
		for (long i = 0; i < n; i++)
			free(paths[i]);
		free(paths);
	}
	free(w);
	return errors ? 1 : 0;
}
