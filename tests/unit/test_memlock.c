/* Issue 15: more keys than RLIMIT_MEMLOCK can lock stay readable, and the
 * daemon says once that key memory is no longer locked. */
#include "secret.h"
#include "vmlck.h"

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

/* s6-lock: a buffer for an answer that holds no key (secret_new_unlocked)
 * grows to 1 MiB without locking a page, keeps its bytes across the
 * growths and stays unlocked; the same growth of a secret locks it. */
Test(memlock, unlocked_buffers_lock_nothing)
{
	if (!vmlck_works())
		cr_skip_test("mlock() locks nothing here (sanitizer build, or no RLIMIT_MEMLOCK)");

	char chunk[4096];
	struct secret *list = secret_new_unlocked(4096);
	cr_assert_not_null(list);
	long base = vmlck_kb();
	for (int i = 0; i < 256; i++) {
		memset(chunk, 'a' + i % 26, sizeof(chunk));
		cr_assert_eq(secret_append(list, chunk, sizeof(chunk)), 0);
	}
	cr_expect_lt(vmlck_kb(), base + 64, "an unlocked buffer locked memory: %ld -> %ld kB",
	             base, vmlck_kb());
	cr_expect_eq(list->len, 256u * 4096);
	for (int i = 0; i < 256; i++)
		cr_expect_eq(list->data[i * 4096 + 17], 'a' + i % 26);
	cr_expect_eq(list->data[list->len], 0);
	secret_free(list);

	struct secret *key = secret_new(4096);
	cr_assert_not_null(key);
	base = vmlck_kb();
	for (int i = 0; i < 256; i++)
		cr_assert_eq(secret_append(key, chunk, sizeof(chunk)), 0);
	cr_expect_geq(vmlck_kb(), base + 512, "a secret of 1 MiB is not locked: %ld -> %ld kB",
	              base, vmlck_kb());
	secret_free(key);
}
