/* daemon.h - the mount sequence: open everything, mount, daemonize, serve. */
#ifndef OMIKUJI_DAEMON_H
#define OMIKUJI_DAEMON_H

#include <stdbool.h>
#include "config.h"

struct daemon_options {
	const char *mountpoint;
	bool foreground;     /* -f */
	bool debug;          /* -d: FUSE debug output (implies -f) */
	const char *fuse_options;   /* -o a,b,c passed to FUSE (allow_other, ...) */
	bool audit;          /* false only for benchmarks (--no-audit) */
};

/* Mount and serve until unmounted or SIGTERM/SIGINT.  Set-up errors are
 * printed to stderr before any fork.  Returns the process exit code. */
int daemon_run(const struct config *cfg, const struct daemon_options *opt);

/* Process hardening for every command: no core dumps, not ptrace-able by
 * other users' processes. */
void daemon_harden(void);

#endif
