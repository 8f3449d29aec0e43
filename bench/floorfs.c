/* floorfs.c - the floor for the cached-read benchmark: the least a libfuse3
 * high-level filesystem can do to serve a 67-byte key file, configured like
 * omikuji-keyfs (direct_io, entry/attr timeouts 1 s, negative 0, the same
 * multithreaded loop settings), so that "keyfs cached read / floorfs read"
 * is the cost of keyfs's own work (access check, cache, metrics, audit).
 *
 *   floorfs MOUNTPOINT       (foreground; stop it with fusermount3 -u)
 *
 * Tree: /keys/ (a directory) and /keys/<any name>: a constant, non-secret
 * 67-byte file ("0x" + 64 hex digits + "\n").
 */
#include <errno.h>
#include <fuse.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char floor_content[] =
	"0x1111111111111111111111111111111111111111111111111111111111111111\n";
#define FLOOR_LEN (sizeof(floor_content) - 1)

/* 0 = root, 1 = /keys, 2 = a file under /keys, -1 = nothing. */
static int floor_kind(const char *path)
{
	if (strcmp(path, "/") == 0)
		return 0;
	if (strcmp(path, "/keys") == 0)
		return 1;
	if (strncmp(path, "/keys/", 6) == 0 && path[6] && !strchr(path + 6, '/'))
		return 2;
	return -1;
}

static int floor_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	(void)fi;
	memset(st, 0, sizeof(*st));
	st->st_uid = getuid();
	st->st_gid = getgid();
	switch (floor_kind(path)) {
	case 0:
	case 1:
		st->st_mode = S_IFDIR | 0700;
		st->st_nlink = 2;
		return 0;
	case 2:
		st->st_mode = S_IFREG | 0600;
		st->st_nlink = 1;
		st->st_size = 0;   /* as keyfs: ls -l does not reveal key sizes */
		return 0;
	default:
		return -ENOENT;
	}
}

static int floor_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off,
                         struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
	(void)off;
	(void)fi;
	(void)flags;
	int kind = floor_kind(path);
	if (kind != 0 && kind != 1)
		return -ENOTDIR;
	fill(buf, ".", NULL, 0, 0);
	fill(buf, "..", NULL, 0, 0);
	if (kind == 0)
		fill(buf, "keys", NULL, 0, 0);
	return 0;
}

static int floor_open(const char *path, struct fuse_file_info *fi)
{
	if (floor_kind(path) != 2)
		return -ENOENT;
	if ((fi->flags & O_ACCMODE) != O_RDONLY)
		return -EACCES;
	fi->direct_io = 1;
	fi->keep_cache = 0;
	return 0;
}

static int floor_read(const char *path, char *buf, size_t size, off_t off,
                      struct fuse_file_info *fi)
{
	(void)path;
	(void)fi;
	if (off < 0)
		return -EINVAL;
	if ((size_t)off >= FLOOR_LEN)
		return 0;
	size_t n = FLOOR_LEN - (size_t)off;
	if (n > size)
		n = size;
	memcpy(buf, floor_content + off, n);
	return (int)n;
}

static void *floor_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	(void)conn;
	cfg->entry_timeout = 1.0;
	cfg->attr_timeout = 1.0;
	cfg->negative_timeout = 0;
	cfg->kernel_cache = 0;
	cfg->direct_io = 1;
	cfg->use_ino = 0;
	return NULL;
}

static const struct fuse_operations floor_operations = {
	.init = floor_init,
	.getattr = floor_getattr,
	.readdir = floor_readdir,
	.open = floor_open,
	.read = floor_read,
};

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: floorfs MOUNTPOINT\n");
		return 2;
	}
	char *fuse_argv[] = { argv[0], "-o", "fsname=floorfs,subtype=floorfs", NULL };
	struct fuse_args args = FUSE_ARGS_INIT(3, fuse_argv);
	struct fuse_loop_config *loop = NULL;
	int code = 1;
	int mounted = 0;

	struct fuse *fuse = fuse_new(&args, &floor_operations, sizeof(floor_operations), NULL);
	if (!fuse)
		goto out;
	if (fuse_mount(fuse, argv[1]) != 0) {
		fprintf(stderr, "floorfs: cannot mount on %s\n", argv[1]);
		goto out;
	}
	mounted = 1;
	if (fuse_set_signal_handlers(fuse_get_session(fuse)) != 0)
		goto out;
	loop = fuse_loop_cfg_create();
	if (!loop)
		goto out;
	/* The same loop as omikuji-keyfs (mount/daemon.c). */
	fuse_loop_cfg_set_clone_fd(loop, 0);
	fuse_loop_cfg_set_idle_threads(loop, 8);
	fuse_loop_cfg_set_max_threads(loop, 64);
	code = fuse_loop_mt(fuse, loop) < 0 ? 1 : 0;
out:
	if (loop)
		fuse_loop_cfg_destroy(loop);
	if (fuse) {
		fuse_remove_signal_handlers(fuse_get_session(fuse));
		if (mounted)
			fuse_unmount(fuse);
		fuse_destroy(fuse);
	}
	fuse_opt_free_args(&args);
	return code;
}
