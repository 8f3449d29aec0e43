/* vault_live.c - the Vault backend and HTTP layer against the Vault test
 * server (tests/servers/vault_server.py): KV round trips, AppRole login and
 * re-login, namespaces, 403 handling, bounded retries, timeouts, fail-over
 * and fail-back, connection reuse, TLS, renewal with an injected clock and
 * a single re-login under concurrency.  Exits 77 when /usr/bin/python3 is
 * missing. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "backend.h"
#include "clock.h"
#include "config.h"
#include "vault_fixture.h"
#include "vault_internal.h"
#include "backend_test_open.h"

static struct vsrv srv, srv2;
static struct config_backend cfg;
static struct backend *be;

static void setup_plain(void)
{
	vsrv_prepare(&srv, false);
	vsrv_start(&srv, NULL);
	vsrv_config(&srv, &cfg);
}

static void teardown(void)
{
	if (be)
		vault_backend_ops.close(be);
	be = NULL;
	vsrv_config_free(&cfg);
	vsrv_stop(&srv);
	vsrv_stop(&srv2);
}

static void open_backend(void)
{
	struct backend_err e = { 0 };
	cr_assert_eq(backend_test_open(&cfg, &be, &e), 0, "open: %s", e.msg);
}

static struct secret *new_key(void)
{
	char hex[65];
	vsrv_random_hex(hex, 32);
	return secret_from(hex, 64);
}

static int get(const char *net, struct secret **out, struct backend_err *e)
{
	memset(e, 0, sizeof(*e));
	return vault_backend_ops.get(be, net, out, 0, e);
}

static int store(const char *net, const struct secret *k)
{
	struct backend_err e = { 0 };
	int rc = vault_backend_ops.store(be, net, k, 0, &e);
	cr_expect_eq(rc, 0, "store %s: %s", net, e.msg);
	return rc;
}

static void expect_key(const char *net, const struct secret *want)
{
	struct backend_err e;
	struct secret *got = NULL;
	cr_assert_eq(get(net, &got, &e), 0, "get %s: %s", net, e.msg);
	cr_expect(secret_equal(got, want), "the stored key comes back for %s", net);
	secret_free(got);
}

/* ---- KV round trip ------------------------------------------------------------- */

Test(vault_live, roundtrip, .init = setup_plain, .fini = teardown)
{
	open_backend();
	struct secret *k1 = new_key(), *k2 = new_key(), *k3 = new_key();
	store("eth-mainnet", k1);
	store("polygon.main_1", k2);
	expect_key("eth-mainnet", k1);
	expect_key("polygon.main_1", k2);
	store("eth-mainnet", k3);   /* replace */
	expect_key("eth-mainnet", k3);

	/* What was written, read raw: Omikuji's layout. */
	long st;
	json_t *j = vsrv_get_json(&srv, "/v1/secret/data/omikuji/keys/eth-mainnet", &st);
	cr_assert_eq(st, 200);
	json_t *d = json_object_get(json_object_get(j, "data"), "data");
	cr_expect_str_eq(json_string_value(json_object_get(d, "network")), "eth-mainnet");
	const char *by = json_string_value(json_object_get(d, "created_by"));
	cr_expect(by && !strncmp(by, "omikuji-keyfs@", 14), "created_by");
	const char *at = json_string_value(json_object_get(d, "created_at"));
	cr_expect(at && strlen(at) >= 20 && at[4] == '-' && at[10] == 'T' && at[strlen(at) - 1] == 'Z',
	          "created_at is RFC 3339 UTC");
	cr_expect_eq(json_integer_value(json_object_get(json_object_get(json_object_get(j, "data"),
	             "metadata"), "version")), 2, "a replace adds a version");
	json_decref(j);

	/* A key in a sub-folder shows up as "sub/" in the list: skipped. */
	struct config_backend sub = cfg;
	sub.vault.path_prefix = "omikuji/keys/sub";
	struct backend *bsub = NULL;
	struct backend_err e = { 0 };
	cr_assert_eq(backend_test_open(&sub, &bsub, &e), 0);
	cr_expect_eq(vault_backend_ops.store(bsub, "deep", k1, 0, &e), 0, "%s", e.msg);
	vault_backend_ops.close(bsub);

	struct strlist l = STRLIST_INIT;
	cr_assert_eq(vault_backend_ops.list(be, &l, 0, &e), 0, "%s", e.msg);
	cr_expect_eq(l.n, 2);
	cr_expect(strlist_contains(&l, "eth-mainnet"));
	cr_expect(strlist_contains(&l, "polygon.main_1"));
	strlist_clear(&l);

	cr_expect_eq(vault_backend_ops.remove(be, "eth-mainnet", 0, &e), 0, "%s", e.msg);
	struct secret *gone = NULL;
	cr_expect_eq(get("eth-mainnet", &gone, &e), -ENOENT, "soft-deleted latest version");
	cr_expect_null(gone);
	cr_expect_eq(vault_backend_ops.remove(be, "eth-mainnet", 0, &e), -ENOENT, "removed twice");
	cr_expect_eq(vault_backend_ops.remove(be, "never-stored", 0, &e), -ENOENT);
	cr_expect_eq(get("never-stored", &gone, &e), -ENOENT);
	expect_key("polygon.main_1", k2);
	secret_free(k1); secret_free(k2); secret_free(k3);
}

Test(vault_live, empty_list_and_custom_layout, .init = setup_plain, .fini = teardown)
{
	cfg.vault.mount_path = "secret/";
	cfg.vault.path_prefix = "/team a//keys/";
	open_backend();
	struct strlist l = STRLIST_INIT;
	struct backend_err e = { 0 };
	cr_expect_eq(vault_backend_ops.list(be, &l, 0, &e), 0, "404 is an empty list: %s", e.msg);
	cr_expect_eq(l.n, 0);
	struct secret *k = new_key();
	store("bsc", k);
	expect_key("bsc", k);
	long st;
	json_t *j = vsrv_get_json(&srv, "/v1/secret/data/team%20a/keys/bsc", &st);
	cr_expect_eq(st, 200, "segments escaped one by one, '/' kept");
	json_decref(j);
	cr_expect_eq(vault_backend_ops.list(be, &l, 0, &e), 0);
	cr_expect(l.n == 1 && !strcmp(l.items[0], "bsc"));
	strlist_clear(&l);
	secret_free(k);
}

/* ---- auth ------------------------------------------------------------------------------ */

static void use_approle(void)
{
	cfg.vault.auth_method = "approle";
	cfg.vault.token = NULL;
	cfg.vault.role_id = srv.role_id;
	cfg.vault.secret_id = srv.secret_id;
}

Test(vault_live, approle_relogin_after_expiry, .init = setup_plain, .fini = teardown)
{
	use_approle();
	open_backend();
	cr_expect_eq(vsrv_stat(&srv, "logins", NULL), 1, "logged in at open");
	struct secret *k = new_key();
	store("eth", k);
	expect_key("eth", k);
	cr_expect_eq(vsrv_stat(&srv, "logins", NULL), 1);

	struct secret *tok = vault_backend_token_copy(be);
	cr_assert_not_null(tok);
	char body[256];
	snprintf(body, sizeof(body), "{\"token\":\"%s\"}", (const char *)tok->data);
	cr_assert_eq(vsrv_control(&srv, "/_test/expire_token", body), 200);
	secret_wipe(body, sizeof(body));

	expect_key("eth", k);   /* 403, then one re-login, then success */
	cr_expect_eq(vsrv_stat(&srv, "logins", NULL), 2);
	struct secret *tok2 = vault_backend_token_copy(be);
	cr_expect_not(secret_equal(tok, tok2), "a new token");
	secret_free(tok); secret_free(tok2); secret_free(k);

	struct backend_health h = { 0 };
	vault_backend_ops.maintain(be);
	vault_backend_ops.health(be, &h);
	cr_expect(h.up, "%s", h.error);
	cr_expect(strstr(h.detail, "auth_method: approle\n"), "%s", h.detail);
	cr_expect(strstr(h.detail, "vault_status: active\n"), "%s", h.detail);
	cr_expect_null(strstr(h.detail, "token_expires: never"), "approle tokens expire");
	cr_expect_null(strstr(h.detail, "token_expires: unknown"));
}

Test(vault_live, approle_bad_secret_is_eacces, .init = setup_plain, .fini = teardown)
{
	use_approle();
	char wrong[40];
	vsrv_random_hex(wrong, 16);
	cfg.vault.secret_id = wrong;
	open_backend();   /* login fails, open does not */
	struct secret *k = NULL;
	struct backend_err e;
	cr_expect_eq(get("eth", &k, &e), -EACCES);
	cr_expect(e.auth_failure);
	cr_expect_null(strstr(e.msg, wrong), "the secret_id is not in the reason");
	cr_expect_null(strstr(e.msg, srv.role_id), "the role_id is not in the reason");
}

Test(vault_live, approle_login_retried_on_first_use, .init = setup_plain, .fini = teardown)
{
	use_approle();
	cr_assert_eq(vsrv_control(&srv, "/_test/fault",
	             "{\"mode\":\"500\",\"count\":-1,\"path_prefix\":\"/v1/auth/\"}"), 200);
	open_backend();
	cr_expect_null(vault_backend_token_copy(be), "login failed at open");
	cr_assert_eq(vsrv_control(&srv, "/_test/fault", "{\"mode\":\"none\"}"), 200);
	struct secret *k = new_key();
	store("eth", k);
	expect_key("eth", k);
	cr_expect_eq(vsrv_stat(&srv, "logins", NULL), 1);
	secret_free(k);
}

Test(vault_live, secret_id_file, .init = setup_plain, .fini = teardown)
{
	use_approle();
	cfg.vault.secret_id = NULL;
	char path[160];
	snprintf(path, sizeof(path), "%s/secret_id", srv.dir);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	fprintf(f, "%s\n", srv.secret_id);
	fclose(f);
	cfg.vault.secret_id_file = path;
	open_backend();
	unlink(path);
	cr_expect_eq(vsrv_stat(&srv, "logins", NULL), 1);
	struct secret *k = new_key();
	store("eth", k);
	expect_key("eth", k);
	secret_free(k);
}

Test(vault_live, wrong_token_is_eacces_with_auth_failure, .init = setup_plain, .fini = teardown)
{
	char wrong[40];
	vsrv_random_hex(wrong, 16);
	cfg.vault.token = wrong;
	open_backend();
	struct secret *k = NULL;
	struct backend_err e;
	cr_expect_eq(get("eth", &k, &e), -EACCES);
	cr_expect(e.auth_failure);
	cr_expect_null(strstr(e.msg, wrong));
	struct secret *key = new_key();
	memset(&e, 0, sizeof(e));
	cr_expect_eq(vault_backend_ops.store(be, "eth", key, 0, &e), -EACCES);
	cr_expect(e.auth_failure);
	struct backend_health h = { 0 };
	vault_backend_ops.maintain(be);
	vault_backend_ops.health(be, &h);
	cr_expect_not(h.up, "a rejected token makes the backend unusable");
	cr_expect_null(strstr(h.detail, wrong));
	secret_free(key);
}

Test(vault_live, token_file_reread_on_403, .init = setup_plain, .fini = teardown)
{
	char path[160], wrong[40];
	vsrv_random_hex(wrong, 16);
	snprintf(path, sizeof(path), "%s/token", srv.dir);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	fprintf(f, "%s\n", wrong);
	fclose(f);
	cfg.vault.token = NULL;
	cfg.vault.token_file = path;
	open_backend();
	struct secret *k = NULL;
	struct backend_err e;
	cr_expect_eq(get("eth", &k, &e), -EACCES, "the file's token is wrong");
	/* The token is rotated in the file: the next 403 re-reads it. */
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fprintf(f, "%s\n", srv.root_token);
	fclose(f);
	struct secret *key = new_key();
	store("eth", key);
	expect_key("eth", key);
	unlink(path);
	secret_free(key);
}

Test(vault_live, namespace, .fini = teardown)
{
	vsrv_prepare(&srv, false);
	const char *args[] = { "--namespace", "team1", NULL };
	vsrv_start(&srv, args);
	vsrv_config(&srv, &cfg);
	cfg.vault.namespace = "team1";
	open_backend();
	struct secret *k = new_key();
	store("eth", k);
	expect_key("eth", k);
	vault_backend_ops.close(be);
	be = NULL;

	cfg.vault.namespace = NULL;
	open_backend();
	struct secret *got = NULL;
	struct backend_err e;
	/* Real Vault answers 404 "no handler for route" (no such mount in the
	 * root namespace): a configuration error, not a missing key. */
	cr_expect_eq(get("eth", &got, &e), -EIO, "without the namespace header");
	cr_expect_not_null(strstr(e.msg, "no such KV mount"), "%s", e.msg);
	cr_expect(!e.auth_failure);
	secret_free(k);
}

/* ---- retries, timeouts, fail-over ------------------------------------------------------- */

Test(vault_live, fault_500_forever_bounded_retries, .init = setup_plain, .fini = teardown)
{
	cfg.vault.max_retries = 3;
	open_backend();
	cr_assert_eq(vsrv_control(&srv, "/_test/fault",
	             "{\"mode\":\"500\",\"count\":-1,\"path_prefix\":\"/v1/secret/\"}"), 200);
	cr_assert_eq(vsrv_control(&srv, "/_test/reset_stats", NULL), 200);
	struct secret *k = NULL;
	struct backend_err e;
	cr_expect_eq(get("eth", &k, &e), -EIO);
	cr_expect_not(e.auth_failure);
	cr_expect(e.msg[0]);
	cr_expect_eq(vsrv_stat(&srv, "requests", NULL), 1 + 3, "exactly 1 + max_retries attempts");
}

Test(vault_live, fault_500_once_recovers, .init = setup_plain, .fini = teardown)
{
	open_backend();
	struct secret *key = new_key();
	store("eth", key);
	cr_assert_eq(vsrv_control(&srv, "/_test/fault",
	             "{\"mode\":\"500\",\"count\":1,\"path_prefix\":\"/v1/secret/\"}"), 200);
	cr_assert_eq(vsrv_control(&srv, "/_test/reset_stats", NULL), 200);
	expect_key("eth", key);
	cr_expect_eq(vsrv_stat(&srv, "requests", NULL), 2, "one failure, one retry");
	secret_free(key);
}

Test(vault_live, sealed_is_eio, .init = setup_plain, .fini = teardown)
{
	cfg.vault.max_retries = 1;
	open_backend();
	cr_assert_eq(vsrv_control(&srv, "/_test/fault", "{\"mode\":\"sealed\"}"), 200);
	struct secret *k = NULL;
	struct backend_err e;
	cr_expect_eq(get("eth", &k, &e), -EIO);
	cr_expect(strstr(e.msg, "503"), "%s", e.msg);
	struct backend_health h = { 0 };
	vault_backend_ops.maintain(be);
	vault_backend_ops.health(be, &h);
	cr_expect_not(h.up);
	cr_expect(strstr(h.detail, "vault_status: sealed\n"), "%s", h.detail);
}

Test(vault_live, hang_times_out, .init = setup_plain, .fini = teardown)
{
	cfg.vault.timeout_seconds = 1;
	open_backend();
	cr_assert_eq(vsrv_control(&srv, "/_test/fault",
	             "{\"mode\":\"hang\",\"count\":-1,\"delay\":30,\"path_prefix\":\"/v1/secret/\"}"), 200);
	struct secret *k = NULL;
	struct backend_err e;
	cr_expect_eq(get("eth", &k, &e), -ETIMEDOUT, "%s", e.msg);
	cr_expect_null(k);
	vsrv_control(&srv, "/_test/fault", "{\"mode\":\"none\"}");
}

Test(vault_live, caller_deadline_cuts_a_hung_call, .init = setup_plain, .fini = teardown)
{
	cfg.vault.timeout_seconds = 20;
	open_backend();
	cr_assert_eq(vsrv_control(&srv, "/_test/fault",
	             "{\"mode\":\"hang\",\"count\":-1,\"delay\":30,\"path_prefix\":\"/v1/secret/\"}"), 200);
	struct strlist l = STRLIST_INIT;
	struct backend_err e = { 0 };
	double t0 = clock_monotonic();
	cr_expect_eq(vault_backend_ops.list(be, &l, t0 + 0.5, &e), -ETIMEDOUT, "%s", e.msg);
	double took = clock_monotonic() - t0;
	cr_expect(took < 5.0, "the caller's 0.5 s deadline, not timeout_seconds 20 (took %.2f s)", took);
	cr_expect_eq(l.n, 0);
	vsrv_control(&srv, "/_test/fault", "{\"mode\":\"none\"}");
}

Test(vault_live, failover_when_first_url_dead, .init = setup_plain, .fini = teardown)
{
	char dead[64];
	snprintf(dead, sizeof(dead), "http://127.0.0.1:%d", vsrv_closed_port());
	strlist_clear(&cfg.vault.urls);
	strlist_add(&cfg.vault.urls, dead);
	strlist_add(&cfg.vault.urls, srv.url);
	cfg.vault.max_retries = 0;   /* fail-over alone must get there */
	open_backend();
	struct secret *key = new_key();
	store("eth", key);
	cr_expect_eq(vault_backend_url_index(be), 1, "moved to the second URL");
	expect_key("eth", key);
	struct backend_health h = { 0 };
	vault_backend_ops.maintain(be);
	vault_backend_ops.health(be, &h);
	cr_expect(h.up, "%s", h.error);
	char want[128];
	snprintf(want, sizeof(want), "address: %s\n", srv.url);
	cr_expect(strstr(h.detail, want), "%s", h.detail);
	cr_expect_eq(vault_backend_url_index(be), 1);
	secret_free(key);
}

Test(vault_live, failback_to_first_after_health, .init = setup_plain, .fini = teardown)
{
	/* Both servers accept the same token: give srv2 srv's root token (the
	 * later option wins). */
	vsrv_prepare(&srv2, false);
	const char *args[] = { "--root-token", srv.root_token, NULL };
	vsrv_start(&srv2, args);

	strlist_add(&cfg.vault.urls, srv2.url);
	open_backend();
	cr_expect_eq(vault_backend_url_index(be), 0);
	cr_assert_eq(vsrv_control(&srv, "/_test/fault", "{\"mode\":\"sealed\"}"), 200);
	struct secret *key = new_key();
	store("eth", key);   /* lands on srv2 */
	cr_expect_eq(vault_backend_url_index(be), 1, "sealed first node: fail-over");
	struct backend_health h = { 0 };
	vault_backend_ops.maintain(be);
	vault_backend_ops.health(be, &h);
	cr_expect(h.up);
	cr_expect_eq(vault_backend_url_index(be), 1, "first still sealed");
	cr_assert_eq(vsrv_control(&srv, "/_test/fault", "{\"mode\":\"none\"}"), 200);
	memset(&h, 0, sizeof(h));
	vault_backend_ops.maintain(be);
	vault_backend_ops.health(be, &h);
	cr_expect(h.up);
	cr_expect_eq(vault_backend_url_index(be), 0, "health moved back to the first URL");
	char want[128];
	snprintf(want, sizeof(want), "address: %s\n", srv.url);
	cr_expect(strstr(h.detail, want), "%s", h.detail);
	secret_free(key);
}

Test(vault_live, connection_reuse, .init = setup_plain, .fini = teardown)
{
	open_backend();
	struct secret *key = new_key();
	store("eth", key);
	cr_assert_eq(vsrv_control(&srv, "/_test/reset_stats", NULL), 200);
	for (int i = 0; i < 50; i++)
		expect_key("eth", key);
	cr_expect_eq(vsrv_stat(&srv, "requests", NULL), 50);
	long c = vsrv_stat(&srv, "connections", NULL);
	cr_expect(c >= 1 && c <= 2, "50 gets over %ld connections", c);
	secret_free(key);
}

Test(vault_live, tls_with_private_ca, .fini = teardown)
{
	if (!vsrv_prepare(&srv, true))
		cr_skip_test("openssl is not installed");
	vsrv_start(&srv, NULL);
	vsrv_config(&srv, &cfg);
	open_backend();
	struct secret *key = new_key();
	store("eth", key);
	expect_key("eth", key);
	vault_backend_ops.close(be);
	be = NULL;

	/* Without the CA the certificate is not trusted: verification is on. */
	cfg.vault.ca_cert = NULL;
	cfg.vault.max_retries = 0;
	open_backend();
	struct secret *k = NULL;
	struct backend_err e;
	cr_expect_eq(get("eth", &k, &e), -EIO, "%s", e.msg);
	cr_expect_null(k);
	secret_free(key);
}

/* ---- renewal and concurrency ------------------------------------------------------------ */

static double clock_offset;
static double shifted_clock(void)
{
	return clock_monotonic() + clock_offset;
}

Test(vault_live, renewal_at_two_thirds_of_ttl, .fini = teardown)
{
	vsrv_prepare(&srv, false);
	const char *args[] = { "--token-ttl", "60", NULL };
	vsrv_start(&srv, args);
	vsrv_config(&srv, &cfg);
	use_approle();
	open_backend();
	clock_offset = 0;
	vault_backend_set_clock(be, shifted_clock);
	const char *renew = "POST /v1/auth/token/renew-self";
	struct secret *key = new_key();
	store("eth", key);
	cr_expect_eq(vsrv_stat(&srv, NULL, renew), 0);
	clock_offset = 30;        /* half-way: not due */
	expect_key("eth", key);
	cr_expect_eq(vsrv_stat(&srv, NULL, renew), 0, "not due at 1/2 TTL");
	clock_offset = 41;        /* past 2/3 of 60 s */
	expect_key("eth", key);
	cr_expect_eq(vsrv_stat(&srv, NULL, renew), 1, "renewed once past 2/3 TTL");
	expect_key("eth", key);
	cr_expect_eq(vsrv_stat(&srv, NULL, renew), 1, "and not again right after");
	cr_expect_eq(vsrv_stat(&srv, "logins", NULL), 1, "renewal, not re-login");
	clock_offset = 41 + 61;   /* the renewed token ran out (locally) */
	expect_key("eth", key);
	cr_expect_eq(vsrv_stat(&srv, "logins", NULL), 2, "expired: logged in again");
	secret_free(key);
}

Test(vault_live, root_token_never_renewed, .init = setup_plain, .fini = teardown)
{
	open_backend();
	clock_offset = 1e7;
	vault_backend_set_clock(be, shifted_clock);
	struct secret *key = new_key();
	store("eth", key);
	expect_key("eth", key);
	cr_expect_eq(vsrv_stat(&srv, NULL, "POST /v1/auth/token/renew-self"), 0);
	struct backend_health h = { 0 };
	vault_backend_ops.maintain(be);
	vault_backend_ops.health(be, &h);
	cr_expect(h.up);
	cr_expect(strstr(h.detail, "token_expires: never\n"), "%s", h.detail);
	cr_expect(strstr(h.detail, "auth_method: token\n"), "%s", h.detail);
	cr_expect_null(strstr(h.detail, srv.root_token));
	secret_free(key);
}

struct worker {
	const struct secret *key;
	int failures;
};

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	for (int i = 0; i < 10; i++) {
		struct secret *got = NULL;
		struct backend_err e = { 0 };
		if (vault_backend_ops.get(be, "eth", &got, 0, &e) != 0 || !secret_equal(got, w->key))
			w->failures++;
		secret_free(got);
	}
	return NULL;
}

Test(vault_live, concurrent_callers_log_in_once, .init = setup_plain, .fini = teardown)
{
	use_approle();
	open_backend();
	struct secret *key = new_key();
	store("eth", key);
	struct secret *tok = vault_backend_token_copy(be);
	cr_assert_not_null(tok);
	char body[256];
	snprintf(body, sizeof(body), "{\"token\":\"%s\"}", (const char *)tok->data);
	cr_assert_eq(vsrv_control(&srv, "/_test/expire_token", body), 200);
	secret_free(tok);

	enum { N = 8 };
	pthread_t t[N];
	struct worker w[N];
	for (int i = 0; i < N; i++) {
		w[i] = (struct worker){ .key = key };
		cr_assert_eq(pthread_create(&t[i], NULL, worker_run, &w[i]), 0);
	}
	int failures = 0;
	for (int i = 0; i < N; i++) {
		pthread_join(t[i], NULL);
		failures += w[i].failures;
	}
	cr_expect_eq(failures, 0);
	cr_expect_eq(vsrv_stat(&srv, "logins", NULL), 2, "one login at open, one re-login");
	secret_free(key);
}

int main(int argc, char *argv[])
{
	if (access("/usr/bin/python3", X_OK) != 0) {
		fprintf(stderr, "SKIP: /usr/bin/python3 is needed to run the Vault test server\n");
		return 77;
	}
	struct criterion_test_set *tests = criterion_initialize();
	int result = 0;
	if (criterion_handle_args(argc, argv, true))
		result = !criterion_run_all_tests(tests);
	criterion_finalize(tests);
	return result;
}
