/* backend_config.h - a backend instance's configuration as config_load()
 * fills it (contract sections 4 and 8): the part of the configuration the
 * backends read.  Declared here, below mount/config.h, so that backends/
 * never includes the program's whole configuration (the build's include
 * paths enforce it).  Every char * is owned by the configuration and freed
 * by config_free(); NULL means "not set".
 */
#ifndef OMIKUJI_BACKEND_CONFIG_H
#define OMIKUJI_BACKEND_CONFIG_H

#include "strlist.h"

struct backend_type;

struct config_file {
	char *path;             /* default $XDG_DATA_HOME/omikuji-keyfs/keys.enc */
	char *passphrase_file;  /* else $OMIKUJI_KEYFS_PASSPHRASE, else a master-key file */
};

struct config_keyring {
	char *service;          /* default "omikuji" */
	int timeout_seconds;    /* default 5: the deadline of every D-Bus call */
	int cache_ttl_seconds;  /* default 300 */
};

struct config_vault {
	struct strlist urls;    /* `url:` or `urls: [..]`; tried in order */
	char *mount_path;       /* default "secret" */
	char *path_prefix;      /* default "omikuji/keys" */
	char *auth_method;      /* "token" (default) | "approle" */
	char *token;            /* secret */
	char *token_file;
	char *role_id;
	char *secret_id;        /* secret */
	char *secret_id_file;
	char *approle_mount;    /* default "approle" */
	char *namespace;
	char *ca_cert;
	char *client_cert;
	char *client_key;
	int timeout_seconds;    /* default 5 */
	int max_retries;        /* default 3 */
	int cache_ttl_seconds;  /* default 300 */
	int allow_insecure_http;    /* 1: accept an http:// URL to a non-loopback host */
};

struct config_aws {
	char *region;           /* NULL: $AWS_REGION, $AWS_DEFAULT_REGION, the profile, us-east-1 */
	char *prefix;           /* default "omikuji" */
	char *endpoint_url;     /* NULL: $AWS_ENDPOINT_URL_SECRETS_MANAGER, $AWS_ENDPOINT_URL, regional */
	char *profile;          /* NULL: $AWS_PROFILE, else "default" */
	char *ca_cert;
	int timeout_seconds;    /* default 5 */
	int max_retries;        /* default 3: throttling, 5xx, connection errors */
	int recovery_window_days;  /* default 7 (7..30): DeleteSecret's RecoveryWindowInDays */
	int cache_ttl_seconds;  /* default 300 */
	int allow_insecure_http;    /* 1: accept an http:// endpoint_url to a non-loopback host */
};

/* One backend instance: key_storage (the default instance, named after its
 * type) or an entry of keyfs.backends (contract section 8).  Every instance
 * has all the type sections with their defaults; only its type's is read. */
struct config_backend {
	char *name;                        /* [a-z0-9][a-z0-9_-]{0,31}; key_storage: the type's */
	const struct backend_type *type;   /* from the registry; default file */
	struct strlist networks;           /* shell globs (keyfs.backends only) */
	int max_calls_in_flight;           /* 0: keyfs.max_calls_in_flight */
	int line, column;                  /* where a keyfs.backends entry starts */
	struct config_file file;
	struct config_keyring keyring;
	struct config_vault vault;
	struct config_aws aws;
};

#endif
