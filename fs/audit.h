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
#include "secret.h"

struct audit;

struct audit_record {
	enum key_op op;
	const char *network;      /* "" for list */
	const char *storage_type; /* metrics backend label */
	bool status;              /* success */
	bool cached;              /* get only: served from cache */
	bool refresh;             /* get only: a forced refetch (touch) */
	bool intent;              /* store/remove only: the line written before the
	                           * backend is changed (deny mode), see audit.c */
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

/* Keyed chain (keyfs.audit_key_file): from now on every link is
 * HMAC-SHA256 under key instead of SHA-256, so that whoever can write the
 * log but does not hold the key cannot recompute the chain.  The key is
 * copied (into OpenSSL's context).  0 or -EIO. */
int audit_set_key(struct audit *a, const struct secret *key);

#define AUDIT_KEY_MIN 32
#define AUDIT_KEY_MAX 4096
/* Read an audit key file: a regular file of AUDIT_KEY_MIN..AUDIT_KEY_MAX
 * bytes, not readable by group or others.  0 and *out (secret_free), or
 * -errno with one line in err. */
int audit_key_load(const char *path, struct secret **out, char *err, size_t errlen);

/* Does a failed write fail the operation (deny mode)? */
bool audit_denies(const struct audit *a);

/* The chain's end now: seq and hash of the last line written (0 and 64
 * '0's when none).  For the checkpoints in the application log. */
void audit_checkpoint(struct audit *a, unsigned long long *seq, char hash[65]);

/* Where the chain of the files to verify starts and ends (contract §9). */
struct audit_verify_options {
	bool have_start;               /* --start SEQ:HASH: the chain resumes after */
	unsigned long long start_seq;  /* line start_seq, whose hash is start_hash */
	char start_hash[65];
	bool have_expect;              /* --expect-seq N: the last seq written */
	unsigned long long expect_seq;
	const struct secret *key;      /* --key: a keyed chain's key, else NULL */
};

/* Parse "SEQ:HASH" (HASH 64 lower-case hex digits) into opt.  0 or -EINVAL. */
int audit_parse_start(const char *text, struct audit_verify_options *opt);

/* Verify files[0..n) as one chain, in that order (rotated files first).
 * It must start at seq 1, or resume where opt's start says; it must reach
 * opt's expected seq; every line in between must link.  Returns 0 when
 * intact; else 1, *bad_file (index) and *bad_line (1-based in that file, 0
 * when the end is missing) name the first problem, with a reason printed to
 * report; -errno when a file cannot be read (*bad_file names it). */
int audit_verify_files(const char *const *files, size_t n,
                       const struct audit_verify_options *opt, FILE *report,
                       size_t *bad_file, long *bad_line);

/* audit_verify_files() of one file with no options. */
int audit_verify(const char *path, FILE *report, long *bad_line);

/* The chain check of one line at a time, the definition of a good line for
 * audit_verify_files() and for every other reader (the report): feed it the
 * lines of the files in order, oldest first, as one chain. */
struct audit_chain;

/* opt (borrowed, may be NULL) says where the chain starts, as for
 * audit_verify_files().  NULL when out of memory.  Free with
 * audit_chain_free (NULL allowed). */
struct audit_chain *audit_chain_new(const struct audit_verify_options *opt);
void audit_chain_free(struct audit_chain *c);

/* Check the next line: its bytes without the newline, complete false when
 * the input ended before a newline.  Returns 0 when the line is good and
 * extends the chain (why is "" or a note, e.g. "chain resumes at seq N"), 1
 * when it is bad with the reason in why.  The check goes on past a bad line
 * (audit.c: a malformed line makes the next well-formed one the anchor, a
 * mislinked one is the anchor itself).  When parsed is non-NULL it receives
 * the line's JSON object whenever the line parsed as JSON (good or not; the
 * caller json_decref()s it), else NULL. */
int audit_chain_check(struct audit_chain *c, const char *line, size_t len, bool complete,
                      char *why, size_t whylen, json_t **parsed);

/* Trust the next well-formed line as an anchor (its predecessor is not
 * available), e.g. before the first line of an input whose earlier lines
 * are gone. */
void audit_chain_restart(struct audit_chain *c);

/* seq of the first line checked, and of the last (0: none). */
unsigned long long audit_chain_first_seq(const struct audit_chain *c);
unsigned long long audit_chain_last_seq(const struct audit_chain *c);

#endif
