/* access.h - who may do what to which key (contract sections 4 and 5).
 *
 * Names (user:, group:) are resolved to ids when the rules are built and on
 * access_reload() (SIGHUP): no name-service lookup on the hot path.
 */
#ifndef OMIKUJI_ACCESS_H
#define OMIKUJI_ACCESS_H

#include <stdbool.h>
#include <sys/types.h>
#include "config.h"
#include "clock.h"

#define CALLER_MAX_GROUPS 64

struct caller {
	uid_t uid;
	gid_t gid;
	pid_t pid;
	int ngroups;                      /* supplementary groups, -1 if unknown */
	gid_t groups[CALLER_MAX_GROUPS];
	char process[32];                 /* comm of pid, "" if unknown */
};

/* ACCESS_ADDRESS: read addresses/<network>.  Without rules every caller
 * that reaches the mount has it; with rules, the `address:` principals of
 * a matching rule and, since a key tells its address, its `read:` ones. */
enum access_op { ACCESS_READ, ACCESS_WRITE, ACCESS_REMOVE, ACCESS_LIST, ACCESS_ADDRESS };

struct access;

/* Build rules from cfg.  Without `access:` rules only mount_uid and root are
 * allowed, for everything.  0 or -errno with a reason (unknown user/group,
 * bad principal) in err. */
int access_new(const struct config_keyfs *cfg, uid_t mount_uid, struct access **out,
               char *err, size_t errlen);
/* Re-resolve names (SIGHUP).  On failure the old rules stay.  0 or -errno. */
int access_reload(struct access *a, char *err, size_t errlen);
/* Is caller allowed op on network ("" for list)? */
bool access_allowed(struct access *a, const struct caller *c, const char *network,
                    enum access_op op);
void access_free(struct access *a);
/* Has caller any grant (read, write, remove or list) on network?  A name
 * without one does not exist for that caller (ENOENT, hidden in listings). */
bool access_any_grant(struct access *a, const struct caller *c, const char *network);
/* Does some rule grant op to caller, for any network (access(W_OK) on keys/)? */
bool access_allowed_somewhere(struct access *a, const struct caller *c, enum access_op op);
/* A group given as a name or a number: 0 and *out, -ENOENT, or -errno. */
int access_resolve_group(const char *spec, gid_t *out);

#endif
