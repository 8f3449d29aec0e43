/* report.c - the `report` command: options, the period, the inputs, and the
 * order of work (audit log, then Prometheus, then rendering).
 *
 * Exit status: 0 when the report was written (a broken audit chain or an
 * unreachable Prometheus is in the report, and named in one warning line on
 * stderr), 1 when it could not be made (an audit file cannot be read, the
 * output cannot be written), 2 for a usage or configuration error.
 */
#include "report.h"
#include "anomaly.h"
#include "clock.h"
#include "audit.h"
#include "config.h"
#include "secret.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define EXIT_FAIL 1
#define EXIT_USAGE 2
#define ROTATIONS_MAX 1000

static const char report_usage[] =
"Usage: omikuji-keyfs report weekly|monthly [--audit-log FILE]... [--until DATE]\n"
"                            [--prometheus URL] [--format text|json|html] [-o FILE]\n"
"                            [-c CONFIG]\n"
"\n"
"The monitoring guide's security report over the last 7 (weekly) or 30 (monthly)\n"
"days up to --until, with the period before it for trends.\n"
"\n"
"  --audit-log FILE   an audit log to read (repeat, oldest first; gzip is read\n"
"                     as well); default: keyfs.audit_log of the configuration\n"
"                     and its rotations (FILE.N, FILE.N.gz), oldest first\n"
"  --until DATE       end of the period: RFC 3339 (2026-11-30T12:00:00Z) or a\n"
"                     date (2026-11-30 = up to the end of that day, UTC);\n"
"                     default now\n"
"  --prometheus URL   Prometheus server for availability, latency, cache, alerts\n"
"                     and AWS API calls (e.g. http://127.0.0.1:9090)\n"
"  --format FORMAT    text (default), json (schema 1, see README) or html\n"
"  -o, --output FILE  write the report to FILE (mode 0600) instead of stdout\n"
"  --key FILE         HMAC key of a keyed audit chain (as audit verify --key);\n"
"                     default with the configured log: keyfs.audit_key_file\n"
"  -c, --config PATH  configuration (audit log path, business hours)\n";

static int report_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int report_fail(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("omikuji-keyfs: report: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	return code;
}

static bool exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

/* The configured log and its logrotate rotations, oldest first: FILE.N or
 * FILE.N.gz for N = 1, 2, ... while one exists. */
static int add_with_rotations(struct strlist *paths, const char *base)
{
	struct strlist found = STRLIST_INIT;
	char buf[4096];
	int rc = 0;
	for (int n = 1; n <= ROTATIONS_MAX; n++) {
		snprintf(buf, sizeof(buf), "%s.%d", base, n);
		if (!exists(buf)) {
			snprintf(buf, sizeof(buf), "%s.%d.gz", base, n);
			if (!exists(buf))
				break;
		}
		if ((rc = strlist_add(&found, buf)) < 0)
			goto out;
	}
	for (size_t i = found.n; i > 0 && rc == 0; i--)
		rc = strlist_add(paths, found.items[i - 1]);
	if (rc == 0)
		rc = strlist_add(paths, base);
out:
	strlist_clear(&found);
	return rc;
}

static void hours_text(const struct config_business_hours *bh, char *buf, size_t size)
{
	static const char *const days[7] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	size_t n = (size_t)snprintf(buf, size, "%02d:%02d-%02d:%02d", bh->start_minute / 60,
	                            bh->start_minute % 60, bh->end_minute / 60, bh->end_minute % 60);
	for (int d = 0; d < 7 && n < size; d++)
		if (bh->days_mask & (1u << d))
			n += (size_t)snprintf(buf + n, size - n, "%s%s", n > 11 ? "," : " ", days[d]);
	if (n < size)
		snprintf(buf + n, size - n, " %s", bh->timezone ? bh->timezone : "UTC");
}

static void finding(json_t *list, const char *kind, const char *severity, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void finding(json_t *list, const char *kind, const char *severity, const char *fmt, ...)
{
	char text[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	json_array_append_new(list, json_pack("{s:s,s:s,s:s}", "kind", kind, "severity", severity,
	                                      "text", text));
}

static long long num(json_t *root, const char *a, const char *b, const char *c)
{
	json_t *v = json_object_get(json_object_get(json_object_get(root, a), b), c);
	return (long long)json_number_value(v);
}

/* What needs a look, against the thresholds of the monitoring guide's
 * tables (availability < 99%, cache hit rate < 80%, retrieval latency > 1 s,
 * any unauthorised access, key access > 2x normal, any unplanned key
 * creation) and the audit chain. */
static void findings(json_t *doc)
{
	json_t *list = json_array();
	json_object_set_new(doc, "findings", list);
	json_t *chain = json_object_get(doc, "chain");
	if (json_integer_value(json_object_get(chain, "lines")) == 0)
		finding(list, "audit_empty", "warning", "No audit lines in the input: check the "
		        "audit log path and that the mount runs with its audit log");
	else if (!json_is_true(json_object_get(chain, "verified")))
		finding(list, "audit_chain", "critical", "The audit chain is not intact (%s): the log "
		        "may have been edited; compare with the last checkpoint",
		        json_string_value(json_object_get(chain, "reason")));
	else if (!json_is_true(json_object_get(chain, "starts_at_seq_1")))
		finding(list, "audit_start", "warning", "The input starts at seq %lld: lines 1..%lld "
		        "are not in it (older rotations deleted, or cut); keep the rotations or "
		        "compare with a checkpoint",
		        (long long)json_integer_value(json_object_get(chain, "first_seq")),
		        (long long)json_integer_value(json_object_get(chain, "first_seq")) - 1);
	long long denied = num(doc, "summary", "denials", "current");
	if (denied)
		finding(list, "denials", "warning", "%lld denied attempts: review the denials by caller",
		        denied);
	long long ops = num(doc, "summary", "operations", "current");
	long long before = num(doc, "summary", "operations", "previous");
	if (before > 0 && ops > 2 * before)
		finding(list, "access_frequency", "warning", "Key operations rose from %lld to %lld "
		        "(more than twice the previous period)", before, ops);
	long long created = num(doc, "lifecycle", "created", "total");
	if (created)
		finding(list, "key_created", "info", "%lld keys created: confirm each was planned",
		        created);
	long long new_callers = json_integer_value(json_object_get(json_object_get(doc, "summary"),
	                                                           "new_callers"));
	if (new_callers)
		finding(list, "new_callers", "info", "%lld callers seen for the first time", new_callers);
	long long off = num(doc, "summary", "off_hours", "current");
	if (off)
		finding(list, "off_hours", "info", "%lld accesses outside business hours", off);
	json_t *prom = json_object_get(doc, "prometheus");
	size_t i;
	json_t *r;
	json_array_foreach(json_object_get(prom, "availability"), i, r) {
		json_t *up = json_object_get(r, "up_ratio");
		if (json_is_number(up) && json_number_value(up) < 0.99)
			finding(list, "availability", "warning", "Backend %s was up %.2f%% of the period "
			        "(below 99%%)", json_string_value(json_object_get(r, "backend")),
			        json_number_value(up) * 100);
	}
	json_array_foreach(json_object_get(prom, "cache"), i, r) {
		json_t *hr = json_object_get(r, "hit_ratio");
		if (json_is_number(hr) && json_number_value(hr) < 0.8)
			finding(list, "cache_hit_rate", "warning", "Cache hit rate of %s is %.1f%% (below "
			        "80%%): consider a longer cache_ttl_seconds",
			        json_string_value(json_object_get(r, "backend")), json_number_value(hr) * 100);
	}
	json_array_foreach(json_object_get(prom, "latency_seconds"), i, r) {
		json_t *p95 = json_object_get(r, "p95");
		const char *op = json_string_value(json_object_get(r, "operation"));
		if (op && strcmp(op, "get") == 0 && json_is_number(p95) && json_number_value(p95) > 1.0)
			finding(list, "latency", "warning", "Key retrieval p95 on %s is %.2f s (above 1 s)",
			        json_string_value(json_object_get(r, "backend")), json_number_value(p95));
	}
}

static int write_output(json_t *doc, const char *format, const char *out_path)
{
	FILE *out = stdout;
	char *tmp = NULL;
	int rc;
	if (out_path) {
		size_t n = strlen(out_path) + 16;
		tmp = malloc(n);
		if (!tmp)
			return report_fail(EXIT_FAIL, "out of memory");
		snprintf(tmp, n, "%s.tmp%ld", out_path, (long)getpid());
		int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0 || !(out = fdopen(fd, "w"))) {
			rc = report_fail(EXIT_FAIL, "cannot write %s: %s", out_path, strerror(errno));
			if (fd >= 0)
				close(fd);
			free(tmp);
			return rc;
		}
	}
	if (strcmp(format, "json") == 0)
		rc = report_render_json(doc, out);
	else if (strcmp(format, "html") == 0)
		rc = report_render_html(doc, out);
	else
		rc = report_render_text(doc, out);
	if (fflush(out) != 0 && rc == 0)
		rc = -errno;
	if (out_path) {
		if (fclose(out) != 0 && rc == 0)
			rc = -errno;
		if (rc == 0 && rename(tmp, out_path) < 0)
			rc = -errno;
		if (rc < 0)
			unlink(tmp);
		free(tmp);
	}
	if (rc < 0)
		return report_fail(EXIT_FAIL, "cannot write %s: %s", out_path ? out_path : "the report",
		                   strerror(-rc));
	return 0;
}

int report_main(int argc, char **argv)
{
	enum { OPT_AUDIT = 256, OPT_UNTIL, OPT_PROM, OPT_FORMAT, OPT_INSECURE, OPT_KEY };
	static const struct option options[] = {
		{ "audit-log", required_argument, NULL, OPT_AUDIT },
		{ "until", required_argument, NULL, OPT_UNTIL },
		{ "prometheus", required_argument, NULL, OPT_PROM },
		{ "format", required_argument, NULL, OPT_FORMAT },
		{ "output", required_argument, NULL, 'o' },
		{ "config", required_argument, NULL, 'c' },
		{ "insecure-config-permissions", no_argument, NULL, OPT_INSECURE },
		{ "key", required_argument, NULL, OPT_KEY },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct strlist paths = STRLIST_INIT;
	const char *until = NULL, *prom = NULL, *format = "text", *out_path = NULL;
	const char *config_path = NULL, *key_file = NULL;
	struct secret *key = NULL;
	bool insecure = false;
	int c, rc;

	/* main() makes jansson wipe every block it frees, for JSON that may
	 * hold a key; the report parses audit lines and Prometheus answers,
	 * which never do, and the wiping costs ~5% of its time per line. */
	json_set_alloc_funcs(malloc, free);
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "o:c:h", options, NULL)) != -1) {
		switch (c) {
		case OPT_AUDIT:
			if (strlist_add(&paths, optarg) < 0)
				return report_fail(EXIT_FAIL, "out of memory");
			break;
		case OPT_UNTIL: until = optarg; break;
		case OPT_PROM: prom = optarg; break;
		case OPT_FORMAT: format = optarg; break;
		case 'o': out_path = optarg; break;
		case 'c': config_path = optarg; break;
		case OPT_INSECURE: insecure = true; break;
		case OPT_KEY: key_file = optarg; break;
		case 'h':
			fputs(report_usage, stdout);
			strlist_clear(&paths);
			return 0;
		default:
			strlist_clear(&paths);
			if (optopt)
				return report_fail(EXIT_USAGE, "option -%c is unknown or needs a value "
				                   "(see report --help)", optopt);
			return report_fail(EXIT_USAGE, "unknown option '%s' (see report --help)",
			                   argv[optind - 1]);
		}
	}
	struct report_period p = { 0 };
	if (optind + 1 != argc || (strcmp(argv[optind], "weekly") != 0 &&
	                           strcmp(argv[optind], "monthly") != 0)) {
		strlist_clear(&paths);
		return report_fail(EXIT_USAGE, "expected weekly or monthly (see report --help)");
	}
	p.kind = argv[optind];
	p.days = strcmp(p.kind, "weekly") == 0 ? 7 : 30;
	if (strcmp(format, "text") != 0 && strcmp(format, "json") != 0 &&
	    strcmp(format, "html") != 0) {
		strlist_clear(&paths);
		return report_fail(EXIT_USAGE, "--format must be text, json or html, not '%s'", format);
	}
	p.end = clock_wall();
	if (until && report_parse_time(until, strlen(until), &p.end) < 0) {
		strlist_clear(&paths);
		return report_fail(EXIT_USAGE, "--until '%s': expected an RFC 3339 time "
		                   "(2026-11-30T12:00:00Z) or a date (2026-11-30)", until);
	}
	p.start = p.end - p.days * 86400.0;
	p.prev_start = p.start - p.days * 86400.0;

	/* The configuration: the audit log's path and the business hours. */
	struct config cfg;
	char err[1024] = "";
	char *cpath = config_find(config_path);
	rc = config_load(cpath, insecure ? CONFIG_ALLOW_INSECURE_PERMS : 0, &cfg, err, sizeof(err));
	free(cpath);
	if (rc < 0) {
		strlist_clear(&paths);
		return report_fail(EXIT_USAGE, "%s", err);
	}
	struct anomaly *hours = NULL;
	char htext[128] = "";
	if (cfg.keyfs.business_hours.set) {
		if (anomaly_new(&cfg.keyfs, NULL, &hours, err, sizeof(err)) < 0) {
			rc = report_fail(EXIT_USAGE, "%s", err);
			goto out;
		}
		hours_text(&cfg.keyfs.business_hours, htext, sizeof(htext));
	}
	if (paths.n == 0) {
		if (add_with_rotations(&paths, cfg.keyfs.audit_log) < 0) {
			rc = report_fail(EXIT_FAIL, "out of memory");
			goto out;
		}
		if (!key_file)
			key_file = cfg.keyfs.audit_key_file;
	}
	if (key_file && audit_key_load(key_file, &key, err, sizeof(err)) < 0) {
		rc = report_fail(EXIT_USAGE, "%s", err);
		goto out;
	}

	json_t *doc = json_object();
	char t1[32], t2[32], t3[32], now[32];
	report_format_time(p.start, t1, sizeof(t1));
	report_format_time(p.end, t2, sizeof(t2));
	report_format_time(p.prev_start, t3, sizeof(t3));
	report_format_time(clock_wall(), now, sizeof(now));
	json_object_set_new(doc, "schema", json_integer(1));
	json_object_set_new(doc, "report", json_string(p.kind));
	json_object_set_new(doc, "generated_at", json_string(now));
	json_object_set_new(doc, "generator", json_string("omikuji-keyfs " KEYFS_VERSION));
	json_object_set_new(doc, "period", json_pack("{s:s,s:s,s:i}", "start", t1, "end", t2,
	                                             "days", p.days));
	json_object_set_new(doc, "previous_period", json_pack("{s:s,s:s}", "start", t3,
	                                                      "end", t1));
	struct report_audit_opts ao = {
		.paths = &paths, .key = key, .hours = hours, .hours_text = hours ? htext : NULL,
		.progress = isatty(STDERR_FILENO),
	};
	rc = report_audit(&p, &ao, doc, err, sizeof(err));
	if (rc < 0) {
		rc = report_fail(EXIT_FAIL, "%s", err);
		json_decref(doc);
		goto out;
	}
	json_t *chain = json_object_get(doc, "chain");
	if (!json_is_true(json_object_get(chain, "verified"))) {
		if (json_integer_value(json_object_get(chain, "lines")) == 0)
			fprintf(stderr, "omikuji-keyfs: report: warning: no audit lines in the input\n");
		else
			fprintf(stderr, "omikuji-keyfs: report: warning: the audit chain is broken "
			        "at %s line %lld: %s\n",
			        json_string_value(json_object_get(chain, "first_bad_file")),
			        (long long)json_integer_value(json_object_get(chain, "first_bad_line")),
			        json_string_value(json_object_get(chain, "reason")));
	}
	if (report_prometheus(&p, prom, doc, err, sizeof(err)) > 0)
		fprintf(stderr, "omikuji-keyfs: report: warning: %s\n", err);
	findings(doc);
	rc = write_output(doc, format, out_path);
	json_decref(doc);
out:
	secret_free(key);
	anomaly_free(hours);
	config_free(&cfg);
	strlist_clear(&paths);
	return rc;
}
