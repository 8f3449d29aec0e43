/* audit_lock.c - the one-writer lock of an audit log, see audit_lock.h. */
#include "audit_lock.h"
#include "fileowner.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

struct audit_lock {
	int fd;
};

static char *audit_lock_path(const char *audit_path)
{
	size_t n = strlen(audit_path);
	char *p = malloc(n + sizeof(".lock"));
	if (p) {
		memcpy(p, audit_path, n);
		memcpy(p + n, ".lock", sizeof(".lock"));
	}
	return p;
}

static pid_t audit_lock_read_pid(int fd)
{
	char buf[32];
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	long pid = strtol(buf, NULL, 10);
	return pid > 0 ? (pid_t)pid : 0;
}

int audit_lock_take(const char *audit_path, struct audit_lock **out, pid_t *holder,
                    char *err, size_t errlen)
{
	int rc;
	*out = NULL;
	*holder = 0;
	char *path = audit_lock_path(audit_path);
	if (!path) {
		snprintf(err, errlen, "audit log lock: out of memory");
		return -ENOMEM;
	}
	rc = fileowner_mkdir_parents(audit_path, 0700);
	if (rc < 0) {
		snprintf(err, errlen, "audit log %s: cannot create its directory: %s", audit_path,
		         strerror(-rc));
		goto out;
	}
	/* World-readable: it holds only a pid, which the key commands of any
	 * user read to find (and check) the mount's control socket. */
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd >= 0)
		fileowner_inherit(fd, path, audit_path);
	else if (errno == EEXIST)
		fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "audit log lock %s: %s", path, strerror(errno));
		goto out;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
		if (rc == -EBUSY) {
			*holder = audit_lock_read_pid(fd);
			if (*holder)
				snprintf(err, errlen, "audit log %s is in use by omikuji-keyfs pid %d "
				         "(one writer per audit log)", audit_path, (int)*holder);
			else
				snprintf(err, errlen, "audit log %s is in use by another process "
				         "(one writer per audit log)", audit_path);
		} else {
			snprintf(err, errlen, "audit log lock %s: %s", path, strerror(-rc));
		}
		close(fd);
		goto out;
	}
	char pid[32];
	int len = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
	if (fchmod(fd, 0644) < 0 || ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)len, 0) != len) {
		rc = -errno;
		snprintf(err, errlen, "audit log lock %s: %s", path, strerror(errno));
		close(fd);
		goto out;
	}
	struct audit_lock *l = malloc(sizeof(*l));
	if (!l) {
		close(fd);
		rc = -ENOMEM;
		snprintf(err, errlen, "audit log lock: out of memory");
		goto out;
	}
	l->fd = fd;
	*out = l;
	rc = 0;
out:
	free(path);
	return rc;
}

void audit_lock_release(struct audit_lock *l)
{
	if (!l)
		return;
	/* The pid stays in the file: only a holder of the lock reads it as
	 * meaningful, and truncating here would race the next holder. */
	close(l->fd);
	free(l);
}

pid_t audit_lock_holder(const char *audit_path)
{
	char *path = audit_lock_path(audit_path);
	if (!path)
		return -ENOMEM;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	free(path);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	pid_t pid = 0;
	if (flock(fd, LOCK_SH | LOCK_NB) < 0) {
		if (errno == EWOULDBLOCK)
			pid = audit_lock_read_pid(fd);
		else
			pid = -errno;
	} else {
		flock(fd, LOCK_UN);
	}
	close(fd);
	return pid;
}
