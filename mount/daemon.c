/* daemon.c - the start sequence (contract section 9, daemon(7)).
 *
 * 1. Where the terminal still sees it: resolve the mountpoint to an absolute
 *    path (the daemon leaves its working directory; the unmount at stop
 *    needs the same path) and look up `run_as`.
 * 2. Without -f: fork with a readiness pipe.  The parent waits on the pipe
 *    and exits 0 only when the child says it serves, else non-zero with the
 *    child's one-line reason.  Everything after this happens in the
 *    process that serves: locks, threads, D-Bus/libsecret connections and
 *    memory locks do not survive fork().
 * 3. Become `run_as` (effective ids; root stays reachable until step 5) so
 *    that what the service user reopens later (log files, the audit log,
 *    the store) is opened as that user now.
 * 4. Open: log files, every backend instance (its open: local checks, no
 *    network), the audit log and its one-writer lock, the access rules
 *    (mount_state_new); the FUSE session (libfuse's low-level API).
 * 5. Mount, with the real uid already `run_as`, so the mount belongs to the
 *    service user who must unmount it at stop; then drop root for good.
 * 6. Start: lock key memory, start the backends (a Vault's first login)
 *    and the threads, one health checker per instance (mount_state_start), then
 *    report ready (pipe to the parent, sd_notify READY=1) and serve.
 * 7. Stop: STOPPING=1, an audit checkpoint in the application log, unmount.
 */
#include "daemon.h"
#include "control.h"
#include "keyops.h"
#include "log.h"
#include "mountpoint.h"
#include "secret.h"
#include "tree.h"

#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

static struct mount_state *signal_keyfs;

/* Is name one of the comma-separated -o options? */
static bool fuse_option_given(const char *options, const char *name)
{
	size_t n = strlen(name);
	for (const char *p = options; p && *p; ) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (len == n && strncmp(p, name, n) == 0)
			return true;
		p = end ? end + 1 : NULL;
	}
	return false;
}

static void on_sighup(int sig)
{
	(void)sig;
	if (signal_keyfs)
		mount_state_request_reload(signal_keyfs);
}

/* A stop signal must not be lost.  libfuse's session loop (3.14) checks its exit
 * flag and then sleeps in sem_wait until a signal interrupts it: a SIGTERM
 * that lands between the check and the wait (for instance right after
 * `mount` returned, while the loop starts its first worker) only sets the
 * flag, and the daemon served on until the next FUSE request.  So the stop
 * handlers also wake a watcher thread, which interrupts the main thread
 * again every 20 ms until the loop has returned. */
static struct sigaction fuse_stop_action[2];   /* libfuse's SIGTERM, SIGINT */
static int stop_pipe[2] = { -1, -1 };
static pthread_t stop_main_thread;
static atomic_bool stop_loop_done;

static void on_stop(int sig)
{
	int saved = errno;
	const struct sigaction *fa = &fuse_stop_action[sig == SIGINT];
	if (fa->sa_handler != SIG_DFL && fa->sa_handler != SIG_IGN && fa->sa_handler)
		fa->sa_handler(sig);
	unsigned char c = (unsigned char)sig;
	if (write(stop_pipe[1], &c, 1) < 0) {
		/* full: the watcher is awake already */
	}
	errno = saved;
}

static void *stop_watch_main(void *arg)
{
	(void)arg;
	unsigned char sig = 0;
	while (read(stop_pipe[0], &sig, 1) < 0 && errno == EINTR)
		;
	while (sig && !atomic_load(&stop_loop_done)) {
		pthread_kill(stop_main_thread, sig);
		struct timespec t = { 0, 20 * 1000 * 1000 };
		nanosleep(&t, NULL);
	}
	return NULL;
}

/* After fuse_set_signal_handlers: chain libfuse's stop handlers. */
static int stop_watch_install(void)
{
	if (pipe2(stop_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
		return -errno;
	/* the watcher's end blocks; the handler's never does */
	fcntl(stop_pipe[0], F_SETFL, fcntl(stop_pipe[0], F_GETFL) & ~O_NONBLOCK);
	stop_main_thread = pthread_self();
	atomic_store(&stop_loop_done, false);
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0;   /* interrupt sem_wait: no SA_RESTART */
	sigaction(SIGTERM, &sa, &fuse_stop_action[0]);
	sigaction(SIGINT, &sa, &fuse_stop_action[1]);
	return 0;
}

/* The loop has returned: stop the watcher (woken with a 0 byte when no
 * signal came, e.g. after fusermount3 -u). */
static void stop_watch_end(pthread_t *watcher, bool started)
{
	atomic_store(&stop_loop_done, true);
	if (started) {
		unsigned char zero = 0;
		if (write(stop_pipe[1], &zero, 1) < 0) {
			/* full: it is awake and sees stop_loop_done */
		}
		pthread_join(*watcher, NULL);
	}
	sigaction(SIGTERM, &fuse_stop_action[0], NULL);
	sigaction(SIGINT, &fuse_stop_action[1], NULL);
	for (int i = 0; i < 2; i++)
		if (stop_pipe[i] >= 0) {
			close(stop_pipe[i]);
			stop_pipe[i] = -1;
		}
}

void daemon_harden(void)
{
	struct rlimit none = { 0, 0 };
	setrlimit(RLIMIT_CORE, &none);
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

/* --- run_as ---------------------------------------------------------- */

struct run_as {
	bool set;                 /* root drops to this user */
	char name[256];
	uid_t uid;
	gid_t gid;
};

int daemon_check_run_as(const struct config *cfg, char *err, size_t errlen)
{
	const char *user = cfg->keyfs.run_as;
	if (!user || !*user)
		return 0;
	errno = 0;
	struct passwd *pw = getpwnam(user);
	if (!pw) {
		snprintf(err, errlen, "keyfs.run_as: unknown user '%s'%s%s", user,
		         errno ? ": " : "", errno ? strerror(errno) : "");
		return -ENOENT;
	}
	return 0;
}

static int run_as_resolve(const struct config *cfg, struct run_as *ra, char *err, size_t errlen)
{
	memset(ra, 0, sizeof(*ra));
	int rc = daemon_check_run_as(cfg, err, errlen);
	if (rc < 0 || !cfg->keyfs.run_as || !*cfg->keyfs.run_as || getuid() != 0)
		return rc;
	struct passwd *pw = getpwnam(cfg->keyfs.run_as);
	if (!pw || snprintf(ra->name, sizeof(ra->name), "%s", pw->pw_name) >= (int)sizeof(ra->name)) {
		snprintf(err, errlen, "keyfs.run_as: cannot resolve '%s'", cfg->keyfs.run_as);
		return -ENOENT;
	}
	ra->set = true;
	ra->uid = pw->pw_uid;
	ra->gid = pw->pw_gid;
	return 0;
}

/* Act as the user (real and effective ids), keeping root as the saved
 * uid so that mounting can still be done as root. */
static int run_as_become(const struct run_as *ra, char *err, size_t errlen)
{
	if (initgroups(ra->name, ra->gid) < 0 || setresgid(ra->gid, ra->gid, 0) < 0 ||
	    setresuid(ra->uid, ra->uid, 0) < 0) {
		snprintf(err, errlen, "run_as %s: %s", ra->name, strerror(errno));
		return -errno;
	}
	return 0;
}

/* Real uid the user, effective root: libfuse mounts with mount(2) and
 * records the real uid as the mount's owner (user_id=), so the user can
 * unmount it (fusermount3 -u) once it is no longer root. */
static int run_as_mount_ids(const struct run_as *ra)
{
	return setresuid(ra->uid, 0, 0) < 0 ? -errno : 0;
}

/* Drop root for good. */
static int run_as_drop(const struct run_as *ra, char *err, size_t errlen)
{
	if (setresuid(ra->uid, 0, 0) < 0 || setresgid(ra->gid, ra->gid, ra->gid) < 0 ||
	    setresuid(ra->uid, ra->uid, ra->uid) < 0) {
		snprintf(err, errlen, "run_as %s: %s", ra->name, strerror(errno));
		return -errno;
	}
	if (setuid(0) == 0 || seteuid(0) == 0) {
		snprintf(err, errlen, "run_as %s: could regain root, refusing to run", ra->name);
		return -EPERM;
	}
	daemon_harden();   /* changing ids resets the dumpable flag */
	return 0;
}

/* --- the readiness pipe ------------------------------------------------ */

struct start {
	int ready_fd;     /* write end in the daemonized child; -1 in the foreground */
};

/* Report a start failure: to the waiting parent (which prints it) or, in
 * the foreground, to stderr; and to the application log. */
static void start_failed(struct start *st, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void start_failed(struct start *st, const char *fmt, ...)
{
	char line[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	log_kv(LOG_LEVEL_ERROR, "start failed", "error", line, (char *)NULL);
	if (st->ready_fd >= 0) {
		ssize_t n = write(st->ready_fd, line, strlen(line));
		(void)n;
		close(st->ready_fd);
		st->ready_fd = -1;
	} else {
		fprintf(stderr, "omikuji-keyfs: %s\n", line);
	}
}

/* The mount serves: release the waiting parent, or tell systemd. */
static void start_ready(struct start *st)
{
	if (st->ready_fd >= 0) {
		/* The parent, which systemd knows, sends READY=1 with our pid. */
		ssize_t n = write(st->ready_fd, "R", 1);
		(void)n;
		close(st->ready_fd);
		st->ready_fd = -1;
	} else {
		sd_notify(0, "READY=1");
	}
}

/* Parent side: wait for the child's verdict; the exit code of `mount`. */
static int start_wait(pid_t child, int fd)
{
	char buf[800];
	size_t len = 0;
	for (;;) {
		ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
		if (len == sizeof(buf) - 1)
			break;
	}
	close(fd);
	buf[len] = 0;
	if (len == 1 && buf[0] == 'R') {
		sd_notifyf(0, "READY=1\nMAINPID=%ld", (long)child);
		return 0;
	}
	int status = 0;
	while (waitpid(child, &status, 0) < 0 && errno == EINTR)
		;
	if (len > 0)
		fprintf(stderr, "omikuji-keyfs: %s\n", buf);
	else if (WIFSIGNALED(status))
		fprintf(stderr, "omikuji-keyfs: the daemon was killed by signal %d before it served\n",
		        WTERMSIG(status));
	else
		fprintf(stderr, "omikuji-keyfs: the daemon exited with status %d before it served\n",
		        WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	return 1;
}

/* fork() with a readiness pipe.  Returns in the child (0, st->ready_fd
 * set) only; the parent exits here with the start's verdict. */
static int start_fork(struct start *st)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0) {
		fprintf(stderr, "omikuji-keyfs: cannot daemonize: pipe: %s\n", strerror(errno));
		return -1;
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		fprintf(stderr, "omikuji-keyfs: cannot daemonize: fork: %s\n", strerror(errno));
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (pid > 0) {
		close(p[1]);
		exit(start_wait(pid, p[0]));
	}
	close(p[0]);
	st->ready_fd = p[1];
	setsid();
	return 0;
}

/* Detach from the terminal once serving: stdin/stdout/stderr to /dev/null. */
static void start_detach(void)
{
	int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (fd >= 0) {
		dup2(fd, STDIN_FILENO);
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		if (fd > STDERR_FILENO)
			close(fd);
	}
	if (chdir("/") < 0) {
		/* the mountpoint and every config path are absolute */
	}
}

/* --- the application log in the background ----------------------------- */

/* Contract section 9: $XDG_STATE_HOME/omikuji-keyfs/omikuji-keyfs.log,
 * root: /var/log/omikuji-keyfs/omikuji-keyfs.log. */
static int default_log_path(uid_t invoker, char *out, size_t size)
{
	const char *state = getenv("XDG_STATE_HOME");
	const char *home = getenv("HOME");
	int n;
	if (invoker == 0)
		n = snprintf(out, size, "/var/log/omikuji-keyfs/omikuji-keyfs.log");
	else if (state && state[0] == '/')
		n = snprintf(out, size, "%s/omikuji-keyfs/omikuji-keyfs.log", state);
	else if (home && home[0] == '/')
		n = snprintf(out, size, "%s/.local/state/omikuji-keyfs/omikuji-keyfs.log", home);
	else
		return -ENOENT;
	return n < (int)size ? 0 : -ENAMETOOLONG;
}

/* Root that drops to run_as: the default log directory and file are this
 * program's own; give them to that user, so that the service user opens
 * (and on SIGHUP reopens) the file itself. */
static void prepare_log_dir(const char *path, const struct run_as *ra)
{
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return;
	*slash = 0;
	if (mkdir(dir, 0750) < 0 && errno != EEXIST)
		return;   /* the open reports it */
	if (!ra->set)
		return;
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
	if (chown(dir, ra->uid, ra->gid) < 0 || fd < 0 || fchown(fd, ra->uid, ra->gid) < 0) {
		/* the open as run_as reports what is wrong */
	}
	if (fd >= 0)
		close(fd);
}

/* --- the sequence -------------------------------------------------------- */

struct serve {
	struct config *cfg;
	const struct daemon_options *opt;
	const char *mountpoint;      /* absolute */
	struct run_as run_as;
	struct start start;
	uid_t invoker;               /* getuid() at start */
};

static int serve(struct serve *s)
{
	char err[768] = "";
	struct mount_state *k = NULL;
	struct control *control = NULL;
	struct fuse_session *se = NULL;
	struct fuse_loop_config *loop = NULL;
	struct config *cfg = s->cfg;
	const struct daemon_options *opt = s->opt;
	bool background = s->start.ready_fd >= 0;
	bool mounted = false;
	bool handlers = false;
	bool stop_installed = false, watcher_started = false, notifier_started = false;
	pthread_t stop_watcher;
	int code = 1;
	int rc;

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

	char log_path[4096] = "";
	if (background && default_log_path(s->invoker, log_path, sizeof(log_path)) == 0 &&
	    s->invoker == 0)
		prepare_log_dir(log_path, &s->run_as);

	if (s->run_as.set && run_as_become(&s->run_as, err, sizeof(err)) < 0) {
		start_failed(&s->start, "%s", err);
		goto out;
	}
	/* Log files are reopened as the serving user; in the background the
	 * terminal streams go to the contract's default file. */
	if (s->run_as.set && log_configure(&cfg->logging, err, sizeof(err)) < 0) {
		start_failed(&s->start, "%s", err);
		goto out;
	}
	if (background && log_path[0] && log_streams_to_file(log_path, err, sizeof(err)) < 0) {
		start_failed(&s->start, "%s", err);
		goto out;
	}

	metrics_init();
	rc = mount_state_new(cfg, s->invoker, getgid(), opt->audit, &k, err, sizeof(err));
	if (rc < 0) {
		start_failed(&s->start, "%s", err);
		goto out;
	}
	k->other_users = fuse_option_given(opt->fuse_options, "allow_other");
	config_forget_secrets(cfg);   /* the backend holds its own copies */
	struct stderr_capture capture;
	stderr_capture_begin(&capture);
	se = fuse_session_new(&args, &keyfs_ll_ops, sizeof(keyfs_ll_ops), k);
	stderr_capture_end(&capture, err, sizeof(err));
	if (!se) {
		start_failed(&s->start, "invalid FUSE options '%s': %s",
		             opt->fuse_options ? opt->fuse_options : "", err);
		goto out;
	}
	if (tree_start(k, se) < 0) {
		start_failed(&s->start, "out of memory");
		goto out;
	}
	/* Before mounting: a SIGTERM from now on ends the loop (or keeps it
	 * from starting), and the unmount below always runs. */
	if (fuse_set_signal_handlers(se) != 0) {
		start_failed(&s->start, "cannot install signal handlers");
		goto out;
	}
	handlers = true;
	if (stop_watch_install() < 0) {
		start_failed(&s->start, "cannot install signal handlers: %s", strerror(errno));
		goto out;
	}
	stop_installed = true;
	signal_keyfs = k;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sighup;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sigaction(SIGHUP, &sa, NULL);

	if (s->run_as.set && run_as_mount_ids(&s->run_as) < 0) {
		start_failed(&s->start, "run_as %s: cannot regain root to mount: %s",
		             s->run_as.name, strerror(errno));
		goto out;
	}
	if (mountpoint_mount(se, s->mountpoint, err, sizeof(err)) != 0) {
		start_failed(&s->start, "%s", err);
		goto out;
	}
	mounted = true;
	mount_state_attach(k, s->mountpoint);   /* rotation notices; best effort */
	if (s->run_as.set && run_as_drop(&s->run_as, err, sizeof(err)) < 0) {
		start_failed(&s->start, "%s", err);
		goto out;
	}

	/* Locks are not inherited across fork(): lock the key pool here. */
	rc = secret_relock();
	if (rc < 0)
		log_kv(LOG_LEVEL_WARN, "cannot lock key memory (RLIMIT_MEMLOCK?)", "error",
		       strerror(-rc), (char *)NULL);
	/* The threads started here (and the ones they start: backend
	 * connections, GDBus) must never take SIGTERM/SIGINT/SIGHUP: libfuse's
	 * handler only sets a flag, and the loop notices it when the signal
	 * interrupts the main thread's wait.  A stop signal delivered to another
	 * thread would leave the mount serving.  New threads inherit the mask of
	 * their creator, so block everything while starting them. */
	sigset_t all_signals, main_mask;
	sigfillset(&all_signals);
	pthread_sigmask(SIG_BLOCK, &all_signals, &main_mask);
	rc = mount_state_start(k, err, sizeof(err));
	if (rc < 0) {
		pthread_sigmask(SIG_SETMASK, &main_mask, NULL);
		start_failed(&s->start, "%s", err);
		goto out;
	}
	/* The key commands act through the mount that writes the audit log. */
	if (opt->audit && control_start(k, &control, err, sizeof(err)) < 0) {
		pthread_sigmask(SIG_SETMASK, &main_mask, NULL);
		start_failed(&s->start, "%s", err);
		goto out;
	}
	rc = tree_start_notifier(k);
	if (rc < 0) {
		pthread_sigmask(SIG_SETMASK, &main_mask, NULL);
		start_failed(&s->start, "cannot start a thread: %s", strerror(-rc));
		goto out;
	}
	notifier_started = true;
	rc = pthread_create(&stop_watcher, NULL, stop_watch_main, NULL);
	if (rc != 0) {
		pthread_sigmask(SIG_SETMASK, &main_mask, NULL);
		start_failed(&s->start, "cannot start a thread: %s", strerror(rc));
		goto out;
	}
	watcher_started = true;
	pthread_sigmask(SIG_SETMASK, &main_mask, NULL);
	loop = fuse_loop_cfg_create();
	if (!loop) {
		start_failed(&s->start, "out of memory");
		goto out;
	}
	fuse_loop_cfg_set_clone_fd(loop, 0);
	fuse_loop_cfg_set_idle_threads(loop, 8);
	/* An open of an uncached key holds a worker only while it makes the
	 * fetch itself: the opens that find its fetch in flight park on it
	 * (keyfile.c) and free their worker.  Before that, with 64 workers,
	 * 1 000 readers released at once over 100 uncached keys ran 6-7
	 * backend latencies back to back (slowest 802 ms); with 128, 487 ms;
	 * with 256, 398 ms (BENCHMARKS.md, issue 15).  Idle workers beyond 8
	 * exit. */
	fuse_loop_cfg_set_max_threads(loop, 256);

	char pid[24];
	snprintf(pid, sizeof(pid), "%ld", (long)getpid());
	log_kv(LOG_LEVEL_INFO, "mounted", "mountpoint", s->mountpoint,
	       "storage_type", k->all_names, "version", KEYFS_VERSION, "pid", pid,
	       (char *)NULL);
	if (!opt->audit)
		log_kv(LOG_LEVEL_WARN, "audit log disabled (--no-audit): key accesses are not recorded",
		       (char *)NULL);
	if (background)
		start_detach();
	start_ready(&s->start);

	/* 0, or the number of the signal (SIGTERM, SIGINT) that ended the loop:
	 * both are a clean stop.  Negative is an error. */
	code = fuse_session_loop_mt(se, loop) < 0 ? 1 : 0;
	/* Opens parked on a fetch (keyfile.c) get their answer from the thread
	 * making it: the loop joined its workers, a key command's fetch may
	 * still run.  Before the session goes. */
	tree_drain_parked(k);
	stop_watch_end(&stop_watcher, watcher_started);
	stop_installed = watcher_started = false;
	sd_notify(0, "STOPPING=1");
	log_kv(LOG_LEVEL_INFO, "unmounting", "mountpoint", s->mountpoint, (char *)NULL);
	/* Notices are useless once the loop is over (and the kernel would
	 * wait on the ones the loop no longer reads) */
	tree_stop_notifier(k);
	notifier_started = false;
	fuse_session_unmount(se);   /* no request can arrive after this */
	mounted = false;
	control_stop(control);
	control = NULL;
	mount_state_audit_checkpoint(k, true);
out:
	if (stop_installed)
		stop_watch_end(&stop_watcher, watcher_started);
	signal_keyfs = NULL;
	control_stop(control);
	if (loop)
		fuse_loop_cfg_destroy(loop);
	if (notifier_started)
		tree_stop_notifier(k);
	if (se) {
		if (handlers)
			fuse_remove_signal_handlers(se);
		if (mounted)
			fuse_session_unmount(se);
		fuse_session_destroy(se);
	}
	mount_state_free(k);   /* and the inode table (tree_free) */
	fuse_opt_free_args(&args);
	return code;
}

int daemon_run(struct config *cfg, const struct daemon_options *opt)
{
	struct serve s = {
		.cfg = cfg,
		.opt = opt,
		.start = { .ready_fd = -1 },
		.invoker = getuid(),
	};
	char err[512] = "";

	/* One line that says what to do: stale mount, already mounted, not a
	 * directory, /dev/fuse not usable. */
	if (mountpoint_check(opt->mountpoint, err, sizeof(err)) < 0) {
		fprintf(stderr, "omikuji-keyfs: %s\n", err);
		return 1;
	}
	char *mnt = realpath(opt->mountpoint, NULL);
	if (!mnt) {
		fprintf(stderr, "omikuji-keyfs: mountpoint %s: %s\n", opt->mountpoint, strerror(errno));
		return 1;
	}
	struct stat st;
	if (stat(mnt, &st) < 0 || !S_ISDIR(st.st_mode)) {
		fprintf(stderr, "omikuji-keyfs: mountpoint %s: not a directory\n", opt->mountpoint);
		free(mnt);
		return 1;
	}
	s.mountpoint = mnt;
	if (run_as_resolve(cfg, &s.run_as, err, sizeof(err)) < 0) {
		fprintf(stderr, "omikuji-keyfs: %s\n", err);
		free(mnt);
		return 2;
	}
	if (!opt->foreground && !opt->debug && start_fork(&s.start) < 0) {
		free(mnt);
		return 1;
	}
	int code = serve(&s);
	free(mnt);
	return code;
}
