/* metrics_promtool.c - runs the real `promtool check metrics` over a
 * rendering made after varied traffic (every family populated, odd network
 * names, a large freshness table).  Exits 77 (meson: skipped) when promtool
 * is not installed.  `metrics_promtool --print` only prints the rendering.
 * Its own main() takes precedence over criterion's. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "metrics.h"

static void record_traffic(void)
{
	static const char *anomalies[] = { "burst", "off_hours", "auth_failures", "rate_limited" };
	char net[64];

	metrics_init();
	metrics_backend_register("vault", true);
	metrics_backend_register("aws", true);
	metrics_backend_register("file", false);
	metrics_backend_register("env", false);
	struct metrics_backend *all[] = {
		metrics_backend_register("vault", true), metrics_backend_register("aws", true),
		metrics_backend_register("file", false), metrics_backend_register("env", false),
	};
	for (int i = 0; i < 500; i++) {
		struct metrics_backend *b = all[i % 4];
		metrics_observe_op(b, (enum key_op)(i % KEY_OP_COUNT), i % 7 != 0, 0.00001 * (i * i % 9973));
	}
	metrics_observe_op(metrics_backend_register("vault", true), KEY_OP_GET, false, 30.0);
	metrics_cache_hit(metrics_backend_register("vault", true));
	metrics_cache_stale_hit(metrics_backend_register("vault", true));
	metrics_cache_miss(metrics_backend_register("aws", true));
	metrics_cache_size(metrics_backend_register("vault", true), 12);
	metrics_backend_up(metrics_backend_register("vault", true), true);
	metrics_backend_up(metrics_backend_register("aws", true), false);
	metrics_auth_failure(metrics_backend_register("aws", true));
	for (int op = 0; op < KEY_OP_COUNT; op++)
		metrics_access_denied((enum key_op)op);
	for (int k = 0; k < 4; k++)
		metrics_anomaly(anomalies[k]);
	metrics_audit_write_error();
	metrics_last_refresh("we\"ird\\net\nwork", 1767225600.123456);
	metrics_last_refresh("caf\xc3\xa9\xff", 1767225600);
	for (int i = 0; i < 1000; i++) {
		snprintf(net, sizeof(net), "network-%d", i);
		metrics_last_refresh(net, 1767225600.0 + i / 3.0);
	}
}

int main(int argc, char **argv)
{
	struct strbuf out = STRBUF_INIT;
	char path[] = "/tmp/keyfs-metrics-XXXXXX";
	int rc;

	record_traffic();
	rc = metrics_render(&out);
	if (rc != 0) {
		fprintf(stderr, "metrics_render: %s\n", strerror(-rc));
		return 1;
	}
	if (argc > 1 && strcmp(argv[1], "--print") == 0) {
		fwrite(out.buf, 1, out.len, stdout);
		strbuf_reset(&out);
		return 0;
	}
	if (system("command -v promtool >/dev/null 2>&1") != 0) {
		printf("SKIP: promtool is not installed (Debian package: prometheus)\n");
		strbuf_reset(&out);
		return 77;
	}

	int fd = mkstemp(path);
	if (fd < 0) {
		perror("mkstemp");
		return 1;
	}
	FILE *f = fdopen(fd, "w");
	if (!f || fwrite(out.buf, 1, out.len, f) != out.len || fclose(f) != 0) {
		perror(path);
		unlink(path);
		return 1;
	}
	strbuf_reset(&out);

	char cmd[128];
	snprintf(cmd, sizeof(cmd), "promtool check metrics < %s 2>&1", path);
	int status = system(cmd);
	unlink(path);
	if (status == -1 || !WIFEXITED(status)) {
		fprintf(stderr, "could not run promtool\n");
		return 1;
	}
	if (WEXITSTATUS(status) != 0) {
		fprintf(stderr, "promtool check metrics failed (exit %d)\n", WEXITSTATUS(status));
		return 1;
	}
	printf("promtool check metrics: OK\n");
	return 0;
}
