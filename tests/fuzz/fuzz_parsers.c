/* fuzz_parsers.c - libFuzzer harness for the parsers that read untrusted
 * input: Vault's responses (KV read, list, login, token lookup, metadata),
 * key content validation (with the write-time prefix check and the
 * canonical form as properties), the YAML config loader, the audit log's
 * tail recovery (what a restart continues from), the audit line writer (any
 * caller text must give lines that verify), the file store's decrypted
 * map, and the AWS backend's (credential JSON of IMDS/containers, STS XML,
 * Secrets Manager errors, SecretString, shared credentials/config files).  Fuzzing is by hand (see README.md in this folder); `meson test`
 * replays the corpus through the same function (fuzz-replay).
 *
 * The first input byte picks the parser; the rest is its input. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "audit.h"
#include "config.h"
#include "file_internal.h"
#include "keyformat.h"
#include "vault_internal.h"
#include "aws_internal.h"
#include "json_pick.h"
#include <jansson.h>

static void fuzz_config(const uint8_t *data, size_t size)
{
	static char path[64];
	if (!path[0]) {
		snprintf(path, sizeof(path), "/tmp/keyfs-fuzz-%d.yaml", (int)getpid());
	}
	FILE *f = fopen(path, "w");
	if (!f)
		return;
	fwrite(data, 1, size, f);
	fclose(f);
	struct config cfg;
	char err[512];
	if (config_load(path, CONFIG_ALLOW_INSECURE_PERMS, &cfg, err, sizeof(err)) == 0) {
		FILE *null = fopen("/dev/null", "w");
		if (null) {
			config_print(&cfg, null);
			fclose(null);
		}
		config_free(&cfg);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The input as an existing audit log: open it (tail recovery), append a
 * line, and when the input was an intact chain, it must still be one. */
static void fuzz_audit_recovery(const uint8_t *data, size_t size)
{
	static char path[64];
	if (!path[0])
		snprintf(path, sizeof(path), "/tmp/keyfs-fuzz-audit-%d.log", (int)getpid());
	FILE *f = fopen(path, "w");
	if (!f)
		return;
	fwrite(data, 1, size, f);
	fclose(f);
	FILE *null = fopen("/dev/null", "w");
	if (!null)
		return;
	long bad = 0;
	int intact = audit_verify(path, null, &bad) == 0;
	struct audit *a = NULL;
	char err[256];
	if (audit_open(path, AUDIT_FAILURE_DENY, &a, err, sizeof(err)) == 0) {
		struct audit_record r = {
			.op = KEY_OP_GET, .network = "eth", .storage_type = "file", .status = true,
			.uid = 1, .gid = 1, .pid = 1, .process = "fuzz",
		};
		audit_write(a, &r);
		audit_close(a);
		if (intact && audit_verify(path, null, &bad) != 0)
			abort();   /* recovery broke an intact chain */
	}
	fclose(null);
	unlink(path);
}

/* Split data at NUL bytes into up to n C strings (the rest stays ""). */
static void fuzz_fields(const uint8_t *data, size_t size, char fields[][128], int n)
{
	int f = 0;
	size_t k = 0;
	for (int i = 0; i < n; i++)
		fields[i][0] = 0;
	for (size_t i = 0; i < size && f < n; i++) {
		if (data[i] == 0 || k == 127) {
			fields[f][k] = 0;
			f++;
			k = 0;
			continue;
		}
		fields[f][k++] = (char)data[i];
		fields[f][k] = 0;
	}
}

/* Whatever a caller controls (process name, and the network and error
 * text for good measure), the written log verifies. */
static void fuzz_audit(const uint8_t *data, size_t size)
{
	static char path[64];
	char fields[3][128];
	char err[256];
	if (!path[0])
		snprintf(path, sizeof(path), "/tmp/keyfs-fuzz-writer-%d.log", (int)getpid());
	unlink(path);
	fuzz_fields(data, size, fields, 3);
	struct audit *a = NULL;
	if (audit_open(path, AUDIT_FAILURE_DENY, &a, err, sizeof(err)) < 0)
		abort();
	struct audit_record r = {
		.op = KEY_OP_GET, .network = fields[1], .storage_type = "vault",
		.status = false, .uid = 1, .gid = 1, .pid = 1, .process = fields[0],
		.error = fields[2], .anomaly = fields[2][0] ? fields[2] : NULL,
	};
	int rc = audit_write(a, &r);
	r.op = KEY_OP_STORE;
	r.status = true;
	rc |= audit_write(a, &r);
	audit_close(a);
	FILE *null = fopen("/dev/null", "w");
	long bad = 0;
	if (rc == 0 && audit_verify(path, null, &bad) != 0)
		abort();   /* a line the writer made does not verify */
	fclose(null);
}

/* The write-time check never refuses a prefix of a valid key, and the
 * canonical form is itself valid and canonical. */
static void fuzz_keyformat_properties(enum key_format fmt, const uint8_t *data, size_t size)
{
	struct secret *c = NULL, *c2 = NULL;
	const char *why = NULL;
	if (keyformat_canonical(fmt, data, size, &c, &why) != 0)
		return;
	for (size_t i = 0; i <= size; i++)
		if (keyformat_prefix_ok(fmt, data, i, &why) != 0)
			abort();
	if (keyformat_canonical(fmt, c->data, c->len, &c2, &why) != 0 || c2->len != c->len ||
	    memcmp(c->data, c2->data, c->len) != 0)
		abort();
	secret_free(c);
	secret_free(c2);
}

static void fuzz_aws_profile(const uint8_t *data, size_t size)
{
	static char path[64];
	if (!path[0])
		snprintf(path, sizeof(path), "/tmp/keyfs-fuzz-%d.ini", (int)getpid());
	FILE *f = fopen(path, "w");
	if (!f)
		return;
	fwrite(data, 1, size, f);
	fclose(f);
	struct aws_profile p;
	char why[200];
	if (aws_profile_load(path, path, "default", &p, why, sizeof(why)) == 0) {
		aws_profile_get(&p, "aws_access_key_id");
		aws_profile_clear(&p);
	}
	unlink(path);
}


/* json_pick() against jansson on the same bytes: the same documents are
 * accepted, and every picked value has jansson's type and, for strings,
 * its bytes.  Two known differences are allowed: json_pick accepts numbers
 * jansson cannot hold (their range is the caller's check), and it refuses
 * a NUL byte right after a number or literal, which jansson 2.14 skips (its
 * lexer loses an unread NUL: "[5\0]" parses there; found by this target). */
static json_t *fuzz_json_at(json_t *root, const char *const *path)
{
	json_t *v = root;
	for (size_t i = 0; v && path[i]; i++)
		v = json_is_object(v) ? json_object_get(v, path[i]) : NULL;
	return v;
}

static enum json_pick_type fuzz_json_type(json_t *v)
{
	switch (v ? json_typeof(v) : JSON_NULL) {
	case JSON_OBJECT: return JSON_PICK_OBJECT;
	case JSON_ARRAY: return JSON_PICK_ARRAY;
	case JSON_STRING: return JSON_PICK_STRING;
	case JSON_INTEGER: case JSON_REAL: return JSON_PICK_NUMBER;
	case JSON_TRUE: return JSON_PICK_TRUE;
	case JSON_FALSE: return JSON_PICK_FALSE;
	default: return v ? JSON_PICK_NULL : JSON_PICK_ABSENT;
	}
}

static void fuzz_json_pick(const uint8_t *data, size_t size)
{
	static const char *const root[] = { NULL }, *const a[] = { "a", NULL },
		*const ab[] = { "a", "b", NULL }, *const key[] = { "data", "data", "private_key", NULL },
		*const ss[] = { "SecretString", NULL };
	struct secret *s_key = NULL, *s_root = NULL;
	char small[4], big[64];
	struct json_pick p[] = {
		{ .path = root, .secret = &s_root },
		{ .path = a, .buf = small, .cap = sizeof(small) },
		{ .path = ab, .buf = big, .cap = sizeof(big) },
		{ .path = key, .secret = &s_key },
		{ .path = ss },
	};
	const size_t n = sizeof(p) / sizeof(p[0]);
	char why[128];
	int rc = json_pick(data, size, p, n, why, sizeof(why));
	json_error_t e;
	json_t *j = json_loadb((const char *)data, size, JSON_DECODE_ANY, &e);
	if (rc == -ENOMEM)
		abort();
	bool range = rc == 0 && !j && (strstr(e.text, "too big") || strstr(e.text, "overflow"));
	bool nul = rc == -EINVAL && j && memchr(data, 0, size);
	if (!j != !!rc && !range && !nul)
		abort();   /* one accepts what the other refuses */
	if (rc == 0 && j) {
		for (size_t i = 0; i < n; i++) {
			json_t *v = fuzz_json_at(j, p[i].path);
			if (p[i].type != fuzz_json_type(v))
				abort();
			if (p[i].type == JSON_PICK_STRING) {
				size_t vl = json_string_length(v);
				const char *vs = json_string_value(v);
				struct secret *sec = p[i].secret ? *p[i].secret : NULL;
				if (p[i].len != vl || (sec && (sec->len != vl || memcmp(sec->data, vs, vl))))
					abort();
				if (p[i].buf && (strncmp(p[i].buf, vs, p[i].cap - 1) ||
				                 p[i].cut != (vl > p[i].cap - 1)))
					abort();
			}
		}
	}
	json_pick_clear(p, n);
	if (s_key || s_root)
		abort();   /* clear frees what the pass allocated */
	json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t which = data[0] % 18;
	data++;
	size--;
	char why[200];
	long status = size && (data[0] & 1) ? 404 : 200;
	switch (which) {
	case 0: {
		struct secret *out = NULL;
		vault_parse_kv_read(status, data, size, &out, why, sizeof(why));
		secret_free(out);
		break;
	}
	case 1: {
		struct strlist l = STRLIST_INIT;
		vault_parse_kv_list(status, data, size, &l, why, sizeof(why));
		strlist_clear(&l);
		break;
	}
	case 2: {
		struct secret *tok = NULL;
		struct credential_timing t;
		vault_parse_auth(200, data, size, 1000.0, &tok, &t, why, sizeof(why));
		secret_free(tok);
		break;
	}
	case 3: {
		struct credential_timing t;
		vault_parse_lookup(200, data, size, 1000.0, &t, why, sizeof(why));
		break;
	}
	case 4:
		keyformat_validate(size && (data[0] & 1) ? KEY_FORMAT_ANY : KEY_FORMAT_EVM,
		                   data, size, NULL, NULL, NULL);
		break;
	case 5:
		fuzz_config(data, size);
		break;
	case 6:
		fuzz_audit_recovery(data, size);
		break;
	case 8:
		fuzz_audit(data, size);
		break;
	case 9:
		fuzz_keyformat_properties(size && (data[0] & 1) ? KEY_FORMAT_ANY : KEY_FORMAT_EVM,
		                          data, size);
		break;
	case 10:
		vault_parse_metadata_deleted(status, data, size);
		break;
	case 11: {
		struct aws_credentials c = { 0 };
		if (aws_parse_credentials_json(data, size, &c, why, sizeof(why)) == 0)
			aws_credentials_clear(&c);
		/* the same bytes as a credential_process's output and command */
		if (aws_parse_process_json(data, size, &c, why, sizeof(why)) == 0)
			aws_credentials_clear(&c);
		char *cmd = strndup((const char *)data, size), **argv = NULL;
		if (cmd && aws_split_command(cmd, &argv) == 0) {
			for (size_t i = 0; argv[i]; i++)
				if (strlen(argv[i]) > size)
					abort();   /* a word is never longer than the input */
			aws_split_command_free(argv);
		}
		free(cmd);
		break;
	}
	case 12: {
		struct aws_credentials c = { 0 };
		char *text = strndup((const char *)data, size);
		if (text && aws_parse_sts_response(status == 404 ? 400 : 200, text, strlen(text), &c,
		                                   why, sizeof(why)) == 0)
			aws_credentials_clear(&c);
		free(text);
		break;
	}
	case 13: {
		char code[64], msg[160];
		aws_parse_error(data, size, code, sizeof(code), msg, sizeof(msg));
		break;
	}
	case 14: {
		struct secret *out = NULL;
		aws_parse_secret_string(data, size, &out, why, sizeof(why));
		secret_free(out);
		break;
	}
	case 15:
		fuzz_aws_profile(data, size);
		break;
	case 16:
		fuzz_json_pick(data, size);
		break;
	case 17: {
		struct secret *out = NULL;
		double created;
		if (aws_parse_get_secret_value(data, size, &out, &created, why, sizeof(why)) == 0 &&
		    (!out || !out->len))
			abort();   /* success always hands over a non-empty key */
		secret_free(out);
		break;
	}
	default:   /* 7 */
		if (file_map_roundtrip(data, size) == -EPROTO)
			abort();   /* parse and serialise disagree */
		break;
	}
	return 0;
}
