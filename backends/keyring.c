/* keyring.c - the OS keyring backend: the freedesktop Secret Service
 * (gnome-keyring, KeePassXC, ...) over libsecret, in Omikuji's layout (see
 * keyring_internal.h).
 *
 * Choices worth knowing:
 *   - One worker thread owns every GLib/D-Bus object (connection, libsecret
 *     proxy and session).  Callers queue a request and wait for it at most
 *     timeout_seconds; at the deadline they cancel its GCancellable and
 *     return -ETIMEDOUT, so a FUSE thread never waits longer on D-Bus
 *     whatever libsecret or the keyring daemon do.  The worker (and with it
 *     GDBus's own thread) starts in start(), after the daemon forked, or
 *     on the first call where nothing calls start().
 *   - Never a prompt: the libsecret proxy is a subclass whose prompt
 *     handlers fail at once, and only the prompt-free D-Bus path calls are
 *     used (search returns locked and unlocked items apart; locked ones are
 *     never unlocked).  A locked collection is -EACCES with "collection
 *     locked", and marks health down (backend_err.health_down).
 *   - Our own connection to the session bus, not GLib's shared singleton:
 *     the singleton would end the process when the bus goes away and stays
 *     closed after, so a restarted bus could never be used again.  Any
 *     failure other than "not found" and "locked" drops the connection and
 *     session; the next call (or the health check) connects again, and a
 *     call that failed on an old connection is tried once more on a new one
 *     within its deadline (a restarted keyring daemon forgets our session).
 *   - Reads search service+username in every collection (as keyring-rs and
 *     secret-tool do) and take the unlocked match with target=default (what
 *     keyring-rs reads), else the first one; a store creates or
 *     replaces the keyring-rs shaped item in the default collection, then
 *     deletes every other unlocked match, so one item per network remains.
 *   - Every secret libsecret hands back is copied into a struct secret and
 *     wiped before it is released.
 *   - This file is a loadable module (omikuji-keyfs-keyring.so), the only
 *     code linked against libsecret/GIO/GLib: keyring_load.c loads it when
 *     a keyring instance is opened, so a mount without one maps none of
 *     those libraries.  It calls back into the daemon only through the
 *     symbols listed in keyring_host.list.
 */
#define SECRET_API_SUBJECT_TO_CHANGE 1
#include "backend.h"
#include "backend_config.h"
#include "clock.h"
#include "keyring_internal.h"
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <libsecret/secret.h>

extern const struct backend_ops keyring_module_ops;

#define KEYRING_BUS_NAME "org.freedesktop.secrets"
#define KEYRING_ADDRESS_MAX 512
#define KEYRING_PATH_MAX 256

/* ---- a libsecret proxy that never prompts and uses our connection ----------- */

#define KEYRING_ERROR (keyring_error_quark())
static GQuark keyring_error_quark(void)
{
	return g_quark_from_static_string("omikuji-keyfs-keyring");
}
enum { KEYRING_ERROR_PROMPT = 1 };

typedef struct { SecretService parent; } KeyfsSecretService;
typedef struct { SecretServiceClass parent_class; } KeyfsSecretServiceClass;

static GType keyfs_secret_service_get_type(void);
G_DEFINE_TYPE(KeyfsSecretService, keyfs_secret_service, SECRET_TYPE_SERVICE)

static const char prompt_refused[] =
	"the keyring wants to prompt (locked); this program never prompts";

static GVariant *keyfs_prompt_sync(SecretService *self, SecretPrompt *prompt,
                                   GCancellable *cancellable, const GVariantType *return_type,
                                   GError **error)
{
	(void)self; (void)prompt; (void)cancellable; (void)return_type;
	g_set_error_literal(error, KEYRING_ERROR, KEYRING_ERROR_PROMPT, prompt_refused);
	return NULL;
}

static void keyfs_prompt_async(SecretService *self, SecretPrompt *prompt,
                               const GVariantType *return_type, GCancellable *cancellable,
                               GAsyncReadyCallback callback, gpointer user_data)
{
	(void)prompt; (void)return_type; (void)cancellable;
	g_task_report_new_error(self, callback, user_data, keyfs_prompt_async, KEYRING_ERROR,
	                        KEYRING_ERROR_PROMPT, "%s", prompt_refused);
}

static GVariant *keyfs_prompt_finish(SecretService *self, GAsyncResult *result, GError **error)
{
	(void)self;
	return g_task_propagate_pointer(G_TASK(result), error);
}

/* libsecret's constructor forces the session bus singleton (g-bus-type);
 * undo that so the proxy uses the connection passed as g-connection. */
static GObject *keyfs_secret_service_constructor(GType type, guint n,
                                                 GObjectConstructParam *params)
{
	GObject *o = G_OBJECT_CLASS(keyfs_secret_service_parent_class)->constructor(type, n, params);
	g_object_set(o, "g-bus-type", G_BUS_TYPE_NONE, NULL);
	return o;
}

static void keyfs_secret_service_init(KeyfsSecretService *self)
{
	(void)self;
}

static void keyfs_secret_service_class_init(KeyfsSecretServiceClass *klass)
{
	SecretServiceClass *sc = SECRET_SERVICE_CLASS(klass);
	G_OBJECT_CLASS(klass)->constructor = keyfs_secret_service_constructor;
	sc->prompt_sync = keyfs_prompt_sync;
	sc->prompt_async = keyfs_prompt_async;
	sc->prompt_finish = keyfs_prompt_finish;
}

/* ---- state ---------------------------------------------------------------------- */

enum keyring_op { KEYRING_GET, KEYRING_STORE, KEYRING_REMOVE, KEYRING_LIST, KEYRING_HEALTH };

struct keyring_request {
	enum keyring_op op;
	char network[72];
	struct secret *key;               /* store: our own copy */
	struct secret *value;             /* get: the answer */
	struct strlist names;             /* list: the answer */
	struct backend_health health;     /* health: the answer */
	int rc;
	char why[BACKEND_ERR_MAX];
	bool health_down;
	bool done;
	int refs;                         /* caller + worker; under k->lock */
	GCancellable *cancel;             /* cancelled by the caller at its deadline */
	struct keyring_request *next;
};

struct keyring_backend {
	struct backend base;              /* first: the fs layer holds &base */
	char *service;
	int timeout_seconds;

	pthread_mutex_t lock;             /* the queue, refs, done, worker state */
	pthread_cond_t work_cond;         /* a request was queued, or stop */
	pthread_cond_t done_cond;         /* a request is done */
	struct keyring_request *head, *tail;
	bool worker_started;
	bool stopping;
	pthread_t worker;

	/* Owned by the worker thread alone. */
	GDBusConnection *conn;
	SecretService *secrets;
	char address[KEYRING_ADDRESS_MAX];
};

static struct keyring_backend *keyring_of(struct backend *b)
{
	return (struct keyring_backend *)b;
}

/* One attempt of one request, on the worker. */
struct keyring_call {
	struct keyring_backend *k;
	struct keyring_request *r;
	GCancellable *cancel;
	bool reset;                       /* drop the connection: it may be stale */
	bool fresh;                       /* the connection was made in this attempt */
};

static void call_why(struct keyring_call *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void call_why(struct keyring_call *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->r->why, sizeof(c->r->why), fmt, ap);
	va_end(ap);
}

/* Map a GError to an errno and a reason; frees it. */
static int call_fail(struct keyring_call *c, GError *e, const char *what)
{
	int rc = -EIO;
	if (!e) {
		call_why(c, "%s failed", what);
		c->reset = true;
		return -EIO;
	}
	if (g_error_matches(e, G_IO_ERROR, G_IO_ERROR_CANCELLED) ||
	    g_error_matches(e, G_IO_ERROR, G_IO_ERROR_TIMED_OUT) ||
	    g_error_matches(e, G_DBUS_ERROR, G_DBUS_ERROR_TIMEOUT) ||
	    g_error_matches(e, G_DBUS_ERROR, G_DBUS_ERROR_TIMED_OUT) ||
	    g_error_matches(e, G_DBUS_ERROR, G_DBUS_ERROR_NO_REPLY)) {
		call_why(c, "%s: no answer within %d s", what, c->k->timeout_seconds);
		c->reset = true;
		rc = -ETIMEDOUT;
	} else if (g_error_matches(e, SECRET_ERROR, SECRET_ERROR_IS_LOCKED) ||
	           g_error_matches(e, KEYRING_ERROR, KEYRING_ERROR_PROMPT)) {
		call_why(c, "collection locked");
		c->r->health_down = true;
		rc = -EACCES;
	} else if (g_error_matches(e, SECRET_ERROR, SECRET_ERROR_NO_SUCH_OBJECT)) {
		call_why(c, "%s: no such item", what);
		rc = -ENOENT;
	} else if (g_error_matches(e, G_DBUS_ERROR, G_DBUS_ERROR_SERVICE_UNKNOWN) ||
	           g_error_matches(e, G_DBUS_ERROR, G_DBUS_ERROR_NAME_HAS_NO_OWNER)) {
		call_why(c, "no Secret Service on the session bus (is gnome-keyring-daemon running?)");
		c->reset = true;
	} else {
		call_why(c, "%s: %s", what, e->message);
		c->reset = true;
	}
	g_error_free(e);
	return rc;
}

static void keyring_disconnect(struct keyring_backend *k)
{
	if (k->secrets) {
		g_object_unref(k->secrets);
		k->secrets = NULL;
	}
	if (k->conn) {
		if (!g_dbus_connection_is_closed(k->conn))
			g_dbus_connection_close_sync(k->conn, NULL, NULL);
		g_object_unref(k->conn);
		k->conn = NULL;
	}
}

static int keyring_connect(struct keyring_call *c)
{
	struct keyring_backend *k = c->k;
	GError *e = NULL;
	if (k->secrets && k->conn && !g_dbus_connection_is_closed(k->conn))
		return 0;
	keyring_disconnect(k);
	c->fresh = true;
	int rc = keyring_bus_address(getenv("DBUS_SESSION_BUS_ADDRESS"), getenv("XDG_RUNTIME_DIR"),
	                             k->address, sizeof(k->address));
	if (rc) {
		call_why(c, "no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS unset, no "
		         "$XDG_RUNTIME_DIR/bus): run under the user's session (systemctl --user) "
		         "or set DBUS_SESSION_BUS_ADDRESS");
		c->r->health_down = true;
		return -EIO;
	}
	k->conn = g_dbus_connection_new_for_address_sync(
		k->address,
		G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT |
		G_DBUS_CONNECTION_FLAGS_MESSAGE_BUS_CONNECTION,
		NULL, c->cancel, &e);
	if (!k->conn)
		return call_fail(c, e, "cannot connect to the session bus");
	g_dbus_connection_set_exit_on_close(k->conn, FALSE);
	k->secrets = g_initable_new(keyfs_secret_service_get_type(), c->cancel, &e,
	                            "g-connection", k->conn,
	                            "flags", SECRET_SERVICE_OPEN_SESSION, NULL);
	if (!k->secrets) {
		rc = call_fail(c, e, "cannot open a Secret Service session");
		c->reset = true;
		return rc;
	}
	return 0;
}

/* Search items with service (and username when network is set); the
 * arrays are NULL-terminated, freed with g_strfreev. */
static int keyring_search(struct keyring_call *c, const char *network, gchar ***unlocked,
                          gchar ***locked)
{
	GError *e = NULL;
	GHashTable *attrs = g_hash_table_new(g_str_hash, g_str_equal);
	g_hash_table_insert(attrs, (gpointer)"service", c->k->service);
	if (network)
		g_hash_table_insert(attrs, (gpointer)"username", (gpointer)network);
	*unlocked = *locked = NULL;
	gboolean ok = secret_service_search_for_dbus_paths_sync(c->k->secrets, NULL, attrs,
	                                                        c->cancel, unlocked, locked, &e);
	g_hash_table_unref(attrs);
	if (!ok) {
		g_strfreev(*unlocked);
		g_strfreev(*locked);
		*unlocked = *locked = NULL;
		return call_fail(c, e, "search");
	}
	return 0;
}

static bool paths_empty(gchar **p)
{
	return !p || !p[0];
}

/* Is the item at path shaped as keyring-rs writes it (target=default)?
 * false when its attributes cannot be read. */
static bool keyring_item_is_ours(struct keyring_call *c, const char *path)
{
	GError *e = NULL;
	GVariant *r = g_dbus_connection_call_sync(
		c->k->conn, KEYRING_BUS_NAME, path, "org.freedesktop.DBus.Properties", "Get",
		g_variant_new("(ss)", "org.freedesktop.Secret.Item", "Attributes"),
		G_VARIANT_TYPE("(v)"), G_DBUS_CALL_FLAGS_NONE, c->k->timeout_seconds * 1000,
		c->cancel, &e);
	if (!r) {
		g_error_free(e);
		return false;
	}
	GVariant *v = NULL;
	const gchar *target = NULL;
	g_variant_get(r, "(v)", &v);
	bool ours = g_variant_is_of_type(v, G_VARIANT_TYPE("a{ss}")) &&
	            g_variant_lookup(v, "target", "&s", &target) && !strcmp(target, "default");
	g_variant_unref(v);
	g_variant_unref(r);
	return ours;
}

/* Of several unlocked matches, the one Omikuji's keyring library reads
 * first (it searches target=default); else the first. */
static const char *keyring_pick(struct keyring_call *c, gchar **unlocked)
{
	if (!unlocked[1])
		return unlocked[0];
	for (size_t i = 0; unlocked[i]; i++)
		if (keyring_item_is_ours(c, unlocked[i]))
			return unlocked[i];
	return unlocked[0];
}

static int keyring_do_get(struct keyring_call *c)
{
	gchar **unlocked, **locked;
	int rc = keyring_search(c, c->r->network, &unlocked, &locked);
	if (rc)
		return rc;
	if (paths_empty(unlocked)) {
		if (!paths_empty(locked)) {
			call_why(c, "collection locked");
			c->r->health_down = true;
			rc = -EACCES;
		} else {
			call_why(c, "no such key");
			rc = -ENOENT;
		}
		goto out;
	}
	GError *e = NULL;
	SecretValue *v = secret_service_get_secret_for_dbus_path_sync(
		c->k->secrets, keyring_pick(c, unlocked), c->cancel, &e);
	if (!v) {
		rc = e ? call_fail(c, e, "read secret") : -ENOENT;
		if (rc == -ENOENT)
			call_why(c, "no such key");
		goto out;
	}
	gsize n = 0;
	const gchar *p = secret_value_get(v, &n);
	if (!p || n == 0) {
		call_why(c, "the keyring item holds an empty secret");
		rc = -EIO;
	} else if (!g_utf8_validate(p, (gssize)n, NULL)) {
		/* keyring-rs's get_password refuses it too (BadEncoding) */
		call_why(c, "the keyring item's secret is not UTF-8 text");
		rc = -EIO;
	} else {
		c->r->value = secret_from(p, n);
		rc = c->r->value ? 0 : -ENOMEM;
	}
	if (p)
		secret_wipe((void *)p, n);    /* ours alone: libsecret's copy */
	secret_value_unref(v);
out:
	g_strfreev(unlocked);
	g_strfreev(locked);
	return rc;
}

/* Delete every unlocked item in paths except `keep`.  Returns how many were
 * deleted, or a negative errno when a delete failed. */
static int keyring_delete_paths(struct keyring_call *c, gchar **paths, const char *keep)
{
	int deleted = 0;
	for (size_t i = 0; paths && paths[i]; i++) {
		if (keep && !strcmp(paths[i], keep))
			continue;
		GError *e = NULL;
		if (!secret_service_delete_item_dbus_path_sync(c->k->secrets, paths[i], c->cancel, &e)) {
			int rc = call_fail(c, e, "delete");
			if (rc != -ENOENT)
				return rc;
			continue;
		}
		deleted++;
	}
	return deleted;
}

/* The default collection's path and lock state. */
static int keyring_default_collection(struct keyring_call *c, char *path, size_t pathlen,
                                      bool *locked)
{
	GError *e = NULL;
	gchar *p = secret_service_read_alias_dbus_path_sync(c->k->secrets, "default", c->cancel, &e);
	if (!p) {
		if (e)
			return call_fail(c, e, "read the default collection");
		call_why(c, "no default collection (create one, e.g. by unlocking the login "
		         "keyring or storing any secret with secret-tool)");
		c->r->health_down = true;
		return -EIO;
	}
	snprintf(path, pathlen, "%s", p);
	g_free(p);
	GVariant *r = g_dbus_connection_call_sync(
		c->k->conn, KEYRING_BUS_NAME, path, "org.freedesktop.DBus.Properties", "Get",
		g_variant_new("(ss)", "org.freedesktop.Secret.Collection", "Locked"),
		G_VARIANT_TYPE("(v)"), G_DBUS_CALL_FLAGS_NONE, c->k->timeout_seconds * 1000,
		c->cancel, &e);
	if (!r)
		return call_fail(c, e, "read the collection's lock state");
	GVariant *v = NULL;
	g_variant_get(r, "(v)", &v);
	int rc = 0;
	if (g_variant_is_of_type(v, G_VARIANT_TYPE_BOOLEAN)) {
		*locked = g_variant_get_boolean(v);
	} else {
		call_why(c, "the collection's Locked property is not a boolean");
		rc = -EIO;
	}
	g_variant_unref(v);
	g_variant_unref(r);
	return rc;
}

static int keyring_do_store(struct keyring_call *c)
{
	struct keyring_backend *k = c->k;
	const char *network = c->r->network;
	char collection[KEYRING_PATH_MAX], label[256];
	bool locked = false;
	int rc = keyring_default_collection(c, collection, sizeof(collection), &locked);
	if (rc)
		return rc;
	if (locked) {
		call_why(c, "collection locked");
		c->r->health_down = true;
		return -EACCES;
	}
	if (keyring_item_label(k->service, network, label, sizeof(label))) {
		call_why(c, "service name too long");
		return -EINVAL;
	}
	GVariantBuilder ab;
	g_variant_builder_init(&ab, G_VARIANT_TYPE("a{ss}"));
	g_variant_builder_add(&ab, "{ss}", "service", k->service);
	g_variant_builder_add(&ab, "{ss}", "username", network);
	g_variant_builder_add(&ab, "{ss}", "target", "default");
	g_variant_builder_add(&ab, "{ss}", "application", "rust-keyring");
	GHashTable *props = g_hash_table_new_full(g_str_hash, g_str_equal, NULL,
	                                          (GDestroyNotify)g_variant_unref);
	g_hash_table_insert(props, (gpointer)"org.freedesktop.Secret.Item.Label",
	                    g_variant_ref_sink(g_variant_new_string(label)));
	g_hash_table_insert(props, (gpointer)"org.freedesktop.Secret.Item.Attributes",
	                    g_variant_ref_sink(g_variant_builder_end(&ab)));
	/* libsecret copies the key into its non-pageable memory. */
	SecretValue *value = secret_value_new((const gchar *)c->r->key->data,
	                                      (gssize)c->r->key->len, "text/plain");
	GError *e = NULL;
	gchar *item = secret_service_create_item_dbus_path_sync(
		k->secrets, collection, props, value, SECRET_ITEM_CREATE_REPLACE, c->cancel, &e);
	gsize n = 0;
	const gchar *p = secret_value_get(value, &n);
	secret_wipe((void *)p, n);
	secret_value_unref(value);
	g_hash_table_unref(props);
	if (!item)
		return call_fail(c, e, "create item");

	/* One item per network: others (secret-tool's, python keyring's,
	 * another collection's) would shadow ours for some readers. */
	gchar **unlocked, **lockedp;
	rc = keyring_search(c, network, &unlocked, &lockedp);
	if (!rc) {
		int d = keyring_delete_paths(c, unlocked, item);
		if (d < 0)
			log_kv(LOG_LEVEL_WARN, "keyring: stored, but an older duplicate item stays",
			       "network", network, "error", c->r->why, (char *)NULL);
		g_strfreev(unlocked);
		g_strfreev(lockedp);
	}
	c->r->why[0] = 0;
	c->reset = false;
	g_free(item);
	return 0;
}

static int keyring_do_remove(struct keyring_call *c)
{
	gchar **unlocked, **locked;
	int rc = keyring_search(c, c->r->network, &unlocked, &locked);
	if (rc)
		return rc;
	int d = keyring_delete_paths(c, unlocked, NULL);
	if (d < 0) {
		rc = d;
	} else if (!paths_empty(locked)) {
		call_why(c, "collection locked");
		c->r->health_down = true;
		rc = -EACCES;
	} else if (d == 0) {
		call_why(c, "no such key");
		rc = -ENOENT;
	}
	g_strfreev(unlocked);
	g_strfreev(locked);
	return rc;
}

static int keyring_do_list(struct keyring_call *c)
{
	GError *e = NULL;
	GHashTable *attrs = g_hash_table_new(g_str_hash, g_str_equal);
	g_hash_table_insert(attrs, (gpointer)"service", c->k->service);
	/* SECRET_SEARCH_ALL without _UNLOCK: locked items come back locked. */
	GList *items = secret_service_search_sync(c->k->secrets, NULL, attrs, SECRET_SEARCH_ALL,
	                                          c->cancel, &e);
	g_hash_table_unref(attrs);
	if (!items && e)
		return call_fail(c, e, "search");
	int rc = 0;
	size_t locked = 0;
	for (GList *l = items; l && !rc; l = l->next) {
		SecretItem *item = l->data;
		if (secret_item_get_locked(item)) {
			locked++;
			continue;
		}
		GHashTable *a = secret_item_get_attributes(item);
		const char *user = a ? g_hash_table_lookup(a, "username") : NULL;
		if (user && *user && strlist_add(&c->r->names, user))
			rc = -ENOMEM;
		if (a)
			g_hash_table_unref(a);
	}
	g_list_free_full(items, g_object_unref);
	if (!rc && locked) {
		call_why(c, "collection locked");
		c->r->health_down = true;
		rc = -EACCES;
	}
	return rc;
}

static void keyring_health_detail(struct keyring_call *c, const char *collection,
                                  const char *locked)
{
	snprintf(c->r->health.detail, sizeof(c->r->health.detail),
	         "bus: %s\ncollection: %s\ncollection_locked: %s\nservice: %s\n",
	         c->k->address[0] ? c->k->address : "none", collection, locked, c->k->service);
}

static int keyring_do_health(struct keyring_call *c)
{
	char collection[KEYRING_PATH_MAX] = "unknown";
	bool locked = false;
	int rc = keyring_default_collection(c, collection, sizeof(collection), &locked);
	if (rc) {
		keyring_health_detail(c, "unknown", "unknown");
	} else {
		keyring_health_detail(c, collection, locked ? "yes" : "no");
		if (locked) {
			call_why(c, "collection locked");
			rc = -EACCES;
		}
	}
	return rc;
}

static int keyring_attempt(struct keyring_call *c)
{
	int rc = keyring_connect(c);
	if (rc && c->r->op == KEYRING_HEALTH)
		keyring_health_detail(c, "unknown", "unknown");
	if (rc)
		return rc;
	switch (c->r->op) {
	case KEYRING_GET:    return keyring_do_get(c);
	case KEYRING_STORE:  return keyring_do_store(c);
	case KEYRING_REMOVE: return keyring_do_remove(c);
	case KEYRING_LIST:   return keyring_do_list(c);
	case KEYRING_HEALTH: return keyring_do_health(c);
	}
	return -EINVAL;
}

static void keyring_run(struct keyring_backend *k, struct keyring_request *r)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		struct keyring_call c = { .k = k, .r = r, .cancel = r->cancel };
		if (g_cancellable_is_cancelled(r->cancel)) {
			if (attempt == 0) {
				r->rc = -ETIMEDOUT;
				snprintf(r->why, sizeof(r->why), "no answer within %d s",
				         k->timeout_seconds);
			}
			return;
		}
		r->why[0] = 0;
		r->health_down = false;
		strlist_clear(&r->names);
		r->rc = keyring_attempt(&c);
		if (c.reset)
			keyring_disconnect(k);
		/* Only a call that failed on an older connection is worth a
		 * second try: the daemon or the bus may have restarted. */
		if (!c.reset || c.fresh)
			return;
	}
}

static void request_unref(struct keyring_request *r)
{
	if (--r->refs > 0)
		return;
	secret_free(r->key);
	secret_free(r->value);
	strlist_clear(&r->names);
	if (r->cancel)
		g_object_unref(r->cancel);
	free(r);
}

static void *keyring_worker(void *arg)
{
	struct keyring_backend *k = arg;
	GMainContext *ctx = g_main_context_new();
	/* Signals of our proxies are dispatched here; drained between calls. */
	g_main_context_push_thread_default(ctx);
	pthread_mutex_lock(&k->lock);
	for (;;) {
		while (!k->head && !k->stopping) {
			struct timespec ts;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_sec += 1;
			pthread_cond_timedwait(&k->work_cond, &k->lock, &ts);
			pthread_mutex_unlock(&k->lock);
			while (g_main_context_iteration(ctx, FALSE))
				;
			pthread_mutex_lock(&k->lock);
		}
		struct keyring_request *r = k->head;
		if (!r)
			break;
		k->head = r->next;
		if (!k->head)
			k->tail = NULL;
		pthread_mutex_unlock(&k->lock);

		keyring_run(k, r);
		while (g_main_context_iteration(ctx, FALSE))
			;

		pthread_mutex_lock(&k->lock);
		r->done = true;
		pthread_cond_broadcast(&k->done_cond);
		request_unref(r);
	}
	pthread_mutex_unlock(&k->lock);
	keyring_disconnect(k);
	while (g_main_context_iteration(ctx, FALSE))
		;
	g_main_context_pop_thread_default(ctx);
	g_main_context_unref(ctx);
	return NULL;
}

/* Start the worker unless it runs; called with k->lock held.  0 or an
 * errno.  From start() after the daemon forked, else on first use (the key
 * commands): GLib's threads do not survive fork().  With every signal
 * blocked (GDBus's thread inherits it): stop signals are for the main
 * thread, whose wait they interrupt. */
static int keyring_worker_start(struct keyring_backend *k)
{
	if (k->worker_started)
		return 0;
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	int e = pthread_create(&k->worker, NULL, keyring_worker, k);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!e)
		k->worker_started = true;
	return e;
}

/* Queue r (its fields set) and wait for it until the deadline.  Returns
 * with r owned by the caller alone when done, else NULL (timed out: the
 * worker finishes and frees it). */
static struct keyring_request *keyring_submit(struct keyring_backend *k,
                                              struct keyring_request *r, double deadline)
{
	/* clock_monotonic() is CLOCK_MONOTONIC in seconds, as the cond waits. */
	double until = backend_deadline(deadline, k->timeout_seconds);
	struct timespec ts;
	ts.tv_sec = (time_t)until;
	ts.tv_nsec = (long)((until - (double)ts.tv_sec) * 1e9);
	r->cancel = g_cancellable_new();
	r->refs = 2;
	pthread_mutex_lock(&k->lock);
	int e = keyring_worker_start(k);
	if (e) {
		pthread_mutex_unlock(&k->lock);
		r->refs = 1;
		r->rc = -e;
		snprintf(r->why, sizeof(r->why), "cannot start the keyring thread: %s", strerror(e));
		return r;
	}
	if (k->tail)
		k->tail->next = r;
	else
		k->head = r;
	k->tail = r;
	pthread_cond_signal(&k->work_cond);
	while (!r->done) {
		if (pthread_cond_timedwait(&k->done_cond, &k->lock, &ts) == ETIMEDOUT)
			break;
	}
	bool done = r->done;
	GCancellable *cancel = NULL;
	if (!done) {
		/* The worker holds r (and frees it when done): keep only the
		 * cancellable, which may outlive r. */
		cancel = g_object_ref(r->cancel);
		request_unref(r);
	}
	pthread_mutex_unlock(&k->lock);
	if (!done) {
		g_cancellable_cancel(cancel);
		g_object_unref(cancel);
		return NULL;
	}
	r->refs = 1;
	return r;
}

static struct keyring_request *request_new(enum keyring_op op, const char *network)
{
	struct keyring_request *r = calloc(1, sizeof(*r));
	if (r && network)
		snprintf(r->network, sizeof(r->network), "%s", network);
	if (r)
		r->op = op;
	return r;
}

/* Submit, then report the outcome into err; returns rc, and r (the caller
 * frees it with request_unref) in *done, or NULL on timeout. */
static int keyring_call(struct keyring_backend *k, struct keyring_request *r, double deadline,
                        struct keyring_request **done, struct backend_err *err)
{
	*done = keyring_submit(k, r, deadline);
	if (!*done) {
		backend_err_set(err, "keyring: no answer from the Secret Service within %d s",
		                k->timeout_seconds);
		return -ETIMEDOUT;
	}
	if ((*done)->rc) {
		backend_err_set(err, "keyring: %s", (*done)->why[0] ? (*done)->why : "failed");
		if (err)
			err->health_down = (*done)->health_down;
	}
	return (*done)->rc;
}

static void request_done(struct keyring_backend *k, struct keyring_request *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&k->lock);
	request_unref(r);
	pthread_mutex_unlock(&k->lock);
}

/* ---- the ops -------------------------------------------------------------------- */

static int keyring_get(struct backend *b, const char *network, struct secret **out,
                       double deadline, struct backend_err *err)
{
	struct keyring_backend *k = keyring_of(b);
	struct keyring_request *r = request_new(KEYRING_GET, network), *done;
	*out = NULL;
	if (!r)
		return -ENOMEM;
	int rc = keyring_call(k, r, deadline, &done, err);
	if (!rc) {
		*out = done->value;
		done->value = NULL;
	}
	request_done(k, done);
	return rc;
}

static int keyring_store(struct backend *b, const char *network, const struct secret *key,
                         double deadline, struct backend_err *err)
{
	struct keyring_backend *k = keyring_of(b);
	struct keyring_request *r = request_new(KEYRING_STORE, network), *done;
	if (!r || !(r->key = secret_dup(key))) {
		free(r);
		return -ENOMEM;
	}
	int rc = keyring_call(k, r, deadline, &done, err);
	request_done(k, done);
	return rc;
}

static int keyring_remove(struct backend *b, const char *network, double deadline,
                          struct backend_err *err)
{
	struct keyring_backend *k = keyring_of(b);
	struct keyring_request *r = request_new(KEYRING_REMOVE, network), *done;
	if (!r)
		return -ENOMEM;
	int rc = keyring_call(k, r, deadline, &done, err);
	request_done(k, done);
	return rc;
}

static int keyring_list(struct backend *b, struct strlist *out, double deadline,
                        struct backend_err *err)
{
	struct keyring_backend *k = keyring_of(b);
	struct keyring_request *r = request_new(KEYRING_LIST, NULL), *done;
	if (!r)
		return -ENOMEM;
	int rc = keyring_call(k, r, deadline, &done, err);
	for (size_t i = 0; !rc && i < done->names.n; i++)
		if (strlist_add(out, done->names.items[i]))
			rc = -ENOMEM;
	request_done(k, done);
	return rc;
}

static void keyring_health(struct backend *b, struct backend_health *out)
{
	struct keyring_backend *k = keyring_of(b);
	struct keyring_request *r = request_new(KEYRING_HEALTH, NULL), *done;
	struct backend_err err = { .msg = "" };
	double t0 = clock_monotonic();
	if (!r) {
		snprintf(out->error, sizeof(out->error), "out of memory");
		return;
	}
	int rc = keyring_call(k, r, 0, &done, &err);
	out->up = rc == 0;
	if (rc)
		snprintf(out->error, sizeof(out->error), "%s", err.msg);
	if (done)
		snprintf(out->detail, sizeof(out->detail), "%s", done->health.detail);
	else
		snprintf(out->detail, sizeof(out->detail), "service: %s\n", k->service);
	out->latency_seconds = clock_monotonic() - t0;
	request_done(k, done);
}

static void keyring_close(struct backend *b)
{
	struct keyring_backend *k = keyring_of(b);
	if (!k)
		return;
	pthread_mutex_lock(&k->lock);
	bool started = k->worker_started;
	k->stopping = true;
	pthread_cond_signal(&k->work_cond);
	pthread_mutex_unlock(&k->lock);
	if (started)
		pthread_join(k->worker, NULL);
	pthread_mutex_destroy(&k->lock);
	pthread_cond_destroy(&k->work_cond);
	pthread_cond_destroy(&k->done_cond);
	free(k->service);
	free(k);
}

static int keyring_start(struct backend *b, struct backend_err *err)
{
	struct keyring_backend *k = keyring_of(b);
	pthread_mutex_lock(&k->lock);
	int e = keyring_worker_start(k);
	pthread_mutex_unlock(&k->lock);
	if (e) {
		backend_err_set(err, "keyring: cannot start the keyring thread: %s", strerror(e));
		return -e;
	}
	return 0;
}

static int keyring_open(const struct config_backend *cfg, const char *name,
                        struct backend **out, struct backend_err *err)
{
	(void)name;
	const struct config_keyring *c = &cfg->keyring;
	*out = NULL;
	if (!c->service || !*c->service) {
		backend_err_set(err, "keyring: service must not be empty");
		return -EINVAL;
	}
	if (!g_utf8_validate(c->service, -1, NULL)) {
		backend_err_set(err, "keyring: service must be UTF-8 text");
		return -EINVAL;
	}
	struct keyring_backend *k = calloc(1, sizeof(*k));
	if (!k || !(k->service = strdup(c->service))) {
		free(k);
		backend_err_set(err, "keyring: out of memory");
		return -ENOMEM;
	}
	k->base.ops = &keyring_module_ops;
	k->base.cache_ttl_seconds = c->cache_ttl_seconds;
	k->timeout_seconds = c->timeout_seconds > 0 ? c->timeout_seconds : 5;
	pthread_mutex_init(&k->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&k->work_cond, &ca);
	pthread_cond_init(&k->done_cond, &ca);
	pthread_condattr_destroy(&ca);
	/* Nothing touches D-Bus here, no thread: start() or the first call
	 * does, in the process that serves. */
	*out = &k->base;
	return 0;
}

/* What keyring_load.c looks up after loading this module. */
const struct backend_ops keyring_module_ops = {
	.open = keyring_open,
	.start = keyring_start,
	.get = keyring_get,
	.store = keyring_store,
	.remove = keyring_remove,
	.list = keyring_list,
	.health = keyring_health,
	.close = keyring_close,
};
