/* address_derive.c - in-process cost of the addresses/ work per key
 * version (issue 16): a derivation (secp256k1 public key, Keccak-256,
 * EIP-55) with and without the address book around it, and the check every
 * key read makes to tell a known version (salted Keccak fingerprint and a
 * lookup).  The same core library as the daemon; throwaway random keys.
 *
 *   address_derive [-n N]
 *
 * Also the heap the book holds per network (mallinfo2 before and after
 * noting N networks).
 *
 * Prints "derive_ns=... note_new_ns=... note_same_ns=... book_bytes_per_network=... keys=N".
 */
#include "address.h"
#include "evm_address.h"
#include "secret.h"

#include <malloc.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* A random key as 0x + 64 hex digits (below n with overwhelming odds; a
 * rare invalid one is simply replaced). */
static struct secret *random_key(void)
{
	static const char digits[] = "0123456789abcdef";
	unsigned char raw[32];
	char text[67];
	char addr[EVM_ADDRESS_TEXT + 1];
	do {
		if (RAND_bytes(raw, sizeof(raw)) != 1)
			return NULL;
		text[0] = '0';
		text[1] = 'x';
		for (int i = 0; i < 32; i++) {
			text[2 + 2 * i] = digits[raw[i] >> 4];
			text[3 + 2 * i] = digits[raw[i] & 15];
		}
		text[66] = 0;
	} while (evm_address_derive((unsigned char *)text, 66, addr) != 0);
	struct secret *s = secret_from(text, 66);
	secret_wipe(raw, sizeof(raw));
	secret_wipe(text, sizeof(text));
	return s;
}

int main(int argc, char **argv)
{
	long n = 2000;
	int opt;
	while ((opt = getopt(argc, argv, "n:")) != -1) {
		if (opt != 'n' || (n = strtol(optarg, NULL, 10)) < 1) {
			fprintf(stderr, "usage: address_derive [-n N]\n");
			return 2;
		}
	}
	struct secret **keys = calloc((size_t)n, sizeof(*keys));
	struct address_book *book = NULL;
	struct netrec_table nets_book;
	netrec_table_init(&nets_book, 0);
	if (!keys || address_book_new(&nets_book, &book) < 0)
		return 1;
	for (long i = 0; i < n; i++)
		if (!(keys[i] = random_key()))
			return 1;

	char addr[EVM_ADDRESS_TEXT + 1];
	double t0 = now_ns();
	for (long i = 0; i < n; i++)
		if (evm_address_derive(keys[i]->data, keys[i]->len, addr) != 0)
			return 1;
	double derive = (now_ns() - t0) / (double)n;

	/* One network, a new key version each time: what a rotation costs. */
	t0 = now_ns();
	for (long i = 0; i < n; i++)
		if (address_book_note(book, "bench", "file", keys[i], (double)i, (double)i) != 0)
			return 1;
	double note_new = (now_ns() - t0) / (double)n;

	/* The same version again: what every key read adds. */
	const struct secret *last = keys[n - 1];
	t0 = now_ns();
	for (long i = 0; i < n; i++)
		if (address_book_note(book, "bench", "file", last, 0, (double)(n + i)) != 0)
			return 1;
	double note_same = (now_ns() - t0) / (double)n;

	/* N networks, one key each: the book's memory per network. */
	struct address_book *wide = NULL;
	size_t heap0 = mallinfo2().uordblks;
	struct netrec_table nets_wide;
	netrec_table_init(&nets_wide, 0);
	if (address_book_new(&nets_wide, &wide) < 0)
		return 1;
	for (long i = 0; i < n; i++) {
		char name[32];
		snprintf(name, sizeof(name), "network-%06ld", i);
		if (address_book_note(wide, name, "vault", keys[i], 0, 0) != 0)
			return 1;
	}
	double per_network = (double)(mallinfo2().uordblks - heap0) / (double)n;
	address_book_free(wide);
	netrec_table_clear(&nets_wide);

	for (long i = 0; i < n; i++)
		secret_free(keys[i]);
	free(keys);
	address_book_free(book);
	netrec_table_clear(&nets_book);
	printf("derive_ns=%.1f note_new_ns=%.1f note_same_ns=%.1f book_bytes_per_network=%.1f "
	       "keys=%ld\n", derive, note_new, note_same, per_network, n);
	return 0;
}
