/* strlist.h - a growable list of owned C strings. */
#ifndef OMIKUJI_STRLIST_H
#define OMIKUJI_STRLIST_H

#include <stddef.h>

struct strlist {
	char **items;   /* owned by the list */
	size_t n;
	size_t cap;
};

#define STRLIST_INIT { NULL, 0, 0 }

/* Append a copy of s.  0 or -ENOMEM. */
int strlist_add(struct strlist *l, const char *s);
/* Append s, taking ownership (freed by the list even on failure).  0 or -ENOMEM. */
int strlist_take(struct strlist *l, char *s);
/* Sort bytewise and drop duplicates. */
void strlist_sort_unique(struct strlist *l);
/* 1 when s is an item. */
int strlist_contains(const struct strlist *l, const char *s);
/* Free every item and the array; the list is empty and reusable after. */
void strlist_clear(struct strlist *l);

#endif
