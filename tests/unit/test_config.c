/* test_config.c - config_load / config_print / config_find (mount/config.c):
 * defaults, the example file, Omikuji's sections, every kind of error with
 * its line and column, ${VAR} and ~ expansion, the permission check for
 * inline secrets, masked printing that re-loads, and the search order. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/rand.h>

#include "backend.h"
#include "config.h"

/* Criterion forks one process per test, so setenv/chdir stay in the test. */

static char tmpdir[256];
static char err[1024];

static void make_tmpdir(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test-config-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
	/* A predictable HOME and no XDG overrides from the caller's session. */
	setenv("HOME", tmpdir, 1);
	unsetenv("XDG_DATA_HOME");
	unsetenv("XDG_STATE_HOME");
	unsetenv("XDG_CONFIG_HOME");
	unsetenv("OMIKUJI_CONFIG");
}

static void remove_tmpdir(void)
{
	char cmd[PATH_MAX + 16];
	if (!tmpdir[0])
		return;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmpdir);
}

TestSuite(config, .init = make_tmpdir, .fini = remove_tmpdir);

/* Write text to tmpdir/name with mode; returns the path (static buffer). */
static const char *write_file(const char *name, const char *text, mode_t mode)
{
	static char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	cr_assert(fd >= 0, "create %s", path);
	size_t len = strlen(text);
	cr_assert_eq(write(fd, text, len), (ssize_t)len);
	close(fd);
	cr_assert_eq(chmod(path, mode), 0);
	return path;
}

static const char *fixture(const char *name)
{
	static char path[PATH_MAX];
	const char *dir = getenv("TESTS_SOURCE_DIR");
	snprintf(path, sizeof(path), "%s/unit/config/%s", dir ? dir : TESTS_SOURCE_DIR, name);
	return path;
}

/* A throwaway token: random hex, never a real credential. */
static void random_token(char *out, size_t hexlen)
{
	unsigned char raw[32];
	cr_assert(hexlen / 2 <= sizeof(raw));
	cr_assert_eq(RAND_bytes(raw, (int)(hexlen / 2)), 1);
	for (size_t i = 0; i < hexlen / 2; i++)
		sprintf(out + 2 * i, "%02x", raw[i]);
	out[hexlen] = 0;
}

static void expect_defaults(const struct config *c)
{
	char want[PATH_MAX];
	cr_expect_eq(c->key_storage.type, backend_type_find("file"));
	snprintf(want, sizeof(want), "%s/.local/share/omikuji-keyfs/keys.enc", tmpdir);
	cr_expect_str_eq(c->key_storage.file.path, want);
	cr_expect_null(c->key_storage.file.passphrase_file);
	snprintf(want, sizeof(want), "%s/.local/state/omikuji-keyfs/audit.log", tmpdir);
	cr_expect_str_eq(c->keyfs.audit_log, want);
	cr_expect_str_eq(c->key_storage.keyring.service, "omikuji");
	cr_expect_eq(c->key_storage.keyring.cache_ttl_seconds, 300);
	cr_expect_eq(c->key_storage.keyring.timeout_seconds, 5);
	cr_expect_eq(c->key_storage.vault.urls.n, 0);
	cr_expect_str_eq(c->key_storage.vault.mount_path, "secret");
	cr_expect_str_eq(c->key_storage.vault.path_prefix, "omikuji/keys");
	cr_expect_str_eq(c->key_storage.vault.auth_method, "token");
	cr_expect_str_eq(c->key_storage.vault.approle_mount, "approle");
	cr_expect_null(c->key_storage.vault.token);
	cr_expect_eq(c->key_storage.vault.timeout_seconds, 5);
	cr_expect_eq(c->key_storage.vault.max_retries, 3);
	cr_expect_eq(c->key_storage.vault.cache_ttl_seconds, 300);
	cr_expect_null(c->key_storage.aws.region);   /* resolved by the backend: env, profile, us-east-1 */
	cr_expect_eq(c->key_storage.aws.max_retries, 3);
	cr_expect_eq(c->key_storage.aws.recovery_window_days, 7);
	cr_expect_str_eq(c->key_storage.aws.prefix, "omikuji");
	cr_expect_eq(c->key_storage.aws.timeout_seconds, 5);
	cr_expect_eq(c->key_storage.aws.cache_ttl_seconds, 300);
	cr_expect_eq(c->logging.format, LOG_FORMAT_JSON);
	cr_expect_str_eq(c->logging.level, "info");
	cr_assert_eq(c->logging.n_targets, 1);
	cr_expect_str_eq(c->logging.targets[0].type, "stderr");
	cr_expect_eq(c->keyfs.audit_failure, AUDIT_FAILURE_DENY);
	cr_expect_eq(c->keyfs.key_format, KEY_FORMAT_EVM);
	cr_expect_not(c->keyfs.access_set);
	cr_expect_eq(c->keyfs.n_access, 0);
	cr_expect_eq(c->keyfs.health_interval_seconds, 15);
	cr_expect_eq(c->keyfs.audit_checkpoint_seconds, 300);
	cr_expect_eq(c->keyfs.max_stale_seconds, 3600);
	cr_expect_eq(c->keyfs.cache_max_entries, 10000);
	cr_expect_eq(c->keyfs.list_cache_seconds, 5);
	cr_expect_not(c->keyfs.business_hours.set);
	cr_expect_eq(c->keyfs.business_hours.days_mask, 0x3e, "Mon-Fri");
	cr_expect_eq(c->keyfs.anomaly.burst_reads, 20);
	cr_expect_eq(c->keyfs.anomaly.burst_window_seconds, 10);
	cr_expect_eq(c->keyfs.anomaly.auth_failures_per_minute, 3);
	cr_expect_not(c->keyfs.rate_limit.set);
}

/* ------------------------------------------------------------------ */
/* valid files */

Test(config, builtin_defaults)
{
	struct config c;
	cr_assert_eq(config_load(NULL, 0, &c, err, sizeof(err)), 0, "%s", err);
	cr_expect_null(c.source);
	expect_defaults(&c);
	config_free(&c);
}

Test(config, defaults_follow_xdg)
{
	struct config c;
	setenv("XDG_DATA_HOME", "/srv/data", 1);
	setenv("XDG_STATE_HOME", "relative/ignored", 1);  /* XDG: relative paths are ignored */
	cr_assert_eq(config_load(NULL, 0, &c, err, sizeof(err)), 0, "%s", err);
	cr_expect_str_eq(c.key_storage.file.path, "/srv/data/omikuji-keyfs/keys.enc");
	char want[PATH_MAX];
	snprintf(want, sizeof(want), "%s/.local/state/omikuji-keyfs/audit.log", tmpdir);
	cr_expect_str_eq(c.keyfs.audit_log, want);
	config_free(&c);
}

Test(config, empty_file_is_defaults)
{
	struct config c;
	const char *files[] = { "empty.yaml", "comments-only.yaml" };
	for (size_t i = 0; i < 2; i++) {
		const char *p = fixture(files[i]);
		cr_assert_eq(config_load(p, 0, &c, err, sizeof(err)), 0, "%s: %s", files[i], err);
		cr_expect_str_eq(c.source, p);
		expect_defaults(&c);
		config_free(&c);
	}
}

Test(config, minimal)
{
	struct config c;
	cr_assert_eq(config_load(fixture("minimal.yaml"), 0, &c, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(c.key_storage.type, backend_type_find("env"));
	cr_expect_str_eq(config_storage_name(&c.key_storage), "env");
	cr_expect_str_eq(c.key_storage.vault.mount_path, "secret", "untouched sections keep defaults");
	config_free(&c);
}

Test(config, omikuji_sections_skipped)
{
	struct config c;
	cr_assert_eq(config_load(fixture("omikuji-sections.yaml"), 0, &c, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(c.key_storage.type, backend_type_find("keyring"));
	cr_expect_str_eq(c.key_storage.keyring.service, "omikuji-test");
	config_free(&c);
}

Test(config, full_example)
{
	struct config c;
	char token[33], path[PATH_MAX], want[PATH_MAX];
	random_token(token, 32);
	setenv("VAULT_TOKEN", token, 1);
	snprintf(path, sizeof(path), "%s/../examples/omikuji.yaml",
	         getenv("TESTS_SOURCE_DIR") ? getenv("TESTS_SOURCE_DIR") : TESTS_SOURCE_DIR);
	cr_assert_eq(config_load(path, 0, &c, err, sizeof(err)), 0, "%s", err);

	cr_expect_eq(c.key_storage.type, backend_type_find("vault"));
	cr_assert_eq(c.key_storage.vault.urls.n, 1);
	cr_expect_str_eq(c.key_storage.vault.urls.items[0], "https://vault.example.com:8200");
	cr_assert_not_null(c.key_storage.vault.token);
	cr_expect(strcmp(c.key_storage.vault.token, token) == 0, "token comes from $VAULT_TOKEN");
	cr_expect_str_eq(c.key_storage.vault.auth_method, "token");
	cr_expect_str_eq(c.key_storage.vault.ca_cert, "/etc/ssl/certs/ca-certificates.crt");
	snprintf(want, sizeof(want), "%s/.local/share/omikuji-keyfs/keys.enc", tmpdir);
	cr_expect_str_eq(c.key_storage.file.path, want, "~/ expanded");
	cr_expect_eq(c.logging.format, LOG_FORMAT_JSON);
	cr_assert_eq(c.logging.n_targets, 2);
	cr_expect_str_eq(c.logging.targets[0].type, "stderr");
	cr_expect_str_eq(c.logging.targets[1].type, "file");
	snprintf(want, sizeof(want), "%s/.local/state/omikuji-keyfs/keyfs.log", tmpdir);
	cr_expect_str_eq(c.logging.targets[1].path, want);

	cr_expect(c.keyfs.access_set);
	cr_assert_eq(c.keyfs.n_access, 2);
	const struct config_access_rule *r = &c.keyfs.access[0];
	cr_assert_eq(r->networks.n, 2);
	cr_expect_str_eq(r->networks.items[0], "ethereum-*");
	cr_assert_eq(r->read.n, 3);
	cr_expect_str_eq(r->read.items[2], "uid:1001");
	cr_expect_eq(r->write.n, 1);
	cr_expect_eq(c.keyfs.access[1].write.n, 0);
	cr_expect_gt(r->line, 1);
	cr_expect_gt(c.keyfs.access[1].line, r->line);

	cr_expect(c.keyfs.business_hours.set);
	cr_expect_str_eq(c.keyfs.business_hours.timezone, "Europe/Berlin");
	cr_expect_eq(c.keyfs.business_hours.start_minute, 8 * 60);
	cr_expect_eq(c.keyfs.business_hours.end_minute, 18 * 60 + 30);
	cr_expect_eq(c.keyfs.business_hours.days_mask, 0x3e);
	cr_expect(c.keyfs.rate_limit.set);
	cr_expect_eq(c.keyfs.rate_limit.reads_per_minute, 120);
	config_free(&c);
}

Test(config, every_field)
{
	struct config c;
	const char *p = write_file("all.yaml",
		"key_storage:\n"
		"  storage_type: aws-secrets\n"
		"  keyring: {service: svc, cache_ttl_seconds: 0, timeout_seconds: 9}\n"
		"  vault:\n"
		"    urls: [http://127.0.0.1:1, http://127.0.0.1:2]\n"
		"    mount_path: kv\n"
		"    path_prefix: a/b\n"
		"    auth_method: approle\n"
		"    token_file: /run/t\n"
		"    role_id: role-1\n"
		"    secret_id_file: ~/sid\n"
		"    approle_mount: ar\n"
		"    namespace: ns\n"
		"    ca_cert: /ca.pem\n"
		"    client_cert: /c.pem\n"
		"    client_key: /c.key\n"
		"    timeout_seconds: 7\n"
		"    max_retries: 0\n"
		"    cache_ttl_seconds: 60\n"
		"  aws_secrets:\n"
		"    region: eu-west-1\n"
		"    prefix: p\n"
		"    endpoint_url: http://127.0.0.1:4566\n"
		"    profile: prof\n"
		"    timeout_seconds: 9\n"
		"    cache_ttl_seconds: 10\n"
		"  file: {path: /k.enc, passphrase_file: /pp}\n"
		"logging: {format: text, level: debug, targets: [{type: syslog}, {type: stdout}]}\n"
		"keyfs:\n"
		"  audit_log: /a.log\n"
		"  audit_failure: allow\n"
		"  key_format: any\n"
		"  access: []\n"
		"  health_interval_seconds: 2\n"
		"  max_stale_seconds: 0\n"
		"  cache_max_entries: 3\n"
		"  list_cache_seconds: 0\n"
		"  run_as: nobody\n"
		"  business_hours: {start: \"22:00\", end: \"24:00\", days: [Sat, sunday]}\n"
		"  anomaly: {burst_reads: 4, burst_window_seconds: 5, auth_failures_per_minute: 6}\n"
		"  rate_limit: {reads_per_minute: 7}\n", 0600);
	cr_assert_eq(config_load(p, 0, &c, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(c.key_storage.type, backend_type_find("aws-secrets"));
	cr_expect_str_eq(c.key_storage.keyring.service, "svc");
	cr_expect_eq(c.key_storage.keyring.cache_ttl_seconds, 0);
	cr_expect_eq(c.key_storage.keyring.timeout_seconds, 9);
	cr_assert_eq(c.key_storage.vault.urls.n, 2);
	cr_expect_str_eq(c.key_storage.vault.urls.items[1], "http://127.0.0.1:2");
	cr_expect_str_eq(c.key_storage.vault.mount_path, "kv");
	cr_expect_str_eq(c.key_storage.vault.path_prefix, "a/b");
	cr_expect_str_eq(c.key_storage.vault.auth_method, "approle");
	cr_expect_str_eq(c.key_storage.vault.token_file, "/run/t");
	cr_expect_str_eq(c.key_storage.vault.role_id, "role-1");
	char want[PATH_MAX];
	snprintf(want, sizeof(want), "%s/sid", tmpdir);
	cr_expect_str_eq(c.key_storage.vault.secret_id_file, want);
	cr_expect_str_eq(c.key_storage.vault.approle_mount, "ar");
	cr_expect_str_eq(c.key_storage.vault.namespace, "ns");
	cr_expect_str_eq(c.key_storage.vault.ca_cert, "/ca.pem");
	cr_expect_str_eq(c.key_storage.vault.client_cert, "/c.pem");
	cr_expect_str_eq(c.key_storage.vault.client_key, "/c.key");
	cr_expect_eq(c.key_storage.vault.timeout_seconds, 7);
	cr_expect_eq(c.key_storage.vault.max_retries, 0);
	cr_expect_eq(c.key_storage.vault.cache_ttl_seconds, 60);
	cr_expect_str_eq(c.key_storage.aws.region, "eu-west-1");
	cr_expect_str_eq(c.key_storage.aws.prefix, "p");
	cr_expect_str_eq(c.key_storage.aws.endpoint_url, "http://127.0.0.1:4566");
	cr_expect_str_eq(c.key_storage.aws.profile, "prof");
	cr_expect_eq(c.key_storage.aws.timeout_seconds, 9);
	cr_expect_eq(c.key_storage.aws.cache_ttl_seconds, 10);
	cr_expect_str_eq(c.key_storage.file.path, "/k.enc");
	cr_expect_str_eq(c.key_storage.file.passphrase_file, "/pp");
	cr_expect_eq(c.logging.format, LOG_FORMAT_TEXT);
	cr_expect_str_eq(c.logging.level, "debug");
	cr_assert_eq(c.logging.n_targets, 2);
	cr_expect_str_eq(c.logging.targets[0].type, "syslog");
	cr_expect_null(c.logging.targets[0].path);
	cr_expect_str_eq(c.keyfs.audit_log, "/a.log");
	cr_expect_eq(c.keyfs.audit_failure, AUDIT_FAILURE_ALLOW);
	cr_expect_eq(c.keyfs.key_format, KEY_FORMAT_ANY);
	cr_expect(c.keyfs.access_set, "access: [] is set, with no rules");
	cr_expect_eq(c.keyfs.n_access, 0);
	cr_expect_eq(c.keyfs.health_interval_seconds, 2);
	cr_expect_eq(c.keyfs.max_stale_seconds, 0);
	cr_expect_eq(c.keyfs.cache_max_entries, 3);
	cr_expect_eq(c.keyfs.list_cache_seconds, 0);
	cr_expect_str_eq(c.keyfs.run_as, "nobody");
	cr_expect(c.keyfs.business_hours.set);
	cr_expect_str_eq(c.keyfs.business_hours.timezone, "UTC");
	cr_expect_eq(c.keyfs.business_hours.start_minute, 22 * 60);
	cr_expect_eq(c.keyfs.business_hours.end_minute, 24 * 60);
	cr_expect_eq(c.keyfs.business_hours.days_mask, (1u << 6) | 1u);
	cr_expect_eq(c.keyfs.anomaly.burst_reads, 4);
	cr_expect_eq(c.keyfs.anomaly.burst_window_seconds, 5);
	cr_expect_eq(c.keyfs.anomaly.auth_failures_per_minute, 6);
	cr_expect(c.keyfs.rate_limit.set);
	cr_expect_eq(c.keyfs.rate_limit.reads_per_minute, 7);
	config_free(&c);
}

/* ------------------------------------------------------------------ */
/* errors: exact message with file, line and column */

struct bad_case {
	const char *yaml;
	const char *message;  /* after "<path>:" */
};

static const struct bad_case bad_cases[] = {
	{ "keyfss:\n  audit_log: /x\n",
	  "1:1: unknown key 'keyfss' at the top level (did you mean 'keyfs'?)" },
	{ "key-storage:\n  storage_type: vault\n",
	  "1:1: unknown key 'key-storage' at the top level (did you mean 'key_storage'?)" },
	{ "key_storage:\n  vault:\n    url: http://x\n    tokn: y\n",
	  "4:5: unknown key 'tokn' in key_storage.vault" },
	{ "keyfs:\n  anomaly:\n      burst_reads: 1\n      bursts: 2\n",
	  "4:7: unknown key 'bursts' in keyfs.anomaly" },
	{ "key_storage:\n  backend: vault\n",
	  "2:3: unknown key 'backend' in key_storage (did you mean 'storage_type'?)" },
	{ "keyfs:\n  access:\n    - networks: [a]\n      reed: [uid:0]\n",
	  "4:7: unknown key 'reed' in keyfs.access[0]" },
	{ "key_storage:\n  vault:\n    timeout_seconds: five\n",
	  "3:22: expected an integer for key_storage.vault.timeout_seconds" },
	{ "key_storage:\n  vault:\n    timeout_seconds: 0\n",
	  "3:22: key_storage.vault.timeout_seconds must be between 1 and 600 (got 0)" },
	{ "keyfs:\n  cache_max_entries: 99999999999999999999\n",
	  "2:22: keyfs.cache_max_entries must be between 1 and 10000000 (got 99999999999999999999)" },
	{ "keyfs:\n  health_interval_seconds: 1.5\n",
	  "2:28: expected an integer for keyfs.health_interval_seconds" },
	{ "key_storage:\n  storage_type: s3\n",
	  "2:17: key_storage.storage_type must be one of file, env, keyring, vault, aws-secrets (got 's3')" },
	{ "key_storage:\n  vault:\n    auth_method: ldap\n",
	  "3:18: key_storage.vault.auth_method must be one of token, approle (got 'ldap')" },
	{ "keyfs:\n  audit_failure: ignore\n",
	  "2:18: keyfs.audit_failure must be one of deny, allow (got 'ignore')" },
	{ "logging:\n  level: verbose\n",
	  "2:10: logging.level must be one of debug, info, warn, error (got 'verbose')" },
	{ "key_storage:\n  vault:\n    url: http://a\n    urls: [http://b]\n",
	  "4:5: both url and urls are given in key_storage.vault; use one of them" },
	{ "key_storage:\n  vault:\n    urls: http://b\n",
	  "3:11: expected a list for key_storage.vault.urls" },
	{ "key_storage:\n  vault:\n    token: [a, b]\n",
	  "3:12: expected a string for key_storage.vault.token" },
	{ "key_storage: vault\n", "1:14: expected a mapping for key_storage" },
	{ "- a\n- b\n", "1:1: expected a mapping at the top level" },
	{ "keyfs:\n  access:\n    - read: [\"user:omikuji\", \"usr:x\"]\n",
	  "3:30: bad principal 'usr:x' in keyfs.access[0].read "
	  "(expected user:NAME, group:NAME, uid:N or gid:N)" },
	{ "keyfs:\n  access:\n    networks: [a]\n",
	  "3:5: expected a list of rules for keyfs.access" },
	{ "keyfs:\n  business_hours:\n    start: \"9:60\"\n    end: \"17:00\"\n",
	  "3:12: keyfs.business_hours.start must be a time of day \"HH:MM\" (got '9:60')" },
	{ "keyfs:\n  business_hours:\n    start: \"09:00\"\n    end: 5pm\n",
	  "4:10: keyfs.business_hours.end must be a time of day \"HH:MM\" (got '5pm')" },
	{ "keyfs:\n  business_hours:\n    start: \"09:00\"\n",
	  "3:5: keyfs.business_hours needs both start and end (\"HH:MM\")" },
	{ "keyfs:\n  business_hours:\n    start: \"09:00\"\n    end: \"17:00\"\n    days: [mon, funday]\n",
	  "5:17: keyfs.business_hours.days: 'funday' is not a day (mon, tue, wed, thu, fri, sat, sun)" },
	{ "logging:\n  targets:\n    - type: file\n",
	  "3:7: logging.targets[0]: type file needs a path" },
	{ "key_storage:\n  storage_type: vault\n  storage_type: env\n",
	  "3:3: duplicate key 'storage_type' in key_storage" },
	{ "key_storage:\n  vault: [\n", "3:1: YAML syntax error: did not find expected node content "
	  "(while parsing a flow node at line 3, column 1)" },
	{ "key_storage:\n  vault:\n   url: a\n  bad\n",
	  "5:1: YAML syntax error: could not find expected ':' "
	  "(while scanning a simple key at line 4, column 3)" },
	{ "a: 1\n---\nb: 2\n", "3:1: more than one YAML document; the config is one document" },
	/* Unknown keys inside our own sections are errors (only unknown
	 * top-level sections are skipped): key_storage, logging, keyfs and an
	 * instance of keyfs.backends. */
	{ "key_storage:\n  storage_type: file\n  colour: red\n",
	  "3:3: unknown key 'colour' in key_storage" },
	{ "logging:\n  colour: red\n", "2:3: unknown key 'colour' in logging" },
	{ "logging:\n  targets:\n    - type: stdout\n      colour: red\n",
	  "4:7: unknown key 'colour' in logging.targets[0]" },
	{ "keyfs:\n  colour: red\n", "2:3: unknown key 'colour' in keyfs" },
	{ "keyfs:\n  backends:\n    - name: a\n      storage_type: file\n      colour: red\n",
	  "5:7: unknown key 'colour' in keyfs.backends[0]" },
	{ "keyfs:\n  backends:\n    - name: a\n      storage_type: file\n      file: {pth: /x}\n",
	  "5:14: unknown key 'pth' in keyfs.backends[0].file" },
};

Test(config, errors_name_line_and_column)
{
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		struct config c;
		char want[2048];
		const char *p = write_file("bad.yaml", bad_cases[i].yaml, 0600);
		int rc = config_load(p, 0, &c, err, sizeof(err));
		cr_expect_lt(rc, 0, "case %zu must fail", i);
		snprintf(want, sizeof(want), "%s:%s", p, bad_cases[i].message);
		cr_expect_str_eq(err, want, "case %zu: got [%s] want [%s]", i, err, want);
		/* A failed load leaves nothing to free and a zeroed struct. */
		cr_expect_null(c.key_storage.file.path, "case %zu", i);
	}
}

Test(config, unknown_top_level_section_is_skipped_with_a_warning)
{
	struct config c;
	char want[PATH_MAX + 128];
	const char *p = write_file("newer.yaml",
	                           "price_oracles:\n  - a: 1\nkeyfs:\n  max_stale_seconds: 7\n", 0600);
	cr_assert_eq(config_load(p, 0, &c, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(c.keyfs.max_stale_seconds, 7, "the rest still loads");
	cr_assert_eq(c.warnings.n, 1);
	snprintf(want, sizeof(want), "%s:1:1: unknown top-level section 'price_oracles' skipped "
	         "(Omikuji's own?)", p);
	cr_expect_str_eq(c.warnings.items[0], want);
	config_free(&c);
	/* Omikuji's known sections are skipped without a word. */
	p = write_file("known.yaml", "datafeeds: []\nnetworks: {}\n", 0600);
	cr_assert_eq(config_load(p, 0, &c, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(c.warnings.n, 0);
	config_free(&c);
}

Test(config, fixture_unknown_nested)
{
	struct config c;
	char want[PATH_MAX + 64];
	setenv("VAULT_TOKEN", "unused", 1);
	const char *p = fixture("unknown-nested.yaml");
	cr_expect_eq(config_load(p, 0, &c, err, sizeof(err)), -EINVAL);
	snprintf(want, sizeof(want), "%s:5:5: unknown key 'tokn' in key_storage.vault", p);
	cr_expect_str_eq(err, want);
}

Test(config, missing_file)
{
	struct config c;
	char p[PATH_MAX], want[PATH_MAX + 64];
	snprintf(p, sizeof(p), "%s/nope.yaml", tmpdir);
	cr_expect_eq(config_load(p, 0, &c, err, sizeof(err)), -ENOENT);
	snprintf(want, sizeof(want), "%s: No such file or directory", p);
	cr_expect_str_eq(err, want);
	cr_expect_eq(config_load(tmpdir, 0, &c, err, sizeof(err)), -EISDIR);
}

Test(config, principals)
{
	static const char *good[] = { "user:omikuji", "group:signers", "uid:0", "gid:1001",
	                              "user:svc.bot-1", "uid:4294967294" };
	static const char *bad[] = { "user:", "group:-x", "uid:-1", "uid:4294967295", "uid:abc",
	                             "root", "host:x", "uid:", "user:a b" };
	struct config c;
	char yaml[256];
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(yaml, sizeof(yaml), "keyfs:\n  access:\n    - list: [\"%s\"]\n", good[i]);
		const char *p = write_file("p.yaml", yaml, 0600);
		cr_expect_eq(config_load(p, 0, &c, err, sizeof(err)), 0, "%s: %s", good[i], err);
		config_free(&c);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(yaml, sizeof(yaml), "keyfs:\n  access:\n    - list: [\"%s\"]\n", bad[i]);
		const char *p = write_file("p.yaml", yaml, 0600);
		cr_expect_eq(config_load(p, 0, &c, err, sizeof(err)), -EINVAL, "%s accepted", bad[i]);
		cr_expect(strstr(err, ":3:14: bad principal") != NULL, "%s: %s", bad[i], err);
	}
}

/* ------------------------------------------------------------------ */
/* expansion */

Test(config, env_expansion)
{
	struct config c;
	setenv("KEYFS_T_HOST", "127.0.0.1", 1);
	setenv("KEYFS_T_PORT", "8201", 1);
	setenv("KEYFS_T_TIMEOUT", "11", 1);
	setenv("KEYFS_T_EMPTY", "", 1);
	const char *p = write_file("env.yaml",
		"key_storage:\n"
		"  vault:\n"
		"    url: \"http://${KEYFS_T_HOST}:${KEYFS_T_PORT}\"\n"
		"    timeout_seconds: ${KEYFS_T_TIMEOUT}\n"
		"    namespace: \"cost-$$5-${KEYFS_T_EMPTY}x\"\n"
		"    path_prefix: a$b\n"
		"    mount_path: \"${KEYFS_T_EMPTY}\"\n", 0600);
	cr_assert_eq(config_load(p, 0, &c, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(c.key_storage.vault.urls.n, 1);
	cr_expect_str_eq(c.key_storage.vault.urls.items[0], "http://127.0.0.1:8201");
	cr_expect_eq(c.key_storage.vault.timeout_seconds, 11);
	cr_expect_str_eq(c.key_storage.vault.namespace, "cost-$5-x", "$$ is a literal $");
	cr_expect_str_eq(c.key_storage.vault.path_prefix, "a$b", "a lone $ stays");
	cr_expect_str_eq(c.key_storage.vault.mount_path, "secret", "empty after expansion keeps the default");
	config_free(&c);
}

Test(config, env_unset_is_an_error)
{
	struct config c;
	char want[PATH_MAX + 128];
	unsetenv("KEYFS_T_UNSET");
	const char *p = write_file("env.yaml",
		"key_storage:\n  vault:\n    token: \"${KEYFS_T_UNSET}\"\n", 0600);
	cr_expect_eq(config_load(p, 0, &c, err, sizeof(err)), -EINVAL);
	snprintf(want, sizeof(want),
	         "%s:3:12: environment variable 'KEYFS_T_UNSET' is not set (used by key_storage.vault.token)", p);
	cr_expect_str_eq(err, want);

	p = write_file("env.yaml", "keyfs:\n  run_as: \"${BAD-NAME}\"\n", 0600);
	cr_expect_eq(config_load(p, 0, &c, err, sizeof(err)), -EINVAL);
	cr_expect(strstr(err, ":2:11: bad variable name") != NULL, "%s", err);
	p = write_file("env.yaml", "keyfs:\n  run_as: \"${OPEN\"\n", 0600);
	cr_expect_eq(config_load(p, 0, &c, err, sizeof(err)), -EINVAL);
	cr_expect(strstr(err, ":2:11: unterminated ${") != NULL, "%s", err);
}

Test(config, tilde_expansion)
{
	struct config c;
	char want[PATH_MAX];
	const char *p = write_file("t.yaml",
		"key_storage:\n"
		"  file: {path: ~/keys.enc, passphrase_file: \"~\"}\n"
		"  vault: {token_file: ~other/t, ca_cert: /x/~/y, role_id: ~/not-a-path}\n"
		"keyfs: {audit_log: ~/a/audit.log}\n", 0600);
	cr_assert_eq(config_load(p, 0, &c, err, sizeof(err)), 0, "%s", err);
	snprintf(want, sizeof(want), "%s/keys.enc", tmpdir);
	cr_expect_str_eq(c.key_storage.file.path, want);
	cr_expect_str_eq(c.key_storage.file.passphrase_file, tmpdir);
	/* ~user is not expanded: it is a relative path like any other, taken
	 * relative to the config file's directory */
	snprintf(want, sizeof(want), "%s/~other/t", tmpdir);
	cr_expect_str_eq(c.key_storage.vault.token_file, want, "~user is not expanded");
	cr_expect_str_eq(c.key_storage.vault.ca_cert, "/x/~/y", "only at the start");
	cr_expect_str_eq(c.key_storage.vault.role_id, "~/not-a-path", "not a path field");
	snprintf(want, sizeof(want), "%s/a/audit.log", tmpdir);
	cr_expect_str_eq(c.keyfs.audit_log, want);
	config_free(&c);
}

/* ------------------------------------------------------------------ */
/* permissions of a file holding a secret */

Test(config, inline_token_needs_private_file)
{
	struct config c;
	char token[33], yaml[256];
	random_token(token, 32);
	snprintf(yaml, sizeof(yaml), "key_storage:\n  storage_type: vault\n  vault:\n    token: %s\n", token);

	const char *p = write_file("s.yaml", yaml, 0644);
	cr_expect_eq(config_load(p, 0, &c, err, sizeof(err)), -EACCES);
	char want[PATH_MAX + 256];
	snprintf(want, sizeof(want), "%s: holds a secret (key_storage.vault.token) but is readable by "
	         "group/others (mode 0644); chmod 600 it or pass --insecure-config-permissions", p);
	cr_expect_str_eq(err, want);
	cr_expect(strstr(err, token) == NULL, "the message must not hold the token");

	p = write_file("s.yaml", yaml, 0600);
	cr_expect_eq(config_load(p, 0, &c, err, sizeof(err)), 0, "%s", err);
	cr_expect(c.key_storage.vault.token && strcmp(c.key_storage.vault.token, token) == 0, "token loaded");
	config_free(&c);

	p = write_file("s.yaml", yaml, 0644);
	cr_expect_eq(config_load(p, CONFIG_ALLOW_INSECURE_PERMS, &c, err, sizeof(err)), 0, "%s", err);
	config_free(&c);
}

Test(config, inline_secret_id_group_readable)
{
	struct config c;
	char sid[33], yaml[256];
	random_token(sid, 32);
	snprintf(yaml, sizeof(yaml), "%s", "key_storage:\n  vault:\n    auth_method: approle\n"
	         "    role_id: r\n    secret_id: \"pre-${KEYFS_T_SID}\"\n");
	setenv("KEYFS_T_SID", sid, 1);
	const char *p = write_file("s.yaml", yaml, 0640);
	cr_expect_eq(config_load(p, 0, &c, err, sizeof(err)), -EACCES,
	             "text of its own besides ${VAR} counts as inline");
	cr_expect(strstr(err, "(key_storage.vault.secret_id)") && strstr(err, "mode 0640"), "%s", err);
	cr_expect(strstr(err, sid) == NULL);
}

Test(config, env_only_secret_accepted_world_readable)
{
	struct config c;
	char token[33];
	random_token(token, 32);
	setenv("VAULT_TOKEN", token, 1);
	const char *p = write_file("s.yaml", "key_storage:\n  vault:\n    token: \"${VAULT_TOKEN}\"\n"
	                           "    role_id: literal-role-is-not-secret\n", 0644);
	cr_expect_eq(config_load(p, 0, &c, err, sizeof(err)), 0, "%s", err);
	cr_expect(c.key_storage.vault.token && strcmp(c.key_storage.vault.token, token) == 0, "token from the environment");
	config_free(&c);
}

/* ------------------------------------------------------------------ */
/* printing */

static char *print_to_string(const struct config *c)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	cr_assert_not_null(f);
	config_print(c, f);
	fclose(f);
	return buf;
}

static void expect_same_list(const struct strlist *a, const struct strlist *b, const char *what)
{
	cr_assert_eq(a->n, b->n, "%s", what);
	for (size_t i = 0; i < a->n; i++)
		cr_expect_str_eq(a->items[i], b->items[i], "%s[%zu]", what, i);
}

#define SAME_STR(f) do { \
		if (!a->f || !b->f) cr_expect_eq(a->f, b->f, #f); \
		else cr_expect_str_eq(a->f, b->f, #f); \
	} while (0)
#define SAME_INT(f) cr_expect_eq(a->f, b->f, #f)

static void expect_same_config(const struct config *a, const struct config *b)
{
	SAME_INT(key_storage.type);
	SAME_STR(key_storage.file.path); SAME_STR(key_storage.file.passphrase_file);
	SAME_STR(key_storage.keyring.service); SAME_INT(key_storage.keyring.cache_ttl_seconds);
	SAME_INT(key_storage.keyring.timeout_seconds);
	expect_same_list(&a->key_storage.vault.urls, &b->key_storage.vault.urls, "urls");
	SAME_STR(key_storage.vault.mount_path); SAME_STR(key_storage.vault.path_prefix); SAME_STR(key_storage.vault.auth_method);
	SAME_STR(key_storage.vault.token_file); SAME_STR(key_storage.vault.role_id); SAME_STR(key_storage.vault.secret_id_file);
	SAME_STR(key_storage.vault.approle_mount); SAME_STR(key_storage.vault.namespace); SAME_STR(key_storage.vault.ca_cert);
	SAME_STR(key_storage.vault.client_cert); SAME_STR(key_storage.vault.client_key);
	SAME_INT(key_storage.vault.timeout_seconds); SAME_INT(key_storage.vault.max_retries); SAME_INT(key_storage.vault.cache_ttl_seconds);
	SAME_STR(key_storage.aws.region); SAME_STR(key_storage.aws.prefix); SAME_STR(key_storage.aws.endpoint_url); SAME_STR(key_storage.aws.profile);
	SAME_INT(key_storage.aws.timeout_seconds); SAME_INT(key_storage.aws.cache_ttl_seconds);
	SAME_INT(logging.format); SAME_STR(logging.level);
	cr_assert_eq(a->logging.n_targets, b->logging.n_targets);
	for (size_t i = 0; i < a->logging.n_targets; i++) {
		SAME_STR(logging.targets[i].type);
		SAME_STR(logging.targets[i].path);
	}
	SAME_STR(keyfs.audit_log); SAME_INT(keyfs.audit_failure); SAME_INT(keyfs.key_format);
	SAME_INT(keyfs.access_set);
	cr_assert_eq(a->keyfs.n_access, b->keyfs.n_access);
	for (size_t i = 0; i < a->keyfs.n_access; i++) {
		expect_same_list(&a->keyfs.access[i].networks, &b->keyfs.access[i].networks, "networks");
		expect_same_list(&a->keyfs.access[i].read, &b->keyfs.access[i].read, "read");
		expect_same_list(&a->keyfs.access[i].write, &b->keyfs.access[i].write, "write");
		expect_same_list(&a->keyfs.access[i].remove, &b->keyfs.access[i].remove, "remove");
		expect_same_list(&a->keyfs.access[i].list, &b->keyfs.access[i].list, "list");
	}
	SAME_INT(keyfs.health_interval_seconds); SAME_INT(keyfs.max_stale_seconds);
	SAME_INT(keyfs.cache_max_entries); SAME_INT(keyfs.list_cache_seconds);
	SAME_STR(keyfs.run_as);
	SAME_INT(keyfs.business_hours.set); SAME_STR(keyfs.business_hours.timezone);
	SAME_INT(keyfs.business_hours.start_minute); SAME_INT(keyfs.business_hours.end_minute);
	SAME_INT(keyfs.business_hours.days_mask);
	SAME_INT(keyfs.anomaly.burst_reads); SAME_INT(keyfs.anomaly.burst_window_seconds);
	SAME_INT(keyfs.anomaly.auth_failures_per_minute);
	SAME_INT(keyfs.rate_limit.set); SAME_INT(keyfs.rate_limit.reads_per_minute);
}

Test(config, print_masks_and_reloads)
{
	struct config a, b;
	char token[33], sid[33], yaml[2048];
	random_token(token, 32);
	random_token(sid, 32);
	snprintf(yaml, sizeof(yaml),
		"key_storage:\n"
		"  storage_type: vault\n"
		"  vault:\n"
		"    urls: [\"http://127.0.0.1:8200\", \"http://127.0.0.1:8300\"]\n"
		"    token: %s\n"
		"    secret_id: %s\n"
		"    namespace: \"odd \\\"quoted\\\" $$name\\\\x\"\n"
		"logging: {format: text, targets: [{type: file, path: /var/log/k.log}, {type: stdout}]}\n"
		"keyfs:\n"
		"  key_format: any\n"
		"  access:\n"
		"    - networks: [\"ethereum-*\"]\n"
		"      read: [\"user:omikuji\", \"gid:5\"]\n"
		"    - write: [\"uid:0\"]\n"
		"  business_hours: {timezone: Asia/Tokyo, start: \"07:05\", end: \"19:00\", days: [sun, wed]}\n"
		"  rate_limit: {reads_per_minute: 9}\n", token, sid);
	const char *p = write_file("orig.yaml", yaml, 0600);
	cr_assert_eq(config_load(p, 0, &a, err, sizeof(err)), 0, "%s", err);
	cr_expect_str_eq(a.key_storage.vault.namespace, "odd \"quoted\" $name\\x");

	char *printed = print_to_string(&a);
	cr_expect(strstr(printed, token) == NULL, "token must not be printed");
	cr_expect(strstr(printed, sid) == NULL, "secret_id must not be printed");
	cr_expect(strstr(printed, "token: \"********\"") != NULL, "masked token shown");
	cr_expect(strstr(printed, "secret_id: \"********\"") != NULL, "masked secret_id shown");
	char first[PATH_MAX + 32];
	snprintf(first, sizeof(first), "# loaded from: %s\n", p);
	cr_expect(strncmp(printed, first, strlen(first)) == 0, "first line names the file");

	const char *q = write_file("printed.yaml", printed, 0600);
	cr_assert_eq(config_load(q, 0, &b, err, sizeof(err)), 0, "printed YAML must load: %s", err);
	expect_same_config(&a, &b);
	cr_expect(b.key_storage.vault.token && strcmp(b.key_storage.vault.token, "********") == 0);
	free(printed);
	config_free(&a);
	config_free(&b);
}

Test(config, print_defaults_reloads)
{
	struct config a, b;
	cr_assert_eq(config_load(NULL, 0, &a, err, sizeof(err)), 0, "%s", err);
	char *printed = print_to_string(&a);
	cr_expect(strncmp(printed, "# built-in defaults\n", 20) == 0);
	const char *q = write_file("printed.yaml", printed, 0644);
	cr_assert_eq(config_load(q, 0, &b, err, sizeof(err)), 0, "printed defaults must load: %s", err);
	expect_same_config(&a, &b);
	free(printed);
	config_free(&a);
	config_free(&b);
}

/* ------------------------------------------------------------------ */
/* search order */

static void mkdirs(const char *path)
{
	char buf[PATH_MAX];
	snprintf(buf, sizeof(buf), "%s", path);
	for (char *s = buf + 1; *s; s++) {
		if (*s == '/') {
			*s = 0;
			mkdir(buf, 0700);
			*s = '/';
		}
	}
	mkdir(buf, 0700);
}

Test(config, find_order)
{
	char work[512], xdg[512], home_cfg[PATH_MAX], xdg_cfg[PATH_MAX], want[PATH_MAX];
	char *p;
	bool etc = access("/etc/omikuji/omikuji.yaml", F_OK) == 0;

	snprintf(work, sizeof(work), "%s/work", tmpdir);
	mkdirs(work);
	cr_assert_eq(chdir(work), 0);

	/* Nothing anywhere (unless this machine has /etc/omikuji). */
	p = config_find(NULL);
	if (etc)
		cr_expect_str_eq(p, "/etc/omikuji/omikuji.yaml");
	else
		cr_expect_null(p);
	free(p);

	/* ~/.config/omikuji/omikuji.yaml */
	snprintf(home_cfg, sizeof(home_cfg), "%s/.config/omikuji", tmpdir);
	mkdirs(home_cfg);
	strcat(home_cfg, "/omikuji.yaml");
	write_file(".config/omikuji/omikuji.yaml", "", 0600);
	p = config_find(NULL);
	cr_expect_str_eq(p, home_cfg);
	free(p);

	/* $XDG_CONFIG_HOME replaces ~/.config, even when its file is missing. */
	snprintf(xdg, sizeof(xdg), "%s/xdg", tmpdir);
	setenv("XDG_CONFIG_HOME", xdg, 1);
	p = config_find(NULL);
	if (etc)
		cr_expect_str_eq(p, "/etc/omikuji/omikuji.yaml");
	else
		cr_expect_null(p, "~/.config is not looked at when XDG_CONFIG_HOME is set");
	free(p);
	snprintf(xdg_cfg, sizeof(xdg_cfg), "%s/omikuji", xdg);
	mkdirs(xdg_cfg);
	write_file("xdg/omikuji/omikuji.yaml", "", 0600);
	strcat(xdg_cfg, "/omikuji.yaml");
	p = config_find(NULL);
	cr_expect_str_eq(p, xdg_cfg);
	free(p);

	/* ./omikuji.yaml beats both, as an absolute path. */
	write_file("work/omikuji.yaml", "", 0600);
	snprintf(want, sizeof(want), "%s/omikuji.yaml", work);
	p = config_find(NULL);
	cr_expect_str_eq(p, want);
	free(p);

	/* $OMIKUJI_CONFIG beats ./omikuji.yaml, even if missing. */
	setenv("OMIKUJI_CONFIG", "/nonexistent/by-env.yaml", 1);
	p = config_find(NULL);
	cr_expect_str_eq(p, "/nonexistent/by-env.yaml");
	free(p);

	/* -c beats everything, even if missing. */
	p = config_find("/nonexistent/explicit.yaml");
	cr_expect_str_eq(p, "/nonexistent/explicit.yaml");
	free(p);
}

Test(config, relative_paths_follow_the_config_file)
{
	struct config c;
	char want[PATH_MAX];
	const char *p = write_file("rel.yaml",
		"key_storage:\n"
		"  file: {path: store/keys.enc}\n"
		"keyfs: {audit_log: ./audit.log}\n", 0600);
	char saved[PATH_MAX];
	cr_assert_not_null(getcwd(saved, sizeof(saved)));
	cr_assert_eq(chdir("/"), 0);
	int rc = config_load(p, 0, &c, err, sizeof(err));
	cr_assert_eq(chdir(saved), 0);
	cr_assert_eq(rc, 0, "%s", err);
	snprintf(want, sizeof(want), "%s/store/keys.enc", tmpdir);
	cr_expect_str_eq(c.key_storage.file.path, want);
	snprintf(want, sizeof(want), "%s/audit.log", tmpdir);
	cr_expect_str_eq(c.keyfs.audit_log, want);
	config_free(&c);
}
