/* address.c - addresses/<network>: the public EVM address of each key, and
 * the book of addresses the mount has derived (see address.h).
 *
 * The book is a chained hash table under one mutex.  A note computes the
 * fingerprint and, for a new version, derives the address without holding
 * the lock (a derivation is a scalar multiplication: tens of microseconds),
 * so concurrent key reads of other networks never wait for it.
 *
 * The family: readdir lists the networks of the keys/ listing the caller
 * may ask the address of; getattr answers from the book or the listing and
 * never fetches a key; open renders the address into a per-open snapshot
 * (snapshot.c serves and frees it) through keyops_address(), which checks,
 * counts and, when it has to fetch the key, audits.
 */
#include "address.h"
#include "hash.h"
#include "keccak.h"
#include "tree.h"

#include <errno.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define ADDRESS_BOOK_MAX 100000   /* bound on entries, as the metrics tables */
#define SALT_BYTES 32

/* Small on purpose: one per network the mount has seen, up to the 10 000s.
 * An entry with an empty address is a tombstone: the key is gone (or not
 * an EVM key) as of `seen`, so older notes are refused. */
struct address_entry {
	struct address_entry *next;
	const char *backend;          /* borrowed, see address_book_note() */
	double mtime;
	double seen;                  /* of the newest note applied (monotonic) */
	/* Salted Keccak-256 of the key, its first 128 bits: enough to tell a
	 * new version, and 16 bytes less for every network (issue 15). */
	uint8_t fingerprint[16];
	char address[EVM_ADDRESS_TEXT + 1];
	char network[];               /* NUL-terminated */
};

struct address_book {
	pthread_mutex_t lock;
	struct secret *salt;
	struct address_entry **table;
	size_t nbuckets;
	size_t count;
};

int address_book_new(struct address_book **out)
{
	struct address_book *b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	pthread_mutex_init(&b->lock, NULL);
	b->nbuckets = 64;
	b->table = calloc(b->nbuckets, sizeof(*b->table));
	b->salt = secret_new(SALT_BYTES);
	if (!b->table || !b->salt) {
		address_book_free(b);
		return -ENOMEM;
	}
	if (RAND_bytes(b->salt->data, SALT_BYTES) != 1) {
		address_book_free(b);
		return -EIO;
	}
	b->salt->len = SALT_BYTES;
	*out = b;
	return 0;
}

static void entry_free(struct address_entry *e)
{
	secret_wipe(e->fingerprint, sizeof(e->fingerprint));
	free(e);
}

void address_book_free(struct address_book *b)
{
	if (!b)
		return;
	for (size_t i = 0; b->table && i < b->nbuckets; i++) {
		struct address_entry *e = b->table[i];
		while (e) {
			struct address_entry *next = e->next;
			entry_free(e);
			e = next;
		}
	}
	pthread_mutex_destroy(&b->lock);
	free(b->table);
	secret_free(b->salt);
	free(b);
}

/* With b->lock held. */
static struct address_entry **entry_slot(struct address_book *b, const char *network)
{
	struct address_entry **pp = &b->table[hash_string(network) & (b->nbuckets - 1)];
	while (*pp && strcmp((*pp)->network, network) != 0)
		pp = &(*pp)->next;
	return pp;
}

static void table_grow(struct address_book *b);

/* Make e a tombstone as of seen.  Lock held. */
static void entry_clear(struct address_entry *e, double seen)
{
	e->address[0] = 0;
	secret_wipe(e->fingerprint, sizeof(e->fingerprint));
	e->seen = seen;
}

/* A new entry for network, linked in; NULL at the bound or without
 * memory.  Lock held. */
static struct address_entry *entry_add(struct address_book *b, const char *network)
{
	size_t len = strlen(network) + 1;
	struct address_entry *e;
	if (b->count >= ADDRESS_BOOK_MAX || !(e = calloc(1, sizeof(*e) + len)))
		return NULL;
	memcpy(e->network, network, len);
	if (b->count >= b->nbuckets)
		table_grow(b);
	struct address_entry **pp = entry_slot(b, network);
	*pp = e;
	b->count++;
	return e;
}

/* Best effort: a failed calloc only makes chains longer. */
static void table_grow(struct address_book *b)
{
	size_t n = b->nbuckets * 2;
	struct address_entry **t = calloc(n, sizeof(*t));
	if (!t)
		return;
	for (size_t i = 0; i < b->nbuckets; i++) {
		struct address_entry *e = b->table[i];
		while (e) {
			struct address_entry *next = e->next;
			size_t h = hash_string(e->network) & (n - 1);
			e->next = t[h];
			t[h] = e;
			e = next;
		}
	}
	free(b->table);
	b->table = t;
	b->nbuckets = n;
}

static void fingerprint(const struct address_book *b, const struct secret *key,
                        uint8_t out[KECCAK256_DIGEST_SIZE])
{
	struct keccak256 h;
	keccak256_init(&h);
	keccak256_update(&h, b->salt->data, b->salt->len);
	keccak256_update(&h, key->data, key->len);
	keccak256_final(&h, out);   /* wipes h */
}

int address_book_note(struct address_book *b, const char *network, const char *backend,
                      const struct secret *key, double wall, double seen)
{
	uint8_t fp[KECCAK256_DIGEST_SIZE];
	char address[EVM_ADDRESS_TEXT + 1];
	int rc = 0;

	fingerprint(b, key, fp);
	pthread_mutex_lock(&b->lock);
	struct address_entry *e = *entry_slot(b, network);
	bool known = e && memcmp(e->fingerprint, fp, sizeof(e->fingerprint)) == 0;
	bool outdated = e && seen < e->seen;
	if (known && !outdated)
		e->seen = seen;
	pthread_mutex_unlock(&b->lock);
	if (known || outdated)
		goto out;

	rc = evm_address_derive(key->data, key->len, address);
	pthread_mutex_lock(&b->lock);
	e = *entry_slot(b, network);
	if (e && seen < e->seen) {
		rc = 0;   /* a newer version was noted while we derived */
	} else if (rc < 0) {
		if (e && rc == -EINVAL)
			entry_clear(e, seen);
	} else if (!e) {
		if (!(e = entry_add(b, network))) {
			rc = -ENOMEM;
		} else {
			memcpy(e->address, address, sizeof(address));
			memcpy(e->fingerprint, fp, sizeof(e->fingerprint));
			e->backend = backend;
			e->mtime = wall;
			e->seen = seen;
		}
	} else {
		if (strcmp(e->address, address) != 0) {
			memcpy(e->address, address, sizeof(address));
			e->mtime = wall;
		}
		memcpy(e->fingerprint, fp, sizeof(e->fingerprint));
		e->backend = backend;
		e->seen = seen;
	}
	pthread_mutex_unlock(&b->lock);
out:
	secret_wipe(fp, sizeof(fp));
	return rc;
}

void address_book_forget(struct address_book *b, const char *network, double seen)
{
	pthread_mutex_lock(&b->lock);
	struct address_entry *e = *entry_slot(b, network);
	if (!e)
		e = entry_add(b, network);   /* at the bound: no tombstone, best effort */
	if (e && seen >= e->seen)
		entry_clear(e, seen);
	pthread_mutex_unlock(&b->lock);
}

int address_book_lookup(struct address_book *b, const char *network,
                        char out[EVM_ADDRESS_TEXT + 1], double *mtime)
{
	int rc = -ENOENT;
	pthread_mutex_lock(&b->lock);
	struct address_entry *e = *entry_slot(b, network);
	if (e && e->address[0]) {
		memcpy(out, e->address, EVM_ADDRESS_TEXT + 1);
		if (mtime)
			*mtime = e->mtime;
		rc = 0;
	}
	pthread_mutex_unlock(&b->lock);
	return rc;
}

struct info_row {
	char network[65];
	char backend[65];
	char address[EVM_ADDRESS_TEXT + 1];
};

static int info_row_cmp(const void *a, const void *b)
{
	return strcmp(((const struct info_row *)a)->network, ((const struct info_row *)b)->network);
}

int address_book_render_info(struct address_book *b, struct strbuf *out)
{
	static const char name[] = "omikuji_keyfs_key_info";
	struct info_row *rows = NULL;
	size_t n = 0;

	/* Copy under the lock, format outside it. */
	pthread_mutex_lock(&b->lock);
	if (b->count && (rows = malloc(b->count * sizeof(*rows)))) {
		for (size_t i = 0; i < b->nbuckets; i++) {
			for (struct address_entry *e = b->table[i]; e; e = e->next) {
				if (!e->address[0])
					continue;
				snprintf(rows[n].network, sizeof(rows[n].network), "%s", e->network);
				snprintf(rows[n].backend, sizeof(rows[n].backend), "%s", e->backend);
				memcpy(rows[n].address, e->address, sizeof(rows[n].address));
				n++;
			}
		}
	}
	bool lost = b->count && !rows;
	pthread_mutex_unlock(&b->lock);
	if (lost)
		return -ENOMEM;

	if (n)
		qsort(rows, n, sizeof(*rows), info_row_cmp);
	/* Network and backend names are [A-Za-z0-9._-] and addresses hex: no
	 * label value here needs escaping. */
	strbuf_printf(out, "# HELP %s The EVM address of each network's key as the mount last "
	              "saw it; the value is always 1.\n# TYPE %s gauge\n", name, name);
	for (size_t i = 0; i < n; i++)
		strbuf_printf(out, "%s{backend=\"%s\",network=\"%s\",address=\"%s\"} 1\n", name,
		              rows[i].backend, rows[i].network, rows[i].address);
	free(rows);
	return out->error;
}

/* --- the addresses/ family ------------------------------------------------ */

int address_render(struct mount_state *k, const struct node *n, struct strbuf *out)
{
	struct caller c;
	char address[EVM_ADDRESS_TEXT + 1];
	mount_state_caller_current(k, &c);
	int rc = keyops_address(k, &c, n->name, address);
	if (rc < 0)
		return rc;
	strbuf_puts(out, address);
	strbuf_puts(out, "\n");
	return out->error;
}

/* addresses/<net> exists when keys/<net> has a key (the cached listing,
 * never a key fetch) and, for a caller who may not read the address, as
 * keys/<net> does for it (hidden without any grant); the book only says
 * when it last changed. */
int address_stat(struct mount_state *k, const struct caller *c, const char *network, double *mtime)
{
	if (!k->addresses)
		return -ENOENT;
	char address[EVM_ADDRESS_TEXT + 1];
	if (address_book_lookup(k->addresses, network, address, mtime) < 0)
		*mtime = k->start_wall;
	if (keyops_allowed(k, c, network, ACCESS_ADDRESS))
		return keyops_exists(k, network);
	return keyops_lookup(k, c, network);
}

int address_list(struct mount_state *k, const struct caller *c, struct strlist *out)
{
	if (!k->addresses)
		return 0;
	struct strlist names = STRLIST_INIT;
	int rc = keyops_names(k, &names);
	for (size_t i = 0; rc == 0 && i < names.n; i++)
		if (keyops_allowed(k, c, names.items[i], ACCESS_ADDRESS) &&
		    strlist_add(out, names.items[i]) < 0)
			rc = -ENOMEM;
	strlist_clear(&names);
	return rc;
}
