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
 *     aws_session_token, region, role_arn + web_identity_token_file
 *     (+ role_session_name).  A profile using source_profile,
 *     credential_process or sso_* is reported as unsupported.
 */
#include "aws_internal.h"
#include "backend.h"
#include "clock.h"
#include "http.h"
#include "json_pick.h"

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
#include <jansson.h>

#define AWS_FILE_MAX (1024 * 1024)
#define AWS_IMDS_DEFAULT "http://169.254.169.254"
#define AWS_ECS_HOST "http://169.254.170.2"
#define AWS_IMDS_SECONDS 1.0
#define AWS_REFRESH_BEFORE 300.0

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

double aws_credentials_refresh_at(const struct aws_credentials *c)
{
	if (c->expires_at <= 0)
		return -1;
	double life = c->expires_at - c->obtained_at;
	double before = life > 0 && life / 3.0 < AWS_REFRESH_BEFORE ? life / 3.0 : AWS_REFRESH_BEFORE;
	return c->expires_at - before;
}

bool aws_credentials_expired(const struct aws_credentials *c, double now)
{
	return c->expires_at > 0 && now >= c->expires_at - 1.0;
}

/* ---- files -------------------------------------------------------------------- */

/* Read a whole (small) file into a secret: it may hold keys or tokens.
 * -ENOENT when it does not exist. */
static int aws_read_file(const char *path, struct secret **out, char *why, size_t whylen)
{
	*out = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		if (e != ENOENT)
			backend_why(why, whylen, "cannot open %s: %s", path, strerror(e));
		return -e;
	}
	struct secret *s = secret_new(4096);
	int rc = s ? 0 : -ENOMEM;
	while (!rc) {
		if (s->len == s->cap) {
			if (s->cap >= AWS_FILE_MAX) {
				backend_why(why, whylen, "%s is too large", path);
				rc = -EFBIG;
				break;
			}
			/* grow by appending nothing but room: secret_append copies */
			char pad[1] = { 0 };
			if (secret_append(s, pad, 1)) {
				rc = -ENOMEM;
				break;
			}
			s->len--;
		}
		ssize_t n = read(fd, s->data + s->len, s->cap - s->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			backend_why(why, whylen, "cannot read %s: %s", path, strerror(-rc));
			break;
		}
		if (n == 0)
			break;
		s->len += (size_t)n;
	}
	close(fd);
	if (rc) {
		secret_free(s);
		return rc;
	}
	s->data[s->len] = 0;
	*out = s;
	return 0;
}

/* A token file: trimmed, printable, non-empty. */
static int aws_read_token_file(const char *path, struct secret **out, char *why, size_t whylen)
{
	struct secret *raw = NULL;
	int rc = aws_read_file(path, &raw, why, whylen);
	if (rc == -ENOENT)
		backend_why(why, whylen, "%s does not exist", path);
	if (rc)
		return rc;
	size_t a = 0, z = raw->len;
	while (a < z && isspace(raw->data[a]))
		a++;
	while (z > a && isspace(raw->data[z - 1]))
		z--;
	for (size_t i = a; i < z; i++) {
		if (raw->data[i] < 0x20 || raw->data[i] > 0x7e) {
			z = a;
			break;
		}
	}
	if (z == a) {
		backend_why(why, whylen, "%s is empty or holds non-printable characters", path);
		secret_free(raw);
		return -EINVAL;
	}
	*out = secret_from(raw->data + a, z - a);
	secret_free(raw);
	return *out ? 0 : -ENOMEM;
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
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	if (!s)
		return -1;
	const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!p)
		return -1;
	double frac = 0;
	if (*p == '.') {
		char *e;
		frac = strtod(p, &e);
		p = e;
	}
	long offset = 0;
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int hh, mm;
		if (sscanf(p + 1, "%2d:%2d", &hh, &mm) != 2)
			return -1;
		offset = (hh * 3600L + mm * 60L) * (*p == '+' ? 1 : -1);
		p += 6;
	} else {
		return -1;
	}
	if (*p)
		return -1;
	time_t t = timegm(&tm);
	if (t == (time_t)-1)
		return -1;
	return (double)t - (double)offset + frac;
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
	out->obtained_at = clock_wall();
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

int aws_parse_credentials_json(const void *body, size_t len, struct aws_credentials *out,
                               char *why, size_t whylen)
{
	int rc = -EIO;
	json_t *root = aws_json_load(body, len);
	if (!json_is_object(root)) {
		backend_why(why, whylen, "credentials answer is not a JSON object");
		goto out;
	}
	json_t *code = json_object_get(root, "Code");
	if (code && (!json_is_string(code) || strcmp(json_string_value(code), "Success"))) {
		backend_why(why, whylen, "credentials answer Code is not Success");
		goto out;
	}
	json_t *ak = json_object_get(root, "AccessKeyId");
	json_t *sk = json_object_get(root, "SecretAccessKey");
	json_t *tok = json_object_get(root, "Token");
	json_t *exp = json_object_get(root, "Expiration");
	if (!json_is_string(ak) || !json_is_string(sk) || (tok && !json_is_null(tok) && !json_is_string(tok)) ||
	    (exp && !json_is_string(exp))) {
		backend_why(why, whylen, "credentials answer lacks AccessKeyId or SecretAccessKey");
		goto out;
	}
	bool has_tok = json_is_string(tok);
	rc = aws_credentials_set(out, json_string_value(ak), json_string_length(ak),
	                         json_string_value(sk), json_string_length(sk),
	                         has_tok ? json_string_value(tok) : NULL,
	                         has_tok ? json_string_length(tok) : 0,
	                         exp ? json_string_value(exp) : NULL, why, whylen);
out:
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
		backend_why(why, whylen, "STS AssumeRoleWithWebIdentity: %s%s%s (HTTP %ld)",
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

/* Percent-encode for a form body (RFC 3986 unreserved kept); malloc'd. */
static char *aws_form_escape(const char *s)
{
	size_t n = strlen(s) * 3 + 1;
	char *o = malloc(n);
	if (o && http_escape_segment(s, o, n)) {
		free(o);
		return NULL;
	}
	return o;
}

/* POST AssumeRoleWithWebIdentity (unsigned, as the SDKs send it). */
static int aws_web_identity(const struct aws_chain *ch, const char *role_arn,
                            const char *token_file, const char *session_name, double deadline,
                            struct aws_credentials *out, char *why, size_t whylen)
{
	struct secret *tok = NULL, *body = NULL;
	struct http_response resp = { 0 };
	char url[512], err[128] = "", sname[80];
	int rc = aws_read_token_file(token_file, &tok, why, whylen);
	if (rc) {
		if (rc != -ENOMEM) {
			char inner[200];
			snprintf(inner, sizeof(inner), "%s", why ? why : "");
			backend_why(why, whylen, "web identity: %s", inner);
		}
		return rc == -ENOMEM ? rc : -EACCES;
	}
	if (aws_resolve_sts_endpoint(ch->region, url, sizeof(url) - 2)) {
		backend_why(why, whylen, "web identity: invalid STS endpoint");
		rc = -EINVAL;
		goto out;
	}
	strcat(url, "/");
	if (session_name && *session_name)
		snprintf(sname, sizeof(sname), "%s", session_name);
	else
		snprintf(sname, sizeof(sname), "omikuji-keyfs-%lld", (long long)time(NULL));
	char *e_role = aws_form_escape(role_arn), *e_name = aws_form_escape(sname);
	char *e_tok = aws_form_escape((const char *)tok->data);
	body = secret_new(256 + tok->len * 3);
	if (!e_role || !e_name || !e_tok || !body) {
		rc = -ENOMEM;
	} else {
		static const char a[] = "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=";
		rc = secret_append(body, a, sizeof(a) - 1);
		if (!rc)
			rc = secret_append(body, e_role, strlen(e_role));
		if (!rc)
			rc = secret_append(body, "&RoleSessionName=", 17);
		if (!rc)
			rc = secret_append(body, e_name, strlen(e_name));
		if (!rc)
			rc = secret_append(body, "&WebIdentityToken=", 18);
		if (!rc)
			rc = secret_append(body, e_tok, strlen(e_tok));
	}
	free(e_role);
	free(e_name);
	if (e_tok) {
		secret_wipe(e_tok, strlen(e_tok));
		free(e_tok);
	}
	if (rc)
		goto out;
	static const char *const hdrs[] = {
		"Content-Type: application/x-www-form-urlencoded; charset=utf-8",
		"Accept: text/xml", NULL };
	struct http_request req = { .method = "POST", .url = url, .headers = hdrs,
	                            .body = body->data, .body_len = body->len, .idempotent = true };
	rc = http_request(ch->http, &req, deadline, &resp, err, sizeof(err));
	if (rc) {
		backend_why(why, whylen, "web identity: STS unreachable: %s", err);
		rc = rc == -ETIMEDOUT ? rc : -EIO;
		goto out;
	}
	rc = aws_parse_sts_response(resp.status, resp.body ? (const char *)resp.body->data : NULL,
	                            resp.body ? resp.body->len : 0, out, why, whylen);
	if (!rc)
		snprintf(out->source, sizeof(out->source), "web-identity");
out:
	http_response_clear(&resp);
	secret_free(tok);
	secret_free(body);
	return rc;
}

static int aws_from_profile(const struct aws_chain *ch, double deadline,
                            struct aws_credentials *out, char *why, size_t whylen)
{
	const char *name = aws_profile_name(ch->profile);
	bool explicit_profile = strcmp(name, "default") != 0;
	char *cpath = aws_credentials_file_path(), *fpath = aws_config_file_path();
	struct aws_profile p;
	int rc = -ENOMEM;
	if (!cpath || !fpath)
		goto out_paths;
	rc = aws_profile_load(cpath, fpath, name, &p, why, whylen);
	if (rc)
		goto out_paths;
	const char *ak = aws_profile_get(&p, "aws_access_key_id");
	const char *sk = aws_profile_get(&p, "aws_secret_access_key");
	const char *tok = aws_profile_get(&p, "aws_session_token");
	const char *role = aws_profile_get(&p, "role_arn");
	const char *wif = aws_profile_get(&p, "web_identity_token_file");
	if (!p.found) {
		rc = -ENOENT;
		if (explicit_profile) {
			backend_why(why, whylen, "profile %s is in neither %s nor %s", name, cpath, fpath);
			rc = -EACCES;
		}
	} else if (ak && sk) {
		rc = aws_credentials_set(out, ak, strlen(ak), sk, strlen(sk), tok,
		                         tok ? strlen(tok) : 0, NULL, why, whylen);
		if (rc == -EIO) {
			backend_why(why, whylen, "profile %s: malformed aws_access_key_id or secret", name);
			rc = -EACCES;
		}
		if (!rc)
			snprintf(out->source, sizeof(out->source), "profile %s", name);
	} else if (role && wif) {
		rc = aws_web_identity(ch, role, wif, aws_profile_get(&p, "role_session_name"),
		                      deadline, out, why, whylen);
		if (!rc)
			snprintf(out->source, sizeof(out->source), "profile %s (web-identity)", name);
	} else if (ak || sk) {
		backend_why(why, whylen, "profile %s has only one of aws_access_key_id and "
		        "aws_secret_access_key", name);
		rc = -EACCES;
	} else if (role || aws_profile_get(&p, "credential_process") ||
	           aws_profile_get(&p, "sso_start_url") || aws_profile_get(&p, "sso_session")) {
		backend_why(why, whylen, "profile %s uses %s, which omikuji-keyfs does not support "
		        "(use static keys, web identity, container or instance credentials)", name,
		        role ? "source_profile/role_arn" : aws_profile_get(&p, "credential_process")
		             ? "credential_process" : "SSO");
		rc = -EACCES;
	} else {
		rc = -ENOENT;   /* a profile with only settings (region): next source */
	}
	aws_profile_clear(&p);
out_paths:
	free(cpath);
	free(fpath);
	return rc;
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
	rc = aws_parse_credentials_json(resp.body ? resp.body->data : NULL,
	                                resp.body ? resp.body->len : 0, out, why, whylen);
	if (!rc)
		snprintf(out->source, sizeof(out->source), "container");
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
	rc = aws_parse_credentials_json(resp.body ? resp.body->data : NULL,
	                                resp.body ? resp.body->len : 0, out, why, whylen);
	if (!rc)
		snprintf(out->source, sizeof(out->source), "imds");
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
