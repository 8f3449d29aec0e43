/* main.c - the command line (contract section 3).
 *
 * Exit codes: 0 success, 1 the operation failed (backend, I/O, invalid key,
 * not found), 2 usage or configuration error.  Every failure prints one line
 * to stderr naming what is wrong; key material is printed only by
 * `key export`, to stdout.
 */
#include "access.h"
#include "anomaly.h"
#include "audit.h"
#include "backend.h"
#include "config.h"
#include "control.h"
#include "daemon.h"
#include "evm_address.h"
#include "keyops.h"
#include "keyformat.h"
#include "log.h"
#include "report.h"
#include "router.h"
#include "secret.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <getopt.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define EXIT_FAIL 1
#define EXIT_USAGE 2

/* The options every command takes: in the usage and in each COMMAND --help. */
#define COMMON_OPTIONS \
"Options for every command:\n" \
"  -c, --config PATH                 configuration file (else $OMIKUJI_CONFIG,\n" \
"                                    ./omikuji.yaml, ~/.config/omikuji/omikuji.yaml,\n" \
"                                    /etc/omikuji/omikuji.yaml, built-in defaults)\n" \
"      --insecure-config-permissions accept a group/world-readable config file\n" \
"                                    that holds a secret\n" \
"  -h, --help                        this help\n"

static const char usage_text[] =
"Usage: omikuji-keyfs COMMAND [OPTIONS]\n"
"\n"
"Mount the private keys of an Omikuji deployment as files.\n"
"\n"
"Commands:\n"
"  mount [-c CONFIG] [-f] [-d] [-o FUSEOPT[,...]] MOUNTPOINT\n"
"        mount the key tree; returns once the mount serves (-f: stay in the\n"
"        foreground; -d: FUSE debug output; -o: FUSE options, e.g. allow_other;\n"
"        --no-audit: write no audit log, for measuring its cost only)\n"
"  key import --network NET [--key KEY | --file PATH] [-c CONFIG]\n"
"        store a key (from standard input without --key/--file; no echo) and\n"
"        print the EVM address it controls\n"
"  key export --network NET [--yes] [-c CONFIG]\n"
"        print a key to standard output (asks on a terminal unless --yes)\n"
"  key remove --network NET [--yes] [-c CONFIG]\n"
"        remove a key (asks on a terminal unless --yes)\n"
"  key list [--addresses] [-c CONFIG]\n"
"        list the networks that have a key (every backend instance;\n"
"        --addresses: each with its EVM address; the key never leaves the\n"
"        mount or the backend layer)\n"
"  key migrate [--from NAME|env] [--to NAME] [--network NET]...\n"
"              [--remove-source] [--force] [-c CONFIG]\n"
"        copy keys between backend instances (default: from the environment\n"
"        to key_storage), reading each back to verify; never replaces a\n"
"        different key without --force\n"
"  audit verify [--start SEQ:HASH] [--expect-seq N] [--key FILE] [AUDIT_LOG...]\n"
"        check the files (rotated ones first) as one hash chain; names the\n"
"        first bad line (--start: where the chain resumes, from a checkpoint;\n"
"        --expect-seq: the last seq the daemon wrote; --key: the HMAC key of\n"
"        a keyed chain, keyfs.audit_key_file)\n"
"  report weekly|monthly [--audit-log FILE]... [--until DATE] [--prometheus URL]\n"
"         [--format text|json|html] [-o FILE]\n"
"        the security report of the monitoring guide (see report --help)\n"
"  check-config [-c CONFIG]\n"
"        validate the configuration and print it with secrets masked\n"
"\n"
COMMON_OPTIONS
"  -V, --version                     print the version\n"
"\n"
"Exit status: 0 success, 1 operation failed, 2 usage or configuration error.\n"
"COMMAND --help shows one command's options; omikuji-keyfs(1) has everything.\n";

/* `omikuji-keyfs CMD --help`: the lines of usage_text for that command,
 * then the options every command takes. */
static const struct {
	const char *command;   /* "mount", "key import", ... */
	const char *text;
} command_help[] = {
	{ "mount",
"Usage: omikuji-keyfs mount [-c CONFIG] [-f] [-d] [-o FUSEOPT[,...]] [--no-audit] MOUNTPOINT\n"
"       omikuji-keyfs CONFIG|none MOUNTPOINT [-o FUSEOPT[,...]]   (mount helper: fstab, mount -t)\n"
"\n"
"Mount the key tree on MOUNTPOINT; returns once the mount serves.\n"
"  -f, --foreground   stay in the foreground (systemd, tests)\n"
"  -d, --debug        FUSE debug output (implies -f)\n"
"  -o, --options OPTS FUSE mount options, e.g. allow_other\n"
"      --no-audit     write no audit log (only for measuring its cost)\n"
"Stop with fusermount3 -u MOUNTPOINT (or umount, or SIGTERM).\n" },
	{ "key",
"Usage: omikuji-keyfs key import|export|remove|list [OPTIONS]\n"
"\n"
"  key import --network NET [--key KEY | --file PATH]   store a key (stdin without\n"
"                                      --key/--file, no echo); says created or replaced\n"
"  key export --network NET [--yes]    print a key (asks on a terminal unless --yes)\n"
"  key remove --network NET [--yes]    remove a key (asks on a terminal unless --yes)\n"
"  key list                            list the networks that have a key\n" },
	{ "key import",
"Usage: omikuji-keyfs key import --network NET [--key KEY | --file PATH] [-c CONFIG]\n"
"\n"
"Store the key of NET in the backend, from --key, --file or standard input (read\n"
"without echo on a terminal); prints whether it created or replaced the key.\n" },
	{ "key export",
"Usage: omikuji-keyfs key export --network NET [--yes] [-c CONFIG]\n"
"\n"
"Print the key of NET to standard output (asks on a terminal unless --yes).\n" },
	{ "key remove",
"Usage: omikuji-keyfs key remove --network NET [--yes] [-c CONFIG]\n"
"\n"
"Remove the key of NET from the backend (asks on a terminal unless --yes).\n" },
	{ "key list",
"Usage: omikuji-keyfs key list [-c CONFIG]\n"
"\n"
"List the networks that have a key, one per line.\n" },
	{ "audit",
"Usage: omikuji-keyfs audit verify [--start SEQ:HASH] [--expect-seq N] [--key FILE] [AUDIT_LOG...]\n"
"\n"
"Check the files (rotated ones first; default: keyfs.audit_log of the config)\n"
"as one hash chain; exits 1 naming the first edited, removed or reordered line.\n"
"  --start SEQ:HASH   where the chain resumes (an audit checkpoint of the log)\n"
"  --expect-seq N     the last seq the daemon wrote (gauge omikuji_keyfs_audit_last_seq)\n"
"  --key FILE         the HMAC key of a keyed chain (keyfs.audit_key_file)\n" },
	{ "check-config",
"Usage: omikuji-keyfs check-config [-c CONFIG]\n"
"\n"
"Validate the configuration and print it with secrets masked (only the active\n"
"backend's section); warns about http:// URLs of remote backends.\n" },
};

static const char common_help[] =
"\n"
COMMON_OPTIONS
"See omikuji-keyfs(1).\n";

static void print_help(const char *command)
{
	for (size_t i = 0; command && i < sizeof(command_help) / sizeof(command_help[0]); i++) {
		if (strcmp(command_help[i].command, command) == 0) {
			fputs(command_help[i].text, stdout);
			fputs(common_help, stdout);
			return;
		}
	}
	fputs(usage_text, stdout);
}

struct cli {
	const char *help_topic;   /* the command whose --help parse_options prints */
	const char *config_path;
	bool insecure_perms;
	const char *network;
	struct strlist networks;   /* every --network, in order */
	const char *from;
	const char *to;
	bool remove_source;
	bool force;
	const char *key;
	const char *key_file;
	bool yes;
	bool foreground;
	bool debug;
	bool no_audit;
	bool addresses;                /* key list --addresses */
	const char *fuse_options;
	const char *audit_start;       /* audit verify --start SEQ:HASH */
	const char *audit_expect_seq;  /* audit verify --expect-seq N */
	int argc;          /* positional arguments left */
	char **argv;
};

static int fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("omikuji-keyfs: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	return code;
}

/* Parse the options of a subcommand (argv[0] is the subcommand's name). */
static int parse_options(int argc, char **argv, struct cli *cli)
{
	enum { OPT_INSECURE = 256, OPT_NO_AUDIT, OPT_START, OPT_EXPECT_SEQ, OPT_FROM, OPT_TO,
	       OPT_REMOVE_SOURCE, OPT_FORCE, OPT_ADDRESSES };
	static const struct option options[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "network", required_argument, NULL, 'n' },
		{ "key", required_argument, NULL, 'k' },
		{ "file", required_argument, NULL, 'F' },
		{ "yes", no_argument, NULL, 'y' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "debug", no_argument, NULL, 'd' },
		{ "options", required_argument, NULL, 'o' },
		{ "insecure-config-permissions", no_argument, NULL, OPT_INSECURE },
		{ "no-audit", no_argument, NULL, OPT_NO_AUDIT },
		{ "start", required_argument, NULL, OPT_START },
		{ "expect-seq", required_argument, NULL, OPT_EXPECT_SEQ },
		{ "addresses", no_argument, NULL, OPT_ADDRESSES },
		{ "from", required_argument, NULL, OPT_FROM },
		{ "to", required_argument, NULL, OPT_TO },
		{ "remove-source", no_argument, NULL, OPT_REMOVE_SOURCE },
		{ "force", no_argument, NULL, OPT_FORCE },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	optind = 1;
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, "+c:n:k:F:yfdo:h", options, NULL)) != -1) {
		switch (c) {
		case 'c': cli->config_path = optarg; break;
		case 'n':
			cli->network = optarg;
			if (strlist_add(&cli->networks, optarg) < 0)
				return fail(EXIT_FAIL, "out of memory");
			break;
		case OPT_FROM: cli->from = optarg; break;
		case OPT_TO: cli->to = optarg; break;
		case OPT_REMOVE_SOURCE: cli->remove_source = true; break;
		case OPT_FORCE: cli->force = true; break;
		case 'k': cli->key = optarg; break;
		case 'F': cli->key_file = optarg; break;
		case 'y': cli->yes = true; break;
		case 'f': cli->foreground = true; break;
		case 'd': cli->debug = true; break;
		case 'o':
			if (cli->fuse_options)
				return fail(EXIT_USAGE, "give FUSE options as one -o a,b,c");
			cli->fuse_options = optarg;
			break;
		case OPT_INSECURE: cli->insecure_perms = true; break;
		case OPT_NO_AUDIT: cli->no_audit = true; break;
		case OPT_START: cli->audit_start = optarg; break;
		case OPT_EXPECT_SEQ: cli->audit_expect_seq = optarg; break;
		case OPT_ADDRESSES: cli->addresses = true; break;
		case 'h':
			print_help(cli->help_topic);
			exit(0);
		case '?':
		default:
			if (optopt)
				return fail(EXIT_USAGE, "%s: option -%c is unknown or needs a value "
				            "(see --help)", argv[0], optopt);
			return fail(EXIT_USAGE, "%s: unknown option '%s' (see --help)", argv[0],
			            argv[optind - 1]);
		}
	}
	cli->argc = argc - optind;
	cli->argv = argv + optind;
	return 0;
}

/* Load the config and configure the application log.  for_key: the key
 * commands, for which the daemon's log file may not be writable by the user
 * who runs them beside a mount (they then log nowhere rather than fail),
 * and whose own output is on stdout/stderr (stream targets are dropped). */
static int load_config_as(const struct cli *cli, struct config *cfg, bool for_key)
{
	char err[512] = "";
	char *path = config_find(cli->config_path);
	int rc = config_load(path, cli->insecure_perms ? CONFIG_ALLOW_INSECURE_PERMS : 0, cfg,
	                     err, sizeof(err));
	free(path);
	if (rc < 0)
		return fail(EXIT_USAGE, "%s", err);
	for (size_t i = 0; i < cfg->warnings.n; i++)
		fprintf(stderr, "omikuji-keyfs: warning: %s\n", cfg->warnings.items[i]);
	if (log_configure(&cfg->logging, err, sizeof(err)) < 0) {
		if (!for_key) {
			config_free(cfg);
			return fail(EXIT_USAGE, "%s", err);
		}
		struct config_logging none;
		memset(&none, 0, sizeof(none));
		log_configure(&none, err, sizeof(err));
	}
	if (for_key)
		log_drop_streams();
	return 0;
}

static int load_config(const struct cli *cli, struct config *cfg)
{
	return load_config_as(cli, cfg, false);
}

/* Where a key command acts (contract section 9): through the mount that
 * writes the same audit log when one runs (control.h), else on the backend
 * through the same key-operations path as the mount (access rules, the audit
 * line in the one chain, under the audit log's writer lock). */
struct key_target {
	const struct config *cfg;
	pid_t mount_pid;          /* > 0: through this mount */
	struct mount_state *k;          /* else: our own, holding the audit lock */
	struct caller self;
};

static int key_target_open(const struct config *cfg, struct key_target *t)
{
	char err[768] = "";
	memset(t, 0, sizeof(*t));
	t->cfg = cfg;
	/* The writer is a mount (go through it), or another key command or a
	 * mount still starting (wait for it, briefly), or nobody (be it). */
	struct timespec pause = { 0, 50 * 1000 * 1000 };
	for (int attempt = 0; attempt < 100; attempt++) {
		if (attempt)
			nanosleep(&pause, NULL);
		pid_t holder = audit_lock_holder(cfg->keyfs.audit_log);
		if (holder < 0)
			return fail(EXIT_FAIL, "cannot read the lock of the audit log %s: %s",
			            cfg->keyfs.audit_log, strerror(-holder));
		if (holder > 0) {
			snprintf(err, sizeof(err), "the audit log %s is in use by pid %d, which does "
			         "not answer on its control socket", cfg->keyfs.audit_log, (int)holder);
			if (control_probe(cfg->keyfs.audit_log, holder) < 0)
				continue;
			t->mount_pid = holder;
			return 0;
		}
		metrics_init();
		int rc = mount_state_new(cfg, getuid(), getgid(), true, &t->k, err, sizeof(err));
		if (rc == -EBUSY)
			continue;   /* someone took it in between */
		if (rc < 0)
			return fail(EXIT_FAIL, "%s", err);
		mount_state_caller_from_peer(t->k, getuid(), getgid(), getpid(), &t->self);
		return 0;
	}
	return fail(EXIT_FAIL, "%s", err);
}

static void key_target_close(struct key_target *t)
{
	mount_state_free(t->k);
	t->k = NULL;
}

/* Run req; 0 or -errno (> 0: exit code, the line is printed).  *reply gets
 * the key (get) or the names one per line (list); *why the reason of a
 * failure (static or in why_buf).  req->instance names the instance to act
 * on (key migrate), else the network's route decides. */
static int key_target_request(struct key_target *t, const struct control_request *req,
                              struct secret **reply, char *why_buf, size_t why_len)
{
	enum key_op op = req->op;
	const char *network = req->network;
	*reply = NULL;
	why_buf[0] = 0;
	if (t->mount_pid > 0) {
		char err[768] = "";
		int status = 0;
		struct secret *answer = NULL;
		if (control_call(t->cfg->keyfs.audit_log, t->mount_pid, req, &status, &answer, err,
		                 sizeof(err)) < 0)
			return fail(EXIT_FAIL, "%s", err);
		if (status < 0) {
			snprintf(why_buf, why_len, "%s", (char *)answer->data);
			secret_free(answer);
			return status;
		}
		*reply = answer;
		return 0;
	}
	int rc;
	struct strlist names = STRLIST_INIT;
	struct instance *in = NULL;
	if (req->instance && !(in = mount_state_instance(t->k, req->instance))) {
		snprintf(why_buf, why_len, "no backend instance named '%s'", req->instance);
		return -ENOENT;
	}
	switch (op) {
	case KEY_OP_GET:
		rc = in ? keyops_get_in(t->k, &t->self, in, network, req->refresh, reply)
		        : keyops_get(t->k, &t->self, network, req->refresh, reply);
		break;
	case KEY_OP_STORE:
		rc = in ? keyops_store_in(t->k, &t->self, in, network, req->key)
		        : keyops_store(t->k, &t->self, network, req->key);
		break;
	case KEY_OP_REMOVE:
		rc = in ? keyops_remove_in(t->k, &t->self, in, network)
		        : keyops_remove(t->k, &t->self, network);
		break;
	case KEY_OP_ADDRESS: {
		char address[EVM_ADDRESS_TEXT + 1];
		rc = keyops_address(t->k, &t->self, network, address);
		if (rc == 0 && !(*reply = secret_from(address, strlen(address))))
			rc = -ENOMEM;
		break;
	}
	default:
		rc = in ? keyops_list_in(t->k, &t->self, in, &names) : keyops_list(t->k, &t->self, &names);
		if (rc == 0 && !(*reply = secret_new(0)))
			rc = -ENOMEM;
		for (size_t i = 0; rc == 0 && i < names.n; i++)
			if (secret_append(*reply, names.items[i], strlen(names.items[i])) < 0 ||
			    secret_append(*reply, "\n", 1) < 0)
				rc = -ENOMEM;
		strlist_clear(&names);
		break;
	}
	if (rc < 0) {
		snprintf(why_buf, why_len, "%s", keyops_last_error());
		secret_free(*reply);
		*reply = NULL;
	}
	return rc;
}

/* key_target_request on the network's route. */
static int key_target_call(struct key_target *t, enum key_op op, const char *network,
                           const struct secret *key, struct secret **reply,
                           char *why_buf, size_t why_len)
{
	struct control_request req = { .op = op, .network = network, .key = key };
	return key_target_request(t, &req, reply, why_buf, why_len);
}

/* The reason to print for a failed key operation. */
static const char *key_reason(int rc, const char *why)
{
	return why && *why ? why : strerror(-rc);
}

/* The configured section of instance i: 0 is key_storage, i+1 is
 * keyfs.backends[i] (the router's numbering). */
static const struct config_backend *config_section(const struct config *cfg, size_t i)
{
	return i == 0 ? &cfg->key_storage : &cfg->keyfs.backends[i - 1];
}

/* The section of the instance called name; fails with the configured names. */
static int find_section(const struct config *cfg, const char *name,
                        const struct config_backend **out)
{
	char names[512] = "";
	for (size_t i = 0; i < 1 + cfg->keyfs.n_backends; i++) {
		const char *n = config_section(cfg, i)->name;
		if (strcmp(n, name) == 0) {
			*out = config_section(cfg, i);
			return 0;
		}
		size_t len = strlen(names);
		snprintf(names + len, sizeof(names) - len, "%s%s", i ? ", " : "", n);
	}
	return fail(EXIT_USAGE, "no backend instance named '%s' (configured: %s)", name, names);
}

/* Open and start a configured section (the one-line error is printed). */
static int open_section(const struct config_backend *sec, struct backend **out)
{
	struct backend_err err = { { 0 }, false };
	int rc = backend_open(sec, out, &err);
	if (rc == 0 && (rc = backend_start(*out, &err)) < 0) {
		(*out)->ops->close(*out);
		*out = NULL;
	}
	if (rc < 0)
		return fail(EXIT_FAIL, "%s backend '%s': %s", config_storage_name(sec), sec->name,
		            err.msg[0] ? err.msg : strerror(-rc));
	return 0;
}

/* The instance a network routes to (for messages; the mount routes the
 * operation itself). */
static const struct config_backend *routed_section(const struct config *cfg, const char *network)
{
	struct router *r = NULL;
	size_t i = 0;
	if (router_from_config(cfg, &r) == 0) {
		i = router_route(r, network);
		router_free(r);
	}
	return i == 0 ? &cfg->key_storage : &cfg->keyfs.backends[i - 1];
}

static int require_network(const struct cli *cli)
{
	if (!cli->network)
		return fail(EXIT_USAGE, "--network NET is required");
	if (!network_name_valid(cli->network))
		return fail(EXIT_USAGE, "invalid network name '%s' (expected [A-Za-z0-9][A-Za-z0-9._-]{0,63})",
		            cli->network);
	return 0;
}

/* Ask "really?" on a terminal; without one, --yes is required. */
static int confirm(const struct cli *cli, const char *what)
{
	if (cli->yes)
		return 0;
	if (!isatty(STDIN_FILENO))
		return fail(EXIT_USAGE, "%s needs --yes when standard input is not a terminal", what);
	fprintf(stderr, "%s for network '%s'? [y/N] ", what, cli->network);
	char answer[16] = "";
	if (!fgets(answer, sizeof(answer), stdin) || (answer[0] != 'y' && answer[0] != 'Y'))
		return fail(EXIT_FAIL, "cancelled");
	return 0;
}

/* Read a key from stdin with echo off on a terminal. */
static struct secret *read_key_stdin(void)
{
	struct termios old, quiet;
	bool tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0;
	if (tty) {
		fprintf(stderr, "Key: ");
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
	}
	struct secret *s = secret_new(KEY_MAX_BYTES + 64);
	unsigned char buf[512];
	ssize_t n;
	while (s && (n = read(STDIN_FILENO, buf, sizeof(buf))) > 0) {
		if (s->len + (size_t)n > KEY_MAX_BYTES + 64 || secret_append(s, buf, (size_t)n) < 0) {
			secret_free(s);
			s = NULL;
		}
		if (tty && s && memchr(buf, '\n', (size_t)n))
			break;
	}
	secret_wipe(buf, sizeof(buf));
	if (tty) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
		fputc('\n', stderr);
	}
	return s;
}

static struct secret *read_key_file(const char *path)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return NULL;
	struct secret *s = secret_new(KEY_MAX_BYTES + 64);
	unsigned char buf[512];
	size_t n;
	while (s && (n = fread(buf, 1, sizeof(buf), f)) > 0) {
		if (s->len + n > KEY_MAX_BYTES + 64 || secret_append(s, buf, n) < 0) {
			secret_free(s);
			s = NULL;
			errno = EFBIG;
		}
	}
	secret_wipe(buf, sizeof(buf));
	fclose(f);
	return s;
}

static int cmd_key_import(const struct cli *cli, const struct config *cfg)
{
	int rc = require_network(cli);
	if (rc)
		return rc;
	if (cli->key && cli->key_file)
		return fail(EXIT_USAGE, "give either --key or --file, not both");
	struct secret *raw;
	if (cli->key)
		raw = secret_from(cli->key, strlen(cli->key));
	else if (cli->key_file)
		raw = read_key_file(cli->key_file);
	else
		raw = read_key_stdin();
	if (!raw) {
		if (cli->key_file)
			return fail(EXIT_FAIL, "cannot read %s: %s", cli->key_file,
			            errno == EFBIG ? "larger than 4096 bytes" : strerror(errno));
		return fail(EXIT_FAIL, "cannot read the key (larger than 4096 bytes?)");
	}
	/* Stored in canonical form, as a write through the mount stores it. */
	const char *why = NULL;
	struct secret *key = NULL;
	rc = keyformat_canonical(cfg->keyfs.key_format, raw->data, raw->len, &key, &why);
	secret_free(raw);
	if (rc == -ENOMEM)
		return fail(EXIT_FAIL, "out of memory");
	if (rc < 0)
		return fail(EXIT_FAIL, "invalid key for network '%s': %s", cli->network, why);
	struct key_target t;
	if ((rc = key_target_open(cfg, &t))) {
		secret_free(key);
		return rc;
	}
	char reason[BACKEND_ERR_MAX];
	struct secret *reply = NULL;
	char address[EVM_ADDRESS_TEXT + 1] = "";
	rc = key_target_call(&t, KEY_OP_STORE, cli->network, key, &reply, reason, sizeof(reason));
	if (rc == 0 && cfg->keyfs.key_format == KEY_FORMAT_EVM &&
	    evm_address_derive(key->data, key->len, address) < 0)
		address[0] = 0;
	secret_free(key);
	/* The mount answers "created" or "replaced"; without a mount, this
	 * thread's store said it. */
	const char *outcome = t.mount_pid <= 0 ? keyops_last_store()
	                    : reply && reply->len == 8 && !memcmp(reply->data, "replaced", 8) ? "replaced"
	                    : reply && reply->len == 7 && !memcmp(reply->data, "created", 7) ? "created"
	                    : "stored";
	secret_free(reply);
	key_target_close(&t);
	if (rc > 0)
		return rc;
	const struct config_backend *to = routed_section(cfg, cli->network);
	if (rc < 0)
		return fail(EXIT_FAIL, "cannot store the key for '%s' in backend '%s': %s", cli->network,
		            to->name, key_reason(rc, reason));
	fprintf(stderr, "%s the key for network '%s' in backend '%s' (%s)%s\n", outcome, cli->network,
	        to->name, config_storage_name(to),
	        t.mount_pid > 0 ? " (through the running mount)" : "");
	if (address[0])   /* on stdout alone, for scripts: addr=$(... key import ...) */
		printf("%s\n", address);
	return 0;
}

static int cmd_key_export(const struct cli *cli, const struct config *cfg)
{
	int rc = require_network(cli);
	if (rc || (rc = confirm(cli, "Print the private key")))
		return rc;
	struct key_target t;
	if ((rc = key_target_open(cfg, &t)))
		return rc;
	char why[BACKEND_ERR_MAX];
	struct secret *key = NULL;
	rc = key_target_call(&t, KEY_OP_GET, cli->network, NULL, &key, why, sizeof(why));
	key_target_close(&t);
	if (rc > 0)
		return rc;
	if (rc == -ENOENT)
		return fail(EXIT_FAIL, "no key for network '%s'", cli->network);
	if (rc < 0)
		return fail(EXIT_FAIL, "cannot read the key for '%s': %s", cli->network,
		            key_reason(rc, why));
	fwrite(key->data, 1, key->len, stdout);
	fputc('\n', stdout);
	fflush(stdout);
	secret_free(key);
	return 0;
}

static int cmd_key_remove(const struct cli *cli, const struct config *cfg)
{
	int rc = require_network(cli);
	if (rc || (rc = confirm(cli, "Remove the key")))
		return rc;
	struct key_target t;
	if ((rc = key_target_open(cfg, &t)))
		return rc;
	char why[BACKEND_ERR_MAX];
	struct secret *reply = NULL;
	rc = key_target_call(&t, KEY_OP_REMOVE, cli->network, NULL, &reply, why, sizeof(why));
	secret_free(reply);
	key_target_close(&t);
	if (rc > 0)
		return rc;
	if (rc == -ENOENT)
		return fail(EXIT_FAIL, "no key for network '%s'", cli->network);
	if (rc < 0)
		return fail(EXIT_FAIL, "cannot remove the key for '%s': %s", cli->network,
		            key_reason(rc, why));
	fprintf(stderr, "removed the key for network '%s'\n", cli->network);
	return 0;
}

/* "NETWORK ADDRESS" lines for --addresses: each address comes from the
 * keyops_address (through the mount when one runs: its book,
 * no key fetch for a known key), so the key never reaches this process.
 * One that cannot be had prints "NETWORK -" and a line on stderr, and the
 * command fails after the whole list. */
static int print_addresses(struct key_target *t, const struct secret *names)
{
	int status = 0;
	const char *p = (const char *)names->data, *end = p + names->len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
		char network[65];
		if (len > 0 && len < sizeof(network)) {
			memcpy(network, p, len);
			network[len] = 0;
			char why[BACKEND_ERR_MAX];
			struct secret *address = NULL;
			int rc = key_target_call(t, KEY_OP_ADDRESS, network, NULL, &address, why,
			                         sizeof(why));
			if (rc > 0)
				return rc;
			printf("%s %s\n", network, rc == 0 ? (const char *)address->data : "-");
			fflush(stdout);
			if (rc < 0)
				status = fail(EXIT_FAIL, "no address for '%s': %s", network,
				              key_reason(rc, why));
			secret_free(address);
		}
		p += len + 1;
	}
	return status;
}

/* The union of every instance's listing, as keys/ shows it. */
static int cmd_key_list(const struct cli *cli, const struct config *cfg)
{
	struct key_target t;
	int rc = key_target_open(cfg, &t);
	if (rc)
		return rc;
	char why[BACKEND_ERR_MAX];
	struct secret *names = NULL;
	rc = key_target_call(&t, KEY_OP_LIST, "", NULL, &names, why, sizeof(why));
	if (rc == 0 && cli->addresses)
		rc = print_addresses(&t, names);
	else if (rc == 0)
		fwrite(names->data, 1, names->len, stdout);
	key_target_close(&t);
	secret_free(names);
	if (rc > 0)
		return rc;
	if (rc < 0)
		return fail(EXIT_FAIL, "cannot list keys: %s", key_reason(rc, why));
	return 0;
}

/* key migrate (contract sections 8 and 9): every step goes through the key
 * target, i.e. through the running mount when one writes the audit log,
 * else through this process's own keyops on the backends, so each read,
 * copy and removal is checked against the access rules as the invoking
 * user, audited with its uid (storage_type = the instance acted on) and
 * leaves no stale cache.  Only `--from env` with no instance called env
 * reads this process's own environment (as Omikuji's `key migrate`). */
struct migration {
	const struct cli *cli;
	const struct config *cfg;
	struct key_target *t;
	const char *from;           /* instance name; NULL: env_backend */
	struct backend *env_backend;
	const char *to;
};

/* The key network has in instance (read from the backend, not a cache) in
 * canonical form.  0, -errno with the reason in why, or > 0 (exit code,
 * printed). */
static int migration_read(struct migration *m, const char *instance, const char *network,
                          struct secret **key, char *why, size_t why_len)
{
	struct secret *raw = NULL;
	int rc;
	*key = NULL;
	if (instance) {
		struct control_request req = { .op = KEY_OP_GET, .network = network,
		                               .instance = instance, .refresh = true };
		rc = key_target_request(m->t, &req, &raw, why, why_len);
	} else {
		struct backend_err err = { { 0 }, false };
		rc = m->env_backend->ops->get(m->env_backend, network, &raw, 0, &err);
		snprintf(why, why_len, "%s", err.msg);
	}
	if (rc)
		return rc;
	const char *invalid = NULL;
	rc = keyformat_canonical(m->cfg->keyfs.key_format, raw->data, raw->len, key, &invalid);
	secret_free(raw);
	if (rc < 0 && rc != -ENOMEM)
		snprintf(why, why_len, "the key is not valid: %s", invalid);
	return rc;
}

static bool same_key(const struct secret *a, const struct secret *b)
{
	return a && b && a->len == b->len && CRYPTO_memcmp(a->data, b->data, a->len) == 0;
}

/* Copy one network's key and read it back.  0, or the exit code after
 * printing why. */
static int migrate_one(struct migration *m, const char *network)
{
	const char *from_name = m->from ? m->from : "env";
	struct secret *key = NULL, *there = NULL, *back = NULL, *reply = NULL;
	char why[BACKEND_ERR_MAX] = "";
	int code = 0;

	int rc = migration_read(m, m->from, network, &key, why, sizeof(why));
	if (rc > 0)
		return rc;
	if (rc < 0) {
		code = fail(EXIT_FAIL, "%s: cannot read from '%s': %s", network, from_name,
		            rc == -ENOENT && (!why[0] || !strcmp(why, "not found")) ? "no key"
		            : key_reason(rc, why));
		goto out;
	}
	rc = migration_read(m, m->to, network, &there, why, sizeof(why));
	if (rc > 0) {
		code = rc;
		goto out;
	}
	if (rc < 0 && rc != -ENOENT) {
		code = fail(EXIT_FAIL, "%s: cannot read from '%s': %s", network, m->to,
		            key_reason(rc, why));
		goto out;
	}
	bool same = same_key(there, key);
	if (there && !same && !m->cli->force) {
		code = fail(EXIT_FAIL, "%s: '%s' already holds a different key; not replaced "
		            "(--force replaces it)", network, m->to);
		goto out;
	}
	if (!same) {
		struct control_request req = { .op = KEY_OP_STORE, .network = network,
		                               .instance = m->to, .key = key };
		rc = key_target_request(m->t, &req, &reply, why, sizeof(why));
		if (rc > 0) {
			code = rc;
			goto out;
		}
		if (rc < 0) {
			code = fail(EXIT_FAIL, "%s: cannot store in '%s': %s", network, m->to,
			            key_reason(rc, why));
			goto out;
		}
	}
	/* Verified read-back: what the target's backend now answers is what
	 * the source holds. */
	rc = migration_read(m, m->to, network, &back, why, sizeof(why));
	if (rc > 0) {
		code = rc;
		goto out;
	}
	if (rc < 0 || !same_key(back, key)) {
		code = fail(EXIT_FAIL, "%s: read-back from '%s' %s; the source is kept", network,
		            m->to, rc < 0 ? "failed" : "differs");
		goto out;
	}
	if (m->cli->remove_source) {
		struct control_request req = { .op = KEY_OP_REMOVE, .network = network,
		                               .instance = m->from };
		secret_free(reply);
		reply = NULL;
		rc = key_target_request(m->t, &req, &reply, why, sizeof(why));
		if (rc > 0) {
			code = rc;
			goto out;
		}
		if (rc < 0) {
			code = fail(EXIT_FAIL, "%s: copied and verified, but not removed from '%s': %s",
			            network, from_name, key_reason(rc, why));
			goto out;
		}
	}
	fprintf(stderr, "%s: %s '%s' -> '%s', verified%s\n", network,
	        same ? "already in" : "copied", from_name, m->to,
	        m->cli->remove_source ? ", removed from the source" : "");
out:
	secret_free(key);
	secret_free(there);
	secret_free(back);
	secret_free(reply);
	return code;
}

/* The networks to migrate: --network, else what the source lists. */
static int migration_networks(struct migration *m, struct strlist *networks)
{
	if (m->cli->networks.n) {
		for (size_t i = 0; i < m->cli->networks.n; i++)
			if (strlist_add(networks, m->cli->networks.items[i]) < 0)
				return fail(EXIT_FAIL, "out of memory");
		return 0;
	}
	struct strlist listed = STRLIST_INIT;
	char why[BACKEND_ERR_MAX] = "";
	int rc;
	if (m->from) {
		struct control_request req = { .op = KEY_OP_LIST, .network = "", .instance = m->from };
		struct secret *names = NULL;
		rc = key_target_request(m->t, &req, &names, why, sizeof(why));
		for (const char *p = names ? (const char *)names->data : NULL; rc == 0 && p && *p;) {
			const char *nl = strchr(p, '\n');
			size_t len = nl ? (size_t)(nl - p) : strlen(p);
			char *name = strndup(p, len);
			if (!name || strlist_add(&listed, name) < 0)
				rc = -ENOMEM;
			free(name);
			p += len + (nl ? 1 : 0);
		}
		secret_free(names);
	} else {
		struct backend_err err = { { 0 }, false };
		rc = m->env_backend->ops->list(m->env_backend, &listed, 0, &err);
		snprintf(why, sizeof(why), "%s", err.msg);
	}
	if (rc > 0) {
		strlist_clear(&listed);
		return rc;
	}
	if (rc < 0) {
		strlist_clear(&listed);
		return fail(EXIT_FAIL, "cannot list the keys of '%s': %s", m->from ? m->from : "env",
		            key_reason(rc, why));
	}
	for (size_t i = 0; i < listed.n; i++)
		if (network_name_valid(listed.items[i]) && strlist_add(networks, listed.items[i]) < 0)
			rc = -ENOMEM;
	strlist_clear(&listed);
	return rc < 0 ? fail(EXIT_FAIL, "out of memory") : 0;
}

static int cmd_key_migrate(const struct cli *cli, const struct config *cfg)
{
	const char *from = cli->from ? cli->from : "env";
	const char *to = cli->to ? cli->to : cfg->key_storage.name;
	const struct config_backend *src = NULL, *dst = NULL;
	struct config_backend env_section;
	struct strlist networks = STRLIST_INIT;
	struct key_target t;
	bool target_open = false;
	struct router *router = NULL;
	struct migration m = { .cli = cli, .cfg = cfg, .t = &t };
	int rc = 0;

	for (size_t i = 0; i < cli->networks.n; i++)
		if (!network_name_valid(cli->networks.items[i]))
			return fail(EXIT_USAGE, "invalid network name '%s'", cli->networks.items[i]);
	/* "env" is the environment even when no instance is called so, as in
	 * Omikuji's own `key migrate`. */
	if (strcmp(from, "env") == 0) {
		for (size_t i = 0; i < 1 + cfg->keyfs.n_backends; i++)
			if (strcmp(config_section(cfg, i)->name, "env") == 0)
				src = config_section(cfg, i);
	} else if ((rc = find_section(cfg, from, &src))) {
		return rc;
	}
	if ((rc = find_section(cfg, to, &dst)))
		return rc;
	if (src == dst)
		return fail(EXIT_USAGE, "key migrate: --from and --to name the same backend '%s'", to);
	if (cli->remove_source && (!src || (src->type->flags & BACKEND_READ_ONLY)))
		return fail(EXIT_USAGE, "--remove-source: backend '%s' (%s) is read-only",
		            src ? src->name : "env", src ? src->type->name : "env");
	m.to = dst->name;
	m.from = src ? src->name : NULL;
	if (!src) {
		memset(&env_section, 0, sizeof(env_section));
		env_section.name = (char *)"env";
		env_section.type = backend_type_find("env");
		if ((rc = open_section(&env_section, &m.env_backend)))
			return rc;
	}
	if ((rc = key_target_open(cfg, &t)))
		goto out;
	target_open = true;
	if ((rc = migration_networks(&m, &networks)))
		goto out;
	strlist_sort_unique(&networks);
	if (networks.n == 0)
		fprintf(stderr, "nothing to migrate: '%s' holds no keys\n", from);
	if (router_from_config(cfg, &router) < 0) {
		rc = fail(EXIT_FAIL, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < networks.n; i++) {
		int r = migrate_one(&m, networks.items[i]);
		if (r) {
			rc = r;
			continue;
		}
		const struct config_backend *routed = config_section(cfg, router_route(router, networks.items[i]));
		if (routed != dst)
			fprintf(stderr, "note: %s routes to '%s', not '%s': the mount reads it from '%s'\n",
			        networks.items[i], routed->name, dst->name, routed->name);
	}
	if (t.mount_pid > 0)
		fprintf(stderr, "(through the running mount, pid %d)\n", (int)t.mount_pid);
out:
	strlist_clear(&networks);
	router_free(router);
	if (target_open)
		key_target_close(&t);
	if (m.env_backend)
		m.env_backend->ops->close(m.env_backend);
	return rc;
}

static int cmd_key(int argc, char **argv, struct cli *cli)
{
	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		print_help("key");
		return 0;
	}
	if (argc < 2)
		return fail(EXIT_USAGE, "key: expected import, export, remove, list or migrate (see --help)");
	const char *sub = argv[1];
	char topic[32];
	snprintf(topic, sizeof(topic), "key %s", sub);
	cli->help_topic = topic;
	int rc = parse_options(argc - 1, argv + 1, cli);
	if (rc)
		return rc;
	if (cli->argc > 0)
		return fail(EXIT_USAGE, "key %s: unexpected argument '%s'", sub, cli->argv[0]);
	if (cli->addresses && strcmp(sub, "list") != 0)
		return fail(EXIT_USAGE, "key %s: --addresses belongs to key list", sub);
	int (*fn)(const struct cli *, const struct config *) = NULL;
	if (strcmp(sub, "import") == 0)
		fn = cmd_key_import;
	else if (strcmp(sub, "export") == 0)
		fn = cmd_key_export;
	else if (strcmp(sub, "remove") == 0)
		fn = cmd_key_remove;
	else if (strcmp(sub, "list") == 0)
		fn = cmd_key_list;
	else if (strcmp(sub, "migrate") == 0)
		fn = cmd_key_migrate;
	else
		return fail(EXIT_USAGE, "key: unknown command '%s' (expected import, export, remove, "
		            "list, migrate)", sub);
	struct config cfg;
	if ((rc = load_config_as(cli, &cfg, true)))
		return rc;
	rc = fn(cli, &cfg);
	config_free(&cfg);
	return rc;
}

static int cmd_mount(struct cli *cli)
{
	if (cli->argc != 1)
		return fail(EXIT_USAGE, "mount: expected one MOUNTPOINT (see --help)");
	struct config cfg;
	int rc = load_config(cli, &cfg);
	if (rc)
		return rc;
	struct daemon_options opt = {
		.mountpoint = cli->argv[0],
		.foreground = cli->foreground,
		.debug = cli->debug,
		.fuse_options = cli->fuse_options,
		.audit = !cli->no_audit,
	};
	rc = daemon_run(&cfg, &opt);
	config_free(&cfg);
	return rc;
}

/* The mount-helper form (contract section 10): mount.fuse3 runs
 * `omikuji-keyfs CONFIG MOUNTPOINT -o OPTIONS` for an fstab line or
 * `mount -t fuse.omikuji-keyfs CONFIG MOUNTPOINT`; CONFIG `none` means the
 * search order.  Recognised when the first word is no command: an existing
 * file, `none`, or a path, followed by a mountpoint. */
static bool is_helper_form(int argc, char **argv)
{
	if (argc < 3 || argv[1][0] == '-' || argv[2][0] == '-')
		return false;
	return strcmp(argv[1], "none") == 0 || strchr(argv[1], '/') != NULL ||
	       access(argv[1], F_OK) == 0;
}

static int cmd_mount_helper(int argc, char **argv, struct cli *cli)
{
	const char *config = argv[1];
	const char *mountpoint = argv[2];
	/* mount.fuse3 may add options after the mountpoint: -o OPTS only. */
	cli->help_topic = "mount";
	int rc = parse_options(argc - 2, argv + 2, cli);
	if (rc)
		return rc;
	if (cli->argc > 0)
		return fail(EXIT_USAGE, "unexpected argument '%s' after %s %s (expected -o OPTIONS)",
		            cli->argv[0], config, mountpoint);
	if (strcmp(config, "none") != 0) {
		if (cli->config_path)
			return fail(EXIT_USAGE, "give the configuration once: %s or -c %s", config,
			            cli->config_path);
		cli->config_path = config;
	}
	cli->argc = 1;
	cli->argv = argv + 2;
	return cmd_mount(cli);
}

static int cmd_audit(int argc, char **argv, struct cli *cli)
{
	cli->help_topic = "audit";
	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		print_help("audit");
		return 0;
	}
	if (argc < 2 || strcmp(argv[1], "verify") != 0)
		return fail(EXIT_USAGE, "audit: expected 'verify [--start SEQ:HASH] [--expect-seq N] "
		            "[AUDIT_LOG...]'");
	int rc = parse_options(argc - 1, argv + 1, cli);
	if (rc)
		return rc;
	struct audit_verify_options opt;
	memset(&opt, 0, sizeof(opt));
	if (cli->audit_start && audit_parse_start(cli->audit_start, &opt) < 0)
		return fail(EXIT_USAGE, "audit verify: --start wants SEQ:HASH (a checkpoint's seq and "
		            "its 64 hex digit hash), not '%s'", cli->audit_start);
	if (cli->audit_expect_seq) {
		char *end = NULL;
		errno = 0;
		unsigned long long n = strtoull(cli->audit_expect_seq, &end, 10);
		if (errno || !*cli->audit_expect_seq || *end || cli->audit_expect_seq[0] == '-')
			return fail(EXIT_USAGE, "audit verify: --expect-seq wants a number, not '%s'",
			            cli->audit_expect_seq);
		opt.have_expect = true;
		opt.expect_seq = n;
	}
	struct config cfg;
	const char *const *files = (const char *const *)cli->argv;
	size_t n = (size_t)cli->argc;
	const char *one[1];
	bool loaded = false;
	const char *key_file = cli->key;   /* --key FILE: a keyed chain */
	if (n == 0) {
		if ((rc = load_config(cli, &cfg)))
			return rc;
		loaded = true;
		one[0] = cfg.keyfs.audit_log;
		files = one;
		n = 1;
		if (!key_file)
			key_file = cfg.keyfs.audit_key_file;
	}
	struct secret *key = NULL;
	if (key_file) {
		char err[512] = "";
		if (audit_key_load(key_file, &key, err, sizeof(err)) < 0) {
			if (loaded)
				config_free(&cfg);
			return fail(EXIT_USAGE, "audit verify: %s", err);
		}
		opt.key = key;
	}
	size_t bad_file = 0;
	long bad = 0;
	rc = audit_verify_files(files, n, &opt, stdout, &bad_file, &bad);
	secret_free(key);
	if (rc < 0)
		rc = fail(EXIT_FAIL, "cannot read %s: %s", files[bad_file], strerror(-rc));
	else if (rc > 0 && bad > 0)
		rc = fail(EXIT_FAIL, "%s: chain broken at line %ld", files[bad_file], bad);
	else if (rc > 0)
		rc = fail(EXIT_FAIL, "%s: chain incomplete at the end", files[n - 1]);
	if (loaded)
		config_free(&cfg);
	return rc;
}

static int cmd_check_config(struct cli *cli)
{
	if (cli->argc > 0)
		return fail(EXIT_USAGE, "check-config: unexpected argument '%s'", cli->argv[0]);
	struct config cfg;
	int rc = load_config(cli, &cfg);
	if (rc)
		return rc;
	/* Resolve what the daemon resolves at start: user and group names of
	 * the access rules, the business-hours time zone. */
	char err[512] = "";
	struct access *acc = NULL;
	struct anomaly *an = NULL;
	if (daemon_check_run_as(&cfg, err, sizeof(err)) < 0 ||
	    access_new(&cfg.keyfs, getuid(), &acc, err, sizeof(err)) < 0 ||
	    anomaly_new(&cfg.keyfs, NULL, &an, err, sizeof(err)) < 0) {
		rc = fail(EXIT_USAGE, "%s: %s", cfg.source ? cfg.source : "built-in defaults", err);
		access_free(acc);
		config_free(&cfg);
		return rc;
	}
	access_free(acc);
	anomaly_free(an);
	config_print(&cfg, stdout);
	for (size_t i = 0; i <= cfg.keyfs.n_backends; i++) {
		const struct config_backend *b = i == 0 ? &cfg.key_storage : &cfg.keyfs.backends[i - 1];
		if (!b->type->ops) {
			if (i == 0)
				rc = fail(EXIT_USAGE, "%s: storage_type '%s' is not supported by this build",
				          cfg.source ? cfg.source : "built-in defaults", b->type->name);
			else
				rc = fail(EXIT_USAGE, "%s:%d:%d: backend '%s': storage_type '%s' is not "
				          "supported by this build", cfg.source, b->line, b->column, b->name,
				          b->type->name);
		}
	}
	config_free(&cfg);
	return rc;
}

static int run_command(int argc, char **argv, struct cli *cli)
{
	const char *cmd = argv[1];
	if (strcmp(cmd, "key") == 0)
		return cmd_key(argc - 1, argv + 1, cli);
	if (strcmp(cmd, "audit") == 0)
		return cmd_audit(argc - 1, argv + 1, cli);
	if (strcmp(cmd, "report") == 0)
		return report_main(argc - 1, argv + 1);
	if (is_helper_form(argc, argv))
		return cmd_mount_helper(argc, argv, cli);
	cli->help_topic = cmd;
	int rc = parse_options(argc - 1, argv + 1, cli);
	if (rc)
		return rc;
	if (strcmp(cmd, "mount") == 0)
		return cmd_mount(cli);
	if (strcmp(cmd, "check-config") == 0)
		return cmd_check_config(cli);
	return fail(EXIT_USAGE, "unknown command '%s' (see --help)", cmd);
}

int main(int argc, char **argv)
{
	struct cli cli;
	memset(&cli, 0, sizeof(cli));
	daemon_harden();
	/* One malloc arena for every thread (issue 15, goal 3).  glibc gives
	 * threads that allocate at once arenas of their own, up to 8 per core;
	 * the FUSE workers then spread a mount's per-network records over
	 * several arenas, each keeping free space the others cannot reuse.
	 * At 10 000 cached keys this measured 1.5 MiB of RSS (BENCHMARKS.md,
	 * round 4); small allocations still come from per-thread caches. */
	mallopt(M_ARENA_MAX, 1);
	/* libcrypto's error strings are never loaded (issue 15, goal 3):
	 * libcurl's OpenSSL start-up would put its ~3 000 reason strings in a
	 * hash table (57 kB of heap) and fault in ~0.5 MiB of libcrypto's
	 * pages.  Nothing here shows them: our messages come from
	 * curl_easy_strerror and our own text, never ERR_error_string.  Once
	 * refused, OpenSSL ignores a later request to load them (curl's). */
	OPENSSL_init_crypto(OPENSSL_INIT_NO_LOAD_CRYPTO_STRINGS, NULL);
	secret_json_allocator_install();

	if (argc < 2)
		return fail(EXIT_USAGE, "missing command\n%s", usage_text);
	const char *cmd = argv[1];
	if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
		fputs(usage_text, stdout);
		return 0;
	}
	if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
		printf("omikuji-keyfs %s\n", KEYFS_VERSION);
		return 0;
	}
	int rc = run_command(argc, argv, &cli);
	strlist_clear(&cli.networks);
	return rc;
}
