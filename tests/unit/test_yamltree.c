/* test_yamltree.c - the YAML engine of the config loader (mount/yamltree.c):
 * nodes with their 1-based line and column, scalar styles, null, aliases,
 * one document per file, and libyaml's syntax errors with file:line:col. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "yamltree.h"

static char err[512];

static struct yamltree *load(const char *text)
{
	struct yamltree *t = NULL;
	int rc = yamltree_load("f.yaml", text, strlen(text), &t, err, sizeof(err));
	cr_assert_eq(rc, 0, "%s", err);
	cr_assert_not_null(t);
	return t;
}

Test(yamltree, nodes_know_where_they_are)
{
	struct yamltree *t = load("# c\nkeyfs:\n  audit_log: \"/x\"\n  list: [a, 'b']\n");
	struct yamltree_node *root = yamltree_root(t);
	cr_assert_eq(root->kind, YAMLTREE_MAPPING);
	cr_assert_eq(root->n, 1);
	cr_expect_str_eq(root->keys[0]->value, "keyfs");
	cr_expect_eq(root->keys[0]->line, 2);
	cr_expect_eq(root->keys[0]->column, 1);
	struct yamltree_node *keyfs = root->values[0];
	cr_assert_eq(keyfs->kind, YAMLTREE_MAPPING);
	cr_assert_eq(keyfs->n, 2);
	struct yamltree_node *path = keyfs->values[0];
	cr_expect_str_eq(path->value, "/x");
	cr_expect_eq(path->len, 2);
	cr_expect(!path->plain, "double-quoted");
	cr_expect_eq(path->line, 3);
	cr_expect_eq(path->column, 14);
	struct yamltree_node *list = keyfs->values[1];
	cr_assert_eq(list->kind, YAMLTREE_SEQUENCE);
	cr_assert_eq(list->n, 2);
	cr_expect(list->items[0]->plain);
	cr_expect_str_eq(list->items[1]->value, "b");
	cr_expect_eq(list->items[1]->column, 13);
	yamltree_free(t);
}

Test(yamltree, null_is_a_plain_scalar_only)
{
	struct yamltree *t = load("a: ~\nb: null\nc:\nd: \"\"\ne: 'null'\nf: x\n");
	struct yamltree_node *root = yamltree_root(t);
	bool want[] = { true, true, true, false, false, false };
	cr_assert_eq(root->n, 6);
	for (size_t i = 0; i < root->n; i++)
		cr_expect_eq(yamltree_is_null(root->values[i]), want[i], "%s", root->keys[i]->value);
	yamltree_free(t);
}

Test(yamltree, aliases_are_followed)
{
	struct yamltree *t = load("base: &b {x: 1}\nother: *b\n");
	struct yamltree_node *root = yamltree_root(t);
	cr_assert_eq(root->n, 2);
	cr_expect_eq(root->values[0], root->values[1], "the same node");
	cr_expect_str_eq(root->values[1]->values[0]->value, "1");
	yamltree_free(t);
}

Test(yamltree, empty_document_has_no_root)
{
	struct yamltree *t = load("# only a comment\n");
	cr_expect_null(yamltree_root(t));
	yamltree_free(t);
	t = load("");
	cr_expect_null(yamltree_root(t));
	yamltree_free(t);
}

Test(yamltree, errors_name_file_line_and_column)
{
	struct yamltree *t = NULL;
	const char *two = "a: 1\n---\nb: 2\n";
	cr_expect_eq(yamltree_load("f.yaml", two, strlen(two), &t, err, sizeof(err)), -EINVAL);
	cr_expect_null(t);
	cr_expect_str_eq(err, "f.yaml:3:1: more than one YAML document; the config is one document");
	const char *bad = "a: [\n";
	cr_expect_eq(yamltree_load("f.yaml", bad, strlen(bad), &t, err, sizeof(err)), -EINVAL);
	cr_expect_str_eq(err, "f.yaml:2:1: YAML syntax error: did not find expected node content "
	                 "(while parsing a flow node at line 2, column 1)");
	cr_expect_null(t);
}
