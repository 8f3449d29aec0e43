/* backend.c - backend lookup and the helpers every backend shares. */
#include "backend.h"
#include "backend_config.h"
#include "clock.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void backend_err_set(struct backend_err *e, const char *fmt, ...)
{
	if (!e)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
}

/* The registry: one row per type, the only list of types there is.  The
 * config accepts exactly these storage_type names (in this order in its
 * messages); a row whose ops are NULL is a type this build does not have. */
static const struct backend_type backend_types[] = {
	{ "file", "file", "file", &file_backend_ops, BACKEND_LISTS_CHEAPLY },
	{ "env", "env", NULL, &env_backend_ops, BACKEND_READ_ONLY | BACKEND_LISTS_CHEAPLY },
	{ "keyring", "keyring", "keyring", &keyring_backend_ops, BACKEND_REMOTE | BACKEND_SESSION_BUS },
	{ "vault", "vault", "vault", &vault_backend_ops, BACKEND_REMOTE },
	{ "aws-secrets", "aws", "aws_secrets", &aws_backend_ops, BACKEND_REMOTE },
};
#define BACKEND_TYPES (sizeof(backend_types) / sizeof(backend_types[0]))

const struct backend_type *backend_type_find(const char *name)
{
	for (size_t i = 0; name && i < BACKEND_TYPES; i++)
		if (strcmp(backend_types[i].name, name) == 0)
			return &backend_types[i];
	return NULL;
}

const struct backend_type *backend_type_at(size_t i)
{
	return i < BACKEND_TYPES ? &backend_types[i] : NULL;
}

int backend_open(const struct config_backend *section, struct backend **out,
                 struct backend_err *err)
{
	const struct backend_type *t = section->type;
	*out = NULL;
	if (!t || !t->ops) {
		backend_err_set(err, "storage_type '%s' is not supported by this build",
		                t ? t->name : "(none)");
		return -ENOTSUP;
	}
	int rc = t->ops->open(section, section->name, out, err);
	if (rc < 0)
		return rc;
	(*out)->type = t;
	snprintf((*out)->name, sizeof((*out)->name), "%s", section->name);
	return 0;
}

double backend_deadline(double deadline, double timeout_seconds)
{
	double own = clock_monotonic() + timeout_seconds;
	return deadline > 0 && deadline < own ? deadline : own;
}

int backend_start(struct backend *b, struct backend_err *err)
{
	return b->ops->start ? b->ops->start(b, err) : 0;
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
