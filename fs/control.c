/* control.c - the mount's control socket and its client, see control.h. */
#include "control.h"
#include "keyops.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* A request: "<op> <network>\n" + a key of at most KEY_MAX_BYTES + 64
 * (import validates what it reads before sending) fits with room to spare;
 * so does a reply with a listing of a few hundred networks. */
#define CONTROL_MSG_MAX (64 * 1024)
#define CONTROL_SERVER_TIMEOUT_SECONDS 5
#define CONTROL_CLIENT_TIMEOUT_SECONDS 120

struct control {
	struct mount_state *k;
	int listen_fd;
	int stop_pipe[2];
	pthread_t thread;
};

static const char *const control_op_names[KEY_OP_COUNT] = {
	"get", "store", "remove", "list", "address",
};

/* The abstract address of the audit log at audit_path. */
static int control_address(const char *audit_path, struct sockaddr_un *sa, socklen_t *len)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	char *real = realpath(audit_path, NULL);
	if (!real)
		return -errno;
	int ok = EVP_Digest(real, strlen(real), digest, &n, EVP_sha256(), NULL);
	free(real);
	if (ok != 1)
		return -EIO;
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	char *p = sa->sun_path;
	*p++ = 0;   /* abstract namespace */
	p += sprintf(p, "omikuji-keyfs/");
	for (unsigned i = 0; i < 16; i++) {
		*p++ = hex[digest[i] >> 4];
		*p++ = hex[digest[i] & 0xf];
	}
	*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + (size_t)(p - sa->sun_path));
	return 0;
}

static void control_timeout(int fd, int seconds)
{
	struct timeval tv = { seconds, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* Receive one message into a new secret.  0 or -errno. */
static int control_recv(int fd, struct secret **out)
{
	struct secret *s = secret_new(CONTROL_MSG_MAX);
	if (!s)
		return -ENOMEM;
	ssize_t n;
	do {
		n = recv(fd, s->data, CONTROL_MSG_MAX, MSG_TRUNC);
	} while (n < 0 && errno == EINTR);
	if (n < 0 || n > CONTROL_MSG_MAX) {
		int e = n < 0 ? errno : EMSGSIZE;
		secret_free(s);
		return -e;
	}
	s->len = (size_t)n;
	s->data[s->len] = 0;
	*out = s;
	return 0;
}

static int control_send(int fd, const struct secret *msg)
{
	ssize_t n;
	do {
		n = send(fd, msg->data, msg->len, MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return (size_t)n == msg->len ? 0 : -EIO;
}

/* --- server -------------------------------------------------------------- */

static int control_reply(int fd, int rc, const void *payload, size_t len)
{
	char head[16];
	int hlen = snprintf(head, sizeof(head), "%d\n", rc < 0 ? -rc : 0);
	struct secret *msg = secret_new((size_t)hlen + len);
	if (!msg)
		return -ENOMEM;
	secret_append(msg, head, (size_t)hlen);
	if (len)
		secret_append(msg, payload, len);
	rc = control_send(fd, msg);
	secret_free(msg);
	return rc;
}

/* Run one request from the peer on fd. */
static void control_serve(struct control *ctl, int fd)
{
	struct ucred cred;
	socklen_t clen = sizeof(cred);
	struct secret *req = NULL;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0)
		return;
	control_timeout(fd, CONTROL_SERVER_TIMEOUT_SECONDS);
	if (control_recv(fd, &req) < 0)
		return;

	char *nl = memchr(req->data, '\n', req->len);
	char *space = nl ? memchr(req->data, ' ', (size_t)(nl - (char *)req->data)) : NULL;
	int op = -1;
	if (space) {
		*space = 0;
		*nl = 0;
		for (int i = 0; i < KEY_OP_COUNT; i++)
			if (strcmp((char *)req->data, control_op_names[i]) == 0)
				op = i;
	}
	const char *network = space ? space + 1 : "";
	/* Optional words after the network: "@<instance>" names the instance
	 * (else the network's route), "refresh" bypasses the cache of a get. */
	struct instance *in = NULL;
	bool refresh = false, bad = false;
	char *word = space ? strchr(space + 1, ' ') : NULL;
	while (word && !bad) {
		*word++ = 0;
		char *next = strchr(word, ' ');
		if (next)
			*next = 0;
		if (word[0] == '@') {
			if (!(in = mount_state_instance(ctl->k, word + 1))) {
				char why[128];
				int n = snprintf(why, sizeof(why), "no backend instance named '%.64s'", word + 1);
				control_reply(fd, -ENOENT, why, (size_t)n);
				secret_free(req);
				return;
			}
		} else if (strcmp(word, "refresh") == 0) {
			refresh = true;
		} else {
			bad = true;
		}
		if (next)
			*next = ' ';
		word = next;
	}
	if (bad || op < 0 || (op != KEY_OP_LIST && !network_name_valid(network)) ||
	    (in && op == KEY_OP_ADDRESS)) {
		control_reply(fd, -EINVAL, "bad request", 11);
		secret_free(req);
		return;
	}
	struct caller c;
	mount_state_caller_from_peer(ctl->k, cred.uid, cred.gid, cred.pid, &c);
	const unsigned char *payload = (unsigned char *)nl + 1;
	size_t payload_len = req->len - (size_t)(payload - req->data);
	struct secret *key = NULL;
	struct strlist names = STRLIST_INIT;
	struct strbuf text = STRBUF_INIT;
	int rc;
	switch (op) {
	case KEY_OP_GET:
		rc = in ? keyops_get_in(ctl->k, &c, in, network, refresh, &key)
		        : keyops_get(ctl->k, &c, network, refresh, &key);
		break;
	case KEY_OP_STORE:
		key = secret_from(payload, payload_len);
		rc = !key ? -ENOMEM : in ? keyops_store_in(ctl->k, &c, in, network, key)
		                         : keyops_store(ctl->k, &c, network, key);
		secret_free(key);
		key = NULL;
		if (rc == 0)
			strbuf_printf(&text, "%s", keyops_last_store());
		break;
	case KEY_OP_REMOVE:
		rc = in ? keyops_remove_in(ctl->k, &c, in, network) : keyops_remove(ctl->k, &c, network);
		break;
	case KEY_OP_ADDRESS: {
		char address[EVM_ADDRESS_TEXT + 1];
		rc = keyops_address(ctl->k, &c, network, address);
		if (rc == 0)
			strbuf_puts(&text, address);
		break;
	}
	default:
		rc = in ? keyops_list_in(ctl->k, &c, in, &names) : keyops_list(ctl->k, &c, &names);
		for (size_t i = 0; rc == 0 && i < names.n; i++)
			strbuf_printf(&text, "%s\n", names.items[i]);
		if (text.error)
			rc = -ENOMEM;
		break;
	}
	if (rc < 0) {
		const char *why = keyops_last_error();
		control_reply(fd, rc, why, strlen(why));
	} else if (key) {
		control_reply(fd, 0, key->data, key->len);
	} else {
		control_reply(fd, 0, text.buf, text.len);
	}
	secret_free(key);
	strlist_clear(&names);
	strbuf_reset(&text);
	secret_free(req);
}

static void *control_main(void *arg)
{
	struct control *ctl = arg;
	for (;;) {
		struct pollfd p[2] = {
			{ .fd = ctl->listen_fd, .events = POLLIN },
			{ .fd = ctl->stop_pipe[0], .events = POLLIN },
		};
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents)
			break;
		int fd = accept4(ctl->listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		control_serve(ctl, fd);
		close(fd);
	}
	return NULL;
}

int control_start(struct mount_state *k, struct control **out, char *err, size_t errlen)
{
	struct sockaddr_un sa;
	socklen_t len;
	*out = NULL;
	int rc = control_address(k->cfg->keyfs.audit_log, &sa, &len);
	if (rc < 0) {
		snprintf(err, errlen, "control socket: %s: %s", k->cfg->keyfs.audit_log, strerror(-rc));
		return rc;
	}
	struct control *ctl = calloc(1, sizeof(*ctl));
	if (!ctl)
		return -ENOMEM;
	ctl->k = k;
	ctl->stop_pipe[0] = ctl->stop_pipe[1] = -1;
	ctl->listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (ctl->listen_fd < 0 || bind(ctl->listen_fd, (struct sockaddr *)&sa, len) < 0 ||
	    listen(ctl->listen_fd, 16) < 0 || pipe2(ctl->stop_pipe, O_CLOEXEC) < 0) {
		rc = -errno;
		snprintf(err, errlen, "control socket for %s: %s", k->cfg->keyfs.audit_log,
		         rc == -EADDRINUSE ? "the name is taken by another process" : strerror(-rc));
		goto fail;
	}
	rc = -pthread_create(&ctl->thread, NULL, control_main, ctl);
	if (rc < 0) {
		snprintf(err, errlen, "control socket thread: %s", strerror(-rc));
		goto fail;
	}
	*out = ctl;
	return 0;
fail:
	if (ctl->listen_fd >= 0)
		close(ctl->listen_fd);
	if (ctl->stop_pipe[0] >= 0) {
		close(ctl->stop_pipe[0]);
		close(ctl->stop_pipe[1]);
	}
	free(ctl);
	return rc;
}

void control_stop(struct control *ctl)
{
	if (!ctl)
		return;
	char c = 1;
	ssize_t n = write(ctl->stop_pipe[1], &c, 1);
	(void)n;
	pthread_join(ctl->thread, NULL);
	close(ctl->listen_fd);
	close(ctl->stop_pipe[0]);
	close(ctl->stop_pipe[1]);
	free(ctl);
}

/* --- client -------------------------------------------------------------- */

/* Connect to the control socket of audit_path and check that its server is
 * holder.  The fd, or -errno with one line in err. */
static int control_connect(const char *audit_path, pid_t holder, char *err, size_t errlen)
{
	struct sockaddr_un sa;
	socklen_t len;
	int rc = control_address(audit_path, &sa, &len);
	if (rc < 0) {
		snprintf(err, errlen, "control socket of %s: %s", audit_path, strerror(-rc));
		return rc;
	}
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, len) < 0) {
		rc = -errno;
		snprintf(err, errlen, "the mount (pid %d) that writes %s does not answer on its "
		         "control socket: %s", (int)holder, audit_path, strerror(-rc));
		if (fd >= 0)
			close(fd);
		return rc;
	}
	struct ucred cred;
	socklen_t clen = sizeof(cred);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0 || cred.pid != holder) {
		snprintf(err, errlen, "the control socket of %s is not served by the mount that "
		         "holds its lock (pid %d): refusing to talk to it", audit_path, (int)holder);
		close(fd);
		return -EPERM;
	}
	return fd;
}

int control_probe(const char *audit_path, pid_t holder)
{
	char err[256];
	int fd = control_connect(audit_path, holder, err, sizeof(err));
	if (fd < 0)
		return fd;
	close(fd);   /* the server reads EOF and moves on */
	return 0;
}

int control_call(const char *audit_path, pid_t holder, const struct control_request *req,
                 int *status, struct secret **reply, char *err, size_t errlen)
{
	enum key_op op = req->op;
	const char *network = req->network;
	const struct secret *key = req->key;
	struct secret *msg = NULL, *answer = NULL;
	int rc;
	*reply = NULL;
	int fd = control_connect(audit_path, holder, err, errlen);
	if (fd < 0)
		return fd;
	control_timeout(fd, CONTROL_CLIENT_TIMEOUT_SECONDS);
	char head[160];
	int hlen = snprintf(head, sizeof(head), "%s %s%s%s%s\n", control_op_names[op],
	                    op == KEY_OP_LIST ? "-" : network, req->instance ? " @" : "",
	                    req->instance ? req->instance : "", req->refresh ? " refresh" : "");
	msg = secret_new((size_t)hlen + (key ? key->len : 0));
	if (!msg) {
		rc = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	secret_append(msg, head, (size_t)hlen);
	if (key)
		secret_append(msg, key->data, key->len);
	rc = control_send(fd, msg);
	if (rc == 0)
		rc = control_recv(fd, &answer);
	if (rc < 0) {
		snprintf(err, errlen, "the mount (pid %d) did not answer: %s", (int)holder,
		         strerror(-rc));
		goto out;
	}
	char *nl = memchr(answer->data, '\n', answer->len);
	if (!nl) {
		rc = -EPROTO;
		snprintf(err, errlen, "the mount (pid %d) sent a malformed answer", (int)holder);
		goto out;
	}
	*status = -atoi((char *)answer->data);
	size_t off = (size_t)(nl + 1 - (char *)answer->data);
	*reply = secret_from(answer->data + off, answer->len - off);
	rc = *reply ? 0 : -ENOMEM;
out:
	if (fd >= 0)
		close(fd);
	secret_free(msg);
	secret_free(answer);
	return rc;
}
