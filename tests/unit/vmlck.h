/* vmlck.h - this process's locked memory, for the unit tests that check
 * what is locked (memlock, http). */
#ifndef OMIKUJI_TEST_VMLCK_H
#define OMIKUJI_TEST_VMLCK_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

/* VmLck of this process, in kB (-1 when unreadable). */
static inline long vmlck_kb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kb = -1;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmLck: %ld", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return kb;
}

/* Does mlock() lock anything here?  Not under the sanitizers (a no-op
 * there), nor with too small an RLIMIT_MEMLOCK for 1 MiB. */
static inline int vmlck_works(void)
{
	void *probe = malloc(1 << 20);
	if (!probe)
		return 0;
	long base = vmlck_kb();
	int locked = mlock(probe, 1 << 20) == 0 && vmlck_kb() >= base + 1024;
	munlock(probe, 1 << 20);
	free(probe);
	return locked;
}

#endif
