/* strlist.h - a growable list of owned C strings.
 *
 * An item is its own allocation, or (after strlist_pack) a string in the
 * list's one block: a long-lived list of many short names then costs its
 * bytes and a pointer each instead of a malloc chunk each (issue 15,
 * goal 3).  Every call below works on either kind. */
#ifndef OMIKUJI_STRLIST_H
#define OMIKUJI_STRLIST_H

#include <stddef.h>

struct strlist {
	char **items;   /* owned by the list */
	size_t n;
	size_t cap;
	char *block;       /* NULL, or the packed items' storage (strlist_pack) */
	size_t block_size;
};

#define STRLIST_INIT { NULL, 0, 0, NULL, 0 }

/* Append a copy of s.  0 or -ENOMEM. */
int strlist_add(struct strlist *l, const char *s);
/* Append s, taking ownership (freed by the list even on failure).  0 or -ENOMEM. */
int strlist_take(struct strlist *l, char *s);
/* Sort bytewise and drop duplicates. */
void strlist_sort_unique(struct strlist *l);
/* 1 when s is an item. */
int strlist_contains(const struct strlist *l, const char *s);
/* Drop every item equal to s (order kept). */
void strlist_remove(struct strlist *l, const char *s);
/* Copy every item into one block (and trim the array to n), freeing the
 * items' own allocations.  0, or -ENOMEM with the list unchanged. */
int strlist_pack(struct strlist *l);
/* Free every item and the array; the list is empty and reusable after. */
void strlist_clear(struct strlist *l);

#endif
