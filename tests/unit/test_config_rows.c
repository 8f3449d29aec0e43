/* test_config_rows.c - the config schema's rows drive everything
 * (mount/config.c): a row added to a table gets its default, its printing
 * (secrets masked) and its freeing with no other code, for every kind of
 * row, nested sections and lists of mappings included; and key_storage and
 * a keyfs.backends entry parse their type sections with the same tables.
 *
 * The schema's machinery is file-local, so this test compiles config.c
 * itself (the core library's copy is then not linked in) and adds a table
 * of its own: the rows below are all the code a new field needs. */
#include "../../mount/config.c"

#include <criterion/criterion.h>

struct demo_item {
	char *label;
	int weight;
};

struct demo_sub {
	int depth;
	char *note;
};

struct demo {
	char *name;
	char *path;
	char *secret;
	char *choice;
	int level;
	int count;
	int mode;
	struct strlist tags;
	struct demo_sub sub;
	struct demo_item *items;
	size_t n_items;
};

static const char *const demo_choices[] = { "low", "high", NULL };

static const struct field demo_item_fields[] = {
	{ "label", FIELD_STRING, offsetof(struct demo_item, label), .def = "unnamed" },
	{ "weight", FIELD_INT, offsetof(struct demo_item, weight), 0, 9, .def_int = 1 },
	{ NULL },
};

static const struct field demo_sub_fields[] = {
	{ "depth", FIELD_INT, offsetof(struct demo_sub, depth), 0, 99, .def_int = 7 },
	{ "note", FIELD_STRING, offsetof(struct demo_sub, note) },
	{ NULL },
};

static int demo_item_defaults(void *item)
{
	return fields_defaults(demo_item_fields, item);
}

#define D(m) offsetof(struct demo, m)
static const struct field demo_fields[] = {
	{ "name", FIELD_STRING, D(name), .def = "demo" },
	{ "path", FIELD_PATH, D(path), .def = "/var/lib/demo" },
	{ "secret", FIELD_SECRET, D(secret), .def = "not-a-real-secret-0123" },
	{ "choice", FIELD_CHOICE, D(choice), .choices = demo_choices, .def = "high" },
	{ "level", FIELD_ENUM, D(level), .choices = demo_choices, .def_int = 1 },
	{ "count", FIELD_INT, D(count), 0, 100, .def_int = 42 },
	{ "mode", FIELD_MODE, D(mode), .parse = parse_file_mode, .def_int = 0640 },
	{ "tags", FIELD_STRLIST, D(tags) },
	{ "sub", FIELD_SECTION, D(sub), .fields = demo_sub_fields },
	{ "items", FIELD_LIST, D(items), .fields = demo_item_fields,
	  .item_size = sizeof(struct demo_item), .count_offset = D(n_items),
	  .list_noun = "a list", .item_keys = "(label:, weight:)", .item_init = demo_item_defaults },
	{ NULL },
};
#undef D

static char *print_demo(const struct demo *d)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	cr_assert_not_null(f);
	fields_print(f, 0, demo_fields, d);
	fclose(f);
	return buf;
}

static void expect_all_freed(const struct demo *d)
{
	cr_expect_null(d->name);
	cr_expect_null(d->path);
	cr_expect_null(d->secret);
	cr_expect_null(d->choice);
	cr_expect_eq(d->tags.n, 0);
	cr_expect_null(d->sub.note);
	cr_expect_null(d->items);
	cr_expect_eq(d->n_items, 0);
}

Test(config_rows, defaults_print_and_free_come_from_the_rows)
{
	struct demo d;
	memset(&d, 0, sizeof(d));
	cr_assert_eq(fields_defaults(demo_fields, &d), 0);
	cr_expect_str_eq(d.name, "demo");
	cr_expect_str_eq(d.path, "/var/lib/demo");
	cr_expect_str_eq(d.secret, "not-a-real-secret-0123");
	cr_expect_str_eq(d.choice, "high");
	cr_expect_eq(d.level, 1);
	cr_expect_eq(d.count, 42);
	cr_expect_eq(d.mode, 0640);
	cr_expect_eq(d.sub.depth, 7);

	char *printed = print_demo(&d);
	cr_expect_str_eq(printed,
		"name: \"demo\"\n"
		"path: \"/var/lib/demo\"\n"
		"secret: \"********\"\n"
		"choice: \"high\"\n"
		"level: high\n"
		"count: 42\n"
		"mode: \"0640\"\n"
		"tags: []\n"
		"sub:\n"
		"  depth: 7\n"
		"  # note: (not set)\n"
		"items: []\n");
	free(printed);
	fields_free(demo_fields, &d);
	expect_all_freed(&d);
}

/* Loaded, printed, loaded again: the same values; then freed (the ASan
 * build reports any leak). */
Test(config_rows, a_new_table_loads_prints_and_reloads)
{
	const char *yaml =
		"name: n1\n"
		"secret: \"${DEMO_SECRET}\"\n"
		"choice: low\n"
		"level: low\n"
		"count: 5\n"
		"mode: \"0600\"\n"
		"tags: [a, b]\n"
		"sub: {note: hello}\n"
		"items:\n"
		"  - label: first\n"
		"    weight: 3\n"
		"  - weight: 4\n";
	setenv("DEMO_SECRET", "s3cr3t-from-env", 1);
	struct demo d[2];
	char *printed = NULL;
	for (int round = 0; round < 2; round++) {
		struct config cfg;
		char err[512] = "";
		memset(&cfg, 0, sizeof(cfg));
		memset(&d[round], 0, sizeof(d[round]));
		struct loader L = { .file = "demo.yaml", .err = err, .errlen = sizeof(err), .cfg = &cfg };
		struct yamltree *t = NULL;
		const char *text = round == 0 ? yaml : printed;
		cr_assert_eq(fields_defaults(demo_fields, &d[round]), 0);
		cr_assert_eq(yamltree_load("demo.yaml", text, strlen(text), &t, err, sizeof(err)), 0, "%s", err);
		cr_assert_eq(load_mapping(&L, yamltree_root(t), demo_fields, &d[round], "demo"), 0,
		             "round %d: %s", round, err);
		yamltree_free(t);
		strlist_clear(&cfg.secret_env);
		strlist_clear(&cfg.warnings);
		if (round == 0) {
			printed = print_demo(&d[0]);
			cr_expect(strstr(printed, "s3cr3t-from-env") == NULL, "secret printed: %s", printed);
		}
	}
	free(printed);
	cr_expect_str_eq(d[0].secret, "s3cr3t-from-env");
	cr_expect_str_eq(d[1].secret, "********", "the printed config masks it");
	for (int i = 0; i < 2; i++) {
		cr_expect_str_eq(d[i].name, "n1");
		cr_expect_str_eq(d[i].path, "/var/lib/demo", "the default stays");
		cr_expect_str_eq(d[i].choice, "low");
		cr_expect_eq(d[i].level, 0);
		cr_expect_eq(d[i].count, 5);
		cr_expect_eq(d[i].mode, 0600);
		cr_assert_eq(d[i].tags.n, 2);
		cr_expect_str_eq(d[i].tags.items[1], "b");
		cr_expect_eq(d[i].sub.depth, 7);
		cr_expect_str_eq(d[i].sub.note, "hello");
		cr_assert_eq(d[i].n_items, 2);
		cr_expect_str_eq(d[i].items[0].label, "first");
		cr_expect_eq(d[i].items[0].weight, 3);
		cr_expect_str_eq(d[i].items[1].label, "unnamed", "an item's defaults");
		cr_expect_eq(d[i].items[1].weight, 4);
		fields_free(demo_fields, &d[i]);
		expect_all_freed(&d[i]);
	}
}

Test(config_rows, a_list_row_names_its_errors)
{
	struct config cfg;
	struct demo d;
	char err[512] = "";
	memset(&cfg, 0, sizeof(cfg));
	memset(&d, 0, sizeof(d));
	struct loader L = { .file = "demo.yaml", .err = err, .errlen = sizeof(err), .cfg = &cfg };
	const char *yaml = "items:\n  - label: a\n  - [x]\n";
	struct yamltree *t = NULL;
	cr_assert_eq(yamltree_load("demo.yaml", yaml, strlen(yaml), &t, err, sizeof(err)), 0);
	cr_expect_eq(load_mapping(&L, yamltree_root(t), demo_fields, &d, "demo"), -EINVAL);
	cr_expect_str_eq(err, "demo.yaml:3:5: expected a mapping (label:, weight:) for demo.items[1]");
	yamltree_free(t);
	fields_free(demo_fields, &d);   /* what was loaded before the error */
	expect_all_freed(&d);
}

/* key_storage and a keyfs.backends entry: the same section tables. */
Test(config_rows, instances_parse_with_key_storages_tables)
{
	size_t sections = 0;
	for (const struct field *f = key_storage_fields; f->key; f++) {
		if (f->kind != FIELD_SECTION)
			continue;
		const struct field *e = backend_entry_fields;
		while (e->key && strcmp(e->key, f->key) != 0)
			e++;
		cr_assert_not_null(e->key, "%s missing from keyfs.backends entries", f->key);
		cr_expect_eq(e->fields, f->fields, "%s: another table", f->key);
		cr_expect_eq(e->offset, f->offset, "%s", f->key);
		sections++;
	}
	cr_expect_eq(sections, 4, "keyring, vault, aws_secrets, file");
}
