/* keyringget.c - the baseline of the keyring benchmark: N lookups of one
 * item with libsecret's simple API (secret_password_lookup_sync, attributes
 * service and username), in process, after one warm-up lookup that opens the
 * session.  What a program that links libsecret pays per read.
 *
 *   keyringget -n N -s SERVICE -u USERNAME
 *
 * Prints "ops=N ns_per_op=..."; exit 1 when a lookup fails or finds nothing.
 * The value is never printed, and wiped (secret_password_free).
 */
#include <libsecret/secret.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static const SecretSchema schema = {
	"org.omikuji.keyfs.bench", SECRET_SCHEMA_DONT_MATCH_NAME,
	{ { "service", SECRET_SCHEMA_ATTRIBUTE_STRING },
	  { "username", SECRET_SCHEMA_ATTRIBUTE_STRING },
	  { NULL, 0 } },
	0, NULL, NULL, NULL, NULL, NULL, NULL, NULL
};

static int lookup(const char *service, const char *user)
{
	GError *e = NULL;
	gchar *v = secret_password_lookup_sync(&schema, NULL, &e, "service", service,
	                                       "username", user, NULL);
	if (!v) {
		fprintf(stderr, "keyringget: %s\n", e ? e->message : "not found");
		if (e)
			g_error_free(e);
		return -1;
	}
	secret_password_free(v);
	return 0;
}

int main(int argc, char **argv)
{
	long n = 1000;
	const char *service = "omikuji", *user = NULL;
	int c;
	while ((c = getopt(argc, argv, "n:s:u:")) != -1) {
		switch (c) {
		case 'n': n = atol(optarg); break;
		case 's': service = optarg; break;
		case 'u': user = optarg; break;
		default: return 2;
		}
	}
	if (!user || n < 1) {
		fprintf(stderr, "usage: keyringget -n N -s SERVICE -u USERNAME\n");
		return 2;
	}
	if (lookup(service, user))
		return 1;
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (long i = 0; i < n; i++)
		if (lookup(service, user))
			return 1;
	clock_gettime(CLOCK_MONOTONIC, &b);
	double ns = (double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec);
	printf("ops=%ld ns_per_op=%.0f\n", n, ns / (double)n);
	return 0;
}
