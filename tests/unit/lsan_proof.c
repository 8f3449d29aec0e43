/* lsan_proof.c - proves LeakSanitizer runs in the sanitizer build (issue 9):
 * it hardens the process exactly as the daemon does, then leaks 4242 bytes
 * on purpose.  tests/unit/lsan_proof.py expects LeakSanitizer to report
 * them; built only with -Db_sanitize=address. */
#include <stdlib.h>
#include <string.h>
#include "daemon.h"

void *volatile lsan_proof_sink;

int main(void)
{
	daemon_harden();
	lsan_proof_sink = malloc(4242);
	memset(lsan_proof_sink, 0x42, 4242);
	lsan_proof_sink = NULL;   /* the only reference is gone: a leak */
	return 0;
}
