/* anomaly.h - the anomaly signals of the monitoring guide and the
 * per-caller read rate limit.  Thread-safe after anomaly_new(). */
#ifndef OMIKUJI_ANOMALY_H
#define OMIKUJI_ANOMALY_H

#include <stdbool.h>
#include "access.h"
#include "clock.h"
#include "config.h"

struct anomaly;

struct anomaly_verdict {
	const char *kind;    /* NULL, or "burst" "off_hours" "auth_failures" "rate_limited" */
	bool deny;           /* rate limit exceeded: deny with EACCES */
};

/* Build from cfg; wall_now NULL = clock_wall.  With business_hours, sets the
 * process's TZ to its time zone (checked: a zoneinfo name or file, or a
 * POSIX TZ string), so call it before starting threads.  0 or -errno with a
 * reason in err. */
int anomaly_new(const struct config_keyfs *cfg, clock_fn wall_now, struct anomaly **out,
                char *err, size_t errlen);
/* Called for every key read (get) by a caller before it is served. */
struct anomaly_verdict anomaly_check_read(struct anomaly *an, const struct caller *c);
/* Called for every backend auth failure; returns "auth_failures" when the
 * per-minute threshold is crossed, else NULL. */
const char *anomaly_auth_failure(struct anomaly *an);
/* Is wall (seconds since the epoch) outside the configured business hours?
 * false when none are configured.  No other effect (the report uses it). */
bool anomaly_off_hours(struct anomaly *an, double wall);
/* Publish the business-hours state of the current minute (the mount's
 * maintenance thread calls it at every turn of the minute), so reads pay
 * one atomic load, not localtime_r.  Without business_hours, nothing. */
void anomaly_tick(struct anomaly *an);
void anomaly_free(struct anomaly *an);

#endif
