/* test_vault.c - the Vault backend without a server: KV v2 response shapes,
 * list parsing, paths and escaping, the write body, auth answers, token
 * renewal timing, status classification, config checks at open, and the
 * behaviour against an unreachable address. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <jansson.h>
#include "backend.h"
#include "config.h"
#include "http.h"
#include "vault_internal.h"
#include "backend_test_open.h"

/* A throwaway key: 32 random bytes as hex. */
static void random_key(char out[65])
{
	unsigned char b[32];
	FILE *f = fopen("/dev/urandom", "rb");
	cr_assert_not_null(f);
	cr_assert_eq(fread(b, 1, sizeof(b), f), sizeof(b));
	fclose(f);
	for (int i = 0; i < 32; i++)
		sprintf(out + 2 * i, "%02x", b[i]);
}

static int read_kv(long status, const char *body, struct secret **out, char *why)
{
	return vault_parse_kv_read(status, body, strlen(body), out, why, 160);
}

/* The envelope real Vault wraps around a KV v2 read. */
static char *kv_body(const char *inner_data, const char *deletion_time, int destroyed)
{
	char *s = NULL;
	cr_assert(asprintf(&s,
		"{\"request_id\":\"r\",\"lease_id\":\"\",\"renewable\":false,\"lease_duration\":0,"
		"\"data\":{\"data\":%s,\"metadata\":{\"created_time\":\"2024-01-01T00:00:00Z\","
		"\"custom_metadata\":null,\"deletion_time\":\"%s\",\"destroyed\":%s,\"version\":3}},"
		"\"wrap_info\":null,\"warnings\":null,\"auth\":null}",
		inner_data, deletion_time, destroyed ? "true" : "false") > 0);
	return s;
}

Test(vault_parse_read, field_precedence)
{
	char k1[65], k2[65], k3[65], inner[400], why[160];
	random_key(k1); random_key(k2); random_key(k3);
	struct secret *out = NULL;

	snprintf(inner, sizeof(inner), "{\"value\":\"%s\",\"key\":\"%s\",\"private_key\":\"%s\"}", k3, k2, k1);
	char *b = kv_body(inner, "", 0);
	cr_assert_eq(read_kv(200, b, &out, why), 0, "%s", why);
	cr_expect(out->len == 64 && !memcmp(out->data, k1, 64), "private_key wins");
	secret_free(out); free(b);

	snprintf(inner, sizeof(inner), "{\"value\":\"%s\",\"key\":\"%s\",\"network\":\"eth\"}", k3, k2);
	b = kv_body(inner, "", 0);
	cr_assert_eq(read_kv(200, b, &out, why), 0, "%s", why);
	cr_expect(!memcmp(out->data, k2, 64), "then key");
	secret_free(out); free(b);

	snprintf(inner, sizeof(inner), "{\"value\":\"%s\"}", k3);
	b = kv_body(inner, "", 0);
	cr_assert_eq(read_kv(200, b, &out, why), 0, "%s", why);
	cr_expect(!memcmp(out->data, k3, 64), "then value");
	secret_free(out); free(b);

	/* A JSON null counts as absent. */
	snprintf(inner, sizeof(inner), "{\"private_key\":null,\"key\":\"%s\"}", k2);
	b = kv_body(inner, "", 0);
	cr_assert_eq(read_kv(200, b, &out, why), 0, "%s", why);
	cr_expect(!memcmp(out->data, k2, 64));
	secret_free(out); free(b);
}

Test(vault_parse_read, wrong_types_and_shapes)
{
	char why[160];
	struct secret *out = (struct secret *)1;
	const char *inners[] = {
		"{\"private_key\":12345}",             /* non-string */
		"{\"private_key\":{\"a\":1},\"key\":\"x\"}",  /* present but wrong: no fallback */
		"{\"private_key\":\"\"}",              /* empty */
		"{\"network\":\"eth\"}",               /* no key field */
		"[\"abc\"]",                           /* data.data not an object */
	};
	for (size_t i = 0; i < sizeof(inners) / sizeof(inners[0]); i++) {
		char *b = kv_body(inners[i], "", 0);
		why[0] = 0;
		cr_expect_eq(read_kv(200, b, &out, why), -EIO, "case %zu", i);
		cr_expect_null(out, "case %zu", i);
		cr_expect(why[0], "case %zu has a reason", i);
		free(b);
	}
	const char *bodies[] = {
		"{\"data\":null}",
		"{\"request_id\":\"r\"}",
		"{\"data\":{\"metadata\":{\"deletion_time\":\"\",\"destroyed\":false}}}",
		"{\"data\":\"text\"}",
		"[]",
		"",
		"{\"data\":{\"data\":{\"private_key\":\"abc\"}",     /* truncated */
	};
	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		cr_expect_eq(read_kv(200, bodies[i], &out, why), -EIO, "body %zu", i);
		cr_expect_null(out);
	}
}

Test(vault_parse_read, reason_never_quotes_the_body)
{
	char k[65], body[200], why[160] = "";
	struct secret *out = NULL;
	random_key(k);
	/* Malformed right after the key: jansson's error text would quote it. */
	snprintf(body, sizeof(body), "{\"data\":{\"data\":{\"private_key\":\"%s\" x}}}", k);
	cr_expect_eq(read_kv(200, body, &out, why), -EIO);
	cr_expect_null(strstr(why, k));
	cr_expect_null(strstr(why, "x}"));
	snprintf(body, sizeof(body), "{\"data\":{\"data\":{\"private_key\":[\"%s\"]}}}", k);
	cr_expect_eq(read_kv(200, body, &out, why), -EIO);
	cr_expect_null(strstr(why, k));
}

Test(vault_parse_read, not_found_and_soft_deleted)
{
	char why[160];
	struct secret *out = NULL;
	cr_expect_eq(read_kv(404, "{\"errors\":[]}", &out, why), -ENOENT);
	cr_expect_eq(read_kv(404, "", &out, why), -ENOENT);
	/* Real Vault: a soft-deleted latest version is 404 with data null and
	 * the metadata's deletion_time set; accept the same shape with 200. */
	char *b = kv_body("null", "2024-02-02T00:00:00.1Z", 0);
	cr_expect_eq(read_kv(404, b, &out, why), -ENOENT);
	cr_expect_eq(read_kv(200, b, &out, why), -ENOENT);
	free(b);
	b = kv_body("null", "", 1);
	cr_expect_eq(read_kv(200, b, &out, why), -ENOENT, "destroyed");
	free(b);
	cr_expect_null(out);
}

Test(vault_parse_read, other_statuses)
{
	char why[160];
	struct secret *out = NULL;
	cr_expect_eq(read_kv(403, "{\"errors\":[\"permission denied\"]}", &out, why), -EACCES);
	cr_expect_eq(read_kv(500, "{\"errors\":[\"internal error\"]}", &out, why), -EIO);
	cr_expect_eq(read_kv(503, "{\"errors\":[\"Vault is sealed\"]}", &out, why), -EIO);
	cr_expect_eq(read_kv(400, "{}", &out, why), -EIO);
	cr_expect_eq(read_kv(301, "", &out, why), -EIO);
}

Test(vault_parse_read, oversized_body_refused)
{
	char k[65], why[160];
	random_key(k);
	size_t n = HTTP_BODY_MAX + 100;
	char *b = malloc(n + 1);
	cr_assert_not_null(b);
	int w = snprintf(b, n + 1, "{\"data\":{\"data\":{\"private_key\":\"%s\",\"pad\":\"", k);
	memset(b + w, 'p', n - (size_t)w - 4);
	memcpy(b + n - 4, "\"}}}", 4);
	b[n] = 0;
	struct secret *out = NULL;
	cr_expect_eq(vault_parse_kv_read(200, b, n, &out, why, sizeof(why)), -EIO);
	cr_expect_null(out);
	/* The same shape under the cap parses: the size alone made it fail. */
	size_t small = 4096;
	w = snprintf(b, small + 1, "{\"data\":{\"data\":{\"private_key\":\"%s\",\"pad\":\"", k);
	memset(b + w, 'p', small - (size_t)w - 4);
	memcpy(b + small - 4, "\"}}}", 4);
	cr_expect_eq(vault_parse_kv_read(200, b, small, &out, why, sizeof(why)), 0, "%s", why);
	secret_free(out);
	free(b);
}

/* ---- list ------------------------------------------------------------------------- */

Test(vault_parse_list, folders_skipped)
{
	struct strlist l = STRLIST_INIT;
	const char *b = "{\"data\":{\"keys\":[\"eth-mainnet\",\"sub/\",\"polygon.main_1\",\"deep/er/\"]}}";
	char why[160];
	cr_assert_eq(vault_parse_kv_list(200, b, strlen(b), &l, why, sizeof(why)), 0, "%s", why);
	cr_expect_eq(l.n, 2);
	cr_expect(strlist_contains(&l, "eth-mainnet"));
	cr_expect(strlist_contains(&l, "polygon.main_1"));
	cr_expect_not(strlist_contains(&l, "sub/"));
	cr_expect_not(strlist_contains(&l, "sub"));
	strlist_clear(&l);
}

Test(vault_parse_list, not_found_is_empty)
{
	struct strlist l = STRLIST_INIT;
	cr_expect_eq(vault_parse_kv_list(404, "{\"errors\":[]}", 13, &l, NULL, 0), 0);
	cr_expect_eq(l.n, 0);
	const char *empty = "{\"data\":{\"keys\":[]}}";
	cr_expect_eq(vault_parse_kv_list(200, empty, strlen(empty), &l, NULL, 0), 0);
	cr_expect_eq(l.n, 0);
}

Test(vault_parse_list, malformed)
{
	struct strlist l = STRLIST_INIT;
	const char *bad[] = {
		"{\"data\":{\"keys\":[\"a\",7]}}",
		"{\"data\":{\"keys\":\"a\"}}",
		"{\"data\":{}}",
		"{\"data\":null}",
		"not json",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_expect_eq(vault_parse_kv_list(200, bad[i], strlen(bad[i]), &l, NULL, 0), -EIO, "%zu", i);
		cr_expect_eq(l.n, 0, "nothing appended on error (%zu)", i);
	}
	cr_expect_eq(vault_parse_kv_list(403, "{}", 2, &l, NULL, 0), -EACCES);
	cr_expect_eq(vault_parse_kv_list(503, "{}", 2, &l, NULL, 0), -EIO);
	strlist_clear(&l);
}

/* ---- paths ------------------------------------------------------------------------ */

Test(vault_paths, normalize)
{
	char out[128];
	cr_assert_eq(vault_path_normalize("omikuji/keys", out, sizeof(out)), 0);
	cr_expect_str_eq(out, "omikuji/keys");
	cr_assert_eq(vault_path_normalize("/omikuji//keys/", out, sizeof(out)), 0);
	cr_expect_str_eq(out, "omikuji/keys");
	cr_assert_eq(vault_path_normalize("secret/", out, sizeof(out)), 0);
	cr_expect_str_eq(out, "secret");
	cr_assert_eq(vault_path_normalize("team a/ключи", out, sizeof(out)), 0);
	cr_expect_str_eq(out, "team%20a/%D0%BA%D0%BB%D1%8E%D1%87%D0%B8");
	cr_assert_eq(vault_path_normalize("", out, sizeof(out)), 0);
	cr_expect_str_eq(out, "");
	cr_assert_eq(vault_path_normalize("///", out, sizeof(out)), 0);
	cr_expect_str_eq(out, "");
	cr_expect_eq(vault_path_normalize("a/../b", out, sizeof(out)), -EINVAL);
	cr_expect_eq(vault_path_normalize("./a", out, sizeof(out)), -EINVAL);
	cr_assert_eq(vault_path_normalize("a/..b/.c", out, sizeof(out)), 0, "dots inside a name are fine");
	cr_expect_str_eq(out, "a/..b/.c");
	char tiny[8];
	cr_expect_eq(vault_path_normalize("abc/defgh", tiny, sizeof(tiny)), -ENAMETOOLONG);
}

Test(vault_paths, kv_paths)
{
	char out[256];
	cr_assert_eq(vault_kv_path("secret", "omikuji/keys", "data", "eth.main_net-1", out, sizeof(out)), 0);
	cr_expect_str_eq(out, "/v1/secret/data/omikuji/keys/eth.main_net-1");
	cr_assert_eq(vault_kv_path("secret", "omikuji/keys", "metadata", NULL, out, sizeof(out)), 0);
	cr_expect_str_eq(out, "/v1/secret/metadata/omikuji/keys");
	cr_assert_eq(vault_kv_path("kv/v2", "", "data", "eth", out, sizeof(out)), 0);
	cr_expect_str_eq(out, "/v1/kv/v2/data/eth");
	cr_assert_eq(vault_kv_path("secret", "", "metadata", NULL, out, sizeof(out)), 0);
	cr_expect_str_eq(out, "/v1/secret/metadata/");
	/* The network is escaped as one segment (callers validate it first;
	 * escaping is the second line of defence). */
	cr_assert_eq(vault_kv_path("secret", "p", "data", "../x", out, sizeof(out)), 0);
	cr_expect_str_eq(out, "/v1/secret/data/p/..%2Fx");
	char tiny[20];
	cr_expect_eq(vault_kv_path("secret", "omikuji/keys", "data", "eth", tiny, sizeof(tiny)), -ENAMETOOLONG);
	cr_expect_eq(vault_kv_path("", "p", "data", "eth", out, sizeof(out)), -EINVAL);
}

Test(vault_paths, normalized_mount_with_trailing_slash)
{
	char mount[64], prefix[64], out[256];
	cr_assert_eq(vault_path_normalize("secret/", mount, sizeof(mount)), 0);
	cr_assert_eq(vault_path_normalize("/omikuji/keys/", prefix, sizeof(prefix)), 0);
	cr_assert_eq(vault_kv_path(mount, prefix, "data", "polygon", out, sizeof(out)), 0);
	cr_expect_str_eq(out, "/v1/secret/data/omikuji/keys/polygon");
}

/* ---- write body ------------------------------------------------------------------------ */

Test(vault_write, body_fields)
{
	char k[65];
	random_key(k);
	struct secret *key = secret_from(k, 64), *body = NULL;
	cr_assert_eq(vault_build_write_body(key, "eth-mainnet", "2024-05-06T07:08:09Z",
	                                    "omikuji-keyfs@host", &body), 0);
	json_error_t e;
	json_t *j = json_loadb((const char *)body->data, body->len, 0, &e);
	cr_assert_not_null(j, "valid JSON");
	json_t *d = json_object_get(j, "data");
	cr_assert(json_is_object(d));
	cr_expect_eq(json_object_size(j), 1);
	cr_expect_eq(json_object_size(d), 4);
	cr_expect_str_eq(json_string_value(json_object_get(d, "private_key")), k);
	cr_expect_str_eq(json_string_value(json_object_get(d, "network")), "eth-mainnet");
	cr_expect_str_eq(json_string_value(json_object_get(d, "created_at")), "2024-05-06T07:08:09Z");
	cr_expect_str_eq(json_string_value(json_object_get(d, "created_by")), "omikuji-keyfs@host");
	json_decref(j);
	secret_free(body);
	secret_free(key);
}

Test(vault_write, escaping)
{
	/* key_format: any lets odd bytes through: they must round-trip. */
	const char raw[] = "a\"b\\c\n\x01z\x7f";
	struct secret *key = secret_from(raw, sizeof(raw) - 1), *body = NULL;
	cr_assert_eq(vault_build_write_body(key, "n", "t", "by \"x\"", &body), 0);
	json_error_t e;
	json_t *j = json_loadb((const char *)body->data, body->len, 0, &e);
	cr_assert_not_null(j);
	json_t *d = json_object_get(j, "data");
	json_t *pk = json_object_get(d, "private_key");
	cr_assert(json_is_string(pk));
	cr_expect_eq(json_string_length(pk), sizeof(raw) - 1);
	cr_expect_eq(memcmp(json_string_value(pk), raw, sizeof(raw) - 1), 0);
	cr_expect_str_eq(json_string_value(json_object_get(d, "created_by")), "by \"x\"");
	json_decref(j);
	secret_free(body);
	secret_free(key);
}

/* ---- auth answers ------------------------------------------------------------------------ */

Test(vault_auth, login_answer)
{
	const char *b = "{\"auth\":{\"client_token\":\"hvs.testtoken123\",\"accessor\":\"a\","
	                "\"policies\":[\"default\"],\"lease_duration\":1800,\"renewable\":true}}";
	struct secret *t = NULL;
	struct credential_timing tm = { 0 };
	cr_assert_eq(vault_parse_auth(200, b, strlen(b), 50.0, &t, &tm, NULL, 0), 0);
	cr_expect_eq(t->len, strlen("hvs.testtoken123"));
	cr_expect_eq(memcmp(t->data, "hvs.testtoken123", t->len), 0);
	cr_expect_eq(tm.ttl, 1800.0);
	cr_expect(tm.renewable);
	cr_expect_eq(tm.obtained_at, 50.0);
	secret_free(t);
}

Test(vault_auth, bad_answers)
{
	struct secret *t = NULL;
	struct credential_timing tm = { 0 };
	const char *rej = "{\"errors\":[\"invalid role or secret ID\"]}";
	cr_expect_eq(vault_parse_auth(400, rej, strlen(rej), 0, &t, &tm, NULL, 0), -EACCES);
	cr_expect_eq(vault_parse_auth(403, "{}", 2, 0, &t, &tm, NULL, 0), -EACCES);
	cr_expect_eq(vault_parse_auth(500, "{}", 2, 0, &t, &tm, NULL, 0), -EIO);
	const char *bad[] = {
		"{\"auth\":null}",
		"{\"auth\":{\"lease_duration\":10,\"renewable\":true}}",
		"{\"auth\":{\"client_token\":\"has space\",\"lease_duration\":10}}",
		"{\"auth\":{\"client_token\":\"\",\"lease_duration\":10}}",
		"{\"auth\":{\"client_token\":\"t\",\"lease_duration\":\"10\"}}",
		"{\"auth\":{\"client_token\":\"t\",\"lease_duration\":-5}}",
		"{\"auth\":{\"client_token\":\"t\",\"lease_duration\":5,\"renewable\":\"yes\"}}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_expect_eq(vault_parse_auth(200, bad[i], strlen(bad[i]), 0, &t, &tm, NULL, 0), -EIO, "%zu", i);
		cr_expect_null(t);
	}
	/* A renewal answer needs no token. */
	const char *renew = "{\"auth\":{\"lease_duration\":60,\"renewable\":true}}";
	cr_expect_eq(vault_parse_auth(200, renew, strlen(renew), 7, NULL, &tm, NULL, 0), 0);
	cr_expect_eq(tm.ttl, 60.0);
}

Test(vault_auth, lookup_answer)
{
	struct credential_timing tm = { .renewable = true, .ttl = 99 };
	const char *root = "{\"data\":{\"ttl\":0,\"renewable\":false,\"expire_time\":null,\"policies\":[\"root\"]}}";
	cr_assert_eq(vault_parse_lookup(200, root, strlen(root), 3, &tm, NULL, 0), 0);
	cr_expect_eq(tm.ttl, 0.0);
	cr_expect_not(tm.renewable);
	const char *svc = "{\"data\":{\"ttl\":3599,\"renewable\":true,\"expire_time\":\"2030-01-01T00:00:00Z\"}}";
	cr_assert_eq(vault_parse_lookup(200, svc, strlen(svc), 3, &tm, NULL, 0), 0);
	cr_expect_eq(tm.ttl, 3599.0);
	cr_expect(tm.renewable);
	cr_expect_eq(vault_parse_lookup(403, "{}", 2, 3, &tm, NULL, 0), -EACCES);
	cr_expect_eq(vault_parse_lookup(200, "{\"data\":{}}", 11, 3, &tm, NULL, 0), -EIO);
}

/* ---- token timing ------------------------------------------------------------------------- */

Test(vault_token, renewal_at_two_thirds)
{
	struct credential_timing t = { .renewable = true, .obtained_at = 1000, .ttl = 3600 };
	cr_expect_eq(credential_renew_at(&t), 3400.0);
	cr_expect_not(credential_renew_due(&t, 1000));
	cr_expect_not(credential_renew_due(&t, 2200), "half-way");
	cr_expect_not(credential_renew_due(&t, 3399.9));
	cr_expect(credential_renew_due(&t, 3400));
	cr_expect(credential_renew_due(&t, 4500), "still due when late");
	t.ttl = 30;
	cr_expect_not(credential_renew_due(&t, 1019.9));
	cr_expect(credential_renew_due(&t, 1020));
}

Test(vault_token, never_renewed)
{
	struct credential_timing t = { .renewable = false, .obtained_at = 0, .ttl = 60 };
	cr_expect(credential_renew_at(&t) < 0);
	cr_expect_not(credential_renew_due(&t, 1e9), "not renewable");
	t.renewable = true;
	t.ttl = 0;
	cr_expect(credential_renew_at(&t) < 0);
	cr_expect_not(credential_renew_due(&t, 1e9), "no TTL (root)");
}

Test(vault_token, expiry)
{
	struct credential_timing t = { .renewable = true, .obtained_at = 100, .ttl = 60 };
	cr_expect_not(credential_expired(&t, 100));
	cr_expect_not(credential_expired(&t, 158.5));
	cr_expect(credential_expired(&t, 159), "a second of margin");
	cr_expect(credential_expired(&t, 1000));
	t.ttl = 0;
	cr_expect_not(credential_expired(&t, 1e12), "ttl 0 never expires");
}

/* ---- classification ---------------------------------------------------------------------------- */

Test(vault_status, health_codes)
{
	cr_expect_str_eq(vault_node_status_name(vault_node_status_from_health(200)), "active");
	cr_expect_str_eq(vault_node_status_name(vault_node_status_from_health(429)), "standby");
	cr_expect_str_eq(vault_node_status_name(vault_node_status_from_health(472)), "standby");
	cr_expect_str_eq(vault_node_status_name(vault_node_status_from_health(473)), "standby");
	cr_expect_str_eq(vault_node_status_name(vault_node_status_from_health(503)), "sealed");
	cr_expect_str_eq(vault_node_status_name(vault_node_status_from_health(501)), "not initialized");
	cr_expect_str_eq(vault_node_status_name(vault_node_status_from_health(0)), "unreachable");
	cr_expect_str_eq(vault_node_status_name(vault_node_status_from_health(500)), "unreachable");
}

Test(vault_status, failover_and_retry)
{
	cr_expect(vault_should_failover(-ECONNREFUSED, 0));
	cr_expect(vault_should_failover(-ECONNRESET, 0));
	cr_expect(vault_should_failover(0, 503), "sealed / standby");
	cr_expect(vault_should_failover(0, 500));
	cr_expect(vault_should_failover(0, 307), "standby redirect");
	cr_expect_not(vault_should_failover(0, 429), "rate limit: same node");
	cr_expect(vault_should_retry(0, 429));
	long finals[] = { 200, 204, 400, 403, 404, 405 };
	for (size_t i = 0; i < sizeof(finals) / sizeof(finals[0]); i++) {
		cr_expect_not(vault_should_retry(0, finals[i]), "%ld", finals[i]);
		cr_expect_not(vault_should_failover(0, finals[i]), "%ld", finals[i]);
	}
	cr_expect_not(vault_should_retry(-ETIMEDOUT, 0));
	cr_expect_not(vault_should_retry(-EMSGSIZE, 0));
}

Test(vault_status, errno_mapping)
{
	cr_expect_eq(vault_status_errno(200), 0);
	cr_expect_eq(vault_status_errno(204), 0);
	cr_expect_eq(vault_status_errno(404), -ENOENT);
	cr_expect_eq(vault_status_errno(403), -EACCES);
	cr_expect_eq(vault_status_errno(401), -EACCES);
	cr_expect_eq(vault_status_errno(500), -EIO);
	cr_expect_eq(vault_status_errno(503), -EIO);
	cr_expect_eq(vault_status_errno(400), -EIO);
	cr_expect_eq(vault_status_errno(429), -EIO);
}

/* ---- open, offline --------------------------------------------------------------------------- */

static int closed_port(void)
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

static struct config_backend cfg;
static char token[40];

static void cfg_init(void)
{
	memset(&cfg, 0, sizeof(cfg));
	cfg.type = backend_type_find("vault");
	cfg.name = (char *)"vault";
	char k[65];
	random_key(k);
	snprintf(token, sizeof(token), "hvs.%.30s", k);
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/", closed_port());
	strlist_add(&cfg.vault.urls, url);
	cfg.vault.token = token;
	cfg.vault.timeout_seconds = 2;
	cfg.vault.max_retries = 1;
}

static void cfg_fini(void)
{
	strlist_clear(&cfg.vault.urls);
}

static int try_open(struct backend_err *e)
{
	struct backend *b = NULL;
	int rc = backend_test_open(&cfg, &b, e);
	if (b)
		vault_backend_ops.close(b);
	return rc;
}

Test(vault_open, config_errors, .init = cfg_init, .fini = cfg_fini)
{
	struct backend_err e = { 0 };
	cfg.vault.auth_method = "kerberos";
	cr_expect_eq(try_open(&e), -EINVAL);
	cr_expect(strstr(e.msg, "auth_method"), "%s", e.msg);
	cfg.vault.auth_method = "approle";
	cr_expect_eq(try_open(&e), -EINVAL, "approle without role_id");
	cfg.vault.auth_method = "token";
	cfg.vault.token = NULL;
	cr_expect_eq(try_open(&e), -EINVAL, "no token");
	cfg.vault.token_file = "/nonexistent/dir/token";
	cr_expect_eq(try_open(&e), -ENOENT, "unreadable token_file");
	cr_expect(strstr(e.msg, "token_file"), "%s", e.msg);
	cfg.vault.token_file = NULL;
	cfg.vault.token = "has space";
	cr_expect_eq(try_open(&e), -EINVAL);
	cr_expect_null(strstr(e.msg, "has space"), "the token is not echoed");
	cfg.vault.token = token;
	cfg.vault.path_prefix = "omikuji/../other";
	cr_expect_eq(try_open(&e), -EINVAL);
	cfg.vault.path_prefix = NULL;
	cfg.vault.namespace = "a\r\nX-Evil: 1";
	cr_expect_eq(try_open(&e), -EINVAL);
	cfg.vault.namespace = NULL;
	strlist_clear(&cfg.vault.urls);
	cr_expect_eq(try_open(&e), -EINVAL, "no url");
	strlist_add(&cfg.vault.urls, "ftp://127.0.0.1/");
	cr_expect_eq(try_open(&e), -EINVAL, "not http(s)");
	/* A URL so long that request URLs would be cut is refused at open. */
	strlist_clear(&cfg.vault.urls);
	char longurl[VAULT_URL_MAX + 32];
	int n = snprintf(longurl, sizeof(longurl), "http://127.0.0.1:8200/");
	memset(longurl + n, 'a', sizeof(longurl) - 1 - (size_t)n);
	longurl[sizeof(longurl) - 1] = 0;
	strlist_add(&cfg.vault.urls, longurl);
	cr_expect_eq(try_open(&e), -EINVAL, "url too long");
	cr_expect(strstr(e.msg, "longer than"), "%s", e.msg);
}

Test(vault_open, unreachable_opens_and_fails_calls, .init = cfg_init, .fini = cfg_fini)
{
	struct backend *b = NULL;
	struct backend_err e = { 0 };
	cr_assert_eq(backend_test_open(&cfg, &b, &e), 0, "opens while Vault is away: %s", e.msg);
	struct secret *k = NULL;
	cr_expect_eq(vault_backend_ops.get(b, "eth", &k, 0, &e), -EIO);
	cr_expect_null(k);
	cr_expect_not(e.auth_failure);
	cr_expect(strstr(e.msg, "unreachable"), "%s", e.msg);
	cr_expect_null(strstr(e.msg, token), "no token in the reason");
	struct strlist l = STRLIST_INIT;
	cr_expect_eq(vault_backend_ops.list(b, &l, 0, &e), -EIO);
	cr_expect_eq(l.n, 0);

	struct backend_health h = { 0 };
	vault_backend_ops.maintain(b);
	vault_backend_ops.health(b, &h);
	cr_expect_not(h.up);
	cr_expect(h.error[0]);
	cr_expect(strstr(h.detail, "vault_status: unreachable\n"), "%s", h.detail);
	cr_expect(strstr(h.detail, "auth_method: token\n"), "%s", h.detail);
	cr_expect(strstr(h.detail, "address: http://127.0.0.1:"), "%s", h.detail);
	cr_expect(strstr(h.detail, "token_expires: "), "%s", h.detail);
	cr_expect_null(strstr(h.detail, token));
	vault_backend_ops.close(b);
}

Test(vault_open, approle_opens_without_vault, .init = cfg_init, .fini = cfg_fini)
{
	cfg.vault.auth_method = "approle";
	cfg.vault.token = NULL;
	cfg.vault.role_id = "role-test";
	cfg.vault.secret_id = token;
	struct backend *b = NULL;
	struct backend_err e = { 0 };
	cr_assert_eq(backend_test_open(&cfg, &b, &e), 0, "%s", e.msg);
	cr_expect_null(vault_backend_token_copy(b), "no token yet");
	struct secret *k = NULL;
	cr_expect_eq(vault_backend_ops.get(b, "eth", &k, 0, &e), -EIO, "login retried on use, still unreachable");
	cr_expect_null(strstr(e.msg, token));
	vault_backend_ops.close(b);
}

/* issue 15 (s3-15a): a fetch parses the answer once for the key and its
 * created_time; the repeated-name rule and escapes are jansson's. */
Test(vault_parse_read, key_and_created_time_in_one_pass)
{
	char k[65], inner[200], why[160] = "";
	random_key(k);
	snprintf(inner, sizeof(inner), "{\"private_key\":\"%s\"}", k);
	char *b = kv_body(inner, "", 0);
	struct secret *out = NULL;
	double created = 0;
	cr_assert_eq(vault_parse_kv_version(200, b, strlen(b), &out, &created, why, sizeof(why)), 0,
	             "%s", why);
	cr_expect(out && out->len == 64 && !memcmp(out->data, k, 64));
	cr_expect_eq(created, 1704067200.0, "2024-01-01T00:00:00Z, got %f", created);
	cr_expect_eq(vault_parse_kv_created(b, strlen(b)), 1704067200.0);
	secret_free(out);
	free(b);

	/* An escaped key field name and a later duplicate that wins. */
	snprintf(inner, sizeof(inner), "{\"private_key\":\"old\",\"priv\\u0061te_key\":\"%s\"}", k);
	b = kv_body(inner, "", 0);
	cr_assert_eq(read_kv(200, b, &out, why), 0, "%s", why);
	cr_expect(out && out->len == 64 && !memcmp(out->data, k, 64));
	secret_free(out);
	free(b);

	/* Malformed: a clear reason with a byte offset, never the body. */
	snprintf(inner, sizeof(inner), "{\"private_key\":\"%s\"", k);
	b = kv_body(inner, "", 0);
	cr_expect_eq(read_kv(200, b, &out, why), -EIO);
	cr_expect_null(out);
	cr_expect_not_null(strstr(why, "malformed JSON"), "%s", why);
	cr_expect_not_null(strstr(why, "at byte"), "%s", why);
	cr_expect_null(strstr(why, k), "the reason never quotes the body");
	free(b);
}

/* issue 15 (s5-cold): created_time is read digit by digit
 * (clock_parse_rfc3339); every UTC form gives what strptime + timegm +
 * strtod gave, anything else still goes that general way, and an offset
 * is now honoured instead of ignored. */
static double created_reference(const char *text)
{
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	const char *rest = strptime(text, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!rest)
		return 0;
	double t = (double)timegm(&tm);
	if (*rest == '.')
		t += strtod(rest, NULL);
	return t;
}

static double created_of(const char *text)
{
	char *s = NULL;
	cr_assert(asprintf(&s, "{\"data\":{\"data\":{\"private_key\":\"x\"},\"metadata\":"
	                       "{\"created_time\":\"%s\",\"deletion_time\":\"\",\"destroyed\":false}}}",
	                   text) > 0);
	double t = vault_parse_kv_created(s, strlen(s));
	free(s);
	return t;
}

Test(vault_parse_read, created_time_forms)
{
	static const char *const forms[] = {
		"2024-01-01T00:00:00Z", "2026-11-29T21:45:11.123456789Z", "2024-02-29T23:59:59.5Z",
		"2000-03-01T00:00:00.000000001Z", "1970-01-01T00:00:00Z", "2100-02-28T12:00:00Z",
		"2023-12-31T23:59:60Z", "2024-02-31T01:02:03Z", "2038-01-19T03:14:08.999999999Z",
		"2018-03-22T02:24:06.945319214Z", "2024-01-01T00:00:00.123456789012345678Z",
		/* not the usual form: the general way (or 0) */
		"2024-01-01T00:00:00", "2024-01-01T00:00:00.Z",
		"2024-1-01T00:00:00Z", "garbage", "",
	};
	for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++)
		cr_expect_eq(created_of(forms[i]), created_reference(forms[i]), "%s: %.9f vs %.9f",
		             forms[i], created_of(forms[i]), created_reference(forms[i]));
	cr_expect_eq(created_of("2026-11-29T21:45:11.25Z"), 1795988711.25);
	cr_expect_eq(created_of("2024-01-01T01:00:00+01:00"), 1704067200.0);
	cr_expect_eq(created_of("2023-12-31T23:30:00.5-00:30"), 1704067200.5);   /* calendar.timegm */
	/* a year-2000 leap day, by hand: 11 016 days after 1970-01-01 */
	cr_expect_eq(created_of("2000-02-29T00:00:00Z"), 11016.0 * 86400);
}
