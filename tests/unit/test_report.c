/* test_report.c - the report's time parsing and day buckets. */
#include <criterion/criterion.h>
#include <errno.h>
#include "report.h"

static double parse(const char *s)
{
	double t = -1;
	cr_assert_eq(report_parse_time(s, strlen(s), &t), 0, "%s", s);
	return t;
}

Test(report, parse_time_forms)
{
	cr_assert_eq(parse("1970-01-01T00:00:00Z"), 0);
	cr_assert_eq(parse("2026-11-27T01:40:52Z"), 1795743652);
	cr_assert_float_eq(parse("2026-11-27T01:40:52.250000Z"), 1795743652.25, 1e-6);
	cr_assert_eq(parse("2026-11-27T03:40:52+02:00"), 1795743652);
	cr_assert_eq(parse("2026-11-26T23:40:52-02:00"), 1795743652);
	/* a date is the end of that day */
	cr_assert_eq(parse("2026-11-27"), 1795824000);
	cr_assert_eq(parse("2024-02-29"), 1709251200);
}

Test(report, parse_time_rejects)
{
	static const char *bad[] = { "", "yesterday", "2026-13-01", "2026-11-27T25:00:00Z",
	                             "2026-11-27T01:40:52", "2026-11-27T01:40:52Zjunk",
	                             "2026/11/27", "2026-11-27T01:40Z" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		double t;
		cr_assert_eq(report_parse_time(bad[i], strlen(bad[i]), &t), -EINVAL, "%s", bad[i]);
	}
}

Test(report, day_buckets)
{
	struct report_period p = { "weekly", 7, 0, 0, 0 };
	p.end = 1795824000;              /* midnight */
	p.start = p.end - 7 * 86400.0;
	cr_assert_eq(report_day_count(&p), 7);
	cr_assert_eq(report_day_start(&p, 0), p.start);
	p.end += 3600;                   /* 01:00: the first and last days are partial */
	p.start += 3600;
	cr_assert_eq(report_day_count(&p), 8);
	cr_assert_eq(report_day_start(&p, 0), p.start - 3600);
	struct report_period m = { "monthly", 30, 0, 0, 0 };
	m.end = 1795824000 + 60;
	m.start = m.end - 30 * 86400.0;
	cr_assert_eq(report_day_count(&m), 31);
}
