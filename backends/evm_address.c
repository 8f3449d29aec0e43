/* evm_address.c - key -> EVM address (see evm_address.h).
 *
 * One libsecp256k1 context for the process, created on first use and
 * randomised (blinding against timing and power side channels, as the
 * library recommends for secret-key operations); secp256k1_ec_pubkey_create
 * only reads it, so concurrent FUSE threads share it without a lock. */
#include "evm_address.h"

#include "keccak.h"
#include "keyformat.h"
#include "secret.h"

#include <errno.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <secp256k1.h>
#include <string.h>

static secp256k1_context *ctx;
static pthread_once_t ctx_once = PTHREAD_ONCE_INIT;

static void ctx_create(void)
{
	unsigned char seed[32];
	secp256k1_context *c = secp256k1_context_create(SECP256K1_CONTEXT_NONE);
	if (!c)
		return;
	if (RAND_bytes(seed, sizeof(seed)) == 1 && !secp256k1_context_randomize(c, seed)) {
		secp256k1_context_destroy(c);
		c = NULL;
	}
	secret_wipe(seed, sizeof(seed));
	ctx = c;
}

static int hex_value(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return c - 'A' + 10;   /* keyformat_validate let only hex digits through */
}

void evm_address_checksum(const uint8_t addr[EVM_ADDRESS_BYTES], char out[EVM_ADDRESS_TEXT + 1])
{
	static const char digits[] = "0123456789abcdef";
	char lower[2 * EVM_ADDRESS_BYTES];
	uint8_t hash[KECCAK256_DIGEST_SIZE];
	for (size_t i = 0; i < EVM_ADDRESS_BYTES; i++) {
		lower[2 * i] = digits[addr[i] >> 4];
		lower[2 * i + 1] = digits[addr[i] & 15];
	}
	keccak256(lower, sizeof(lower), hash);
	out[0] = '0';
	out[1] = 'x';
	for (size_t i = 0; i < sizeof(lower); i++) {
		unsigned nibble = i % 2 ? hash[i / 2] & 15u : hash[i / 2] >> 4;
		char ch = lower[i];
		out[2 + i] = ch >= 'a' && nibble >= 8 ? (char)(ch - 'a' + 'A') : ch;
	}
	out[EVM_ADDRESS_TEXT] = 0;
}

int evm_address_derive_raw(const unsigned char *key, size_t len, uint8_t out[EVM_ADDRESS_BYTES])
{
	size_t start = 0, n = 0;
	if (keyformat_validate(KEY_FORMAT_EVM, key, len, &start, &n, NULL) < 0)
		return -EINVAL;
	pthread_once(&ctx_once, ctx_create);
	if (!ctx)
		return -ENOMEM;

	const unsigned char *hex = key + start + (n == 66 ? 2 : 0);
	unsigned char scalar[32];
	secp256k1_pubkey pub;
	unsigned char point[65];
	size_t point_len = sizeof(point);
	uint8_t hash[KECCAK256_DIGEST_SIZE];
	int rc = 0;

	for (size_t i = 0; i < sizeof(scalar); i++)
		scalar[i] = (unsigned char)(hex_value(hex[2 * i]) << 4 | hex_value(hex[2 * i + 1]));
	if (!secp256k1_ec_pubkey_create(ctx, &pub, scalar) ||
	    !secp256k1_ec_pubkey_serialize(ctx, point, &point_len, &pub,
	                                   SECP256K1_EC_UNCOMPRESSED) || point_len != 65) {
		rc = -EINVAL;
		goto out;
	}
	/* point[0] is the 0x04 tag of the uncompressed encoding: X || Y follow. */
	keccak256(point + 1, 64, hash);
	memcpy(out, hash + KECCAK256_DIGEST_SIZE - EVM_ADDRESS_BYTES, EVM_ADDRESS_BYTES);
out:
	secret_wipe(scalar, sizeof(scalar));
	secret_wipe(&pub, sizeof(pub));
	secret_wipe(point, sizeof(point));
	secret_wipe(hash, sizeof(hash));
	return rc;
}

int evm_address_derive(const unsigned char *key, size_t len, char out[EVM_ADDRESS_TEXT + 1])
{
	uint8_t raw[EVM_ADDRESS_BYTES];
	int rc = evm_address_derive_raw(key, len, raw);
	if (rc == 0)
		evm_address_checksum(raw, out);
	return rc;
}
