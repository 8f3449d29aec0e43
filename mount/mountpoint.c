/* mountpoint.c - see mountpoint.h. */
#include "mountpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

/* Is path (absolute, resolved) a mount point in /proc/self/mountinfo? */
static int mounted_at(const char *path)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return 0;
	char line[4096];
	int found = 0;
	while (!found && fgets(line, sizeof(line), f)) {
		/* id parent major:minor root MOUNTPOINT ... ; spaces are \040 */
		char *p = line;
		for (int field = 0; field < 4 && p; field++) {
			p = strchr(p, ' ');
			if (p)
				p++;
		}
		if (!p)
			continue;
		char *end = strchr(p, ' ');
		if (end)
			*end = 0;
		char unescaped[PATH_MAX];
		size_t n = 0;
		for (char *q = p; *q && n + 1 < sizeof(unescaped); q++) {
			if (q[0] == '\\' && q[1] >= '0' && q[1] <= '3' && q[2] && q[3]) {
				unescaped[n++] = (char)(((q[1] - '0') << 6) | ((q[2] - '0') << 3) | (q[3] - '0'));
				q += 3;
			} else {
				unescaped[n++] = *q;
			}
		}
		unescaped[n] = 0;
		found = strcmp(unescaped, path) == 0;
	}
	fclose(f);
	return found;
}

int mountpoint_check(const char *path, char *err, size_t errlen)
{
	struct stat st;
	if (stat(path, &st) < 0) {
		int e = errno;
		if (e == ENOTCONN)
			snprintf(err, errlen, "%s is a stale mount (its daemon is gone): run fusermount3 -u %s, "
			         "then mount again", path, path);
		else if (e == ENOENT)
			snprintf(err, errlen, "mountpoint %s: No such file or directory: create it with "
			         "mkdir -p %s", path, path);
		else
			snprintf(err, errlen, "cannot use mountpoint %s: %s", path, strerror(e));
		return -e;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "mountpoint %s is not a directory: give a directory", path);
		return -ENOTDIR;
	}
	char *abs = realpath(path, NULL);
	struct statfs sfs;
	/* stat may be answered from the kernel's attribute cache; statfs always
	 * asks the daemon, so it tells a dead one from a live one. */
	if ((!abs && errno == ENOTCONN) ||
	    (abs && mounted_at(abs) && statfs(path, &sfs) < 0 && errno == ENOTCONN)) {
		free(abs);
		snprintf(err, errlen, "%s is a stale mount (its daemon is gone): run fusermount3 -u %s, "
		         "then mount again", path, path);
		return -ENOTCONN;
	}
	if (abs && mounted_at(abs)) {
		snprintf(err, errlen, "%s is already a mount point: unmount it first "
		         "(fusermount3 -u %s) or choose another directory", path, path);
		free(abs);
		return -EBUSY;
	}
	free(abs);
	/* fusermount3 opens /dev/fuse with the caller's own rights, so a
	 * device that is 0600 (some machines) stops a normal user here. */
	int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		snprintf(err, errlen, "cannot open /dev/fuse: %s (%s)", strerror(e),
		         e == ENOENT ? "load the fuse module: modprobe fuse"
		                     : "make it read-writable for you (Debian's default is 0666) or mount as root");
		return -e;
	}
	close(fd);
	return 0;
}

/* The most useful line of what libfuse and fusermount3 printed: the first
 * fusermount3 line, else the first line; prefixes removed. */
static void reason_from(char *text, char *out, size_t outlen)
{
	char *pick = NULL;
	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
		if (strncmp(line, "fusermount3: ", 13) == 0 || strncmp(line, "fusermount: ", 12) == 0) {
			pick = strchr(line, ' ') + 1;
			break;
		}
		if (!pick)
			pick = strncmp(line, "fuse: ", 6) == 0 ? line + 6 : line;
	}
	snprintf(out, outlen, "%s", pick ? pick : "unknown reason");
}

void stderr_capture_begin(struct stderr_capture *c)
{
	c->pipe[0] = c->pipe[1] = c->saved = -1;
	fflush(stderr);
	if (pipe2(c->pipe, O_CLOEXEC) < 0)
		return;
	fcntl(c->pipe[0], F_SETFL, O_NONBLOCK);
	fcntl(c->pipe[1], F_SETPIPE_SZ, 1 << 16);
	c->saved = dup(STDERR_FILENO);
	if (c->saved >= 0)
		dup2(c->pipe[1], STDERR_FILENO);   /* clears close-on-exec: fusermount3 writes here */
}

void stderr_capture_end(struct stderr_capture *c, char *reason, size_t len)
{
	if (c->saved >= 0) {
		fflush(stderr);
		dup2(c->saved, STDERR_FILENO);
		close(c->saved);
	}
	char text[4096] = "";
	ssize_t n = c->pipe[0] >= 0 ? read(c->pipe[0], text, sizeof(text) - 1) : -1;
	text[n > 0 ? n : 0] = 0;
	if (c->pipe[0] >= 0) {
		close(c->pipe[0]);
		close(c->pipe[1]);
	}
	reason_from(text, reason, len);
}

int mountpoint_mount(struct fuse_session *se, const char *path, char *err, size_t errlen)
{
	struct stderr_capture c;
	stderr_capture_begin(&c);
	int rc = fuse_session_mount(se, path);
	char reason[1024];
	stderr_capture_end(&c, reason, sizeof(reason));
	if (rc == 0)
		return 0;
	if (strstr(reason, "user_allow_other"))
		snprintf(err, errlen, "cannot mount on %s: %s (add it there, or mount without -o allow_other)",
		         path, reason);
	else
		snprintf(err, errlen, "cannot mount on %s: %s", path, reason);
	return -1;
}
