/* clock.h - time sources, injectable so that TTLs, renewals and windows can be
 * unit-tested without sleeping. */
#ifndef OMIKUJI_CLOCK_H
#define OMIKUJI_CLOCK_H

/* Seconds on CLOCK_MONOTONIC. */
double clock_monotonic(void);
/* Seconds since the epoch (CLOCK_REALTIME). */
double clock_wall(void);

/* A clock function: tests pass their own. */
typedef double (*clock_fn)(void);

/* RFC 3339 UTC with microseconds, e.g. 2026-11-27T01:30:08.123456Z.
 * buf must hold at least 32 bytes. */
void clock_rfc3339(double wall_seconds, char *buf, unsigned long size);

#endif
