/* config.c - PLACEHOLDER: defaults only, the YAML parser is being written. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *config_storage_name(enum storage_type t)
{
	static const char *names[] = { "file", "env", "keyring", "vault", "aws-secrets" };
	return names[t];
}

char *config_find(const char *explicit_path)
{
	return explicit_path ? strdup(explicit_path) : NULL;
}

int config_load(const char *path, unsigned flags, struct config *out, char *err, size_t errlen)
{
	(void)flags;
	memset(out, 0, sizeof(*out));
	if (path) {
		snprintf(err, errlen, "%s: config files are not parsed yet", path);
		return -ENOSYS;
	}
	const char *home = getenv("HOME");
	char buf[4096];
	snprintf(buf, sizeof(buf), "%s/.local/share/omikuji-keyfs/keys.enc", home ? home : "/root");
	out->file.path = strdup(buf);
	snprintf(buf, sizeof(buf), "%s/.local/state/omikuji-keyfs/audit.log", home ? home : "/root");
	out->keyfs.audit_log = strdup(buf);
	out->keyfs.health_interval_seconds = 15;
	out->keyfs.max_stale_seconds = 3600;
	out->keyfs.cache_max_entries = 10000;
	out->keyfs.list_cache_seconds = 5;
	return 0;
}

void config_print(const struct config *cfg, FILE *out)
{
	fprintf(out, "key_storage:\n  storage_type: %s\n", config_storage_name(cfg->storage_type));
}

void config_free(struct config *cfg)
{
	free(cfg->file.path);
	free(cfg->keyfs.audit_log);
	memset(cfg, 0, sizeof(*cfg));
}
