/* control.h - the `key` commands through a running mount (contract section 9).
 *
 * A mount listens on a local socket so that `key import/export/remove/list`
 * run beside it act through it: the change goes through keyops_*() like a
 * write to keys/<net> (access rules for the invoking user, cache updated at
 * once, metrics, one audit chain with that user's uid).
 *
 * The socket is an abstract AF_UNIX SOCK_SEQPACKET socket named after the
 * audit log ("omikuji-keyfs/" + SHA-256 of its real path): the mount and
 * the CLI find each other from the config alone, any local user can reach
 * it (the access rules decide what they may do, as for the mount itself),
 * and no socket file is left behind.  The caller is known from SO_PEERCRED
 * (uid, gid, pid; supplementary groups from /proc/<pid>/status).  An
 * abstract name can be bound by anyone, so the CLI only talks to a server
 * whose SO_PEERCRED pid is the pid in the audit log's lock file, i.e. the
 * process that holds the one-writer lock (audit_lock.h).
 *
 * Protocol: one request and one reply per connection, each one message.
 *   request: "<op> <network>[ @<instance>][ refresh]\n" then the key bytes
 *            (store only); op is get | store | remove | list | address
 *            (network "-" for list); "@<instance>" acts on that backend
 *            instance instead of the network's route (get, store, remove,
 *            list: `key migrate`), "refresh" makes a get bypass the cache
 *   reply:   "<errno>\n" (0 = success) then the key (get), the names one
 *            per line (list), the EIP-55 address (address), or the reason
 *            of a failure.
 * Messages that carry a key live in locked, wiped buffers (secret.h).
 */
#ifndef OMIKUJI_CONTROL_H
#define OMIKUJI_CONTROL_H

#include <stdbool.h>
#include <sys/types.h>
#include "metrics.h"
#include "secret.h"

struct mount_state;
struct control;

/* Bind the socket of k's audit log and start the thread that serves it.
 * 0 or -errno with one line in err.  Stop with control_stop() before the
 * keyfs is freed. */
int control_start(struct mount_state *k, struct control **out, char *err, size_t errlen);
void control_stop(struct control *c);

/* Client: is there a mount with pid holder serving the control socket of
 * audit_path?  0 yes; -errno no (nothing listens, or another pid does). */
int control_probe(const char *audit_path, pid_t holder);

/* One request: op on network (ignored for list); key for store, else NULL;
 * instance NULL = the network's route; refresh: a get bypasses the cache.
 * All borrowed. */
struct control_request {
	enum key_op op;
	const char *network;
	const char *instance;
	bool refresh;
	const struct secret *key;
};

/* Client: send req to the mount whose pid is holder and which writes
 * audit_path.  Returns 0 when the mount answered, with *status the
 * operation's 0 or -errno and *reply its payload (caller frees with
 * secret_free; never NULL on 0); -errno with one line in err when it
 * cannot be reached or is not that pid. */
int control_call(const char *audit_path, pid_t holder, const struct control_request *req,
                 int *status, struct secret **reply, char *err, size_t errlen);

#endif
