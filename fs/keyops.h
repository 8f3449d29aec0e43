/* keyops.h - the key operations: the one place where a caller's operation
 * on a key meets the backend (keyops.c).  Each routes the network to its
 * instance, checks the caller against the access rules, consults the
 * instance's cache, calls the backend within the instance's bound on calls in
 * flight, times the call into the metrics, feeds the health state and writes
 * the audit line before returning.  Nothing else calls a backend's
 * get/store/remove/list on behalf of a caller. */
#ifndef OMIKUJI_KEYOPS_H
#define OMIKUJI_KEYOPS_H

#include "mount_state.h"

/* The wrapped operations.  Results are 0 or -errno as the FUSE layer returns
 * them (-EACCES denied or refused, -ENOENT, -EIO, -EROFS, ...). */
int keyops_get(struct mount_state *k, const struct caller *c, const char *network, bool refresh,
                 struct secret **out);
/* content is what the caller wrote (the key, maybe with surrounding
 * whitespace); it is validated against keyfs.key_format here, so a refusal
 * is audited too: -EINVAL invalid, -EFBIG larger than 4096 bytes. */
int keyops_store(struct mount_state *k, const struct caller *c, const char *network,
                   const struct secret *content);
int keyops_remove(struct mount_state *k, const struct caller *c, const char *network);
/* The keys/ listing (sorted, valid names only) for a caller: checked and
 * audited; only names the caller has some grant on.  *out must be empty;
 * caller clears it. */
int keyops_list(struct mount_state *k, const struct caller *c, struct strlist *out);
/* keyops_get of a key file's open, which may park instead of waiting: when
 * the key is not cached and its fetch is already in flight for another
 * caller, c is checked (a denial is audited and returned now, as by
 * keyops_get) and p is queued on that fetch: KEYOPS_PARKED is returned at
 * once and p->done (set by the caller) is called exactly once, by the
 * thread that made the fetch, with what keyops_get would have returned,
 * counted and audited as c's own read (rc 0 and key, the caller's own copy
 * to free; or -errno and NULL).  c and network must live until then.
 * Otherwise as keyops_get (0 with *out, or -errno). */
#define KEYOPS_PARKED 1
struct keyops_park {
	struct cache_waiter w;   /* keyops' own, as are the fields up to done */
	struct mount_state *k;
	struct instance *in;
	const struct caller *c;
	const char *network;
	const char *anomaly;
	double t0;
	bool routed;
	char *address;           /* keyops_address_park's out; NULL for a read */
	void (*done)(struct keyops_park *p, int rc, struct secret *key);
};
int keyops_get_park(struct mount_state *k, const struct caller *c, const char *network,
                    struct keyops_park *p, struct secret **out);
/* keyops_address of an addresses/ open, parking the same way: when the
 * address is not known yet, the key is not cached and its fetch is already
 * in flight, p is queued on that fetch (KEYOPS_PARKED) and p->done is
 * called once, by the fetching thread, with keyops_address's result (key
 * always NULL; on 0 the address is in out, which must live until then, as
 * c and network must).  Otherwise as keyops_address. */
int keyops_address_park(struct mount_state *k, const struct caller *c, const char *network,
                        struct keyops_park *p, char out[EVM_ADDRESS_TEXT + 1]);
/* The same operations on a named instance rather than the one network
 * routes to (`key migrate`, contract section 8): the same access rules,
 * cache, bound, metrics and audit (storage_type = in->name).  When network
 * does not route to in, the mount's view of keys/<network> (mtime,
 * rotation notices, address book) is left alone; in's cache and listing
 * still follow, so nothing stale is served once the router points there.
 * keyops_list_in is in's own listing (names routed elsewhere included),
 * filtered by the caller's grants and audited as a list on in. */
int keyops_get_in(struct mount_state *k, const struct caller *c, struct instance *in,
                  const char *network, bool refresh, struct secret **out);
int keyops_store_in(struct mount_state *k, const struct caller *c, struct instance *in,
                    const char *network, const struct secret *content);
int keyops_remove_in(struct mount_state *k, const struct caller *c, struct instance *in,
                     const char *network);
int keyops_list_in(struct mount_state *k, const struct caller *c, struct instance *in,
                   struct strlist *out);
/* The address of network's key for addresses/<network>: checked against
 * ACCESS_ADDRESS (a denial is counted and audited as `address`); answered
 * from the address book when the mount has seen the key, else the key is
 * fetched once as the daemon (cache and backend as for a read; audited as
 * `address` with the caller's ids), its address derived and kept.  The key
 * itself never leaves this call.  0, -EACCES, -ENOENT, -EIO, ... */
int keyops_address(struct mount_state *k, const struct caller *c, const char *network,
                     char out[EVM_ADDRESS_TEXT + 1]);
/* The keys/ listing (the union of every instance's cached listing) without
 * access check or audit (addresses/ filters it per network itself).  *out must be empty; caller clears it. */
int keyops_names(struct mount_state *k, struct strlist *out);
/* Does network have a key?  From the cached listing (refreshed when older
 * than list_cache_seconds; the last good listing is kept when the backend
 * fails); never fetches a key.  Not audited.  A refresh made for it waits
 * at most a second (a per-call deadline), not the backend's full timeout.
 * When the backend cannot list in that time and no listing was ever had,
 * answers 0: the open's fetch then decides. */
int keyops_exists(struct mount_state *k, const char *network);
/* Refresh the instance's keys/ listing if it is stale (its checker thread,
 * on instance_request_list_refresh). */
struct instance;
void keyops_list_refresh(struct instance *in);
/* Does keys/<network> exist for this caller at all?  A caller with no grant
 * on network gets -ENOENT (audited and counted as a denied get: an attempt
 * to reach a key), so names and mtimes do not leak past the rules; else
 * keyops_exists(). */
int keyops_lookup(struct mount_state *k, const struct caller *c, const char *network);
/* Check op for caller before the operation itself (open of a key for
 * writing): a denial is counted and audited here and gives -EACCES. */
int keyops_check(struct mount_state *k, const struct caller *c, const char *network,
                   enum key_op op);
/* Mark keys/<network> as being created (an open file not yet stored), so it
 * exists for getattr; end with keyops_creating(k, net, false). */
void keyops_creating(struct mount_state *k, const char *network, bool on);
bool keyops_is_creating(struct mount_state *k, const char *network);
/* The reason of the last keystore_*() failure in this thread ("" when
 * none): what the audit line's `error` says, for the control socket and the
 * CLI to print.  Never key material. */
/* After a successful keyops_store on this thread: "created" or "replaced"
 * (by the listing before the store; "replaced" when it could not be told). */
const char *keyops_last_store(void);
const char *keyops_last_error(void);
/* Access decision without performing the operation (access(2)). */
bool keyops_allowed(struct mount_state *k, const struct caller *c, const char *network,
                      enum access_op op);
/* mtime to show for keys/<network> (wall seconds). */
double keyops_mtime(struct mount_state *k, const char *network);
/* st_size to show for keys/<network>: what a read returns once the key is
 * known to the mount (key_format evm: always 67), else 0. */
off_t keyops_size(struct mount_state *k, const char *network);
/* The file content of a key as reads return it: the canonical form for
 * key_format evm ("0x" + 64 lowercase hex digits), then one newline.
 * NULL on allocation failure. */
struct secret *keyops_content(struct mount_state *k, const struct secret *key);
#endif
