/* keccak.c - the Keccak-256 sponge around nettle's Keccak-f[1600] (see
 * keccak.h for why).  Bytes enter the state little-endian within each
 * 64-bit lane, as the Keccak reference and nettle's own SHA3 do. */
#include "keccak.h"
#include "secret.h"

#include <nettle/sha3.h>
#include <string.h>

_Static_assert(sizeof(((struct keccak256 *)0)->lanes) == sizeof(struct sha3_state),
               "our state is nettle's");

void keccak256_init(struct keccak256 *ctx)
{
	memset(ctx, 0, sizeof(*ctx));
}

static void permute(struct keccak256 *ctx)
{
	struct sha3_state st;
	memcpy(st.a, ctx->lanes, sizeof(st.a));
	sha3_permute(&st);
	memcpy(ctx->lanes, st.a, sizeof(st.a));
	secret_wipe(&st, sizeof(st));
}

static void xor_byte(struct keccak256 *ctx, size_t pos, uint8_t b)
{
	ctx->lanes[pos / 8] ^= (uint64_t)b << (8 * (pos % 8));
}

void keccak256_update(struct keccak256 *ctx, const void *data, size_t len)
{
	const uint8_t *p = data;
	while (len > 0) {
		/* Whole lanes when aligned: the common case for 64-byte inputs. */
		if (ctx->used % 8 == 0 && len >= 8 && ctx->used + 8 <= KECCAK256_RATE) {
			uint64_t w = 0;
			for (int i = 7; i >= 0; i--)
				w = (w << 8) | p[i];
			ctx->lanes[ctx->used / 8] ^= w;
			ctx->used += 8;
			p += 8;
			len -= 8;
		} else {
			xor_byte(ctx, ctx->used++, *p++);
			len--;
		}
		if (ctx->used == KECCAK256_RATE) {
			permute(ctx);
			ctx->used = 0;
		}
	}
}

void keccak256_final(struct keccak256 *ctx, uint8_t out[KECCAK256_DIGEST_SIZE])
{
	/* Keccak's multi-rate padding pad10*1 with the domain bits of the
	 * original submission: first byte 0x01, last byte of the block 0x80
	 * (one byte 0x81 when they coincide). */
	xor_byte(ctx, ctx->used, 0x01);
	xor_byte(ctx, KECCAK256_RATE - 1, 0x80);
	permute(ctx);
	for (size_t i = 0; i < KECCAK256_DIGEST_SIZE; i++)
		out[i] = (uint8_t)(ctx->lanes[i / 8] >> (8 * (i % 8)));
	secret_wipe(ctx, sizeof(*ctx));
}

void keccak256(const void *data, size_t len, uint8_t out[KECCAK256_DIGEST_SIZE])
{
	struct keccak256 ctx;
	keccak256_init(&ctx);
	keccak256_update(&ctx, data, len);
	keccak256_final(&ctx, out);
}
