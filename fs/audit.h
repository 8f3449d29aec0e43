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
#include <jansson.h>
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

/* Reopen the path (SIGHUP after logrotate).  0 or -errno. */
int audit_reopen(struct audit *a);
void audit_close(struct audit *a);

/* Verify the chain in path.  Returns 0 when intact; else 1 and *bad_line
 * (1-based) names the first bad line, with a reason printed to report;
 * -errno (and *bad_line 0) when the file cannot be opened or read. */
int audit_verify(const char *path, FILE *report, long *bad_line);

/* The chain check of one line at a time, the definition of a good line for
 * audit_verify() and for every other reader (the report): feed it the lines
 * of the files in order, oldest first, as one chain. */
struct audit_chain;

/* NULL when out of memory.  Free with audit_chain_free (NULL allowed). */
struct audit_chain *audit_chain_new(void);
void audit_chain_free(struct audit_chain *c);

/* Check the next line: its bytes without the newline, complete false when
 * the input ended before a newline.  Returns 0 when the line is good and
 * extends the chain (why may still hold a note, e.g. "chain starts at seq N
 * (continues a rotated file)", else ""), 1 when it is bad with the reason in
 * why.  A bad line does not advance the chain.  When parsed is non-NULL it
 * receives the line's JSON object whenever the line parsed as JSON (good or
 * not; the caller json_decref()s it), else NULL. */
int audit_chain_check(struct audit_chain *c, const char *line, size_t len, bool complete,
                      char *why, size_t whylen, json_t **parsed);

/* The next line starts a new segment (trusted as the chain's start), e.g.
 * to keep checking after a bad line. */
void audit_chain_restart(struct audit_chain *c);

/* seq of the first line checked, and of the last good line (0: none). */
unsigned long long audit_chain_first_seq(const struct audit_chain *c);
unsigned long long audit_chain_last_seq(const struct audit_chain *c);

#endif
