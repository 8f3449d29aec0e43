/* test_strlist.c - packed lists: the keys/ listing kept as one block
 * (issue 15, goal 3), mixed with items added after packing. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "strlist.h"

static bool in_block(const struct strlist *l, const char *s)
{
	return l->block && s >= l->block && s < l->block + l->block_size;
}

Test(strlist, pack_puts_every_name_in_one_block)
{
	struct strlist l = STRLIST_INIT;
	char name[32];
	for (int i = 999; i >= 0; i--) {
		snprintf(name, sizeof(name), "net-%04d", i);
		cr_assert_eq(strlist_add(&l, name), 0);
	}
	strlist_sort_unique(&l);
	cr_assert_eq(strlist_pack(&l), 0);
	cr_assert_eq(l.n, 1000);
	cr_expect_eq(l.cap, 1000, "the array is trimmed to the names");
	cr_expect_eq(l.block_size, 1000 * 9);
	for (size_t i = 0; i < l.n; i++) {
		snprintf(name, sizeof(name), "net-%04zu", i);
		cr_assert_str_eq(l.items[i], name);
		cr_assert(in_block(&l, l.items[i]));
		if (i)   /* back to back, in order */
			cr_assert_eq(l.items[i], l.items[i - 1] + 9);
	}
	strlist_clear(&l);
	cr_expect_null(l.block);
	cr_expect_eq(l.n, 0);
}

Test(strlist, packed_list_takes_adds_removes_and_repacks)
{
	struct strlist l = STRLIST_INIT;
	cr_assert_eq(strlist_add(&l, "b"), 0);
	cr_assert_eq(strlist_add(&l, "d"), 0);
	cr_assert_eq(strlist_add(&l, "f"), 0);
	cr_assert_eq(strlist_pack(&l), 0);
	/* a store through the mount adds a name; a duplicate goes again */
	cr_assert_eq(strlist_add(&l, "c"), 0);
	cr_assert_eq(strlist_add(&l, "d"), 0);
	strlist_sort_unique(&l);
	cr_assert_eq(l.n, 4);
	cr_expect_str_eq(l.items[1], "c");
	cr_expect(!in_block(&l, l.items[1]));
	cr_expect(in_block(&l, l.items[2]));
	/* a remove drops a packed name and an added one */
	strlist_remove(&l, "d");
	strlist_remove(&l, "c");
	cr_assert_eq(l.n, 2);
	cr_expect_str_eq(l.items[0], "b");
	cr_expect_str_eq(l.items[1], "f");
	cr_expect(strlist_contains(&l, "f"));
	cr_expect(!strlist_contains(&l, "d"));
	/* packing again moves everything into a new block */
	cr_assert_eq(strlist_add(&l, "g"), 0);
	cr_assert_eq(strlist_pack(&l), 0);
	cr_assert_eq(l.n, 3);
	cr_expect_eq(l.block_size, 6);
	for (size_t i = 0; i < l.n; i++)
		cr_expect(in_block(&l, l.items[i]));
	cr_expect_str_eq(l.items[2], "g");
	strlist_clear(&l);
	/* an empty list packs to nothing and stays usable */
	cr_assert_eq(strlist_pack(&l), 0);
	cr_expect_null(l.block);
	cr_assert_eq(strlist_add(&l, "x"), 0);
	strlist_clear(&l);
}
