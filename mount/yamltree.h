/* yamltree.h - a YAML document as a tree of nodes that know where they
 * were written (yamltree.c).  The YAML engine of the config loader: it reads
 * with libyaml and knows nothing of omikuji's keys; config.c holds the
 * schema (which keys exist, their types) and the validation.
 *
 * One document per file: an empty file or one of comments gives a tree
 * with no root; a second document is an error.  Every scalar (a file may
 * hold a token) is wiped, as are libyaml's buffers, before memory is
 * released.  Aliases are followed: an aliased node appears wherever it is
 * referenced (the same node).
 */
#ifndef OMIKUJI_YAMLTREE_H
#define OMIKUJI_YAMLTREE_H

#include <stdbool.h>
#include <stddef.h>

enum yamltree_kind {
	YAMLTREE_SCALAR,
	YAMLTREE_SEQUENCE,
	YAMLTREE_MAPPING,
};

struct yamltree_node {
	enum yamltree_kind kind;
	size_t line, column;              /* 1-based, where the node starts */
	/* scalar */
	char *value;                      /* NUL-terminated (len bytes before it) */
	size_t len;
	bool plain;                       /* written without quotes or block style */
	/* sequence: n items; mapping: n pairs keys[i]: values[i], in file order */
	size_t n;
	struct yamltree_node **items;
	struct yamltree_node **keys;
	struct yamltree_node **values;
};

struct yamltree;

/* Parse data (len bytes; file names the source in messages).  0 with *out
 * (free with yamltree_free); -EINVAL with "FILE:LINE:COL: YAML syntax
 * error: ..." or "... more than one YAML document ..." in err; -ENOMEM. */
int yamltree_load(const char *file, const char *data, size_t len, struct yamltree **out,
                  char *err, size_t errlen);
/* The document's root; NULL for an empty document.  Owned by the tree. */
struct yamltree_node *yamltree_root(const struct yamltree *t);
void yamltree_free(struct yamltree *t);

/* A plain scalar that YAML reads as null: empty, ~, null, Null, NULL. */
bool yamltree_is_null(const struct yamltree_node *node);

#endif
