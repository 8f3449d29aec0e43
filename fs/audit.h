/* audit.h - the audit trail (contract section 7).
 *
 * One JSON line per key access and per denied attempt, appended with one
 * write(2) on an O_APPEND descriptor before the result reaches the caller.
 * Lines carry `seq` and `hash`: hash = hex(SHA-256(prev_hash_hex || line
 * without its hash field)), see audit.c for the exact bytes.  After a restart
 * the chain continues from the last line of the file.  Thread-safe.
 */
#ifndef OMIKUJI_AUDIT_H
#define OMIKUJI_AUDIT_H

#include <stdbool.h>
#include <stdio.h>
#include <sys/types.h>
#include "config.h"
#include "metrics.h"

struct audit;

struct audit_record {
	enum key_op op;
	const char *network;      /* "" for list */
	const char *storage_type; /* metrics backend label */
	bool status;              /* success */
	bool cached;              /* get only: served from cache */
	bool refresh;             /* get only: a forced refetch (touch) */
	uid_t uid;
	gid_t gid;
	pid_t pid;
	const char *process;      /* caller's comm, may be NULL */
	const char *error;        /* short reason on failure/denial, else NULL */
	const char *anomaly;      /* anomaly kind flagged, else NULL */
};

/* Open (create 0600, parent dirs 0700) and read the chain state from the
 * last line.  0 or -errno with a reason in err. */
int audit_open(const char *path, enum audit_failure mode, struct audit **out,
               char *err, size_t errlen);

/* Append one record.  Returns 0 when written; when the write fails: in deny
 * mode -EIO (the caller fails the access), in allow mode 0 after counting
 * metrics_audit_write_error() and logging. */
int audit_write(struct audit *a, const struct audit_record *r);

/* Give the log file mode (0600..0660) and group gid ((gid_t)-1: keep), now
 * and after every reopen, so a log shipper in that group can read it; a
 * directory of ours around it that the group cannot enter gets g+rx (and
 * the group).  0 or -errno (fchown to a group the process is not in). */
int audit_set_access(struct audit *a, mode_t mode, gid_t gid);

/* Reopen the path (SIGHUP after logrotate).  0 or -errno. */
int audit_reopen(struct audit *a);
void audit_close(struct audit *a);

/* Verify the chain in path.  Returns 0 when intact; else 1 and *bad_line
 * (1-based) names the first bad line, with a reason printed to report;
 * -errno (and *bad_line 0) when the file cannot be opened or read. */
int audit_verify(const char *path, FILE *report, long *bad_line);

#endif
