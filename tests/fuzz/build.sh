#!/bin/sh
# Build the libFuzzer harness with clang (ASan + UBSan + libFuzzer):
#   tests/fuzz/build.sh && tests/fuzz/fuzz_parsers -max_total_time=300 tests/fuzz/corpus
set -eu
here=$(cd "$(dirname "$0")" && pwd)
top=$here/../..
cd "$top"
flags="-g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -DFUSE_USE_VERSION=312 -DKEYFS_VERSION=\"fuzz\""
inc="-Iutil -Ibackends -Ifs -Imount $(pkg-config --cflags fuse3 libcurl jansson libcrypto libssl yaml-0.1 libsecret-1)"
libs="$(pkg-config --libs libcurl jansson libcrypto libssl yaml-0.1 libsecret-1 nettle libsecp256k1) -lpthread"
# shellcheck disable=SC2086
clang $flags $inc -o "$here/fuzz_parsers" "$here/fuzz_parsers.c" \
	util/*.c backends/backend.c backends/keyformat.c backends/vault.c backends/http.c \
	backends/aws.c backends/aws_credentials.c backends/aws_sigv4.c backends/keyring.c \
	backends/file.c backends/env.c mount/config.c mount/yamltree.c fs/audit.c fs/metrics.c fs/netrec.c $libs
echo "built $here/fuzz_parsers"
