/* vault_fixture.c - runs tests/servers/vault_server.py for the criterion
 * tests of the Vault backend (see vault_fixture.h). */
#include "vault_fixture.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <curl/curl.h>

#ifndef TESTS_SOURCE_DIR
#define TESTS_SOURCE_DIR "tests"
#endif

void vsrv_random_hex(char *out, size_t nbytes)
{
	unsigned char b[64];
	cr_assert(nbytes <= sizeof(b));
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	cr_assert(fd >= 0);
	cr_assert_eq(read(fd, b, nbytes), (ssize_t)nbytes);
	close(fd);
	for (size_t i = 0; i < nbytes; i++)
		sprintf(out + 2 * i, "%02x", b[i]);
}

static int vsrv_run(const char *const argv[])
{
	pid_t pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);
		if (null >= 0) {
			dup2(null, 1);
			dup2(null, 2);
		}
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	int st = 0;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

bool vsrv_prepare(struct vsrv *s, bool tls)
{
	memset(s, 0, sizeof(*s));
	snprintf(s->dir, sizeof(s->dir), "/tmp/keyfs-vault-XXXXXX");
	cr_assert_not_null(mkdtemp(s->dir));
	vsrv_random_hex(s->root_token, 16);
	vsrv_random_hex(s->role_id, 8);
	vsrv_random_hex(s->secret_id, 16);
	s->tls = tls;
	if (!tls)
		return true;
	if (access("/usr/bin/openssl", X_OK) != 0)
		return false;
	char key[128], subj[] = "/CN=127.0.0.1";
	snprintf(s->ca_cert, sizeof(s->ca_cert), "%s/ca.pem", s->dir);
	snprintf(key, sizeof(key), "%s/key.pem", s->dir);
	/* A self-signed leaf that is its own CA: enough for curl's checks. */
	const char *const argv[] = {
		"/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
		"-keyout", key, "-out", s->ca_cert, "-days", "2", "-subj", subj,
		"-addext", "subjectAltName=IP:127.0.0.1",
		"-addext", "basicConstraints=critical,CA:TRUE", NULL,
	};
	cr_assert_eq(vsrv_run(argv), 0, "openssl req failed");
	return true;
}

void vsrv_start(struct vsrv *s, const char *const *extra)
{
	char server[512], port_file[128], log_file[128], approle[128], key[128];
	const char *src = getenv("TESTS_SOURCE_DIR");
	snprintf(server, sizeof(server), "%s/servers/vault_server.py", src ? src : TESTS_SOURCE_DIR);
	snprintf(port_file, sizeof(port_file), "%s/port", s->dir);
	snprintf(log_file, sizeof(log_file), "%s/server.log", s->dir);
	snprintf(approle, sizeof(approle), "%s:%s", s->role_id, s->secret_id);
	snprintf(key, sizeof(key), "%s/key.pem", s->dir);
	cr_assert_eq(access(server, R_OK), 0, "missing %s", server);

	const char *argv[40];
	size_t n = 0;
	argv[n++] = "/usr/bin/python3";
	argv[n++] = server;
	argv[n++] = "--port-file";
	argv[n++] = port_file;
	argv[n++] = "--root-token";
	argv[n++] = s->root_token;
	argv[n++] = "--approle";
	argv[n++] = approle;
	if (s->tls) {
		argv[n++] = "--tls-cert";
		argv[n++] = s->ca_cert;
		argv[n++] = "--tls-key";
		argv[n++] = key;
	}
	for (size_t i = 0; extra && extra[i] && n < 38; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;

	pid_t parent = getpid();
	s->pid = fork();
	cr_assert(s->pid >= 0);
	if (s->pid == 0) {
		/* Never outlive the test process, even if it crashes. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(1);
		int fd = open(log_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd >= 0)
			dup2(fd, 2);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	for (int i = 0; i < 1500; i++) {
		FILE *f = fopen(port_file, "r");
		if (f) {
			int ok = fscanf(f, "%d", &s->port) == 1;
			fclose(f);
			if (ok && s->port > 0)
				break;
		}
		int st;
		if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
			s->pid = 0;
			cr_assert_fail("vault_server.py exited early (see %s)", log_file);
		}
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	cr_assert(s->port > 0, "vault_server.py did not come up");
	snprintf(s->url, sizeof(s->url), "%s://127.0.0.1:%d", s->tls ? "https" : "http", s->port);
}

void vsrv_stop(struct vsrv *s)
{
	if (s->pid > 0) {
		kill(s->pid, SIGTERM);
		int st;
		for (int i = 0; i < 300; i++) {
			if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
				s->pid = 0;
				break;
			}
			struct timespec ts = { 0, 10 * 1000 * 1000 };
			nanosleep(&ts, NULL);
		}
		if (s->pid > 0) {
			kill(s->pid, SIGKILL);
			waitpid(s->pid, &st, 0);
			s->pid = 0;
		}
	}
	if (s->dir[0]) {
		const char *names[] = { "port", "port.tmp", "server.log", "ca.pem", "key.pem" };
		char p[160];
		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
			snprintf(p, sizeof(p), "%s/%s", s->dir, names[i]);
			unlink(p);
		}
		rmdir(s->dir);
		s->dir[0] = 0;
	}
}

struct vsrv_buf {
	char *p;
	size_t n;
};

static size_t vsrv_write(char *p, size_t size, size_t n, void *ctx)
{
	struct vsrv_buf *b = ctx;
	size_t len = size * n;
	char *q = realloc(b->p, b->n + len + 1);
	if (!q)
		return 0;
	memcpy(q + b->n, p, len);
	b->p = q;
	b->n += len;
	b->p[b->n] = 0;
	return len;
}

static long vsrv_http(struct vsrv *s, const char *method, const char *path, const char *json,
                      const char *token, struct vsrv_buf *out)
{
	CURL *h = curl_easy_init();
	cr_assert_not_null(h);
	char url[512], hdr[128];
	snprintf(url, sizeof(url), "%s%s", s->url, path);
	struct curl_slist *hl = NULL;
	if (token) {
		snprintf(hdr, sizeof(hdr), "X-Vault-Token: %s", token);
		hl = curl_slist_append(hl, hdr);
	}
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
	curl_easy_setopt(h, CURLOPT_PROXY, "");
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, vsrv_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
	if (s->tls)
		curl_easy_setopt(h, CURLOPT_CAINFO, s->ca_cert);
	if (json)
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, json);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	CURLcode cc = curl_easy_perform(h);
	long status = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(hl);
	curl_easy_cleanup(h);
	cr_assert_eq(cc, CURLE_OK, "control request %s %s: %s", method, path, curl_easy_strerror(cc));
	return status;
}

long vsrv_control(struct vsrv *s, const char *path, const char *json)
{
	struct vsrv_buf b = { 0 };
	long st = vsrv_http(s, "POST", path, json ? json : "{}", NULL, &b);
	free(b.p);
	return st;
}

long vsrv_stat(struct vsrv *s, const char *name, const char *route)
{
	struct vsrv_buf b = { 0 };
	cr_assert_eq(vsrv_http(s, "GET", "/_test/stats", NULL, NULL, &b), 200);
	json_error_t e;
	json_t *j = json_loads(b.p ? b.p : "", 0, &e);
	free(b.p);
	cr_assert_not_null(j, "stats are JSON");
	json_t *v = route ? json_object_get(json_object_get(j, "by_route"), route)
	                  : json_object_get(j, name);
	long n = json_is_integer(v) ? (long)json_integer_value(v) : 0;
	if (!route)
		cr_assert(json_is_integer(v), "stats has %s", name);
	json_decref(j);
	return n;
}

json_t *vsrv_get_json(struct vsrv *s, const char *path, long *status)
{
	struct vsrv_buf b = { 0 };
	*status = vsrv_http(s, "GET", path, NULL, s->root_token, &b);
	json_error_t e;
	json_t *j = b.p ? json_loads(b.p, 0, &e) : NULL;
	free(b.p);
	return j;
}

void vsrv_config(struct vsrv *s, struct config_backend *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->type = backend_type_find("vault");
	cfg->name = (char *)"vault";
	strlist_add(&cfg->vault.urls, s->url);
	cfg->vault.mount_path = "secret";
	cfg->vault.path_prefix = "omikuji/keys";
	cfg->vault.auth_method = "token";
	cfg->vault.token = s->root_token;
	cfg->vault.timeout_seconds = 5;
	cfg->vault.max_retries = 3;
	if (s->tls)
		cfg->vault.ca_cert = s->ca_cert;
}

void vsrv_config_free(struct config_backend *cfg)
{
	strlist_clear(&cfg->vault.urls);
}

int vsrv_closed_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t l = sizeof(a);
	cr_assert(fd >= 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &l), 0);
	close(fd);
	return ntohs(a.sin_port);
}
