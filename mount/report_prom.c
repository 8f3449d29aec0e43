/* report_prom.c - the Prometheus half of the report, from a server's HTTP
 * API (/api/v1/query, instant queries over range vectors) through the project's HTTP
 * layer (backends/http.c: libcurl, TLS always verified) and jansson.
 *
 * Every figure is one PromQL expression over the report's window, evaluated
 * at the end of the period (and at its start, for the previous period), so a
 * server that scraped only part of the period answers for the part it has.
 * The expressions are listed in the README next to the JSON fields they fill.
 */
#include "report.h"
#include "http.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* AWS Secrets Manager: USD 0.05 per 10,000 API calls (public price list,
 * the same in every region at the time of writing). */
#define AWS_USD_PER_10K_CALLS 0.05

struct prom {
	struct http_client *http;
	const char *url;
	char err[512];
};

/* GET base + path; the "data" member of a successful answer (new ref). */
static json_t *prom_get(struct prom *pr, const char *path)
{
	char herr[256] = "";
	size_t blen = strlen(pr->url);
	while (blen > 0 && pr->url[blen - 1] == '/')
		blen--;
	size_t n = blen + strlen(path) + 1;
	char *url = malloc(n);
	json_t *data = NULL;
	if (!url) {
		snprintf(pr->err, sizeof(pr->err), "out of memory");
		return NULL;
	}
	snprintf(url, n, "%.*s%s", (int)blen, pr->url, path);
	struct http_request req = { .method = "GET", .url = url, .idempotent = true,
	                            .public_answer = true };   /* metrics, never a key */
	struct http_response resp = { 0 };
	int rc = http_request(pr->http, &req, 0, &resp, herr, sizeof(herr));
	free(url);
	if (rc < 0) {
		snprintf(pr->err, sizeof(pr->err), "Prometheus at %s: %s", pr->url,
		         herr[0] ? herr : strerror(-rc));
		goto out;
	}
	json_error_t jerr;
	json_t *root = resp.body ? json_loadb((const char *)resp.body->data, resp.body->len, 0, &jerr)
	                         : NULL;
	const char *status = json_string_value(json_object_get(root, "status"));
	if (!root || !status || strcmp(status, "success") != 0) {
		const char *why = json_string_value(json_object_get(root, "error"));
		snprintf(pr->err, sizeof(pr->err), "Prometheus at %s: HTTP %ld%s%s", pr->url,
		         resp.status, why ? ": " : (root ? "" : ", not a Prometheus API answer"),
		         why ? why : "");
		json_decref(root);
		goto out;
	}
	data = json_incref(json_object_get(root, "data"));
	json_decref(root);
out:
	http_response_clear(&resp);
	return data;
}

static json_t *prom_result(struct prom *pr, const char *kind, const char *expr, const char *params)
{
	size_t elen = strlen(expr) * 3 + 1;
	char *esc = malloc(elen);
	if (!esc || http_escape_segment(expr, esc, elen) < 0) {
		free(esc);
		snprintf(pr->err, sizeof(pr->err), "out of memory");
		return NULL;
	}
	size_t n = strlen(esc) + strlen(params) + 64;
	char *path = malloc(n);
	json_t *result = NULL;
	if (path) {
		snprintf(path, n, "/api/v1/%s?query=%s&%s", kind, esc, params);
		json_t *data = prom_get(pr, path);
		result = json_incref(json_object_get(data, "result"));
		json_decref(data);
		if (data && !json_is_array(result)) {
			json_decref(result);
			result = NULL;
			snprintf(pr->err, sizeof(pr->err), "Prometheus at %s: answer without a result",
			         pr->url);
		}
	}
	free(path);
	free(esc);
	return result;
}

/* Instant query at time t: the result vector (new ref) or NULL. */
static json_t *prom_query(struct prom *pr, double t, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static json_t *prom_query(struct prom *pr, double t, const char *fmt, ...)
{
	char expr[1024], params[64];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(expr, sizeof(expr), fmt, ap);
	va_end(ap);
	snprintf(params, sizeof(params), "time=%.3f", t);
	return prom_result(pr, "query", expr, params);
}

/* A sample's value as a number, or JSON null for NaN/Inf/absent. */
static json_t *sample_value(json_t *pair)
{
	const char *s = json_string_value(json_array_get(pair, 1));
	if (!s)
		return json_null();
	double v = strtod(s, NULL);
	return isfinite(v) ? json_real(v) : json_null();
}

static double sample_double(json_t *pair)
{
	const char *s = json_string_value(json_array_get(pair, 1));
	return s ? strtod(s, NULL) : NAN;
}

static const char *label(json_t *series, const char *name)
{
	const char *s = json_string_value(json_object_get(json_object_get(series, "metric"), name));
	return s ? s : "";
}

/* The object in `index` for key, created with the given label fields. */
static json_t *row(json_t *index, const char *key, const char *k1, const char *v1,
                   const char *k2, const char *v2)
{
	json_t *r = json_object_get(index, key);
	if (!r) {
		r = json_object();
		json_object_set_new(r, k1, json_string(v1));
		if (k2)
			json_object_set_new(r, k2, json_string(v2));
		json_object_set_new(index, key, r);
	}
	return r;
}

static json_t *values_of(json_t *index)
{
	json_t *arr = json_array(), *v;
	const char *k;
	json_object_foreach(index, k, v)
		json_array_append(arr, v);
	return arr;
}

/* Fold an instant vector into rows keyed by one or two labels. */
static void fold_vector(json_t *index, json_t *vec, const char *l1, const char *l2,
                        const char *field)
{
	size_t i;
	json_t *s;
	json_array_foreach(vec, i, s) {
		char key[512];
		snprintf(key, sizeof(key), "%s\x1f%s", label(s, l1), l2 ? label(s, l2) : "");
		json_t *r = row(index, key, l1, label(s, l1), l2, l2 ? label(s, l2) : NULL);
		json_object_set_new(r, field, sample_value(json_object_get(s, "value")));
	}
}

/* One instant query at t folded into index (see fold_vector).  0 or -EIO. */
static int fold_query(struct prom *pr, json_t *index, double t, const char *l1, const char *l2,
                      const char *field, const char *fmt, ...)
	__attribute__((format(printf, 7, 8)));
static int fold_query(struct prom *pr, json_t *index, double t, const char *l1, const char *l2,
                      const char *field, const char *fmt, ...)
{
	char expr[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(expr, sizeof(expr), fmt, ap);
	va_end(ap);
	json_t *v = prom_query(pr, t, "%s", expr);
	if (!v)
		return -EIO;
	fold_vector(index, v, l1, l2, field);
	json_decref(v);
	return 0;
}

/* A ratio field a / (a + b) on every row, null when both are zero. */
static void ratio_field(json_t *index, const char *field, const char *a, const char *b)
{
	const char *k;
	json_t *r;
	json_object_foreach(index, k, r) {
		double x = json_number_value(json_object_get(r, a));
		double y = json_number_value(json_object_get(r, b));
		json_object_set_new(r, field, x + y > 0 ? json_real(x / (x + y)) : json_null());
	}
}

/* The labels that identify an ALERTS series, as a stable string key. */
static char *alert_key(json_t *series)
{
	json_t *labels = json_deep_copy(json_object_get(series, "metric"));
	json_object_del(labels, "__name__");
	json_object_del(labels, "alertstate");
	char *key = json_dumps(labels, JSON_SORT_KEYS | JSON_COMPACT);
	json_decref(labels);
	return key;
}

static int alerts(struct prom *pr, double end, const char *w, json_t *index)
{
	json_t *v = prom_query(pr, end, "count_over_time(ALERTS{alertstate=\"firing\"}[%s])", w);
	size_t i;
	json_t *s;
	if (!v)
		return -EIO;
	json_array_foreach(v, i, s) {
		char *key = alert_key(s);
		json_t *labels = json_deep_copy(json_object_get(s, "metric"));
		json_object_del(labels, "__name__");
		json_object_del(labels, "alertstate");
		if (key)
			json_object_set_new(index, key, json_pack("{s:s,s:s,s:o,s:o}",
				"alertname", label(s, "alertname"), "severity", label(s, "severity"),
				"labels", labels, "samples", sample_value(json_object_get(s, "value"))));
		else
			json_decref(labels);
		free(key);
	}
	json_decref(v);
	static const struct { const char *fn, *field; } edges[] = {
		{ "min_over_time", "first_firing" }, { "max_over_time", "last_firing" } };
	for (size_t e = 0; e < 2; e++) {
		v = prom_query(pr, end, "%s(timestamp(ALERTS{alertstate=\"firing\"})[%s:1m])",
		               edges[e].fn, w);
		if (!v)
			return -EIO;
		json_array_foreach(v, i, s) {
			char *key = alert_key(s);
			json_t *a = key ? json_object_get(index, key) : NULL;
			double t = sample_double(json_object_get(s, "value"));
			char buf[32];
			if (a && isfinite(t)) {
				report_format_time(t, buf, sizeof(buf));
				json_object_set_new(a, edges[e].field, json_string(buf));
			}
			free(key);
		}
		json_decref(v);
	}
	return 0;
}

/* Per UTC day, for the charts: availability and read p95; each day's
 * window is the part of that day inside the period. */
static int daily(struct prom *pr, const struct report_period *p, json_t *days)
{
	for (int d = 0; d < report_day_count(p); d++) {
		double ds = report_day_start(p, d), de = ds + 86400.0;
		if (ds < p->start)
			ds = p->start;
		if (de > p->end)
			de = p->end;
		char date[32];
		report_format_time(report_day_start(p, d), date, sizeof(date));
		date[10] = 0;
		json_t *day = json_pack("{s:s,s:n,s:n}", "date", date, "up_ratio", "get_p95_seconds");
		json_array_append_new(days, day);
		long span_s = (long)(de - ds);
		if (span_s < 1)
			continue;
		/* one row each (no by-labels), folded under the date's key */
		json_t *one = json_object();
		int rc = fold_query(pr, one, de, "date", NULL, "up_ratio",
		                    "avg(avg_over_time(omikuji_key_backend_up[%lds]))", span_s);
		if (rc == 0)
			rc = fold_query(pr, one, de, "date", NULL, "get_p95_seconds",
			                "histogram_quantile(0.95, sum by (le) (increase("
			                "omikuji_key_operation_duration_seconds_bucket{operation=\"get\"}"
			                "[%lds])))", span_s);
		json_t *r = json_object_get(one, "\x1f");
		if (r) {
			json_object_set(day, "up_ratio", json_object_get(r, "up_ratio") ?
			                json_object_get(r, "up_ratio") : json_null());
			json_object_set(day, "get_p95_seconds", json_object_get(r, "get_p95_seconds") ?
			                json_object_get(r, "get_p95_seconds") : json_null());
		}
		json_decref(one);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* Every section is attached to sec as soon as it exists, so that on a
 * failure the caller's json_object_clear(sec) frees it all.  Rows are
 * gathered in objects keyed by their labels and turned into arrays last. */
static int collect(struct prom *pr, const struct report_period *p, json_t *sec)
{
	char w[16];
	snprintf(w, sizeof(w), "%dd", p->days);
	double end = p->end, prev = p->start;
	json_t *avail = json_object(), *lat = json_object(), *cache = json_object();
	json_t *alert = json_object(), *aws = json_object(), *days = json_array();
	json_object_set_new(sec, "availability", avail);
	json_object_set_new(sec, "latency_seconds", lat);
	json_object_set_new(sec, "cache", cache);
	json_object_set_new(sec, "alerts", alert);
	json_object_set_new(sec, "aws_calls", aws);
	json_object_set_new(sec, "daily", days);
	static const struct { const char *q, *field; } qs[] = {
		{ "0.5", "p50" }, { "0.95", "p95" }, { "0.99", "p99" } };
	static const char latency[] = "histogram_quantile(%s, sum by (le, operation, backend) "
		"(increase(omikuji_key_operation_duration_seconds_bucket[%s])))";
	static const char ops[] = "sum by (backend) (increase("
		"omikuji_key_operations_total{status=\"%s\"}[%s]))";
	static const char up[] = "avg by (backend) (avg_over_time(omikuji_key_backend_up[%s]))";
	static const char cache_q[] = "sum by (backend) (increase(omikuji_key_cache_%s_total[%s]))";

	if (fold_query(pr, avail, end, "backend", NULL, "up_ratio", up, w) < 0 ||
	    fold_query(pr, avail, prev, "backend", NULL, "previous_up_ratio", up, w) < 0 ||
	    fold_query(pr, avail, end, "backend", NULL, "operations_success", ops, "success", w) < 0 ||
	    fold_query(pr, avail, end, "backend", NULL, "operations_failure", ops, "failure", w) < 0)
		return -EIO;
	ratio_field(avail, "success_ratio", "operations_success", "operations_failure");

	for (size_t i = 0; i < 3; i++)
		if (fold_query(pr, lat, end, "operation", "backend", qs[i].field, latency, qs[i].q, w) < 0)
			return -EIO;
	if (fold_query(pr, lat, prev, "operation", "backend", "previous_p95", latency, "0.95", w) < 0 ||
	    fold_query(pr, lat, end, "operation", "backend", "count", "sum by (operation, backend) "
	               "(increase(omikuji_key_operation_duration_seconds_count[%s]))", w) < 0)
		return -EIO;

	if (fold_query(pr, cache, end, "backend", NULL, "hits", cache_q, "hits", w) < 0 ||
	    fold_query(pr, cache, end, "backend", NULL, "misses", cache_q, "misses", w) < 0 ||
	    fold_query(pr, cache, prev, "backend", NULL, "previous_hits", cache_q, "hits", w) < 0 ||
	    fold_query(pr, cache, prev, "backend", NULL, "previous_misses", cache_q, "misses", w) < 0)
		return -EIO;
	ratio_field(cache, "hit_ratio", "hits", "misses");
	ratio_field(cache, "previous_hit_ratio", "previous_hits", "previous_misses");

	if (alerts(pr, end, w, alert) < 0)
		return -EIO;

	/* AWS API calls (issue 11's counter; absent without an aws backend) */
	if (fold_query(pr, aws, end, "backend", "action", "calls", "sum by (backend, action) "
	               "(increase(omikuji_keyfs_aws_api_calls_total[%s]))", w) < 0)
		return -EIO;
	double total = 0;
	const char *k;
	json_t *r;
	json_object_foreach(aws, k, r)
		total += json_number_value(json_object_get(r, "calls"));
	bool have_aws = json_object_size(aws) > 0;
	json_object_set_new(sec, "aws", json_pack("{s:b,s:o,s:f,s:f,s:f,s:s}",
		"available", have_aws, "calls", values_of(aws),
		"total_calls", total, "usd_per_10k_calls", AWS_USD_PER_10K_CALLS,
		"estimated_cost_usd", total / 10000.0 * AWS_USD_PER_10K_CALLS,
		"note", have_aws ? "API calls only; each secret is billed per month on top"
		        : "no omikuji_keyfs_aws_api_calls_total series in the period (no aws backend)"));
	json_object_del(sec, "aws_calls");

	if (daily(pr, p, days) < 0)
		return -EIO;
	json_object_set_new(sec, "availability", values_of(avail));
	json_object_set_new(sec, "latency_seconds", values_of(lat));
	json_object_set_new(sec, "cache", values_of(cache));
	json_object_set_new(sec, "alerts", values_of(alert));
	return 0;
}

int report_prometheus(const struct report_period *p, const char *url, json_t *doc,
                      char *err, size_t errlen)
{
	json_t *sec = json_object();
	json_object_set_new(doc, "prometheus", sec);
	if (!url) {
		json_object_set_new(sec, "available", json_false());
		json_object_set_new(sec, "reason", json_string("no --prometheus URL given"));
		return 0;
	}
	json_object_set_new(sec, "url", json_string(url));
	struct prom pr = { .url = url };
	struct http_client_opts ho = { .timeout_seconds = 30, .max_retries = 2 };
	char herr[256] = "";
	int rc = http_client_new(&ho, &pr.http, herr, sizeof(herr));
	if (rc < 0)
		snprintf(pr.err, sizeof(pr.err), "HTTP client: %s", herr);
	else
		rc = collect(&pr, p, sec);
	http_client_free(pr.http);
	if (rc < 0) {
		/* Keep no half-filled figures: a reader would take them as whole. */
		json_object_clear(sec);
		json_object_set_new(sec, "available", json_false());
		json_object_set_new(sec, "url", json_string(url));
		json_object_set_new(sec, "reason", json_string(pr.err));
		snprintf(err, errlen, "%s", pr.err);
		return 1;
	}
	json_object_set_new(sec, "available", json_true());
	return 0;
}
