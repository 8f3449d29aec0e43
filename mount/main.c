/* main.c - the command line (contract section 3).
 *
 * Exit codes: 0 success, 1 the operation failed (backend, I/O, invalid key,
 * not found), 2 usage or configuration error.  Every failure prints one line
 * to stderr naming what is wrong; key material is printed only by
 * `key export`, to stdout.
 */
#include "access.h"
#include "audit.h"
#include "backend.h"
#include "config.h"
#include "control.h"
#include "daemon.h"
#include "evm_address.h"
#include "keyfs.h"
#include "keyformat.h"
#include "log.h"
#include "secret.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define EXIT_FAIL 1
#define EXIT_USAGE 2

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
"        list the networks that have a key (--addresses: each with its EVM\n"
"        address; the key never leaves the mount or the backend layer)\n"
"  audit verify [--start SEQ:HASH] [--expect-seq N] [--key FILE] [AUDIT_LOG...]\n"
"        check the files (rotated ones first) as one hash chain; names the\n"
"        first bad line (--start: where the chain resumes, from a checkpoint;\n"
"        --expect-seq: the last seq the daemon wrote; --key: the HMAC key of\n"
"        a keyed chain, keyfs.audit_key_file)\n"
"  check-config [-c CONFIG]\n"
"        validate the configuration and print it with secrets masked\n"
"\n"
"Options for every command:\n"
"  -c, --config PATH                 configuration file (else $OMIKUJI_CONFIG,\n"
"                                    ./omikuji.yaml, ~/.config/omikuji/omikuji.yaml,\n"
"                                    /etc/omikuji/omikuji.yaml, built-in defaults)\n"
"      --insecure-config-permissions accept a group/world-readable config file\n"
"                                    that holds a secret\n"
"  -h, --help                        this help\n"
"  -V, --version                     print the version\n"
"\n"
"Exit status: 0 success, 1 operation failed, 2 usage or configuration error.\n";

struct cli {
	const char *config_path;
	bool insecure_perms;
	const char *network;
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
	enum { OPT_INSECURE = 256, OPT_NO_AUDIT, OPT_START, OPT_EXPECT_SEQ, OPT_ADDRESSES };
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
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	optind = 1;
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, "+c:n:k:F:yfdo:h", options, NULL)) != -1) {
		switch (c) {
		case 'c': cli->config_path = optarg; break;
		case 'n': cli->network = optarg; break;
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
			fputs(usage_text, stdout);
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
 * through the same keystore path as the mount (access rules, the audit
 * line in the one chain, under the audit log's writer lock). */
struct key_target {
	const struct config *cfg;
	pid_t mount_pid;          /* > 0: through this mount */
	struct keyfs *k;          /* else: our own, holding the audit lock */
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
		int rc = keyfs_new(cfg, getuid(), getgid(), true, &t->k, err, sizeof(err));
		if (rc == -EBUSY)
			continue;   /* someone took it in between */
		if (rc < 0)
			return fail(EXIT_FAIL, "%s", err);
		keyfs_caller_from_peer(t->k, getuid(), getgid(), getpid(), &t->self);
		return 0;
	}
	return fail(EXIT_FAIL, "%s", err);
}

static void key_target_close(struct key_target *t)
{
	keyfs_free(t->k);
	t->k = NULL;
}

/* Run op; 0 or -errno (> 0: exit code, the line is printed).  *reply gets
 * the key (get) or the names one per line (list); *why the reason of a
 * failure (static or in why_buf). */
static int key_target_call(struct key_target *t, enum key_op op, const char *network,
                           const struct secret *key, struct secret **reply,
                           char *why_buf, size_t why_len)
{
	*reply = NULL;
	why_buf[0] = 0;
	if (t->mount_pid > 0) {
		char err[768] = "";
		int status = 0;
		struct secret *answer = NULL;
		if (control_call(t->cfg->keyfs.audit_log, t->mount_pid, op, network, key, &status,
		                 &answer, err, sizeof(err)) < 0)
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
	switch (op) {
	case KEY_OP_GET:
		rc = keystore_get(t->k, &t->self, network, false, reply);
		break;
	case KEY_OP_STORE:
		rc = keystore_store(t->k, &t->self, network, key);
		break;
	case KEY_OP_REMOVE:
		rc = keystore_remove(t->k, &t->self, network);
		break;
	case KEY_OP_ADDRESS: {
		char address[EVM_ADDRESS_TEXT + 1];
		rc = keystore_address(t->k, &t->self, network, address);
		if (rc == 0 && !(*reply = secret_from(address, strlen(address))))
			rc = -ENOMEM;
		break;
	}
	default:
		rc = keystore_list(t->k, &t->self, &names);
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
		snprintf(why_buf, why_len, "%s", keystore_last_error());
		secret_free(*reply);
		*reply = NULL;
	}
	return rc;
}

/* The reason to print for a failed key operation. */
static const char *key_reason(int rc, const char *why)
{
	return why && *why ? why : strerror(-rc);
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
	secret_free(reply);
	key_target_close(&t);
	if (rc > 0)
		return rc;
	if (rc < 0)
		return fail(EXIT_FAIL, "cannot store the key for '%s' in the %s backend: %s", cli->network,
		            config_storage_name(cfg->storage_type), key_reason(rc, reason));
	fprintf(stderr, "stored the key for network '%s' in the %s backend%s\n", cli->network,
	        config_storage_name(cfg->storage_type),
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
 * keystore's address operation (through the mount when one runs: its book,
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

static int cmd_key(int argc, char **argv, struct cli *cli)
{
	if (argc < 2)
		return fail(EXIT_USAGE, "key: expected import, export, remove or list (see --help)");
	const char *sub = argv[1];
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
	else
		return fail(EXIT_USAGE, "key: unknown command '%s' (expected import, export, remove, list)", sub);
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

static int cmd_audit(int argc, char **argv, struct cli *cli)
{
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
	const struct backend_ops *ops = backend_ops_for(cfg.storage_type);
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
	if (!ops)
		rc = fail(EXIT_USAGE, "%s: storage_type '%s' is not supported by this build",
		          cfg.source ? cfg.source : "built-in defaults",
		          config_storage_name(cfg.storage_type));
	config_free(&cfg);
	return rc;
}

int main(int argc, char **argv)
{
	struct cli cli;
	memset(&cli, 0, sizeof(cli));
	daemon_harden();
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
	if (strcmp(cmd, "key") == 0)
		return cmd_key(argc - 1, argv + 1, &cli);
	if (strcmp(cmd, "audit") == 0)
		return cmd_audit(argc - 1, argv + 1, &cli);
	int rc = parse_options(argc - 1, argv + 1, &cli);
	if (rc)
		return rc;
	if (strcmp(cmd, "mount") == 0)
		return cmd_mount(&cli);
	if (strcmp(cmd, "check-config") == 0)
		return cmd_check_config(&cli);
	return fail(EXIT_USAGE, "unknown command '%s' (see --help)", cmd);
}
