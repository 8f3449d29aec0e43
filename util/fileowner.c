/* fileowner.c - see fileowner.h. */
#include "fileowner.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int fileowner_inherit(int fd, const char *path, const char *like)
{
	struct stat st;
	if (geteuid() != 0)
		return 0;
	if (!like || stat(like, &st) < 0) {
		char *dir = strdup(path);
		if (!dir)
			return -ENOMEM;
		char *slash = strrchr(dir, '/');
		if (!slash)
			strcpy(dir, ".");
		else if (slash == dir)
			dir[1] = 0;
		else
			*slash = 0;
		int rc = stat(dir, &st);
		free(dir);
		if (rc < 0)
			return -errno;
	}
	if (st.st_uid == 0 && st.st_gid == 0)
		return 0;
	return fchown(fd, st.st_uid, st.st_gid) < 0 ? -errno : 0;
}
