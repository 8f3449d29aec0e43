/* test_env_backend.c - the read-only `env` backend: Omikuji's variable
 * naming, trimming, listing and the read-only answers. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "backend.h"
#include "config.h"
#include "backend_test_open.h"

extern char **environ;

/* Start every test from an environment without OMIKUJI_KEY_* variables. */
static void clear_keys(void)
{
	for (;;) {
		char name[256] = "";
		for (char **e = environ; e && *e; e++) {
			if (strncmp(*e, "OMIKUJI_KEY_", 12) == 0) {
				size_t n = strcspn(*e, "=");
				if (n < sizeof(name)) {
					memcpy(name, *e, n);
					name[n] = 0;
				}
				break;
			}
		}
		if (!name[0])
			return;
		unsetenv(name);
	}
}

TestSuite(env_backend, .init = clear_keys);

static struct backend *must_open(void)
{
	struct config_backend cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.type = backend_type_find("env");
	cfg.name = (char *)"env";
	struct backend *b = NULL;
	struct backend_err err = { .msg = "" };
	cr_assert_eq(backend_test_open(&cfg, &b, &err), 0, "%s", err.msg);
	return b;
}

/* The value get returns for net as a string ("" with *rc set on failure). */
static char *get_str(struct backend *b, const char *net, int *rc)
{
	struct secret *s = NULL;
	struct backend_err err = { .msg = "" };
	*rc = b->ops->get(b, net, &s, 0, &err);
	char *out = strdup(*rc == 0 ? (const char *)s->data : "");
	secret_free(s);
	return out;
}

Test(env_backend, naming_as_omikuji)
{
	setenv("OMIKUJI_KEY_ETHEREUM_MAINNET", "value-a", 1);
	setenv("OMIKUJI_KEY_BASE_SEPOLIA", "value-b", 1);
	setenv("OMIKUJI_KEY_ZKSYNC_ERA", "value-c", 1);
	struct backend *b = must_open();
	int rc;
	char *v = get_str(b, "ethereum-mainnet", &rc);
	cr_expect_eq(rc, 0);
	cr_expect_str_eq(v, "value-a", "'-' -> '_' and upper case");
	free(v);
	v = get_str(b, "Base.Sepolia", &rc);
	cr_expect_eq(rc, 0);
	cr_expect_str_eq(v, "value-b", "'.' -> '_' and upper case");
	free(v);
	v = get_str(b, "zksync_era", &rc);
	cr_expect_eq(rc, 0);
	cr_expect_str_eq(v, "value-c");
	free(v);
	/* Not the lower-case variable: Omikuji only reads the upper-case one. */
	setenv("OMIKUJI_KEY_polygon", "lower", 1);
	v = get_str(b, "polygon", &rc);
	cr_expect_eq(rc, -ENOENT);
	free(v);
	b->ops->close(b);
}

Test(env_backend, trimming_and_missing)
{
	setenv("OMIKUJI_KEY_ARBITRUM", "0xabc\n", 1);
	setenv("OMIKUJI_KEY_SPACED", "  lead kept \t \r\n", 1);
	setenv("OMIKUJI_KEY_EMPTY", "", 1);
	setenv("OMIKUJI_KEY_BLANK", " \n", 1);
	struct backend *b = must_open();
	int rc;
	char *v = get_str(b, "arbitrum", &rc);
	cr_expect_eq(rc, 0);
	cr_expect_str_eq(v, "0xabc", "trailing newline trimmed");
	free(v);
	v = get_str(b, "spaced", &rc);
	cr_expect_str_eq(v, "  lead kept", "only trailing whitespace trimmed");
	free(v);
	v = get_str(b, "empty", &rc);
	cr_expect_eq(rc, -ENOENT, "empty is unset");
	free(v);
	v = get_str(b, "blank", &rc);
	cr_expect_eq(rc, -ENOENT, "whitespace only is unset");
	free(v);
	v = get_str(b, "not-there", &rc);
	cr_expect_eq(rc, -ENOENT);
	free(v);
	/* Seen without reopening. */
	setenv("OMIKUJI_KEY_NOT_THERE", "late", 1);
	v = get_str(b, "not-there", &rc);
	cr_expect_eq(rc, 0);
	cr_expect_str_eq(v, "late");
	free(v);
	b->ops->close(b);
}

Test(env_backend, list_maps_names_back)
{
	setenv("OMIKUJI_KEY_ETHEREUM_MAINNET", "a", 1);
	setenv("OMIKUJI_KEY_BSC", "b", 1);
	setenv("OMIKUJI_KEY_EMPTY", "", 1);
	setenv("OMIKUJI_KEY_", "no name", 1);
	setenv("OMIKUJI_KEYS_X", "other prefix", 1);
	setenv("NOT_OMIKUJI_KEY_Y", "other prefix", 1);
	struct backend *b = must_open();
	struct strlist l = STRLIST_INIT;
	struct backend_err err = { .msg = "" };
	cr_assert_eq(b->ops->list(b, &l, 0, &err), 0);
	cr_expect_eq(l.n, 2, "only non-empty OMIKUJI_KEY_<NAME> listed, got %zu", l.n);
	cr_expect(strlist_contains(&l, "ethereum-mainnet"));
	cr_expect(strlist_contains(&l, "bsc"));
	strlist_clear(&l);

	struct backend_health h;
	memset(&h, 0, sizeof(h));
	b->ops->health(b, &h);
	cr_expect(h.up);
	cr_expect_str_eq(h.detail, "variables: 2\n");
	b->ops->close(b);
}

Test(env_backend, read_only)
{
	setenv("OMIKUJI_KEY_GNOSIS", "keep", 1);
	struct backend *b = must_open();
	struct secret *k = secret_from("new", 3);
	struct backend_err err = { .msg = "" };
	cr_expect_eq(b->ops->store(b, "gnosis", k, 0, &err), -EROFS);
	cr_expect_str_eq(err.msg, "env backend is read-only");
	memset(&err, 0, sizeof(err));
	cr_expect_eq(b->ops->remove(b, "gnosis", 0, &err), -EROFS);
	cr_expect_str_eq(err.msg, "env backend is read-only");
	cr_expect_str_eq(getenv("OMIKUJI_KEY_GNOSIS"), "keep");
	secret_free(k);
	cr_expect_str_eq(b->name, "env");
	cr_expect_str_eq(b->type->name, "env");
	cr_expect(b->type->flags & BACKEND_READ_ONLY);
	cr_expect(!(b->type->flags & BACKEND_REMOTE));
	b->ops->close(b);
}
