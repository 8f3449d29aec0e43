/* env.c - the read-only `env` backend: OMIKUJI_KEY_<NETWORK> variables, named
 * exactly as Omikuji reads them (network upper-cased, '-' and '.' -> '_').
 *
 * Assumption: this process never changes its environment after start (no
 * setenv/putenv/unsetenv anywhere in omikuji-keyfs), so getenv() and walking
 * `environ` are safe from any thread without a lock.
 */
#include "backend.h"
#include "clock.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

#define ENV_PREFIX     "OMIKUJI_KEY_"
#define ENV_PREFIX_LEN (sizeof(ENV_PREFIX) - 1)
#define ENV_NAME_MAX   64

struct env_backend {
	struct backend base;
};

/* OMIKUJI_KEY_<NETWORK> for network; false when it does not fit. */
static bool env_var_name(const char *network, char *buf, size_t size)
{
	size_t len = strlen(network);
	if (len == 0 || len > ENV_NAME_MAX || ENV_PREFIX_LEN + len + 1 > size)
		return false;
	memcpy(buf, ENV_PREFIX, ENV_PREFIX_LEN);
	for (size_t i = 0; i < len; i++) {
		char c = network[i];
		buf[ENV_PREFIX_LEN + i] = (c == '-' || c == '.') ? '_' : (char)toupper((unsigned char)c);
	}
	buf[ENV_PREFIX_LEN + len] = '\0';
	return true;
}

/* Length of value without trailing whitespace (a newline from `$(cat f)`
 * style assignments is not part of the key). */
static size_t env_trimmed_len(const char *value)
{
	size_t len = strlen(value);
	while (len && isspace((unsigned char)value[len - 1]))
		len--;
	return len;
}

static int env_open(const struct config_backend *cfg, const char *name, struct backend **out,
                    struct backend_err *err)
{
	(void)cfg;
	(void)name;
	(void)err;
	struct env_backend *eb = calloc(1, sizeof(*eb));
	if (!eb)
		return -ENOMEM;
	eb->base.ops = &env_backend_ops;
	*out = &eb->base;
	return 0;
}

static int env_get(struct backend *b, const char *network, struct secret **out, double deadline,
                   struct backend_err *err)
{
	(void)b;
	char name[ENV_PREFIX_LEN + ENV_NAME_MAX + 1];
	if (!env_var_name(network, name, sizeof(name))) {
		backend_err_set(err, "invalid network name");
		return -EINVAL;
	}
	const char *value = getenv(name);
	size_t len = value ? env_trimmed_len(value) : 0;
	if (len == 0)
		return -ENOENT;   /* unset and set-but-empty both mean "no key" */
	*out = secret_from(value, len);
	return *out ? 0 : -ENOMEM;
}

static int env_store(struct backend *b, const char *network, const struct secret *key,
                     double deadline, struct backend_err *err)
{
	(void)b; (void)network; (void)key;
	backend_err_set(err, "env backend is read-only");
	return -EROFS;
}

static int env_remove(struct backend *b, const char *network, double deadline,
                      struct backend_err *err)
{
	(void)b; (void)network;
	backend_err_set(err, "env backend is read-only");
	return -EROFS;
}

/* The network name (malloc'd, into *out) a variable stands for: 1 when var
 * is one of ours with a non-empty value, 0 when not, -ENOMEM.  The mapping is lossy: "base-sepolia", "base_sepolia", "base.sepolia"
 * and "Base-Sepolia" all read OMIKUJI_KEY_BASE_SEPOLIA, and we can only list
 * it back under one name; we pick lower case with '_' -> '-', the spelling
 * Omikuji's configs use for networks.  A get of any of the other spellings
 * still finds the key. */
static int env_network_of(const char *var, char **out)
{
	if (strncmp(var, ENV_PREFIX, ENV_PREFIX_LEN) != 0)
		return 0;
	const char *name = var + ENV_PREFIX_LEN;
	const char *eq = strchr(name, '=');
	if (!eq || eq == name || (size_t)(eq - name) > ENV_NAME_MAX || env_trimmed_len(eq + 1) == 0)
		return 0;
	size_t len = (size_t)(eq - name);
	char *net = malloc(len + 1);
	if (!net)
		return -ENOMEM;
	for (size_t i = 0; i < len; i++)
		net[i] = name[i] == '_' ? '-' : (char)tolower((unsigned char)name[i]);
	net[len] = '\0';
	*out = net;
	return 1;
}

static int env_list(struct backend *b, struct strlist *out, double deadline,
                    struct backend_err *err)
{
	(void)b;
	(void)err;
	for (char **e = environ; e && *e; e++) {
		char *net = NULL;
		int rc = env_network_of(*e, &net);
		if (rc > 0)
			rc = strlist_take(out, net);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static void env_health(struct backend *b, struct backend_health *out)
{
	(void)b;
	double t0 = clock_monotonic();
	size_t n = 0;
	for (char **e = environ; e && *e; e++) {
		char *net = NULL;
		if (env_network_of(*e, &net) > 0)
			n++;
		free(net);
	}
	out->up = true;
	out->latency_seconds = clock_monotonic() - t0;
	out->error[0] = '\0';
	snprintf(out->detail, sizeof(out->detail), "variables: %zu\n", n);
}

static void env_close(struct backend *b)
{
	free(b);
}

const struct backend_ops env_backend_ops = {
	.open = env_open,
	.get = env_get,
	.store = env_store,
	.remove = env_remove,
	.list = env_list,
	.health = env_health,
	.close = env_close,
};
