/* yamltree.c - a YAML document as a tree of positioned nodes, see
 * yamltree.h.  libyaml composes the parser's events into its document
 * (resolving aliases); this copies that into nodes that carry their
 * 1-based line and column, so the schema code needs nothing of libyaml. */
#include "yamltree.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "secret.h"

struct yamltree {
	struct yamltree_node *nodes;      /* all of them; [0] is the root */
	size_t n_nodes;
};

/* libyaml keeps copies of the input in its buffers and in the document's
 * scalars; the file may hold a token, so they are wiped before release. */
static void wipe_parser(yaml_parser_t *p)
{
	if (p->raw_buffer.start)
		secret_wipe(p->raw_buffer.start, (size_t)(p->raw_buffer.end - p->raw_buffer.start));
	if (p->buffer.start)
		secret_wipe(p->buffer.start, (size_t)(p->buffer.end - p->buffer.start));
}

static void wipe_document(yaml_document_t *d)
{
	for (yaml_node_t *n = d->nodes.start; n && n < d->nodes.top; n++)
		if (n->type == YAML_SCALAR_NODE && n->data.scalar.value)
			secret_wipe(n->data.scalar.value, n->data.scalar.length);
}

static struct yamltree_node *node_at(struct yamltree *t, int index)
{
	return index >= 1 && (size_t)index <= t->n_nodes ? &t->nodes[index - 1] : NULL;
}

/* Copy libyaml's document into t.  0 or -ENOMEM (-EINVAL for a node index
 * out of range, which libyaml does not produce). */
static int copy_document(struct yamltree *t, yaml_document_t *doc)
{
	t->n_nodes = (size_t)(doc->nodes.top - doc->nodes.start);
	if (!t->n_nodes)
		return 0;
	t->nodes = calloc(t->n_nodes, sizeof(*t->nodes));
	if (!t->nodes)
		return -ENOMEM;
	for (size_t i = 0; i < t->n_nodes; i++) {
		const yaml_node_t *from = &doc->nodes.start[i];
		struct yamltree_node *to = &t->nodes[i];
		to->line = from->start_mark.line + 1;
		to->column = from->start_mark.column + 1;
		switch (from->type) {
		case YAML_SCALAR_NODE:
			to->kind = YAMLTREE_SCALAR;
			to->len = from->data.scalar.length;
			to->plain = from->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
			if (!(to->value = malloc(to->len + 1)))
				return -ENOMEM;
			memcpy(to->value, from->data.scalar.value, to->len);
			to->value[to->len] = 0;
			break;
		case YAML_SEQUENCE_NODE:
			to->kind = YAMLTREE_SEQUENCE;
			to->n = (size_t)(from->data.sequence.items.top - from->data.sequence.items.start);
			if (to->n && !(to->items = calloc(to->n, sizeof(*to->items))))
				return -ENOMEM;
			for (size_t j = 0; j < to->n; j++)
				if (!(to->items[j] = node_at(t, from->data.sequence.items.start[j])))
					return -EINVAL;
			break;
		case YAML_MAPPING_NODE:
			to->kind = YAMLTREE_MAPPING;
			to->n = (size_t)(from->data.mapping.pairs.top - from->data.mapping.pairs.start);
			if (to->n && (!(to->keys = calloc(to->n, sizeof(*to->keys))) ||
			              !(to->values = calloc(to->n, sizeof(*to->values)))))
				return -ENOMEM;
			for (size_t j = 0; j < to->n; j++) {
				const yaml_node_pair_t *p = &from->data.mapping.pairs.start[j];
				if (!(to->keys[j] = node_at(t, p->key)) || !(to->values[j] = node_at(t, p->value)))
					return -EINVAL;
			}
			break;
		default:
			return -EINVAL;
		}
	}
	return 0;
}

static int syntax_error(const char *file, yaml_parser_t *parser, char *err, size_t errlen)
{
	if (parser->error == YAML_MEMORY_ERROR) {
		snprintf(err, errlen, "%s: out of memory", file);
		return -ENOMEM;
	}
	if (parser->context)
		snprintf(err, errlen, "%s:%zu:%zu: YAML syntax error: %s (%s at line %zu, column %zu)",
		         file, parser->problem_mark.line + 1, parser->problem_mark.column + 1,
		         parser->problem ? parser->problem : "invalid YAML", parser->context,
		         parser->context_mark.line + 1, parser->context_mark.column + 1);
	else
		snprintf(err, errlen, "%s:%zu:%zu: YAML syntax error: %s",
		         file, parser->problem_mark.line + 1, parser->problem_mark.column + 1,
		         parser->problem ? parser->problem : "invalid YAML");
	return -EINVAL;
}

int yamltree_load(const char *file, const char *data, size_t len, struct yamltree **out,
                  char *err, size_t errlen)
{
	yaml_parser_t parser;
	yaml_document_t doc, extra;
	bool have_doc = false, have_extra = false;
	struct yamltree *t = NULL;
	int rc = 0;

	*out = NULL;
	if (!yaml_parser_initialize(&parser)) {
		snprintf(err, errlen, "%s: out of memory", file);
		return -ENOMEM;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)data, len);
	if (!yaml_parser_load(&parser, &doc)) {
		rc = syntax_error(file, &parser, err, errlen);
		goto out;
	}
	have_doc = true;
	yaml_node_t *root = yaml_document_get_root_node(&doc);
	if (root) {
		/* One document per file: a second one would be silently ignored. */
		if (!yaml_parser_load(&parser, &extra)) {
			rc = syntax_error(file, &parser, err, errlen);
			goto out;
		}
		have_extra = true;
		yaml_node_t *second = yaml_document_get_root_node(&extra);
		if (second) {
			snprintf(err, errlen, "%s:%zu:%zu: more than one YAML document; the config is "
			         "one document", file, second->start_mark.line + 1,
			         second->start_mark.column + 1);
			rc = -EINVAL;
			goto out;
		}
	}
	if (!(t = calloc(1, sizeof(*t)))) {
		rc = -ENOMEM;
	} else if (root && (rc = copy_document(t, &doc)) < 0) {
		yamltree_free(t);
		t = NULL;
	}
	if (rc == -ENOMEM)
		snprintf(err, errlen, "%s: out of memory", file);
	else if (rc < 0)
		snprintf(err, errlen, "%s: malformed YAML document", file);
	*out = t;
out:
	if (have_extra) {
		wipe_document(&extra);
		yaml_document_delete(&extra);
	}
	if (have_doc) {
		wipe_document(&doc);
		yaml_document_delete(&doc);
	}
	wipe_parser(&parser);
	yaml_parser_delete(&parser);
	return rc;
}

struct yamltree_node *yamltree_root(const struct yamltree *t)
{
	return t && t->n_nodes ? &t->nodes[0] : NULL;
}

void yamltree_free(struct yamltree *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n_nodes; i++) {
		struct yamltree_node *n = &t->nodes[i];
		if (n->value) {
			secret_wipe(n->value, n->len);
			free(n->value);
		}
		free(n->items);
		free(n->keys);
		free(n->values);
	}
	free(t->nodes);
	free(t);
}

bool yamltree_is_null(const struct yamltree_node *node)
{
	if (node->kind != YAMLTREE_SCALAR || !node->plain)
		return false;
	const char *v = node->value;
	return !*v || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
	       strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}
