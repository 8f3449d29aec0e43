/* test_credential.c - the renewable-credential state shared by backends
 * (util/credential.c): generations, what is needed when, retry-later. */
#include <criterion/criterion.h>
#include <pthread.h>
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

/* Issuers that state an absolute Expiration (AWS's temporary keys): renewed
 * at 2/3 of what was left when obtained, expired a second before the end;
 * the source is kept with the value for the health file. */
Test(credential, timing_from_time_left_and_source)
{
	struct credential c;
	bool login, renew;
	char text[96];
	fake_now = 500;
	credential_init(&c, fake_clock);
	credential_source_text(&c, text, sizeof(text));
	cr_expect_str_eq(text, "none");
	struct credential_timing tm = credential_timing_left(&c, 900);
	cr_expect(tm.renewable);
	cr_expect_eq(tm.obtained_at, 500);
	cr_expect_eq(credential_renew_at(&tm), 500 + 600, "2/3 of the time left");
	credential_install_from(&c, value("AKID\nsk\ntok"), &tm, "imds");
	credential_source_text(&c, text, sizeof(text));
	cr_expect_str_eq(text, "imds");
	fake_now = 1099;
	credential_needs(&c, true, &login, &renew);
	cr_expect(!login && !renew);
	fake_now = 1100;
	credential_needs(&c, true, &login, &renew);
	cr_expect(!login && renew);
	/* the same keys again: only the renewal point moves, to 2/3 of the rest */
	unsigned g0;
	secret_free(credential_snapshot(&c, &g0));
	tm = credential_timing_left(&c, 300);
	credential_install_from(&c, NULL, &tm, NULL);
	cr_expect_not(credential_changed(&c, g0));
	credential_needs(&c, true, &login, &renew);
	cr_expect(!login && !renew);
	cr_expect_eq(credential_renew_at(&c.timing), 1100 + 200);
	/* already expired when obtained: a login, never "does not expire" */
	tm = credential_timing_left(&c, -5);
	credential_install_from(&c, value("AKID\nsk2"), &tm, "container");
	credential_needs(&c, true, &login, &renew);
	cr_expect(login);
	credential_destroy(&c);
}

struct begin_arg {
	struct credential *c;
	bool claimed;
};

static void *begin_renewal(void *p)
{
	struct begin_arg *a = p;
	bool login, renew;
	a->claimed = credential_begin(a->c, true, false, &login, &renew);
	if (a->claimed)
		credential_end(a->c);
	return NULL;
}

/* One refresher: while a thread renews, another that finds a renewal due
 * does not wait (its value still works) unless asked to; a login always
 * queues. */
Test(credential, begin_claims_one_refresher)
{
	struct credential c;
	bool login, renew;
	fake_now = 0;
	credential_init(&c, fake_clock);
	cr_expect(credential_begin(&c, true, false, &login, &renew), "none yet: log in");
	cr_expect(login);
	struct credential_timing tm = { .renewable = true, .obtained_at = 0, .ttl = 30 };
	credential_install(&c, value("v"), &tm);
	credential_end(&c);
	cr_expect_not(credential_begin(&c, true, false, &login, &renew), "not due");
	fake_now = 21;
	cr_assert(credential_begin(&c, true, false, &login, &renew));
	cr_expect(renew && !login);
	/* a second thread while this one holds the refresh */
	struct begin_arg arg = { &c, true };
	pthread_t t;
	pthread_create(&t, NULL, begin_renewal, &arg);
	pthread_join(t, NULL);
	cr_expect_not(arg.claimed, "the other reader signs with the current value");
	tm.obtained_at = 21;
	credential_install(&c, NULL, &tm);
	credential_end(&c);
	cr_expect_not(credential_begin(&c, true, true, &login, &renew), "renewed meanwhile");
	credential_destroy(&c);
}
