/* audit_line.c - what one audit line costs beyond the write(2) no audit log
 * can avoid (issue 15, goal 2).  In one run, interleaved, medians of REPS:
 *
 *   audit_us   audit_write() of a cached-read record (format, SHA-256 link,
 *              the per-line fstat that notices a removed log, write) to
 *              DIR/audit.log
 *   write_us   a bare write(2) of a line of the same length to an O_APPEND
 *              file in DIR (the floor: the line must reach the file before
 *              the caller gets its answer)
 *   fstat_us   fstat(2) of that file alone
 *
 *   audit_line [-d DIR] [-n N] [-r REPS] [-o audit|write|fstat] [-p CPU,CPU]
 *
 * -o runs only that loop (for perf stat of one of them).
 * -p hands every line over between two threads pinned to those CPUs
 * (0,0: one CPU; 0,1: two), each waiting for its turn, as the daemon's FUSE
 * workers take turns: what a line costs on a thread that did other work
 * between lines, against the same hand-off for a bare write(2) and for the
 * statx(2) the audit makes before each line.  Prints "handoff cpus=A,B
 * audit_us=... write_us=... statx_us=...".
 * DIR defaults to /tmp; use the file system the audit log will live on.
 * Times are this thread's CPU time (CLOCK_THREAD_CPUTIME_ID), kernel time
 * of the system calls included: on a shared, loaded machine wall time
 * mostly measures the wait for a CPU.
 * Prints "audit_us=... write_us=... fstat_us=... ratio=... line_bytes=...".
 */
#include "audit.h"
#include "log.h"
#include "metrics.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* -p: two threads take turns, one operation per turn. */
enum handoff_op { HANDOFF_AUDIT, HANDOFF_WRITE, HANDOFF_STATX };

struct handoff {
	enum handoff_op op;
	long n;
	int cpu[2];
	atomic_int turn;
	double cost[2];       /* thread CPU us inside the operation */
	int failed;
	struct audit *a;
	const struct audit_record *r;
	int fd;
	const char *line;
	size_t len;
};

struct handoff_thread {
	struct handoff *h;
	int me;
};

static void *handoff_run(void *arg)
{
	struct handoff_thread *t = arg;
	struct handoff *h = t->h;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(h->cpu[t->me], &set);
	if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set) != 0)
		h->failed = 1;
	for (long i = t->me; i < h->n; i += 2) {
		while (atomic_load(&h->turn) != t->me)
			sched_yield();
		double t0 = now_us();
		struct statx sx;
		if (h->op == HANDOFF_AUDIT)
			h->failed |= audit_write(h->a, h->r) != 0;
		else if (h->op == HANDOFF_WRITE)
			h->failed |= write(h->fd, h->line, h->len) != (ssize_t)h->len;
		else
			h->failed |= statx(h->fd, "", AT_EMPTY_PATH,
			                   STATX_TYPE | STATX_NLINK | STATX_INO, &sx) != 0;
		h->cost[t->me] += now_us() - t0;
		atomic_store(&h->turn, 1 - t->me);
	}
	return NULL;
}

/* Mean thread CPU us per operation, n operations handed over in turn. */
static double handoff_us(struct handoff *h, enum handoff_op op)
{
	pthread_t th[2];
	struct handoff_thread ts[2] = { { h, 0 }, { h, 1 } };
	h->op = op;
	h->cost[0] = h->cost[1] = 0;
	atomic_store(&h->turn, 0);
	for (int i = 0; i < 2; i++)
		if (pthread_create(&th[i], NULL, handoff_run, &ts[i]) != 0)
			return -1;
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	return (h->cost[0] + h->cost[1]) / (double)h->n;
}

/* The three loops of one run, interleaved, medians of reps. */
static int interleaved(struct audit *a, const struct audit_record *r, int fd, const char *line,
                       size_t line_len, long n, int reps, const char *only)
{
	struct stat st;
	double *au = calloc((size_t)reps, sizeof(double));
	double *wu = calloc((size_t)reps, sizeof(double));
	double *fu = calloc((size_t)reps, sizeof(double));
	if (!au || !wu || !fu)
		return 1;
	int failed = 0;
	for (int k = 0; k < reps; k++) {
		bool all = !*only;
		double t0 = now_us();
		for (long i = 0; (all || !strcmp(only, "audit")) && i < n; i++)
			failed |= audit_write(a, r) != 0;
		double t1 = now_us();
		for (long i = 0; (all || !strcmp(only, "write")) && i < n; i++)
			failed |= write(fd, line, line_len) != (ssize_t)line_len;
		double t2 = now_us();
		for (long i = 0; (all || !strcmp(only, "fstat")) && i < n; i++)
			failed |= fstat(fd, &st) != 0;
		double t3 = now_us();
		au[k] = (t1 - t0) / (double)n;
		wu[k] = (t2 - t1) / (double)n;
		fu[k] = (t3 - t2) / (double)n;
		/* keep the files small: the cost must not depend on the run */
		if (ftruncate(fd, 0) < 0)
			failed = 1;
	}
	qsort(au, (size_t)reps, sizeof(double), cmp);
	qsort(wu, (size_t)reps, sizeof(double), cmp);
	qsort(fu, (size_t)reps, sizeof(double), cmp);
	double am = au[reps / 2], wm = wu[reps / 2], fm = fu[reps / 2];
	printf("audit_us=%.3f write_us=%.3f fstat_us=%.3f ratio=%.3f line_bytes=%zu\n",
	       am, wm, fm, wm > 0 ? am / wm : 0, line_len);
	free(au);
	free(wu);
	free(fu);
	return failed;
}

int main(int argc, char **argv)
{
	const char *dir = "/tmp";
	long n = 20000;
	int reps = 7, opt;
	const char *only = "";
	int cpus[2] = { -1, -1 };
	while ((opt = getopt(argc, argv, "d:n:r:o:p:")) != -1) {
		if (opt == 'o')
			only = optarg;
		else if (opt == 'p') {
			if (sscanf(optarg, "%d,%d", &cpus[0], &cpus[1]) != 2 || cpus[0] < 0 || cpus[1] < 0)
				goto usage;
		}
		else if (opt == 'd')
			dir = optarg;
		else if (opt == 'n')
			n = strtol(optarg, NULL, 10);
		else if (opt == 'r')
			reps = atoi(optarg);
		else
			goto usage;
	}
	if (n < 1 || reps < 1 || reps > 99)
		goto usage;
	char tmpl[512], alog[600], blog[600], err[256];
	snprintf(tmpl, sizeof(tmpl), "%s/audit-line-XXXXXX", dir);
	if (!mkdtemp(tmpl)) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(alog, sizeof(alog), "%s/audit.log", tmpl);
	snprintf(blog, sizeof(blog), "%s/bare.log", tmpl);
	struct audit *a = NULL;
	if (audit_open(alog, AUDIT_FAILURE_DENY, &a, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	int fd = open(blog, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		perror("open");
		return 1;
	}
	struct audit_record r = {
		.op = KEY_OP_GET, .network = "ethereum-mainnet", .storage_type = "vault",
		.status = true, .cached = true, .uid = 1000, .gid = 1000, .pid = 123456,
		.process = "omikuji",
	};
	/* The bare line: as long as an audit line of this record. */
	audit_write(a, &r);
	struct stat st;
	if (stat(alog, &st) < 0)
		return 1;
	size_t line_len = (size_t)st.st_size;
	char *line = malloc(line_len);
	if (!line)
		return 1;
	memset(line, 'x', line_len);
	line[line_len - 1] = '\n';

	int failed = 0;
	if (cpus[0] >= 0) {
		struct handoff h = { .n = n, .cpu = { cpus[0], cpus[1] }, .a = a, .r = &r, .fd = fd,
		                     .line = line, .len = line_len };
		double hu[3][99];
		for (int k = 0; k < reps; k++) {
			hu[0][k] = handoff_us(&h, HANDOFF_AUDIT);
			hu[1][k] = handoff_us(&h, HANDOFF_WRITE);
			hu[2][k] = handoff_us(&h, HANDOFF_STATX);
			if (ftruncate(fd, 0) < 0)
				h.failed = 1;
		}
		for (int i = 0; i < 3; i++)
			qsort(hu[i], (size_t)reps, sizeof(double), cmp);
		printf("handoff cpus=%d,%d audit_us=%.3f write_us=%.3f statx_us=%.3f line_bytes=%zu\n",
		       cpus[0], cpus[1], hu[0][reps / 2], hu[1][reps / 2], hu[2][reps / 2], line_len);
		failed = h.failed;
	} else {
		failed = interleaved(a, &r, fd, line, line_len, n, reps, only);
	}
	audit_close(a);
	close(fd);
	unlink(alog);
	unlink(blog);
	rmdir(tmpl);
	free(line);
	return failed;
usage:
	fprintf(stderr, "usage: audit_line [-d DIR] [-n N] [-r REPS] [-o audit|write|fstat] "
	        "[-p CPU,CPU]\n");
	return 2;
}
