/* fuzz_parsers.c - libFuzzer harness for the parsers that read untrusted
 * input: Vault's responses (KV read, list, login, token lookup), key
 * content validation, the YAML config loader, the audit log's tail
 * recovery (what a restart continues from) and the file store's decrypted
 * map.  Fuzzing is by hand (see README.md in this folder); `meson test`
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t which = data[0] % 8;
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
	default:
		if (file_map_roundtrip(data, size) == -EPROTO)
			abort();   /* parse and serialise disagree */
		break;
	}
	return 0;
}
