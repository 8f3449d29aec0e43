/* snapshot.c - virtual files generated when opened (metrics, health).
 * Content is rendered into a per-open buffer kept in fi->fh, so one open
 * reads one consistent snapshot whatever the offsets, and rendering never
 * happens on the key-read path (lxcfs does the same for /proc files). */
#include "tree.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct snapshot {
	struct handle h;         /* first: kind HANDLE_SNAPSHOT, list links */
	char *text;
	size_t len;
};

int snapshot_render_metrics(struct mount_state *k, const struct node *n, struct strbuf *out)
{
	(void)n;
	int rc = metrics_render(out);
	bool first = true;
	for (size_t i = 0; rc == 0 && k && i < k->n_instances; i++) {
		struct instance *in = k->instances[i];
		if (!in->backend || !in->backend->ops->api_calls)
			continue;
		struct backend_api_calls calls[32];
		size_t nc = in->backend->ops->api_calls(in->backend, calls, 32);
		rc = metrics_render_api_calls(out, in->name, calls, nc, first);
		first = false;
	}
	/* key_info names networks: metrics_per_network: false leaves it out too. */
	if (rc == 0 && k->addresses && k->cfg->keyfs.metrics_addresses &&
	    k->cfg->keyfs.metrics_per_network)
		rc = address_book_render_info(k->addresses, out);
	return rc;
}

int snapshot_render_health(struct mount_state *k, const struct node *n, struct strbuf *out)
{
	struct instance *in = mount_state_instance(k, n->name);
	return in ? health_render(in, out) : -ENOENT;
}

int snapshot_open(struct mount_state *k, const struct node *n, struct fuse_file_info *fi)
{
	if ((fi->flags & O_ACCMODE) != O_RDONLY)
		return -EACCES;
	struct strbuf b = STRBUF_INIT;
	b.limit = 64u << 20;
	int rc = n->entry->render(k, n, &b);
	if (rc == 0)
		rc = b.error;
	if (rc < 0) {
		strbuf_reset(&b);
		return rc;
	}
	size_t len;
	char *text = strbuf_detach(&b, &len);
	return snapshot_adopt(k, fi, text, len);
}

int snapshot_adopt(struct mount_state *k, struct fuse_file_info *fi, char *text, size_t len)
{
	struct snapshot *s = calloc(1, sizeof(*s));
	if (!s) {
		free(text);
		return -ENOMEM;
	}
	handle_register(k, &s->h, HANDLE_SNAPSHOT);
	s->text = text;
	s->len = len;
	fi->fh = (uint64_t)(uintptr_t)s;
	fi->direct_io = 1;
	fi->noflush = 1;
	return 0;
}

int snapshot_read(size_t size, off_t off, struct fuse_file_info *fi, const char **data)
{
	struct snapshot *s = (struct snapshot *)(uintptr_t)fi->fh;
	if (off < 0)
		return -EINVAL;
	if ((size_t)off >= s->len)
		return 0;
	size_t n = s->len - (size_t)off;
	if (n > size)
		n = size;
	*data = s->text + off;
	return (int)n;
}

void snapshot_discard(struct handle *h)
{
	struct snapshot *s = (struct snapshot *)h;
	free(s->text);
	free(s);
}

void snapshot_release(struct mount_state *k, struct fuse_file_info *fi)
{
	struct snapshot *s = (struct snapshot *)(uintptr_t)fi->fh;
	if (!s)
		return;
	handle_unregister(k, &s->h);
	snapshot_discard(&s->h);
	fi->fh = 0;
}
