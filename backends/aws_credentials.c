/* aws_credentials.c - where the AWS backend's credentials come from: the
 * chain of the AWS SDKs (environment, shared files, web identity, container,
 * IMDSv2), the shared-file parser, and the parsers of what the credential
 * endpoints answer.  Region and endpoint resolution live here too: they read
 * the same environment and profile.
 *
 * Choices worth knowing:
 *   - The order is aws-sdk-rust's DefaultCredentialsChain; the first source
 *     that is configured decides, so a broken profile is reported instead of
 *     silently using the instance's role.
 *   - The environment and the files are read at every resolution, so a
 *     rotated web identity token (EKS rewrites it) or credentials file is
 *     picked up on the next refresh.
 *   - IMDS gets at most one second per request (as the SDKs): on a machine
 *     that is not on EC2 the link-local address does not answer.
 *   - Supported profile keys: aws_access_key_id, aws_secret_access_key,
 *     aws_session_token, region, role_arn with source_profile or
 *     credential_source (+ role_session_name, external_id,
 *     duration_seconds), role_arn + web_identity_token_file,
 *     credential_process.  Precedence inside a profile, loop rules and the
 *     command split follow botocore (credentials.py).  A profile using
 *     sso_* or mfa_serial is refused with one line: a daemon can neither
 *     open a browser nor type a code.
 */
#include "aws_internal.h"
#include "backend.h"
#include "clock.h"
#include "http.h"
#include "json_pick.h"
#include "secret_file.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

extern char **environ;
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <jansson.h>

#define AWS_FILE_MAX (1024 * 1024)
#define AWS_IMDS_DEFAULT "http://169.254.169.254"
#define AWS_ECS_HOST "http://169.254.170.2"
#define AWS_IMDS_SECONDS 1.0

static const char *aws_env(const char *name)
{
	const char *v = getenv(name);
	return v && *v ? v : NULL;
}

void aws_credentials_clear(struct aws_credentials *c)
{
	secret_free(c->secret_key);
	secret_free(c->session_token);
	secret_wipe(c, sizeof(*c));
	memset(c, 0, sizeof(*c));
}

/* ---- files -------------------------------------------------------------------- */

/* A whole (small) file that may hold keys: the shared files.  -ENOENT
 * (why not set) when it does not exist: the SDKs skip missing files. */
static int aws_read_file(const char *path, struct secret **out, char *why, size_t whylen)
{
	char inner[200] = "";
	int rc = secret_file_read(path, AWS_FILE_MAX, 0, out, inner, sizeof(inner));
	if (rc && rc != -ENOENT)
		backend_why(why, whylen, "%s", inner);
	return rc;
}

/* A token file: trimmed, printable, non-empty. */
static int aws_read_token_file(const char *path, struct secret **out, char *why, size_t whylen)
{
	return secret_file_read(path, AWS_FILE_MAX, SECRET_FILE_TOKEN, out, why, whylen);
}

static char *aws_home_path(const char *suffix)
{
	const char *home = getenv("HOME");
	char *p = NULL;
	if (!home || !*home)
		home = "/";
	if (asprintf(&p, "%s%s", strcmp(home, "/") ? home : "", suffix) < 0)
		return NULL;
	return p;
}

char *aws_credentials_file_path(void)
{
	const char *e = aws_env("AWS_SHARED_CREDENTIALS_FILE");
	return e ? strdup(e) : aws_home_path("/.aws/credentials");
}

char *aws_config_file_path(void)
{
	const char *e = aws_env("AWS_CONFIG_FILE");
	return e ? strdup(e) : aws_home_path("/.aws/config");
}

const char *aws_profile_name(const char *configured)
{
	if (configured && *configured)
		return configured;
	const char *e = aws_env("AWS_PROFILE");
	return e ? e : "default";
}

static void aws_trim(char **a, char **z)
{
	while (*a < *z && isspace((unsigned char)**a))
		(*a)++;
	while (*z > *a && isspace((unsigned char)(*z)[-1]))
		(*z)--;
}

static int aws_profile_set(struct aws_profile *p, const char *k, size_t kl, const char *v,
                           size_t vl, bool overwrite)
{
	for (size_t i = 0; i < p->n; i++) {
		if (strlen(p->keys[i]) == kl && strncasecmp(p->keys[i], k, kl) == 0) {
			if (!overwrite)
				return 0;
			char *nv = strndup(v, vl);
			if (!nv)
				return -ENOMEM;
			secret_wipe(p->values[i], strlen(p->values[i]));
			free(p->values[i]);
			p->values[i] = nv;
			return 0;
		}
	}
	char **nk = realloc(p->keys, (p->n + 1) * sizeof(*nk));
	if (!nk)
		return -ENOMEM;
	p->keys = nk;
	char **nv = realloc(p->values, (p->n + 1) * sizeof(*nv));
	if (!nv)
		return -ENOMEM;
	p->values = nv;
	p->keys[p->n] = strndup(k, kl);
	p->values[p->n] = strndup(v, vl);
	if (!p->keys[p->n] || !p->values[p->n]) {
		free(p->keys[p->n]);
		free(p->values[p->n]);
		return -ENOMEM;
	}
	p->n++;
	return 0;
}

/* Parse one INI file, adding the keys of the first matching section name
 * (section names compared after collapsing inner blanks).  Keys already
 * present stay unless overwrite. */
static int aws_ini_section(const struct secret *text, const char *const *names,
                           struct aws_profile *p, bool overwrite)
{
	char *s = (char *)text->data, *end = s + text->len;
	bool in = false;
	while (s < end) {
		char *eol = memchr(s, '\n', (size_t)(end - s));
		if (!eol)
			eol = end;
		char *a = s, *z = eol;
		bool indented = a < z && (*a == ' ' || *a == '\t');
		s = eol + 1;
		aws_trim(&a, &z);
		if (a == z || *a == '#' || *a == ';')
			continue;
		if (*a == '[') {
			in = false;
			char *close = memchr(a, ']', (size_t)(z - a));
			if (!close)
				continue;
			char *na = a + 1, *nz = close;
			aws_trim(&na, &nz);
			char name[256];
			size_t o = 0;
			/* "profile   x" == "profile x" */
			for (char *q = na; q < nz && o + 1 < sizeof(name); q++) {
				if (isspace((unsigned char)*q)) {
					if (o && name[o - 1] != ' ')
						name[o++] = ' ';
				} else {
					name[o++] = *q;
				}
			}
			name[o] = 0;
			for (size_t i = 0; names[i]; i++)
				if (!strcmp(name, names[i]))
					in = true;
			if (in)
				p->found = true;
			continue;
		}
		if (!in || indented)
			continue;   /* indented lines are sub-settings (s3 = ...) */
		char *eq = memchr(a, '=', (size_t)(z - a));
		if (!eq)
			continue;
		char *ka = a, *kz = eq, *va = eq + 1, *vz = z;
		aws_trim(&ka, &kz);
		aws_trim(&va, &vz);
		if (ka == kz)
			continue;
		int rc = aws_profile_set(p, ka, (size_t)(kz - ka), va, (size_t)(vz - va), overwrite);
		if (rc)
			return rc;
	}
	return 0;
}

int aws_profile_load(const char *credentials_path, const char *config_path, const char *name,
                     struct aws_profile *out, char *why, size_t whylen)
{
	memset(out, 0, sizeof(*out));
	struct secret *text = NULL;
	int rc = 0;
	if (credentials_path) {
		rc = aws_read_file(credentials_path, &text, why, whylen);
		if (rc == 0) {
			const char *names[] = { name, NULL };
			rc = aws_ini_section(text, names, out, true);
			secret_free(text);
			text = NULL;
		} else if (rc == -ENOENT) {
			rc = 0;
		}
	}
	if (!rc && config_path) {
		rc = aws_read_file(config_path, &text, why, whylen);
		if (rc == 0) {
			char prof[300];
			snprintf(prof, sizeof(prof), "profile %s", name);
			const char *names[] = { prof, !strcmp(name, "default") ? "default" : NULL, NULL };
			rc = aws_ini_section(text, names, out, false);
			secret_free(text);
		} else if (rc == -ENOENT) {
			rc = 0;
		}
	}
	if (rc == -ENOMEM)
		backend_why(why, whylen, "out of memory");
	if (rc)
		aws_profile_clear(out);
	return rc;
}

const char *aws_profile_get(const struct aws_profile *p, const char *key)
{
	for (size_t i = 0; i < p->n; i++)
		if (!strcasecmp(p->keys[i], key))
			return p->values[i][0] ? p->values[i] : NULL;
	return NULL;
}

void aws_profile_clear(struct aws_profile *p)
{
	for (size_t i = 0; i < p->n; i++) {
		free(p->keys[i]);
		secret_wipe(p->values[i], strlen(p->values[i]));
		free(p->values[i]);
	}
	free(p->keys);
	free(p->values);
	memset(p, 0, sizeof(*p));
}

/* ---- parsers -------------------------------------------------------------------- */

double aws_parse_iso8601(const char *s)
{
	double t;
	return s && clock_parse_rfc3339(s, strlen(s), &t) == 0 ? t : -1;
}

static bool aws_key_id_ok(const char *s, size_t len)
{
	if (len == 0 || len >= sizeof(((struct aws_credentials *)0)->access_key_id))
		return false;
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)s[i]))
			return false;
	return true;
}

static bool aws_printable(const char *s, size_t len)
{
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
			return false;
	return true;
}

/* Fill out from the three strings (borrowed); expiration may be NULL. */
static int aws_credentials_set(struct aws_credentials *out, const char *ak, size_t akl,
                               const char *sk, size_t skl, const char *tok, size_t tokl,
                               const char *expiration, char *why, size_t whylen)
{
	if (!aws_key_id_ok(ak, akl)) {
		backend_why(why, whylen, "malformed access key id");
		return -EIO;
	}
	if (!aws_printable(sk, skl) || (tok && !aws_printable(tok, tokl))) {
		backend_why(why, whylen, "malformed secret key or session token");
		return -EIO;
	}
	double exp = 0;
	if (expiration) {
		exp = aws_parse_iso8601(expiration);
		if (exp < 0) {
			backend_why(why, whylen, "malformed Expiration");
			return -EIO;
		}
	}
	memcpy(out->access_key_id, ak, akl);
	out->access_key_id[akl] = 0;
	out->secret_key = secret_from(sk, skl);
	out->session_token = tok ? secret_from(tok, tokl) : NULL;
	if (!out->secret_key || (tok && !out->session_token)) {
		aws_credentials_clear(out);
		return -ENOMEM;
	}
	out->expires_at = exp;
	return 0;
}

json_t *aws_json_load(const void *body, size_t len)
{
	if (!body || !len || len > HTTP_BODY_MAX)
		return NULL;
	json_error_t e;
	json_t *j = json_loadb(body, len, JSON_DECODE_ANY, &e);
	secret_wipe(&e, sizeof(e));   /* e.text may quote the input */
	return j;
}

/* The members of a credentials object: AccessKeyId, SecretAccessKey, the
 * session token under token_member, optional Expiration.  `what` names
 * the answer in the reason. */
static int aws_credentials_from_json(json_t *root, const char *token_member, const char *what,
                                     struct aws_credentials *out, char *why, size_t whylen)
{
	json_t *ak = json_object_get(root, "AccessKeyId");
	json_t *sk = json_object_get(root, "SecretAccessKey");
	json_t *tok = json_object_get(root, token_member);
	json_t *exp = json_object_get(root, "Expiration");
	if (!json_is_string(ak) || !json_is_string(sk)) {
		backend_why(why, whylen, "%s lacks AccessKeyId or SecretAccessKey", what);
		return -EIO;
	}
	if ((tok && !json_is_null(tok) && !json_is_string(tok)) ||
	    (exp && !json_is_null(exp) && !json_is_string(exp))) {
		backend_why(why, whylen, "%s: %s and Expiration must be strings", what, token_member);
		return -EIO;
	}
	bool has_tok = json_is_string(tok);
	return aws_credentials_set(out, json_string_value(ak), json_string_length(ak),
	                           json_string_value(sk), json_string_length(sk),
	                           has_tok ? json_string_value(tok) : NULL,
	                           has_tok ? json_string_length(tok) : 0,
	                           json_is_string(exp) ? json_string_value(exp) : NULL, why, whylen);
}

int aws_parse_credentials_json(const void *body, size_t len, struct aws_credentials *out,
                               char *why, size_t whylen)
{
	int rc = -EIO;
	json_t *root = aws_json_load(body, len);
	json_t *code = json_object_get(root, "Code");
	if (!json_is_object(root))
		backend_why(why, whylen, "credentials answer is not a JSON object");
	else if (code && (!json_is_string(code) || strcmp(json_string_value(code), "Success")))
		backend_why(why, whylen, "credentials answer Code is not Success");
	else
		rc = aws_credentials_from_json(root, "Token", "credentials answer", out, why, whylen);
	secret_json_free(root);
	return rc;
}

int aws_parse_process_json(const void *body, size_t len, struct aws_credentials *out,
                           char *why, size_t whylen)
{
	int rc = -EIO;
	json_t *root = aws_json_load(body, len);
	json_t *ver = json_object_get(root, "Version");
	if (!json_is_object(root))
		backend_why(why, whylen, "output is not a JSON object");
	else if (!json_is_integer(ver) || json_integer_value(ver) != 1)
		backend_why(why, whylen, "unsupported Version (supported: 1)");
	else
		rc = aws_credentials_from_json(root, "SessionToken", "output", out, why, whylen);
	secret_json_free(root);
	return rc;
}

/* The text of <tag>...</tag> inside [s, end), NULL when absent. */
static const char *aws_xml_find(const char *s, const char *end, const char *tag, size_t *len)
{
	char open[64], close[64];
	snprintf(open, sizeof(open), "<%s>", tag);
	snprintf(close, sizeof(close), "</%s>", tag);
	const char *a = memmem(s, (size_t)(end - s), open, strlen(open));
	if (!a)
		return NULL;
	a += strlen(open);
	const char *z = memmem(a, (size_t)(end - a), close, strlen(close));
	if (!z)
		return NULL;
	*len = (size_t)(z - a);
	return a;
}

static void aws_copy_printable(char *dst, size_t dstlen, const char *s, size_t len)
{
	size_t o = 0;
	for (size_t i = 0; i < len && o + 1 < dstlen; i++)
		dst[o++] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
	if (dstlen)
		dst[o] = 0;
}

int aws_parse_sts_response(long status, const char *body, size_t len,
                           struct aws_credentials *out, char *why, size_t whylen)
{
	const char *end = body ? body + len : NULL;
	size_t l1 = 0, l2 = 0, l3 = 0, l4 = 0;
	if (status != 200) {
		char code[64] = "", msg[160] = "";
		const char *c = body ? aws_xml_find(body, end, "Code", &l1) : NULL;
		const char *m = body ? aws_xml_find(body, end, "Message", &l2) : NULL;
		if (c)
			aws_copy_printable(code, sizeof(code), c, l1);
		if (m)
			aws_copy_printable(msg, sizeof(msg), m, l2);
		backend_why(why, whylen, "STS refused: %s%s%s (HTTP %ld)",
		        code[0] ? code : "error", msg[0] ? ": " : "", msg, status);
		return status >= 400 && status < 500 ? -EACCES : -EIO;
	}
	const char *cs = body ? aws_xml_find(body, end, "Credentials", &l1) : NULL;
	if (!cs) {
		backend_why(why, whylen, "STS answer has no Credentials");
		return -EIO;
	}
	const char *ce = cs + l1;
	const char *ak = aws_xml_find(cs, ce, "AccessKeyId", &l1);
	const char *sk = aws_xml_find(cs, ce, "SecretAccessKey", &l2);
	const char *tok = aws_xml_find(cs, ce, "SessionToken", &l3);
	const char *exp = aws_xml_find(cs, ce, "Expiration", &l4);
	if (!ak || !sk || !tok || !exp || l4 >= 64) {
		backend_why(why, whylen, "STS answer lacks a credential member");
		return -EIO;
	}
	char expiration[64];
	memcpy(expiration, exp, l4);
	expiration[l4] = 0;
	return aws_credentials_set(out, ak, l1, sk, l2, tok, l3, expiration, why, whylen);
}

void aws_parse_error(const void *body, size_t len, char *code, size_t codelen,
                     char *message, size_t messagelen)
{
	if (codelen)
		code[0] = 0;
	if (messagelen)
		message[0] = 0;
	json_t *root = aws_json_load(body, len);
	if (!json_is_object(root))
		goto out;
	json_t *t = json_object_get(root, "__type");
	if (json_is_string(t)) {
		const char *v = json_string_value(t);
		const char *hash = strrchr(v, '#');
		v = hash ? hash + 1 : v;
		aws_copy_printable(code, codelen, v, strlen(v));
	}
	json_t *m = json_object_get(root, "message");
	if (!json_is_string(m))
		m = json_object_get(root, "Message");
	if (json_is_string(m))
		aws_copy_printable(message, messagelen, json_string_value(m), json_string_length(m));
out:
	secret_json_free(root);
}

static const char *const aws_p_root[] = { NULL };
static const char *const aws_p_private_key[] = { "private_key", NULL };
static const char *const aws_p_private_key2[] = { "privateKey", NULL };
static const char *const aws_p_key[] = { "key", NULL };
static const char *const aws_p_value[] = { "value", NULL };

/* One pass of json_pick() (json_pick.h: not jansson, on the read path):
 * the key field goes straight into a locked secret. */
int aws_parse_secret_string(const void *s, size_t len, struct secret **out,
                            char *why, size_t whylen)
{
	static const char *const fields[] = { "private_key", "privateKey", "key", "value" };
	struct secret *vals[4] = { NULL, NULL, NULL, NULL }, *str = NULL;
	struct json_pick p[] = {
		{ .path = aws_p_root, .secret = &str },
		{ .path = aws_p_private_key, .secret = &vals[0] },
		{ .path = aws_p_private_key2, .secret = &vals[1] },
		{ .path = aws_p_key, .secret = &vals[2] },
		{ .path = aws_p_value, .secret = &vals[3] },
	};
	*out = NULL;
	int rc = -EIO;
	int prc = s && len && len <= HTTP_BODY_MAX ? json_pick(s, len, p, 5, NULL, 0) : -EINVAL;
	if (prc == -ENOMEM)
		return -ENOMEM;
	if (prc == 0 && p[0].type == JSON_PICK_OBJECT) {
		size_t f = 0;
		while (f < 4 && (p[1 + f].type == JSON_PICK_ABSENT || p[1 + f].type == JSON_PICK_NULL))
			f++;
		if (f == 4) {
			backend_why(why, whylen, "secret has no private_key, privateKey, key or value field");
		} else if (p[1 + f].type != JSON_PICK_STRING || p[1 + f].len == 0) {
			backend_why(why, whylen, "field %s is not a non-empty string", fields[f]);
		} else {
			*out = vals[f];
			vals[f] = NULL;
			rc = 0;
		}
		goto out;
	}
	/* Not a JSON object: the key itself (a JSON string unquoted), trimmed. */
	const unsigned char *a = s, *z = a + len;
	if (prc == 0 && str) {
		a = str->data;
		z = a + str->len;
	}
	while (a < z && isspace(*a))
		a++;
	while (z > a && isspace(z[-1]))
		z--;
	if (a == z) {
		backend_why(why, whylen, "SecretString is empty");
		goto out;
	}
	*out = secret_from(a, (size_t)(z - a));
	rc = *out ? 0 : -ENOMEM;
out:
	for (size_t i = 0; i < 4; i++)
		secret_free(vals[i]);
	secret_free(str);
	return rc;
}

/* ---- classification --------------------------------------------------------------- */

enum aws_error_class aws_classify_error(long status, const char *code)
{
	static const char *const auth[] = {
		"UnrecognizedClientException", "InvalidSignatureException",
		"IncompleteSignatureException", "MissingAuthenticationTokenException",
		"ExpiredTokenException", "ExpiredToken", "InvalidClientTokenId",
		"SignatureDoesNotMatch", NULL };
	static const char *const retry[] = {
		"ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded",
		"Throttling", "ProvisionedThroughputExceededException", "InternalServiceError",
		"InternalFailure", "ServiceUnavailable", "RequestTimeout", NULL };
	if (status >= 200 && status <= 299)
		return AWS_ERR_NONE;
	code = code ? code : "";
	for (size_t i = 0; auth[i]; i++)
		if (!strcmp(code, auth[i]))
			return AWS_ERR_AUTH;
	if (!strcmp(code, "AccessDeniedException") || !strcmp(code, "AccessDenied"))
		return AWS_ERR_DENIED;
	if (!strcmp(code, "DecryptionFailure"))
		return AWS_ERR_KMS;
	if (!strcmp(code, "ResourceNotFoundException"))
		return AWS_ERR_NOT_FOUND;
	for (size_t i = 0; retry[i]; i++)
		if (!strcmp(code, retry[i]))
			return AWS_ERR_RETRY;
	if (status == 429 || status >= 500)
		return AWS_ERR_RETRY;
	if (status == 401 || status == 403)
		return AWS_ERR_AUTH;
	return AWS_ERR_OTHER;
}

bool aws_error_refreshable(const char *code)
{
	return code && (!strcmp(code, "ExpiredTokenException") || !strcmp(code, "ExpiredToken") ||
	                !strcmp(code, "UnrecognizedClientException") ||
	                !strcmp(code, "InvalidClientTokenId") ||
	                !strcmp(code, "InvalidSignatureException"));
}

/* ---- region and endpoint --------------------------------------------------------------- */

const char *aws_resolve_region(const char *configured, const char *profile_region,
                               const char **from)
{
	const char *dummy;
	from = from ? from : &dummy;
	const char *e;
	if (configured && *configured) {
		*from = "config";
		return configured;
	}
	if ((e = aws_env("AWS_REGION"))) {
		*from = "AWS_REGION";
		return e;
	}
	if ((e = aws_env("AWS_DEFAULT_REGION"))) {
		*from = "AWS_DEFAULT_REGION";
		return e;
	}
	if (profile_region && *profile_region) {
		*from = "profile";
		return profile_region;
	}
	*from = "default";
	return "us-east-1";
}

static bool aws_region_ok(const char *r)
{
	if (!*r || strlen(r) > 64)
		return false;
	for (const char *p = r; *p; p++)
		if (!islower((unsigned char)*p) && !isdigit((unsigned char)*p) && *p != '-')
			return false;
	return true;
}

static int aws_endpoint_pick(const char *configured, const char *service_var,
                             const char *service, const char *region, char *out, size_t outlen)
{
	const char *u = configured && *configured ? configured : aws_env(service_var);
	if (!u)
		u = aws_env("AWS_ENDPOINT_URL");
	int w;
	if (u) {
		if (strncmp(u, "http://", 7) && strncmp(u, "https://", 8))
			return -EINVAL;
		if (strpbrk(u, " \t\r\n?#"))
			return -EINVAL;
		const char *host = strstr(u, "://") + 3;
		const char *slash = strchr(host, '/');
		if (slash && slash[strspn(slash, "/")])
			return -EINVAL;   /* a path: the JSON protocol posts to / */
		size_t n = slash ? (size_t)(slash - u) : strlen(u);
		if (n == (size_t)(host - u))
			return -EINVAL;
		w = snprintf(out, outlen, "%.*s", (int)n, u);
	} else {
		if (!aws_region_ok(region))
			return -EINVAL;
		w = snprintf(out, outlen, "https://%s.%s.%s", service, region,
		             strncmp(region, "cn-", 3) ? "amazonaws.com" : "amazonaws.com.cn");
	}
	return w < 0 || (size_t)w >= outlen ? -ENAMETOOLONG : 0;
}

int aws_resolve_endpoint(const char *configured, const char *region, char *out, size_t outlen)
{
	return aws_endpoint_pick(configured, "AWS_ENDPOINT_URL_SECRETS_MANAGER",
	                         "secretsmanager", region, out, outlen);
}

int aws_resolve_sts_endpoint(const char *region, char *out, size_t outlen)
{
	return aws_endpoint_pick(NULL, "AWS_ENDPOINT_URL_STS", "sts", region,
	                         out, outlen);
}

/* ---- the chain ---------------------------------------------------------------------------- */

static int aws_from_env(struct aws_credentials *out, char *why, size_t whylen)
{
	const char *ak = aws_env("AWS_ACCESS_KEY_ID");
	const char *sk = aws_env("AWS_SECRET_ACCESS_KEY");
	const char *tok = aws_env("AWS_SESSION_TOKEN");
	if (!ak && !sk)
		return -ENOENT;
	if (!ak || !sk) {
		backend_why(why, whylen, "environment: %s is set but %s is not",
		        ak ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY",
		        ak ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID");
		return -EACCES;
	}
	int rc = aws_credentials_set(out, ak, strlen(ak), sk, strlen(sk), tok,
	                             tok ? strlen(tok) : 0, NULL, why, whylen);
	if (rc == -EIO) {
		backend_why(why, whylen, "environment: malformed AWS_ACCESS_KEY_ID or secret");
		rc = -EACCES;
	}
	snprintf(out->source, sizeof(out->source), "environment");
	return rc;
}

/* Append name=value (value percent-encoded, RFC 3986 unreserved kept) to
 * a form body; the encoded copy is wiped (the value may be a token). */
static int aws_form_add(struct secret *body, const char *name, const char *value)
{
	size_t n = strlen(value) * 3 + 1;
	char *e = malloc(n);
	int rc = e && !http_escape_segment(value, e, n) ? 0 : -ENOMEM;
	if (!rc && body->len)
		rc = secret_append(body, "&", 1);
	if (!rc)
		rc = secret_append(body, name, strlen(name));
	if (!rc)
		rc = secret_append(body, "=", 1);
	if (!rc)
		rc = secret_append(body, e, strlen(e));
	if (e) {
		secret_wipe(e, n);
		free(e);
	}
	return rc;
}

/* One STS query action (form body, XML answer) that returns Credentials.
 * signer NULL: unsigned (AssumeRoleWithWebIdentity, as the SDKs send it);
 * else signed with its keys by libcurl's SigV4 for service sts, its
 * session token in X-Amz-Security-Token.  params: name/value pairs, NULL
 * name ends them.  `what` prefixes the reason. */
struct aws_form_param {
	const char *name;
	const char *value;
};

static int aws_sts_call(const struct aws_chain *ch, const char *what,
                        const struct aws_form_param *params, const struct aws_credentials *signer,
                        double deadline, struct aws_credentials *out, char *why, size_t whylen)
{
	char url[512], err[128] = "", sigv4[128], inner[200] = "";
	struct secret *body = secret_new(512), *tok_hdr = NULL;
	struct http_response resp = { 0 };
	int rc = body ? 0 : -ENOMEM;
	for (size_t i = 0; !rc && params[i].name; i++)
		rc = aws_form_add(body, params[i].name, params[i].value);
	if (rc)
		goto out;
	if (aws_resolve_sts_endpoint(ch->region, url, sizeof(url) - 2)) {
		backend_why(why, whylen, "%s: invalid STS endpoint", what);
		rc = -EINVAL;
		goto out;
	}
	strcat(url, "/");
	const char *hdrs[4] = { "Content-Type: application/x-www-form-urlencoded; charset=utf-8",
	                        "Accept: text/xml", NULL, NULL };
	struct http_request req = { .method = "POST", .url = url, .headers = hdrs,
	                            .body = body->data, .body_len = body->len, .idempotent = true };
	if (signer) {
		static const char name[] = "X-Amz-Security-Token: ";
		if (signer->session_token) {
			tok_hdr = secret_new(sizeof(name) + signer->session_token->len);
			if (!tok_hdr || secret_append(tok_hdr, name, sizeof(name) - 1) ||
			    secret_append(tok_hdr, signer->session_token->data,
			                  signer->session_token->len)) {
				rc = -ENOMEM;
				goto out;
			}
			hdrs[2] = (const char *)tok_hdr->data;
		}
		snprintf(sigv4, sizeof(sigv4), "aws:amz:%s:sts", ch->region);
		req.aws_sigv4 = sigv4;
		req.aws_access_key = signer->access_key_id;
		req.aws_secret_key = (const char *)signer->secret_key->data;
	}
	rc = http_request(ch->http, &req, deadline, &resp, err, sizeof(err));
	if (rc) {
		backend_why(why, whylen, "%s: STS unreachable: %s", what, err);
		rc = rc == -ETIMEDOUT ? rc : -EIO;
		goto out;
	}
	rc = aws_parse_sts_response(resp.status, resp.body ? (const char *)resp.body->data : NULL,
	                            resp.body ? resp.body->len : 0, out, inner, sizeof(inner));
	if (rc)
		backend_why(why, whylen, "%s: %s", what, inner);
out:
	http_response_clear(&resp);
	secret_free(body);
	secret_free(tok_hdr);
	return rc;
}

/* The session name: configured, else omikuji-keyfs-<unix time> (the SDKs
 * use <sdk>-session-<time>): CloudTrail shows it. */
static void aws_session_name(const char *configured, char *out, size_t outlen)
{
	if (configured && *configured)
		snprintf(out, outlen, "%s", configured);
	else
		snprintf(out, outlen, "omikuji-keyfs-%lld", (long long)time(NULL));
}

/* STS AssumeRoleWithWebIdentity with the token read from token_file (again
 * at every resolution: EKS rewrites it). */
static int aws_web_identity(const struct aws_chain *ch, const char *role_arn,
                            const char *token_file, const char *session_name, double deadline,
                            struct aws_credentials *out, char *why, size_t whylen)
{
	struct secret *tok = NULL;
	char sname[80], inner[200] = "";
	int rc = aws_read_token_file(token_file, &tok, inner, sizeof(inner));
	if (rc) {
		backend_why(why, whylen, "web identity: %s", inner);
		return rc == -ENOMEM ? rc : -EACCES;
	}
	aws_session_name(session_name, sname, sizeof(sname));
	const struct aws_form_param params[] = {
		{ "Action", "AssumeRoleWithWebIdentity" }, { "Version", "2011-06-15" },
		{ "RoleArn", role_arn }, { "RoleSessionName", sname },
		{ "WebIdentityToken", (const char *)tok->data }, { NULL, NULL } };
	rc = aws_sts_call(ch, "web identity", params, NULL, deadline, out, why, whylen);
	if (!rc)
		snprintf(out->source, sizeof(out->source), "web-identity");
	secret_free(tok);
	return rc;
}

/* ---- credential_process ------------------------------------------------------------------- */

int aws_split_command(const char *s, char ***argv_out)
{
	*argv_out = NULL;
	size_t n = strlen(s);
	/* words fit in the input's bytes plus one NUL each; pointers after */
	char **argv = calloc(n / 2 + 2, sizeof(char *));
	char *buf = malloc(n + 1 + n / 2 + 2);
	if (!argv || !buf) {
		free(argv);
		free(buf);
		return -ENOMEM;
	}
	size_t argc = 0;
	char *o = buf;
	const char *p = s;
	for (;;) {
		while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
			p++;
		if (!*p)
			break;
		argv[argc++] = o;
		while (*p && *p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
			if (*p == '\'') {                     /* literal up to the next ' */
				const char *q = strchr(p + 1, '\'');
				if (!q)
					goto unbalanced;
				memcpy(o, p + 1, (size_t)(q - p - 1));
				o += q - p - 1;
				p = q + 1;
			} else if (*p == '"') {               /* \ escapes \ " $ ` and newline only */
				for (p++; *p != '"'; p++) {
					if (!*p)
						goto unbalanced;
					if (*p == '\\' && p[1] && strchr("\\\"$`\n", p[1]))
						p++;
					*o++ = *p;
				}
				p++;
			} else if (*p == '\\') {              /* escapes any character */
				if (!p[1])
					goto unbalanced;
				*o++ = p[1];
				p += 2;
			} else {
				*o++ = *p++;
			}
		}
		*o++ = 0;
	}
	if (!argc) {
		free(argv);
		free(buf);
		return -EINVAL;
	}
	argv[argc] = NULL;
	/* one allocation for the caller: argv[0] is buf, freed with argv */
	*argv_out = argv;
	return 0;
unbalanced:
	free(argv);
	free(buf);
	return -EINVAL;
}

void aws_split_command_free(char **argv)
{
	if (argv) {
		free(argv[0]);
		free(argv);
	}
}

/* Wait for pid until the deadline, then kill it.  Its exit status, or -1
 * when it was killed or did not exit normally. */
static int aws_reap(pid_t pid, double deadline)
{
	int status = 0;
	for (;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);
		if (r == pid)
			return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
		if (r < 0 && errno != EINTR)
			return -1;
		if (clock_monotonic() >= deadline) {
			kill(pid, SIGKILL);
			while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
				;
			return -1;
		}
		usleep(10000);
	}
}

/* Run a profile's credential_process as botocore does: split like a POSIX
 * shell's words (shlex), no shell, searched in PATH, stdout is Version 1
 * JSON.  stdin is /dev/null; stderr is discarded (it may echo anything, and
 * nothing it says can reach a log); bounded by the deadline and 64 KiB. */
static int aws_credential_process(const char *profile, const char *command, double deadline,
                                  struct aws_credentials *out, char *why, size_t whylen)
{
	char **argv = NULL;
	int rc = aws_split_command(command, &argv);
	if (rc) {
		if (rc == -EINVAL)
			backend_why(why, whylen, "profile %s: credential_process is empty or has an "
			            "unbalanced quote", profile);
		return rc == -ENOMEM ? rc : -EACCES;
	}
	int fds[2] = { -1, -1 };
	pid_t pid = -1;
	struct secret *buf = secret_new(4096);
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	if (!buf || pipe2(fds, O_CLOEXEC) != 0) {
		rc = -ENOMEM;
		goto out;
	}
	posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
	posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
	int e = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	close(fds[1]);
	fds[1] = -1;
	if (e) {
		pid = -1;
		backend_why(why, whylen, "profile %s: credential_process %s cannot be run: %s",
		            profile, argv[0], strerror(e));
		rc = -EACCES;
		goto out;
	}
	bool too_big = false;
	for (;;) {
		double left = deadline - clock_monotonic();
		struct pollfd pfd = { .fd = fds[0], .events = POLLIN };
		int pr = left > 0 ? poll(&pfd, 1, (int)(left * 1000) + 1) : 0;
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0)
			break;   /* the deadline: aws_reap kills it */
		if (buf->len == buf->cap) {
			if (buf->cap >= 65536) {
				too_big = true;
				break;
			}
			static const char pad[1] = { 0 };
			if (secret_append(buf, pad, 1)) {
				rc = -ENOMEM;
				break;
			}
			buf->len--;
		}
		ssize_t n = read(fds[0], buf->data + buf->len, buf->cap - buf->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		buf->len += (size_t)n;
	}
	bool timed_out = clock_monotonic() >= deadline;
	int status = aws_reap(pid, too_big || rc ? 0 : deadline);
	pid = -1;
	if (rc)
		goto out;
	if (too_big || timed_out || status != 0) {
		if (too_big)
			backend_why(why, whylen, "profile %s: credential_process wrote more than 64 KiB",
			            profile);
		else if (timed_out)
			backend_why(why, whylen, "profile %s: credential_process did not finish in time",
			            profile);
		else if (status > 0)
			backend_why(why, whylen, "profile %s: credential_process exited with status %d",
			            profile, status);
		else
			backend_why(why, whylen, "profile %s: credential_process was killed or did not "
			            "exit", profile);
		rc = timed_out ? -ETIMEDOUT : -EACCES;
		goto out;
	}
	char inner[160] = "";
	rc = aws_parse_process_json(buf->data, buf->len, out, inner, sizeof(inner));
	if (rc) {
		backend_why(why, whylen, "profile %s: credential_process: %s", profile, inner);
		rc = rc == -ENOMEM ? rc : -EACCES;
	}
out:
	if (pid > 0)
		aws_reap(pid, 0);
	if (fds[0] >= 0)
		close(fds[0]);
	if (fds[1] >= 0)
		close(fds[1]);
	posix_spawn_file_actions_destroy(&fa);
	secret_free(buf);
	aws_split_command_free(argv);
	return rc;
}

/* ---- shared-file profiles ------------------------------------------------------------------ */

#define AWS_PROFILE_DEPTH 8

/* The profiles a role chain went through (botocore's visited list). */
struct aws_visit {
	char names[AWS_PROFILE_DEPTH][128];
	size_t n;
};

static int aws_profile_credentials(const struct aws_chain *ch, const char *name,
                                   struct aws_visit *visit, double deadline,
                                   struct aws_credentials *out, char *why, size_t whylen);

static bool aws_has_static(const struct aws_profile *p)
{
	return aws_profile_get(p, "aws_access_key_id") || aws_profile_get(p, "aws_secret_access_key");
}

/* The static keys of a profile. */
static int aws_profile_static(const struct aws_profile *p, const char *name,
                              struct aws_credentials *out, char *why, size_t whylen)
{
	const char *ak = aws_profile_get(p, "aws_access_key_id");
	const char *sk = aws_profile_get(p, "aws_secret_access_key");
	const char *tok = aws_profile_get(p, "aws_session_token");
	if (!ak || !sk) {
		backend_why(why, whylen, "profile %s has only one of aws_access_key_id and "
		            "aws_secret_access_key", name);
		return -EACCES;
	}
	int rc = aws_credentials_set(out, ak, strlen(ak), sk, strlen(sk), tok,
	                             tok ? strlen(tok) : 0, NULL, why, whylen);
	if (rc == -EIO) {
		backend_why(why, whylen, "profile %s: malformed aws_access_key_id or secret", name);
		rc = -EACCES;
	}
	if (!rc)
		snprintf(out->source, sizeof(out->source), "profile %s", name);
	return rc;
}

/* credential_source of a role profile: the named source alone. */
static int aws_from_container(const struct aws_chain *ch, double deadline,
                              struct aws_credentials *out, char *why, size_t whylen);
static int aws_from_imds(const struct aws_chain *ch, double deadline,
                         struct aws_credentials *out, char *why, size_t whylen);

static int aws_credential_source(const struct aws_chain *ch, const char *name, const char *src,
                                 double deadline, struct aws_credentials *out, char *why,
                                 size_t whylen)
{
	int rc;
	if (!strcmp(src, "Environment"))
		rc = aws_from_env(out, why, whylen);
	else if (!strcmp(src, "Ec2InstanceMetadata"))
		rc = aws_from_imds(ch, deadline, out, why, whylen);
	else if (!strcmp(src, "EcsContainer"))
		rc = aws_from_container(ch, deadline, out, why, whylen);
	else {
		backend_why(why, whylen, "profile %s: credential_source %.40s is not one of "
		            "Environment, Ec2InstanceMetadata, EcsContainer", name, src);
		return -EACCES;
	}
	if (rc == -ENOENT) {
		backend_why(why, whylen, "profile %s: no credentials in credential_source %s",
		            name, src);
		rc = -EACCES;
	}
	return rc;
}

/* role_arn with source_profile or credential_source: the source's keys,
 * then STS AssumeRole signed with them (role_session_name, external_id,
 * duration_seconds as the profile says). */
static int aws_assume_role(const struct aws_chain *ch, const struct aws_profile *p,
                           const char *name, struct aws_visit *visit, double deadline,
                           struct aws_credentials *out, char *why, size_t whylen)
{
	const char *role = aws_profile_get(p, "role_arn");
	const char *sp = aws_profile_get(p, "source_profile");
	const char *cs = aws_profile_get(p, "credential_source");
	const char *dur = aws_profile_get(p, "duration_seconds");
	const char *ext = aws_profile_get(p, "external_id");
	if (sp && cs) {
		backend_why(why, whylen, "profile %s contains both source_profile and "
		            "credential_source", name);
		return -EACCES;
	}
	if (!sp && !cs) {
		backend_why(why, whylen, "profile %s has role_arn but neither source_profile nor "
		            "credential_source", name);
		return -EACCES;
	}
	if (aws_profile_get(p, "mfa_serial")) {
		backend_why(why, whylen, "profile %s needs an MFA code (mfa_serial), which a daemon "
		            "cannot type", name);
		return -EACCES;
	}
	if (dur && (strspn(dur, "0123456789") != strlen(dur) || strlen(dur) > 6)) {
		backend_why(why, whylen, "profile %s: duration_seconds is not a number of seconds",
		            name);
		return -EACCES;
	}
	struct aws_credentials src;
	memset(&src, 0, sizeof(src));
	int rc;
	if (cs) {
		rc = aws_credential_source(ch, name, cs, deadline, &src, why, whylen);
	} else if (!strcmp(sp, name)) {
		/* itself: allowed for its own static keys only (botocore) */
		if (!aws_has_static(p)) {
			backend_why(why, whylen, "profile %s is its own source_profile but has no "
			            "static keys", name);
			return -EACCES;
		}
		rc = aws_profile_static(p, name, &src, why, whylen);
	} else {
		for (size_t i = 0; i < visit->n; i++) {
			if (!strcmp(visit->names[i], sp)) {
				backend_why(why, whylen, "profile %s: source_profile %s makes a loop",
				            name, sp);
				return -EACCES;
			}
		}
		rc = aws_profile_credentials(ch, sp, visit, deadline, &src, why, whylen);
		if (rc == -ENOENT) {
			backend_why(why, whylen, "profile %s: source_profile %s has no credentials",
			            name, sp);
			rc = -EACCES;
		}
	}
	if (rc) {
		aws_credentials_clear(&src);
		return rc;
	}
	char sname[80], what[200];
	aws_session_name(aws_profile_get(p, "role_session_name"), sname, sizeof(sname));
	snprintf(what, sizeof(what), "profile %s: AssumeRole", name);
	struct aws_form_param params[8] = {
		{ "Action", "AssumeRole" }, { "Version", "2011-06-15" },
		{ "RoleArn", role }, { "RoleSessionName", sname } };
	size_t np = 4;
	if (ext)
		params[np++] = (struct aws_form_param){ "ExternalId", ext };
	if (dur)
		params[np++] = (struct aws_form_param){ "DurationSeconds", dur };
	params[np] = (struct aws_form_param){ NULL, NULL };
	rc = aws_sts_call(ch, what, params, &src, deadline, out, why, whylen);
	aws_credentials_clear(&src);
	if (!rc)
		snprintf(out->source, sizeof(out->source), "profile %s (assume-role)", name);
	return rc;
}

/* One profile's credentials, in botocore's order: role_arn with a source
 * (AssumeRole; for a source profile only when it has no static keys),
 * role_arn + web_identity_token_file, SSO (refused), static keys,
 * credential_process.  -ENOENT when the profile has none of these. */
static int aws_profile_credentials(const struct aws_chain *ch, const char *name,
                                   struct aws_visit *visit, double deadline,
                                   struct aws_credentials *out, char *why, size_t whylen)
{
	if (visit->n >= AWS_PROFILE_DEPTH) {
		backend_why(why, whylen, "profile %s: more than %d profiles chained", name,
		            AWS_PROFILE_DEPTH);
		return -EACCES;
	}
	snprintf(visit->names[visit->n++], sizeof(visit->names[0]), "%s", name);
	char *cpath = aws_credentials_file_path(), *fpath = aws_config_file_path();
	struct aws_profile p;
	memset(&p, 0, sizeof(p));
	int rc = -ENOMEM;
	if (!cpath || !fpath)
		goto out_paths;
	rc = aws_profile_load(cpath, fpath, name, &p, why, whylen);
	if (rc)
		goto out_paths;
	const char *role = aws_profile_get(&p, "role_arn");
	const char *wif = aws_profile_get(&p, "web_identity_token_file");
	const char *proc = aws_profile_get(&p, "credential_process");
	bool top = visit->n == 1;
	if (!p.found) {
		rc = -ENOENT;
		if (!top) {
			backend_why(why, whylen, "profile %s: its source_profile %s is in neither %s "
			            "nor %s", visit->names[visit->n - 2], name, cpath, fpath);
			rc = -EACCES;
		} else if (strcmp(name, "default")) {
			backend_why(why, whylen, "profile %s is in neither %s nor %s", name, cpath, fpath);
			rc = -EACCES;
		}
	} else if (role && !wif && (top || !aws_has_static(&p))) {
		rc = aws_assume_role(ch, &p, name, visit, deadline, out, why, whylen);
	} else if (role && wif) {
		rc = aws_web_identity(ch, role, wif, aws_profile_get(&p, "role_session_name"),
		                      deadline, out, why, whylen);
		if (!rc)
			snprintf(out->source, sizeof(out->source), "profile %s (web-identity)", name);
	} else if (aws_profile_get(&p, "sso_session") || aws_profile_get(&p, "sso_start_url")) {
		backend_why(why, whylen, "profile %s uses SSO (sso_session/sso_start_url), which "
		            "omikuji-keyfs does not support: a daemon cannot log in through a browser",
		            name);
		rc = -EACCES;
	} else if (aws_has_static(&p)) {
		rc = aws_profile_static(&p, name, out, why, whylen);
	} else if (proc) {
		rc = aws_credential_process(name, proc, deadline, out, why, whylen);
		if (!rc)
			snprintf(out->source, sizeof(out->source), "profile %s (process)", name);
	} else {
		rc = -ENOENT;   /* a profile with only settings (region): next source */
	}
	aws_profile_clear(&p);
out_paths:
	free(cpath);
	free(fpath);
	return rc;
}

static int aws_from_profile(const struct aws_chain *ch, double deadline,
                            struct aws_credentials *out, char *why, size_t whylen)
{
	struct aws_visit visit;
	memset(&visit, 0, sizeof(visit));
	return aws_profile_credentials(ch, aws_profile_name(ch->profile), &visit, deadline, out,
	                               why, whylen);
}

static bool aws_container_host_ok(const char *url)
{
	if (!strncmp(url, "https://", 8))
		return true;
	if (strncmp(url, "http://", 7))
		return false;
	static const char *const hosts[] = { "127.", "169.254.170.2", "169.254.170.23",
	                                     "[fd00:ec2::23]", "localhost", "[::1]", NULL };
	const char *h = url + 7;
	for (size_t i = 0; hosts[i]; i++) {
		size_t n = strlen(hosts[i]);
		if (!strncmp(h, hosts[i], n) &&
		    (hosts[i][n - 1] == '.' || h[n] == 0 || h[n] == ':' || h[n] == '/'))
			return true;
	}
	return false;
}

int aws_container_url(char *out, size_t outlen)
{
	const char *rel = aws_env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
	const char *full = aws_env("AWS_CONTAINER_CREDENTIALS_FULL_URI");
	int w;
	if (rel)
		w = snprintf(out, outlen, "%s%s%s", AWS_ECS_HOST, rel[0] == '/' ? "" : "/", rel);
	else if (full && !aws_container_host_ok(full))
		return -EINVAL;
	else if (full)
		w = snprintf(out, outlen, "%s", full);
	else
		return -ENOENT;
	return w < 0 || (size_t)w >= outlen ? -ENAMETOOLONG : 0;
}

/* The credentials JSON a container or instance-metadata endpoint answered
 * (the same shape from both), labelled with its source. */
static int aws_credentials_from_response(const struct http_response *resp, const char *source,
                                         struct aws_credentials *out, char *why, size_t whylen)
{
	int rc = aws_parse_credentials_json(resp->body ? resp->body->data : NULL,
	                                    resp->body ? resp->body->len : 0, out, why, whylen);
	if (!rc)
		snprintf(out->source, sizeof(out->source), "%s", source);
	return rc;
}

static int aws_from_container(const struct aws_chain *ch, double deadline,
                              struct aws_credentials *out, char *why, size_t whylen)
{
	char url[1024], err[128] = "";
	struct secret *tok = NULL, *hdr = NULL;
	struct http_response resp = { 0 };
	int rc = aws_container_url(url, sizeof(url));
	if (rc == -EINVAL) {
		backend_why(why, whylen, "container: AWS_CONTAINER_CREDENTIALS_FULL_URI must be "
		        "https or a loopback / ECS / EKS address");
		return -EACCES;
	}
	if (rc)
		return rc;
	const char *tfile = aws_env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
	const char *tenv = aws_env("AWS_CONTAINER_AUTHORIZATION_TOKEN");
	if (tfile) {
		rc = aws_read_token_file(tfile, &tok, why, whylen);
		if (rc)
			return rc == -ENOMEM ? rc : -EACCES;
	} else if (tenv) {
		tok = secret_from(tenv, strlen(tenv));
		if (!tok)
			return -ENOMEM;
	}
	const char *hdrs[2] = { NULL, NULL };
	if (tok) {
		if (memchr(tok->data, '\n', tok->len) || memchr(tok->data, '\r', tok->len)) {
			backend_why(why, whylen, "container: authorization token holds a line break");
			rc = -EACCES;
			goto out;
		}
		hdr = secret_new(tok->len + 32);
		if (!hdr || secret_append(hdr, "Authorization: ", 15) ||
		    secret_append(hdr, tok->data, tok->len)) {
			rc = -ENOMEM;
			goto out;
		}
		hdrs[0] = (const char *)hdr->data;
	}
	struct http_request req = { .method = "GET", .url = url, .headers = hdrs, .idempotent = true };
	rc = http_request(ch->http, &req, deadline, &resp, err, sizeof(err));
	if (rc) {
		backend_why(why, whylen, "container: credentials endpoint unreachable: %s", err);
		rc = rc == -ETIMEDOUT ? rc : -EIO;
		goto out;
	}
	if (resp.status != 200) {
		backend_why(why, whylen, "container: credentials endpoint answered HTTP %ld", resp.status);
		rc = resp.status >= 400 && resp.status < 500 ? -EACCES : -EIO;
		goto out;
	}
	rc = aws_credentials_from_response(&resp, "container", out, why, whylen);
out:
	http_response_clear(&resp);
	secret_free(tok);
	secret_free(hdr);
	return rc;
}

static int aws_from_imds(const struct aws_chain *ch, double deadline,
                         struct aws_credentials *out, char *why, size_t whylen)
{
	const char *dis = aws_env("AWS_EC2_METADATA_DISABLED");
	if (dis && !strcasecmp(dis, "true"))
		return -ENOENT;
	const char *base = aws_env("AWS_EC2_METADATA_SERVICE_ENDPOINT");
	base = base ? base : AWS_IMDS_DEFAULT;
	size_t bl = strlen(base);
	while (bl > 8 && base[bl - 1] == '/')
		bl--;
	char url[1400], err[128] = "", role[200];
	struct secret *tok = NULL, *hdr = NULL;
	struct http_response resp = { 0 };
	int rc;
	double now = clock_monotonic();
	double step = now + AWS_IMDS_SECONDS < deadline ? now + AWS_IMDS_SECONDS : deadline;

	/* IMDSv2: a session token first (PUT), then the role, then its keys. */
	snprintf(url, sizeof(url), "%.*s/latest/api/token", (int)bl, base);
	static const char *const put_hdrs[] = { "X-aws-ec2-metadata-token-ttl-seconds: 21600", NULL };
	struct http_request put = { .method = "PUT", .url = url, .headers = put_hdrs,
	                            .idempotent = true };
	rc = http_perform(ch->http, &put, step, &resp, err, sizeof(err));
	if (rc || resp.status != 200 || !resp.body || !aws_printable((const char *)resp.body->data,
	                                                             resp.body->len)) {
		if (rc)
			backend_why(why, whylen, "no credentials found (environment, shared files, web "
			        "identity, container) and instance metadata unreachable: %s", err);
		else
			backend_why(why, whylen, "instance metadata: token request answered HTTP %ld",
			        resp.status);
		rc = rc ? -ENOENT : -EIO;
		goto out;
	}
	tok = secret_dup(resp.body);
	hdr = tok ? secret_new(tok->len + 32) : NULL;
	if (!hdr || secret_append(hdr, "X-aws-ec2-metadata-token: ", 26) ||
	    secret_append(hdr, tok->data, tok->len)) {
		rc = -ENOMEM;
		goto out;
	}
	const char *hdrs[] = { (const char *)hdr->data, NULL };
	snprintf(url, sizeof(url), "%.*s/latest/meta-data/iam/security-credentials/", (int)bl, base);
	struct http_request get = { .method = "GET", .url = url, .headers = hdrs, .idempotent = true };
	now = clock_monotonic();
	step = now + AWS_IMDS_SECONDS < deadline ? now + AWS_IMDS_SECONDS : deadline;
	rc = http_perform(ch->http, &get, step, &resp, err, sizeof(err));
	if (rc || resp.status != 200 || !resp.body || resp.body->len == 0 ||
	    resp.body->len >= sizeof(role)) {
		backend_why(why, whylen, "instance metadata: no IAM role (%s)",
		        rc ? err : resp.status == 404 ? "none attached" : "unexpected answer");
		rc = rc == -ETIMEDOUT ? rc : (rc ? -EIO : -EACCES);
		goto out;
	}
	size_t rl = strcspn((const char *)resp.body->data, "\r\n");
	memcpy(role, resp.body->data, rl);
	role[rl] = 0;
	char esc[600];
	if (!rl || http_escape_segment(role, esc, sizeof(esc))) {
		backend_why(why, whylen, "instance metadata: malformed role name");
		rc = -EIO;
		goto out;
	}
	snprintf(url, sizeof(url), "%.*s/latest/meta-data/iam/security-credentials/%s",
	         (int)bl, base, esc);
	now = clock_monotonic();
	step = now + AWS_IMDS_SECONDS < deadline ? now + AWS_IMDS_SECONDS : deadline;
	rc = http_perform(ch->http, &get, step, &resp, err, sizeof(err));
	if (rc || resp.status != 200) {
		backend_why(why, whylen, "instance metadata: credentials of role %s: %s", role,
		        rc ? err : "unexpected HTTP status");
		rc = rc == -ETIMEDOUT ? rc : -EIO;
		goto out;
	}
	rc = aws_credentials_from_response(&resp, "imds", out, why, whylen);
out:
	http_response_clear(&resp);
	secret_free(tok);
	secret_free(hdr);
	return rc;
}

int aws_credentials_resolve(const struct aws_chain *ch, double deadline,
                            struct aws_credentials *out, char *why, size_t whylen)
{
	memset(out, 0, sizeof(*out));
	int rc = aws_from_env(out, why, whylen);
	if (rc != -ENOENT)
		return rc;
	rc = aws_from_profile(ch, deadline, out, why, whylen);
	if (rc != -ENOENT)
		return rc;
	const char *wif = aws_env("AWS_WEB_IDENTITY_TOKEN_FILE");
	const char *role = aws_env("AWS_ROLE_ARN");
	if (wif && role)
		return aws_web_identity(ch, role, wif, aws_env("AWS_ROLE_SESSION_NAME"), deadline,
		                        out, why, whylen);
	rc = aws_from_container(ch, deadline, out, why, whylen);
	if (rc != -ENOENT)
		return rc;
	return aws_from_imds(ch, deadline, out, why, whylen);
}
