/* secret_file.c - small secret-holding files into wiped buffers (see
 * secret_file.h). */
#include "secret_file.h"
#include "strbuf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Room for at least one more byte: secret_append grows (wiping the old
 * buffer); the pad byte is then taken back. */
static int secret_file_grow(struct secret *s)
{
	static const char pad[1] = { 0 };
	if (secret_append(s, pad, 1))
		return -ENOMEM;
	s->len--;
	return 0;
}

static bool blank(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int secret_file_token(struct secret *raw, unsigned flags, const char *path,
                             struct secret **out, char *why, size_t whylen)
{
	size_t a = 0, z = raw->len;
	while (a < z && blank(raw->data[a]))
		a++;
	while (z > a && blank(raw->data[z - 1]))
		z--;
	unsigned char lo = flags & SECRET_FILE_NO_BLANKS ? 0x21 : 0x20;
	for (size_t i = a; i < z; i++) {
		if (raw->data[i] < lo || raw->data[i] > 0x7e) {
			z = a;
			break;
		}
	}
	if (z == a) {
		text_setf(why, whylen, "%s is empty or holds non-printable characters", path);
		return -EINVAL;
	}
	*out = secret_from(raw->data + a, z - a);
	return *out ? 0 : -ENOMEM;
}

int secret_file_read(const char *path, size_t max, unsigned flags, struct secret **out,
                     char *why, size_t whylen)
{
	*out = NULL;
	/* O_NONBLOCK: opening a FIFO must not wait for a writer */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0) {
		int e = errno;
		if (e == ENOENT)
			text_setf(why, whylen, "%s does not exist", path);
		else
			text_setf(why, whylen, "cannot open %s: %s", path, strerror(e));
		return -e;
	}
	struct stat st;
	int rc = 0;
	struct secret *s = NULL;
	if (fstat(fd, &st) != 0) {
		rc = -errno;
		text_setf(why, whylen, "cannot read %s: %s", path, strerror(-rc));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		text_setf(why, whylen, "%s is not a regular file", path);
		rc = -EINVAL;
		goto out;
	}
	if ((size_t)st.st_size > max) {
		text_setf(why, whylen, "%s is too large (over %zu bytes)", path, max);
		rc = -EFBIG;
		goto out;
	}
	s = secret_new((size_t)st.st_size + 64);
	if (!s) {
		rc = -ENOMEM;
		goto out;
	}
	for (;;) {
		if (s->len == s->cap && (rc = secret_file_grow(s)))
			goto out;
		ssize_t n = read(fd, s->data + s->len, s->cap - s->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			text_setf(why, whylen, "cannot read %s: %s", path, strerror(-rc));
			goto out;
		}
		if (n == 0)
			break;
		s->len += (size_t)n;
		if (s->len > max) {   /* it grew while we read */
			text_setf(why, whylen, "%s is too large (over %zu bytes)", path, max);
			rc = -EFBIG;
			goto out;
		}
	}
	s->data[s->len] = 0;
	if (flags & SECRET_FILE_TOKEN) {
		rc = secret_file_token(s, flags, path, out, why, whylen);
	} else {
		*out = s;
		s = NULL;
	}
out:
	secret_free(s);
	close(fd);
	return rc;
}
