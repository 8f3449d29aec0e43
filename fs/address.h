/* address.h - the addresses the mount has derived, one per network, kept
 * with the key version they came from (contract section 12).
 *
 * An entry holds the address (its 20 bytes, in the mount's record of the
 * network, netrec.h; the EIP-55 text is made when read), when it last
 * changed (the mtime of addresses/<network>) and whether it was derived
 * from the key version whose digest the record holds (netrec_digest: a
 * keyed HMAC-SHA256 that keys/ also uses to tell a rotation), so a key read
 * can tell "same version" (no work) from "new version" (derive again)
 * without keeping a second copy of the key.  The digest never leaves the
 * process and is wiped with its record.  Thread-safe.
 */
#ifndef OMIKUJI_ADDRESS_H
#define OMIKUJI_ADDRESS_H

#include <stdbool.h>
#include "evm_address.h"
#include "netrec.h"
#include "secret.h"
#include "strbuf.h"

/* 43 bytes a read returns: the address and a newline. */
#define ADDRESS_FILE_SIZE (EVM_ADDRESS_TEXT + 1)

struct address_book;

/* A book keeping its entries in networks (borrowed: the mount's record
 * table, which must outlive the book and wipes the entries when cleared).
 * 0 or -ENOMEM. */
int address_book_new(struct netrec_table *networks, struct address_book **out);
void address_book_free(struct address_book *b);   /* NULL allowed */

/* The mount saw this version of network's key (a read, a store, a
 * refetch), from the backend instance named backend (borrowed: it must
 * outlive the book, as the names of a mount's backends do).
 * Derives the address unless the same version was seen before; the entry's
 * mtime moves to wall when the address differs from the one it had.
 * `seen` (monotonic seconds) is when key was known to be current: for a
 * fetch, when it started; for a store, when it completed.  A note older
 * than the one the entry holds is ignored, so a fetch that read the old key
 * while a store replaced it cannot bring the old address back.
 * 0, -EINVAL when the key is not an EVM key (any earlier address is
 * dropped: it no longer describes the key), -ENOMEM. */
int address_book_note(struct address_book *b, const char *network, const char *backend,
                      const struct secret *key, double wall, double seen);
/* The same, with key's digest (netrec_digest of key, on the book's table)
 * already computed by the caller: keys/ has just noted the same value. */
int address_book_note_digest(struct address_book *b, const char *network, const char *backend,
                             const struct secret *key, const unsigned char digest[NETREC_DIGEST],
                             double wall, double seen);
/* The key of network is gone (removed, or the backend said not found) as of
 * `seen` (monotonic): its address is dropped, and a note older than that
 * (a fetch that read the key before the removal) cannot bring it back. */
void address_book_forget(struct address_book *b, const char *network, double seen);
/* 0 with out (NUL-terminated address) and *mtime filled, or -ENOENT. */
int address_book_lookup(struct address_book *b, const char *network,
                        char out[EVM_ADDRESS_TEXT + 1], double *mtime);
/* omikuji_keyfs_key_info{backend,network,address} 1 for every entry,
 * sorted by network, with its HELP and TYPE lines.  0 or -ENOMEM. */
int address_book_render_info(struct address_book *b, struct strbuf *out);

#endif
