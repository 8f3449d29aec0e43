/* keyring_internal.h - the pure pieces of the keyring (Secret Service)
 * backend, exposed so that unit tests check them without a bus.  Not an
 * interface for other modules: the fs layer only sees keyring_backend_ops.
 *
 * The item layout is Omikuji's: keyring-rs v3 (the version Omikuji's
 * Cargo.lock pins, 3.6.2) on Linux's Secret Service writes one item per
 * (service, user) in the default collection with the attributes
 *   service=<service> username=<network> target=default application=rust-keyring
 * and the label "<network>@<service>:default (keyring v3.6.2)".
 */
#ifndef OMIKUJI_KEYRING_INTERNAL_H
#define OMIKUJI_KEYRING_INTERNAL_H

#include <stddef.h>

/* The keyring-rs version whose label a store writes. */
#define KEYRING_RS_VERSION "3.6.2"

/* The label keyring-rs gives the item of (service, network) with the default
 * target.  0, or -ENAMETOOLONG when it does not fit. */
int keyring_item_label(const char *service, const char *network, char *out, size_t outlen);

/* The session bus to use: env_address ($DBUS_SESSION_BUS_ADDRESS) when set
 * and not empty, else "unix:path=<runtime_dir>/bus" when that is a socket
 * ($XDG_RUNTIME_DIR/bus, what systemd --user provides).  Never GLib's X11
 * autolaunch.  0, or -ENOENT with no bus (out is then ""), -ENAMETOOLONG. */
int keyring_bus_address(const char *env_address, const char *runtime_dir, char *out,
                        size_t outlen);

#endif
