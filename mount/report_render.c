/* report_render.c - the report document as text, JSON or HTML.
 *
 * Text and HTML show the same tables, described once below (`tables`: a
 * title, where the rows are in the document, and the columns with the kind
 * of each cell), so the two renderers cannot drift apart.  Text fits 100
 * columns (long names are cut with ".."); HTML is one self-contained file:
 * inline CSS, inline SVG charts, no script, font, image or link, and a print
 * style sheet.
 */
#include "report.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TEXT_ROWS 25
#define HTML_ROWS 500

enum kind { K_STR, K_INT, K_NUM, K_PCT, K_CHG, K_TIME, K_SECS, K_BOOL, K_USD };

struct col {
	const char *title;
	const char *path;     /* dot path inside the row */
	enum kind kind;
	int width;            /* text columns */
};

struct table {
	const char *title;
	const char *path;     /* dot path of the array in the document */
	const struct col *cols;
	const char *empty;    /* what to say when there are no rows */
};

#define END { NULL, NULL, K_STR, 0 }

static const struct col summary_cols[] = {
	{ "figure", "what", K_STR, 28 }, { "this period", "current", K_INT, 12 },
	{ "previous", "previous", K_INT, 12 }, { "change", "change_pct", K_CHG, 9 }, END };
static const struct col ops_cols[] = {
	{ "operation", "operation", K_STR, 10 }, { "success", "success", K_INT, 10 },
	{ "failure", "failure", K_INT, 9 }, { "denied", "denied", K_INT, 9 },
	{ "total", "total", K_INT, 10 }, { "previous", "trend.previous", K_INT, 10 },
	{ "change", "trend.change_pct", K_CHG, 9 }, END };
static const struct col reason_cols[] = {
	{ "reason", "reason", K_STR, 44 }, { "denial", "denial", K_BOOL, 6 },
	{ "count", "count.current", K_INT, 9 }, { "previous", "count.previous", K_INT, 9 },
	{ "change", "count.change_pct", K_CHG, 9 }, END };
static const struct col fail_cols[] = {
	{ "operation", "operation", K_STR, 9 }, { "network", "network", K_STR, 22 },
	{ "reason", "reason", K_STR, 30 }, { "count", "count", K_INT, 8 },
	{ "last seen", "last_seen", K_TIME, 16 }, END };
static const struct col denial_cols[] = {
	{ "uid", "uid", K_INT, 6 }, { "user", "user", K_STR, 10 }, { "process", "process", K_STR, 15 },
	{ "operation", "operation", K_STR, 9 }, { "network", "network", K_STR, 20 },
	{ "count", "count", K_INT, 7 }, { "last seen", "last_seen", K_TIME, 16 }, END };
static const struct col denial_net_cols[] = {
	{ "network", "network", K_STR, 40 }, { "denials", "count", K_INT, 9 }, END };
static const struct col net_cols[] = {
	{ "network", "network", K_STR, 18 }, { "ops", "operations", K_INT, 6 },
	{ "reads", "reads", K_INT, 7 }, { "cached", "cached_reads", K_INT, 6 },
	{ "stores", "stores", K_INT, 6 }, { "rm", "removes", K_INT, 4 },
	{ "denied", "denials", K_INT, 6 }, { "callers", "callers", K_INT, 7 },
	{ "last seen", "last_seen", K_TIME, 11 }, { "reads chg", "reads_trend.change_pct", K_CHG, 9 },
	END };
static const struct col caller_cols[] = {
	{ "uid", "uid", K_INT, 6 }, { "user", "user", K_STR, 10 }, { "process", "process", K_STR, 15 },
	{ "ops", "operations", K_INT, 7 }, { "reads", "reads", K_INT, 7 },
	{ "denied", "denials", K_INT, 6 }, { "off-hrs", "off_hours", K_INT, 7 },
	{ "nets", "networks", K_INT, 4 }, { "first seen", "first_seen", K_TIME, 11 },
	{ "new", "new", K_BOOL, 3 }, END };
static const struct col pair_cols[] = {
	{ "network", "network", K_STR, 24 }, { "uid", "uid", K_INT, 6 },
	{ "user", "user", K_STR, 10 }, { "process", "process", K_STR, 15 },
	{ "reads", "reads", K_INT, 8 }, { "denied", "denials", K_INT, 6 },
	{ "last seen", "last_seen", K_TIME, 16 }, END };
static const struct col lc_cols[] = {
	{ "event", "what", K_STR, 12 }, { "via mount", "mount", K_INT, 10 },
	{ "via CLI", "cli", K_INT, 10 }, { "total", "total", K_INT, 10 }, END };
static const struct col event_cols[] = {
	{ "time", "timestamp", K_TIME, 16 }, { "event", "event", K_STR, 9 },
	{ "network", "network", K_STR, 24 }, { "uid", "uid", K_INT, 6 },
	{ "process", "process", K_STR, 15 }, { "via", "source", K_STR, 5 }, END };
static const struct col anomaly_cols[] = {
	{ "kind", "kind", K_STR, 16 }, { "count", "count.current", K_INT, 9 },
	{ "previous", "count.previous", K_INT, 9 }, { "change", "count.change_pct", K_CHG, 9 }, END };
static const struct col daily_cols[] = {
	{ "day", "date", K_STR, 10 }, { "operations", "operations", K_INT, 11 },
	{ "failures", "failures", K_INT, 9 }, { "denials", "denials", K_INT, 9 }, END };
static const struct col backend_cols[] = {
	{ "backend", "backend", K_STR, 16 }, { "operations", "operations", K_INT, 11 },
	{ "failures", "failures", K_INT, 9 }, { "denials", "denials", K_INT, 9 },
	{ "success", "success_ratio", K_PCT, 9 }, END };
static const struct col avail_cols[] = {
	{ "backend", "backend", K_STR, 16 }, { "up", "up_ratio", K_PCT, 9 },
	{ "up before", "previous_up_ratio", K_PCT, 9 }, { "op success", "success_ratio", K_PCT, 10 },
	{ "succeeded", "operations_success", K_NUM, 10 }, { "failed", "operations_failure", K_NUM, 9 },
	END };
static const struct col lat_cols[] = {
	{ "operation", "operation", K_STR, 9 }, { "backend", "backend", K_STR, 14 },
	{ "count", "count", K_NUM, 9 }, { "p50", "p50", K_SECS, 9 }, { "p95", "p95", K_SECS, 9 },
	{ "p99", "p99", K_SECS, 9 }, { "p95 before", "previous_p95", K_SECS, 10 }, END };
static const struct col cache_cols[] = {
	{ "backend", "backend", K_STR, 16 }, { "hits", "hits", K_NUM, 10 },
	{ "misses", "misses", K_NUM, 10 }, { "hit ratio", "hit_ratio", K_PCT, 9 },
	{ "before", "previous_hit_ratio", K_PCT, 9 }, END };
static const struct col alert_cols[] = {
	{ "alert", "alertname", K_STR, 30 }, { "severity", "severity", K_STR, 9 },
	{ "samples", "samples", K_NUM, 8 }, { "first firing", "first_firing", K_TIME, 16 },
	{ "last firing", "last_firing", K_TIME, 16 }, END };
static const struct col aws_cols[] = {
	{ "backend", "backend", K_STR, 16 }, { "action", "action", K_STR, 24 },
	{ "calls", "calls", K_NUM, 10 }, END };

static const struct col finding_cols[] = {
	{ "severity", "severity", K_STR, 8 }, { "finding", "text", K_STR, 88 }, END };

static const struct table audit_tables[] = {
	{ "Findings", "findings", finding_cols, "nothing that needs a look" },
	{ "Summary", "_summary", summary_cols, NULL },
	{ "Operations by type and status", "operations", ops_cols, "no operations" },
	{ "Failures and denials by reason", "failures.by_reason", reason_cols, "none" },
	{ "Failed operations", "failures.list", fail_cols, "none" },
	{ "Denials by caller", "denials.by_caller", denial_cols, "none" },
	{ "Denials by network", "denials.by_network", denial_net_cols, "none" },
	{ "Access per network", "access.networks", net_cols, "no key was accessed" },
	{ "Callers", "access.callers", caller_cols, "none" },
	{ "New callers this period", "access.new_callers", caller_cols, "none" },
	{ "Who reads which key", "access.pairs", pair_cols, "none" },
	{ "Key lifecycle", "_lifecycle", lc_cols, NULL },
	{ "Key lifecycle events", "lifecycle.events", event_cols, "none" },
	{ "Anomalies by kind", "anomalies", anomaly_cols, "none flagged" },
	{ "Operations per day", "daily", daily_cols, NULL },
	{ "Backends (as the audit log sees them)", "backends", backend_cols, "none" },
	{ NULL, NULL, NULL, NULL },
};

static const struct table prom_tables[] = {
	{ "Backend availability", "prometheus.availability", avail_cols,
	  "no omikuji_key_backend_up series in the period" },
	{ "Latency (seconds)", "prometheus.latency_seconds", lat_cols,
	  "no omikuji_key_operation_duration_seconds series in the period" },
	{ "Cache", "prometheus.cache", cache_cols, "no cache series (local backends have no cache)" },
	{ "Alerts fired", "prometheus.alerts", alert_cols, "no alert fired" },
	{ "AWS API calls", "prometheus.aws.calls", aws_cols,
	  "no omikuji_keyfs_aws_api_calls_total series in the period (no aws backend)" },
	{ NULL, NULL, NULL, NULL },
};

/* --- the document -------------------------------------------------------- */

static json_t *get_path(json_t *root, const char *path)
{
	char buf[128];
	const char *p = path;
	json_t *cur = root;
	while (cur && *p) {
		const char *dot = strchr(p, '.');
		size_t n = dot ? (size_t)(dot - p) : strlen(p);
		if (n >= sizeof(buf))
			return NULL;
		memcpy(buf, p, n);
		buf[n] = 0;
		cur = json_object_get(cur, buf);
		p = dot ? dot + 1 : p + n;
	}
	return cur;
}

static const char *sget(json_t *root, const char *path)
{
	const char *s = json_string_value(get_path(root, path));
	return s ? s : "";
}

static long long iget(json_t *root, const char *path)
{
	return (long long)json_number_value(get_path(root, path));
}

/* Rows that are not arrays in the document: summary and lifecycle totals. */
static json_t *synthetic_rows(json_t *doc, const char *name)
{
	json_t *rows = json_array();
	if (strcmp(name, "_summary") == 0) {
		static const char *const keys[] = { "operations", "failures", "denials",
		                                    "anomalies", "off_hours" };
		static const char *const titles[] = { "operations", "failed operations",
		                                      "denied attempts", "anomalies flagged",
		                                      "off-hours accesses" };
		for (size_t i = 0; i < 5; i++) {
			json_t *t = json_deep_copy(get_path(json_object_get(doc, "summary"), keys[i]));
			if (!t)
				continue;
			json_object_set_new(t, "what", json_string(titles[i]));
			json_array_append_new(rows, t);
		}
		static const char *const more[] = { "networks_accessed", "callers", "new_callers" };
		static const char *const more_titles[] = { "networks accessed", "callers",
		                                           "new callers" };
		for (size_t i = 0; i < 3; i++)
			json_array_append_new(rows, json_pack("{s:s,s:O,s:n,s:n}", "what", more_titles[i],
				"current", get_path(json_object_get(doc, "summary"), more[i]), "previous",
				"change_pct"));
	} else if (strcmp(name, "_lifecycle") == 0) {
		static const char *const ev[] = { "created", "replaced", "removed", "refreshed" };
		for (size_t i = 0; i < 4; i++) {
			json_t *t = json_deep_copy(get_path(json_object_get(doc, "lifecycle"), ev[i]));
			if (!t)
				continue;
			json_object_set_new(t, "what", json_string(ev[i]));
			json_array_append_new(rows, t);
		}
	}
	return rows;
}

static json_t *table_rows(json_t *doc, const struct table *t)
{
	if (t->path[0] == '_')
		return synthetic_rows(doc, t->path);
	return json_incref(get_path(doc, t->path));
}

/* Text from the audit log is caller-controlled (a process names itself):
 * control characters become '?' so that nothing reaches a terminal as an
 * escape sequence or breaks a table row. */
static void printable(const char *s, char *buf, size_t size)
{
	size_t i = 0;
	for (; *s && i + 1 < size; s++, i++)
		buf[i] = (unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s;
	buf[i] = 0;
}

/* One cell as text. */
static void cell(json_t *row, const struct col *c, char *buf, size_t size)
{
	json_t *v = get_path(row, c->path);
	double d = json_number_value(v);
	if (!v || json_is_null(v)) {
		snprintf(buf, size, "-");
		return;
	}
	switch (c->kind) {
	case K_STR:
		printable(json_is_string(v) ? json_string_value(v) : "", buf, size);
		break;
	case K_INT:
		snprintf(buf, size, "%lld", (long long)d);
		break;
	case K_NUM:
		snprintf(buf, size, "%.0f", d);
		break;
	case K_PCT:
		snprintf(buf, size, "%.2f%%", d * 100.0);
		break;
	case K_CHG:
		snprintf(buf, size, "%+.0f%%", d);
		break;
	case K_SECS:
		if (d < 1.0)
			snprintf(buf, size, "%.2f ms", d * 1000.0);
		else
			snprintf(buf, size, "%.2f s", d);
		break;
	case K_BOOL:
		snprintf(buf, size, "%s", json_is_true(v) ? "yes" : "no");
		break;
	case K_USD:
		snprintf(buf, size, "$%.2f", d);
		break;
	case K_TIME: {
		/* "2026-11-27T01:40:52Z" -> "11-27 01:40" in narrow columns */
		const char *s = json_string_value(v);
		if (!s || strlen(s) < 16)
			snprintf(buf, size, "%s", s ? s : "-");
		else if (c->width < 16)
			snprintf(buf, size, "%.5s %.5s", s + 5, s + 11);
		else
			snprintf(buf, size, "%.10s %.5s", s, s + 11);
		break;
	}
	}
}

/* --- text ------------------------------------------------------------------ */

static void text_cell(FILE *out, const char *s, const struct col *c, bool last)
{
	int w = c->width;
	int len = (int)strlen(s);
	bool right = c->kind != K_STR && c->kind != K_TIME && c->kind != K_BOOL;
	if (len > w) {
		fprintf(out, "%.*s..", w - 2, s);
	} else if (right) {
		fprintf(out, "%*s", w, s);
	} else if (last) {
		fputs(s, out);
	} else {
		fprintf(out, "%-*s", w, s);
	}
	if (!last)
		fputs("  ", out);
}

static void text_table(FILE *out, json_t *doc, const struct table *t)
{
	json_t *rows = table_rows(doc, t);
	char buf[512];
	fprintf(out, "\n%s\n", t->title);
	if (json_array_size(rows) == 0) {
		fprintf(out, "  %s\n", t->empty ? t->empty : "none");
		json_decref(rows);
		return;
	}
	fputs("  ", out);
	for (const struct col *c = t->cols; c->title; c++)
		text_cell(out, c->title, c, !c[1].title);
	fputc('\n', out);
	size_t i;
	json_t *row;
	json_array_foreach(rows, i, row) {
		if (i == TEXT_ROWS) {
			fprintf(out, "  ... and %zu more (all of them in --format json or html)\n",
			        json_array_size(rows) - TEXT_ROWS);
			break;
		}
		fputs("  ", out);
		for (const struct col *c = t->cols; c->title; c++) {
			cell(row, c, buf, sizeof(buf));
			text_cell(out, buf, c, !c[1].title);
		}
		fputc('\n', out);
	}
	json_decref(rows);
}

static void chain_line(json_t *doc, char *buf, size_t size)
{
	json_t *ch = json_object_get(doc, "chain");
	if (json_is_true(json_object_get(ch, "verified")))
		snprintf(buf, size, "audit chain verified: %lld lines, seq %lld..%lld%s",
		         iget(ch, "lines"), iget(ch, "first_seq"), iget(ch, "last_seq"),
		         json_is_true(json_object_get(ch, "starts_at_seq_1")) ? "" :
		         " (earlier lines are not in the input)");
	else if (iget(ch, "lines") == 0)
		snprintf(buf, size, "AUDIT LOG EMPTY: no audit lines were read");
	else
		snprintf(buf, size, "AUDIT CHAIN BROKEN at %s line %lld: %s (%lld bad of %lld lines)",
		         sget(ch, "first_bad_file"), iget(ch, "first_bad_line"), sget(ch, "reason"),
		         iget(ch, "bad_lines"), iget(ch, "lines"));
}

static void text_hours(FILE *out, json_t *doc)
{
	json_t *h = get_path(doc, "hours.operations");
	long long max = 0;
	for (size_t i = 0; i < 24; i++)
		if (json_integer_value(json_array_get(h, i)) > max)
			max = json_integer_value(json_array_get(h, i));
	fputs("\nBusiest hours (UTC, operations in the period)\n", out);
	for (size_t i = 0; i < 24; i++) {
		long long n = json_integer_value(json_array_get(h, i));
		int bar = max ? (int)(n * 60 / max) : 0;
		if (n && !bar)
			bar = 1;
		fprintf(out, "  %02zu:00  %10lld%s", i, n, bar ? "  " : "");
		for (int b = 0; b < bar; b++)
			fputc('#', out);
		fputc('\n', out);
	}
	json_t *oh = json_object_get(doc, "off_hours");
	fprintf(out, "\nOff-hours access\n  %lld this period, %lld the period before\n  counted from %s\n",
	        iget(oh, "count.current"), iget(oh, "count.previous"), sget(oh, "basis"));
	if (json_is_string(json_object_get(oh, "business_hours")))
		fprintf(out, "  business hours: %s\n", sget(oh, "business_hours"));
}

int report_render_text(json_t *doc, FILE *out)
{
	char buf[1024];
	fprintf(out, "omikuji-keyfs %s security report\n", sget(doc, "report"));
	fprintf(out, "period   %s .. %s (%lld days)\nprevious %s .. %s\ngenerated %s\n",
	        sget(doc, "period.start"), sget(doc, "period.end"), iget(doc, "period.days"),
	        sget(doc, "previous_period.start"), sget(doc, "previous_period.end"),
	        sget(doc, "generated_at"));
	chain_line(doc, buf, sizeof(buf));
	bool ok = json_is_true(get_path(doc, "chain.verified"));
	fprintf(out, "%s%s\n", ok ? "" : "\n!!! ", buf);
	if (!ok)
		fputs("!!! figures below include lines that failed the check\n", out);
	for (const struct table *t = audit_tables; t->title; t++) {
		text_table(out, doc, t);
		if (strcmp(t->path, "anomalies") == 0)
			text_hours(out, doc);
	}
	json_t *cache = json_object_get(doc, "cache");
	fprintf(out, "\nCache (audit log: reads served from cache)\n  %lld of %lld reads",
	        iget(cache, "cached_reads"), iget(cache, "reads"));
	if (json_is_number(json_object_get(cache, "hit_ratio")))
		fprintf(out, " (%.1f%%)", json_number_value(json_object_get(cache, "hit_ratio")) * 100);
	fputc('\n', out);

	fputs("\n--- From Prometheus ---\n", out);
	if (!json_is_true(get_path(doc, "prometheus.available"))) {
		fprintf(out, "unavailable: %s\n", sget(doc, "prometheus.reason"));
	} else {
		fprintf(out, "server %s\n", sget(doc, "prometheus.url"));
		for (const struct table *t = prom_tables; t->title; t++)
			text_table(out, doc, t);
		json_t *aws = get_path(doc, "prometheus.aws");
		if (json_is_true(json_object_get(aws, "available")))
			fprintf(out, "  %.0f calls, estimated $%.2f at $%.2f per 10,000 calls (%s)\n",
			        json_number_value(json_object_get(aws, "total_calls")),
			        json_number_value(json_object_get(aws, "estimated_cost_usd")),
			        json_number_value(json_object_get(aws, "usd_per_10k_calls")),
			        sget(aws, "note"));
	}
	return ferror(out) ? -EIO : 0;
}

int report_render_json(json_t *doc, FILE *out)
{
	if (json_dumpf(doc, out, JSON_INDENT(2) | JSON_REAL_PRECISION(6)) < 0)
		return -EIO;
	fputc('\n', out);
	return ferror(out) ? -EIO : 0;
}

/* --- HTML ----------------------------------------------------------------- */

static void html_text(FILE *out, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '&': fputs("&amp;", out); break;
		case '<': fputs("&lt;", out); break;
		case '>': fputs("&gt;", out); break;
		case '"': fputs("&quot;", out); break;
		case '\'': fputs("&#39;", out); break;
		default: fputc(*s, out);
		}
	}
}

static void html_table(FILE *out, json_t *doc, const struct table *t)
{
	json_t *rows = table_rows(doc, t);
	char buf[512];
	fputs("<h2>", out);
	html_text(out, t->title);
	fputs("</h2>\n", out);
	if (json_array_size(rows) == 0) {
		fputs("<p class=\"none\">", out);
		html_text(out, t->empty ? t->empty : "none");
		fputs("</p>\n", out);
		json_decref(rows);
		return;
	}
	fputs("<table><thead><tr>", out);
	for (const struct col *c = t->cols; c->title; c++) {
		fputs("<th>", out);
		html_text(out, c->title);
		fputs("</th>", out);
	}
	fputs("</tr></thead><tbody>\n", out);
	size_t i;
	json_t *row;
	json_array_foreach(rows, i, row) {
		if (i == HTML_ROWS) {
			int ncols = 0;
			while (t->cols[ncols].title)
				ncols++;
			fprintf(out, "<tr><td colspan=\"%d\">... and %zu more (see --format json)</td></tr>\n",
			        ncols, json_array_size(rows) - HTML_ROWS);
			break;
		}
		fputs("<tr>", out);
		for (const struct col *c = t->cols; c->title; c++) {
			cell(row, c, buf, sizeof(buf));
			fputs(c->kind == K_STR || c->kind == K_TIME ? "<td>" : "<td class=\"n\">", out);
			html_text(out, buf);
			fputs("</td>", out);
		}
		fputs("</tr>\n", out);
	}
	fputs("</tbody></table>\n", out);
	json_decref(rows);
}

/* A bar chart of one numeric field of the rows of an array (null = no bar),
 * labelled with another field.  scale multiplies values (e.g. 100 for %). */
static void svg_bars(FILE *out, const char *id, const char *title, json_t *rows,
                     const char *label_field, const char *value_field, double scale,
                     const char *unit, const char *color)
{
	const int W = 640, H = 200, L = 56, B = 28, T = 24;
	size_t n = json_array_size(rows);
	double max = 0;
	size_t i;
	json_t *r;
	json_array_foreach(rows, i, r) {
		json_t *v = get_path(r, value_field);
		if (json_is_number(v) && json_number_value(v) * scale > max)
			max = json_number_value(v) * scale;
	}
	fprintf(out, "<figure><svg id=\"%s\" class=\"chart\" viewBox=\"0 0 %d %d\" width=\"%d\" "
	        "height=\"%d\" role=\"img\" aria-label=\"", id, W, H, W, H);
	html_text(out, title);
	fprintf(out, "\"><rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"#fff\"/>\n", W, H);
	fprintf(out, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#888\"/>\n",
	        L, H - B, W - 8, H - B);
	fprintf(out, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#888\"/>\n",
	        L, T, L, H - B);
	fprintf(out, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\" class=\"ax\">%.4g%s</text>\n",
	        L - 4, T + 4, max, unit);
	fprintf(out, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\" class=\"ax\">0</text>\n",
	        L - 4, H - B);
	bool any = false;
	if (n > 0) {
		double slot = (double)(W - 8 - L) / (double)n;
		json_array_foreach(rows, i, r) {
			double x = L + slot * (double)i;
			json_t *v = get_path(r, value_field);
			if (json_is_number(v)) {
				double val = json_number_value(v) * scale;
				double h = max > 0 ? (val / max) * (H - B - T) : 0;
				any = true;
				fprintf(out, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
				        "fill=\"%s\"><title>", x + slot * 0.1, H - B - h, slot * 0.8, h, color);
				html_text(out, sget(r, label_field));
				fprintf(out, ": %.4g%s</title></rect>\n", val, unit);
			}
			size_t every = n > 10 ? (n + 9) / 10 : 1;
			if (i % every == 0) {
				const char *lab = sget(r, label_field);
				fprintf(out, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\" class=\"ax\">",
				        x + slot / 2, H - B + 16);
				html_text(out, strlen(lab) == 10 ? lab + 5 : lab);
				fputs("</text>\n", out);
			}
		}
	}
	if (!any)
		fprintf(out, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" class=\"ax\">no data</text>\n",
		        (W + L) / 2, H / 2);
	fputs("</svg><figcaption>", out);
	html_text(out, title);
	fputs("</figcaption></figure>\n", out);
}

static const char html_style[] =
"body{font:14px/1.4 system-ui,sans-serif;color:#222;max-width:1000px;margin:1em auto;padding:0 1em}"
"h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ccc}"
"table{border-collapse:collapse;width:100%;margin:.4em 0}"
"th,td{padding:2px 8px;border-bottom:1px solid #eee;text-align:left;white-space:nowrap}"
"td.n{text-align:right;font-variant-numeric:tabular-nums}th{background:#f4f4f4}"
".bad{background:#fde2e1;border:2px solid #c0392b;padding:.6em;font-weight:bold}"
".ok{background:#e3f4e1;border:1px solid #3c8d40;padding:.6em}"
".none{color:#777}.ax{font-size:11px;fill:#555}figure{margin:1em 0}"
"figcaption{font-size:.9em;color:#555}svg.chart{max-width:100%;height:auto;border:1px solid #ddd}"
".charts{display:flex;flex-wrap:wrap;gap:1em}"
"@media print{body{max-width:none;font-size:10pt}h2{page-break-after:avoid}"
"table,figure{page-break-inside:avoid}.bad,.ok,th{-webkit-print-color-adjust:exact;"
"print-color-adjust:exact}}";

int report_render_html(json_t *doc, FILE *out)
{
	char buf[1024];
	fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>", out);
	snprintf(buf, sizeof(buf), "omikuji-keyfs %s security report, %s to %s", sget(doc, "report"),
	         sget(doc, "period.start"), sget(doc, "period.end"));
	html_text(out, buf);
	fprintf(out, "</title>\n<style>%s</style></head><body>\n<h1>", html_style);
	html_text(out, buf);
	fputs("</h1>\n<p>Previous period ", out);
	html_text(out, sget(doc, "previous_period.start"));
	fputs(" to ", out);
	html_text(out, sget(doc, "previous_period.end"));
	fputs("; generated ", out);
	html_text(out, sget(doc, "generated_at"));
	fputs(".</p>\n", out);
	chain_line(doc, buf, sizeof(buf));
	bool ok = json_is_true(get_path(doc, "chain.verified"));
	fprintf(out, "<p id=\"chain\" class=\"%s\">", ok ? "ok" : "bad");
	html_text(out, buf);
	if (!ok)
		fputs(". Figures below include lines that failed the check.", out);
	fputs("</p>\n<h2>Charts</h2><div class=\"charts\">\n", out);
	json_t *daily = json_object_get(doc, "daily");
	svg_bars(out, "chart-operations", "Operations per day", daily, "date", "operations", 1, "",
	         "#2f6db5");
	svg_bars(out, "chart-denials", "Denials per day", daily, "date", "denials", 1, "", "#c0392b");
	json_t *pdaily = get_path(doc, "prometheus.daily");
	svg_bars(out, "chart-latency", "Read latency p95 per day (Prometheus)", pdaily, "date",
	         "get_p95_seconds", 1000.0, " ms", "#8e44ad");
	svg_bars(out, "chart-availability", "Backend availability per day (Prometheus)", pdaily,
	         "date", "up_ratio", 100.0, "%", "#27ae60");
	fputs("</div>\n", out);
	for (const struct table *t = audit_tables; t->title; t++)
		html_table(out, doc, t);
	json_t *oh = json_object_get(doc, "off_hours");
	snprintf(buf, sizeof(buf), "%lld off-hours accesses this period, %lld the period before (%s%s%s)",
	         iget(oh, "count.current"), iget(oh, "count.previous"), sget(oh, "basis"),
	         json_is_string(json_object_get(oh, "business_hours")) ? ": " : "",
	         sget(oh, "business_hours"));
	fputs("<h2>Off-hours access</h2><p>", out);
	html_text(out, buf);
	fputs("</p>\n<h2>Busiest hours (UTC)</h2>\n", out);
	json_t *hours = json_array();
	for (int h = 0; h < 24; h++) {
		char lab[8];
		snprintf(lab, sizeof(lab), "%02d", h);
		json_array_append_new(hours, json_pack("{s:s,s:O}", "hour", lab, "operations",
			json_array_get(get_path(doc, "hours.operations"), (size_t)h)));
	}
	svg_bars(out, "chart-hours", "Operations by hour of day (UTC)", hours, "hour", "operations",
	         1, "", "#2f6db5");
	json_decref(hours);
	fputs("<h2>From Prometheus</h2>\n", out);
	if (!json_is_true(get_path(doc, "prometheus.available"))) {
		fputs("<p class=\"none\">Unavailable: ", out);
		html_text(out, sget(doc, "prometheus.reason"));
		fputs("</p>\n", out);
	} else {
		fputs("<p>Server ", out);
		html_text(out, sget(doc, "prometheus.url"));
		fputs("</p>\n", out);
		for (const struct table *t = prom_tables; t->title; t++)
			html_table(out, doc, t);
		json_t *aws = get_path(doc, "prometheus.aws");
		if (json_is_true(json_object_get(aws, "available"))) {
			snprintf(buf, sizeof(buf), "%.0f calls, estimated $%.2f at $%.2f per 10,000 calls",
			         json_number_value(json_object_get(aws, "total_calls")),
			         json_number_value(json_object_get(aws, "estimated_cost_usd")),
			         json_number_value(json_object_get(aws, "usd_per_10k_calls")));
			fputs("<p>", out);
			html_text(out, buf);
			fputs("</p>\n", out);
		}
	}
	fputs("</body></html>\n", out);
	return ferror(out) ? -EIO : 0;
}
