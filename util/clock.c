/* clock.c - time sources. */
#include "clock.h"

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
