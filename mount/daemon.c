/* daemon.c - the mount sequence, in the order sshfs uses so that set-up
 * errors still reach the terminal: build the state (backend, audit log,
 * access rules), create the FUSE object, mount, then daemonize, start the
 * threads, drop privileges, and serve. */
#include "daemon.h"
#include "keyfs.h"
#include "log.h"
#include "mountpoint.h"
#include "tree.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

static struct keyfs *signal_keyfs;

static void on_sighup(int sig)
{
	(void)sig;
	if (signal_keyfs)
		keyfs_request_reload(signal_keyfs);
}

void daemon_harden(void)
{
	struct rlimit none = { 0, 0 };
	setrlimit(RLIMIT_CORE, &none);
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

/* Drop to run_as after mounting (the mount needs root, serving does not). */
static int drop_privileges(const char *user)
{
	struct passwd *pw = getpwnam(user);
	if (!pw) {
		fprintf(stderr, "omikuji-keyfs: run_as: unknown user '%s'\n", user);
		return -1;
	}
	if (initgroups(pw->pw_name, pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 ||
	    setuid(pw->pw_uid) < 0) {
		fprintf(stderr, "omikuji-keyfs: run_as %s: %s\n", user, strerror(errno));
		return -1;
	}
	if (setuid(0) == 0) {
		fprintf(stderr, "omikuji-keyfs: run_as %s: could regain root, refusing to run\n", user);
		return -1;
	}
	daemon_harden();   /* setuid resets the dumpable flag */
	return 0;
}

int daemon_run(const struct config *cfg, const struct daemon_options *opt)
{
	char err[512] = "";
	struct keyfs *k = NULL;
	struct fuse *fuse = NULL;
	struct fuse_loop_config *loop = NULL;
	int code = 1;
	bool mounted = false;
	bool handlers = false;

	char *fuse_argv[8];
	int fuse_argc = 0;
	fuse_argv[fuse_argc++] = "omikuji-keyfs";
	if (opt->debug)
		fuse_argv[fuse_argc++] = "-d";
	/* default_permissions is off on purpose: the access rules decide. */
	fuse_argv[fuse_argc++] = "-o";
	fuse_argv[fuse_argc++] = "fsname=omikuji-keyfs,subtype=omikuji-keyfs";
	if (opt->fuse_options && *opt->fuse_options) {
		fuse_argv[fuse_argc++] = "-o";
		fuse_argv[fuse_argc++] = (char *)opt->fuse_options;
	}
	fuse_argv[fuse_argc] = NULL;
	struct fuse_args args = FUSE_ARGS_INIT(fuse_argc, fuse_argv);

	int rc = mountpoint_check(opt->mountpoint, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "omikuji-keyfs: %s\n", err);
		goto out;
	}
	metrics_init();
	rc = keyfs_new(cfg, getuid(), getgid(), opt->audit, &k, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "omikuji-keyfs: %s\n", err);
		goto out;
	}
	struct stderr_capture capture;
	stderr_capture_begin(&capture);
	fuse = fuse_new(&args, &keyfs_operations, sizeof(keyfs_operations), k);
	stderr_capture_end(&capture, err, sizeof(err));
	if (!fuse) {
		fprintf(stderr, "omikuji-keyfs: invalid FUSE options '%s': %s\n",
		        opt->fuse_options ? opt->fuse_options : "", err);
		goto out;
	}
	if (mountpoint_mount(fuse, opt->mountpoint, err, sizeof(err)) != 0) {
		fprintf(stderr, "omikuji-keyfs: %s\n", err);
		goto out;
	}
	mounted = true;
	keyfs_attach(k, fuse, opt->mountpoint);   /* rotation notices; best effort */
	if (fuse_set_signal_handlers(fuse_get_session(fuse)) != 0) {
		fprintf(stderr, "omikuji-keyfs: cannot install signal handlers\n");
		goto out;
	}
	handlers = true;
	signal_keyfs = k;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sighup;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sigaction(SIGHUP, &sa, NULL);

	if (!opt->foreground && !opt->debug && fuse_daemonize(0) != 0) {
		fprintf(stderr, "omikuji-keyfs: cannot daemonize\n");
		goto out;
	}
	rc = keyfs_start(k);
	if (rc < 0) {
		log_kv(LOG_LEVEL_ERROR, "cannot start the maintenance thread", "error", strerror(-rc),
		       (char *)NULL);
		goto out;
	}
	if (cfg->keyfs.run_as && getuid() == 0 && drop_privileges(cfg->keyfs.run_as) < 0)
		goto out;

	char version[32];
	snprintf(version, sizeof(version), "%s", KEYFS_VERSION);
	log_kv(LOG_LEVEL_INFO, "mounted", "mountpoint", opt->mountpoint,
	       "storage_type", k->backend_name, "version", version, (char *)NULL);
	if (!opt->audit)
		log_kv(LOG_LEVEL_WARN, "audit log disabled (--no-audit): key accesses are not recorded",
		       (char *)NULL);

	loop = fuse_loop_cfg_create();
	if (!loop)
		goto out;
	fuse_loop_cfg_set_clone_fd(loop, 0);
	fuse_loop_cfg_set_idle_threads(loop, 8);
	fuse_loop_cfg_set_max_threads(loop, 64);
	/* 0, or the number of the signal (SIGTERM, SIGINT) that ended the loop:
	 * both are a clean stop.  Negative is an error. */
	code = fuse_loop_mt(fuse, loop) < 0 ? 1 : 0;
	log_kv(LOG_LEVEL_INFO, "unmounting", "mountpoint", opt->mountpoint, (char *)NULL);
out:
	signal_keyfs = NULL;
	if (loop)
		fuse_loop_cfg_destroy(loop);
	if (fuse) {
		if (handlers)
			fuse_remove_signal_handlers(fuse_get_session(fuse));
		if (mounted)
			fuse_unmount(fuse);
		fuse_destroy(fuse);
	}
	keyfs_free(k);
	fuse_opt_free_args(&args);
	return code;
}
