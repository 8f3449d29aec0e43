/* log.h - the application log (never the audit log, never key material).
 *
 * Messages are structured: a message plus key/value fields.  The sink is
 * chosen by log_configure() from the config's `logging:` section (json or
 * text; file, stdout, stderr, syslog); before that, text on stderr at info.
 * All functions are thread-safe.
 */
#ifndef OMIKUJI_LOG_H
#define OMIKUJI_LOG_H

#include <stddef.h>

enum log_level { LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR };

enum log_format { LOG_FORMAT_JSON, LOG_FORMAT_TEXT };

/* The `logging:` section as config_load() fills it (owned by the config). */
struct config_log_target {
	char *type;             /* "file" | "stdout" | "stderr" | "syslog" */
	char *path;             /* file only */
};

struct config_logging {
	enum log_format format; /* default json */
	char *level;            /* "debug" | "info" (default) | "warn" | "error" */
	struct config_log_target *targets;  /* default: one stderr target */
	size_t n_targets;
};

/* Apply a logging config (reopens files).  0 or -errno with a reason in err. */
int log_configure(const struct config_logging *cfg, char *err, unsigned long errlen);
/* Daemonizing closes stdout and stderr: replace the stream targets (one or
 * both) by one file target at path, opened (parents created) now.  1 when
 * something was redirected, 0 when there was no stream target, -errno with
 * a reason in err when path cannot be opened (targets unchanged). */
int log_streams_to_file(const char *path, char *err, unsigned long errlen);
/* Remove the stdout/stderr targets: for commands whose own output is on
 * those streams (the `key` commands print exactly one line). */
void log_drop_streams(void);
/* Reopen file targets (SIGHUP, logrotate). */
void log_reopen(void);
/* Close every target. */
void log_shutdown(void);
/* Is this level enabled (skip building expensive fields otherwise). */
int log_enabled(enum log_level level);

/* log_kv(LOG_LEVEL_WARN, "backend call failed", "backend", "vault",
 *        "error", "connection refused", (char *)NULL);
 * Values are strings; pairs end with a NULL key. */
void log_kv(enum log_level level, const char *message, ...)
	__attribute__((sentinel));

/* printf-style message with no fields. */
void log_msg(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#endif
