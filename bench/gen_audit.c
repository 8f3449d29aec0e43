/* gen_audit.c - write a valid, hash-chained audit log of N lines for the
 * report benchmark, fast (10 M lines in seconds; a script needs minutes).
 *
 *     gen_audit -n LINES [-d DAYS] [-e END_EPOCH] [-s SEED] OUT
 *
 * The bytes and the chain are fs/audit.c's (each line's hash is SHA-256 over
 * the previous hash's 64 hex characters and the line up to its seq; see the
 * comment at the top of audit.c), so `omikuji-keyfs audit verify OUT`
 * accepts the file.  Lines are spread evenly over the DAYS days before END
 * with a realistic mix over 20 networks and 12 callers: 86% reads (60% of
 * all lines cached), 3% denied reads, 4% listings, 4% stores (1% invalid),
 * 3% removes.  Deterministic for a given seed.
 */
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *const networks[] = {
	"ethereum-mainnet", "polygon", "arbitrum", "optimism", "base", "bsc", "avalanche",
	"gnosis", "linea", "scroll", "zksync", "fantom", "celo", "moonbeam", "mantle",
	"blast", "mode", "sepolia", "holesky", "amoy" };
static const struct { int uid; const char *process; } callers[] = {
	{ 1001, "omikuji" }, { 1001, "cast" }, { 1002, "signer" }, { 0, "bash" }, { 0, "cat" },
	{ 0, "omikuji-keyfs" }, { 1003, "python3" }, { 1004, "node" }, { 65534, "cat" },
	{ 1005, "curl" }, { 1006, "go" }, { 1007, "java" } };

static uint64_t rng_state;

static uint64_t rng(void)   /* xorshift64* */
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * UINT64_C(2685821657736338717);
}

int main(int argc, char **argv)
{
	long long n = 1000000;
	int days = 60, c;
	double end = (double)time(NULL);
	rng_state = 1;
	while ((c = getopt(argc, argv, "n:d:e:s:")) != -1) {
		switch (c) {
		case 'n': n = atoll(optarg); break;
		case 'd': days = atoi(optarg); break;
		case 'e': end = atof(optarg); break;
		case 's': rng_state = (uint64_t)atoll(optarg) | 1; break;
		default:
			fprintf(stderr, "usage: gen_audit -n LINES [-d DAYS] [-e END] [-s SEED] OUT\n");
			return 2;
		}
	}
	if (optind + 1 != argc || n < 1 || days < 1) {
		fprintf(stderr, "usage: gen_audit -n LINES [-d DAYS] [-e END] [-s SEED] OUT\n");
		return 2;
	}
	FILE *out = fopen(argv[optind], "w");
	if (!out) {
		perror(argv[optind]);
		return 1;
	}
	setvbuf(out, NULL, _IOFBF, 1 << 20);
	EVP_MD *sha = EVP_MD_fetch(NULL, "SHA256", NULL);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	char prev[65], line[1024], ts[40];
	memset(prev, '0', 64);
	prev[64] = 0;
	double start = end - days * 86400.0, step = (end - start) / (double)n;
	time_t cached_sec = -1;
	char sec_text[24] = "";
	for (long long seq = 1; seq <= n; seq++) {
		double t = start + (double)(seq - 1) * step;
		time_t sec = (time_t)t;
		if (sec != cached_sec) {
			struct tm tm;
			gmtime_r(&sec, &tm);
			strftime(sec_text, sizeof(sec_text), "%Y-%m-%dT%H:%M:%S", &tm);
			cached_sec = sec;
		}
		snprintf(ts, sizeof(ts), "%s.%06dZ", sec_text, (int)((t - (double)sec) * 1e6));
		int who = (int)(rng() % (sizeof(callers) / sizeof(callers[0])));
		const char *net = networks[rng() % (sizeof(networks) / sizeof(networks[0]))];
		double r = (double)(rng() >> 11) / 9007199254740992.0;
		const char *op, *extra = "", *err = "";
		int ok = 1;
		if (r < 0.86) {
			op = "get";
			extra = r < 0.6 ? ",\"cached\":true" : ",\"cached\":false";
		} else if (r < 0.89) {
			op = "get";
			ok = 0;
			extra = ",\"cached\":false";
			err = ",\"error\":\"access denied\"";
		} else if (r < 0.93) {
			op = "list";
			net = "";
		} else if (r < 0.97) {
			op = "store";
			if (r >= 0.96) {
				ok = 0;
				err = ",\"error\":\"invalid key\"";
			}
		} else {
			op = "remove";
		}
		int len = snprintf(line, sizeof(line),
			"{\"timestamp\":\"%s\",\"level\":\"%s\",\"target\":\"omikuji::audit\","
			"\"message\":\"Key storage operation\",\"operation\":\"%s\",\"network\":\"%s\","
			"\"storage_type\":\"vault\",\"status\":%s%s,\"uid\":%d,\"gid\":%d,\"pid\":%d,"
			"\"process\":\"%s\"%s,\"seq\":%lld",
			ts, ok ? "info" : "warn", op, net, ok ? "true" : "false", extra,
			callers[who].uid, callers[who].uid, 1000 + callers[who].uid % 97,
			callers[who].process, err, seq);
		unsigned char dg[32];
		unsigned int dl = 0;
		EVP_DigestInit_ex(md, sha, NULL);
		EVP_DigestUpdate(md, prev, 64);
		EVP_DigestUpdate(md, line, (size_t)len);
		EVP_DigestFinal_ex(md, dg, &dl);
		static const char hex[] = "0123456789abcdef";
		for (int i = 0; i < 32; i++) {
			prev[2 * i] = hex[dg[i] >> 4];
			prev[2 * i + 1] = hex[dg[i] & 15];
		}
		fprintf(out, "%s,\"hash\":\"%s\"}\n", line, prev);
	}
	EVP_MD_CTX_free(md);
	EVP_MD_free(sha);
	if (fclose(out) != 0) {
		perror(argv[optind]);
		return 1;
	}
	return 0;
}
