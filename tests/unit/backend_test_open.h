/* backend_test_open.h - open and start a backend instance as the mount does
 * (backend_open, then backend_start), for the backend unit tests. */
#ifndef OMIKUJI_BACKEND_TEST_OPEN_H
#define OMIKUJI_BACKEND_TEST_OPEN_H

#include "backend.h"
#include "config.h"

static inline int backend_test_open(const struct config_backend *section, struct backend **out,
                                    struct backend_err *err)
{
	int rc = backend_open(section, out, err);
	if (rc == 0 && (rc = backend_start(*out, err)) < 0) {
		(*out)->ops->close(*out);
		*out = NULL;
	}
	return rc;
}

#endif
