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

/* An RFC 3339 date-time, s[0..len): "YYYY-MM-DDTHH:MM:SS", an optional
 * fraction, then "Z" or "+HH:MM"/"-HH:MM" ('t' or ' ' for the 'T', 'z'
 * for the 'Z'), as seconds since the epoch in *out.  0, or -EINVAL for
 * anything else.  Digit by digit: no locale, no time zone database, no
 * strptime (issue 15: strptime + timegm + strtod were ~2 us of CPU per
 * uncached Vault read).  The fraction is converted as strtod does: up to
 * 15 digits exactly, further digits ignored. */
int clock_parse_rfc3339(const char *s, unsigned long len, double *out);

#endif
