/* mountpoint.h - checking and mounting on a mountpoint, so that every
 * failure is one line that says what to do (stale mount, already mounted,
 * not a directory, /dev/fuse, fusermount3's refusals), instead of libfuse's
 * and fusermount3's own lines plus a guess. */
#ifndef OMIKUJI_MOUNTPOINT_H
#define OMIKUJI_MOUNTPOINT_H

#include <stddef.h>

struct fuse_session;

/* Before mounting: 0, or -errno with one line in err (no "omikuji-keyfs:"
 * prefix) naming the problem and the fix. */
int mountpoint_check(const char *path, char *err, size_t errlen);

/* fuse_session_mount() with what libfuse and fusermount3 print captured: 0, or -1
 * with one line in err built from fusermount3's reason. */
int mountpoint_mount(struct fuse_session *se, const char *path, char *err, size_t errlen);

/* What libfuse and fusermount3 print to stderr, caught between begin and
 * end; end restores stderr and gives the most useful line (prefixes such as
 * "fusermount3: " removed), or "unknown reason". */
struct stderr_capture { int pipe[2]; int saved; };
void stderr_capture_begin(struct stderr_capture *c);
void stderr_capture_end(struct stderr_capture *c, char *reason, size_t len);

#endif
