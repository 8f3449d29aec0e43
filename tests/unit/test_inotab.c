/* test_inotab.c - the inode table of named children (fs/inotab.c): numbers
 * never reused after the count reaches 0, lookup counts (FORGET of part,
 * of more than held, of an unknown number), families kept apart, long
 * names (outside the entry), many names through index growth with
 * deletions in between (linear probing's backward shift), and the slots of
 * forgotten names reused without growing. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include "inotab.h"

#include <stdint.h>

Test(inotab, numbers_counts_and_forget)
{
	struct inotab t;
	inotab_init(&t);
	cr_expect_eq(inotab_find(&t, 1, "eth"), 0, "an empty table holds nothing");
	uint64_t a = inotab_ref(&t, 1, "eth");
	cr_expect_gt(a, UINT32_MAX, "above every fixed inode number");
	cr_expect_eq(inotab_ref(&t, 1, "eth"), a, "a second lookup: the same number");
	cr_expect_eq(inotab_nlookup(&t, a), 2);
	uint64_t b = inotab_ref(&t, 6, "eth");
	cr_expect_neq(b, a, "keys/eth and addresses/eth are two inodes");
	cr_expect_eq(t.count, 2);

	unsigned fam = 99;
	char name[65];
	cr_assert(inotab_name(&t, b, &fam, name, sizeof(name)));
	cr_expect_eq(fam, 6);
	cr_expect_str_eq(name, "eth");

	inotab_unref(&t, a, 1);
	cr_expect_eq(inotab_find(&t, 1, "eth"), a, "one of two lookups forgotten: still held");
	inotab_unref(&t, 12345, 1);              /* unknown: ignored */
	inotab_unref(&t, a, 5);                  /* more than held: gone */
	cr_expect_eq(inotab_find(&t, 1, "eth"), 0);
	cr_expect_not(inotab_name(&t, a, &fam, name, sizeof(name)), "a forgotten number resolves to nothing");
	cr_expect_eq(inotab_find(&t, 6, "eth"), b, "the other family is untouched");
	uint64_t a2 = inotab_ref(&t, 1, "eth");
	cr_expect_gt(a2, b, "looked up again after FORGET: a new number, never the old one");
	cr_expect_eq(inotab_nlookup(&t, a2), 1);
	inotab_clear(&t);
}

Test(inotab, long_names)
{
	struct inotab t;
	inotab_init(&t);
	char lname[65];
	memset(lname, 'x', 64);
	lname[64] = '\0';
	char huge[301];                          /* past the entry's 8-bit length */
	memset(huge, 'y', 300);
	huge[300] = '\0';
	const char *names[] = { "a", "seventeen-chars-x", "eighteen-chars-xyz", lname, huge };
	uint64_t inos[5];
	for (int i = 0; i < 5; i++)
		inos[i] = inotab_ref(&t, 3, names[i]);
	for (int i = 0; i < 5; i++) {
		unsigned fam;
		char got[301];
		cr_assert(inotab_name(&t, inos[i], &fam, got, sizeof(got)));
		cr_expect_str_eq(got, names[i]);
		cr_expect_eq(inotab_find(&t, 3, names[i]), inos[i]);
		char small[5];
		cr_assert(inotab_name(&t, inos[i], &fam, small, sizeof(small)));
		cr_expect_eq(strncmp(small, names[i], 4), 0, "a short buffer gets the name's start");
		cr_expect_eq(strlen(small), strlen(names[i]) < 4 ? strlen(names[i]) : 4);
	}
	inotab_unref(&t, inos[3], 1);            /* the external copy is freed (ASan/LSan) */
	cr_expect_eq(inotab_find(&t, 3, lname), 0);
	inotab_clear(&t);                        /* and the others at clear */
}

Test(inotab, many_names_grow_delete_reuse)
{
	struct inotab t;
	inotab_init(&t);
	enum { N = 30000 };
	static uint64_t ino[N];
	char name[32];
	for (unsigned i = 0; i < N; i++) {
		snprintf(name, sizeof(name), i % 7 ? "net-%06u" : "a-long-network-name-%06u", i);
		ino[i] = inotab_ref(&t, i % 2 ? 1 : 6, name);
		cr_assert_gt(ino[i], i ? ino[i - 1] : UINT32_MAX, "numbers are given in order, once each");
	}
	cr_assert_eq(t.count, N);
	size_t cap = t.cap;
	uint32_t blocks = t.nblocks;
	/* Forget every third name: the others still resolve both ways. */
	for (unsigned i = 0; i < N; i += 3)
		inotab_unref(&t, ino[i], 1);
	for (unsigned i = 0; i < N; i++) {
		snprintf(name, sizeof(name), i % 7 ? "net-%06u" : "a-long-network-name-%06u", i);
		unsigned fam;
		char got[65];
		bool held = inotab_name(&t, ino[i], &fam, got, sizeof(got));
		if (i % 3 == 0) {
			cr_assert_not(held);
			cr_assert_eq(inotab_find(&t, i % 2 ? 1 : 6, name), 0);
		} else {
			cr_assert(held, "name %u", i);
			cr_assert_str_eq(got, name);
			cr_assert_eq(fam, i % 2 ? 1u : 6u);
			cr_assert_eq(inotab_find(&t, i % 2 ? 1 : 6, name), ino[i]);
			cr_assert_eq(inotab_find(&t, i % 2 ? 6 : 1, name), 0, "the other family");
		}
	}
	/* Looked up again: new numbers, in the freed slots (no new block). */
	uint64_t top = ino[N - 1];
	for (unsigned i = 0; i < N; i += 3) {
		snprintf(name, sizeof(name), i % 7 ? "net-%06u" : "a-long-network-name-%06u", i);
		uint64_t n = inotab_ref(&t, i % 2 ? 1 : 6, name);
		cr_assert_gt(n, top, "a forgotten name gets a new number, above every one before");
		top = n;
		ino[i] = n;
	}
	cr_expect_eq(t.count, N);
	cr_expect_eq(t.cap, cap, "the indexes did not grow");
	cr_expect_eq(t.nblocks, blocks, "the freed entries were reused");
	for (unsigned i = 0; i < N; i++)
		inotab_unref(&t, ino[i], 1);
	cr_expect_eq(t.count, 0);
	for (unsigned i = 0; i < N; i++)
		cr_assert_eq(inotab_nlookup(&t, ino[i]), 0);
	inotab_clear(&t);
}

Test(inotab, forget_of_none_keeps)
{
	struct inotab t;
	inotab_init(&t);
	uint64_t a = inotab_ref(&t, 1, "eth");
	inotab_unref(&t, a, 0);
	cr_expect_eq(inotab_find(&t, 1, "eth"), a, "FORGET of 0 lookups keeps the inode");
	for (int i = 0; i < 3; i++)
		inotab_ref(&t, 1, "eth");
	cr_expect_eq(inotab_nlookup(&t, a), 4);
	inotab_unref(&t, a, 4);
	cr_expect_eq(t.count, 0);
	inotab_clear(&t);
}

/* Issue 15 round 6 (s6-diet): a number names its entry (no index by
 * number): a number never given, or one whose entry now holds another
 * name under a newer number, resolves to nothing. */
Test(inotab, numbers_not_given_resolve_to_nothing)
{
	struct inotab t;
	inotab_init(&t);
	unsigned fam;
	char name[16];
	uint64_t a = inotab_ref(&t, 1, "eth");
	cr_expect_not(inotab_name(&t, 0, &fam, name, sizeof(name)));
	cr_expect_not(inotab_name(&t, a + 1, &fam, name, sizeof(name)), "an entry never used");
	cr_expect_not(inotab_name(&t, a + ((uint64_t)1 << 32), &fam, name, sizeof(name)),
	              "the entry of a, a serial not given");
	cr_expect_not(inotab_name(&t, (uint32_t)a, &fam, name, sizeof(name)), "serial 0");
	cr_expect_not(inotab_name(&t, a | 0xffffff, &fam, name, sizeof(name)), "past every block");
	inotab_unref(&t, a | 0xffffff, 1);   /* ignored */
	cr_expect_eq(inotab_nlookup(&t, a), 1);
	/* a forgotten, its entry reused by another name: a stays unknown */
	inotab_unref(&t, a, 1);
	uint64_t b = inotab_ref(&t, 1, "base");
	cr_expect_eq((uint32_t)b, (uint32_t)a, "the freed entry is reused");
	cr_expect_neq(b, a);
	cr_expect_not(inotab_name(&t, a, &fam, name, sizeof(name)), "the old number names nothing");
	inotab_unref(&t, a, 1);   /* a late FORGET of the old number: ignored */
	cr_expect_eq(inotab_nlookup(&t, b), 1);
	cr_assert(inotab_name(&t, b, &fam, name, sizeof(name)));
	cr_expect_str_eq(name, "base");
	inotab_clear(&t);
	/* numbers stay above those of the cleared table */
	uint64_t c = inotab_ref(&t, 1, "eth");
	cr_expect_gt(c, b);
	inotab_clear(&t);
}
