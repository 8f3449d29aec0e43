/* metrics.c - PLACEHOLDER: no-op registry until the real one lands. */
#include "metrics.h"
#include <string.h>

const char *key_op_name(enum key_op op)
{
	static const char *names[] = { "get", "store", "remove", "list" };
	return op < KEY_OP_COUNT ? names[op] : "unknown";
}
int metrics_backend_index(const char *name)
{
	static const char *names[] = { "file", "env", "keyring", "vault", "aws" };
	for (int i = 0; i < METRICS_BACKEND_COUNT; i++)
		if (strcmp(names[i], name) == 0)
			return i;
	return -1;
}
void metrics_init(void) {}
void metrics_set_configured(enum metrics_backend b, bool remote) { (void)b; (void)remote; }
void metrics_observe_op(enum metrics_backend b, enum key_op op, bool success, double seconds) { (void)b; (void)op; (void)success; (void)seconds; }
void metrics_cache_hit(enum metrics_backend b) { (void)b; }
void metrics_cache_stale_hit(enum metrics_backend b) { (void)b; }
void metrics_cache_miss(enum metrics_backend b) { (void)b; }
void metrics_cache_size(enum metrics_backend b, long entries) { (void)b; (void)entries; }
void metrics_backend_up(enum metrics_backend b, bool up) { (void)b; (void)up; }
void metrics_auth_failure(enum metrics_backend b) { (void)b; }
void metrics_access_denied(enum key_op op) { (void)op; }
void metrics_anomaly(const char *kind) { (void)kind; }
void metrics_audit_write_error(void) {}
void metrics_last_refresh(const char *network, double wall_seconds) { (void)network; (void)wall_seconds; }
int metrics_render(struct strbuf *out) { return strbuf_puts(out, "# placeholder\n"); }
