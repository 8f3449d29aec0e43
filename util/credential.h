/* credential.h - the lifetime of a renewable credential (a Vault token,
 * temporary cloud keys): its value with a generation counter, when it was
 * obtained and for how long, when to renew it (at 2/3 of its TTL), and one
 * refresher at a time.  The backend does the I/O (login, renewal); this
 * module only keeps the state and answers "what is needed now".
 *
 * Threads: every function is thread-safe.  A thread that logs in or renews
 * holds refresh_lock across its I/O, so concurrent callers queue behind one
 * refresher and then see its result (credential_needs again).
 */
#ifndef OMIKUJI_CREDENTIAL_H
#define OMIKUJI_CREDENTIAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include "clock.h"
#include "secret.h"

/* A lifetime as the issuer stated it.  Times are on the credential's clock. */
struct credential_timing {
	bool renewable;
	double obtained_at;   /* when ttl was read */
	double ttl;           /* seconds from obtained_at; 0 = never expires */
};

/* obtained_at + 2/3 of the TTL; negative when never (not renewable, no TTL). */
double credential_renew_at(const struct credential_timing *t);
bool credential_renew_due(const struct credential_timing *t, double now);
/* The TTL has run out (a second of margin, so that a request does not race
 * the expiry).  Never true for ttl 0. */
bool credential_expired(const struct credential_timing *t, double now);

struct credential {
	pthread_mutex_t lock;           /* guards the fields below */
	pthread_mutex_t refresh_lock;   /* held by the one thread logging in or renewing */
	clock_fn now;
	struct secret *value;           /* NULL: none yet */
	struct credential_timing timing;
	bool timing_known;              /* from a login, renewal or lookup */
	double next_renew_at;           /* after a failed renewal: not before */
	unsigned generation;            /* bumped whenever value changes */
	char source[96];                /* where the value came from, for health; "" = not said */
};

void credential_init(struct credential *c, clock_fn now);   /* now NULL: clock_monotonic */
void credential_set_clock(struct credential *c, clock_fn now);
/* Wipes and frees the value. */
void credential_destroy(struct credential *c);

/* Install a new value (ownership taken; NULL keeps the current one) and/or
 * its timing (NULL with a new value: timing unknown).  Either resets a
 * pending retry-later. */
void credential_install(struct credential *c, struct secret *value,
                        const struct credential_timing *timing);
/* The same, also naming where the value came from (for health lines; never
 * a secret).  source NULL keeps the current name. */
void credential_install_from(struct credential *c, struct secret *value,
                             const struct credential_timing *timing, const char *source);
/* A timing for a value that expires `left` seconds from now on c's clock
 * (issuers that state an absolute Expiration): renewable, so that it is
 * replaced at 2/3 of what was left when it was obtained.  left <= 0 gives
 * an already expired value; pass no timing at all for one that never
 * expires. */
struct credential_timing credential_timing_left(struct credential *c, double left);
/* A copy of the value (NULL when none; caller frees) and its generation. */
struct secret *credential_snapshot(struct credential *c, unsigned *generation);
/* Has the value changed since generation (another thread logged in)? */
bool credential_changed(struct credential *c, unsigned generation);
/* What to do before using it: *login when there is none or it expired (only
 * when can_login: a static token cannot be minted again), *renew when a
 * valid renewable one is due and no retry-later is pending. */
void credential_needs(struct credential *c, bool can_login, bool *login, bool *renew);
/* Claim the refresh when one is needed: true with refresh_lock held (call
 * credential_end) and *login / *renew as credential_needs says after the
 * lock was taken; false when nothing is needed any more.  A login (no
 * valid value) always queues behind a running refresher.  A renewal
 * queues too when `wait`; otherwise, when another thread is already
 * renewing, it returns false at once: the caller signs with the current,
 * still valid value instead of waiting for the issuer. */
bool credential_begin(struct credential *c, bool can_login, bool wait, bool *login, bool *renew);
void credential_end(struct credential *c);
/* A renewal failed but the value still works: try again after a third of
 * what is left of its life (at least a second). */
void credential_retry_later(struct credential *c);
/* Expiry for health lines: "never", "unknown" or an RFC 3339 time. */
void credential_expiry_text(struct credential *c, char *buf, size_t size);
/* Where the value came from: its source, or "none" when there is no value. */
void credential_source_text(struct credential *c, char *buf, size_t size);

#endif
