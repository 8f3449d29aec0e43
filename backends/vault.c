/* vault.c - PLACEHOLDER: being written; answers -ENOSYS. */
#include "backend.h"
#include <errno.h>

static int ph_open(const struct config *cfg, struct backend **out, struct backend_err *err)
{
	(void)cfg; (void)out;
	backend_err_set(err, "vault backend not built yet");
	return -ENOSYS;
}

const struct backend_ops vault_backend_ops = {
	.name = "vault",
	.open = ph_open,
};
