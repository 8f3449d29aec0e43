/* daemon.h - the mount sequence: open everything, mount, daemonize, serve. */
#ifndef OMIKUJI_DAEMON_H
#define OMIKUJI_DAEMON_H

#include <stdbool.h>
#include <stddef.h>
#include "config.h"

struct daemon_options {
	const char *mountpoint;
	bool foreground;     /* -f */
	bool debug;          /* -d: FUSE debug output (implies -f) */
	const char *fuse_options;   /* -o a,b,c passed to FUSE (allow_other, ...) */
	bool audit;          /* false only for benchmarks (--no-audit) */
};

/* Mount and serve until unmounted or SIGTERM/SIGINT.  Without -f the
 * calling process returns only through exit(): 0 once the daemonized child
 * serves, non-zero with the child's one-line reason when its start failed
 * (see daemon.c for the sequence).  Returns the exit code of the process
 * that served (or failed to start).  The config's secrets are wiped once the
 * backend holds its own copies (config_forget_secrets). */
int daemon_run(struct config *cfg, const struct daemon_options *opt);

/* Is keyfs.run_as (if set) a known user?  0, or -errno with one line in
 * err.  Used by `mount` before forking and by `check-config`. */
int daemon_check_run_as(const struct config *cfg, char *err, size_t errlen);

/* Process hardening for every command: no core dumps, not ptrace-able by
 * other users' processes. */
void daemon_harden(void);

#endif
