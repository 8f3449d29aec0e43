/* clock.c - time sources. */
#include "clock.h"

#include <errno.h>
#include <stdio.h>
#include <time.h>

double clock_monotonic(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double clock_wall(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void clock_rfc3339(double wall_seconds, char *buf, unsigned long size)
{
	time_t secs = (time_t)wall_seconds;
	long usec = (long)((wall_seconds - (double)secs) * 1e6);
	if (usec < 0)
		usec = 0;
	if (usec > 999999)
		usec = 999999;
	struct tm tm;
	gmtime_r(&secs, &tm);
	snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900,
	         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, usec);
}

/* Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's
 * days_from_civil); month 1-12. */
static long long clock_days_from_civil(long long y, unsigned m, unsigned d)
{
	y -= m <= 2;
	long long era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (long long)doe - 719468;
}

/* The digits s[0..n) as a number, or -1 when one is not a digit. */
static int clock_digits(const char *s, int n)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

int clock_parse_rfc3339(const char *s, unsigned long len, double *out)
{
	static const double pow10[] = { 1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
	                                1e11, 1e12, 1e13, 1e14, 1e15 };
	if (len < 20 || s[4] != '-' || s[7] != '-' ||
	    (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || s[13] != ':' || s[16] != ':')
		return -EINVAL;
	int y = clock_digits(s, 4), mo = clock_digits(s + 5, 2), d = clock_digits(s + 8, 2);
	int h = clock_digits(s + 11, 2), mi = clock_digits(s + 14, 2), se = clock_digits(s + 17, 2);
	if (y < 0 || mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 || h > 23 || mi < 0 ||
	    mi > 59 || se < 0 || se > 60)
		return -EINVAL;
	double t = (double)((clock_days_from_civil(y, (unsigned)mo, (unsigned)d) * 24 + h) * 3600 +
	                    mi * 60 + se);
	unsigned long i = 19;
	if (s[i] == '.') {
		/* An exact integer over an exact power of ten, rounded once, as
		 * strtod rounds the decimal. */
		long long frac = 0;
		int n = 0;
		for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++)
			if (n < 15) {
				frac = frac * 10 + (s[i] - '0');
				n++;
			}
		if (n == 0)
			return -EINVAL;
		t += (double)frac / pow10[n];
	}
	if (i + 1 == len && (s[i] == 'Z' || s[i] == 'z')) {
		*out = t;
		return 0;
	}
	if (i + 6 == len && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':') {
		int oh = clock_digits(s + i + 1, 2), om = clock_digits(s + i + 4, 2);
		if (oh < 0 || om < 0)
			return -EINVAL;
		double off = oh * 3600.0 + om * 60.0;
		*out = s[i] == '+' ? t - off : t + off;
		return 0;
	}
	return -EINVAL;
}
