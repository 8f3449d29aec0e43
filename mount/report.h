/* report.h - `omikuji-keyfs report weekly|monthly` (contract section 11).
 *
 * The report is one JSON document (schema 1, documented field by field in
 * the README) built in two passes that never hold audit lines:
 *   report_audit.c   streams the audit files (plain or gzip, oldest first),
 *                    checks the chain with audit.c's line check, and folds
 *                    every line into per-network, per-caller and per-day
 *                    tables; their size depends on how many networks,
 *                    callers and days there are, never on how many lines.
 *   report_prom.c    asks a Prometheus server's HTTP API (query,
 *                    query_range) for availability, latency, cache, alerts
 *                    and AWS API calls.
 * report_render.c renders that document as text, JSON or HTML; report.c is
 * the command line and ties them together.
 */
#ifndef OMIKUJI_REPORT_H
#define OMIKUJI_REPORT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include "strlist.h"

struct anomaly;
struct secret;

/* The period reported on, [start, end), and the one before it, [prev_start,
 * start), in seconds since the epoch. */
struct report_period {
	const char *kind;     /* "weekly" | "monthly" */
	int days;             /* 7 | 30 */
	double start, end, prev_start;
};

/* Charts and per-day tables use UTC calendar days: the days that [start,
 * end) touches (the first and last may be partial), at most
 * REPORT_MAX_DAYS.  report_day_start(p, i) is the midnight starting day i. */
#define REPORT_MAX_DAYS 32
int report_day_count(const struct report_period *p);
double report_day_start(const struct report_period *p, int i);

struct report_audit_opts {
	const struct strlist *paths;      /* oldest first; read as one chain */
	const struct secret *key;         /* HMAC key of a keyed chain, NULL = SHA-256 */
	struct anomaly *hours;            /* business hours, NULL = not configured */
	const char *hours_text;           /* e.g. "09:00-17:00 Mon-Fri Europe/Berlin" */
	bool progress;                    /* show progress on stderr after 1 s */
};

/* Stream the audit files into the document's audit sections ("inputs",
 * "chain", "summary", "operations", ... see the README).  Returns 0, or
 * -errno with one line in err when a file cannot be opened or read (a bad
 * or tampered line is not an error: it goes into "chain"). */
int report_audit(const struct report_period *p, const struct report_audit_opts *o,
                 json_t *doc, char *err, size_t errlen);

/* Fill doc's "prometheus" object from the server at url (NULL: the section
 * says it is unavailable).  Never fails the report: an unreachable server or
 * a failed query is recorded in the section ("available": false, "reason")
 * and also returned as 1 with the reason in err, 0 otherwise. */
int report_prometheus(const struct report_period *p, const char *url, json_t *doc,
                      char *err, size_t errlen);

/* Render doc to out.  0, or -errno on a write error. */
int report_render_text(json_t *doc, FILE *out);
int report_render_html(json_t *doc, FILE *out);
int report_render_json(json_t *doc, FILE *out);

/* RFC 3339 UTC (YYYY-MM-DDTHH:MM:SS[.frac]Z or +00:00) or a date
 * YYYY-MM-DD to seconds since the epoch; a date means the end of that day
 * (the next midnight, UTC).  0, or -EINVAL. */
int report_parse_time(const char *s, size_t len, double *out);
/* "YYYY-MM-DDTHH:MM:SSZ" into buf (>= 21 bytes), whole seconds. */
void report_format_time(double t, char *buf, size_t size);

/* The command: argv[0] is "report".  Returns the exit status. */
int report_main(int argc, char **argv);

#endif
