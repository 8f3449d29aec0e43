/* aws_internal.h - the pieces of the AWS Secrets Manager backend that unit
 * tests check without a server: the credential chain and its parsers
 * (shared files, STS XML, credential JSON, timestamps), region and endpoint
 * resolution, error classification and the SecretString format.  Not an
 * interface for other modules: the fs layer only sees aws_backend_ops.
 *
 * Nothing here logs or copies into `why` a secret key, a session token, a
 * web identity token or a response body.  Buffers that held one are wiped.
 */
#ifndef OMIKUJI_AWS_INTERNAL_H
#define OMIKUJI_AWS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>
#include <pthread.h>
#include <time.h>
#include "secret.h"

struct http_client;

/* Parse a JSON body (any JSON value): NULL when empty, too large or malformed (the parser's
 * error text, which may quote the body, is wiped).  Free with
 * secret_json_free(). */
json_t *aws_json_load(const void *body, size_t len);

/* ---- credentials ------------------------------------------------------------ */

struct aws_credentials {
	char access_key_id[128];
	struct secret *secret_key;      /* NULL when none */
	struct secret *session_token;   /* NULL for long-term keys */
	double expires_at;              /* wall seconds; 0 = does not expire */
	char source[96];                /* "environment", "profile NAME", "web-identity",
	                                 * "container", "imds" (health/aws shows it) */
};

/* Wipe and free what c holds; c is empty after. */
void aws_credentials_clear(struct aws_credentials *c);

/* What the chain needs besides the environment (read with getenv at each
 * resolution, so a rotated token or credentials file is picked up). */
struct aws_chain {
	struct http_client *http;   /* for STS, container and IMDS */
	const char *profile;        /* config's `profile:`, NULL = $AWS_PROFILE or "default" */
	const char *region;         /* the resolved region (STS's regional endpoint) */
};

/* The credential chain, in the order of the AWS SDKs (aws-sdk-rust's
 * DefaultCredentialsChain): environment; the shared credentials and config
 * files' profile, in botocore's order within it (role_arn with
 * source_profile or credential_source -> STS AssumeRole; role_arn +
 * web_identity_token_file; SSO, refused; static keys; credential_process);
 * web identity from AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN (STS
 * AssumeRoleWithWebIdentity); ECS/EKS container credentials; EC2 IMDSv2.
 * The first source that is configured decides: its failure is the answer
 * (a broken profile does not fall through to the instance's role).  0 with
 * *out filled, -ENOENT when no source is configured, -EACCES when a source
 * refused, -EIO/-ETIMEDOUT when it could not be reached.  why gets a
 * one-line reason naming the source. */
int aws_credentials_resolve(const struct aws_chain *chain, double deadline,
                            struct aws_credentials *out, char *why, size_t whylen);

/* Their lifetime (renewal at 2/3 of it, expiry) is kept by the shared
 * credential helper, util/credential.h, in aws.c. */

/* The container credentials URL: http://169.254.170.2 + $AWS_CONTAINER_
 * CREDENTIALS_RELATIVE_URI, else $AWS_CONTAINER_CREDENTIALS_FULL_URI when it
 * is https or http to loopback or the ECS/EKS addresses.  0, -ENOENT (neither
 * set), -EINVAL (a FULL_URI elsewhere over http), -ENAMETOOLONG. */
int aws_container_url(char *out, size_t outlen);

/* ---- shared files ------------------------------------------------------------ */

/* The key/value pairs of one profile: values may hold secrets and are wiped
 * by aws_profile_clear(). */
struct aws_profile {
	char **keys;
	char **values;
	size_t n;
	bool found;       /* the profile's section exists in some file */
};

/* Read profile `name` from the shared credentials file (section [name]) and
 * the config file ([profile name], or [default]); a key in the credentials
 * file wins.  Missing files are fine.  0, or -errno with why set when a
 * file exists but cannot be read. */
int aws_profile_load(const char *credentials_path, const char *config_path, const char *name,
                     struct aws_profile *out, char *why, size_t whylen);
/* The value of key (case-insensitive), NULL when absent. */
const char *aws_profile_get(const struct aws_profile *p, const char *key);
void aws_profile_clear(struct aws_profile *p);
/* $AWS_SHARED_CREDENTIALS_FILE / $AWS_CONFIG_FILE, else ~/.aws/credentials and
 * ~/.aws/config; malloc'd. */
char *aws_credentials_file_path(void);
char *aws_config_file_path(void);
/* The profile name in use: config's, else $AWS_PROFILE, else "default". */
const char *aws_profile_name(const char *configured);

/* ---- parsers ------------------------------------------------------------------ */

/* "2026-11-29T19:00:00Z", with optional fraction and "+00:00" style offset ->
 * wall seconds; -1 when malformed (clock_parse_rfc3339, NULL-safe). */
double aws_parse_iso8601(const char *s);

/* The credentials JSON of IMDS and the container endpoint:
 * AccessKeyId, SecretAccessKey, Token, Expiration (IMDS also Code =
 * "Success").  0 or -EIO. */
int aws_parse_credentials_json(const void *body, size_t len, struct aws_credentials *out,
                               char *why, size_t whylen);

/* A credential_process's output (botocore's ProcessProvider): JSON with
 * Version 1, AccessKeyId, SecretAccessKey, optional SessionToken and
 * Expiration.  0, -EIO with why (never quoting the output), -ENOMEM. */
int aws_parse_process_json(const void *body, size_t len, struct aws_credentials *out,
                           char *why, size_t whylen);

/* Split a credential_process command into words as botocore does
 * (shlex.split, POSIX mode, no comments): blanks separate; '...' is
 * literal; in "..." a backslash escapes only \ " $ ` and newline; outside
 * quotes it escapes any character.  No shell runs it: no variables, globs
 * or pipes.  0 with a NULL-terminated argv (free with
 * aws_split_command_free), -EINVAL (empty, unbalanced quote, trailing
 * backslash), -ENOMEM. */
int aws_split_command(const char *s, char ***argv_out);
void aws_split_command_free(char **argv);

/* STS AssumeRole's and AssumeRoleWithWebIdentity's XML answer.  200: Credentials' four
 * members; otherwise the Error Code and Message into why, -EACCES for
 * 4xx, -EIO else. */
int aws_parse_sts_response(long status, const char *body, size_t len,
                           struct aws_credentials *out, char *why, size_t whylen);

/* A Secrets Manager JSON error: __type (after any '#') into code, message
 * or Message into message (printable ASCII only, truncated).  Both "" when
 * the body is not such an error. */
void aws_parse_error(const void *body, size_t len, char *code, size_t codelen,
                     char *message, size_t messagelen);

/* A SecretString in Omikuji's layout: a JSON object's private_key, else
 * privateKey, key, value (first present and not null; must be a non-empty
 * string); anything that is not a JSON object is the key itself, trimmed
 * (a JSON string is unquoted).  0, -EIO with why, -ENOMEM. */
int aws_parse_secret_string(const void *s, size_t len, struct secret **out,
                            char *why, size_t whylen);

/* A GetSecretValue answer (status 200): its SecretString through
 * aws_parse_secret_string(), and CreatedDate (epoch seconds, the version's
 * creation) into *created (may be NULL; 0 when absent).  One pass, no
 * jansson tree: the key goes straight into the locked *out.  0, -EIO with
 * why ("secret has no SecretString", or the SecretString's reason), -ENOMEM. */
int aws_parse_get_secret_value(const void *body, size_t len, struct secret **out,
                               double *created, char *why, size_t whylen);

/* ---- classification ------------------------------------------------------------ */

enum aws_error_class {
	AWS_ERR_NONE,
	AWS_ERR_AUTH,          /* refused credentials or signature: EACCES, counted */
	AWS_ERR_DENIED,        /* AccessDeniedException: EACCES, counted */
	AWS_ERR_KMS,           /* DecryptionFailure: EACCES */
	AWS_ERR_NOT_FOUND,     /* ResourceNotFoundException: ENOENT */
	AWS_ERR_RETRY,         /* throttling, 5xx: retried, then EIO */
	AWS_ERR_OTHER,         /* EIO */
};
enum aws_error_class aws_classify_error(long status, const char *code);
/* AWS_ERR_AUTH codes where fresh credentials may help (expired, unknown). */
bool aws_error_refreshable(const char *code);

/* ---- region and endpoint ---------------------------------------------------------- */

/* The first non-empty of configured, $AWS_REGION, $AWS_DEFAULT_REGION,
 * profile_region, else "us-east-1".  *from names where it came from. */
const char *aws_resolve_region(const char *configured, const char *profile_region,
                               const char **from);
/* The Secrets Manager endpoint: configured, $AWS_ENDPOINT_URL_SECRETS_MANAGER,
 * $AWS_ENDPOINT_URL, else https://secretsmanager.REGION.amazonaws.com
 * (.amazonaws.com.cn for cn- regions).  Trailing slashes dropped.  0,
 * -EINVAL (not http/https, or holds a path, query or spaces), -ENAMETOOLONG. */
int aws_resolve_endpoint(const char *configured, const char *region, char *out, size_t outlen);
/* Same for STS ($AWS_ENDPOINT_URL_STS, $AWS_ENDPOINT_URL, regional). */
int aws_resolve_sts_endpoint(const char *region, char *out, size_t outlen);

/* ---- request signing (aws_sigv4.c) ------------------------------------------------ */

/* AWS Signature Version 4 of a Secrets Manager JSON 1.1 request (POST /,
 * no query), signing content-type, host, x-amz-date, x-amz-security-token
 * (when there is a session token) and x-amz-target, as botocore does.  The
 * signing key (four HMAC rounds over the secret key, the date, the region
 * and the service) is valid for one UTC day: it is derived when the date,
 * the credentials' generation or access key id changes, and kept as a keyed
 * HMAC state in a locked secret.  Thread-safe. */
struct aws_sigv4 {
	pthread_mutex_t lock;
	char region[72];
	char service[32];
	struct secret *cache;          /* locked: the keyed signing-key state */
	unsigned long derivations;     /* signing keys derived so far (tests) */
};

struct aws_sigv4_request {
	const char *access_key_id;
	const char *secret_key;        /* borrowed; read only on a derivation */
	const char *session_token;     /* NULL: long-term keys */
	unsigned generation;           /* the credentials' (credential_snapshot) */
	const char *host;              /* the Host header's value, sent as given */
	const char *content_type;
	const char *target;            /* X-Amz-Target's value */
	const void *body;              /* the exact bytes sent */
	size_t body_len;
};

/* The two header lines to send with the request (besides Host, Content-Type,
 * X-Amz-Target and X-Amz-Security-Token, which the caller sends as given). */
struct aws_sigv4_out {
	char date_header[80];          /* "X-Amz-Date: YYYYMMDDTHHMMSSZ" */
	char authorization[512];       /* "Authorization: AWS4-HMAC-SHA256 ..." */
};

/* 0, -EINVAL (a name too long), -ENOMEM.  Free with aws_sigv4_free(). */
int aws_sigv4_init(struct aws_sigv4 *s, const char *region, const char *service);
void aws_sigv4_free(struct aws_sigv4 *s);
/* Sign r as of now (UTC seconds; injectable for tests).  0, -EINVAL,
 * -ENAMETOOLONG (an access key id too long for the header). */
int aws_sigv4_sign(struct aws_sigv4 *s, const struct aws_sigv4_request *r, time_t now,
                   struct aws_sigv4_out *out);

#endif
