/* log.c - the application log: json or text lines to file, stdout, stderr
 * or syslog targets.  One lock serialises writers; each line is one write(2)
 * so lines from threads never interleave. */
#include "log.h"
#include "clock.h"
#include "fileowner.h"
#include "strbuf.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#define LOG_MAX_TARGETS 8

enum target_kind { TARGET_FD, TARGET_FILE, TARGET_SYSLOG };

struct target {
	enum target_kind kind;
	int fd;
	char *path;
};

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static struct target targets[LOG_MAX_TARGETS] = { { TARGET_FD, STDERR_FILENO, NULL } };
static int n_targets = 1;
static enum log_level min_level = LOG_LEVEL_INFO;
static enum log_format format = LOG_FORMAT_TEXT;

static const char *level_names[] = { "debug", "info", "warn", "error" };

static int parse_level(const char *s, enum log_level *out)
{
	for (int i = 0; i < 4; i++) {
		if (strcmp(s, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	if (strcmp(s, "warning") == 0) {
		*out = LOG_LEVEL_WARN;
		return 0;
	}
	return -EINVAL;
}

/* Create the missing parent directories of path (0750), like the audit log. */
static void make_parents(const char *path)
{
	char dir[4096];
	if (snprintf(dir, sizeof(dir), "%s", path) >= (int)sizeof(dir))
		return;
	for (char *p = dir + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		fileowner_mkdir(dir, 0750);
		*p = '/';
	}
}

/* A file root creates takes its directory's owner (fileowner.h), so that a
 * daemon that drops to run_as can reopen it. */
static int open_log_file_once(const char *path)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
	if (fd >= 0) {
		fileowner_inherit(fd, path, NULL);
		return fd;
	}
	if (errno != EEXIST)
		return -1;
	return open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
}

static int open_log_file(const char *path)
{
	int fd = open_log_file_once(path);
	if (fd < 0 && errno == ENOENT) {
		make_parents(path);
		fd = open_log_file_once(path);
	}
	return fd;
}

static void close_targets(void)
{
	for (int i = 0; i < n_targets; i++) {
		if (targets[i].kind == TARGET_FILE && targets[i].fd >= 0)
			close(targets[i].fd);
		if (targets[i].kind == TARGET_SYSLOG)
			closelog();
		free(targets[i].path);
	}
	n_targets = 0;
}

int log_configure(const struct config_logging *cfg, char *err, unsigned long errlen)
{
	struct target fresh[LOG_MAX_TARGETS];
	int n = 0;
	enum log_level level = LOG_LEVEL_INFO;

	if (cfg->level && parse_level(cfg->level, &level) < 0) {
		snprintf(err, errlen, "logging.level: unknown level '%s'", cfg->level);
		return -EINVAL;
	}
	for (size_t i = 0; i < cfg->n_targets && n < LOG_MAX_TARGETS; i++) {
		const struct config_log_target *t = &cfg->targets[i];
		struct target nt = { TARGET_FD, -1, NULL };
		if (strcmp(t->type, "stdout") == 0) {
			nt.fd = STDOUT_FILENO;
		} else if (strcmp(t->type, "stderr") == 0) {
			nt.fd = STDERR_FILENO;
		} else if (strcmp(t->type, "syslog") == 0) {
			nt.kind = TARGET_SYSLOG;
		} else if (strcmp(t->type, "file") == 0 && t->path) {
			nt.kind = TARGET_FILE;
			nt.fd = open_log_file(t->path);
			if (nt.fd < 0) {
				int e = errno;
				snprintf(err, errlen, "logging: cannot open %s: %s", t->path, strerror(e));
				for (int j = 0; j < n; j++) {
					if (fresh[j].kind == TARGET_FILE)
						close(fresh[j].fd);
					free(fresh[j].path);
				}
				return -e;
			}
			nt.path = strdup(t->path);
		} else {
			snprintf(err, errlen, "logging: bad target type '%s'", t->type);
			for (int j = 0; j < n; j++) {
				if (fresh[j].kind == TARGET_FILE)
					close(fresh[j].fd);
				free(fresh[j].path);
			}
			return -EINVAL;
		}
		fresh[n++] = nt;
	}
	if (n == 0)
		fresh[n++] = (struct target){ TARGET_FD, STDERR_FILENO, NULL };

	pthread_mutex_lock(&log_lock);
	close_targets();
	memcpy(targets, fresh, sizeof(fresh[0]) * (size_t)n);
	n_targets = n;
	min_level = level;
	format = cfg->format;
	for (int i = 0; i < n; i++)
		if (targets[i].kind == TARGET_SYSLOG)
			openlog("omikuji-keyfs", LOG_PID, LOG_DAEMON);
	pthread_mutex_unlock(&log_lock);
	return 0;
}

int log_streams_to_file(const char *path, char *err, unsigned long errlen)
{
	int streams = 0;
	pthread_mutex_lock(&log_lock);
	for (int i = 0; i < n_targets; i++)
		if (targets[i].kind == TARGET_FD)
			streams++;
	pthread_mutex_unlock(&log_lock);
	if (streams == 0)
		return 0;
	int fd = open_log_file(path);
	char *copy = fd >= 0 ? strdup(path) : NULL;
	if (!copy) {
		int e = fd < 0 ? errno : ENOMEM;
		if (fd >= 0)
			close(fd);
		snprintf(err, errlen, "logging: cannot open %s: %s", path, strerror(e));
		return -e;
	}
	pthread_mutex_lock(&log_lock);
	int out = 0;
	bool placed = false;
	for (int i = 0; i < n_targets; i++) {
		if (targets[i].kind != TARGET_FD) {
			targets[out++] = targets[i];
		} else if (!placed) {
			targets[out++] = (struct target){ TARGET_FILE, fd, copy };
			placed = true;
		}
	}
	n_targets = out;
	pthread_mutex_unlock(&log_lock);
	return 1;
}

void log_drop_streams(void)
{
	pthread_mutex_lock(&log_lock);
	int out = 0;
	for (int i = 0; i < n_targets; i++)
		if (targets[i].kind != TARGET_FD)
			targets[out++] = targets[i];
	n_targets = out;
	pthread_mutex_unlock(&log_lock);
}

void log_reopen(void)
{
	pthread_mutex_lock(&log_lock);
	for (int i = 0; i < n_targets; i++) {
		if (targets[i].kind != TARGET_FILE)
			continue;
		int fd = open_log_file(targets[i].path);
		if (fd >= 0) {
			close(targets[i].fd);
			targets[i].fd = fd;
		}
	}
	pthread_mutex_unlock(&log_lock);
}

void log_shutdown(void)
{
	pthread_mutex_lock(&log_lock);
	close_targets();
	targets[0] = (struct target){ TARGET_FD, STDERR_FILENO, NULL };
	n_targets = 1;
	pthread_mutex_unlock(&log_lock);
}

int log_enabled(enum log_level level)
{
	return level >= min_level;
}

static void emit(enum log_level level, const char *message, va_list fields)
{
	struct strbuf line = STRBUF_INIT;
	struct strbuf plain = STRBUF_INIT;   /* for syslog: no timestamp */
	char ts[40];
	clock_rfc3339(clock_wall(), ts, sizeof(ts));

	if (format == LOG_FORMAT_JSON) {
		strbuf_printf(&line, "{\"timestamp\":\"%s\",\"level\":\"%s\",\"target\":\"omikuji_keyfs\",\"message\":\"",
		              ts, level_names[level]);
		strbuf_json_escape(&line, message);
		strbuf_puts(&line, "\"");
	} else {
		strbuf_printf(&line, "%s %-5s %s", ts, level_names[level], message);
	}
	strbuf_puts(&plain, message);
	for (;;) {
		const char *key = va_arg(fields, const char *);
		if (!key)
			break;
		const char *value = va_arg(fields, const char *);
		if (!value)
			value = "";
		if (format == LOG_FORMAT_JSON) {
			strbuf_puts(&line, ",\"");
			strbuf_json_escape(&line, key);
			strbuf_puts(&line, "\":\"");
			strbuf_json_escape(&line, value);
			strbuf_puts(&line, "\"");
		} else {
			strbuf_printf(&line, " %s=", key);
			strbuf_json_escape(&line, value);
		}
		strbuf_printf(&plain, " %s=", key);
		strbuf_json_escape(&plain, value);
	}
	strbuf_puts(&line, format == LOG_FORMAT_JSON ? "}\n" : "\n");

	if (!line.error) {
		static const int syslog_levels[] = { LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR };
		pthread_mutex_lock(&log_lock);
		for (int i = 0; i < n_targets; i++) {
			if (targets[i].kind == TARGET_SYSLOG) {
				syslog(syslog_levels[level], "%s", plain.buf ? plain.buf : message);
				continue;
			}
			ssize_t w = write(targets[i].fd, line.buf, line.len);
			(void)w;   /* nowhere left to report a failed log write */
		}
		pthread_mutex_unlock(&log_lock);
	}
	strbuf_reset(&line);
	strbuf_reset(&plain);
}

void log_kv(enum log_level level, const char *message, ...)
{
	if (level < min_level)
		return;
	va_list ap;
	va_start(ap, message);
	emit(level, message, ap);
	va_end(ap);
}

static void emit_no_fields(enum log_level level, const char *message, ...)
{
	va_list ap;
	va_start(ap, message);
	emit(level, message, ap);
	va_end(ap);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	if (level < min_level)
		return;
	char message[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(message, sizeof(message), fmt, ap);
	va_end(ap);
	emit_no_fields(level, message, (const char *)NULL);
}
