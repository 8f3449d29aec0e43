/* test_aws_sigv4.c - aws_sigv4.c, the SigV4 signer with the day's signing
 * key cached: its signatures against botocore's, and when the cache rolls
 * over (a date change, new credentials).  The date is passed in, so the
 * midnight roll-over is tested without waiting for one.
 *
 * The expected signatures were computed with botocore 1.29's SigV4Auth
 * (the reference the test server verifies with) for the same request:
 *   req = AWSRequest("POST", "http://127.0.0.1:4566/", data=BODY, headers={
 *         Content-Type, X-Amz-Target, Host, X-Amz-Date[, X-Amz-Security-Token]})
 *   SigV4Auth(Credentials(AKID, SECRET, TOKEN), "secretsmanager",
 *             "eu-west-1").signature(string_to_sign(req, canonical_request(req)))
 * The key pair is AWS's own documentation example, not a credential. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include "aws_internal.h"

#define AKID "AKIDEXAMPLE"
#define SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define TOKEN "FQoGZXIvYXdzEXAMPLETOKEN/with+slash="
#define BODY "{\"SecretId\":\"omikuji/ethereum-mainnet\"}"
#define T_2359 ((time_t)1795996799)   /* 2026-11-29T23:59:59Z */
#define T_0000 ((time_t)1795996801)   /* 2026-11-30T00:00:01Z */

static struct aws_sigv4_request request(const char *token, unsigned generation)
{
	struct aws_sigv4_request r = {
		.access_key_id = AKID, .secret_key = SECRET, .session_token = token,
		.generation = generation, .host = "127.0.0.1:4566",
		.content_type = "application/x-amz-json-1.1",
		.target = "secretsmanager.GetSecretValue", .body = BODY, .body_len = strlen(BODY),
	};
	return r;
}

/* The signature hex of an Authorization line. */
static const char *signature_of(const struct aws_sigv4_out *o)
{
	const char *s = strstr(o->authorization, "Signature=");
	cr_assert_not_null(s);
	return s + strlen("Signature=");
}

Test(aws_sigv4, matches_botocore_without_and_with_a_session_token)
{
	struct aws_sigv4 s;
	struct aws_sigv4_out o;
	cr_assert_eq(aws_sigv4_init(&s, "eu-west-1", "secretsmanager"), 0);
	struct aws_sigv4_request r = request(NULL, 1);
	cr_assert_eq(aws_sigv4_sign(&s, &r, T_2359, &o), 0);
	cr_assert_str_eq(o.date_header, "X-Amz-Date: 20261129T235959Z");
	cr_assert_str_eq(o.authorization,
	                 "Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261129/eu-west-1/"
	                 "secretsmanager/aws4_request, SignedHeaders=content-type;host;x-amz-date;"
	                 "x-amz-target, Signature="
	                 "dae18c64eacac7fc117a600d5e518c4b7970c94cb86ba7a34fe09a0abcf9b9be");
	r = request(TOKEN, 1);
	cr_assert_eq(aws_sigv4_sign(&s, &r, T_0000, &o), 0);
	cr_assert_str_eq(o.date_header, "X-Amz-Date: 20261130T000001Z");
	cr_assert(strstr(o.authorization, "Credential=AKIDEXAMPLE/20261130/eu-west-1/"
	                 "secretsmanager/aws4_request, SignedHeaders=content-type;host;x-amz-date;"
	                 "x-amz-security-token;x-amz-target, ") != NULL, "%s", o.authorization);
	cr_assert_str_eq(signature_of(&o),
	                 "71e662f3d402d4c5603ac96d4d500f110f235058e58c9ffb2bc1a695ab2ff936");
	cr_assert(strstr(o.authorization, SECRET) == NULL && strstr(o.authorization, TOKEN) == NULL);
	aws_sigv4_free(&s);
}

/* Signing with a fresh signer (no cache) as the reference for a cached one. */
static void fresh_signature(const struct aws_sigv4_request *r, time_t now, char out[65])
{
	struct aws_sigv4 f;
	struct aws_sigv4_out o;
	cr_assert_eq(aws_sigv4_init(&f, "eu-west-1", "secretsmanager"), 0);
	cr_assert_eq(aws_sigv4_sign(&f, r, now, &o), 0);
	cr_assert_eq(f.derivations, 1);
	snprintf(out, 65, "%s", signature_of(&o));
	aws_sigv4_free(&f);
}

Test(aws_sigv4, the_signing_key_is_derived_once_a_day_and_rolls_over_at_midnight)
{
	struct aws_sigv4 s;
	struct aws_sigv4_out o;
	char want[65];
	cr_assert_eq(aws_sigv4_init(&s, "eu-west-1", "secretsmanager"), 0);
	struct aws_sigv4_request r = request(NULL, 7);

	/* The same day: one derivation for many requests, each signature what
	 * an uncached signer gives. */
	for (time_t t = T_2359 - 3600; t <= T_2359; t += 1200) {
		cr_assert_eq(aws_sigv4_sign(&s, &r, t, &o), 0);
		fresh_signature(&r, t, want);
		cr_assert_str_eq(signature_of(&o), want);
	}
	cr_assert_eq(s.derivations, 1);

	/* Two seconds later it is the next day: a new key, not the cached one. */
	cr_assert_eq(aws_sigv4_sign(&s, &r, T_0000, &o), 0);
	cr_assert_eq(s.derivations, 2);
	cr_assert(strstr(o.authorization, "/20261130/eu-west-1/") != NULL);
	fresh_signature(&r, T_0000, want);
	cr_assert_str_eq(signature_of(&o), want);
	cr_assert_eq(aws_sigv4_sign(&s, &r, T_0000 + 60, &o), 0);
	cr_assert_eq(s.derivations, 2);

	/* A clock stepped back across midnight rolls back too. */
	cr_assert_eq(aws_sigv4_sign(&s, &r, T_2359, &o), 0);
	cr_assert_eq(s.derivations, 3);
	fresh_signature(&r, T_2359, want);
	cr_assert_str_eq(signature_of(&o), want);
	aws_sigv4_free(&s);
}

Test(aws_sigv4, renewed_credentials_get_their_own_signing_key)
{
	struct aws_sigv4 s;
	struct aws_sigv4_out o;
	char want[65];
	cr_assert_eq(aws_sigv4_init(&s, "eu-west-1", "secretsmanager"), 0);
	struct aws_sigv4_request r = request(TOKEN, 1);
	cr_assert_eq(aws_sigv4_sign(&s, &r, T_0000, &o), 0);

	/* A renewal: new secret key and token, new generation. */
	struct aws_sigv4_request renewed = request("NEWTOKEN", 2);
	renewed.secret_key = "a-different-secret-key-0000000000000000000";
	cr_assert_eq(aws_sigv4_sign(&s, &renewed, T_0000 + 1, &o), 0);
	cr_assert_eq(s.derivations, 2);
	fresh_signature(&renewed, T_0000 + 1, want);
	cr_assert_str_eq(signature_of(&o), want);

	/* Another access key id under the same generation number (a second
	 * credential object) is not signed with the cached key either. */
	struct aws_sigv4_request other = renewed;
	other.access_key_id = "AKIDOTHER";
	cr_assert_eq(aws_sigv4_sign(&s, &other, T_0000 + 2, &o), 0);
	cr_assert_eq(s.derivations, 3);
	fresh_signature(&other, T_0000 + 2, want);
	cr_assert_str_eq(signature_of(&o), want);
	aws_sigv4_free(&s);
}
