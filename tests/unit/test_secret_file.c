/* test_secret_file.c - util/secret_file.c, the one reader of small
 * secret-holding files (Vault token and secret_id files, AWS token and
 * shared files): trimming, the printable check, limits, what is refused
 * and that Kubernetes' symlinked token layout is followed. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "secret_file.h"

static char dir[] = "/tmp/test-secret-file-XXXXXX";

static void setup(void)
{
	cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_expect_eq(system(cmd), 0);
}

static const char *put(const char *name, const char *content, size_t len)
{
	static char path[256];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	cr_assert_eq(fwrite(content, 1, len, f), len);
	fclose(f);
	return path;
}

TestSuite(secret_file, .init = setup, .fini = teardown);

Test(secret_file, raw_and_token_forms)
{
	struct secret *s = NULL;
	char why[200] = "";
	const char *p = put("creds", "[default]\naws_access_key_id = A\n", 32);
	cr_assert_eq(secret_file_read(p, 4096, 0, &s, why, sizeof(why)), 0);
	cr_expect_eq(s->len, 32);
	cr_expect_str_eq((const char *)s->data, "[default]\naws_access_key_id = A\n");
	secret_free(s);

	p = put("tok", "  Bearer abc.def \r\n", 19);
	cr_assert_eq(secret_file_read(p, 4096, SECRET_FILE_TOKEN, &s, why, sizeof(why)), 0);
	cr_expect_str_eq((const char *)s->data, "Bearer abc.def", "trimmed, inner blank kept");
	secret_free(s);
	cr_expect_eq(secret_file_read(p, 4096, SECRET_FILE_TOKEN | SECRET_FILE_NO_BLANKS, &s,
	                              why, sizeof(why)), -EINVAL, "a Vault token has no blank");
	cr_expect_null(s);
	cr_expect_not_null(strstr(why, "non-printable"));

	p = put("empty", " \n", 2);
	cr_expect_eq(secret_file_read(p, 4096, SECRET_FILE_TOKEN, &s, why, sizeof(why)), -EINVAL);
	p = put("ctl", "Zq9sec\x01" "retZq9", 13);
	cr_expect_eq(secret_file_read(p, 4096, SECRET_FILE_TOKEN, &s, why, sizeof(why)), -EINVAL);
	cr_expect_null(strstr(why, "Zq9"), "the content never reaches the reason");
}

Test(secret_file, limits_and_what_is_refused)
{
	struct secret *s = NULL;
	char why[200] = "", path[256];
	char big[5000];
	memset(big, 'x', sizeof(big));
	const char *p = put("big", big, sizeof(big));
	cr_expect_eq(secret_file_read(p, 4096, 0, &s, why, sizeof(why)), -EFBIG);
	cr_expect_not_null(strstr(why, "too large"));
	cr_expect_eq(secret_file_read(p, 5000, 0, &s, why, sizeof(why)), 0, "exactly max is fine");
	cr_expect_eq(s->len, 5000);
	secret_free(s);

	snprintf(path, sizeof(path), "%s/missing", dir);
	cr_expect_eq(secret_file_read(path, 4096, 0, &s, why, sizeof(why)), -ENOENT);
	cr_expect_not_null(strstr(why, path));

	/* a FIFO without a writer: refused at once, not waited on */
	snprintf(path, sizeof(path), "%s/fifo", dir);
	cr_assert_eq(mkfifo(path, 0600), 0);
	cr_expect_eq(secret_file_read(path, 4096, 0, &s, why, sizeof(why)), -EINVAL);
	cr_expect_not_null(strstr(why, "not a regular file"));
	/* a device that never ends */
	cr_expect_eq(secret_file_read("/dev/zero", 4096, 0, &s, why, sizeof(why)), -EINVAL);
	cr_expect_eq(secret_file_read(dir, 4096, 0, &s, why, sizeof(why)), -EINVAL, "a directory");
}

/* Kubernetes projects tokens as token -> ..data/token, ..data -> ..2026_..:
 * the EKS web identity token must be readable through the links. */
Test(secret_file, kubernetes_symlinks_are_followed)
{
	struct secret *s = NULL;
	char why[200] = "", a[256], b[256], c[256];
	snprintf(a, sizeof(a), "%s/..2026_11_29", dir);
	cr_assert_eq(mkdir(a, 0700), 0);
	put("..2026_11_29/token", "eyJhbGciOi.jwt\n", 15);
	snprintf(b, sizeof(b), "%s/..data", dir);
	cr_assert_eq(symlink("..2026_11_29", b), 0);
	snprintf(c, sizeof(c), "%s/token", dir);
	cr_assert_eq(symlink("..data/token", c), 0);
	cr_assert_eq(secret_file_read(c, 4096, SECRET_FILE_TOKEN, &s, why, sizeof(why)), 0, "%s", why);
	cr_expect_str_eq((const char *)s->data, "eyJhbGciOi.jwt");
	secret_free(s);
}
