/* test_metrics.c - the Prometheus registry: the rendering is parsed here
 * against the text exposition format 0.0.4 (HELP/TYPE once per family and
 * before its samples, sample grammar, label escaping, no timestamps,
 * histogram invariants) and the values are checked against the recorded
 * traffic, including under concurrent updates. */
#include <criterion/criterion.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "backend.h"
#include "metrics.h"
#include "clock.h"

/* --- a small exposition-format parser ----------------------------------- */

#define MAX_LABELS 8

struct label {
	char *name;
	char *value;   /* unescaped */
};

struct sample {
	char *name;
	struct label labels[MAX_LABELS];
	int nlabels;
	double value;
	char *family;
};

struct family {
	char *name;
	char *type;
	bool has_help;
	bool has_samples;
};

struct exposition {
	struct sample *samples;
	size_t nsamples;
	struct family *families;
	size_t nfamilies;
};

static bool is_name_start(int c)
{
	return isalpha(c) || c == '_' || c == ':';
}

static bool is_name_char(int c)
{
	return isalnum(c) || c == '_' || c == ':';
}

static char *parse_name(const char **pp, bool metric)
{
	const char *p = *pp;
	if (!is_name_start((unsigned char)*p) || (!metric && *p == ':'))
		return NULL;
	while (is_name_char((unsigned char)*p) && (metric || *p != ':'))
		p++;
	char *s = strndup(*pp, (size_t)(p - *pp));
	*pp = p;
	return s;
}

/* A value: a float as Go's ParseFloat would take it, or +Inf/-Inf/NaN. */
static bool parse_value(const char *p, double *out)
{
	if (strcmp(p, "+Inf") == 0) {
		*out = INFINITY;
		return true;
	}
	if (strcmp(p, "-Inf") == 0) {
		*out = -INFINITY;
		return true;
	}
	if (strcmp(p, "NaN") == 0) {
		*out = NAN;
		return true;
	}
	for (const char *q = p; *q; q++)
		if (!strchr("0123456789.eE+-", *q))
			return false;
	char *end;
	*out = strtod(p, &end);
	return *p && *end == 0;
}

static struct family *family_find(struct exposition *x, const char *name)
{
	for (size_t i = 0; i < x->nfamilies; i++)
		if (strcmp(x->families[i].name, name) == 0)
			return &x->families[i];
	return NULL;
}

/* Does sample `name` belong to family f? */
static bool in_family(const struct family *f, const char *name)
{
	size_t n = strlen(f->name);
	if (strcmp(name, f->name) == 0)
		return strcmp(f->type, "histogram") != 0;
	if (strcmp(f->type, "histogram") != 0 || strncmp(name, f->name, n) != 0)
		return false;
	return !strcmp(name + n, "_bucket") || !strcmp(name + n, "_sum") ||
	       !strcmp(name + n, "_count");
}

static void parse_sample(struct exposition *x, struct family *current, const char *line, int lineno)
{
	struct sample s = { 0 };
	const char *p = line;

	s.name = parse_name(&p, true);
	cr_assert_not_null(s.name, "line %d: bad metric name: %s", lineno, line);
	if (*p == '{') {
		p++;
		while (*p != '}') {
			cr_assert_lt(s.nlabels, MAX_LABELS, "line %d: too many labels", lineno);
			struct label *l = &s.labels[s.nlabels++];
			l->name = parse_name(&p, false);
			cr_assert_not_null(l->name, "line %d: bad label name", lineno);
			cr_assert(p[0] == '=' && p[1] == '"', "line %d: expected =\" after label", lineno);
			p += 2;
			char *v = malloc(strlen(p) + 1), *w = v;
			while (*p != '"') {
				cr_assert(*p && *p != '\n', "line %d: unterminated label value", lineno);
				if (*p == '\\') {
					p++;
					cr_assert(*p == '\\' || *p == '"' || *p == 'n',
					          "line %d: bad escape \\%c", lineno, *p);
					*w++ = *p == 'n' ? '\n' : *p;
				} else {
					*w++ = *p;
				}
				p++;
			}
			*w = 0;
			l->value = v;
			p++;
			for (int i = 0; i < s.nlabels - 1; i++)
				cr_assert_str_neq(s.labels[i].name, l->name, "line %d: duplicate label", lineno);
			if (*p == ',')
				p++;
			else
				cr_assert_eq(*p, '}', "line %d: expected , or }", lineno);
		}
		p++;
	}
	cr_assert_eq(*p, ' ', "line %d: expected one space before the value: %s", lineno, line);
	p++;
	/* The value is the last field: a second field would be a timestamp. */
	cr_assert_null(strchr(p, ' '), "line %d: timestamp or trailing field: %s", lineno, line);
	cr_assert(parse_value(p, &s.value), "line %d: bad value '%s'", lineno, p);

	cr_assert_not_null(current, "line %d: sample before any # TYPE", lineno);
	cr_assert(in_family(current, s.name), "line %d: %s is not in the current family %s",
	          lineno, s.name, current->name);
	current->has_samples = true;
	s.family = current->name;
	x->samples = realloc(x->samples, (x->nsamples + 1) * sizeof(*x->samples));
	x->samples[x->nsamples++] = s;
}

static void exposition_free(struct exposition *x)
{
	for (size_t i = 0; i < x->nsamples; i++) {
		struct sample *s = &x->samples[i];
		free(s->name);
		for (int j = 0; j < s->nlabels; j++) {
			free(s->labels[j].name);
			free(s->labels[j].value);
		}
	}
	for (size_t i = 0; i < x->nfamilies; i++) {
		free(x->families[i].name);
		free(x->families[i].type);
	}
	free(x->samples);
	free(x->families);
	memset(x, 0, sizeof(*x));
}

/* Parse text into x, replacing what x held. */
static void parse_exposition(const char *text, struct exposition *x)
{
	exposition_free(x);
	size_t len = strlen(text);
	cr_assert_gt(len, 0);
	cr_assert_eq(text[len - 1], '\n', "output ends with a newline");

	char *copy = strdup(text), *save = NULL;
	struct family *current = NULL;
	char *pending_help = NULL;
	int lineno = 0;
	for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		lineno++;
		cr_assert_neq(line[0], 0);
		if (strncmp(line, "# HELP ", 7) == 0) {
			const char *p = line + 7;
			char *name = parse_name(&p, true);
			cr_assert_not_null(name, "line %d: HELP without a name", lineno);
			cr_assert_eq(*p, ' ', "line %d: HELP without text", lineno);
			cr_assert_null(family_find(x, name), "line %d: HELP for %s after its TYPE", lineno, name);
			cr_assert_null(pending_help, "line %d: two HELP lines in a row", lineno);
			pending_help = name;
			continue;
		}
		if (strncmp(line, "# TYPE ", 7) == 0) {
			const char *p = line + 7;
			char *name = parse_name(&p, true);
			cr_assert_not_null(name, "line %d: TYPE without a name", lineno);
			cr_assert_eq(*p, ' ');
			p++;
			cr_assert(!strcmp(p, "counter") || !strcmp(p, "gauge") || !strcmp(p, "histogram") ||
			          !strcmp(p, "summary") || !strcmp(p, "untyped"), "line %d: type %s", lineno, p);
			cr_assert_null(family_find(x, name), "line %d: second TYPE for %s", lineno, name);
			for (size_t i = 0; i < x->nsamples; i++)
				cr_assert_str_neq(x->samples[i].name, name, "line %d: TYPE after samples", lineno);
			cr_assert(pending_help && !strcmp(pending_help, name),
			          "line %d: %s has no HELP right before its TYPE", lineno, name);
			x->families = realloc(x->families, (x->nfamilies + 1) * sizeof(*x->families));
			x->families[x->nfamilies] = (struct family){ .name = name, .type = strdup(p), .has_help = true };
			current = &x->families[x->nfamilies++];
			free(pending_help);
			pending_help = NULL;
			continue;
		}
		cr_assert_neq(line[0], '#', "line %d: unexpected comment: %s", lineno, line);
		cr_assert_null(pending_help, "line %d: HELP not followed by TYPE", lineno);
		parse_sample(x, current, line, lineno);
	}
	cr_assert_null(pending_help, "dangling HELP at the end");
	free(copy);
}

static const char *label_of(const struct sample *s, const char *name)
{
	for (int i = 0; i < s->nlabels; i++)
		if (strcmp(s->labels[i].name, name) == 0)
			return s->labels[i].value;
	return NULL;
}

/* The samples named `name` whose labels include the given pairs (NULL-ended
 * name, value list). */
static size_t find_samples(const struct exposition *x, const struct sample **found, size_t max,
                           const char *name, va_list ap)
{
	const char *want[2 * MAX_LABELS];
	int nwant = 0;
	const char *k;
	while ((k = va_arg(ap, const char *)) != NULL) {
		want[nwant++] = k;
		want[nwant++] = va_arg(ap, const char *);
	}
	size_t n = 0;
	for (size_t i = 0; i < x->nsamples; i++) {
		const struct sample *s = &x->samples[i];
		if (strcmp(s->name, name) != 0)
			continue;
		bool ok = true;
		for (int j = 0; j < nwant && ok; j += 2) {
			const char *v = label_of(s, want[j]);
			ok = v && strcmp(v, want[j + 1]) == 0;
		}
		if (ok && n < max)
			found[n] = s;
		if (ok)
			n++;
	}
	return n;
}

static size_t count_samples(const struct exposition *x, const char *name, ...)
{
	const struct sample *found[1];
	va_list ap;
	va_start(ap, name);
	size_t n = find_samples(x, found, 1, name, ap);
	va_end(ap);
	return n;
}

/* The value of the single sample matching; fails the test otherwise. */
static double value_of(const struct exposition *x, const char *name, ...)
{
	const struct sample *found[1];
	va_list ap;
	va_start(ap, name);
	size_t n = find_samples(x, found, 1, name, ap);
	va_end(ap);
	cr_assert_eq(n, 1, "expected exactly one %s sample, got %zu", name, n);
	return found[0]->value;
}

static char *render(void)
{
	struct strbuf b = STRBUF_INIT;
	cr_assert_eq(metrics_render(&b), 0);
	return strbuf_detach(&b, NULL);
}

static void render_parse(struct exposition *x)
{
	char *text = render();
	parse_exposition(text, x);
	free(text);
}

/* --- the tests ------------------------------------------------------------ */

/* The parsed rendering of the current test; freed after each test. */
static struct exposition x;

static void free_parsed(void)
{
	exposition_free(&x);
}

TestSuite(metrics, .fini = free_parsed);

static const char *families_expected[] = {
	"omikuji_key_operations_total", "omikuji_key_operation_duration_seconds",
	"omikuji_key_cache_hits_total", "omikuji_key_cache_misses_total",
	"omikuji_key_cache_stale_hits_total", "omikuji_key_cache_size",
	"omikuji_key_backend_up", "omikuji_key_access_denied_total",
	"omikuji_key_backend_auth_failures_total", "omikuji_key_anomalies_total",
	"omikuji_keyfs_audit_write_errors_total", "omikuji_key_last_refresh_timestamp_seconds",
	"omikuji_keyfs_build_info", "omikuji_keyfs_start_time_seconds",
};

static void record_varied_traffic(void)
{
	metrics_backend_register("vault", true);
	metrics_backend_register("file", false);
	metrics_observe_op(metrics_backend_register("vault", true), KEY_OP_GET, true, 0.00002);
	metrics_observe_op(metrics_backend_register("vault", true), KEY_OP_GET, true, 0.35);
	metrics_observe_op(metrics_backend_register("vault", true), KEY_OP_GET, false, 12.0);
	metrics_observe_op(metrics_backend_register("vault", true), KEY_OP_STORE, true, 0.04);
	metrics_observe_op(metrics_backend_register("file", false), KEY_OP_LIST, true, 0.0003);
	metrics_cache_hit(metrics_backend_register("vault", true));
	metrics_cache_stale_hit(metrics_backend_register("vault", true));
	metrics_cache_miss(metrics_backend_register("vault", true));
	metrics_cache_size(metrics_backend_register("vault", true), 3);
	metrics_backend_up(metrics_backend_register("vault", true), false);
	metrics_backend_up(metrics_backend_register("file", false), true);
	metrics_auth_failure(metrics_backend_register("vault", true));
	metrics_access_denied(KEY_OP_REMOVE);
	metrics_anomaly("burst");
	metrics_audit_write_error();
	metrics_last_refresh("ethereum-mainnet", 1767225600.25);
}

Test(metrics, names)
{
	cr_expect_str_eq(key_op_name(KEY_OP_GET), "get");
	cr_expect_str_eq(key_op_name(KEY_OP_LIST), "list");
	metrics_init();
	struct metrics_backend *v = metrics_backend_register("vault", true);
	cr_assert_not_null(v);
	cr_expect_eq(metrics_backend_register("vault", false), v, "one series per instance name");
	cr_expect_neq(metrics_backend_register("dr-vault", true), v);
}

Test(metrics, grammar_and_families)
{
	metrics_init();
	record_varied_traffic();
	render_parse(&x);
	for (size_t i = 0; i < sizeof(families_expected) / sizeof(*families_expected); i++) {
		struct family *f = family_find(&x, families_expected[i]);
		cr_expect_not_null(f, "family %s missing", families_expected[i]);
		if (f)
			cr_expect(f->has_samples, "family %s has no samples", f->name);
	}
	cr_expect_str_eq(family_find(&x, "omikuji_key_operation_duration_seconds")->type, "histogram");
	cr_expect_str_eq(family_find(&x, "omikuji_key_cache_size")->type, "gauge");
	cr_expect_str_eq(family_find(&x, "omikuji_key_operations_total")->type, "counter");
	cr_expect_eq(value_of(&x, "omikuji_keyfs_build_info", "version", KEYFS_VERSION, NULL), 1);
	double start = value_of(&x, "omikuji_keyfs_start_time_seconds", NULL);
	cr_expect_gt(start, 1.5e9, "start time is a unix time");
}

Test(metrics, operation_series_with_zeros)
{
	static const char *ops[] = { "get", "store", "remove", "list", "address" };
	metrics_init();
	metrics_backend_register("file", false);
	metrics_backend_register("aws", true);
	metrics_observe_op(metrics_backend_register("aws", true), KEY_OP_GET, true, 0.1);
	metrics_observe_op(metrics_backend_register("aws", true), KEY_OP_GET, true, 0.2);
	metrics_observe_op(metrics_backend_register("aws", true), KEY_OP_REMOVE, false, 0.3);
	render_parse(&x);

	cr_expect_eq(count_samples(&x, "omikuji_key_operations_total", NULL), 20,
	             "5 ops x 2 statuses x 2 configured backends");
	for (int op = 0; op < 5; op++) {
		cr_expect_eq(value_of(&x, "omikuji_key_operations_total", "operation", ops[op],
		                      "backend", "file", "status", "success", NULL), 0);
		cr_expect_eq(value_of(&x, "omikuji_key_operations_total", "operation", ops[op],
		                      "backend", "file", "status", "failure", NULL), 0);
		cr_expect_eq(count_samples(&x, "omikuji_key_operation_duration_seconds_count",
		                           "operation", ops[op], "backend", "file", NULL), 1);
	}
	cr_expect_eq(value_of(&x, "omikuji_key_operations_total", "operation", "get",
	                      "backend", "aws", "status", "success", NULL), 2);
	cr_expect_eq(value_of(&x, "omikuji_key_operations_total", "operation", "remove",
	                      "backend", "aws", "status", "failure", NULL), 1);
	cr_expect_eq(value_of(&x, "omikuji_key_operations_total", "operation", "remove",
	                      "backend", "aws", "status", "success", NULL), 0);
	cr_expect_eq(count_samples(&x, "omikuji_key_operations_total", "backend", "vault", NULL), 0,
	             "unconfigured backends are not rendered");
}

Test(metrics, histogram_invariants)
{
	static const double obs[] = { 0.00003, 0.00005, 0.0007, 0.3, 3.0, 20.0, 0.00005, -1.0 };
	double sum = 0;
	const struct sample *buckets[32];

	metrics_init();
	metrics_backend_register("vault", true);
	for (size_t i = 0; i < sizeof(obs) / sizeof(*obs); i++) {
		metrics_observe_op(metrics_backend_register("vault", true), KEY_OP_GET, i % 2 == 0, obs[i]);
		sum += obs[i] > 0 ? obs[i] : 0;   /* a negative duration counts as 0 */
	}
	render_parse(&x);

	size_t n = 0;
	for (size_t i = 0; i < x.nsamples && n < 32; i++) {
		const struct sample *s = &x.samples[i];
		if (!strcmp(s->name, "omikuji_key_operation_duration_seconds_bucket") &&
		    !strcmp(label_of(s, "operation"), "get") && !strcmp(label_of(s, "backend"), "vault"))
			buckets[n++] = s;
	}
	cr_assert_eq(n, 18, "17 bounds and +Inf");
	double prev_le = -INFINITY, prev_count = 0;
	for (size_t i = 0; i < n; i++) {
		double le;
		cr_assert(parse_value(label_of(buckets[i], "le"), &le));
		cr_expect_gt(le, prev_le, "bounds ascend");
		cr_expect_geq(buckets[i]->value, prev_count, "cumulative buckets never decrease");
		/* Each bucket counts the observations <= le (clamped at 0). */
		double expect = 0;
		for (size_t j = 0; j < sizeof(obs) / sizeof(*obs); j++)
			if ((obs[j] > 0 ? obs[j] : 0) <= le)
				expect++;
		cr_expect_eq(buckets[i]->value, expect, "bucket le=%s", label_of(buckets[i], "le"));
		prev_le = le;
		prev_count = buckets[i]->value;
	}
	cr_expect_str_eq(label_of(buckets[n - 1], "le"), "+Inf");
	double count = value_of(&x, "omikuji_key_operation_duration_seconds_count",
	                        "operation", "get", "backend", "vault", NULL);
	cr_expect_eq(count, sizeof(obs) / sizeof(*obs));
	cr_expect_eq(buckets[n - 1]->value, count, "+Inf bucket == _count");
	double got_sum = value_of(&x, "omikuji_key_operation_duration_seconds_sum",
	                          "operation", "get", "backend", "vault", NULL);
	cr_expect(fabs(got_sum - sum) < 1e-8, "_sum %.12f vs %.12f", got_sum, sum);
	cr_expect_eq(value_of(&x, "omikuji_key_operation_duration_seconds_count",
	                      "operation", "store", "backend", "vault", NULL), 0);
}

Test(metrics, label_escaping)
{
	const char *weird = "we\"ird\\net\nwork";
	const char *bad_utf8 = "caf\xc3\xa9-\xff";
	metrics_init();
	metrics_last_refresh(weird, 1767225600.5);
	metrics_last_refresh("plain", 42);
	metrics_last_refresh(bad_utf8, 7);
	char *text = render();
	cr_expect_not_null(strstr(text, "network=\"we\\\"ird\\\\net\\nwork\""), "escaped in the text");
	parse_exposition(text, &x);
	free(text);
	cr_expect_eq(value_of(&x, "omikuji_key_last_refresh_timestamp_seconds",
	                      "network", weird, NULL), 1767225600.5, "round-trips through escaping");
	cr_expect_eq(value_of(&x, "omikuji_key_last_refresh_timestamp_seconds",
	                      "network", "plain", NULL), 42);
	cr_expect_eq(value_of(&x, "omikuji_key_last_refresh_timestamp_seconds",
	                      "network", "caf\xc3\xa9-\xef\xbf\xbd", NULL), 7,
	             "valid UTF-8 kept, an invalid byte replaced");
}

Test(metrics, refresh_table_many_networks)
{
	char net[32];
	metrics_init();
	for (int round = 0; round < 2; round++)
		for (int i = 0; i < 1000; i++) {
			snprintf(net, sizeof(net), "network-%d", i);
			metrics_last_refresh(net, 1000000.0 * round + i);
		}
	render_parse(&x);
	cr_expect_eq(count_samples(&x, "omikuji_key_last_refresh_timestamp_seconds", NULL), 1000,
	             "one series per network, updates replace");
	for (int i = 0; i < 1000; i += 97) {
		snprintf(net, sizeof(net), "network-%d", i);
		cr_expect_eq(value_of(&x, "omikuji_key_last_refresh_timestamp_seconds",
		                      "network", net, NULL), 1000000.0 + i);
	}
	metrics_init();
	render_parse(&x);
	cr_expect_eq(count_samples(&x, "omikuji_key_last_refresh_timestamp_seconds", NULL), 0,
	             "init resets the table");
}

Test(metrics, cache_series_for_remote_backends)
{
	metrics_init();
	metrics_backend_register("file", false);
	metrics_backend_register("vault", true);
	for (int i = 0; i < 5; i++)
		metrics_cache_hit(metrics_backend_register("vault", true));
	metrics_cache_stale_hit(metrics_backend_register("vault", true));
	metrics_cache_miss(metrics_backend_register("vault", true));
	metrics_cache_miss(metrics_backend_register("vault", true));
	metrics_cache_size(metrics_backend_register("vault", true), 17);
	render_parse(&x);
	cr_expect_eq(value_of(&x, "omikuji_key_cache_hits_total", "backend", "vault", NULL), 6,
	             "a stale hit is also a hit");
	cr_expect_eq(value_of(&x, "omikuji_key_cache_stale_hits_total", "backend", "vault", NULL), 1);
	cr_expect_eq(value_of(&x, "omikuji_key_cache_misses_total", "backend", "vault", NULL), 2);
	cr_expect_eq(value_of(&x, "omikuji_key_cache_size", "backend", "vault", NULL), 17);
	cr_expect_eq(count_samples(&x, "omikuji_key_cache_hits_total", "backend", "file", NULL), 0,
	             "no cache series for a backend without a cache");
	cr_expect_eq(count_samples(&x, "omikuji_key_cache_size", NULL), 1);
}

Test(metrics, backend_up_only_once_set)
{
	metrics_init();
	metrics_backend_register("vault", true);
	metrics_backend_register("file", false);
	render_parse(&x);
	cr_expect_eq(count_samples(&x, "omikuji_key_backend_up", NULL), 0,
	             "no guess before the first health check");
	metrics_backend_up(metrics_backend_register("vault", true), false);
	render_parse(&x);
	cr_expect_eq(value_of(&x, "omikuji_key_backend_up", "backend", "vault", NULL), 0);
	cr_expect_eq(count_samples(&x, "omikuji_key_backend_up", NULL), 1);
	metrics_backend_up(metrics_backend_register("vault", true), true);
	metrics_backend_up(metrics_backend_register("file", false), true);
	render_parse(&x);
	cr_expect_eq(value_of(&x, "omikuji_key_backend_up", "backend", "vault", NULL), 1);
	cr_expect_eq(value_of(&x, "omikuji_key_backend_up", "backend", "file", NULL), 1);
}

Test(metrics, backend_up_is_0_while_a_check_is_past_its_deadline)
{
	metrics_init();
	struct metrics_backend *v = metrics_backend_register("vault", true);
	metrics_backend_up(v, true);
	metrics_backend_check(v, clock_monotonic() + 60);   /* running, within its deadline */
	render_parse(&x);
	cr_expect_eq(value_of(&x, "omikuji_key_backend_up", "backend", "vault", NULL), 1);
	metrics_backend_check(v, clock_monotonic() - 0.01);   /* still running, past it */
	render_parse(&x);
	cr_expect_eq(value_of(&x, "omikuji_key_backend_up", "backend", "vault", NULL), 0,
	             "a stalled check is down");
	metrics_backend_check(v, 0);                         /* it finished */
	render_parse(&x);
	cr_expect_eq(value_of(&x, "omikuji_key_backend_up", "backend", "vault", NULL), 1);
	/* hung from the start: the first check never ended, so nothing set up/down */
	struct metrics_backend *f = metrics_backend_register("file", false);
	metrics_backend_check(f, clock_monotonic() + 60);
	render_parse(&x);
	cr_expect_eq(count_samples(&x, "omikuji_key_backend_up", "backend", "file", NULL), 0);
	metrics_backend_check(f, clock_monotonic() - 0.01);
	render_parse(&x);
	cr_expect_eq(value_of(&x, "omikuji_key_backend_up", "backend", "file", NULL), 0);
}

Test(metrics, security_counters)
{
	static const char *kinds[] = { "burst", "off_hours", "auth_failures", "rate_limited" };
	metrics_init();
	metrics_backend_register("vault", true);
	metrics_access_denied(KEY_OP_GET);
	metrics_access_denied(KEY_OP_GET);
	metrics_access_denied(KEY_OP_STORE);
	metrics_auth_failure(metrics_backend_register("vault", true));
	metrics_anomaly("off_hours");
	metrics_anomaly("off_hours");
	metrics_anomaly("no-such-kind");
	metrics_audit_write_error();
	render_parse(&x);
	cr_expect_eq(value_of(&x, "omikuji_key_access_denied_total", "operation", "get", NULL), 2);
	cr_expect_eq(value_of(&x, "omikuji_key_access_denied_total", "operation", "store", NULL), 1);
	cr_expect_eq(value_of(&x, "omikuji_key_access_denied_total", "operation", "list", NULL), 0);
	cr_expect_eq(value_of(&x, "omikuji_key_access_denied_total", "operation", "address", NULL), 0);
	cr_expect_eq(count_samples(&x, "omikuji_key_access_denied_total", NULL), 5);
	cr_expect_eq(value_of(&x, "omikuji_key_backend_auth_failures_total", "backend", "vault", NULL), 1);
	cr_expect_eq(count_samples(&x, "omikuji_key_anomalies_total", NULL), 4, "unknown kinds dropped");
	for (int i = 0; i < 4; i++)
		cr_expect_eq(value_of(&x, "omikuji_key_anomalies_total", "kind", kinds[i], NULL),
		             i == 1 ? 2 : 0, "kind %s", kinds[i]);
	cr_expect_eq(value_of(&x, "omikuji_keyfs_audit_write_errors_total", NULL), 1);
}

Test(metrics, init_resets)
{
	metrics_init();
	record_varied_traffic();
	metrics_init();
	metrics_backend_register("vault", true);
	render_parse(&x);
	for (size_t i = 0; i < x.nsamples; i++) {
		const struct sample *s = &x.samples[i];
		if (!strcmp(s->name, "omikuji_keyfs_build_info") ||
		    !strcmp(s->name, "omikuji_keyfs_start_time_seconds"))
			continue;
		cr_expect_eq(s->value, 0, "%s not reset", s->name);
	}
	cr_expect_eq(count_samples(&x, "omikuji_key_operations_total", "backend", "file", NULL), 0,
	             "configuration reset too");
}

Test(metrics, capped_buffer_reports_error)
{
	struct strbuf b = STRBUF_INIT;
	metrics_init();
	record_varied_traffic();
	b.limit = 100;
	cr_expect_lt(metrics_render(&b), 0, "a truncated rendering is an error, not a short file");
	strbuf_reset(&b);
}

#define THREADS 8
#define PER_THREAD 100000

static void *observe_thread(void *arg)
{
	long id = (long)arg;
	for (int i = 0; i < PER_THREAD; i++) {
		metrics_observe_op(metrics_backend_register("vault", true), KEY_OP_GET, (i + id) % 4 != 0, 0.001);
		metrics_cache_hit(metrics_backend_register("vault", true));
		if (i % 1000 == 0) {
			char net[32];
			snprintf(net, sizeof(net), "net-%ld-%d", id, i / 1000 % 10);
			metrics_last_refresh(net, i);
		}
	}
	return NULL;
}

static atomic_bool render_stop;
static atomic_int render_errors;

/* Renders while the counters move (criterion asserts stay on the test thread). */
static void *render_thread(void *arg)
{
	(void)arg;
	while (!atomic_load(&render_stop)) {
		struct strbuf b = STRBUF_INIT;
		if (metrics_render(&b) != 0)
			atomic_fetch_add(&render_errors, 1);
		strbuf_reset(&b);
	}
	return NULL;
}

Test(metrics, concurrent_updates_are_exact)
{
	pthread_t th[THREADS], renderer;

	metrics_init();
	metrics_backend_register("vault", true);
	cr_assert_eq(pthread_create(&renderer, NULL, render_thread, NULL), 0);
	for (long i = 0; i < THREADS; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, observe_thread, (void *)i), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	atomic_store(&render_stop, true);
	pthread_join(renderer, NULL);
	cr_expect_eq(atomic_load(&render_errors), 0);

	render_parse(&x);
	double total = (double)THREADS * PER_THREAD;
	double failures = 0;
	for (long id = 0; id < THREADS; id++)
		for (int i = 0; i < PER_THREAD; i++)
			failures += (i + id) % 4 == 0;
	cr_expect_eq(value_of(&x, "omikuji_key_operations_total", "operation", "get",
	                      "backend", "vault", "status", "failure", NULL), failures);
	cr_expect_eq(value_of(&x, "omikuji_key_operations_total", "operation", "get",
	                      "backend", "vault", "status", "success", NULL), total - failures);
	cr_expect_eq(value_of(&x, "omikuji_key_operation_duration_seconds_count",
	                      "operation", "get", "backend", "vault", NULL), total);
	cr_expect_eq(value_of(&x, "omikuji_key_operation_duration_seconds_bucket",
	                      "operation", "get", "backend", "vault", "le", "0.001", NULL), total);
	cr_expect_eq(value_of(&x, "omikuji_key_operation_duration_seconds_bucket",
	                      "operation", "get", "backend", "vault", "le", "0.0005", NULL), 0);
	double sum = value_of(&x, "omikuji_key_operation_duration_seconds_sum",
	                      "operation", "get", "backend", "vault", NULL);
	cr_expect(fabs(sum - total * 0.001) < 1e-6, "_sum %.9f", sum);
	cr_expect_eq(value_of(&x, "omikuji_key_cache_hits_total", "backend", "vault", NULL), total);
	cr_expect_eq(count_samples(&x, "omikuji_key_last_refresh_timestamp_seconds", NULL), THREADS * 10);
}

Test(metrics, refresh_timestamps_keep_microseconds)
{
	metrics_init();
	metrics_last_refresh("a", 1795746961.354594);
	metrics_last_refresh("b", 0.5);
	metrics_last_refresh("c", 12.0000004);     /* rounds to the microsecond */
	metrics_last_refresh("d", 1700000000.0);
	char *text = render();
	cr_expect(strstr(text, "omikuji_key_last_refresh_timestamp_seconds{network=\"a\"} 1795746961.354594\n"));
	cr_expect(strstr(text, "omikuji_key_last_refresh_timestamp_seconds{network=\"b\"} 0.500000\n"));
	cr_expect(strstr(text, "omikuji_key_last_refresh_timestamp_seconds{network=\"c\"} 12.000000\n"));
	cr_expect(strstr(text, "omikuji_key_last_refresh_timestamp_seconds{network=\"d\"} 1700000000.000000\n"));
	free(text);
}

Test(metrics, instances_by_name_with_in_flight_series)
{
	metrics_init();
	struct metrics_backend *file = metrics_backend_register("file", false);
	struct metrics_backend *dr = metrics_backend_register("dr-vault", true);
	metrics_in_flight_add(dr, 1);
	metrics_in_flight_add(dr, 1);
	metrics_in_flight_add(dr, -1);
	metrics_in_flight_rejected(dr);
	metrics_in_flight_rejected(dr);
	metrics_observe_op(file, KEY_OP_GET, true, 0.001);
	char *t = render();
	cr_expect(strstr(t, "omikuji_key_backend_calls_in_flight{backend=\"dr-vault\"} 1\n"), "%s", t);
	cr_expect(strstr(t, "omikuji_key_backend_calls_rejected_total{backend=\"dr-vault\"} 2\n"));
	cr_expect(strstr(t, "omikuji_key_backend_calls_rejected_total{backend=\"file\"} 0\n"));
	cr_expect(strstr(t, "omikuji_key_cache_hits_total{backend=\"dr-vault\"} 0\n"));
	cr_expect_null(strstr(t, "omikuji_key_cache_hits_total{backend=\"file\"}"),
	               "no cache series for a local instance");
	cr_expect(strstr(t, "omikuji_key_operations_total{operation=\"get\",backend=\"file\","
	                    "status=\"success\"} 1\n"));
	/* Registration order is rendering order: file before dr-vault. */
	cr_expect_lt(strstr(t, "backend=\"file\""), strstr(t, "backend=\"dr-vault\""));
	free(t);
}

Test(metrics, aws_api_calls_family)
{
	struct backend_api_calls calls[] = {
		{ "GetSecretValue", 12 }, { "PutSecretValue", 0 }, { "ListSecrets", 3 },
	};
	struct strbuf b = STRBUF_INIT;
	metrics_init();
	cr_assert_eq(metrics_render(&b), 0);
	cr_assert_eq(metrics_render_api_calls(&b, "aws", calls, 3, true), 0);
	cr_assert_eq(metrics_render_api_calls(&b, "aws", calls, 0, true), 0, "no actions: nothing");
	cr_assert_eq(metrics_render_api_calls(&b, "aws-2", calls, 1, false), 0, "a second instance: no header");
	char *text = strbuf_detach(&b, NULL);
	parse_exposition(text, &x);
	free(text);
	struct family *f = family_find(&x, "omikuji_keyfs_aws_api_calls_total");
	cr_assert_not_null(f);
	cr_expect_str_eq(f->type, "counter");
	cr_expect(f->has_help);
	cr_expect_eq(count_samples(&x, "omikuji_keyfs_aws_api_calls_total", NULL), 4);
	cr_expect_eq(value_of(&x, "omikuji_keyfs_aws_api_calls_total", "backend", "aws",
	                      "action", "GetSecretValue", NULL), 12);
	cr_expect_eq(value_of(&x, "omikuji_keyfs_aws_api_calls_total", "backend", "aws",
	                      "action", "PutSecretValue", NULL), 0, "zeros are rendered");
	cr_expect_eq(value_of(&x, "omikuji_keyfs_aws_api_calls_total", "backend", "aws",
	                      "action", "ListSecrets", NULL), 3);
}
