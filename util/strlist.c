/* strlist.c - growable list of owned strings. */
#include "strlist.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Free an item unless it lives in the list's block. */
static void item_free(struct strlist *l, char *s)
{
	if (!(l->block && s >= l->block && s < l->block + l->block_size))
		free(s);
}

int strlist_take(struct strlist *l, char *s)
{
	if (!s)
		return -ENOMEM;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 8;
		char **items = realloc(l->items, cap * sizeof(*items));
		if (!items) {
			free(s);
			return -ENOMEM;
		}
		l->items = items;
		l->cap = cap;
	}
	l->items[l->n++] = s;
	return 0;
}

int strlist_add(struct strlist *l, const char *s)
{
	return strlist_take(l, strdup(s));
}

static int compare_strings(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void strlist_sort_unique(struct strlist *l)
{
	if (l->n < 2)
		return;
	/* A listing that is already sorted and unique (the usual case: one
	 * backend instance's cached listing) costs one pass, not a sort. */
	size_t sorted = 1;
	while (sorted < l->n && strcmp(l->items[sorted - 1], l->items[sorted]) < 0)
		sorted++;
	if (sorted == l->n)
		return;
	qsort(l->items, l->n, sizeof(*l->items), compare_strings);
	size_t out = 1;
	for (size_t i = 1; i < l->n; i++) {
		if (strcmp(l->items[i], l->items[out - 1]) == 0)
			item_free(l, l->items[i]);
		else
			l->items[out++] = l->items[i];
	}
	l->n = out;
}

int strlist_contains(const struct strlist *l, const char *s)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->items[i], s) == 0)
			return 1;
	return 0;
}

void strlist_remove(struct strlist *l, const char *s)
{
	size_t out = 0;
	for (size_t i = 0; i < l->n; i++) {
		if (strcmp(l->items[i], s) == 0)
			item_free(l, l->items[i]);
		else
			l->items[out++] = l->items[i];
	}
	l->n = out;
}

int strlist_pack(struct strlist *l)
{
	size_t size = 0;
	for (size_t i = 0; i < l->n; i++)
		size += strlen(l->items[i]) + 1;
	char *block = size ? malloc(size) : NULL;
	if (size && !block)
		return -ENOMEM;
	if (l->n < l->cap) {   /* best effort: a failed shrink keeps the larger array */
		char **items = realloc(l->items, (l->n ? l->n : 1) * sizeof(*items));
		if (items) {
			l->items = items;
			l->cap = l->n ? l->n : 1;
		}
	}
	char *p = block;
	for (size_t i = 0; i < l->n; i++) {
		size_t len = strlen(l->items[i]) + 1;
		memcpy(p, l->items[i], len);
		item_free(l, l->items[i]);
		l->items[i] = p;
		p += len;
	}
	free(l->block);
	l->block = block;
	l->block_size = size;
	return 0;
}

void strlist_clear(struct strlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		item_free(l, l->items[i]);
	free(l->items);
	free(l->block);
	l->items = NULL;
	l->block = NULL;
	l->n = l->cap = l->block_size = 0;
}
