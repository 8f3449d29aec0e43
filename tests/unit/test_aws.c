/* test_aws.c - the AWS Secrets Manager backend without a server: the shared
 * credentials/config file parser and profile selection, timestamps, the
 * credential answers of IMDS/container (JSON) and STS (XML), error
 * classification, Omikuji's SecretString shapes, region and endpoint
 * resolution, refresh timing, and the environment step of the chain.
 * (Everything that talks to a server is in tests/integration/test_aws_mount.py.) */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include "aws_internal.h"
#include "http.h"
#include "clock.h"

static void random_hex(char *out, size_t bytes)
{
	unsigned char b[64];
	FILE *f = fopen("/dev/urandom", "rb");
	cr_assert_not_null(f);
	cr_assert_eq(fread(b, 1, bytes, f), bytes);
	fclose(f);
	for (size_t i = 0; i < bytes; i++)
		sprintf(out + 2 * i, "%02x", b[i]);
}

static char *write_temp(const char *text)
{
	char *path = strdup("/tmp/test-aws-XXXXXX");
	int fd = mkstemp(path);
	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

static void clear_aws_env(void)
{
	static const char *const vars[] = {
		"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
		"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL",
		"AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_ENDPOINT_URL_STS", NULL };
	for (size_t i = 0; vars[i]; i++)
		unsetenv(vars[i]);
}

Test(aws_profile, credentials_file_wins_and_sections_are_exact)
{
	char sk[65];
	random_hex(sk, 32);
	char creds[600], conf[400];
	snprintf(creds, sizeof(creds),
	         "# comment\n[default]\naws_access_key_id = AKIADEFAULT0000000\n"
	         "aws_secret_access_key=nope\n\n[ops]\naws_access_key_id   =   AKIAOPS00000000000  \n"
	         "aws_secret_access_key = %s\n; another comment\n[ops2]\naws_session_token = x\n", sk);
	snprintf(conf, sizeof(conf),
	         "[default]\nregion = eu-west-1\n[profile ops]\nregion=ap-south-1\n"
	         "aws_access_key_id = AKIAFROMCONFIG0000\ns3 =\n  max_concurrent_requests = 10\n"
	         "[profile   ops ]\noutput = json\n");
	char *cp = write_temp(creds), *fp = write_temp(conf);
	struct aws_profile p;
	char why[200] = "";
	cr_assert_eq(aws_profile_load(cp, fp, "ops", &p, why, sizeof(why)), 0, "%s", why);
	cr_expect(p.found);
	cr_expect_str_eq(aws_profile_get(&p, "aws_access_key_id"), "AKIAOPS00000000000");
	cr_expect_str_eq(aws_profile_get(&p, "AWS_SECRET_ACCESS_KEY"), sk);
	cr_expect_str_eq(aws_profile_get(&p, "region"), "ap-south-1");
	cr_expect_str_eq(aws_profile_get(&p, "output"), "json");
	cr_expect_null(aws_profile_get(&p, "max_concurrent_requests"), "sub-settings are skipped");
	cr_expect_null(aws_profile_get(&p, "aws_session_token"), "ops2 is another profile");
	aws_profile_clear(&p);

	cr_assert_eq(aws_profile_load(cp, fp, "default", &p, why, sizeof(why)), 0);
	cr_expect_str_eq(aws_profile_get(&p, "region"), "eu-west-1", "[default] in config");
	aws_profile_clear(&p);

	cr_assert_eq(aws_profile_load(cp, fp, "missing", &p, why, sizeof(why)), 0);
	cr_expect_not(p.found);
	aws_profile_clear(&p);

	cr_assert_eq(aws_profile_load("/nonexistent/c", "/nonexistent/f", "x", &p, why, sizeof(why)), 0,
	             "missing files are fine");
	cr_expect_not(p.found);
	unlink(cp); unlink(fp); free(cp); free(fp);
}

Test(aws_profile, name_and_paths_from_environment)
{
	clear_aws_env();
	cr_expect_str_eq(aws_profile_name(NULL), "default");
	setenv("AWS_PROFILE", "envprof", 1);
	cr_expect_str_eq(aws_profile_name(NULL), "envprof");
	cr_expect_str_eq(aws_profile_name("cfg"), "cfg", "config wins");
	setenv("HOME", "/home/someone", 1);
	unsetenv("AWS_SHARED_CREDENTIALS_FILE");
	char *p = aws_credentials_file_path();
	cr_expect_str_eq(p, "/home/someone/.aws/credentials");
	free(p);
	setenv("AWS_CONFIG_FILE", "/etc/aws.conf", 1);
	p = aws_config_file_path();
	cr_expect_str_eq(p, "/etc/aws.conf");
	free(p);
	unsetenv("AWS_CONFIG_FILE");
	unsetenv("AWS_PROFILE");
}

Test(aws_parse, iso8601)
{
	cr_expect_eq(aws_parse_iso8601("2026-11-29T19:00:00Z"), 1795978800.0);
	cr_expect_eq(aws_parse_iso8601("2026-11-29T19:00:00.5Z"), 1795978800.5);
	cr_expect_eq(aws_parse_iso8601("2026-11-29T20:00:00+01:00"), 1795978800.0);
	cr_expect_eq(aws_parse_iso8601("2026-11-29T19:00:00"), -1, "no zone");
	cr_expect_eq(aws_parse_iso8601("yesterday"), -1);
	cr_expect_eq(aws_parse_iso8601("2026-11-29T19:00:00Zjunk"), -1);
}

Test(aws_parse, credentials_json)
{
	char sk[41], tok[121], body[600], why[200] = "";
	random_hex(sk, 20);
	random_hex(tok, 60);
	struct aws_credentials c;
	memset(&c, 0, sizeof(c));
	snprintf(body, sizeof(body),
	         "{\"Code\":\"Success\",\"Type\":\"AWS-HMAC\",\"AccessKeyId\":\"ASIATEST00000000\","
	         "\"SecretAccessKey\":\"%s\",\"Token\":\"%s\",\"Expiration\":\"2026-11-29T19:00:00Z\"}",
	         sk, tok);
	cr_assert_eq(aws_parse_credentials_json(body, strlen(body), &c, why, sizeof(why)), 0, "%s", why);
	cr_expect_str_eq(c.access_key_id, "ASIATEST00000000");
	cr_expect_str_eq((char *)c.secret_key->data, sk);
	cr_expect_str_eq((char *)c.session_token->data, tok);
	cr_expect_eq(c.expires_at, 1795978800.0);
	aws_credentials_clear(&c);

	const char *bad[] = {
		"{\"Code\":\"Failure\",\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"s\"}",
		"{\"AccessKeyId\":\"A\"}",
		"{\"AccessKeyId\":\"bad id!\",\"SecretAccessKey\":\"s\"}",
		"{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"s\",\"Expiration\":\"soon\"}",
		"not json", "[]",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why[0] = 0;
		cr_expect_eq(aws_parse_credentials_json(bad[i], strlen(bad[i]), &c, why, sizeof(why)), -EIO,
		             "case %zu", i);
		cr_expect(strlen(why) > 0);
		cr_expect_null(strstr(why, "\"s\""), "no secret in the reason");
	}
}

Test(aws_parse, sts_xml)
{
	char sk[41], tok[121], body[1200], why[300] = "";
	random_hex(sk, 20);
	random_hex(tok, 60);
	snprintf(body, sizeof(body),
	         "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">"
	         "<AssumeRoleWithWebIdentityResult><Credentials><SessionToken>%s</SessionToken>"
	         "<SecretAccessKey>%s</SecretAccessKey><Expiration>2026-11-29T19:00:00Z</Expiration>"
	         "<AccessKeyId>ASIASTS000000000</AccessKeyId></Credentials></AssumeRoleWithWebIdentityResult>"
	         "</AssumeRoleWithWebIdentityResponse>", tok, sk);
	struct aws_credentials c;
	memset(&c, 0, sizeof(c));
	cr_assert_eq(aws_parse_sts_response(200, body, strlen(body), &c, why, sizeof(why)), 0, "%s", why);
	cr_expect_str_eq(c.access_key_id, "ASIASTS000000000");
	cr_expect_str_eq((char *)c.secret_key->data, sk);
	cr_expect_str_eq((char *)c.session_token->data, tok);
	cr_expect_eq(c.expires_at, 1795978800.0);
	aws_credentials_clear(&c);

	const char *err = "<ErrorResponse><Error><Type>Sender</Type><Code>InvalidIdentityToken</Code>"
	                  "<Message>No OpenIDConnect provider found</Message></Error></ErrorResponse>";
	cr_expect_eq(aws_parse_sts_response(400, err, strlen(err), &c, why, sizeof(why)), -EACCES);
	cr_expect(strstr(why, "InvalidIdentityToken") && strstr(why, "No OpenIDConnect"), "%s", why);
	cr_expect_eq(aws_parse_sts_response(503, "", 0, &c, why, sizeof(why)), -EIO);
	cr_expect_eq(aws_parse_sts_response(200, "<x/>", 4, &c, why, sizeof(why)), -EIO);
}

Test(aws_parse, error_shapes)
{
	char code[64], msg[160];
	const char *a = "{\"__type\":\"com.amazonaws.secretsmanager#ResourceNotFoundException\","
	                "\"Message\":\"Secrets Manager can't find the specified secret.\"}";
	aws_parse_error(a, strlen(a), code, sizeof(code), msg, sizeof(msg));
	cr_expect_str_eq(code, "ResourceNotFoundException");
	cr_expect_str_eq(msg, "Secrets Manager can't find the specified secret.");
	const char *b = "{\"__type\":\"UnrecognizedClientException\",\"message\":\"The security token "
	                "included in the request is invalid.\\nx\"}";
	aws_parse_error(b, strlen(b), code, sizeof(code), msg, sizeof(msg));
	cr_expect_str_eq(code, "UnrecognizedClientException");
	cr_expect_str_eq(msg, "The security token included in the request is invalid.?x", "control chars replaced");
	aws_parse_error("<html>", 6, code, sizeof(code), msg, sizeof(msg));
	cr_expect_str_eq(code, "");
	cr_expect_str_eq(msg, "");
}

Test(aws_classify, codes_and_statuses)
{
	cr_expect_eq(aws_classify_error(200, ""), AWS_ERR_NONE);
	cr_expect_eq(aws_classify_error(400, "AccessDeniedException"), AWS_ERR_DENIED);
	cr_expect_eq(aws_classify_error(400, "UnrecognizedClientException"), AWS_ERR_AUTH);
	cr_expect_eq(aws_classify_error(400, "InvalidSignatureException"), AWS_ERR_AUTH);
	cr_expect_eq(aws_classify_error(400, "ExpiredTokenException"), AWS_ERR_AUTH);
	cr_expect_eq(aws_classify_error(400, "DecryptionFailure"), AWS_ERR_KMS);
	cr_expect_eq(aws_classify_error(400, "ResourceNotFoundException"), AWS_ERR_NOT_FOUND);
	cr_expect_eq(aws_classify_error(400, "ThrottlingException"), AWS_ERR_RETRY);
	cr_expect_eq(aws_classify_error(400, "TooManyRequestsException"), AWS_ERR_RETRY);
	cr_expect_eq(aws_classify_error(500, "InternalServiceError"), AWS_ERR_RETRY);
	cr_expect_eq(aws_classify_error(502, ""), AWS_ERR_RETRY);
	cr_expect_eq(aws_classify_error(400, "InvalidRequestException"), AWS_ERR_OTHER);
	cr_expect_eq(aws_classify_error(403, ""), AWS_ERR_AUTH);
	cr_expect(aws_error_refreshable("ExpiredTokenException"));
	cr_expect(aws_error_refreshable("UnrecognizedClientException"));
	cr_expect_not(aws_error_refreshable("AccessDeniedException"), "a policy does not change by refreshing");
}

static void expect_secret(const char *s, const char *want)
{
	struct secret *out = NULL;
	char why[200] = "";
	cr_assert_eq(aws_parse_secret_string(s, strlen(s), &out, why, sizeof(why)), 0, "%s", why);
	cr_expect_eq(out->len, strlen(want));
	cr_expect(!memcmp(out->data, want, out->len));
	secret_free(out);
}

Test(aws_parse, secret_string_shapes)
{
	char k[65], k2[65], doc[400];
	random_hex(k, 32);
	random_hex(k2, 32);
	snprintf(doc, sizeof(doc), "{\"value\":\"%s\",\"private_key\":\"%s\",\"network\":\"n\"}", k2, k);
	expect_secret(doc, k);
	snprintf(doc, sizeof(doc), "{\"private_key\":null,\"privateKey\":\"%s\",\"key\":\"%s\"}", k, k2);
	expect_secret(doc, k);
	snprintf(doc, sizeof(doc), "{\"key\":\"%s\",\"value\":\"%s\"}", k, k2);
	expect_secret(doc, k);
	snprintf(doc, sizeof(doc), "{\"value\":\"%s\"}", k);
	expect_secret(doc, k);
	snprintf(doc, sizeof(doc), "  0x%s\n", k);
	char want[70];
	snprintf(want, sizeof(want), "0x%s", k);
	expect_secret(doc, want);
	snprintf(doc, sizeof(doc), "\"%s\"", k);
	expect_secret(doc, k);

	struct secret *out = NULL;
	char why[200] = "";
	const char *bad[] = { "{\"network\":\"n\"}", "{\"private_key\":42}", "{\"private_key\":\"\"}", "  \n" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect_eq(aws_parse_secret_string(bad[i], strlen(bad[i]), &out, why, sizeof(why)), -EIO,
		             "case %zu", i);
}

Test(aws_resolve, region_order)
{
	clear_aws_env();
	const char *from;
	cr_expect_str_eq(aws_resolve_region(NULL, NULL, &from), "us-east-1");
	cr_expect_str_eq(from, "default");
	cr_expect_str_eq(aws_resolve_region(NULL, "ap-south-1", &from), "ap-south-1");
	cr_expect_str_eq(from, "profile");
	setenv("AWS_DEFAULT_REGION", "eu-west-2", 1);
	cr_expect_str_eq(aws_resolve_region(NULL, "ap-south-1", &from), "eu-west-2");
	setenv("AWS_REGION", "eu-west-3", 1);
	cr_expect_str_eq(aws_resolve_region(NULL, "ap-south-1", &from), "eu-west-3");
	cr_expect_str_eq(from, "AWS_REGION");
	cr_expect_str_eq(aws_resolve_region("us-west-2", "ap-south-1", &from), "us-west-2");
	cr_expect_str_eq(from, "config");
	clear_aws_env();
}

Test(aws_resolve, endpoint_order)
{
	clear_aws_env();
	char out[300];
	cr_assert_eq(aws_resolve_endpoint(NULL, "eu-west-1", out, sizeof(out)), 0);
	cr_expect_str_eq(out, "https://secretsmanager.eu-west-1.amazonaws.com");
	cr_assert_eq(aws_resolve_endpoint(NULL, "cn-north-1", out, sizeof(out)), 0);
	cr_expect_str_eq(out, "https://secretsmanager.cn-north-1.amazonaws.com.cn");
	cr_expect_eq(aws_resolve_endpoint(NULL, "Bad Region", out, sizeof(out)), -EINVAL);
	setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566/", 1);
	cr_assert_eq(aws_resolve_endpoint(NULL, "eu-west-1", out, sizeof(out)), 0);
	cr_expect_str_eq(out, "http://127.0.0.1:4566", "trailing slash dropped");
	setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", "https://sm.internal:8443", 1);
	cr_assert_eq(aws_resolve_endpoint(NULL, "eu-west-1", out, sizeof(out)), 0);
	cr_expect_str_eq(out, "https://sm.internal:8443");
	cr_assert_eq(aws_resolve_sts_endpoint("eu-west-1", out, sizeof(out)), 0);
	cr_expect_str_eq(out, "http://127.0.0.1:4566", "STS: the generic variable");
	cr_assert_eq(aws_resolve_endpoint("http://cfg:1", "eu-west-1", out, sizeof(out)), 0);
	cr_expect_str_eq(out, "http://cfg:1", "config wins");
	cr_expect_eq(aws_resolve_endpoint("ftp://x", "eu-west-1", out, sizeof(out)), -EINVAL);
	cr_expect_eq(aws_resolve_endpoint("http://x/path", "eu-west-1", out, sizeof(out)), -EINVAL);
	cr_expect_eq(aws_resolve_endpoint("http://x?q", "eu-west-1", out, sizeof(out)), -EINVAL);
	cr_expect_eq(aws_resolve_endpoint("http://", "eu-west-1", out, sizeof(out)), -EINVAL);
	clear_aws_env();
}

Test(aws_chain, environment_first_and_partial_keys_refused)
{
	clear_aws_env();
	char sk[41], why[300] = "";
	random_hex(sk, 20);
	setenv("AWS_ACCESS_KEY_ID", "AKIAENV00000000000", 1);
	struct aws_credentials c;
	struct aws_chain ch = { .http = NULL, .profile = NULL, .region = "us-east-1" };
	cr_expect_eq(aws_credentials_resolve(&ch, clock_monotonic() + 1, &c, why, sizeof(why)), -EACCES);
	cr_expect(strstr(why, "AWS_SECRET_ACCESS_KEY") != NULL, "%s", why);
	setenv("AWS_SECRET_ACCESS_KEY", sk, 1);
	setenv("AWS_SESSION_TOKEN", "tok123", 1);
	cr_assert_eq(aws_credentials_resolve(&ch, clock_monotonic() + 1, &c, why, sizeof(why)), 0, "%s", why);
	cr_expect_str_eq(c.access_key_id, "AKIAENV00000000000");
	cr_expect_str_eq((char *)c.session_token->data, "tok123");
	cr_expect_str_eq(c.source, "environment");
	cr_expect_eq(c.expires_at, 0);
	aws_credentials_clear(&c);
	clear_aws_env();
}

Test(aws_chain, broken_profile_is_reported_not_skipped)
{
	clear_aws_env();
	char *cp = write_temp("[p]\naws_access_key_id = AKIAONLYHALF000000\n");
	setenv("AWS_SHARED_CREDENTIALS_FILE", cp, 1);
	setenv("AWS_CONFIG_FILE", "/nonexistent/config", 1);
	setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
	struct aws_credentials c;
	char why[300] = "";
	struct aws_chain ch = { .http = NULL, .profile = "p", .region = "us-east-1" };
	cr_expect_eq(aws_credentials_resolve(&ch, clock_monotonic() + 1, &c, why, sizeof(why)), -EACCES);
	cr_expect(strstr(why, "profile p") != NULL, "%s", why);
	ch.profile = "nosuch";
	cr_expect_eq(aws_credentials_resolve(&ch, clock_monotonic() + 1, &c, why, sizeof(why)), -EACCES,
	             "an explicitly chosen profile must exist");
	ch.profile = NULL;   /* default: absent, so the chain goes on and finds nothing */
	cr_expect_eq(aws_credentials_resolve(&ch, clock_monotonic() + 1, &c, why, sizeof(why)), -ENOENT);
	unsetenv("AWS_SHARED_CREDENTIALS_FILE");
	unsetenv("AWS_CONFIG_FILE");
	unlink(cp);
	free(cp);
}

Test(aws_chain, container_url)
{
	char url[300];
	unsetenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
	unsetenv("AWS_CONTAINER_CREDENTIALS_FULL_URI");
	cr_expect_eq(aws_container_url(url, sizeof(url)), -ENOENT);
	setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://example.com/creds", 1);
	cr_expect_eq(aws_container_url(url, sizeof(url)), -EINVAL, "plain http off the host");
	const char *ok[] = { "https://example.com/creds", "http://127.0.0.1:51679/creds",
	                     "http://169.254.170.23/v1/credentials", "http://[fd00:ec2::23]/v1/credentials",
	                     "http://localhost:8080/x" };
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", ok[i], 1);
		cr_expect_eq(aws_container_url(url, sizeof(url)), 0, "%s", ok[i]);
		cr_expect_str_eq(url, ok[i]);
	}
	setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://169.254.170.20/x", 1);
	cr_expect_eq(aws_container_url(url, sizeof(url)), -EINVAL);
	setenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/credentials/abc", 1);
	cr_expect_eq(aws_container_url(url, sizeof(url)), 0, "relative wins");
	cr_expect_str_eq(url, "http://169.254.170.2/v2/credentials/abc");
	unsetenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
	unsetenv("AWS_CONTAINER_CREDENTIALS_FULL_URI");
}

/* Resolve profile p from a config file holding text; rc, why and c. */
static int resolve_config(const char *text, struct aws_credentials *c, char *why, size_t whylen)
{
	char *fp = write_temp(text);
	setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials", 1);
	setenv("AWS_CONFIG_FILE", fp, 1);
	struct aws_chain ch = { .http = NULL, .profile = "p", .region = "us-east-1" };
	int rc = aws_credentials_resolve(&ch, clock_monotonic() + 5, c, why, whylen);
	unlink(fp);
	free(fp);
	unsetenv("AWS_SHARED_CREDENTIALS_FILE");
	unsetenv("AWS_CONFIG_FILE");
	return rc;
}

/* Profiles that cannot give credentials fail with one line naming the
 * profile and the reason (botocore's checks), before any request. */
Test(aws_chain, profile_errors_are_one_named_line)
{
	clear_aws_env();
	const char *kinds[][2] = {
		{ "[profile p]\nsso_session = corp\n", "profile p uses SSO" },
		{ "[profile p]\nsso_start_url = https://x.awsapps.com/start\n", "does not support" },
		{ "[profile p]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = base\n",
		  "its source_profile base is in neither" },
		{ "[profile p]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = q\n"
		  "[profile q]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = p\n", "makes a loop" },
		{ "[profile p]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = p\n",
		  "its own source_profile but has no static keys" },
		{ "[profile p]\nrole_arn = arn:aws:iam::1:role/r\n", "neither source_profile nor" },
		{ "[profile p]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = q\n"
		  "credential_source = Environment\n", "both source_profile and credential_source" },
		{ "[profile p]\nrole_arn = arn:aws:iam::1:role/r\ncredential_source = Nowhere\n",
		  "credential_source Nowhere is not one of" },
		{ "[profile p]\nrole_arn = arn:aws:iam::1:role/r\ncredential_source = Environment\n",
		  "no credentials in credential_source Environment" },
		{ "[profile p]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = q\nmfa_serial = x\n",
		  "MFA" },
		{ "[profile p]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = q\n"
		  "duration_seconds = 1h\n", "duration_seconds is not a number" },
		{ "[profile p]\ncredential_process = /bin/true\n", "output is not a JSON object" },
		{ "[profile p]\ncredential_process = /bin/false\n", "exited with status 1" },
		{ "[profile p]\ncredential_process = 'unbalanced\n", "unbalanced quote" },
		{ "[profile p]\ncredential_process = /nonexistent/helper --x\n", "cannot be run" },
		{ "[profile p]\ncredential_process = sh -c 'echo \"{\\\"Version\\\": 2}\"'\n",
		  "unsupported Version" },
		{ "[profile p]\ncredential_process = sleep 30\n", "did not finish in time" },
		{ "[profile p]\ncredential_process = head -c 70000 /dev/zero\n", "more than 64 KiB" },
	};
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		struct aws_credentials c;
		char why[300] = "";
		double t0 = clock_monotonic();
		int rc = resolve_config(kinds[i][0], &c, why, sizeof(why));
		cr_expect(rc == -EACCES || rc == -ETIMEDOUT, "%zu: %d", i, rc);
		cr_expect(strstr(why, kinds[i][1]) && strstr(why, "profile p") && !strchr(why, '\n'),
		          "%zu: %s", i, why);
		cr_expect_lt(clock_monotonic() - t0, 6.0, "bounded by the deadline");
	}
}

/* credential_process as botocore runs it: words split like shlex, no
 * shell, Version 1 JSON; an Expiration makes the keys temporary. */
Test(aws_chain, credential_process_output_is_used)
{
	clear_aws_env();
	struct aws_credentials c;
	char why[300] = "";
	int rc = resolve_config("[profile p]\ncredential_process = sh -c 'printf \"%s\" "
	                        "\"$0\"' '{\"Version\": 1, \"AccessKeyId\": \"ASIAPROC000000000001\", "
	                        "\"SecretAccessKey\": \"s3cr3t\", \"SessionToken\": \"tok\", "
	                        "\"Expiration\": \"2030-01-01T00:00:00Z\"}'\n", &c, why, sizeof(why));
	cr_assert_eq(rc, 0, "%s", why);
	cr_expect_str_eq(c.access_key_id, "ASIAPROC000000000001");
	cr_expect_str_eq((const char *)c.secret_key->data, "s3cr3t");
	cr_expect_str_eq((const char *)c.session_token->data, "tok");
	cr_expect_eq(c.expires_at, 1893456000.0);
	cr_expect_str_eq(c.source, "profile p (process)");
	aws_credentials_clear(&c);
	/* static keys in the profile win over credential_process (botocore) */
	rc = resolve_config("[profile p]\naws_access_key_id = AKIASTATIC0000000001\n"
	                    "aws_secret_access_key = k\ncredential_process = /bin/false\n",
	                    &c, why, sizeof(why));
	cr_assert_eq(rc, 0, "%s", why);
	cr_expect_str_eq(c.access_key_id, "AKIASTATIC0000000001");
	cr_expect_eq(c.expires_at, 0);
	aws_credentials_clear(&c);
}

Test(aws_parsers, command_split_like_shlex)
{
	char **argv = NULL;
	cr_assert_eq(aws_split_command("  /usr/bin/helper --profile 'a b' \"c \\\"d\\\" \\x\" e\\ f g'h'\"i\" ",
	                               &argv), 0);
	const char *want[] = { "/usr/bin/helper", "--profile", "a b", "c \"d\" \\x", "e f", "ghi", NULL };
	for (size_t i = 0; want[i]; i++)
		cr_expect_str_eq(argv[i], want[i], "word %zu", i);
	cr_expect_null(argv[6]);
	aws_split_command_free(argv);
	cr_expect_eq(aws_split_command("a 'b", &argv), -EINVAL);
	cr_expect_eq(aws_split_command("a \"b", &argv), -EINVAL);
	cr_expect_eq(aws_split_command("a b\\", &argv), -EINVAL);
	cr_expect_eq(aws_split_command("   ", &argv), -EINVAL);
	cr_assert_eq(aws_split_command("echo $HOME;rm *", &argv), 0);
	cr_expect_str_eq(argv[1], "$HOME;rm", "no shell: nothing expands");
	aws_split_command_free(argv);
}

Test(aws_parsers, process_json)
{
	struct aws_credentials c;
	char why[200] = "";
	const char *ok = "{\"Version\":1,\"AccessKeyId\":\"AKIAPROC000000000001\",\"SecretAccessKey\":\"x\"}";
	memset(&c, 0, sizeof(c));
	cr_assert_eq(aws_parse_process_json(ok, strlen(ok), &c, why, sizeof(why)), 0, "%s", why);
	cr_expect_null(c.session_token);
	cr_expect_eq(c.expires_at, 0, "no Expiration: long-term");
	aws_credentials_clear(&c);
	const char *bad[] = {
		"{\"AccessKeyId\":\"AKIAPROC000000000001\",\"SecretAccessKey\":\"x\"}",
		"{\"Version\":\"1\",\"AccessKeyId\":\"AKIAPROC000000000001\",\"SecretAccessKey\":\"x\"}",
		"{\"Version\":1,\"SecretAccessKey\":\"topsecret\"}",
		"{\"Version\":1,\"AccessKeyId\":\"AKIAPROC000000000001\",\"SecretAccessKey\":\"topsecret\","
		"\"Expiration\":\"soon\"}",
		"[1]", "" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&c, 0, sizeof(c));
		cr_expect_eq(aws_parse_process_json(bad[i], strlen(bad[i]), &c, why, sizeof(why)), -EIO,
		             "%zu", i);
		cr_expect_null(strstr(why, "topsecret"));
	}
}

Test(aws_chain, instance_metadata_gets_one_second)
{
	clear_aws_env();
	/* A listener that accepts connections (the kernel does, from the
	 * backlog) but never answers: the link-local address off EC2. */
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	cr_assert(bind(s, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(s, 8) == 0);
	getsockname(s, (struct sockaddr *)&a, &al);
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", ntohs(a.sin_port));
	setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", url, 1);
	unsetenv("AWS_EC2_METADATA_DISABLED");
	setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials", 1);
	setenv("AWS_CONFIG_FILE", "/nonexistent/config", 1);
	struct http_client_opts o = { .timeout_seconds = 10 };
	struct http_client *http = NULL;
	cr_assert_eq(http_client_new(&o, &http, NULL, 0), 0);
	struct aws_chain ch = { .http = http, .profile = NULL, .region = "us-east-1" };
	struct aws_credentials c;
	char why[300] = "";
	double t0 = clock_monotonic();
	int rc = aws_credentials_resolve(&ch, t0 + 10, &c, why, sizeof(why));
	double took = clock_monotonic() - t0;
	cr_expect_eq(rc, -ENOENT, "%s", why);
	cr_expect(strstr(why, "instance metadata unreachable") != NULL, "%s", why);
	cr_expect(took >= 0.9 && took < 5.0, "took %.2f s (the deadline was 10 s)", took);
	http_client_free(http);
	close(s);
	unsetenv("AWS_EC2_METADATA_SERVICE_ENDPOINT");
	unsetenv("AWS_SHARED_CREDENTIALS_FILE");
	unsetenv("AWS_CONFIG_FILE");
}

/* issue 15 (s3-15a): GetSecretValue's answer in one pass: the SecretString
 * (an escaped JSON document inside a JSON string) down to the key, and
 * CreatedDate for the key-age gauge. */
Test(aws_parse, get_secret_value_answer)
{
	char k[65], doc[800], why[200] = "";
	random_hex(k, 32);
	snprintf(doc, sizeof(doc),
	         "{\"ARN\":\"arn:aws:secretsmanager:eu-west-1:1:secret:omikuji/eth-AbCdEf\","
	         "\"Name\":\"omikuji/eth\",\"VersionId\":\"v1\",\"SecretString\":"
	         "\"{\\\"private_key\\\": \\\"0x%s\\\", \\\"network\\\": \\\"eth\\\"}\","
	         "\"VersionStages\":[\"AWSCURRENT\"],\"CreatedDate\":1764452711.523}", k);
	struct secret *out = NULL;
	double created = 0;
	cr_assert_eq(aws_parse_get_secret_value(doc, strlen(doc), &out, &created, why, sizeof(why)), 0,
	             "%s", why);
	cr_assert_not_null(out);
	cr_expect_eq(out->len, 66);
	cr_expect(!memcmp(out->data, "0x", 2) && !memcmp(out->data + 2, k, 64));
	cr_expect(created > 1764452711.5 && created < 1764452711.6, "CreatedDate %f", created);
	secret_free(out);

	/* No CreatedDate: 0, the key still read. */
	snprintf(doc, sizeof(doc), "{\"SecretString\":\"0x%s\"}", k);
	cr_assert_eq(aws_parse_get_secret_value(doc, strlen(doc), &out, &created, why, sizeof(why)), 0);
	cr_expect_eq(created, 0);
	secret_free(out);

	/* Not JSON, SecretString missing or not a string, a malformed inner
	 * document that is then the key itself only when it is not JSON at all. */
	const char *bad[] = { "", "{\"SecretString\":", "{\"SecretBinary\":\"AAAA\"}",
	                      "{\"SecretString\":7}", "[\"SecretString\"]",
	                      "{\"SecretString\":\"{\\\"private_key\\\":\\\"\\\"}\"}" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		out = NULL;
		cr_expect_eq(aws_parse_get_secret_value(bad[i], strlen(bad[i]), &out, &created, why,
		                                        sizeof(why)), -EIO, "case %zu", i);
		cr_expect_null(out, "case %zu", i);
	}
}
