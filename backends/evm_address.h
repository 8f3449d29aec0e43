/* evm_address.h - the EVM account address a private key controls (contract
 * section 12): secp256k1 public key of the key (Debian's libsecp256k1,
 * bitcoin-core's), Keccak-256 of its 64-byte uncompressed form, last 20
 * bytes, written with the EIP-55 mixed-case checksum.
 */
#ifndef OMIKUJI_EVM_ADDRESS_H
#define OMIKUJI_EVM_ADDRESS_H

#include <stddef.h>
#include <stdint.h>

#define EVM_ADDRESS_BYTES 20
#define EVM_ADDRESS_TEXT 42          /* "0x" + 40 hex digits */

/* Derive the checksummed address of the key text at key (as stored: 64 hex
 * digits with an optional 0x, surrounding whitespace ignored) into out
 * (EVM_ADDRESS_TEXT characters and a NUL).  The scalar and every
 * intermediate are wiped before returning.  Thread-safe.
 * 0, -EINVAL when key is not a valid secp256k1 key, -ENOMEM. */
int evm_address_derive(const unsigned char *key, size_t len, char out[EVM_ADDRESS_TEXT + 1]);

/* The same, as the 20 address bytes (no checksum text). */
int evm_address_derive_raw(const unsigned char *key, size_t len, uint8_t out[EVM_ADDRESS_BYTES]);

/* EIP-55: the 20 address bytes as "0x" + 40 hex digits, a letter upper-case
 * when the matching nibble of keccak256(lower-case hex) is >= 8. */
void evm_address_checksum(const uint8_t addr[EVM_ADDRESS_BYTES], char out[EVM_ADDRESS_TEXT + 1]);

#endif
