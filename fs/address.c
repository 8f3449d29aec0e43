/* address.c - addresses/<network>: the public EVM address of each key, and
 * the book of addresses the mount has derived (see address.h).
 *
 * The book's entries are fields of the mount's per-network records
 * (netrec.h), under that table's mutex.  A note computes the key's
 * digest (netrec_digest) and, for a new version, derives the address
 * without holding the lock (a derivation is a scalar multiplication: tens of microseconds),
 * so concurrent key reads of other networks never wait for it.
 *
 * The family: readdir lists the networks of the keys/ listing the caller
 * may ask the address of; getattr answers from the book or the listing and
 * never fetches a key; open renders the address into a per-open snapshot
 * (snapshot.c serves and frees it) through keyops_address_park(), which
 * checks, counts and, when it has to fetch the key, audits; an open that
 * would wait for the key's fetch in flight parks on it instead.
 */
#include "address.h"
#include "hash.h"
#include "tree.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define ADDRESS_BOOK_MAX 100000   /* bound on entries, as the metrics tables */

/* The entries are the book's fields of the mount's per-network records
 * (netrec.h), under that table's lock.  An entry (in_book) without an
 * address is a tombstone: the key is gone (or not an EVM key) as of
 * address_seen, so older notes are refused.  The version an address was
 * derived from is known by the record's digest (mac, which keys/ keeps
 * for the value as read) and address_of_mac: no digest of the book's own. */
struct address_book {
	struct netrec_table *networks;   /* borrowed: the mount's */
	size_t count;                    /* records in_book */
};

int address_book_new(struct netrec_table *networks, struct address_book **out)
{
	struct address_book *b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->networks = networks;
	*out = b;
	return 0;
}

void address_book_free(struct address_book *b)
{
	if (!b)
		return;
	free(b);   /* the records are the table's: wiped with it */
}

/* Make r a tombstone as of seen.  Lock held. */
static void entry_clear(struct netrec *r, double seen)
{
	r->has_address = false;
	r->address_of_mac = false;
	r->address_seen = seen;
}

/* The book's entry of network, made when missing; NULL at the bound or
 * without memory.  Lock held. */
static struct netrec *entry_add(struct address_book *b, const char *network)
{
	struct netrec *r = netrec_find(b->networks, network);
	if (r && r->in_book)
		return r;
	if (b->count >= ADDRESS_BOOK_MAX || !(r = netrec_get(b->networks, network)))
		return NULL;
	r->in_book = true;
	b->count++;
	return r;
}

/* The book's entry of network, or NULL.  Lock held. */
static struct netrec *entry_find(struct address_book *b, const char *network)
{
	struct netrec *r = netrec_find(b->networks, network);
	return r && r->in_book ? r : NULL;
}

/* An address derived from a key of digest fp is the address of the
 * version the record's digest names (keys/ noted it first, the usual order
 * on a fetch), or not known to be.  Lock held. */
static void address_version(struct netrec *e, const unsigned char fp[NETREC_DIGEST])
{
	e->address_of_mac = e->has_mac && memcmp(e->mac, fp, NETREC_DIGEST) == 0;
}

int address_book_note(struct address_book *b, const char *network, const char *backend,
                      const struct secret *key, double wall, double seen)
{
	unsigned char fp[NETREC_DIGEST];
	netrec_digest(b->networks, key, fp);
	int rc = address_book_note_digest(b, network, backend, key, fp, wall, seen);
	secret_wipe(fp, sizeof(fp));
	return rc;
}

int address_book_note_digest(struct address_book *b, const char *network, const char *backend,
                             const struct secret *key, const unsigned char fp[NETREC_DIGEST],
                             double wall, double seen)
{
	uint8_t raw[EVM_ADDRESS_BYTES];
	uint16_t backend_id;
	int rc = 0;

	netrec_lock(b->networks);
	struct netrec *e = entry_find(b, network);
	bool known = e && e->has_address && e->address_of_mac &&
	             memcmp(e->mac, fp, NETREC_DIGEST) == 0;
	bool outdated = e && seen < e->address_seen;
	if (known && !outdated)
		e->address_seen = seen;
	netrec_unlock(b->networks);
	if (known || outdated)
		goto out;

	rc = evm_address_derive_raw(key->data, key->len, raw);
	netrec_lock(b->networks);
	e = entry_find(b, network);
	if (e && seen < e->address_seen) {
		rc = 0;   /* a newer version was noted while we derived */
	} else if (rc < 0) {
		if (e && rc == -EINVAL)
			entry_clear(e, seen);
	} else if (!(backend_id = netrec_backend_id(b->networks, backend))) {
		rc = -ENOMEM;
	} else if (!e) {
		if (!(e = entry_add(b, network))) {
			rc = -ENOMEM;
		} else {
			memcpy(e->address, raw, sizeof(raw));
			e->has_address = true;
			address_version(e, fp);
			e->backend = backend_id;
			e->address_mtime = wall;
			e->address_seen = seen;
		}
	} else {
		if (!e->has_address || memcmp(e->address, raw, sizeof(raw)) != 0) {
			memcpy(e->address, raw, sizeof(raw));
			e->has_address = true;
			e->address_mtime = wall;
		}
		address_version(e, fp);
		e->backend = backend_id;
		e->address_seen = seen;
	}
	netrec_unlock(b->networks);
out:
	return rc;
}

void address_book_forget(struct address_book *b, const char *network, double seen)
{
	netrec_lock(b->networks);
	struct netrec *e = entry_add(b, network);   /* at the bound: no tombstone, best effort */
	if (e && seen >= e->address_seen)
		entry_clear(e, seen);
	netrec_unlock(b->networks);
}

int address_book_lookup(struct address_book *b, const char *network,
                        char out[EVM_ADDRESS_TEXT + 1], double *mtime)
{
	uint8_t raw[EVM_ADDRESS_BYTES];
	bool found = false;
	netrec_lock(b->networks);
	struct netrec *e = entry_find(b, network);
	if (e && e->has_address) {
		memcpy(raw, e->address, sizeof(raw));
		if (mtime)
			*mtime = e->address_mtime;
		found = true;
	}
	netrec_unlock(b->networks);
	if (!found)
		return -ENOENT;
	evm_address_checksum(raw, out);   /* the EIP-55 text, outside the lock */
	return 0;
}

struct info_row {
	char network[65];
	char backend[65];
	uint8_t raw[EVM_ADDRESS_BYTES];
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
	netrec_lock(b->networks);
	if (b->count && (rows = malloc(b->count * sizeof(*rows)))) {
		for (size_t i = 0; i < b->networks->capacity; i++) {
			const struct netrec *e = netrec_slot(b->networks, i);
			if (!e || !e->in_book || !e->has_address)
				continue;
			snprintf(rows[n].network, sizeof(rows[n].network), "%s", e->network);
			snprintf(rows[n].backend, sizeof(rows[n].backend), "%s",
			         netrec_backend_name(b->networks, e->backend));
			memcpy(rows[n].raw, e->address, sizeof(rows[n].raw));
			n++;
		}
	}
	bool lost = b->count && !rows;
	netrec_unlock(b->networks);
	if (lost)
		return -ENOMEM;

	if (n)
		qsort(rows, n, sizeof(*rows), info_row_cmp);
	/* Network and backend names are [A-Za-z0-9._-] and addresses hex: no
	 * label value here needs escaping. */
	strbuf_printf(out, "# HELP %s The EVM address of each network's key as the mount last "
	              "saw it; the value is always 1.\n# TYPE %s gauge\n", name, name);
	for (size_t i = 0; i < n; i++) {
		char address[EVM_ADDRESS_TEXT + 1];
		evm_address_checksum(rows[i].raw, address);
		strbuf_printf(out, "%s{backend=\"%s\",network=\"%s\",address=\"%s\"} 1\n", name,
		              rows[i].backend, rows[i].network, address);
	}
	free(rows);
	return out->error;
}

/* --- the addresses/ family ------------------------------------------------ */

/* An open of addresses/<network>: the address, rendered into the open's
 * snapshot.  One that must wait for the key's fetch already in flight parks
 * on it (keyops_address_park) as a key file's open does (keyfile.c): it is
 * answered by the fetching thread and counted with tree_parked meanwhile. */
struct address_open {
	struct keyops_park park;
	fuse_req_t req;
	struct fuse_file_info fi;    /* the open's, copied: libfuse's is on its stack */
	struct caller opener;
	char network[65];
	char address[EVM_ADDRESS_TEXT + 1];
};

/* The end of an open: on success fi gets a snapshot of the address; a is
 * freed either way. */
static int address_open_finish(struct mount_state *k, struct address_open *a,
                               struct fuse_file_info *fi, int rc)
{
	char *text = NULL;
	if (rc == 0 && asprintf(&text, "%s\n", a->address) < 0)
		rc = -ENOMEM;
	else if (rc == 0)
		rc = snapshot_adopt(k, fi, text, strlen(text));
	free(a);
	return rc;
}

/* A parked open's fetch ended (on the fetching thread): answer it. */
static void address_parked_done(struct keyops_park *p, int rc, struct secret *key)
{
	(void)key;   /* always NULL: the key stays in keyops */
	struct address_open *a =
		(struct address_open *)((char *)p - offsetof(struct address_open, park));
	struct mount_state *k = p->k;
	fuse_req_t req = a->req;
	struct fuse_file_info fi = a->fi;
	rc = address_open_finish(k, a, &fi, rc);
	tree_parked_answer(k, req, &fi, rc, snapshot_release);
}

int address_open(struct mount_state *k, const struct node *n, struct fuse_file_info *fi,
                 fuse_req_t req)
{
	if ((fi->flags & O_ACCMODE) != O_RDONLY)
		return -EACCES;
	struct address_open *a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	snprintf(a->network, sizeof(a->network), "%s", n->name);
	mount_state_caller_current(k, &a->opener);
	a->req = req;
	a->fi = *fi;
	a->park.done = address_parked_done;
	int rc = keyops_address_park(k, &a->opener, a->network, &a->park, a->address);
	if (rc == KEYOPS_PARKED) {
		/* a belongs to address_parked_done now (maybe freed already) */
		tree_parked(k, 1);
		return OPEN_PARKED;
	}
	return address_open_finish(k, a, fi, rc);
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
