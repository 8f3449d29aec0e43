/* keccak.h - Keccak-256 as Ethereum uses it (the original Keccak padding,
 * 0x01 ... 0x80, not FIPS 202 SHA3-256's 0x06 ... 0x80).
 *
 * Why not a library call: OpenSSL 3.0 (Debian 12) has SHA3-256 but no
 * "KECCAK-256" digest (EVP_MD_fetch(NULL, "KECCAK-256", NULL) returns NULL;
 * it arrives in OpenSSL 3.2), and libgcrypt 1.10 exposes only the SHA3 and
 * SHAKE paddings.  Nettle 3.8 exports the Keccak-f[1600] permutation itself
 * (sha3_permute, with the state layout its header documents), so the
 * permutation - the part that is hard to get right and worth optimising -
 * comes from that well-kept library and only the sponge (absorb at rate
 * 136 bytes, pad, squeeze 32 bytes) is ours.  Tested with the standard
 * vectors (empty, "abc", multi-block, every length around the rate
 * boundary) in tests/unit/test_address.c.
 */
#ifndef OMIKUJI_KECCAK_H
#define OMIKUJI_KECCAK_H

#include <stddef.h>
#include <stdint.h>

#define KECCAK256_DIGEST_SIZE 32
#define KECCAK256_RATE 136

struct keccak256 {
	uint64_t lanes[25];            /* the sponge state, lane x + 5y */
	size_t used;                   /* bytes absorbed into the current block */
};

void keccak256_init(struct keccak256 *ctx);
void keccak256_update(struct keccak256 *ctx, const void *data, size_t len);
/* Write the digest and wipe ctx (it may have absorbed secrets). */
void keccak256_final(struct keccak256 *ctx, uint8_t out[KECCAK256_DIGEST_SIZE]);
/* One-shot. */
void keccak256(const void *data, size_t len, uint8_t out[KECCAK256_DIGEST_SIZE]);

#endif
