/* audit_lock.h - one writer per audit log (contract section 9).
 *
 * The hash chain has exactly one writer at a time: the mount that serves
 * it, or a `key` command when no mount runs.  The writer holds an exclusive
 * flock(2) on `<audit_log>.lock` for as long as it writes, and keeps its pid
 * in that file so that a second writer can name the first.  The lock goes
 * with the process (flock locks are released when the holder exits, however
 * it exits), so a crashed daemon never blocks the next start.
 */
#ifndef OMIKUJI_AUDIT_LOCK_H
#define OMIKUJI_AUDIT_LOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct audit_lock;

/* Take the writer lock of the audit log at audit_path, without waiting.
 * 0 and *out; -EBUSY when another process holds it (*holder its pid, or 0
 * when unknown; err says "audit log PATH is in use by omikuji-keyfs pid N");
 * other -errno with a reason in err.  Release with audit_lock_release(). */
int audit_lock_take(const char *audit_path, struct audit_lock **out, pid_t *holder,
                    char *err, size_t errlen);
void audit_lock_release(struct audit_lock *l);

/* The pid of the process that holds the lock of audit_path now, 0 when none
 * does, -errno when the lock file cannot be read. */
pid_t audit_lock_holder(const char *audit_path);

#endif
