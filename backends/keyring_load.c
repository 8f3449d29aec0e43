/* keyring_load.c - the part of the keyring backend that is always in the
 * daemon: the pure helpers of keyring_internal.h and keyring_backend_ops,
 * whose open() loads the module that talks to the Secret Service.
 *
 * The module (keyring.c, built as omikuji-keyfs-keyring.so) is the only
 * code linked against libsecret, GIO and GLib, about 1.9 MiB of resident
 * library pages: a mount without a keyring instance never maps them
 * (issue 15, goal 3).  It is found through the daemon's RUNPATH (the build
 * directory in a build tree, $libdir/omikuji-keyfs once installed), loaded
 * once, never unloaded, and every later call of a keyring backend goes to
 * the module's own ops.  A module or library that cannot be loaded fails
 * the open with one line naming it (dlerror's own words).
 */
#include "backend.h"
#include "backend_config.h"
#include "keyring_internal.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define KEYRING_ADDRESS_MAX 512
#define KEYRING_MODULE "omikuji-keyfs-keyring.so"

/* ---- pure helpers ----------------------------------------------------------- */

int keyring_item_label(const char *service, const char *network, char *out, size_t outlen)
{
	int w = snprintf(out, outlen, "%s@%s:default (keyring v%s)", network, service,
	                 KEYRING_RS_VERSION);
	return w < 0 || (size_t)w >= outlen ? -ENAMETOOLONG : 0;
}

int keyring_bus_address(const char *env_address, const char *runtime_dir, char *out,
                        size_t outlen)
{
	struct stat st;
	char path[KEYRING_ADDRESS_MAX];
	int w;
	out[0] = 0;
	if (env_address && *env_address) {
		w = snprintf(out, outlen, "%s", env_address);
		return w < 0 || (size_t)w >= outlen ? -ENAMETOOLONG : 0;
	}
	if (!runtime_dir || runtime_dir[0] != '/')
		return -ENOENT;
	w = snprintf(path, sizeof(path), "%s/bus", runtime_dir);
	if (w < 0 || (size_t)w >= sizeof(path))
		return -ENAMETOOLONG;
	if (stat(path, &st) != 0 || !S_ISSOCK(st.st_mode))
		return -ENOENT;
	/* D-Bus address values escape everything but [-0-9A-Za-z_/.\*]. */
	size_t o = (size_t)snprintf(out, outlen, "unix:path=");
	for (const char *p = path; *p; p++) {
		unsigned char c = (unsigned char)*p;
		bool plain = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
		             (c >= 'A' && c <= 'Z') || strchr("-_/.\\*", c);
		w = snprintf(out + o, outlen - o, plain ? "%c" : "%%%02x", c);
		if (w < 0 || (size_t)w >= outlen - o) {
			out[0] = 0;
			return -ENAMETOOLONG;
		}
		o += (size_t)w;
	}
	return 0;
}

/* ---- loading the module ---------------------------------------------------- */

static pthread_once_t module_once = PTHREAD_ONCE_INIT;
static const struct backend_ops *module_ops;
static char module_error[256];

static void module_load(void)
{
	/* RTLD_LOCAL: GLib's symbols stay the module's business. */
	void *h = dlopen(KEYRING_MODULE, RTLD_NOW | RTLD_LOCAL);
	const char *why = NULL;
	if (!h)
		why = dlerror();
	else if (!(module_ops = dlsym(h, "keyring_module_ops")))
		why = dlerror();
	if (why)
		snprintf(module_error, sizeof(module_error), "%s", why);
}

static int keyring_load_open(const struct config_backend *cfg, const char *name,
                             struct backend **out, struct backend_err *err)
{
	*out = NULL;
	pthread_once(&module_once, module_load);
	if (!module_ops) {
		backend_err_set(err, "keyring: cannot load the keyring backend (%s, which needs "
		                "libsecret-1): %s", KEYRING_MODULE,
		                module_error[0] ? module_error : "no keyring_module_ops");
		return -ENOTSUP;
	}
	return module_ops->open(cfg, name, out, err);
}

/* Only open: the backend it returns carries the module's ops. */
const struct backend_ops keyring_backend_ops = {
	.open = keyring_load_open,
};
