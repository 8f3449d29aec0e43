/* fileowner.h - files that root writes on behalf of a service user.
 *
 * `key import` run as root must not leave the store, the audit log or their
 * lock files owned by root when the daemon serves as `keyfs.run_as`: it
 * could no longer open them.  A file root creates takes the owner of the
 * file it replaces, or else of the directory that holds it.
 */
#ifndef OMIKUJI_FILEOWNER_H
#define OMIKUJI_FILEOWNER_H

#include <sys/types.h>
#include <sys/stat.h>

/* When running as root, fchown fd (a file just created at path) to the
 * owner of the existing file at `like` (may be NULL or missing), else to the
 * owner of path's directory.  Does nothing for other users.  0 or -errno. */
int fileowner_inherit(int fd, const char *path, const char *like);

/* stat(2) of the directory that holds the file at path (its dirname; "."
 * for a bare name).  0 or -errno. */
int fileowner_stat_dir(const char *path, struct stat *st);

/* mkdir(2) that, when running as root, gives the new directory the owner
 * of its parent.  Same result as mkdir: 0, or -1 with errno (EEXIST
 * included). */
int fileowner_mkdir(const char *path, mode_t mode);

/* fileowner_mkdir() of every missing directory above the file at path
 * (mkdir -p of its dirname).  0 or -errno. */
int fileowner_mkdir_parents(const char *path, mode_t mode);

#endif
