/* test_router.c - the backend type registry, the router (first match wins,
 * the default, the union listing hiding names listed by the wrong
 * instance) and the keyfs.backends config that feeds it. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "config.h"
#include "router.h"

/* --- registry ----------------------------------------------------------- */

Test(registry, one_row_per_type_found_by_name)
{
	static const char *const names[] = { "file", "env", "keyring", "vault", "aws-secrets" };
	for (size_t i = 0; i < 5; i++) {
		const struct backend_type *t = backend_type_find(names[i]);
		cr_assert_not_null(t, "%s", names[i]);
		cr_expect_str_eq(t->name, names[i]);
		cr_expect_eq(backend_type_at(i), t, "registry order is the config's message order");
	}
	cr_expect_null(backend_type_at(5));
	cr_expect_null(backend_type_find("aws"), "aws is the instance name, not a type");
	cr_expect_null(backend_type_find("s3"));
	cr_expect_null(backend_type_find(NULL));
	cr_expect_str_eq(backend_type_find("aws-secrets")->instance_name, "aws");
	cr_expect_str_eq(backend_type_find("aws-secrets")->section, "aws_secrets");
}

Test(registry, capability_flags)
{
	cr_expect(backend_type_find("vault")->flags & BACKEND_REMOTE);
	cr_expect(backend_type_find("keyring")->flags & BACKEND_SESSION_BUS);
	cr_expect(backend_type_find("env")->flags & BACKEND_READ_ONLY);
	cr_expect_not(backend_type_find("file")->flags & (BACKEND_REMOTE | BACKEND_READ_ONLY));
	cr_expect_not_null(backend_type_find("file")->ops);
	cr_expect_not_null(backend_type_find("vault")->ops);
}

Test(registry, open_names_the_instance_and_refuses_unbuilt_types)
{
	struct config_backend sec;
	memset(&sec, 0, sizeof(sec));
	sec.type = backend_type_find("env");
	sec.name = (char *)"staging-env";
	struct backend *b = NULL;
	struct backend_err err = { { 0 }, false };
	cr_assert_eq(backend_open(&sec, &b, &err), 0, "%s", err.msg);
	cr_expect_str_eq(b->name, "staging-env");
	cr_expect_eq(b->type, sec.type);
	cr_expect_eq(backend_start(b, &err), 0, "a type without start starts");
	b->ops->close(b);

	/* A row without ops: known to the config, not in this build. */
	const struct backend_type *t;
	for (size_t i = 0; (t = backend_type_at(i)); i++) {
		if (t->ops)
			continue;
		sec.type = t;
		cr_expect_eq(backend_open(&sec, &b, &err), -ENOTSUP);
		cr_expect(strstr(err.msg, "not supported by this build"), "%s", err.msg);
	}
}

/* --- router ------------------------------------------------------------- */

static struct strlist globs_of(const char *const *g)
{
	struct strlist l = STRLIST_INIT;
	for (; g && *g; g++)
		cr_assert_eq(strlist_add(&l, *g), 0);
	return l;
}

/* 0 = default (no globs), 1 = testnets, 2 = mainnets, 3 = catch-all. */
static struct strlist g_test, g_main, g_all;
static struct router *r;

static void router_setup(void)
{
	static const char *const t[] = { "*-testnet", "sepolia", NULL };
	static const char *const m[] = { "ethereum-mainnet", "polygon-*", "sepolia", NULL };
	static const char *const a[] = { "*", NULL };
	g_test = globs_of(t);
	g_main = globs_of(m);
	g_all = globs_of(a);
	const struct strlist *globs[] = { NULL, &g_test, &g_main };
	cr_assert_eq(router_new(globs, 3, 0, &r), 0);
}

static void router_teardown(void)
{
	router_free(r);
	strlist_clear(&g_test);
	strlist_clear(&g_main);
	strlist_clear(&g_all);
}

TestSuite(router, .init = router_setup, .fini = router_teardown);

Test(router, first_match_wins_else_default)
{
	cr_expect_eq(router_count(r), 3);
	cr_expect_eq(router_route(r, "goerli-testnet"), 1);
	cr_expect_eq(router_route(r, "sepolia"), 1, "listed by two instances: the first wins");
	cr_expect_eq(router_route(r, "ethereum-mainnet"), 2);
	cr_expect_eq(router_route(r, "polygon-zkevm"), 2);
	cr_expect_eq(router_route(r, "gnosis"), 0);
	cr_expect_eq(router_route(r, "testnet"), 0, "globs match whole names");
	cr_expect_eq(router_route(r, "sepolia2"), 0);
	/* Remembered answers are the same answers. */
	for (int i = 0; i < 3; i++) {
		cr_expect_eq(router_route(r, "sepolia"), 1);
		cr_expect_eq(router_route(r, "gnosis"), 0);
	}
}

Test(router, bracket_globs)
{
	static const char *const g[] = { "chain-[0-4]", "net-[!a]", NULL };
	struct strlist l = globs_of(g);
	const struct strlist *globs[] = { NULL, &l };
	struct router *rr;
	cr_assert_eq(router_new(globs, 2, 0, &rr), 0);
	cr_expect_eq(router_route(rr, "chain-3"), 1);
	cr_expect_eq(router_route(rr, "chain-7"), 0);
	cr_expect_eq(router_route(rr, "net-b"), 1);
	cr_expect_eq(router_route(rr, "net-a"), 0);
	router_free(rr);
	strlist_clear(&l);
}

Test(router, default_may_be_any_index)
{
	const struct strlist *globs[] = { &g_test, NULL };
	struct router *rr;
	cr_assert_eq(router_new(globs, 2, 1, &rr), 0);
	cr_expect_eq(router_route(rr, "sepolia"), 0);
	cr_expect_eq(router_route(rr, "gnosis"), 1);
	router_free(rr);
}

Test(router, many_names_past_the_memo_bound_still_route)
{
	char net[64];
	for (int i = 0; i < 20000; i++) {
		snprintf(net, sizeof(net), "n%d-testnet", i);
		cr_assert_eq(router_route(r, net), 1, "%s", net);
		snprintf(net, sizeof(net), "n%d", i);
		cr_assert_eq(router_route(r, net), 0, "%s", net);
	}
}

Test(router, union_hides_names_listed_by_the_wrong_instance)
{
	static const char *const l0[] = { "gnosis", "sepolia", "zeta", NULL };   /* sepolia: stale copy */
	static const char *const l1[] = { "sepolia", "goerli-testnet", "ethereum-mainnet", NULL };
	static const char *const l2[] = { "ethereum-mainnet", "polygon-pos", "gnosis", NULL };
	struct strlist a = globs_of(l0), b = globs_of(l1), c = globs_of(l2);
	const struct strlist *lists[] = { &a, &b, &c };
	struct strlist out = STRLIST_INIT;
	cr_assert_eq(router_union(r, lists, &out), 0);
	static const char *const want[] = { "ethereum-mainnet", "gnosis", "goerli-testnet",
	                                     "polygon-pos", "sepolia", "zeta" };
	cr_assert_eq(out.n, 6);
	for (size_t i = 0; i < 6; i++)
		cr_expect_str_eq(out.items[i], want[i]);
	strlist_clear(&out);

	/* An instance that could not list: its names are missing, nothing else. */
	const struct strlist *partial[] = { &a, NULL, &c };
	cr_assert_eq(router_union(r, partial, &out), 0);
	cr_expect_eq(out.n, 4);   /* ethereum-mainnet gnosis polygon-pos zeta */
	cr_expect_not(strlist_contains(&out, "sepolia"), "sepolia routes to the silent instance");
	strlist_clear(&out);
	strlist_clear(&a);
	strlist_clear(&b);
	strlist_clear(&c);
}

Test(router, no_globs_everything_to_the_default)
{
	const struct strlist *globs[] = { NULL };
	struct router *rr;
	cr_assert_eq(router_new(globs, 1, 0, &rr), 0);
	cr_expect_eq(router_route(rr, "anything"), 0);
	router_free(rr);
}

/* --- config: keyfs.backends ---------------------------------------------- */

static char dir[64];
static char errbuf[512];

static int load(const char *yaml, struct config *c)
{
	char path[128];
	snprintf(dir, sizeof(dir), "/tmp/test-router-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	setenv("HOME", dir, 1);
	snprintf(path, sizeof(path), "%s/omikuji.yaml", dir);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs(yaml, f);
	fclose(f);
	int rc = config_load(path, 0, c, errbuf, sizeof(errbuf));
	unlink(path);
	rmdir(dir);
	return rc;
}

Test(router_config, instances_parse_with_the_key_storage_tables)
{
	struct config c;
	int rc = load("key_storage:\n  storage_type: vault\n  vault:\n    url: https://v:8200\n"
	              "keyfs:\n  max_calls_in_flight: 9\n  backends:\n"
	              "    - name: testnets\n      storage_type: file\n"
	              "      file: { path: /var/lib/t.enc }\n"
	              "      networks: [\"*-testnet\", sepolia]\n"
	              "    - name: dr-vault\n      storage_type: vault\n      max_calls_in_flight: 3\n"
	              "      vault:\n        urls: [\"https://dr:8200\"]\n        cache_ttl_seconds: 7\n"
	              "      networks: [ethereum-mainnet]\n", &c);
	cr_assert_eq(rc, 0, "%s", errbuf);
	cr_expect_str_eq(c.key_storage.name, "vault");
	cr_expect_str_eq(c.key_storage.vault.urls.items[0], "https://v:8200");
	cr_assert_eq(c.keyfs.n_backends, 2);
	const struct config_backend *t = &c.keyfs.backends[0], *d = &c.keyfs.backends[1];
	cr_expect_str_eq(t->name, "testnets");
	cr_expect_eq(t->type, backend_type_find("file"));
	cr_expect_str_eq(t->file.path, "/var/lib/t.enc");
	cr_expect_eq(t->networks.n, 2);
	cr_expect_eq(t->line, 8);
	cr_expect_eq(config_max_calls_in_flight(&c, t), 9);
	cr_expect_str_eq(d->vault.urls.items[0], "https://dr:8200");
	cr_expect_eq(d->vault.cache_ttl_seconds, 7);
	cr_expect_str_eq(d->vault.mount_path, "secret", "each instance gets the defaults");
	cr_expect_eq(config_max_calls_in_flight(&c, d), 3);

	struct router *rr;
	cr_assert_eq(router_from_config(&c, &rr), 0);
	cr_expect_eq(router_route(rr, "sepolia"), 1);
	cr_expect_eq(router_route(rr, "ethereum-mainnet"), 2);
	cr_expect_eq(router_route(rr, "gnosis"), 0);
	router_free(rr);
	config_free(&c);
}

Test(router_config, defaults_and_reserved_names)
{
	struct config c;
	int rc = load("keyfs:\n  backends:\n    - name: t\n      storage_type: env\n", &c);
	cr_assert_eq(rc, 0, "%s", errbuf);
	cr_expect_eq(c.keyfs.max_calls_in_flight, 16);
	cr_expect_eq(config_max_calls_in_flight(&c, &c.keyfs.backends[0]), 16);
	cr_expect_eq(c.keyfs.backends[0].networks.n, 0, "an instance may have no globs (migrate target)");
	config_free(&c);
	static const char *const reserved[] = { "aws", "aws-secrets", "file", "env", "keyring", "vault" };
	for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++) {
		char yaml[256];
		snprintf(yaml, sizeof(yaml), "keyfs:\n  backends:\n    - name: %s\n      storage_type: env\n",
		         reserved[i]);
		cr_expect_neq(load(yaml, &c), 0, "%s", reserved[i]);
		cr_expect(strstr(errbuf, "is a backend type's"), "%s: %s", reserved[i], errbuf);
	}
}

Test(router_config, url_and_urls_checked_per_instance)
{
	struct config c;
	int rc = load("key_storage:\n  vault:\n    url: https://a:1\n"
	              "keyfs:\n  backends:\n    - name: b\n      storage_type: vault\n"
	              "      vault:\n        url: https://b:1\n", &c);
	cr_assert_eq(rc, 0, "one url per instance is fine: %s", errbuf);
	config_free(&c);
	rc = load("keyfs:\n  backends:\n    - name: b\n      storage_type: vault\n"
	          "      vault:\n        url: https://b:1\n        urls: [https://c:1]\n", &c);
	cr_expect_neq(rc, 0);
	cr_expect(strstr(errbuf, "7:9: both url and urls are given in keyfs.backends[0].vault"),
	          "%s", errbuf);
}
