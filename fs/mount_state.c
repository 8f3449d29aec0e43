/* mount_state.c - life cycle of a mount's state: open the backend instances
 * (each with its cache and metric series), audit log and access rules;
 * start them after daemonizing; one health checker thread per instance and
 * the maintenance thread (SIGHUP reloads); the caller of the current FUSE
 * request. */
#include "keyops.h"
#include "tree.h"
#include "clock.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* How long the mount waits for the first health checks (mount_state_start). */
#define HEALTH_FIRST_CHECK_WAIT 1.0

extern char **environ;

/* keyfs.audit_log_mode and audit_log_group (a name or a gid). */
static int audit_access(struct mount_state *k, char *err, size_t errlen)
{
	const struct config_keyfs *kc = &k->cfg->keyfs;
	gid_t gid = (gid_t)-1;
	if (kc->audit_log_mode == 0600 && !kc->audit_log_group)
		return 0;
	if (kc->audit_log_group) {
		char *end = NULL;
		struct group *g = getgrnam(kc->audit_log_group);
		unsigned long n = strtoul(kc->audit_log_group, &end, 10);
		if (g) {
			gid = g->gr_gid;
		} else if (*kc->audit_log_group && !*end) {
			gid = (gid_t)n;
		} else {
			snprintf(err, errlen, "keyfs.audit_log_group: unknown group '%s'", kc->audit_log_group);
			return -EINVAL;
		}
	}
	int rc = audit_set_access(k->audit, (mode_t)kc->audit_log_mode, gid);
	if (rc < 0)
		snprintf(err, errlen, "audit log %s: cannot set mode %04o%s%s: %s (the group must be "
		         "one of the mounting user's)", kc->audit_log, (unsigned)kc->audit_log_mode,
		         kc->audit_log_group ? " and group " : "",
		         kc->audit_log_group ? kc->audit_log_group : "", strerror(-rc));
	return rc;
}

/* Open one instance: its backend (no I/O beyond local checks), its cache
 * with its own TTL, its metric series. */
static int instance_new(struct mount_state *k, const struct config_backend *cb, struct instance **out,
                        char *err, size_t errlen)
{
	struct backend_err berr = { { 0 }, false };
	struct instance *in = calloc(1, sizeof(*in));
	if (!in) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	in->k = k;
	in->cfg = cb;
	in->name = cb->name;
	in->max_in_flight = config_max_calls_in_flight(k->cfg, cb);
	pthread_mutex_init(&in->list_lock, NULL);
	pthread_cond_init(&in->list_cond, NULL);
	pthread_mutex_init(&in->health.lock, NULL);
	pthread_mutex_init(&in->wake_lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&in->wake_cond, &ca);
	pthread_mutex_init(&in->slot_lock, NULL);
	pthread_cond_init(&in->slot_cond, &ca);
	pthread_condattr_destroy(&ca);
	*out = in;

	int rc = backend_open(cb, &in->backend, &berr);
	if (rc < 0) {
		snprintf(err, errlen, "%s backend '%s': %s", config_storage_name(cb), cb->name,
		         berr.msg[0] ? berr.msg : strerror(-rc));
		return rc;
	}
	bool remote = cb->type->flags & BACKEND_REMOTE;
	in->metrics = metrics_backend_register(in->name, remote);
	if (remote) {
		struct cache_config cc = {
			.ttl_seconds = in->backend->cache_ttl_seconds,
			.max_stale_seconds = k->cfg->keyfs.max_stale_seconds,
			.max_entries = (size_t)k->cfg->keyfs.cache_max_entries,
			.now = NULL,
			.networks = &k->networks,   /* entries live in the records */
		};
		in->cache = cache_new(&cc);
		if (!in->cache) {
			snprintf(err, errlen, "cannot create the cache: out of memory");
			return -ENOMEM;
		}
		metrics_cache_size(in->metrics, 0);
	}
	return 0;
}

static void instance_free(struct instance *in)
{
	if (!in)
		return;
	cache_free(in->cache);
	if (in->backend)
		in->backend->ops->close(in->backend);
	strlist_clear(&in->list);
	pthread_mutex_destroy(&in->list_lock);
	pthread_cond_destroy(&in->list_cond);
	pthread_mutex_destroy(&in->health.lock);
	pthread_mutex_destroy(&in->wake_lock);
	pthread_mutex_destroy(&in->slot_lock);
	pthread_cond_destroy(&in->slot_cond);
	pthread_cond_destroy(&in->wake_cond);
	free(in);
}

/* keyfs.monitoring_group, by name or number, at start and on SIGHUP: a
 * group created (or re-created with another gid) after the mount started
 * takes effect on the next SIGHUP.  A name that resolves to no group grants
 * no one (fail closed) and is logged; the mount still starts, so installing
 * node_exporter's package after the mount works with a reload. */
static void monitoring_group_resolve(struct mount_state *k)
{
	const char *name = k->cfg->keyfs.monitoring_group;
	if (!name)
		return;
	gid_t gid;
	int rc = access_resolve_group(name, &gid);
	long long was = atomic_load(&k->monitoring_gid);
	long long now = rc == 0 ? (long long)gid : -1;
	atomic_store(&k->monitoring_gid, now);
	if (rc < 0)
		log_kv(LOG_LEVEL_WARN, "keyfs.monitoring_group not resolved: its members cannot read "
		       "metrics, textfile/ and health/ until a SIGHUP finds it", "group", name,
		       "error", rc == -ENOENT ? "no such group" : strerror(-rc), (char *)NULL);
	else if (was != now)
		log_kv(LOG_LEVEL_INFO, "keyfs.monitoring_group resolved", "group", name,
		       (char *)NULL);
}

bool mount_state_monitoring_gid(struct mount_state *k, gid_t *gid)
{
	long long g = atomic_load_explicit(&k->monitoring_gid, memory_order_relaxed);
	*gid = g < 0 ? (gid_t)-1 : (gid_t)g;
	return g >= 0;
}

int mount_state_new(const struct config *cfg, uid_t mount_uid, gid_t mount_gid, bool audit_enabled,
              struct mount_state **out, char *err, size_t errlen)
{
	struct mount_state *k = calloc(1, sizeof(*k));
	int rc;
	if (!k)
		return -ENOMEM;
	k->cfg = cfg;
	k->mount_uid = mount_uid;
	k->mount_gid = mount_gid;
	k->start_wall = clock_wall();
	int networks_rc = netrec_table_init(&k->networks, k->start_wall);
	metrics_use_networks(&k->networks);
	k->wake_pipe[0] = k->wake_pipe[1] = -1;
	pthread_mutex_init(&k->creating_lock, NULL);
	pthread_mutex_init(&k->changed_lock, NULL);
	pthread_mutex_init(&k->handles_lock, NULL);

	size_t n = 1 + cfg->keyfs.n_backends;
	k->instances = calloc(n, sizeof(*k->instances));
	if (!k->instances || router_from_config(cfg, &k->router) < 0) {
		rc = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (networks_rc < 0) {   /* the digests' key (netrec_digest) */
		rc = networks_rc;
		snprintf(err, errlen, "cannot get random bytes for the key fingerprints");
		goto fail;
	}
	for (size_t i = 0; i < cfg->warnings.n; i++)
		log_kv(LOG_LEVEL_WARN, "configuration", "warning", cfg->warnings.items[i], (char *)NULL);
	for (size_t i = 0; i < n; i++) {
		const struct config_backend *cb = i == 0 ? &cfg->key_storage : &cfg->keyfs.backends[i - 1];
		k->n_instances = i + 1;
		rc = instance_new(k, cb, &k->instances[i], err, errlen);
		if (rc < 0)
			goto fail;
	}

	struct strbuf names = STRBUF_INIT;
	for (size_t i = 0; i < n; i++)
		strbuf_printf(&names, "%s%s", i ? "," : "", k->instances[i]->name);
	if (names.error || !(k->all_names = strbuf_detach(&names, NULL))) {
		strbuf_reset(&names);
		rc = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto fail;
	}

	if (audit_enabled) {
		pid_t holder = 0;
		rc = audit_lock_take(cfg->keyfs.audit_log, &k->audit_lock, &holder, err, errlen);
		if (rc < 0)
			goto fail;
		rc = audit_open(cfg->keyfs.audit_log, cfg->keyfs.audit_failure, &k->audit, err, errlen);
		if (rc < 0)
			goto fail;
		rc = audit_access(k, err, errlen);
		if (rc < 0)
			goto fail;
		if (cfg->keyfs.audit_key_file) {
			struct secret *key = NULL;
			rc = audit_key_load(cfg->keyfs.audit_key_file, &key, err, errlen);
			if (rc == 0 && (rc = audit_set_key(k->audit, key)) < 0)
				snprintf(err, errlen, "audit key: cannot set up HMAC-SHA256");
			secret_free(key);
			if (rc < 0)
				goto fail;
		}
	}
	atomic_init(&k->monitoring_gid, (long long)mount_gid);
	monitoring_group_resolve(k);
	rc = access_new(&cfg->keyfs, mount_uid, &k->access, err, errlen);
	if (rc < 0)
		goto fail;
	rc = anomaly_new(&cfg->keyfs, NULL, &k->anomaly, err, errlen);
	if (rc < 0)
		goto fail;
	if (cfg->keyfs.key_format == KEY_FORMAT_EVM &&
	    (rc = address_book_new(&k->networks, &k->addresses)) < 0) {
		snprintf(err, errlen, "cannot create the address book: %s", strerror(-rc));
		goto fail;
	}
	if (pipe2(k->wake_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
		rc = -errno;
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		goto fail;
	}
	*out = k;
	return 0;
fail:
	mount_state_free(k);
	return rc;
}

struct instance *mount_state_route(struct mount_state *k, const char *network)
{
	return k->instances[router_route(k->router, network)];
}

struct instance *mount_state_instance(struct mount_state *k, const char *name)
{
	for (size_t i = 0; i < k->n_instances; i++)
		if (strcmp(k->instances[i]->name, name) == 0)
			return k->instances[i];
	return NULL;
}

static void wake(struct mount_state *k)
{
	if (k->wake_pipe[1] >= 0) {
		char c = 1;
		ssize_t n = write(k->wake_pipe[1], &c, 1);   /* async-signal-safe */
		(void)n;
	}
}

void mount_state_request_reload(struct mount_state *k)
{
	k->reload_requested = 1;
	wake(k);
}

void instance_request_check(struct instance *in)
{
	pthread_mutex_lock(&in->wake_lock);
	in->check_requested = true;
	pthread_cond_signal(&in->wake_cond);
	pthread_mutex_unlock(&in->wake_lock);
}

bool instance_request_list_refresh(struct instance *in)
{
	if (!in->health_thread_started)
		return false;
	pthread_mutex_lock(&in->wake_lock);
	in->list_requested = true;
	pthread_cond_signal(&in->wake_cond);
	pthread_mutex_unlock(&in->wake_lock);
	return true;
}

static void reload(struct mount_state *k)
{
	char err[256] = "";
	log_reopen();
	if (k->audit && audit_reopen(k->audit) < 0)
		log_kv(LOG_LEVEL_ERROR, "cannot reopen the audit log", "path", k->cfg->keyfs.audit_log,
		       (char *)NULL);
	if (access_reload(k->access, err, sizeof(err)) < 0)
		log_kv(LOG_LEVEL_ERROR, "access rules not reloaded; the old ones stay", "error", err,
		       (char *)NULL);
	monitoring_group_resolve(k);
	log_kv(LOG_LEVEL_INFO, "reloaded on SIGHUP", (char *)NULL);
}

int mount_state_attach(struct mount_state *k, const char *mountpoint)
{
	char *abs = realpath(mountpoint, NULL);
	if (!abs)
		return -errno;
	free(k->mountpoint);
	k->mountpoint = abs;
	return 0;
}

void mount_state_key_changed(struct mount_state *k, const char *network)
{
	pthread_mutex_lock(&k->changed_lock);
	if (!strlist_contains(&k->changed, network))
		strlist_add(&k->changed, network);
	pthread_mutex_unlock(&k->changed_lock);
	wake(k);
}

static __thread fuse_req_t current_req;

void mount_state_request(fuse_req_t req)
{
	current_req = req;
}

bool mount_state_in_request(void)
{
	return current_req != NULL;
}

bool mount_state_request_is_own(struct mount_state *k)
{
	pid_t pid = current_req ? fuse_req_ctx(current_req)->pid : 0;
	pid_t own = atomic_load(&k->notify_tid);
	return pid == getpid() || (own && pid == own);
}

/* keyfs.on_change: run `PROGRAM NETWORK` (never the key) without a shell,
 * stdin from /dev/null; reaped by pid later, never waited for. */
static void run_on_change(struct mount_state *k, const char *network)
{
	const char *prog = k->cfg->keyfs.on_change;
	size_t slot = 0, n = sizeof(k->on_change_pids) / sizeof(k->on_change_pids[0]);
	while (slot < n && k->on_change_pids[slot])
		slot++;
	if (slot == n) {
		log_kv(LOG_LEVEL_WARN, "on_change not run: too many still running", "network", network,
		       (char *)NULL);
		return;
	}
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	char *argv[] = { (char *)prog, (char *)network, NULL };
	pid_t pid;
	int rc = posix_spawn(&pid, prog, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rc != 0) {
		log_kv(LOG_LEVEL_ERROR, "on_change could not be run", "program", prog,
		       "network", network, "error", strerror(rc), (char *)NULL);
		return;
	}
	k->on_change_pids[slot] = pid;
}

static void reap_on_change(struct mount_state *k)
{
	for (size_t i = 0; i < sizeof(k->on_change_pids) / sizeof(k->on_change_pids[0]); i++) {
		int status;
		if (!k->on_change_pids[i] || waitpid(k->on_change_pids[i], &status, WNOHANG) == 0)
			continue;
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			char code[16];
			snprintf(code, sizeof(code), "%d", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
			log_kv(LOG_LEVEL_WARN, "on_change failed", "program", k->cfg->keyfs.on_change,
			       "exit_status", code, (char *)NULL);
		}
		k->on_change_pids[i] = 0;
	}
}

/* Deliver the queued rotation notices.  The kernel raises inotify events
 * only for changes made through the VFS, and FUSE's invalidation notices
 * raise none, so the mount touches the file through itself: the kernel
 * sends that SETATTR back here (answered at once, see op_utimens) and tells
 * every watcher IN_ATTRIB, with the new mtime already in its reply. */
static void deliver_changes(struct mount_state *k)
{
	struct strlist names = STRLIST_INIT;
	pthread_mutex_lock(&k->changed_lock);
	names = k->changed;
	k->changed = (struct strlist)STRLIST_INIT;
	pthread_mutex_unlock(&k->changed_lock);
	for (size_t i = 0; i < names.n && !k->stopping; i++) {
		char path[PATH_MAX];
		mount_state_name_changed(k, names.items[i], true);
		log_kv(LOG_LEVEL_INFO, "key changed in the backend", "network", names.items[i],
		       "storage_type", mount_state_route(k, names.items[i])->name, (char *)NULL);
		if (!k->mountpoint ||
		    snprintf(path, sizeof(path), "%s/keys/%s", k->mountpoint, names.items[i]) >=
		    (int)sizeof(path))
			continue;
		if (utimensat(AT_FDCWD, path, NULL, 0) < 0)
			log_kv(LOG_LEVEL_DEBUG, "rotation notice not delivered", "network", names.items[i],
			       "error", strerror(errno), (char *)NULL);
	}
	for (size_t i = 0; k->cfg->keyfs.on_change && i < names.n && !k->stopping; i++)
		run_on_change(k, names.items[i]);
	strlist_clear(&names);
}

void mount_state_audit_checkpoint(struct mount_state *k, bool at_stop)
{
	if (!k->audit)
		return;
	unsigned long long seq;
	char hash[65], seq_text[24];
	audit_checkpoint(k->audit, &seq, hash);
	if (!at_stop && seq == atomic_load(&k->checkpoint_seq))
		return;   /* nothing new since the last one */
	atomic_store(&k->checkpoint_seq, seq);
	snprintf(seq_text, sizeof(seq_text), "%llu", seq);
	log_kv(LOG_LEVEL_INFO, "audit checkpoint", "audit_log", k->cfg->keyfs.audit_log,
	       "seq", seq_text, "hash", hash, "at", at_stop ? "stop" : "interval", (char *)NULL);
}

/* One checker per instance: a hung probe delays only its own health/ file. */
static void *health_main(void *arg)
{
	struct instance *in = arg;
	struct mount_state *k = in->k;
	double interval = k->cfg->keyfs.health_interval_seconds;
	pthread_mutex_lock(&in->wake_lock);
	while (!atomic_load(&k->stopping)) {
		in->check_requested = false;
		pthread_mutex_unlock(&in->wake_lock);
		health_check_now(in);
		pthread_mutex_lock(&in->wake_lock);
		struct timespec until;
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec += (time_t)interval;
		until.tv_nsec += (long)((interval - (double)(time_t)interval) * 1e9);
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		for (;;) {
			/* A stale keys/ listing a lookup answered from: refreshed
			 * here, so no lookup waits for a full listing. */
			while (in->list_requested && !atomic_load(&k->stopping)) {
				in->list_requested = false;
				pthread_mutex_unlock(&in->wake_lock);
				keyops_list_refresh(in);
				pthread_mutex_lock(&in->wake_lock);
			}
			if (atomic_load(&k->stopping) || in->check_requested ||
			    pthread_cond_timedwait(&in->wake_cond, &in->wake_lock, &until) != 0)
				break;
		}
	}
	pthread_mutex_unlock(&in->wake_lock);
	return NULL;
}

static void *maintenance_main(void *arg)
{
	struct mount_state *k = arg;
	atomic_store(&k->notify_tid, gettid());
	double checkpoint_interval = k->cfg->keyfs.audit_checkpoint_seconds;
	double next_checkpoint = clock_monotonic() + checkpoint_interval;
	while (!atomic_load(&k->stopping)) {
		double now = clock_monotonic();
		if (now >= next_checkpoint) {
			mount_state_audit_checkpoint(k, false);
			next_checkpoint = now + checkpoint_interval;
		}
		/* Business hours change at a turn of the minute: wake then. */
		anomaly_tick(k->anomaly);
		double wall = clock_wall();
		double to_minute = 60.0 - (wall - 60.0 * (double)(long long)(wall / 60.0));
		double wait = next_checkpoint - clock_monotonic();
		if (to_minute < wait)
			wait = to_minute;
		int timeout_ms = (int)(wait * 1000) + 1;
		struct pollfd p = { .fd = k->wake_pipe[0], .events = POLLIN };
		if (poll(&p, 1, timeout_ms < 1 ? 1 : timeout_ms) > 0) {
			char buf[64];
			while (read(k->wake_pipe[0], buf, sizeof(buf)) > 0)
				;
		}
		if (atomic_exchange(&k->reload_requested, 0)) {
			reload(k);
		}
		deliver_changes(k);
		reap_on_change(k);
	}
	return NULL;
}

int mount_state_start(struct mount_state *k, char *err, size_t errlen)
{
	for (size_t i = 0; i < k->n_instances; i++) {
		struct instance *in = k->instances[i];
		struct backend_err berr = { { 0 }, false };
		int rc = backend_start(in->backend, &berr);
		if (rc < 0) {
			snprintf(err, errlen, "backend '%s' did not start: %s", in->name,
			         berr.msg[0] ? berr.msg : strerror(-rc));
			return rc;
		}
	}
	for (size_t i = 0; i < k->n_instances; i++) {
		struct instance *in = k->instances[i];
		int rc = pthread_create(&in->health_thread, NULL, health_main, in);
		if (rc) {
			snprintf(err, errlen, "cannot start the health checker: %s", strerror(rc));
			return -rc;
		}
		in->health_thread_started = true;
	}
	/* The first checks run now, in parallel: wait a moment for them, so
	 * that health/<name> read right after the mount says what the backend
	 * is rather than "down" for a check not made yet.  Bounded: a slow or
	 * hung backend delays the mount by at most this, never more (its file
	 * says down, and why, once its check ends or passes its deadline). */
	double until = clock_monotonic() + HEALTH_FIRST_CHECK_WAIT;
	for (size_t i = 0; i < k->n_instances; i++)
		while (!atomic_load(&k->instances[i]->health.checked) && clock_monotonic() < until)
			usleep(1000);
	int rc = pthread_create(&k->maintenance_thread, NULL, maintenance_main, k);
	if (rc) {
		snprintf(err, errlen, "cannot start the maintenance thread: %s", strerror(rc));
		return -rc;
	}
	k->maintenance_thread_started = true;
	return 0;
}

void mount_state_free(struct mount_state *k)
{
	if (!k)
		return;
	atomic_store(&k->stopping, 1);
	if (k->maintenance_thread_started) {
		wake(k);
		pthread_join(k->maintenance_thread, NULL);
	}
	for (size_t i = 0; i < k->n_instances; i++) {
		struct instance *in = k->instances[i];
		if (!in || !in->health_thread_started)
			continue;
		pthread_mutex_lock(&in->wake_lock);
		pthread_cond_broadcast(&in->wake_cond);
		pthread_mutex_unlock(&in->wake_lock);
		pthread_join(in->health_thread, NULL);
	}
	tree_free(k);   /* no thread left to send a notice */
	if (k->wake_pipe[0] >= 0)
		close(k->wake_pipe[0]);
	if (k->wake_pipe[1] >= 0)
		close(k->wake_pipe[1]);
	anomaly_free(k->anomaly);
	address_book_free(k->addresses);
	access_free(k->access);
	audit_close(k->audit);
	audit_lock_release(k->audit_lock);
	for (size_t i = 0; i < k->n_instances; i++)
		instance_free(k->instances[i]);
	free(k->instances);
	router_free(k->router);
	free(k->all_names);
	strlist_clear(&k->creating);
	metrics_release_networks(&k->networks);
	netrec_table_clear(&k->networks);
	strlist_clear(&k->changed);
	free(k->mountpoint);
	pthread_mutex_destroy(&k->changed_lock);
	pthread_mutex_destroy(&k->creating_lock);
	pthread_mutex_destroy(&k->handles_lock);
	free(k);
}

static void read_comm(pid_t pid, char *buf, size_t size)
{
	char path[64];
	buf[0] = 0;
	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	ssize_t n = read(fd, buf, size - 1);
	close(fd);
	if (n <= 0) {
		buf[0] = 0;
		return;
	}
	/* The kernel ends comm with one newline; a newline the process put
	 * in its own name stays (the audit line escapes it). */
	if (buf[n - 1] == '\n')
		n--;
	buf[n] = 0;
}

/* The caller's command name for the audit line, remembered per pid for up
 * to COMM_CACHE_SECONDS: reading /proc/<pid>/comm costs three system calls
 * on every open, a third of the daemon's own share of a cached read.  The
 * name is informational (any process sets its own with PR_SET_NAME); uid,
 * gid and pid, which the rules use, come from the kernel on every request. */
#define COMM_CACHE_SLOTS 64
#define COMM_CACHE_SECONDS 1.0

static struct {
	pthread_mutex_t lock;
	struct { pid_t pid; double at; char comm[32]; } slot[COMM_CACHE_SLOTS];
} comm_cache = { PTHREAD_MUTEX_INITIALIZER, { { 0, 0, "" } } };

static void caller_comm(pid_t pid, char *buf, size_t size)
{
	unsigned i = (unsigned)pid % COMM_CACHE_SLOTS;
	double now = clock_monotonic();
	pthread_mutex_lock(&comm_cache.lock);
	if (pid > 0 && comm_cache.slot[i].pid == pid && now - comm_cache.slot[i].at < COMM_CACHE_SECONDS) {
		snprintf(buf, size, "%s", comm_cache.slot[i].comm);
		pthread_mutex_unlock(&comm_cache.lock);
		return;
	}
	pthread_mutex_unlock(&comm_cache.lock);
	read_comm(pid, buf, size);
	pthread_mutex_lock(&comm_cache.lock);
	comm_cache.slot[i].pid = pid;
	comm_cache.slot[i].at = now;
	snprintf(comm_cache.slot[i].comm, sizeof(comm_cache.slot[i].comm), "%s", buf);
	pthread_mutex_unlock(&comm_cache.lock);
}

/* Supplementary groups of pid from /proc/<pid>/status ("Groups:"). */
static int read_groups(pid_t pid, gid_t *groups, int max)
{
	char path[64], line[4096];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return -1;
	int n = -1;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "Groups:", 7) != 0)
			continue;
		n = 0;
		char *p = line + 7, *end;
		for (;;) {
			unsigned long g = strtoul(p, &end, 10);
			if (end == p || n == max)
				break;
			groups[n++] = (gid_t)g;
			p = end;
		}
		break;
	}
	fclose(f);
	return n;
}

void mount_state_caller_from_peer(struct mount_state *k, uid_t uid, gid_t gid, pid_t pid, struct caller *c)
{
	memset(c, 0, sizeof(*c));
	c->uid = uid;
	c->gid = gid;
	c->pid = pid;
	c->ngroups = k->cfg->keyfs.access_set ? read_groups(pid, c->groups, CALLER_MAX_GROUPS) : -1;
	caller_comm(pid, c->process, sizeof(c->process));
}

void mount_state_caller_current(struct mount_state *k, struct caller *c)
{
	memset(c, 0, sizeof(*c));
	c->ngroups = -1;
	if (!current_req) {   /* not in a request: nobody, granted nothing */
		c->uid = (uid_t)-1;
		c->gid = (gid_t)-1;
		return;
	}
	const struct fuse_ctx *ctx = fuse_req_ctx(current_req);
	c->uid = ctx->uid;
	c->gid = ctx->gid;
	c->pid = ctx->pid;
	/* Supplementary groups cost a /proc read: only rules can use them. */
	if (k->cfg->keyfs.access_set) {
		int n = fuse_req_getgroups(current_req, CALLER_MAX_GROUPS, c->groups);
		c->ngroups = n < 0 ? -1 : (n > CALLER_MAX_GROUPS ? CALLER_MAX_GROUPS : n);
	}
	caller_comm(c->pid, c->process, sizeof(c->process));
}
