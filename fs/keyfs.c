/* keyfs.c - life cycle of a mount's state: open the backend, cache, audit
 * log and access rules; the maintenance thread (health checks, SIGHUP
 * reloads); the caller of the current FUSE request. */
#include "keyfs.h"
#include "clock.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int keyfs_new(const struct config *cfg, uid_t mount_uid, gid_t mount_gid, bool audit_enabled,
              struct keyfs **out, char *err, size_t errlen)
{
	struct backend_err berr = { { 0 }, false };
	struct keyfs *k = calloc(1, sizeof(*k));
	int rc;
	if (!k)
		return -ENOMEM;
	k->cfg = cfg;
	k->mount_uid = mount_uid;
	k->mount_gid = mount_gid;
	k->start_wall = clock_wall();
	k->wake_pipe[0] = k->wake_pipe[1] = -1;
	pthread_mutex_init(&k->list_lock, NULL);
	pthread_cond_init(&k->list_cond, NULL);
	pthread_mutex_init(&k->mtime_lock, NULL);
	pthread_mutex_init(&k->handles_lock, NULL);
	pthread_mutex_init(&k->health.lock, NULL);

	rc = backend_open(cfg, &k->backend, &berr);
	if (rc < 0) {
		snprintf(err, errlen, "%s backend: %s", config_storage_name(cfg->storage_type),
		         berr.msg[0] ? berr.msg : strerror(-rc));
		goto fail;
	}
	k->backend_name = k->backend->ops->name;
	k->metrics_index = (enum metrics_backend)metrics_backend_index(k->backend_name);
	metrics_set_configured(k->metrics_index, k->backend->ops->remote);

	if (k->backend->ops->remote) {
		int ttl = cfg->storage_type == STORAGE_VAULT ? cfg->vault.cache_ttl_seconds
		        : cfg->storage_type == STORAGE_AWS ? cfg->aws.cache_ttl_seconds
		        : cfg->keyring.cache_ttl_seconds;
		struct cache_config cc = {
			.ttl_seconds = ttl,
			.max_stale_seconds = cfg->keyfs.max_stale_seconds,
			.max_entries = (size_t)cfg->keyfs.cache_max_entries,
			.now = NULL,
		};
		k->cache = cache_new(&cc);
		if (!k->cache) {
			rc = -ENOMEM;
			snprintf(err, errlen, "cannot create the cache: out of memory");
			goto fail;
		}
		metrics_cache_size(k->metrics_index, 0);
	}

	if (audit_enabled) {
		pid_t holder = 0;
		rc = audit_lock_take(cfg->keyfs.audit_log, &k->audit_lock, &holder, err, errlen);
		if (rc < 0)
			goto fail;
		rc = audit_open(cfg->keyfs.audit_log, cfg->keyfs.audit_failure, &k->audit, err, errlen);
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
	k->monitoring_gid = mount_gid;
	if (cfg->keyfs.monitoring_group) {
		rc = access_resolve_group(cfg->keyfs.monitoring_group, &k->monitoring_gid);
		if (rc < 0) {
			snprintf(err, errlen, "keyfs.monitoring_group: %s: %s", cfg->keyfs.monitoring_group,
			         rc == -ENOENT ? "no such group" : strerror(-rc));
			goto fail;
		}
	}
	rc = access_new(&cfg->keyfs, mount_uid, &k->access, err, errlen);
	if (rc < 0)
		goto fail;
	rc = anomaly_new(&cfg->keyfs, NULL, &k->anomaly, err, errlen);
	if (rc < 0)
		goto fail;
	if (cfg->keyfs.key_format == KEY_FORMAT_EVM &&
	    (rc = address_book_new(&k->addresses)) < 0) {
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
	keyfs_free(k);
	return rc;
}

static void wake(struct keyfs *k)
{
	if (k->wake_pipe[1] >= 0) {
		char c = 1;
		ssize_t n = write(k->wake_pipe[1], &c, 1);   /* async-signal-safe */
		(void)n;
	}
}

void keyfs_request_reload(struct keyfs *k)
{
	k->reload_requested = 1;
	wake(k);
}

void keyfs_request_check(struct keyfs *k)
{
	k->check_requested = 1;
	wake(k);
}

static void reload(struct keyfs *k)
{
	char err[256] = "";
	log_reopen();
	if (k->audit && audit_reopen(k->audit) < 0)
		log_kv(LOG_LEVEL_ERROR, "cannot reopen the audit log", "path", k->cfg->keyfs.audit_log,
		       (char *)NULL);
	if (access_reload(k->access, err, sizeof(err)) < 0)
		log_kv(LOG_LEVEL_ERROR, "access rules not reloaded; the old ones stay", "error", err,
		       (char *)NULL);
	log_kv(LOG_LEVEL_INFO, "reloaded on SIGHUP", (char *)NULL);
}

void keyfs_audit_checkpoint(struct keyfs *k, bool at_stop)
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

static void *maintenance_main(void *arg)
{
	struct keyfs *k = arg;
	double interval = k->cfg->keyfs.health_interval_seconds;
	double checkpoint_interval = k->cfg->keyfs.audit_checkpoint_seconds;
	double next_check = 0;
	double next_checkpoint = clock_monotonic() + checkpoint_interval;
	while (!k->stopping) {
		double now = clock_monotonic();
		if (now >= next_checkpoint) {
			keyfs_audit_checkpoint(k, false);
			next_checkpoint = now + checkpoint_interval;
		}
		if (atomic_exchange(&k->check_requested, 0)) {
			next_check = now;
		}
		if (now >= next_check) {
			health_check_now(k);
			next_check = clock_monotonic() + interval;
		}
		double next = next_check < next_checkpoint ? next_check : next_checkpoint;
		int timeout_ms = (int)((next - clock_monotonic()) * 1000) + 1;
		struct pollfd p = { .fd = k->wake_pipe[0], .events = POLLIN };
		if (poll(&p, 1, timeout_ms < 1 ? 1 : timeout_ms) > 0) {
			char buf[64];
			while (read(k->wake_pipe[0], buf, sizeof(buf)) > 0)
				;
		}
		if (atomic_exchange(&k->reload_requested, 0)) {
			reload(k);
		}
	}
	return NULL;
}

int keyfs_start(struct keyfs *k)
{
	int rc = pthread_create(&k->health_thread, NULL, maintenance_main, k);
	if (rc)
		return -rc;
	k->health_thread_started = true;
	return 0;
}

void keyfs_free(struct keyfs *k)
{
	if (!k)
		return;
	if (k->health_thread_started) {
		k->stopping = 1;
		wake(k);
		pthread_join(k->health_thread, NULL);
	}
	if (k->wake_pipe[0] >= 0)
		close(k->wake_pipe[0]);
	if (k->wake_pipe[1] >= 0)
		close(k->wake_pipe[1]);
	anomaly_free(k->anomaly);
	address_book_free(k->addresses);
	access_free(k->access);
	audit_close(k->audit);
	audit_lock_release(k->audit_lock);
	cache_free(k->cache);
	if (k->backend)
		k->backend->ops->close(k->backend);
	strlist_clear(&k->list);
	strlist_clear(&k->creating);
	strlist_clear(&k->mtime_names);
	free(k->mtimes);
	pthread_mutex_destroy(&k->list_lock);
	pthread_cond_destroy(&k->list_cond);
	pthread_mutex_destroy(&k->mtime_lock);
	pthread_mutex_destroy(&k->handles_lock);
	pthread_mutex_destroy(&k->health.lock);
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

void keyfs_caller_from_peer(struct keyfs *k, uid_t uid, gid_t gid, pid_t pid, struct caller *c)
{
	memset(c, 0, sizeof(*c));
	c->uid = uid;
	c->gid = gid;
	c->pid = pid;
	c->ngroups = k->cfg->keyfs.access_set ? read_groups(pid, c->groups, CALLER_MAX_GROUPS) : -1;
	caller_comm(pid, c->process, sizeof(c->process));
}

void keyfs_caller_current(struct keyfs *k, struct caller *c)
{
	struct fuse_context *ctx = fuse_get_context();
	memset(c, 0, sizeof(*c));
	c->uid = ctx->uid;
	c->gid = ctx->gid;
	c->pid = ctx->pid;
	c->ngroups = -1;
	/* Supplementary groups cost a /proc read: only rules can use them. */
	if (k->cfg->keyfs.access_set) {
		int n = fuse_getgroups(CALLER_MAX_GROUPS, c->groups);
		c->ngroups = n < 0 ? -1 : (n > CALLER_MAX_GROUPS ? CALLER_MAX_GROUPS : n);
	}
	caller_comm(c->pid, c->process, sizeof(c->process));
}
