/* test_keyring.c - the pure pieces of the keyring backend: the item label
 * keyring-rs writes and the choice of session bus.  The backend itself is
 * tested against a real gnome-keyring-daemon in
 * integration/test_keyring_mount.py. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include "keyring_internal.h"

Test(keyring, label_is_keyring_rs_3_6)
{
	char buf[128];
	cr_assert_eq(keyring_item_label("omikuji", "ethereum-mainnet", buf, sizeof(buf)), 0);
	cr_expect_str_eq(buf, "ethereum-mainnet@omikuji:default (keyring v3.6.2)");
	cr_expect_eq(keyring_item_label("omikuji", "ethereum-mainnet", buf, 20), -ENAMETOOLONG);
}

Test(keyring, bus_from_environment_first)
{
	char buf[256];
	cr_assert_eq(keyring_bus_address("unix:path=/x/bus,guid=1", "/nonexistent", buf, sizeof(buf)), 0);
	cr_expect_str_eq(buf, "unix:path=/x/bus,guid=1");
}

Test(keyring, no_bus_without_socket)
{
	char buf[256] = "junk";
	cr_expect_eq(keyring_bus_address(NULL, NULL, buf, sizeof(buf)), -ENOENT);
	cr_expect_str_eq(buf, "");
	cr_expect_eq(keyring_bus_address("", "/nonexistent-dir", buf, sizeof(buf)), -ENOENT);
	cr_expect_eq(keyring_bus_address(NULL, "relative", buf, sizeof(buf)), -ENOENT);
	/* a regular file called bus is not a bus */
	char dir[] = "/tmp/keyring-test-XXXXXX";
	cr_assert_not_null(mkdtemp(dir));
	char path[300];
	snprintf(path, sizeof(path), "%s/bus", dir);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	fclose(f);
	cr_expect_eq(keyring_bus_address(NULL, dir, buf, sizeof(buf)), -ENOENT);
	unlink(path);
	rmdir(dir);
}

Test(keyring, runtime_dir_socket_escaped)
{
	char dir[] = "/tmp/keyring test,=XXXXXX";
	cr_assert_not_null(mkdtemp(dir));
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/bus", dir);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	cr_assert(fd >= 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	char buf[256], want[256];
	cr_assert_eq(keyring_bus_address(NULL, dir, buf, sizeof(buf)), 0);
	snprintf(want, sizeof(want), "unix:path=/tmp/keyring%%20test%%2c%%3d%s/bus",
	         dir + strlen("/tmp/keyring test,="));
	cr_expect_str_eq(buf, want);
	cr_expect_eq(keyring_bus_address(NULL, dir, buf, 20), -ENAMETOOLONG);
	close(fd);
	unlink(sa.sun_path);
	rmdir(dir);
}
