/* test_credential.c - the renewable-credential state shared by backends
 * (util/credential.c): generations, what is needed when, retry-later. */
#include <criterion/criterion.h>
#include <string.h>

#include "credential.h"

static double fake_now;
static double fake_clock(void)
{
	return fake_now;
}

static struct secret *value(const char *s)
{
	struct secret *v = secret_from(s, strlen(s));
	cr_assert_not_null(v);
	return v;
}

Test(credential, generation_counts_new_values_only)
{
	struct credential c;
	credential_init(&c, fake_clock);
	unsigned g0, g1;
	cr_expect_null(credential_snapshot(&c, &g0));
	credential_install(&c, value("t1"), NULL);
	struct secret *t = credential_snapshot(&c, &g1);
	cr_assert_not_null(t);
	cr_expect_eq(t->len, 2);
	secret_free(t);
	cr_expect_neq(g0, g1);
	cr_expect(credential_changed(&c, g0));
	cr_expect_not(credential_changed(&c, g1));
	struct credential_timing tm = { .renewable = true, .obtained_at = 0, .ttl = 30 };
	credential_install(&c, NULL, &tm);   /* a renewal: same value */
	cr_expect_not(credential_changed(&c, g1), "new timing, same value");
	credential_destroy(&c);
}

Test(credential, needs_login_renew_and_retry_later)
{
	struct credential c;
	bool login, renew;
	fake_now = 1000;
	credential_init(&c, fake_clock);
	credential_needs(&c, true, &login, &renew);
	cr_expect(login, "none yet: log in");
	credential_needs(&c, false, &login, &renew);
	cr_expect_not(login, "a static token cannot be minted");

	struct credential_timing tm = { .renewable = true, .obtained_at = 1000, .ttl = 300 };
	credential_install(&c, value("tok"), &tm);
	credential_needs(&c, true, &login, &renew);
	cr_expect_not(login);
	cr_expect_not(renew);
	fake_now = 1200;   /* 2/3 of 300 */
	credential_needs(&c, true, &login, &renew);
	cr_expect(renew);
	credential_retry_later(&c);   /* 100 s left: next try in a third of it */
	credential_needs(&c, true, &login, &renew);
	cr_expect_not(renew, "retry later");
	fake_now = 1234;
	credential_needs(&c, true, &login, &renew);
	cr_expect(renew);
	fake_now = 1299.5;
	credential_needs(&c, true, &login, &renew);
	cr_expect(login, "expired (a second of margin): log in again");
	cr_expect_not(renew);

	char text[64];
	credential_expiry_text(&c, text, sizeof(text));
	cr_expect_neq(strcmp(text, "unknown"), 0);
	tm.ttl = 0;
	credential_install(&c, NULL, &tm);
	credential_expiry_text(&c, text, sizeof(text));
	cr_expect_str_eq(text, "never");
	credential_install(&c, value("tok2"), NULL);
	credential_expiry_text(&c, text, sizeof(text));
	cr_expect_str_eq(text, "unknown", "a new value without timing");
	credential_destroy(&c);
}
