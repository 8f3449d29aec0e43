/* config.c - loads omikuji.yaml (contract section 4) into a struct config.
 *
 * The file is read into a tree of positioned nodes (yamltree.h, the YAML
 * engine) and walked with one table per section (struct field): the
 * schema.  Every key this program knows is listed once, with its type,
 * range, default and where it lands in the struct; defaults, printing and
 * freeing are driven by the same rows.  Keys not in
 * a table are errors that name file, line and column; Omikuji's own
 * top-level sections are in the top table as "skip".
 *
 * Scalars: `${VAR}` is replaced by the environment variable (unset is an
 * error), `$$` is a literal `$`, any other `$` is kept as it is.  A path
 * field that starts with `~` or `~/` is relative to $HOME.  A null or empty
 * value leaves the default in place.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend.h"
#include "secret.h"
#include "strbuf.h"
#include "yamltree.h"

/* A config file is small; anything bigger is a mistake (or /dev/zero). */
#define CONFIG_MAX_BYTES (1024 * 1024)

#define MASK "********"

struct loader {
	const char *file;
	char *err;
	size_t errlen;
	struct config *cfg;
	char inline_secret[256];     /* first secret field given literally, "" if none */
	const void *vault_url_seen;  /* the vault section whose `url` or `urls` was given */
	bool start_seen, end_seen;   /* business_hours.start / .end given */
	const struct yamltree_node *key_node; /* the key being loaded */
};

enum field_kind {
	FIELD_STRING,      /* char * */
	FIELD_PATH,        /* char *, `~` expanded */
	FIELD_SECRET,      /* char *, remembered when literal in the file */
	FIELD_CHOICE,      /* char *, one of choices */
	FIELD_ENUM,        /* enum (int-sized), index into choices */
	FIELD_INT,         /* int in [min, max] */
	FIELD_STRLIST,     /* struct strlist */
	FIELD_PRINCIPALS,  /* struct strlist of user:/group:/uid:/gid: */
	FIELD_MODE,        /* int permission bits, printed in octal; parse() checks them */
	FIELD_SECTION,     /* nested mapping described by fields */
	FIELD_LIST,        /* list of mappings, each described by fields (see below) */
	FIELD_CUSTOM,      /* parse() does it; print/release say how it shows and frees */
	FIELD_SKIP,        /* Omikuji's, not ours: ignored whole */
};

struct field;
typedef int field_parser(struct loader *L, const struct field *f, struct yamltree_node *value,
                         void *base, const char *name);
/* A default no `def` can hold (from the environment, a list). 0 or -ENOMEM. */
typedef int field_init(const struct field *f, void *base);
typedef void field_printer(FILE *out, int indent, const struct field *f, const void *base);
typedef void field_release(const struct field *f, void *base);
/* FIELD_LIST: an item's defaults before it is loaded (0 or -ENOMEM), and
 * the checks across its keys after (0 or fail_at()); base is the struct
 * holding the list, i the item's index. */
typedef int item_init(void *item);
typedef int item_check(struct loader *L, const struct field *f, struct yamltree_node *item,
                       void *base, size_t i, const char *name);

struct field {
	const char *key;
	enum field_kind kind;
	size_t offset;                 /* of the member within base */
	long min, max;                 /* FIELD_INT */
	const char *const *choices;    /* FIELD_CHOICE, FIELD_ENUM; NULL-terminated */
	const struct field *fields;    /* FIELD_SECTION */
	field_parser *parse;           /* FIELD_CUSTOM, or a check after FIELD_SECTION */
	const char *hint;              /* appended to "unknown key" of a near miss */
	/* Defaults, printing and freeing are driven by the table too (see
	 * fields_defaults/fields_print/fields_free), so a new field is a row. */
	const char *def;               /* default of a string field; NULL: not set */
	long def_int;                  /* default of FIELD_INT / FIELD_ENUM / FIELD_MODE */
	field_init *init;              /* instead of def/def_int */
	bool holds_list;               /* FIELD_CUSTOM whose offset holds a struct strlist */
	field_printer *print;          /* FIELD_CUSTOM's printing (else holds_list's list, or nothing) */
	field_release *release;        /* FIELD_CUSTOM's freeing (else holds_list's list, or nothing) */
	/* Printed as a value only when is_set says so; else as "# key: (not
	 * set)", or not at all with hide_unset. */
	bool (*is_set)(const struct field *f, const void *base);
	bool hide_unset;
	/* FIELD_LIST: an array of item_size-byte structs at offset (a pointer),
	 * its length (size_t) at count_offset, each item loaded with fields. */
	size_t item_size, count_offset;
	const char *list_noun;         /* "expected <list_noun> for NAME" */
	const char *item_keys;         /* "expected a mapping <item_keys> for NAME[i]" */
	item_init *item_init;
	item_check *item_check;
};

_Static_assert(sizeof(enum log_format) == sizeof(int), "FIELD_ENUM writes an int");
_Static_assert(sizeof(enum audit_failure) == sizeof(int), "FIELD_ENUM writes an int");
_Static_assert(sizeof(enum key_format) == sizeof(int), "FIELD_ENUM writes an int");

/* ------------------------------------------------------------------ */
/* messages */

static int fail_at(struct loader *L, const struct yamltree_node *at, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int fail_at(struct loader *L, const struct yamltree_node *at, int rc, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(L->err, L->errlen, "%s:%zu:%zu: %s", L->file, at->line, at->column, msg);
	return rc;
}

static void join_name(char *dst, size_t len, const char *path, const char *key)
{
	if (path && *path)
		snprintf(dst, len, "%s.%s", path, key);
	else
		snprintf(dst, len, "%s", key);
}

/* ------------------------------------------------------------------ */
/* scalars */

static bool is_env_name_start(int c)
{
	return isalpha(c) || c == '_';
}

/* Expand ${VAR} and $$ in a scalar.  *literal (optional) tells whether the
 * scalar holds text of its own besides ${VAR} references and blanks, i.e.
 * whether a secret in it would sit in the file. */
static int expand(struct loader *L, struct yamltree_node *node, const char *name, char **out, bool *literal)
{
	const char *v = node->value;
	size_t n = node->len;
	struct strbuf b = STRBUF_INIT;
	bool own_text = false;
	int rc = 0;

	*out = NULL;
	if (strlen(v) != n)
		return fail_at(L, node, -EINVAL, "NUL byte in the value of %s", name);
	for (size_t i = 0; i < n; ) {
		if (v[i] == '$' && i + 1 < n && v[i + 1] == '$') {
			strbuf_append(&b, "$", 1);
			own_text = true;
			i += 2;
		} else if (v[i] == '$' && i + 1 < n && v[i + 1] == '{') {
			const char *close = memchr(v + i + 2, '}', n - i - 2);
			size_t len = close ? (size_t)(close - (v + i + 2)) : 0;
			char var[256];
			if (!close) {
				rc = fail_at(L, node, -EINVAL,
				             "unterminated ${ in the value of %s (write $$ for a literal $)", name);
				goto out;
			}
			bool ok = len > 0 && len < sizeof(var) && is_env_name_start((unsigned char)v[i + 2]);
			for (size_t k = 0; ok && k < len; k++)
				ok = isalnum((unsigned char)v[i + 2 + k]) || v[i + 2 + k] == '_';
			if (!ok) {
				rc = fail_at(L, node, -EINVAL,
				             "bad variable name in ${%.*s} in the value of %s",
				             (int)(len > 64 ? 64 : len), v + i + 2, name);
				goto out;
			}
			memcpy(var, v + i + 2, len);
			var[len] = 0;
			const char *val = getenv(var);
			if (!val) {
				rc = fail_at(L, node, -EINVAL,
				             "environment variable '%s' is not set (used by %s)", var, name);
				goto out;
			}
			strbuf_puts(&b, val);
			i += len + 3;
		} else {
			if (!isspace((unsigned char)v[i]))
				own_text = true;
			strbuf_append(&b, v + i, 1);
			i++;
		}
	}
	if (b.error) {
		rc = fail_at(L, node, b.error, "out of memory");
		goto out;
	}
	*out = strbuf_detach(&b, NULL);
	if (literal)
		*literal = own_text;
out:
	/* The buffer may have held a token from the environment. */
	if (b.buf)
		secret_wipe(b.buf, b.cap);
	strbuf_reset(&b);
	return rc;
}

/* Remember the ${VAR} names a secret field expands, so that
 * config_forget_secrets() can wipe them from the environment too. */
static void note_secret_vars(struct loader *L, struct yamltree_node *node)
{
	const char *v = node->value;
	for (const char *p = strstr(v, "${"); p; p = strstr(p + 2, "${")) {
		const char *close = strchr(p + 2, '}');
		if (!close || close - p - 2 >= 256 || (p > v && p[-1] == '$'))
			continue;
		char var[256];
		memcpy(var, p + 2, (size_t)(close - p - 2));
		var[close - p - 2] = 0;
		if (!strlist_contains(&L->cfg->secret_env, var))
			strlist_add(&L->cfg->secret_env, var);
	}
}

static int home_dir(const char **home)
{
	const char *h = getenv("HOME");
	if (!h || !*h) {
		struct passwd *pw = getpwuid(getuid());
		h = pw ? pw->pw_dir : NULL;
	}
	if (!h || !*h)
		return -ENOENT;
	*home = h;
	return 0;
}

/* A relative path is taken relative to the config file's directory, so it
 * means the same whatever the daemon's working directory (it chdirs to /
 * when it goes into the background). */
static int absolutize(struct loader *L, struct yamltree_node *node, char **s)
{
	char *p = *s;
	if (p[0] == '/' || !L->file)
		return 0;
	char *dir = NULL;
	if (L->file[0] == '/') {
		dir = strdup(L->file);
	} else {
		char cwd[4096];
		if (!getcwd(cwd, sizeof(cwd)) || asprintf(&dir, "%s/%s", cwd, L->file) < 0)
			dir = NULL;
	}
	if (!dir)
		return fail_at(L, node, -ENOMEM, "cannot resolve the relative path '%s'", p);
	char *slash = strrchr(dir, '/');
	*slash = 0;
	char *joined;
	int n = asprintf(&joined, "%s/%s", dir[0] ? dir : "", p[0] == '.' && p[1] == '/' ? p + 2 : p);
	free(dir);
	if (n < 0)
		return fail_at(L, node, -ENOMEM, "out of memory");
	free(p);
	*s = joined;
	return 0;
}

static int expand_tilde(struct loader *L, struct yamltree_node *node, const char *name, char **s)
{
	const char *home;
	char *p = *s;
	if (p[0] != '~' || (p[1] && p[1] != '/'))
		return absolutize(L, node, s);
	if (home_dir(&home) < 0)
		return fail_at(L, node, -ENOENT, "cannot expand ~ in %s: HOME is not set", name);
	char *joined;
	if (asprintf(&joined, "%s%s", home, p + 1) < 0)
		return fail_at(L, node, -ENOMEM, "out of memory");
	free(p);
	*s = joined;
	return 0;
}

/* The expanded scalar, or NULL for null or empty. */
static int get_string(struct loader *L, struct yamltree_node *node, const char *name, char **out, bool *literal)
{
	*out = NULL;
	if (literal)
		*literal = false;
	if (yamltree_is_null(node))
		return 0;
	if (node->kind != YAMLTREE_SCALAR)
		return fail_at(L, node, -EINVAL, "expected a string for %s", name);
	int rc = expand(L, node, name, out, literal);
	if (rc == 0 && !**out) {
		free(*out);
		*out = NULL;
	}
	return rc;
}

static void replace_string(char **slot, char *value, bool wipe)
{
	if (*slot && wipe)
		secret_wipe(*slot, strlen(*slot));
	free(*slot);
	*slot = value;
}

static int choice_index(const char *const *choices, const char *s)
{
	for (int i = 0; choices[i]; i++)
		if (strcmp(choices[i], s) == 0)
			return i;
	return -1;
}

static int fail_choice(struct loader *L, struct yamltree_node *node, const char *name,
                       const char *const *choices, const char *got)
{
	char list[256] = "";
	for (int i = 0; choices[i]; i++) {
		size_t len = strlen(list);
		snprintf(list + len, sizeof(list) - len, "%s%s", i ? ", " : "", choices[i]);
	}
	return fail_at(L, node, -EINVAL, "%s must be one of %s (got '%.64s')",
	               name, list, got);
}

static int get_int(struct loader *L, struct yamltree_node *node, const char *name, long min, long max, int *out)
{
	char *s = NULL, *end;
	int rc;
	if (node->kind != YAMLTREE_SCALAR || yamltree_is_null(node))
		return fail_at(L, node, -EINVAL, "expected an integer for %s", name);
	rc = expand(L, node, name, &s, NULL);
	if (rc)
		return rc;
	errno = 0;
	long v = strtol(s, &end, 10);
	bool digits = isdigit((unsigned char)s[0]) || (s[0] == '-' && isdigit((unsigned char)s[1]));
	if (!digits || *end) {
		rc = fail_at(L, node, -EINVAL, "expected an integer for %s", name);
	} else if (errno == ERANGE || v < min || v > max) {
		rc = fail_at(L, node, -ERANGE, "%s must be between %ld and %ld (got %.32s)",
		             name, min, max, s);
	} else {
		*out = (int)v;
	}
	free(s);
	return rc;
}

static int get_strlist(struct loader *L, struct yamltree_node *node, const char *name,
                       struct strlist *out, int (*check)(struct loader *, struct yamltree_node *, const char *, const char *))
{
	strlist_clear(out);
	if (yamltree_is_null(node))
		return 0;
	if (node->kind != YAMLTREE_SEQUENCE)
		return fail_at(L, node, -EINVAL, "expected a list for %s", name);
	for (size_t i = 0; i < node->n; i++) {
		struct yamltree_node *item = node->items[i];
		char *s = NULL;
		int rc;
		if (!item || item->kind != YAMLTREE_SCALAR || yamltree_is_null(item))
			return fail_at(L, item ? item : node, -EINVAL,
			               "expected a string in the list %s", name);
		rc = expand(L, item, name, &s, NULL);
		if (rc == 0 && check)
			rc = check(L, item, name, s);
		if (rc) {
			free(s);
			return rc;
		}
		if (strlist_take(out, s) < 0)
			return fail_at(L, item, -ENOMEM, "out of memory");
	}
	return 0;
}

static bool valid_account_name(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 64 || s[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("._-", s[i]) && !(s[i] == '$' && i == n - 1))
			return false;
	return true;
}

static bool valid_id(const char *s)
{
	if (!*s || strlen(s) > 10)
		return false;
	for (const char *p = s; *p; p++)
		if (!isdigit((unsigned char)*p))
			return false;
	/* (uid_t)-1 means "no change" to the kernel, never a real caller. */
	return strtoull(s, NULL, 10) < UINT32_MAX;
}

static int check_principal(struct loader *L, struct yamltree_node *node, const char *name, const char *s)
{
	bool ok = false;
	if (strncmp(s, "user:", 5) == 0 || strncmp(s, "group:", 6) == 0)
		ok = valid_account_name(strchr(s, ':') + 1);
	else if (strncmp(s, "uid:", 4) == 0 || strncmp(s, "gid:", 4) == 0)
		ok = valid_id(s + 4);
	if (!ok)
		return fail_at(L, node, -EINVAL,
		               "bad principal '%.64s' in %s (expected user:NAME, group:NAME, uid:N or gid:N)",
		               s, name);
	return 0;
}

static int check_nonempty(struct loader *L, struct yamltree_node *node, const char *name, const char *s)
{
	if (!*s)
		return fail_at(L, node, -EINVAL, "empty string in the list %s", name);
	return 0;
}

/* ------------------------------------------------------------------ */
/* the walk */

static int load_mapping(struct loader *L, struct yamltree_node *node, const struct field *fields,
                        void *base, const char *path);

static int load_list(struct loader *L, const struct field *f, struct yamltree_node *value,
                     void *base, const char *name);

static int load_field(struct loader *L, const struct field *f, struct yamltree_node *value,
                      void *base, const char *name)
{
	void *slot = (char *)base + f->offset;
	char *s = NULL;
	bool literal = false;
	int rc = 0;

	switch (f->kind) {
	case FIELD_SKIP:
		return 0;
	case FIELD_CUSTOM:
	case FIELD_MODE:
		return f->parse(L, f, value, base, name);
	case FIELD_LIST:
		return load_list(L, f, value, base, name);
	case FIELD_SECTION:
		rc = load_mapping(L, value, f->fields, slot, name);
		if (rc == 0 && f->parse)
			rc = f->parse(L, f, value, slot, name);
		return rc;
	case FIELD_INT:
		return get_int(L, value, name, f->min, f->max, slot);
	case FIELD_STRLIST:
		return get_strlist(L, value, name, slot, check_nonempty);
	case FIELD_PRINCIPALS:
		return get_strlist(L, value, name, slot, check_principal);
	case FIELD_STRING:
	case FIELD_PATH:
	case FIELD_SECRET:
	case FIELD_CHOICE:
	case FIELD_ENUM:
		break;
	}

	rc = get_string(L, value, name, &s, &literal);
	if (rc)
		return rc;
	if (f->kind == FIELD_PATH && s)
		rc = expand_tilde(L, value, name, &s);
	if (f->kind == FIELD_SECRET && literal && !L->inline_secret[0])
		snprintf(L->inline_secret, sizeof(L->inline_secret), "%s", name);
	if (f->kind == FIELD_SECRET && s)
		note_secret_vars(L, value);
	if (rc == 0 && (f->kind == FIELD_CHOICE || f->kind == FIELD_ENUM)) {
		int idx = s ? choice_index(f->choices, s) : -1;
		if (s && idx < 0)
			rc = fail_choice(L, value, name, f->choices, s);
		else if (f->kind == FIELD_ENUM) {
			if (s)
				memcpy(slot, &idx, sizeof(idx));
			free(s);
			return 0;
		}
	}
	if (rc) {
		if (s)
			secret_wipe(s, strlen(s));
		free(s);
		return rc;
	}
	/* null or empty: the default stays */
	if (s)
		replace_string(slot, s, f->kind == FIELD_SECRET);
	return 0;
}

/* Edit distance of two short strings, capped at 3 (enough to tell a typo). */
static int edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la > 40 || lb > 40 || (la > lb ? la - lb : lb - la) > 3)
		return 3;
	int d[41][41];
	for (size_t i = 0; i <= la; i++)
		d[i][0] = (int)i;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = (int)j;
	for (size_t i = 1; i <= la; i++)
		for (size_t j = 1; j <= lb; j++) {
			int sub = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
			int del = d[i - 1][j] + 1, ins = d[i][j - 1] + 1;
			d[i][j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
		}
	return d[la][lb] > 3 ? 3 : d[la][lb];
}

/* An unknown top-level key this close to one of our own sections is a
 * typo (an error), not an Omikuji section to skip. */
static bool near_own_section(const struct field *fields, const char *k)
{
	for (const struct field *f = fields; f->key; f++)
		if (f->kind != FIELD_SKIP && edit_distance(f->key, k) <= 2)
			return true;
	return false;
}

static int load_mapping(struct loader *L, struct yamltree_node *node, const struct field *fields,
                        void *base, const char *path)
{
	if (yamltree_is_null(node))
		return 0;
	if (node->kind != YAMLTREE_MAPPING) {
		if (path && *path)
			return fail_at(L, node, -EINVAL, "expected a mapping for %s", path);
		return fail_at(L, node, -EINVAL, "expected a mapping at the top level");
	}
	for (size_t i = 0; i < node->n; i++) {
		struct yamltree_node *key = node->keys[i];
		struct yamltree_node *value = node->values[i];
		const struct field *f;
		char name[256];
		int rc;

		if (key->kind != YAMLTREE_SCALAR)
			return fail_at(L, key, -EINVAL, "keys must be plain strings");
		const char *k = key->value;
		for (size_t j = 0; j < i; j++) {
			struct yamltree_node *other = node->keys[j];
			if (other && other->kind == YAMLTREE_SCALAR &&
			    strcmp(other->value, k) == 0)
				return fail_at(L, key, -EINVAL, "duplicate key '%.64s'%s%s",
				               k, path && *path ? " in " : " at the top level",
				               path && *path ? path : "");
		}
		for (f = fields; f->key; f++)
			if (strcmp(f->key, k) == 0)
				break;
		if (!f->key && !(path && *path) && !near_own_section(fields, k)) {
			/* A section of a newer Omikuji: not ours to judge. */
			char w[512];
			snprintf(w, sizeof(w), "%s:%zu:%zu: unknown top-level section '%.64s' skipped "
			         "(Omikuji's own?)", L->file, key->line,
			         key->column, k);
			if (strlist_add(&L->cfg->warnings, w) < 0)
				return fail_at(L, key, -ENOMEM, "out of memory");
			continue;
		}
		if (!f->key) {
			const char *hint = "";
			for (const struct field *h = fields; h->key; h++)
				if ((h->hint && strcmp(h->hint, k) == 0) ||
				    (!(path && *path) && h->kind != FIELD_SKIP && edit_distance(h->key, k) <= 2))
					hint = h->key;
			return fail_at(L, key, -EINVAL, "unknown key '%.64s' %s%s%s%s%s",
			               k, path && *path ? "in " : "at the top level", path ? path : "",
			               *hint ? " (did you mean '" : "", hint, *hint ? "'?)" : "");
		}
		join_name(name, sizeof(name), path, k);
		L->key_node = key;
		rc = load_field(L, f, value, base, name);
		if (rc)
			return rc;
	}
	return 0;
}

static void fields_free(const struct field *fields, void *base);
static int fields_defaults(const struct field *fields, void *base);

static void list_free(const struct field *f, void *base)
{
	char **array = (char **)((char *)base + f->offset);
	size_t *count = (size_t *)((char *)base + f->count_offset);
	for (size_t i = 0; *array && i < *count; i++)
		fields_free(f->fields, *array + i * f->item_size);
	free(*array);
	*array = NULL;
	*count = 0;
}

/* A FIELD_LIST: each item a mapping loaded with the row's fields; the count
 * grows as items are loaded, so a failure frees what was made. */
static int load_list(struct loader *L, const struct field *f, struct yamltree_node *value,
                     void *base, const char *name)
{
	char **array = (char **)((char *)base + f->offset);
	size_t *count = (size_t *)((char *)base + f->count_offset);
	list_free(f, base);
	if (!yamltree_is_null(value)) {
		if (value->kind != YAMLTREE_SEQUENCE)
			return fail_at(L, value, -EINVAL, "expected %s for %s", f->list_noun, name);
		if (value->n && !(*array = calloc(value->n, f->item_size)))
			return fail_at(L, value, -ENOMEM, "out of memory");
		for (size_t i = 0; i < value->n; i++) {
			struct yamltree_node *item = value->items[i];
			char *slot = *array + i * f->item_size;
			char item_name[256 + 24];   /* a name of up to 255 and "[i]" */
			*count = i + 1;
			snprintf(item_name, sizeof(item_name), "%s[%zu]", name, i);
			if (f->item_init && f->item_init(slot) < 0)
				return fail_at(L, item, -ENOMEM, "out of memory");
			if (item->kind != YAMLTREE_MAPPING)
				return fail_at(L, item, -EINVAL, "expected a mapping %s for %s", f->item_keys,
				               item_name);
			int rc = load_mapping(L, item, f->fields, slot, item_name);
			if (rc == 0 && f->item_check)
				rc = f->item_check(L, f, item, base, i, item_name);
			if (rc)
				return rc;
		}
	}
	return f->parse ? f->parse(L, f, value, base, name) : 0;
}

/* ------------------------------------------------------------------ */
/* custom fields */

static int parse_vault_url(struct loader *L, const struct field *f, struct yamltree_node *value,
                           void *base, const char *name)
{
	struct config_vault *v = base;
	char *s = NULL;
	int rc;

	if (L->vault_url_seen == v) {
		char section[256];
		snprintf(section, sizeof(section), "%s", name);
		char *dot = strrchr(section, '.');
		if (dot)
			*dot = 0;
		return fail_at(L, L->key_node, -EINVAL,
		               "both url and urls are given in %s; use one of them", section);
	}
	L->vault_url_seen = v;
	if (strcmp(f->key, "urls") == 0)
		return get_strlist(L, value, name, &v->urls, check_nonempty);
	rc = get_string(L, value, name, &s, NULL);
	if (rc)
		return rc;
	strlist_clear(&v->urls);
	if (s && strlist_take(&v->urls, s) < 0)
		return fail_at(L, value, -ENOMEM, "out of memory");
	return 0;
}

/* An octal file mode such as "0640" for the audit log: the owner reads and
 * writes; the group may read (log shippers) or read and write; no others. */
static int parse_file_mode(struct loader *L, const struct field *f, struct yamltree_node *value,
                           void *base, const char *name)
{
	char *s = NULL, *end = NULL;
	int rc = get_string(L, value, name, &s, NULL);
	if (rc || !s)
		return rc;
	long mode = strtol(s, &end, 8);
	if (!*s || *end || (mode & ~0660L) || (mode & 0600L) != 0600L)
		rc = fail_at(L, value, -EINVAL,
		             "%s: expected an octal mode from 0600 to 0660 such as \"0640\" (owner "
		             "read-write, group at most read-write, nothing for others), not '%s'", name, s);
	else
		*(int *)((char *)base + f->offset) = (int)mode;
	free(s);
	return rc;
}

/* Is the host of an http(s) URL a loopback address? */
static bool url_host_is_loopback(const char *url)
{
	const char *h = strstr(url, "://");
	h = h ? h + 3 : url;
	const char *at = strchr(h, '@');
	const char *slash = strchr(h, '/');
	if (at && (!slash || at < slash))
		h = at + 1;
	size_t n = strcspn(h, "/?#");
	if (n >= 5 && strncmp(h, "[::1]", 5) == 0)
		return true;
	size_t host = strcspn(h, ":/?#");
	return (host == 9 && strncmp(h, "localhost", 9) == 0) || strncmp(h, "127.", 4) == 0;
}

/* The token or credentials would cross the network in clear: refused unless
 * allow_insecure_http, a warning otherwise (loopback or allowed). */
static int check_http_url(struct loader *L, struct yamltree_node *value, const char *name, const char *url,
                          int allowed)
{
	if (strncasecmp(url, "http://", 7) != 0)
		return 0;
	bool loopback = url_host_is_loopback(url);
	if (!loopback && !allowed)
		return fail_at(L, value, -EINVAL,
		               "%s: %s is plain http: credentials and keys would cross the network in "
		               "clear; use https://, or set allow_insecure_http: true", name, url);
	char *w = NULL;
	if (asprintf(&w, "%s: %s is plain http: credentials and keys travel unencrypted%s", name, url,
	             loopback ? " (loopback only)" : " (allow_insecure_http: true)") >= 0)
		strlist_take(&L->cfg->warnings, w);
	return 0;
}

/* Plain-http URLs of an instance's remote backend (its own section only). */
static int check_backend_http(struct loader *L, struct yamltree_node *value, const char *name,
                              const struct config_backend *b)
{
	int rc = 0;
	const char *type = b->type ? b->type->name : "";
	char where[160];
	if (strcmp(type, "vault") == 0) {
		snprintf(where, sizeof(where), "%s.vault", name);
		for (size_t i = 0; rc == 0 && i < b->vault.urls.n; i++)
			rc = check_http_url(L, value, where, b->vault.urls.items[i],
			                    b->vault.allow_insecure_http);
	}
	if (strcmp(type, "aws-secrets") == 0 && b->aws.endpoint_url) {
		snprintf(where, sizeof(where), "%s.aws_secrets.endpoint_url", name);
		rc = check_http_url(L, value, where, b->aws.endpoint_url, b->aws.allow_insecure_http);
	}
	return rc;
}

static int check_key_storage(struct loader *L, const struct field *f, struct yamltree_node *value,
                             void *base, const char *name)
{
	(void)f;
	return check_backend_http(L, value, name, base);
}

static const char *const log_target_types[] = { "file", "stdout", "stderr", "syslog", NULL };

static const struct field log_target_fields[] = {
	{ "type", FIELD_CHOICE, offsetof(struct config_log_target, type), .choices = log_target_types },
	{ "path", FIELD_PATH, offsetof(struct config_log_target, path) },
	{ NULL },
};

/* One stderr target: where a program logs before it is told otherwise. */
static int default_log_targets(const struct field *f, void *base)
{
	struct config_logging *lg = base;
	(void)f;
	if (!(lg->targets = calloc(1, sizeof(*lg->targets))))
		return -ENOMEM;
	lg->n_targets = 1;
	return (lg->targets[0].type = strdup("stderr")) ? 0 : -ENOMEM;
}

static int check_log_target(struct loader *L, const struct field *f, struct yamltree_node *item,
                            void *base, size_t i, const char *item_name)
{
	const struct config_log_target *t = &((struct config_logging *)base)->targets[i];
	(void)f;
	if (!t->type)
		return fail_at(L, item, -EINVAL, "%s needs a type", item_name);
	if (strcmp(t->type, "file") == 0 && !t->path)
		return fail_at(L, item, -EINVAL, "%s: type file needs a path", item_name);
	if (strcmp(t->type, "file") != 0 && t->path)
		return fail_at(L, item, -EINVAL, "%s: path is only valid with type file", item_name);
	return 0;
}

static const struct field access_rule_fields[] = {
	{ "networks", FIELD_STRLIST, offsetof(struct config_access_rule, networks) },
	{ "read", FIELD_PRINCIPALS, offsetof(struct config_access_rule, read) },
	{ "write", FIELD_PRINCIPALS, offsetof(struct config_access_rule, write) },
	{ "remove", FIELD_PRINCIPALS, offsetof(struct config_access_rule, remove) },
	{ "list", FIELD_PRINCIPALS, offsetof(struct config_access_rule, list) },
	{ "address", FIELD_PRINCIPALS, offsetof(struct config_access_rule, address) },
	{ NULL },
};

static int access_rule_line(struct loader *L, const struct field *f, struct yamltree_node *item,
                            void *base, size_t i, const char *item_name)
{
	(void)L, (void)f, (void)item_name;
	((struct config_keyfs *)base)->access[i].line = (int)item->line;
	return 0;
}

/* `access: []` is set (no rules: nobody); absent or null is not (the
 * mounting user and root). */
static int access_given(struct loader *L, const struct field *f, struct yamltree_node *value,
                        void *base, const char *name)
{
	(void)L, (void)f, (void)name;
	((struct config_keyfs *)base)->access_set = !yamltree_is_null(value);
	return 0;
}

static bool access_is_set(const struct field *f, const void *base)
{
	(void)f;
	return ((const struct config_keyfs *)base)->access_set;
}

/* "HH:MM" (or "24:00" for an end) -> minutes after midnight. */
static int parse_hhmm(const char *s, int *minutes)
{
	int h = 0, m;
	size_t i = 0;
	if (!isdigit((unsigned char)s[0]))
		return -EINVAL;
	while (isdigit((unsigned char)s[i]) && i < 2)
		h = h * 10 + (s[i++] - '0');
	if (s[i] != ':' || !isdigit((unsigned char)s[i + 1]) || !isdigit((unsigned char)s[i + 2]) || s[i + 3])
		return -EINVAL;
	m = (s[i + 1] - '0') * 10 + (s[i + 2] - '0');
	if (m > 59 || h > 24 || (h == 24 && m != 0))
		return -EINVAL;
	*minutes = h * 60 + m;
	return 0;
}

static int parse_time_of_day(struct loader *L, const struct field *f, struct yamltree_node *value,
                             void *base, const char *name)
{
	struct config_business_hours *bh = base;
	bool start = strcmp(f->key, "start") == 0;
	int *slot = start ? &bh->start_minute : &bh->end_minute;
	char *s = NULL;
	int rc = get_string(L, value, name, &s, NULL);
	if (rc)
		return rc;
	if (!s || parse_hhmm(s, slot) < 0 || (start && *slot == 24 * 60))
		rc = fail_at(L, value, -EINVAL,
		             "%s must be a time of day \"HH:MM\" (got '%.32s')", name, s ? s : "");
	else if (start)
		L->start_seen = true;
	else
		L->end_seen = true;
	free(s);
	return rc;
}

static void print_time_of_day(FILE *out, int indent, const struct field *f, const void *base)
{
	int minutes = *(const int *)((const char *)base + f->offset);
	fprintf(out, "%*s%s: \"%02d:%02d\"\n", indent, "", f->key, minutes / 60, minutes % 60);
}

static const char *const day_names[] = { "sun", "mon", "tue", "wed", "thu", "fri", "sat", NULL };

static void print_days(FILE *out, int indent, const struct field *f, const void *base)
{
	unsigned mask = *(const unsigned *)((const char *)base + f->offset);
	bool first = true;
	fprintf(out, "%*s%s: [", indent, "", f->key);
	for (int d = 0; d < 7; d++) {
		if (!(mask & (1u << d)))
			continue;
		fprintf(out, "%s%s", first ? "" : ", ", day_names[d]);
		first = false;
	}
	fputs("]\n", out);
}
static const char *const day_long_names[] = {
	"sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", NULL };

static int parse_days(struct loader *L, const struct field *f, struct yamltree_node *value,
                      void *base, const char *name)
{
	struct config_business_hours *bh = base;
	struct strlist days = STRLIST_INIT;
	unsigned mask = 0;
	int rc = get_strlist(L, value, name, &days, NULL);
	if (rc)
		goto out;
	for (size_t i = 0; i < days.n; i++) {
		int d = -1;
		for (int j = 0; j < 7 && d < 0; j++)
			if (strcasecmp(days.items[i], day_names[j]) == 0 ||
			    strcasecmp(days.items[i], day_long_names[j]) == 0)
				d = j;
		if (d < 0) {
			struct yamltree_node *item = value->items[i];
			rc = fail_at(L, item, -EINVAL,
			             "%s: '%.32s' is not a day (mon, tue, wed, thu, fri, sat, sun)",
			             name, days.items[i]);
			goto out;
		}
		mask |= 1u << d;
	}
	if (!mask) {
		rc = fail_at(L, value, -EINVAL, "%s must name at least one day", name);
		goto out;
	}
	bh->days_mask = mask;
out:
	strlist_clear(&days);
	return rc;
}

static int check_business_hours(struct loader *L, const struct field *f, struct yamltree_node *value,
                                void *base, const char *name)
{
	struct config_business_hours *bh = base;
	if (yamltree_is_null(value))
		return 0;
	bh->set = true;
	if (!L->start_seen || !L->end_seen)
		return fail_at(L, value, -EINVAL, "%s needs both start and end (\"HH:MM\")", name);
	if (bh->start_minute == bh->end_minute)
		return fail_at(L, value, -EINVAL, "%s: start and end are the same time", name);
	if (!bh->timezone && !(bh->timezone = strdup("UTC")))
		return fail_at(L, value, -ENOMEM, "out of memory");
	return 0;
}

static bool business_hours_set(const struct field *f, const void *base)
{
	return ((const struct config_business_hours *)((const char *)base + f->offset))->set;
}

static bool rate_limit_set(const struct field *f, const void *base)
{
	return ((const struct config_rate_limit *)((const char *)base + f->offset))->set;
}

static int check_rate_limit(struct loader *L, const struct field *f, struct yamltree_node *value,
                            void *base, const char *name)
{
	struct config_rate_limit *r = base;
	if (yamltree_is_null(value))
		return 0;
	if (r->reads_per_minute <= 0)
		return fail_at(L, value, -EINVAL, "%s needs reads_per_minute", name);
	r->set = true;
	return 0;
}

static int parse_storage_type(struct loader *L, const struct field *f, struct yamltree_node *value,
                              void *base, const char *name)
{
	struct config_backend *b = base;
	char *s = NULL;
	int rc = get_string(L, value, name, &s, NULL);
	if (rc || !s)
		return rc;
	const struct backend_type *t = backend_type_find(s);
	if (!t) {
		char list[256] = "";
		const struct backend_type *r;
		for (size_t i = 0; (r = backend_type_at(i)); i++) {
			size_t len = strlen(list);
			snprintf(list + len, sizeof(list) - len, "%s%s", i ? ", " : "", r->name);
		}
		rc = fail_at(L, value, -EINVAL, "%s must be one of %s (got '%.64s')",
		             name, list, s);
	} else {
		b->type = t;
	}
	free(s);
	return rc;
}

static int default_storage_type(const struct field *f, void *base)
{
	(void)f;
	((struct config_backend *)base)->type = backend_type_find("file");
	return 0;
}

static void print_storage_type(FILE *out, int indent, const struct field *f, const void *base)
{
	fprintf(out, "%*s%s: %s\n", indent, "", f->key, config_storage_name(base));
}

/* Only an instance's own type section is shown (key_storage's others are
 * Omikuji's business; a keyfs.backends entry has no others). */
static bool section_is_active(const struct field *f, const void *base)
{
	const struct config_backend *b = base;
	return b->type && strcmp(b->type->section, f->key) == 0;
}

static bool int_is_set(const struct field *f, const void *base)
{
	return *(const int *)((const char *)base + f->offset) != 0;
}

static int default_int(const struct field *f, void *base)
{
	*(int *)((char *)base + f->offset) = (int)f->def_int;
	return 0;
}

/* Shell globs over network names: the name characters plus * ? [ ] ! ^. */
static int check_glob(struct loader *L, struct yamltree_node *node, const char *name, const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 128)
		return fail_at(L, node, -EINVAL,
		               "%s: a glob must have 1 to 128 characters", name);
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '[') {
			const char *close = strchr(s + i + 2, ']');
			if (i + 1 >= n || !close)
				return fail_at(L, node, -EINVAL,
				               "%s: unclosed [ in the glob '%.64s'", name, s);
			i = (size_t)(close - s);
			continue;
		}
		if (!isalnum((unsigned char)c) && !strchr("._-*?", c))
			return fail_at(L, node, -EINVAL,
			               "%s: '%c' cannot occur in a network name or glob ('%.64s')",
			               name, c, s);
	}
	return 0;
}

static int parse_networks(struct loader *L, const struct field *f, struct yamltree_node *value,
                          void *base, const char *name)
{
	struct config_backend *b = base;
	return get_strlist(L, value, name, &b->networks, check_glob);
}

static bool valid_instance_name(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > BACKEND_NAME_MAX - 1 || !(islower((unsigned char)s[0]) || isdigit((unsigned char)s[0])))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!islower((unsigned char)s[i]) && !isdigit((unsigned char)s[i]) && s[i] != '_' && s[i] != '-')
			return false;
	return true;
}

static bool is_type_name(const char *s)
{
	const struct backend_type *t;
	for (size_t i = 0; (t = backend_type_at(i)); i++)
		if (strcmp(t->name, s) == 0 || strcmp(t->instance_name, s) == 0)
			return true;
	return false;
}

static const struct field backend_entry_fields[];

/* An entry's defaults: every type section's, and no type until it says. */
static int backend_entry_init(void *item)
{
	struct config_backend *b = item;
	memset(b, 0, sizeof(*b));
	return fields_defaults(backend_entry_fields, b);
}

/* keyfs.backends: named instances, each parsed with the same section tables
 * as key_storage. */
static int check_backend_entry(struct loader *L, const struct field *f, struct yamltree_node *item,
                               void *base, size_t i, const char *item_name)
{
	struct config_keyfs *k = base;
	struct config_backend *b = &k->backends[i];
	(void)f;
	b->line = (int)item->line;
	b->column = (int)item->column;
	if (!b->name)
		return fail_at(L, item, -EINVAL, "%s needs a name", item_name);
	if (!valid_instance_name(b->name))
		return fail_at(L, item, -EINVAL,
		               "%s: bad name '%.64s' (expected [a-z0-9][a-z0-9_-]{0,31})",
		               item_name, b->name);
	if (is_type_name(b->name))
		return fail_at(L, item, -EINVAL,
		               "%s: the name '%s' is a backend type's; choose another", item_name,
		               b->name);
	for (size_t j = 0; j < i; j++)
		if (strcmp(k->backends[j].name, b->name) == 0)
			return fail_at(L, item, -EINVAL,
			               "%s: duplicate backend name '%s' (first at line %d)",
			               item_name, b->name, k->backends[j].line);
	if (!b->type)
		return fail_at(L, item, -EINVAL, "%s needs a storage_type", item_name);
	return check_backend_http(L, item, item_name, b);
}

/* ------------------------------------------------------------------ */
/* the schema */

#define DAY (24 * 3600)

static const char *const auth_methods[] = { "token", "approle", NULL };
static const char *const log_formats[] = { "json", "text", NULL };
static const char *const log_levels[] = { "debug", "info", "warn", "error", NULL };
static const char *const audit_failures[] = { "deny", "allow", NULL };
static const char *const key_formats[] = { "evm", "any", NULL };
static const char *const booleans[] = { "false", "true", NULL };

/* An octal permission mode such as 0440 (read bits only: these files are
 * read-only). */
static int parse_monitoring_mode(struct loader *L, const struct field *f, struct yamltree_node *value,
                                 void *base, const char *name)
{
	char *s = NULL, *end;
	int rc;
	if (value->kind != YAMLTREE_SCALAR || yamltree_is_null(value))
		return fail_at(L, value, -EINVAL, "expected an octal mode such as 0440 for %s",
		               name);
	rc = expand(L, value, name, &s, NULL);
	if (rc)
		return rc;
	long v = strtol(s, &end, 8);
	if (!s[0] || *end || v < 0 || v > 0777 || (v & 0333))
		rc = fail_at(L, value, -EINVAL, "%s must be octal read bits such as 0440 "
		             "(got %.16s)", name, s);
	else
		*(int *)((char *)base + f->offset) = (int)v;
	free(s);
	return rc;
}

/* $VAR/suffix when $VAR is an absolute path (XDG base directory rules),
 * else $HOME/fallback/suffix. */
static char *xdg_path(const char *var, const char *fallback, const char *suffix)
{
	const char *dir = getenv(var);
	const char *home;
	char *out = NULL;
	if (dir && dir[0] == '/') {
		if (asprintf(&out, "%s/%s", dir, suffix) < 0)
			return NULL;
		return out;
	}
	if (home_dir(&home) < 0)
		home = "/";
	if (asprintf(&out, "%s/%s/%s", strcmp(home, "/") == 0 ? "" : home, fallback, suffix) < 0)
		return NULL;
	return out;
}

static int default_key_file(const struct field *f, void *base)
{
	char **slot = (char **)((char *)base + f->offset);
	return (*slot = xdg_path("XDG_DATA_HOME", ".local/share", "omikuji-keyfs/keys.enc")) ? 0 : -ENOMEM;
}

static int default_audit_log(const struct field *f, void *base)
{
	char **slot = (char **)((char *)base + f->offset);
	return (*slot = xdg_path("XDG_STATE_HOME", ".local/state", "omikuji-keyfs/audit.log")) ? 0 : -ENOMEM;
}

static const struct field file_fields[] = {
	{ "path", FIELD_PATH, offsetof(struct config_file, path), .init = default_key_file },
	{ "passphrase_file", FIELD_PATH, offsetof(struct config_file, passphrase_file) },
	{ NULL },
};

static const struct field keyring_fields[] = {
	{ "service", FIELD_STRING, offsetof(struct config_keyring, service), .def = "omikuji" },
	{ "timeout_seconds", FIELD_INT, offsetof(struct config_keyring, timeout_seconds), 1, 600,
	  .def_int = 5 },
	{ "cache_ttl_seconds", FIELD_INT, offsetof(struct config_keyring, cache_ttl_seconds), 0, DAY,
	  .def_int = 300 },
	{ NULL },
};

#define V(m) offsetof(struct config_vault, m)
static const struct field vault_fields[] = {
	{ "url", FIELD_CUSTOM, .parse = parse_vault_url },
	{ "urls", FIELD_CUSTOM, V(urls), .parse = parse_vault_url, .holds_list = true },
	{ "mount_path", FIELD_STRING, V(mount_path), .def = "secret" },
	{ "path_prefix", FIELD_STRING, V(path_prefix), .def = "omikuji/keys" },
	{ "auth_method", FIELD_CHOICE, V(auth_method), .choices = auth_methods, .def = "token" },
	{ "token", FIELD_SECRET, V(token) },
	{ "token_file", FIELD_PATH, V(token_file) },
	{ "role_id", FIELD_STRING, V(role_id) },
	{ "secret_id", FIELD_SECRET, V(secret_id) },
	{ "secret_id_file", FIELD_PATH, V(secret_id_file) },
	{ "approle_mount", FIELD_STRING, V(approle_mount), .def = "approle" },
	{ "namespace", FIELD_STRING, V(namespace) },
	{ "ca_cert", FIELD_PATH, V(ca_cert) },
	{ "client_cert", FIELD_PATH, V(client_cert) },
	{ "client_key", FIELD_PATH, V(client_key) },
	{ "timeout_seconds", FIELD_INT, V(timeout_seconds), 1, 600, .def_int = 5 },
	{ "max_retries", FIELD_INT, V(max_retries), 0, 20, .def_int = 3 },
	{ "cache_ttl_seconds", FIELD_INT, V(cache_ttl_seconds), 0, DAY, .def_int = 300 },
	{ "allow_insecure_http", FIELD_ENUM, V(allow_insecure_http), .choices = booleans },
	{ NULL },
};
#undef V

#define A(m) offsetof(struct config_aws, m)
static const struct field aws_fields[] = {
	{ "region", FIELD_STRING, A(region) },
	{ "prefix", FIELD_STRING, A(prefix), .def = "omikuji" },
	{ "endpoint_url", FIELD_STRING, A(endpoint_url) },
	{ "profile", FIELD_STRING, A(profile) },
	{ "ca_cert", FIELD_PATH, A(ca_cert) },
	{ "timeout_seconds", FIELD_INT, A(timeout_seconds), 1, 600, .def_int = 5 },
	{ "max_retries", FIELD_INT, A(max_retries), 0, 10, .def_int = 3 },
	{ "recovery_window_days", FIELD_INT, A(recovery_window_days), 7, 30, .def_int = 7 },
	{ "cache_ttl_seconds", FIELD_INT, A(cache_ttl_seconds), 0, DAY, .def_int = 300 },
	{ "allow_insecure_http", FIELD_ENUM, A(allow_insecure_http), .choices = booleans },
	{ NULL },
};
#undef A

#define B(m) offsetof(struct config_backend, m)
/* The type sections of an instance, the same rows in key_storage and in a
 * keyfs.backends entry. */
#define TYPE_SECTION(key, member, table) \
	{ key, FIELD_SECTION, B(member), .fields = table, .is_set = section_is_active, \
	  .hide_unset = true }
#define TYPE_SECTIONS \
	TYPE_SECTION("keyring", keyring, keyring_fields), \
	TYPE_SECTION("vault", vault, vault_fields), \
	TYPE_SECTION("aws_secrets", aws, aws_fields), \
	TYPE_SECTION("file", file, file_fields)

static const struct field key_storage_fields[] = {
	{ "storage_type", FIELD_CUSTOM, .parse = parse_storage_type, .hint = "backend",
	  .init = default_storage_type, .print = print_storage_type },
	TYPE_SECTIONS,
	{ NULL },
};

/* An entry of keyfs.backends: key_storage's keys plus its own. */
static const struct field backend_entry_fields[] = {
	{ "name", FIELD_STRING, B(name) },
	{ "storage_type", FIELD_CUSTOM, .parse = parse_storage_type, .hint = "backend",
	  .print = print_storage_type },
	{ "networks", FIELD_CUSTOM, B(networks), .parse = parse_networks, .holds_list = true },
	{ "max_calls_in_flight", FIELD_INT, B(max_calls_in_flight), 1, 1024, .is_set = int_is_set },
	TYPE_SECTIONS,
	{ NULL },
};
#undef TYPE_SECTIONS
#undef TYPE_SECTION
#undef B

#define C(m) offsetof(struct config, m)

#define LG(m) offsetof(struct config_logging, m)
static const struct field logging_fields[] = {
	{ "format", FIELD_ENUM, LG(format), .choices = log_formats, .def_int = LOG_FORMAT_JSON },
	{ "level", FIELD_CHOICE, LG(level), .choices = log_levels, .def = "info" },
	{ "targets", FIELD_LIST, LG(targets), .fields = log_target_fields,
	  .item_size = sizeof(struct config_log_target), .count_offset = LG(n_targets),
	  .list_noun = "a list", .item_keys = "(type:, path:)", .item_check = check_log_target,
	  .init = default_log_targets },
	{ NULL },
};
#undef LG

#define BH(m) offsetof(struct config_business_hours, m)
static const struct field business_hours_fields[] = {
	{ "timezone", FIELD_STRING, BH(timezone) },
	{ "start", FIELD_CUSTOM, BH(start_minute), .parse = parse_time_of_day, .print = print_time_of_day },
	{ "end", FIELD_CUSTOM, BH(end_minute), .parse = parse_time_of_day, .print = print_time_of_day },
	{ "days", FIELD_CUSTOM, BH(days_mask), .parse = parse_days, .print = print_days,
	  .init = default_int, .def_int = 0x3e },   /* Mon-Fri */
	{ NULL },
};
#undef BH

#define AN(m) offsetof(struct config_anomaly, m)
static const struct field anomaly_fields[] = {
	{ "burst_reads", FIELD_INT, AN(burst_reads), 1, 1000000, .def_int = 20 },
	{ "burst_window_seconds", FIELD_INT, AN(burst_window_seconds), 1, DAY, .def_int = 10 },
	{ "auth_failures_per_minute", FIELD_INT, AN(auth_failures_per_minute), 1, 1000000,
	  .def_int = 3 },
	{ NULL },
};
#undef AN

static const struct field rate_limit_fields[] = {
	{ "reads_per_minute", FIELD_INT, offsetof(struct config_rate_limit, reads_per_minute), 1, 1000000 },
	{ NULL },
};

#define K(m) offsetof(struct config_keyfs, m)
static const struct field keyfs_fields[] = {
	{ "audit_log", FIELD_PATH, K(audit_log), .init = default_audit_log },
	{ "audit_log_mode", FIELD_MODE, K(audit_log_mode), .parse = parse_file_mode, .def_int = 0600 },
	{ "audit_log_group", FIELD_STRING, K(audit_log_group) },
	{ "audit_failure", FIELD_ENUM, K(audit_failure), .choices = audit_failures,
	  .def_int = AUDIT_FAILURE_DENY },
	{ "audit_key_file", FIELD_PATH, K(audit_key_file) },
	{ "key_format", FIELD_ENUM, K(key_format), .choices = key_formats, .def_int = KEY_FORMAT_EVM },
	{ "access", FIELD_LIST, K(access), .fields = access_rule_fields,
	  .item_size = sizeof(struct config_access_rule), .count_offset = K(n_access),
	  .list_noun = "a list of rules",
	  .item_keys = "(networks:, read:, write:, remove:, list:, address:)",
	  .item_check = access_rule_line, .parse = access_given, .is_set = access_is_set },
	{ "health_interval_seconds", FIELD_INT, K(health_interval_seconds), 1, DAY, .def_int = 15 },
	{ "audit_checkpoint_seconds", FIELD_INT, K(audit_checkpoint_seconds), 1, DAY,
	  .def_int = 300 },
	{ "max_stale_seconds", FIELD_INT, K(max_stale_seconds), 0, 7 * DAY, .def_int = 3600 },
	{ "cache_max_entries", FIELD_INT, K(cache_max_entries), 1, 10000000, .def_int = 10000 },
	{ "list_cache_seconds", FIELD_INT, K(list_cache_seconds), 0, 3600, .def_int = 5 },
	{ "run_as", FIELD_STRING, K(run_as) },
	{ "on_change", FIELD_PATH, K(on_change) },
	{ "metrics_per_network", FIELD_ENUM, K(metrics_per_network), .choices = booleans,
	  .def_int = 1 },
	{ "monitoring_mode", FIELD_MODE, K(monitoring_mode), .parse = parse_monitoring_mode,
	  .def_int = 0444 },
	{ "monitoring_group", FIELD_STRING, K(monitoring_group) },
	{ "metrics_addresses", FIELD_ENUM, K(metrics_addresses), .choices = booleans },
	{ "backends", FIELD_LIST, K(backends), .fields = backend_entry_fields,
	  .item_size = sizeof(struct config_backend), .count_offset = K(n_backends),
	  .list_noun = "a list of backends", .item_keys = "(name:, storage_type:, networks:, ...)",
	  .item_init = backend_entry_init, .item_check = check_backend_entry },
	{ "max_calls_in_flight", FIELD_INT, K(max_calls_in_flight), 1, 1024, .def_int = 16 },
	{ "business_hours", FIELD_SECTION, K(business_hours), .fields = business_hours_fields,
	  .parse = check_business_hours, .is_set = business_hours_set },
	{ "anomaly", FIELD_SECTION, K(anomaly), .fields = anomaly_fields },
	{ "rate_limit", FIELD_SECTION, K(rate_limit), .fields = rate_limit_fields,
	  .parse = check_rate_limit, .is_set = rate_limit_set },
	{ NULL },
};
#undef K

/* Omikuji's own sections (its OmikujiConfig: networks, datafeeds,
 * database_cleanup, metrics, gas_price_feeds, scheduled_tasks,
 * event_monitors) are skipped whole: the same file serves both programs. */
static const struct field top_fields[] = {
	{ "key_storage", FIELD_SECTION, C(key_storage), .fields = key_storage_fields,
	  .parse = check_key_storage },
	{ "logging", FIELD_SECTION, C(logging), .fields = logging_fields },
	{ "keyfs", FIELD_SECTION, C(keyfs), .fields = keyfs_fields },
	{ "networks", FIELD_SKIP },
	{ "datafeeds", FIELD_SKIP },
	{ "database_cleanup", FIELD_SKIP },
	{ "metrics", FIELD_SKIP },
	{ "gas_price_feeds", FIELD_SKIP },
	{ "scheduled_tasks", FIELD_SKIP },
	{ "event_monitors", FIELD_SKIP },
	{ NULL },
};
#undef C

/* ------------------------------------------------------------------ */
/* defaults */

/* Defaults of a table's fields (recursing into sections): the rows say
 * them.  0 or -ENOMEM. */
static int fields_defaults(const struct field *fields, void *base)
{
	for (const struct field *f = fields; f->key; f++) {
		void *slot = (char *)base + f->offset;
		if (f->init) {
			if (f->init(f, base) < 0)
				return -ENOMEM;
			continue;
		}
		switch (f->kind) {
		case FIELD_STRING:
		case FIELD_PATH:
		case FIELD_SECRET:
		case FIELD_CHOICE:
			if (f->def && !(*(char **)slot = strdup(f->def)))
				return -ENOMEM;
			break;
		case FIELD_INT:
		case FIELD_ENUM:
		case FIELD_MODE:
			*(int *)slot = (int)f->def_int;
			break;
		case FIELD_SECTION:
			if (fields_defaults(f->fields, slot) < 0)
				return -ENOMEM;
			break;
		default:
			break;
		}
	}
	return 0;
}

static int config_defaults(struct config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	return fields_defaults(top_fields, cfg);
}

/* ------------------------------------------------------------------ */
/* loading */

static int read_file(const char *path, char **data, size_t *len, mode_t *mode, char *err, size_t errlen)
{
	struct stat st;
	char *buf = NULL;
	size_t got = 0;
	int rc = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(-rc));
		return rc;
	}
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(-rc));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
		snprintf(err, errlen, "%s: not a regular file", path);
		goto out;
	}
	if (st.st_size > CONFIG_MAX_BYTES) {
		rc = -EFBIG;
		snprintf(err, errlen, "%s: larger than %d bytes, not a config file", path, CONFIG_MAX_BYTES);
		goto out;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		rc = -ENOMEM;
		snprintf(err, errlen, "%s: out of memory", path);
		goto out;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			snprintf(err, errlen, "%s: %s", path, strerror(-rc));
			goto out;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	buf[got] = 0;
	*data = buf;
	*len = got;
	*mode = st.st_mode;
	buf = NULL;
out:
	free(buf);
	close(fd);
	return rc;
}

static int parse_document(struct loader *L, const char *data, size_t len)
{
	struct yamltree *tree = NULL;
	int rc = yamltree_load(L->file, data, len, &tree, L->err, L->errlen);
	if (rc)
		return rc;
	struct yamltree_node *root = yamltree_root(tree);
	if (root)
		rc = load_mapping(L, root, top_fields, L->cfg, "");
	yamltree_free(tree);
	return rc;
}

int config_load(const char *path, unsigned flags, struct config *out, char *err, size_t errlen)
{
	struct loader L = { .file = path, .err = err, .errlen = errlen, .cfg = out };
	char *data = NULL;
	size_t len = 0;
	mode_t mode = 0;
	int rc;

	if (errlen)
		err[0] = 0;
	rc = config_defaults(out);
	if (rc) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	if (path) {
		rc = read_file(path, &data, &len, &mode, err, errlen);
		if (rc)
			goto out;
		rc = parse_document(&L, data, len);
		if (rc)
			goto out;
	}
	out->key_storage.name = strdup(out->key_storage.type->instance_name);
	if (!out->key_storage.name) {
		snprintf(err, errlen, "out of memory");
		rc = -ENOMEM;
		goto out;
	}
	if (!path)
		return 0;
	if (L.inline_secret[0] && (mode & 077) && !(flags & CONFIG_ALLOW_INSECURE_PERMS)) {
		snprintf(err, errlen, "%s: holds a secret (%s) but is readable by group/others "
		         "(mode %04o); chmod 600 it or pass --insecure-config-permissions",
		         path, L.inline_secret, (unsigned)(mode & 07777));
		rc = -EACCES;
		goto out;
	}
	out->source = strdup(path);
	if (!out->source) {
		snprintf(err, errlen, "out of memory");
		rc = -ENOMEM;
	}
out:
	if (data) {
		secret_wipe(data, len);
		free(data);
	}
	if (rc)
		config_free(out);
	return rc;
}

/* ------------------------------------------------------------------ */
/* finding */

static bool exists(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0;
}

char *config_find(const char *explicit_path)
{
	const char *env = getenv("OMIKUJI_CONFIG");
	const char *xdg = getenv("XDG_CONFIG_HOME");
	const char *home;
	char cwd[PATH_MAX];
	char *p = NULL;

	if (explicit_path)
		return strdup(explicit_path);
	if (env && *env)
		return strdup(env);
	if (exists("omikuji.yaml")) {
		/* Absolute, so it still names the file after a daemon's chdir("/"). */
		if (getcwd(cwd, sizeof(cwd)) && asprintf(&p, "%s/omikuji.yaml", cwd) >= 0)
			return p;
		return strdup("omikuji.yaml");
	}
	if (xdg && xdg[0] == '/') {
		if (asprintf(&p, "%s/omikuji/omikuji.yaml", xdg) < 0)
			return NULL;
	} else if (home_dir(&home) == 0) {
		if (asprintf(&p, "%s/.config/omikuji/omikuji.yaml", home) < 0)
			return NULL;
	}
	if (p && exists(p))
		return p;
	free(p);
	if (exists("/etc/omikuji/omikuji.yaml"))
		return strdup("/etc/omikuji/omikuji.yaml");
	return NULL;
}

/* ------------------------------------------------------------------ */
/* printing */

/* A double-quoted YAML scalar that config_load reads back unchanged: `$`
 * is doubled because every scalar goes through ${VAR} expansion. */
static void print_quoted(FILE *out, const char *s)
{
	fputc('"', out);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(out, "\\%c", *p);
		else if (*p == '$')
			fputs("$$", out);
		else if (*p < 0x20 || *p == 0x7f)
			fprintf(out, "\\x%02x", *p);
		else
			fputc(*p, out);
	}
	fputc('"', out);
}

static void print_str(FILE *out, int indent, const char *key, const char *value)
{
	if (!value) {
		fprintf(out, "%*s# %s: (not set)\n", indent, "", key);
		return;
	}
	fprintf(out, "%*s%s: ", indent, "", key);
	print_quoted(out, value);
	fputc('\n', out);
}

static void print_secret(FILE *out, int indent, const char *key, const char *value)
{
	print_str(out, indent, key, value ? MASK : NULL);
}

static void print_int(FILE *out, int indent, const char *key, int value)
{
	fprintf(out, "%*s%s: %d\n", indent, "", key, value);
}

static void print_list(FILE *out, int indent, const char *key, const struct strlist *l)
{
	fprintf(out, "%*s%s: [", indent, "", key);
	for (size_t i = 0; i < l->n; i++) {
		if (i)
			fputs(", ", out);
		print_quoted(out, l->items[i]);
	}
	fputs("]\n", out);
}

static void fields_print(FILE *out, int indent, const struct field *fields, const void *base);

/* A FIELD_LIST as a YAML block sequence: each item's fields two columns in
 * from the "- ". */
static void print_items(FILE *out, int indent, const struct field *f, const void *base)
{
	const char *array = *(char *const *)((const char *)base + f->offset);
	size_t n = *(const size_t *)((const char *)base + f->count_offset);
	fprintf(out, "%*s%s:%s\n", indent, "", f->key, n ? "" : " []");
	for (size_t i = 0; i < n; i++) {
		char *buf = NULL;
		size_t len = 0;
		FILE *item = open_memstream(&buf, &len);
		if (!item)
			return;
		fields_print(item, indent + 4, f->fields, array + i * f->item_size);
		fclose(item);
		if (len > (size_t)indent + 2)
			buf[indent + 2] = '-';
		fputs(buf, out);
		free(buf);
	}
}

/* A table's fields as YAML (secrets masked), recursing into sections and
 * lists: what a row says is how it prints. */
static void fields_print(FILE *out, int indent, const struct field *fields, const void *base)
{
	for (const struct field *f = fields; f->key; f++) {
		const void *slot = (const char *)base + f->offset;
		if (f->kind == FIELD_SKIP)
			continue;
		if (f->is_set && !f->is_set(f, base)) {
			if (!f->hide_unset)
				fprintf(out, "%*s# %s: (not set)\n", indent, "", f->key);
			continue;
		}
		if (f->print) {
			f->print(out, indent, f, base);
			continue;
		}
		switch (f->kind) {
		case FIELD_STRING:
		case FIELD_PATH:
		case FIELD_CHOICE:
			print_str(out, indent, f->key, *(char *const *)slot);
			break;
		case FIELD_SECRET:
			print_secret(out, indent, f->key, *(char *const *)slot);
			break;
		case FIELD_INT:
			print_int(out, indent, f->key, *(const int *)slot);
			break;
		case FIELD_ENUM:
			fprintf(out, "%*s%s: %s\n", indent, "", f->key, f->choices[*(const int *)slot]);
			break;
		case FIELD_MODE:
			fprintf(out, "%*s%s: \"%04o\"\n", indent, "", f->key, (unsigned)*(const int *)slot);
			break;
		case FIELD_STRLIST:
		case FIELD_PRINCIPALS:
			print_list(out, indent, f->key, slot);
			break;
		case FIELD_CUSTOM:
			if (f->holds_list)
				print_list(out, indent, f->key, slot);
			break;
		case FIELD_SECTION:
			fprintf(out, "%*s%s:\n", indent, "", f->key);
			fields_print(out, indent + 2, f->fields, slot);
			break;
		case FIELD_LIST:
			print_items(out, indent, f, base);
			break;
		case FIELD_SKIP:
			break;
		}
	}
}

void config_print(const struct config *cfg, FILE *out)
{
	if (cfg->source) {
		fputs("# loaded from: ", out);
		/* A comment ends at a newline; keep a strange file name on one line. */
		for (const char *p = cfg->source; *p; p++)
			fputc(*p == '\n' || *p == '\r' ? '?' : *p, out);
		fputc('\n', out);
	} else {
		fputs("# built-in defaults\n", out);
	}
	fields_print(out, 0, top_fields, cfg);
}

/* ------------------------------------------------------------------ */

static void free_secret_string(char **s)
{
	if (*s)
		secret_wipe(*s, strlen(*s));
	free(*s);
	*s = NULL;
}

/* Free what a table's fields own (wiping secrets), recursing into sections
 * and lists. */
static void fields_free(const struct field *fields, void *base)
{
	for (const struct field *f = fields; f->key; f++) {
		void *slot = (char *)base + f->offset;
		if (f->release) {
			f->release(f, base);
			continue;
		}
		switch (f->kind) {
		case FIELD_STRING:
		case FIELD_PATH:
		case FIELD_CHOICE:
			free(*(char **)slot);
			*(char **)slot = NULL;
			break;
		case FIELD_SECRET:
			free_secret_string(slot);
			break;
		case FIELD_STRLIST:
		case FIELD_PRINCIPALS:
			strlist_clear(slot);
			break;
		case FIELD_CUSTOM:
			if (f->holds_list)
				strlist_clear(slot);
			break;
		case FIELD_SECTION:
			fields_free(f->fields, slot);
			break;
		case FIELD_LIST:
			list_free(f, base);
			break;
		default:
			break;
		}
	}
}

/* Wipe an environment variable's value in place, then remove it. */
static void wipe_env(const char *name)
{
	char *value = getenv(name);
	if (value) {
		secret_wipe(value, strlen(value));
		unsetenv(name);
	}
}

/* Wipe and free every secret field of a table (recursing into sections
 * and lists). */
static void fields_forget_secrets(const struct field *fields, void *base)
{
	for (const struct field *f = fields; f->key; f++) {
		void *slot = (char *)base + f->offset;
		if (f->kind == FIELD_SECRET) {
			free_secret_string(slot);
		} else if (f->kind == FIELD_SECTION) {
			fields_forget_secrets(f->fields, slot);
		} else if (f->kind == FIELD_LIST) {
			char *array = *(char **)slot;
			size_t n = *(size_t *)((char *)base + f->count_offset);
			for (size_t i = 0; array && i < n; i++)
				fields_forget_secrets(f->fields, array + i * f->item_size);
		}
	}
}

void config_forget_secrets(struct config *cfg)
{
	/* Every instance's sections: key_storage's and keyfs.backends'. */
	fields_forget_secrets(top_fields, cfg);
	wipe_env("OMIKUJI_KEYFS_PASSPHRASE");
	for (size_t i = 0; i < cfg->secret_env.n; i++)
		wipe_env(cfg->secret_env.items[i]);
}

void config_free(struct config *cfg)
{
	strlist_clear(&cfg->secret_env);
	strlist_clear(&cfg->warnings);
	free(cfg->source);
	free(cfg->key_storage.name);   /* derived from its type, not a row */
	fields_free(top_fields, cfg);
	memset(cfg, 0, sizeof(*cfg));
}

const char *config_storage_name(const struct config_backend *b)
{
	return b && b->type ? b->type->name : "unknown";
}

int config_max_calls_in_flight(const struct config *cfg, const struct config_backend *b)
{
	return b->max_calls_in_flight > 0 ? b->max_calls_in_flight : cfg->keyfs.max_calls_in_flight;
}
