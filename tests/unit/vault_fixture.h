/* vault_fixture.h - start and drive tests/servers/vault_server.py from
 * criterion tests: spawn with a random root token and AppRole credentials,
 * wait for its port file, talk to its /_test/ control API, stop it by pid. */
#ifndef OMIKUJI_VAULT_FIXTURE_H
#define OMIKUJI_VAULT_FIXTURE_H

#include <stdbool.h>
#include <sys/types.h>
#include <jansson.h>
#include "backend.h"
#include "config.h"

struct vsrv {
	pid_t pid;
	int port;
	bool tls;
	char dir[64];            /* mkdtemp: port file, server log, certificates */
	char ca_cert[128];       /* dir/ca.pem when tls */
	char root_token[48];     /* random per server */
	char role_id[48];
	char secret_id[48];
	char url[96];            /* http(s)://127.0.0.1:PORT */
};

/* Random lower-case hex, 2*nbytes characters plus NUL. */
void vsrv_random_hex(char *out, size_t nbytes);

/* Make dir and, with tls, a self-signed certificate for 127.0.0.1 with
 * `openssl req`.  Returns false (and the test should skip) when openssl is
 * not installed. */
bool vsrv_prepare(struct vsrv *s, bool tls);

/* Start the server (after vsrv_prepare); extra arguments NULL-terminated
 * (may be NULL).  Asserts when it does not come up within 15 s. */
void vsrv_start(struct vsrv *s, const char *const *extra);

/* SIGTERM the server, reap it, remove dir. */
void vsrv_stop(struct vsrv *s);

/* POST a control request (path like "/_test/fault"); returns the status. */
long vsrv_control(struct vsrv *s, const char *path, const char *json);

/* GET /_test/stats, the number at `name` ("requests", "logins",
 * "connections") or, with route set, by_route[route] (0 when absent). */
long vsrv_stat(struct vsrv *s, const char *name, const char *route);

/* Raw GET of a Vault path with the root token; caller json_decref()s. */
json_t *vsrv_get_json(struct vsrv *s, const char *path, long *status);

/* A vault config pointing at s with the root token; strings borrowed from s
 * (cfg->vault.urls owned: free with vsrv_config_free). */
void vsrv_config(struct vsrv *s, struct config_backend *cfg);
void vsrv_config_free(struct config_backend *cfg);

/* A port on 127.0.0.1 that nobody listens on. */
int vsrv_closed_port(void);

#endif
