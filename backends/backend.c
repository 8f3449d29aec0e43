/* backend.c - backend lookup and the helpers every backend shares. */
#include "backend.h"
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

void backend_err_set(struct backend_err *e, const char *fmt, ...)
{
	if (!e)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
}

const struct backend_ops *backend_ops_for(int storage_type)
{
	switch ((enum storage_type)storage_type) {
	case STORAGE_FILE:  return &file_backend_ops;
	case STORAGE_ENV:   return &env_backend_ops;
	case STORAGE_VAULT: return &vault_backend_ops;
	case STORAGE_KEYRING: return &keyring_backend_ops;
	case STORAGE_AWS:
		return NULL;
	}
	return NULL;
}

int backend_open(const struct config *cfg, struct backend **out, struct backend_err *err)
{
	const struct backend_ops *ops = backend_ops_for(cfg->storage_type);
	if (!ops) {
		backend_err_set(err, "storage_type '%s' is not supported by this build",
		                config_storage_name(cfg->storage_type));
		return -ENOTSUP;
	}
	return ops->open(cfg, out, err);
}

static bool network_char(char c, bool first)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return !first && (c == '.' || c == '_' || c == '-');
}

bool network_name_valid(const char *name)
{
	if (!name || !network_char(name[0], true))
		return false;
	size_t i = 1;
	for (; name[i]; i++)
		if (i >= 64 || !network_char(name[i], false))
			return false;
	return true;
}
