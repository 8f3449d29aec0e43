/* aws_sigv4.c - AWS Signature Version 4 for Secrets Manager requests, with
 * the day's signing key cached (aws_internal.h has the contract).
 *
 * Why not libcurl's CURLOPT_AWS_SIGV4, which this replaced on the read
 * path: libcurl derives the signing key (four HMAC-SHA256 rounds) for every
 * request, builds the canonical request and the string to sign through its
 * printf, and hashes through OpenSSL's EVP layer: under callgrind 420 000
 * instructions per GetSecretValue in a bare libcurl loop, most of the AWS
 * cold read (issue 15, BENCHMARKS.md).  The signing key depends only on the
 * secret key, the date, the region and the service, so it is derived once a
 * day (and once per credential generation) and kept, keyed, as a nettle
 * HMAC state in a locked secret; a request then costs two SHA-256 passes
 * over small buffers and one HMAC.
 *
 * Secrets: the secret key and the signing key only ever live in locked
 * secrets and wiped stack buffers; the session token is streamed into the
 * canonical request's hash and never copied into a buffer here.
 */
#include "aws_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <nettle/hmac.h>
#include <nettle/sha2.h>

#define LIT(s) sizeof(s) - 1, (const uint8_t *)(s)

/* What the locked cache holds. */
struct aws_sigv4_state {
	bool valid;
	unsigned generation;
	char date[9];                     /* YYYYMMDD */
	char access_key_id[128];
	struct hmac_sha256_ctx key;       /* keyed with the day's signing key */
};

int aws_sigv4_init(struct aws_sigv4 *s, const char *region, const char *service)
{
	memset(s, 0, sizeof(*s));
	if (snprintf(s->region, sizeof(s->region), "%s", region) >= (int)sizeof(s->region) ||
	    snprintf(s->service, sizeof(s->service), "%s", service) >= (int)sizeof(s->service))
		return -EINVAL;
	s->cache = secret_new(sizeof(struct aws_sigv4_state));
	if (!s->cache)
		return -ENOMEM;
	s->cache->len = sizeof(struct aws_sigv4_state);
	pthread_mutex_init(&s->lock, NULL);
	return 0;
}

void aws_sigv4_free(struct aws_sigv4 *s)
{
	if (!s->cache)
		return;
	secret_free(s->cache);
	s->cache = NULL;
	pthread_mutex_destroy(&s->lock);
}

static void aws_sigv4_hex(const uint8_t *d, size_t n, char *out)
{
	static const char hex[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hex[d[i] >> 4];
		out[2 * i + 1] = hex[d[i] & 15];
	}
	out[2 * n] = 0;
}

static void aws_sigv4_hmac(const uint8_t *key, size_t keylen, const char *msg, uint8_t out[32])
{
	struct hmac_sha256_ctx c;
	hmac_sha256_set_key(&c, keylen, key);
	hmac_sha256_update(&c, strlen(msg), (const uint8_t *)msg);
	hmac_sha256_digest(&c, SHA256_DIGEST_SIZE, out);
	explicit_bzero(&c, sizeof(c));
}

/* The keyed HMAC state of the signing key for date: kDate, kRegion,
 * kService, kSigning (AWS's derivation), then keyed once. */
static void aws_sigv4_derive(const struct aws_sigv4 *s, const char *secret_key,
                             const char *date, struct hmac_sha256_ctx *out)
{
	uint8_t k[SHA256_DIGEST_SIZE];
	char first[4 + 256];
	size_t sl = strlen(secret_key);
	if (sl > sizeof(first) - 4)
		sl = sizeof(first) - 4;   /* AWS secret keys are 40 characters */
	memcpy(first, "AWS4", 4);
	memcpy(first + 4, secret_key, sl);
	struct hmac_sha256_ctx c;
	hmac_sha256_set_key(&c, 4 + sl, (const uint8_t *)first);
	hmac_sha256_update(&c, strlen(date), (const uint8_t *)date);
	hmac_sha256_digest(&c, sizeof(k), k);
	aws_sigv4_hmac(k, sizeof(k), s->region, k);
	aws_sigv4_hmac(k, sizeof(k), s->service, k);
	aws_sigv4_hmac(k, sizeof(k), "aws4_request", k);
	hmac_sha256_set_key(out, sizeof(k), k);
	explicit_bzero(&c, sizeof(c));
	explicit_bzero(first, sizeof(first));
	explicit_bzero(k, sizeof(k));
}

static void aws_sigv4_header(struct sha256_ctx *h, const char *name, size_t nl, const char *v)
{
	sha256_update(h, nl, (const uint8_t *)name);
	sha256_update(h, 1, (const uint8_t *)":");
	sha256_update(h, strlen(v), (const uint8_t *)v);
	sha256_update(h, 1, (const uint8_t *)"\n");
}

int aws_sigv4_sign(struct aws_sigv4 *s, const struct aws_sigv4_request *r, time_t now,
                   struct aws_sigv4_out *out)
{
	struct tm tm;
	if (!r->access_key_id || !r->secret_key || !r->host || !r->content_type ||
	    !r->target || strlen(r->access_key_id) >= sizeof(((struct aws_sigv4_state *)0)->
	                                                  access_key_id) ||
	    !gmtime_r(&now, &tm))
		return -EINVAL;
	char amz_date[64], date[9];   /* 16 characters; room for what -Wformat-truncation fears */
	snprintf(amz_date, sizeof(amz_date), "%04d%02d%02dT%02d%02d%02dZ", tm.tm_year + 1900,
	         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
	memcpy(date, amz_date, 8);
	date[8] = 0;

	/* The canonical request, straight into its hash. */
	uint8_t d[SHA256_DIGEST_SIZE];
	char payload_hex[65], canon_hex[65];
	struct sha256_ctx h;
	sha256_init(&h);
	sha256_update(&h, r->body_len, (const uint8_t *)r->body);
	sha256_digest(&h, sizeof(d), d);
	aws_sigv4_hex(d, sizeof(d), payload_hex);
	/* sha256_digest re-initialised h. */
	sha256_update(&h, LIT("POST\n/\n\n"));
	aws_sigv4_header(&h, "content-type", 12, r->content_type);
	aws_sigv4_header(&h, "host", 4, r->host);
	aws_sigv4_header(&h, "x-amz-date", 10, amz_date);
	if (r->session_token)
		aws_sigv4_header(&h, "x-amz-security-token", 20, r->session_token);
	aws_sigv4_header(&h, "x-amz-target", 12, r->target);
	const char *signed_headers = r->session_token
		? "content-type;host;x-amz-date;x-amz-security-token;x-amz-target"
		: "content-type;host;x-amz-date;x-amz-target";
	sha256_update(&h, 1, (const uint8_t *)"\n");
	sha256_update(&h, strlen(signed_headers), (const uint8_t *)signed_headers);
	sha256_update(&h, 1, (const uint8_t *)"\n");
	sha256_update(&h, 64, (const uint8_t *)payload_hex);
	sha256_digest(&h, sizeof(d), d);
	explicit_bzero(&h, sizeof(h));   /* its block buffer held the token */
	aws_sigv4_hex(d, sizeof(d), canon_hex);

	char scope[9 + 1 + sizeof(s->region) + 1 + sizeof(s->service) + 13];
	snprintf(scope, sizeof(scope), "%s/%s/%s/aws4_request", date, s->region, s->service);

	/* The signing key: the cached one while date and credentials hold. */
	struct hmac_sha256_ctx key;
	pthread_mutex_lock(&s->lock);
	struct aws_sigv4_state *st = (struct aws_sigv4_state *)s->cache->data;
	if (!st->valid || st->generation != r->generation || strcmp(st->date, date) != 0 ||
	    strcmp(st->access_key_id, r->access_key_id) != 0) {
		aws_sigv4_derive(s, r->secret_key, date, &st->key);
		st->generation = r->generation;
		memcpy(st->date, date, sizeof(date));
		snprintf(st->access_key_id, sizeof(st->access_key_id), "%s", r->access_key_id);
		st->valid = true;
		s->derivations++;
	}
	key = st->key;
	pthread_mutex_unlock(&s->lock);

	hmac_sha256_update(&key, LIT("AWS4-HMAC-SHA256\n"));
	hmac_sha256_update(&key, 16, (const uint8_t *)amz_date);
	hmac_sha256_update(&key, 1, (const uint8_t *)"\n");
	hmac_sha256_update(&key, strlen(scope), (const uint8_t *)scope);
	hmac_sha256_update(&key, 1, (const uint8_t *)"\n");
	hmac_sha256_update(&key, 64, (const uint8_t *)canon_hex);
	hmac_sha256_digest(&key, sizeof(d), d);
	explicit_bzero(&key, sizeof(key));
	char sig[65];
	aws_sigv4_hex(d, sizeof(d), sig);

	snprintf(out->date_header, sizeof(out->date_header), "X-Amz-Date: %s", amz_date);
	int n = snprintf(out->authorization, sizeof(out->authorization),
	                 "Authorization: AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, "
	                 "Signature=%s", r->access_key_id, scope, signed_headers, sig);
	return n > 0 && (size_t)n < sizeof(out->authorization) ? 0 : -ENAMETOOLONG;
}
