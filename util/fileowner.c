/* fileowner.c - see fileowner.h. */
#include "fileowner.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fcntl.h>

int fileowner_mkdir(const char *path, mode_t mode)
{
	if (mkdir(path, mode) < 0)
		return -1;
	if (geteuid() == 0) {
		int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
		if (fd >= 0) {
			fileowner_inherit(fd, path, NULL);
			close(fd);
		}
	}
	return 0;
}

int fileowner_stat_dir(const char *path, struct stat *st)
{
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
	int rc = stat(dir, st) < 0 ? -errno : 0;
	free(dir);
	return rc;
}

int fileowner_inherit(int fd, const char *path, const char *like)
{
	struct stat st;
	if (geteuid() != 0)
		return 0;
	if (!like || stat(like, &st) < 0) {
		int rc = fileowner_stat_dir(path, &st);
		if (rc < 0)
			return rc;
	}
	if (st.st_uid == 0 && st.st_gid == 0)
		return 0;
	return fchown(fd, st.st_uid, st.st_gid) < 0 ? -errno : 0;
}

int fileowner_mkdir_parents(const char *path, mode_t mode)
{
	char *dir = strdup(path);
	int rc = 0;
	if (!dir)
		return -ENOMEM;
	char *slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = 0;
		for (char *p = dir + 1; ; p++) {
			if (*p != '/' && *p != 0)
				continue;
			char saved = *p;
			*p = 0;
			if (fileowner_mkdir(dir, mode) < 0 && errno != EEXIST) {
				rc = -errno;
				break;
			}
			*p = saved;
			if (saved == 0)
				break;
		}
	}
	free(dir);
	return rc;
}
