/* fuzz_parsers.c - libFuzzer harness for the parsers that read untrusted
 * input: Vault's responses (KV read, list, login, token lookup), key
 * content validation, the YAML config loader, the audit log's tail
 * recovery (what a restart continues from), the file store's decrypted
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t which = data[0] % 13;
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
		struct vault_token_timing t;
		vault_parse_auth(200, data, size, 1000.0, &tok, &t, why, sizeof(why));
		secret_free(tok);
		break;
	}
	case 3: {
		struct vault_token_timing t;
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
	case 8: {
		struct aws_credentials c = { 0 };
		if (aws_parse_credentials_json(data, size, &c, why, sizeof(why)) == 0)
			aws_credentials_clear(&c);
		break;
	}
	case 9: {
		struct aws_credentials c = { 0 };
		char *text = strndup((const char *)data, size);
		if (text && aws_parse_sts_response(status == 404 ? 400 : 200, text, strlen(text), &c,
		                                   why, sizeof(why)) == 0)
			aws_credentials_clear(&c);
		free(text);
		break;
	}
	case 10: {
		char code[64], msg[160];
		aws_parse_error(data, size, code, sizeof(code), msg, sizeof(msg));
		break;
	}
	case 11: {
		struct secret *out = NULL;
		aws_parse_secret_string(data, size, &out, why, sizeof(why));
		secret_free(out);
		break;
	}
	case 12:
		fuzz_aws_profile(data, size);
		break;
	default:   /* 7 */
		if (file_map_roundtrip(data, size) == -EPROTO)
			abort();   /* parse and serialise disagree */
		break;
	}
	return 0;
}
