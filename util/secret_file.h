/* secret_file.h - read a small file that holds a secret (a Vault token, an
 * AppRole secret_id, a web identity or container authorization token, the
 * AWS shared credentials file) into a struct secret, wiped when freed.
 *
 * The file must be a regular file (a FIFO or device is refused, so a read
 * cannot block or run forever) of at most `max` bytes.  Symbolic links are
 * followed on purpose: Kubernetes delivers projected tokens (the EKS web
 * identity token, Vault agent sinks in pods) as `token -> ..data/token`.
 * Error texts name the path, never the content.
 */
#ifndef OMIKUJI_SECRET_FILE_H
#define OMIKUJI_SECRET_FILE_H

#include <stddef.h>
#include "secret.h"

/* The token form: surrounding blanks and line ends dropped. */
#define SECRET_FILE_TOKEN      1u
/* With SECRET_FILE_TOKEN: no blank inside either (a Vault token). */
#define SECRET_FILE_NO_BLANKS  2u

/* Read path into *out (data[len] is 0).  With SECRET_FILE_TOKEN the result
 * is trimmed and must be non-empty printable ASCII.  0, or -errno with a
 * one-line reason in why: -ENOENT (does not exist), -EFBIG (over max),
 * -EINVAL (not a regular file; token empty or not printable), -ENOMEM,
 * others from open/read. */
int secret_file_read(const char *path, size_t max, unsigned flags, struct secret **out,
                     char *why, size_t whylen);

#endif
