/* test_log.c - the application log: formats, levels, file targets, reopen. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "config.h"
#include "log.h"

static char dir[64];
static char path[128];

static void setup(void)
{
	strcpy(dir, "/tmp/keyfs-log-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/app.log", dir);
}

static void teardown(void)
{
	log_shutdown();
	char moved[160];
	snprintf(moved, sizeof(moved), "%s.1", path);
	unlink(moved);
	unlink(path);
	rmdir(dir);
}

static void configure(enum log_format fmt, const char *level)
{
	struct config_log_target t = { "file", path };
	struct config_logging cfg = { fmt, (char *)level, &t, 1 };
	char err[256] = "";
	cr_assert_eq(log_configure(&cfg, err, sizeof(err)), 0, "%s", err);
}

static char *slurp(const char *p)
{
	FILE *f = fopen(p, "r");
	cr_assert_not_null(f);
	static char buf[65536];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = 0;
	fclose(f);
	return buf;
}

TestSuite(log, .init = setup, .fini = teardown);

Test(log, json_lines_with_fields_and_escaping)
{
	configure(LOG_FORMAT_JSON, "info");
	log_kv(LOG_LEVEL_WARN, "backend call failed", "backend", "vault",
	       "error", "quote \" and\nnewline", (char *)NULL);
	log_msg(LOG_LEVEL_INFO, "mounted %d keys", 3);
	char *text = slurp(path);
	char *second = strchr(text, '\n');
	cr_assert_not_null(second);
	*second++ = 0;
	json_error_t e;
	json_t *j = json_loads(text, 0, &e);
	cr_assert_not_null(j, "line 1 is not JSON: %s", e.text);
	cr_expect_str_eq(json_string_value(json_object_get(j, "level")), "warn");
	cr_expect_str_eq(json_string_value(json_object_get(j, "message")), "backend call failed");
	cr_expect_str_eq(json_string_value(json_object_get(j, "backend")), "vault");
	cr_expect_str_eq(json_string_value(json_object_get(j, "error")), "quote \" and\nnewline");
	cr_expect_not_null(json_object_get(j, "timestamp"));
	json_decref(j);
	j = json_loads(second, JSON_DISABLE_EOF_CHECK, &e);
	cr_assert_not_null(j, "line 2 is not JSON: %s", e.text);
	cr_expect_str_eq(json_string_value(json_object_get(j, "message")), "mounted 3 keys");
	json_decref(j);
}

Test(log, level_filters)
{
	configure(LOG_FORMAT_TEXT, "warn");
	cr_expect_not(log_enabled(LOG_LEVEL_INFO));
	cr_expect(log_enabled(LOG_LEVEL_ERROR));
	log_kv(LOG_LEVEL_INFO, "hidden", (char *)NULL);
	log_kv(LOG_LEVEL_DEBUG, "hidden too", (char *)NULL);
	log_kv(LOG_LEVEL_ERROR, "shown", "k", "v", (char *)NULL);
	char *text = slurp(path);
	cr_expect_null(strstr(text, "hidden"));
	cr_expect_not_null(strstr(text, "error shown k=v"));
	cr_expect_eq(strchr(text, '\n') - text + 1, (long)strlen(text), "exactly one line");
}

Test(log, reopen_after_rotation)
{
	configure(LOG_FORMAT_TEXT, "info");
	log_kv(LOG_LEVEL_INFO, "before", (char *)NULL);
	char moved[160];
	snprintf(moved, sizeof(moved), "%s.1", path);
	cr_assert_eq(rename(path, moved), 0);
	log_reopen();
	log_kv(LOG_LEVEL_INFO, "after", (char *)NULL);
	cr_expect_not_null(strstr(slurp(moved), "before"));
	char *now = slurp(path);
	cr_expect_not_null(strstr(now, "after"));
	cr_expect_null(strstr(now, "before"));
}

Test(log, bad_config_is_an_error)
{
	char err[256] = "";
	struct config_log_target t = { "file", "/proc/version/x/app.log" };
	struct config_logging cfg = { LOG_FORMAT_TEXT, "info", &t, 1 };
	cr_expect_lt(log_configure(&cfg, err, sizeof(err)), 0);
	cr_expect_not_null(strstr(err, "/proc/version/x/app.log"));
	struct config_logging bad_level = { LOG_FORMAT_TEXT, "loud", NULL, 0 };
	cr_expect_lt(log_configure(&bad_level, err, sizeof(err)), 0);
	cr_expect_not_null(strstr(err, "loud"));
}
