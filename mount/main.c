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
#include "daemon.h"
#include "evm_address.h"
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
"        address, derived without printing the key)\n"
"  audit verify [AUDIT_LOG]\n"
"        check the audit log's hash chain; names the first bad line\n"
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
	bool addresses;    /* key list --addresses */
	const char *fuse_options;
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
	enum { OPT_INSECURE = 256, OPT_NO_AUDIT, OPT_ADDRESSES };
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

static int load_config(const struct cli *cli, struct config *cfg)
{
	char err[512] = "";
	char *path = config_find(cli->config_path);
	int rc = config_load(path, cli->insecure_perms ? CONFIG_ALLOW_INSECURE_PERMS : 0, cfg,
	                     err, sizeof(err));
	free(path);
	if (rc < 0)
		return fail(EXIT_USAGE, "%s", err);
	if (log_configure(&cfg->logging, err, sizeof(err)) < 0) {
		config_free(cfg);
		return fail(EXIT_USAGE, "%s", err);
	}
	return 0;
}

static int open_backend(const struct config *cfg, struct backend **b)
{
	struct backend_err err = { { 0 }, false };
	int rc = backend_open(cfg, b, &err);
	if (rc < 0)
		return fail(EXIT_FAIL, "%s backend: %s", config_storage_name(cfg->storage_type),
		            err.msg[0] ? err.msg : strerror(-rc));
	return 0;
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
	size_t start = 0, len = 0;
	const char *why = NULL;
	rc = keyformat_validate(cfg->keyfs.key_format, raw->data, raw->len, &start, &len, &why);
	if (rc < 0) {
		secret_free(raw);
		return fail(EXIT_FAIL, "invalid key for network '%s': %s", cli->network, why);
	}
	struct secret *key = secret_from(raw->data + start, len);
	secret_free(raw);
	struct backend *b = NULL;
	rc = open_backend(cfg, &b);
	if (rc) {
		secret_free(key);
		return rc;
	}
	struct backend_err err = { { 0 }, false };
	char address[EVM_ADDRESS_TEXT + 1] = "";
	rc = key ? b->ops->store(b, cli->network, key, &err) : -ENOMEM;
	if (rc == 0 && cfg->keyfs.key_format == KEY_FORMAT_EVM &&
	    evm_address_derive(key->data, key->len, address) < 0)
		address[0] = 0;
	secret_free(key);
	b->ops->close(b);
	if (rc < 0)
		return fail(EXIT_FAIL, "cannot store the key for '%s' in %s: %s", cli->network,
		            b ? config_storage_name(cfg->storage_type) : "", err.msg[0] ? err.msg : strerror(-rc));
	fprintf(stderr, "stored the key for network '%s' in the %s backend\n", cli->network,
	        config_storage_name(cfg->storage_type));
	if (address[0])   /* on stdout alone, for scripts: addr=$(... key import ...) */
		printf("%s\n", address);
	return 0;
}

static int cmd_key_export(const struct cli *cli, const struct config *cfg)
{
	int rc = require_network(cli);
	if (rc || (rc = confirm(cli, "Print the private key")))
		return rc;
	struct backend *b = NULL;
	if ((rc = open_backend(cfg, &b)))
		return rc;
	struct backend_err err = { { 0 }, false };
	struct secret *key = NULL;
	rc = b->ops->get(b, cli->network, &key, &err);
	b->ops->close(b);
	if (rc == -ENOENT)
		return fail(EXIT_FAIL, "no key for network '%s'", cli->network);
	if (rc < 0)
		return fail(EXIT_FAIL, "cannot read the key for '%s': %s", cli->network,
		            err.msg[0] ? err.msg : strerror(-rc));
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
	struct backend *b = NULL;
	if ((rc = open_backend(cfg, &b)))
		return rc;
	struct backend_err err = { { 0 }, false };
	rc = b->ops->remove(b, cli->network, &err);
	b->ops->close(b);
	if (rc == -ENOENT)
		return fail(EXIT_FAIL, "no key for network '%s'", cli->network);
	if (rc < 0)
		return fail(EXIT_FAIL, "cannot remove the key for '%s': %s", cli->network,
		            err.msg[0] ? err.msg : strerror(-rc));
	fprintf(stderr, "removed the key for network '%s'\n", cli->network);
	return 0;
}

/* "NETWORK ADDRESS" for --addresses: each key is fetched, its address
 * derived, and the key wiped; a key that cannot be read prints "-" and a
 * line on stderr, and makes the command fail after the whole list. */
static int print_address_line(struct backend *b, const struct config *cfg, const char *network)
{
	struct backend_err err = { { 0 }, false };
	struct secret *key = NULL;
	char address[EVM_ADDRESS_TEXT + 1] = "-";
	int rc = cfg->keyfs.key_format == KEY_FORMAT_EVM ? b->ops->get(b, network, &key, &err)
	                                                : -EINVAL;
	if (rc == 0 && evm_address_derive(key->data, key->len, address) < 0) {
		rc = -EINVAL;
		snprintf(address, sizeof(address), "-");
	}
	secret_free(key);
	printf("%s %s\n", network, address);
	if (rc == -EINVAL)
		return fail(EXIT_FAIL, "no address for '%s': %s", network,
		            cfg->keyfs.key_format == KEY_FORMAT_EVM ? "the stored key is not an evm key"
		                                                     : "key_format is not evm");
	if (rc < 0)
		return fail(EXIT_FAIL, "cannot read the key for '%s': %s", network,
		            err.msg[0] ? err.msg : strerror(-rc));
	return 0;
}

static int cmd_key_list(const struct cli *cli, const struct config *cfg)
{
	struct backend *b = NULL;
	int rc = open_backend(cfg, &b);
	if (rc)
		return rc;
	struct backend_err err = { { 0 }, false };
	struct strlist names = STRLIST_INIT;
	rc = b->ops->list(b, &names, &err);
	if (rc < 0) {
		b->ops->close(b);
		strlist_clear(&names);
		return fail(EXIT_FAIL, "cannot list keys: %s", err.msg[0] ? err.msg : strerror(-rc));
	}
	strlist_sort_unique(&names);
	for (size_t i = 0; i < names.n; i++) {
		if (!network_name_valid(names.items[i]))
			continue;
		if (!cli->addresses)
			puts(names.items[i]);
		else if (print_address_line(b, cfg, names.items[i]) != 0)
			rc = EXIT_FAIL;
	}
	b->ops->close(b);
	strlist_clear(&names);
	return rc;
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
	if ((rc = load_config(cli, &cfg)))
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
		return fail(EXIT_USAGE, "audit: expected 'verify [AUDIT_LOG]'");
	int rc = parse_options(argc - 1, argv + 1, cli);
	if (rc)
		return rc;
	if (cli->argc > 1)
		return fail(EXIT_USAGE, "audit verify: expected at most one AUDIT_LOG");
	struct config cfg;
	const char *path;
	bool loaded = false;
	if (cli->argc == 1) {
		path = cli->argv[0];
	} else {
		if ((rc = load_config(cli, &cfg)))
			return rc;
		loaded = true;
		path = cfg.keyfs.audit_log;
	}
	long bad = 0;
	rc = audit_verify(path, stdout, &bad);
	if (rc < 0)
		rc = fail(EXIT_FAIL, "cannot read %s: %s", path, strerror(-rc));
	else if (rc > 0)
		rc = fail(EXIT_FAIL, "%s: chain broken at line %ld", path, bad);
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
	if (access_new(&cfg.keyfs, getuid(), &acc, err, sizeof(err)) < 0 ||
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
