/* config.h - the effective configuration (contract section 4).
 *
 * config_load() reads Omikuji's omikuji.yaml with libyaml: the `key_storage`
 * section (shared with Omikuji), `logging`, and this program's `keyfs`
 * section.  `${VAR}` is expanded from the environment in every scalar, `~`
 * at the start of paths.  Unknown keys are errors that name file, line and
 * column; top-level sections that Omikuji uses and this program does not are
 * skipped, and so is any other unknown top-level section (a newer Omikuji's),
 * with a warning in cfg->warnings, unless its name is a near miss of one of
 * ours (`keyfss`), which is an error.  Every char * below is owned by the
 * struct config and freed by config_free(); a NULL string means "not set".
 * The types the lower layers read (a backend instance's section, the
 * logging section, the key format) are declared in their own headers, so
 * that util/ and backends/ never include this one (the build enforces it).
 */
#ifndef OMIKUJI_CONFIG_H
#define OMIKUJI_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include "backend_config.h"   /* the backend sections (a lower layer) */
#include "keyformat.h"        /* enum key_format */
#include "log.h"              /* struct config_logging */
#include "strlist.h"

enum audit_failure { AUDIT_FAILURE_DENY, AUDIT_FAILURE_ALLOW };

struct config_access_rule {
	struct strlist networks;  /* shell globs; empty = all */
	struct strlist read;      /* principals: "user:NAME" "group:NAME" "uid:N" "gid:N" */
	struct strlist write;
	struct strlist remove;
	struct strlist list;
	struct strlist address;   /* addresses/<network>; `read` implies it */
	int line;                 /* where the rule starts, for messages */
};

struct config_business_hours {
	bool set;
	char *timezone;           /* TZ name, e.g. "Europe/Berlin"; default UTC */
	int start_minute;         /* minutes after local midnight, from "HH:MM" */
	int end_minute;
	unsigned days_mask;       /* bit 0 = Sunday ... bit 6 = Saturday; default Mon-Fri */
};

struct config_anomaly {
	int burst_reads;          /* reads by one caller ... (default 20) */
	int burst_window_seconds; /* ... within this window are flagged (default 10) */
	int auth_failures_per_minute; /* backend auth failures per minute flagged (default 3) */
};

struct config_rate_limit {
	bool set;
	int reads_per_minute;     /* per caller uid; beyond: EACCES */
};

struct config_keyfs {
	char *audit_log;          /* default $XDG_STATE_HOME/omikuji-keyfs/audit.log */
	int audit_log_mode;       /* permission bits of the audit log, default 0600 */
	char *audit_log_group;    /* group given to the audit log (name or gid), NULL = keep */
	enum audit_failure audit_failure;   /* default deny */
	char *audit_key_file;     /* HMAC key of a keyed chain; NULL: plain SHA-256 chain */
	enum key_format key_format;         /* default evm */
	struct config_access_rule *access;  /* NULL with n_access 0 and !access_set: default rule */
	size_t n_access;
	bool access_set;
	int health_interval_seconds;  /* default 15 */
	int audit_checkpoint_seconds; /* audit seq+hash to the app log; default 300 */
	int max_stale_seconds;        /* default 3600 */
	int cache_max_entries;        /* default 10000 */
	int list_cache_seconds;       /* default 5 */
	char *run_as;                 /* user to drop to after mounting as root */
	char *on_change;              /* program run as `on_change NETWORK` on a rotation */
	struct config_backend *backends;  /* keyfs.backends, in routing order */
	size_t n_backends;
	int max_calls_in_flight;      /* per instance, default 16 */
	int metrics_per_network;      /* 1 (default): series with a network label; 0: none */
	int monitoring_mode;          /* permission bits of metrics, textfile/, health/ (0444) */
	char *monitoring_group;       /* their group (name or number); NULL: the mounting user's */
	int metrics_addresses;        /* 0/1 (false/true): omikuji_keyfs_key_info in metrics */
	struct config_business_hours business_hours;
	struct config_anomaly anomaly;
	struct config_rate_limit rate_limit;
};

struct config {
	char *source;                 /* file loaded, NULL for built-in defaults */
	struct config_backend key_storage;   /* the default instance */
	struct config_logging logging;
	struct config_keyfs keyfs;
	struct strlist warnings;      /* "file:line:col: ..." for the caller to print */
	struct strlist secret_env;    /* ${VAR} names that secret fields expanded */
};

/* Which file would be loaded: -c PATH, $OMIKUJI_CONFIG, ./omikuji.yaml,
 * $XDG_CONFIG_HOME/omikuji/omikuji.yaml, /etc/omikuji/omikuji.yaml.  Returns
 * a malloc'd path, or NULL when none exists (built-in defaults apply).  An
 * explicit path (-c or $OMIKUJI_CONFIG) is returned even if missing, so the
 * load reports it. */
char *config_find(const char *explicit_path);

/* Flags for config_load. */
#define CONFIG_ALLOW_INSECURE_PERMS 0x1  /* accept a group/world-readable file holding a secret */

/* Load path (NULL = built-in defaults) into *out, defaults filled in.
 * Returns 0, or -errno with one line in err such as
 * "omikuji.yaml:12:5: unknown key 'tokn' in key_storage.vault". */
int config_load(const char *path, unsigned flags, struct config *out, char *err, size_t errlen);

/* Print the effective config as YAML with secrets (token, secret_id,
 * passphrase) shown as "********". */
void config_print(const struct config *cfg, FILE *out);

/* Once the backend holds its own copies: wipe and free the secrets the
 * config holds (vault.token, vault.secret_id) and wipe and remove
 * $OMIKUJI_KEYFS_PASSPHRASE from the environment, so the serving process
 * keeps one copy of each, in the backend's locked memory. */
void config_forget_secrets(struct config *cfg);

void config_free(struct config *cfg);

/* The storage_type name of an instance ("file", ..., "aws-secrets"). */
const char *config_storage_name(const struct config_backend *b);
/* Calls in flight allowed for instance b. */
int config_max_calls_in_flight(const struct config *cfg, const struct config_backend *b);

#endif
