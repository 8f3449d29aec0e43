/* Issue 15: more keys than RLIMIT_MEMLOCK can lock stay readable, and the
 * daemon says once that key memory is no longer locked. */
#include "secret.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define LIMIT (64 * 1024)
#define KEYS 2000                   /* 2000 pool slots: about 5 chunks of 64 KiB */

/* The child: a 64 KiB limit, then KEYS secrets that must all read back. */
static int child(void)
{
	struct rlimit rl = { LIMIT, LIMIT };
	if (setrlimit(RLIMIT_MEMLOCK, &rl) != 0)
		return 2;
	if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
		return 2;   /* root's CAP_IPC_LOCK ignores the limit */
	/* Under ASan/TSan mlock() is a no-op that never fails: nothing to see. */
	void *probe = malloc(4 * LIMIT);
	if (probe && mlock(probe, 4 * LIMIT) == 0) {
		free(probe);
		return 77;
	}
	free(probe);

	static struct secret *keys[KEYS];
	char text[67];
	for (int i = 0; i < KEYS; i++) {
		snprintf(text, sizeof(text), "0x%064x", i + 1);
		if (!(keys[i] = secret_from(text, 66)))
			return 3;
	}
	for (int i = 0; i < KEYS; i++) {
		snprintf(text, sizeof(text), "0x%064x", i + 1);
		if (keys[i]->len != 66 || memcmp(keys[i]->data, text, 66) != 0)
			return 4;
		secret_free(keys[i]);
	}
	return 0;
}

Test(memlock, keys_past_the_limit_stay_readable_with_one_warning)
{
	int p[2];
	cr_assert_eq(pipe(p), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		close(p[0]);
		dup2(p[1], STDERR_FILENO);
		_exit(child());
	}
	close(p[1]);
	char out[8192];
	size_t n = 0;
	ssize_t r;
	while (n < sizeof(out) - 1 && (r = read(p[0], out + n, sizeof(out) - 1 - n)) > 0)
		n += (size_t)r;
	out[n] = 0;
	close(p[0]);
	int status;
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status));
	if (WEXITSTATUS(status) == 77)
		cr_skip_test("mlock() is a no-op here (sanitizer build)");
	cr_assert_eq(WEXITSTATUS(status), 0, "child exit %d: %s", WEXITSTATUS(status), out);
	const char *w = strstr(out, "key memory no longer locked");
	cr_assert_not_null(w, "no warning in: %s", out);
	cr_expect_null(strstr(w + 1, "key memory no longer locked"), "warned more than once: %s", out);
	cr_expect_not_null(strstr(out, "RLIMIT_MEMLOCK"), "%s", out);
}
