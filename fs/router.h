/* router.h - which backend instance a network goes to (contract section 8).
 *
 * Instances are numbered 0..n-1; instance i has a list of shell globs.  A
 * network goes to the first instance (in order) with a glob that matches
 * it, else to the default instance.  The answer for a network never
 * changes, so it is remembered: a cached key read pays one hash lookup,
 * however many instances and globs there are.  Thread-safe after
 * router_new(); no locks on the lookup path.
 */
#ifndef OMIKUJI_ROUTER_H
#define OMIKUJI_ROUTER_H

#include <stddef.h>
#include "strlist.h"

struct config;
struct router;

/* globs[i] (borrowed for the router's lifetime) are instance i's globs; an
 * instance with none is reached only as the default.  0 or -ENOMEM. */
int router_new(const struct strlist *const *globs, size_t n, size_t default_index,
               struct router **out);
/* The router of a configuration: instance 0 is key_storage (the default),
 * instance i+1 is keyfs.backends[i].  cfg must outlive the router. */
int router_from_config(const struct config *cfg, struct router **out);
void router_free(struct router *r);

size_t router_count(const struct router *r);
/* The instance of a (valid) network name. */
size_t router_route(struct router *r, const char *network);

/* The keys/ listing: lists[i] is what instance i listed (NULL: it could not
 * list).  Adds to out every name that routes to the instance that listed
 * it, sorted and unique; a name listed by an instance it does not route to
 * (a copy left behind by a migration) is hidden.  0 or -ENOMEM. */
int router_union(struct router *r, const struct strlist *const *lists, struct strlist *out);

#endif
