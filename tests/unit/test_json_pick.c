/* test_json_pick.c - the single-pass JSON reader of the backends' answers:
 * picked values and their types, escapes (\u with surrogate pairs), the
 * last-wins rule for repeated member names, the strings that go straight
 * into a locked secret, cut buffers, and accept/reject agreeing with
 * jansson (the oracle) on valid and malformed documents. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "json_pick.h"

static const char *const P_ROOT[] = { NULL };
static const char *const P_KEY[] = { "data", "data", "private_key", NULL };
static const char *const P_INNER[] = { "data", "data", NULL };
static const char *const P_CREATED[] = { "data", "metadata", "created_time", NULL };
static const char *const P_VERSION[] = { "data", "metadata", "version", NULL };

static int pick(const char *text, struct json_pick *p, size_t n, char *why)
{
	return json_pick(text, strlen(text), p, n, why, 200);
}

Test(json_pick, nested_values_and_types)
{
	const char *doc = " {\"request_id\": \"x\", \"data\": {\"data\": {\"private_key\": "
	                  "\"0xabc\"}, \"metadata\": {\"created_time\": \"2026-11-29T21:45:11.5Z\", "
	                  "\"version\": 12, \"destroyed\": false}}, \"warnings\": null} \n";
	struct secret *key = NULL;
	char created[40], version[8], why[200];
	struct json_pick p[] = {
		{ .path = P_ROOT },
		{ .path = P_KEY, .secret = &key },
		{ .path = P_INNER },
		{ .path = P_CREATED, .buf = created, .cap = sizeof(created) },
		{ .path = P_VERSION, .buf = version, .cap = sizeof(version) },
	};
	cr_assert_eq(pick(doc, p, 5, why), 0, "%s", why);
	cr_expect_eq(p[0].type, JSON_PICK_OBJECT);
	cr_expect_eq(p[1].type, JSON_PICK_STRING);
	cr_assert_not_null(key);
	cr_expect_eq(key->len, 5);
	cr_expect_eq(key->cap, 5, "the secret is exactly the value's size");
	cr_expect(!memcmp(key->data, "0xabc", 6), "decoded, NUL-terminated");
	cr_expect_eq(p[2].type, JSON_PICK_OBJECT);
	cr_expect_str_eq(created, "2026-11-29T21:45:11.5Z");
	cr_expect_eq(p[4].type, JSON_PICK_NUMBER);
	cr_expect_str_eq(version, "12");
	secret_free(key);
}

Test(json_pick, absent_and_wrong_parents)
{
	struct secret *key = NULL;
	char why[200];
	struct json_pick p[] = { { .path = P_KEY, .secret = &key }, { .path = P_INNER } };
	cr_assert_eq(pick("{\"data\":{\"data\":null}}", p, 2, why), 0);
	cr_expect_eq(p[0].type, JSON_PICK_ABSENT);
	cr_expect_null(key);
	cr_expect_eq(p[1].type, JSON_PICK_NULL);
	/* A path through an array or a string finds nothing. */
	cr_assert_eq(pick("{\"data\":[{\"data\":{\"private_key\":\"k\"}}]}", p, 2, why), 0);
	cr_expect_eq(p[0].type, JSON_PICK_ABSENT);
	cr_expect_eq(p[1].type, JSON_PICK_ABSENT);
	cr_assert_eq(pick("[1,2,{\"data\":3}]", p, 2, why), 0);
	cr_expect_eq(p[0].type, JSON_PICK_ABSENT);
	/* A scalar root is JSON too: the caller checks the root's type. */
	struct json_pick r = { .path = P_ROOT };
	cr_assert_eq(pick("  -0.5e+3 ", &r, 1, why), 0);
	cr_expect_eq(r.type, JSON_PICK_NUMBER);
}

Test(json_pick, escapes_decode_like_jansson)
{
	/* Every escape, a 2-, 3- and 4-byte UTF-8 character, a surrogate pair,
	 * and an escaped member name. */
	const char *doc = "{\"d\\u0061ta\":{\"data\":{\"private_key\":"
	                  "\"a\\\"b\\\\c\\/d\\be\\ff\\ng\\rh\\ti\\u00e9\\u20ac\\ud83d\\ude00\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"}}}";
	struct secret *key = NULL;
	char why[200];
	struct json_pick p = { .path = P_KEY, .secret = &key };
	cr_assert_eq(pick(doc, &p, 1, why), 0, "%s", why);
	cr_assert_not_null(key);
	json_error_t e;
	json_t *j = json_loads(doc, 0, &e);
	cr_assert_not_null(j);
	json_t *v = json_object_get(json_object_get(json_object_get(j, "data"), "data"),
	                            "private_key");
	cr_assert_eq(key->len, json_string_length(v));
	cr_expect(!memcmp(key->data, json_string_value(v), key->len));
	json_decref(j);
	secret_free(key);
}

Test(json_pick, repeated_names_last_wins)
{
	struct secret *key = NULL;
	char why[200];
	struct json_pick p[] = { { .path = P_KEY, .secret = &key }, { .path = P_INNER } };
	/* The leaf repeated. */
	cr_assert_eq(pick("{\"data\":{\"data\":{\"private_key\":\"first\",\"private_key\":\"second\"}}}",
	                  p, 2, why), 0);
	cr_assert_not_null(key);
	cr_expect(!strcmp((char *)key->data, "second"));
	secret_free(key);
	/* A parent repeated: the later subtree replaces the whole earlier one,
	 * so a key only in the first `data` is gone (as in jansson). */
	cr_assert_eq(pick("{\"data\":{\"data\":{\"private_key\":\"first\"}},\"data\":{\"data\":{}}}",
	                  p, 2, why), 0);
	cr_expect_null(key);
	cr_expect_eq(p[0].type, JSON_PICK_ABSENT);
	cr_expect_eq(p[1].type, JSON_PICK_OBJECT);
	/* A string replaced by another type. */
	cr_assert_eq(pick("{\"data\":{\"data\":{\"private_key\":\"k\",\"private_key\":7}}}", p, 2, why), 0);
	cr_expect_null(key);
	cr_expect_eq(p[0].type, JSON_PICK_NUMBER);
}

Test(json_pick, cut_buffer_and_lengths)
{
	char small[4], why[200];
	struct json_pick p = { .path = (const char *const[]){ "t", NULL }, .buf = small,
	                       .cap = sizeof(small) };
	cr_assert_eq(pick("{\"t\":\"abcdef\"}", &p, 1, why), 0);
	cr_expect(p.cut);
	cr_expect_eq(p.len, 6);
	cr_expect_str_eq(small, "abc");
	cr_assert_eq(pick("{\"t\":\"ab\"}", &p, 1, why), 0);
	cr_expect(!p.cut);
	cr_expect_str_eq(small, "ab");
}

Test(json_pick, errors_say_where_not_what)
{
	const char *secretish = "{\"data\":{\"data\":{\"private_key\":\"0xdeadbeefcafe\"}}";
	struct secret *key = NULL;
	char why[200] = "";
	struct json_pick p = { .path = P_KEY, .secret = &key };
	cr_assert_eq(pick(secretish, &p, 1, why), -EINVAL);
	cr_expect_null(key, "nothing is left allocated after an error");
	cr_expect_eq(p.type, JSON_PICK_ABSENT);
	cr_expect_null(strstr(why, "dead"), "the reason never quotes the input: %s", why);
	cr_expect_not_null(strstr(why, "at byte"), "%s", why);
}

/* Accept/reject must agree with jansson (json_loadb, JSON_DECODE_ANY), the
 * reader these answers were parsed with before. */
static void agree(const char *doc, size_t len)
{
	char why[200];
	struct json_pick r = { .path = P_ROOT };
	int mine = json_pick(doc, len, &r, 1, why, sizeof(why));
	json_error_t e;
	json_t *j = json_loadb(doc, len, JSON_DECODE_ANY, &e);
	cr_expect_eq(mine == 0, j != NULL, "document %zu bytes \"%.*s\": json_pick %d (%s), jansson %s",
	             len, (int)(len < 60 ? len : 60), doc, mine, mine ? why : "ok",
	             j ? "ok" : e.text);
	json_decref(j);
}

#define AGREE(lit) agree(lit, sizeof(lit) - 1)

Test(json_pick, agrees_with_jansson)
{
	/* valid */
	AGREE("{}"); AGREE("[]"); AGREE(" [ ] "); AGREE("{\"a\":[1,2.5,-3e2,0,-0,1E+2,0.0e-0]}");
	AGREE("\"x\""); AGREE("true"); AGREE("false"); AGREE("null"); AGREE("0"); AGREE("-1");
	AGREE("{\"a\":{\"b\":{\"c\":[[],{},\"\"]}}}"); AGREE("\"\\ud83d\\ude00\"");
	AGREE("\"\xf4\x8f\xbf\xbf\""); AGREE("\"\xed\x9f\xbf\""); AGREE("\t\r\n{}\t\r\n");
	AGREE("{\"a\":1,\"a\":2}"); AGREE("[\"\\u0001\"]");
	/* malformed */
	AGREE(""); AGREE(" "); AGREE("{"); AGREE("}"); AGREE("[1,]"); AGREE("{\"a\":1,}");
	AGREE("{\"a\" 1}"); AGREE("{a:1}"); AGREE("{\"a\":1}x"); AGREE("{} {}"); AGREE("01");
	AGREE("1."); AGREE(".5"); AGREE("1e"); AGREE("+1"); AGREE("-"); AGREE("tru"); AGREE("nul");
	AGREE("True"); AGREE("\"abc"); AGREE("\"a\x01\""); AGREE("\"\\x\""); AGREE("\"\\u12\"");
	AGREE("\"\\u0000\""); AGREE("\"\\ud800\""); AGREE("\"\\udc00\""); AGREE("\"\\ud800\\u0041\"");
	AGREE("\"\xc0\xaf\""); AGREE("\"\xed\xa0\x80\""); AGREE("\"\xf4\x90\x80\x80\"");
	AGREE("\"\x80\""); AGREE("\"\xc3\""); AGREE("\"\xff\""); AGREE("[1 2]"); AGREE("{\"a\":}");
	AGREE("[\"a\",]"); AGREE("\"\\"); AGREE("{\"\\u0000\":1}"); AGREE("\xef\xbb\xbf{}");
	agree("{\"a\":1}\0", 8);
	agree("\"a\0b\"", 5);
}

/* Stricter than jansson 2.14 on purpose: its lexer loses a NUL byte read
 * right after a number or a literal, so it accepts "[5\0]" (found by the
 * fuzz target's comparison); a NUL is never valid outside a string. */
Test(json_pick, nul_after_a_number_is_refused)
{
	char why[200];
	struct json_pick r = { .path = P_ROOT };
	cr_expect_eq(json_pick("5\0", 2, &r, 1, why, sizeof(why)), -EINVAL);
	cr_expect_eq(json_pick("[5\0]", 4, &r, 1, why, sizeof(why)), -EINVAL);
	cr_expect_eq(json_pick("[true\0]", 7, &r, 1, why, sizeof(why)), -EINVAL);
	cr_expect_eq(json_pick("[5]", 3, &r, 1, why, sizeof(why)), 0);
}

Test(json_pick, depth_limit_as_jansson)
{
	size_t n = JSON_PICK_MAX_DEPTH + 2;
	char *doc = malloc(2 * n + 2);
	cr_assert_not_null(doc);
	for (size_t depth = JSON_PICK_MAX_DEPTH - 1; depth <= JSON_PICK_MAX_DEPTH + 1; depth++) {
		/* depth nested arrays, empty and with a scalar inside */
		for (int inner = 0; inner < 2; inner++) {
			size_t o = 0;
			for (size_t i = 0; i < depth; i++)
				doc[o++] = '[';
			if (inner)
				doc[o++] = '1';
			for (size_t i = 0; i < depth; i++)
				doc[o++] = ']';
			agree(doc, o);
		}
	}
	free(doc);
}

/* strbuf_json_escape (the audit line's strings) and json_pick agree: what
 * one escapes the other decodes back, runs of plain ASCII and every escape;
 * bytes that are not UTF-8 come back as U+FFFD. */
#include "strbuf.h"

static void roundtrip(const char *in, const char *want)
{
	struct strbuf b = STRBUF_INIT;
	char out[256], why[200];
	cr_assert_eq(strbuf_puts(&b, "{\"s\":\""), 0);
	cr_assert_eq(strbuf_json_escape(&b, in), 0);
	cr_assert_eq(strbuf_puts(&b, "\"}"), 0);
	struct json_pick p = { .path = (const char *const[]){ "s", NULL }, .buf = out,
	                       .cap = sizeof(out) };
	cr_assert_eq(json_pick(b.buf, b.len, &p, 1, why, sizeof(why)), 0, "%s: %s", b.buf, why);
	cr_expect_str_eq(out, want, "escaped as %s", b.buf);
	strbuf_reset(&b);
}

Test(json_pick, decodes_what_strbuf_json_escape_writes)
{
	roundtrip("", "");
	roundtrip("omikuji-feeder", "omikuji-feeder");
	roundtrip("a\"b\\c\nd\re\tf\x01g\x7fh", "a\"b\\c\nd\re\tf\x01g\x7fh");
	roundtrip("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
	roundtrip("bad\xff\xc3(end", "bad\xef\xbf\xbd\xef\xbf\xbd(end");
}

/* issue 15 (s5-cold): path names are measured once per call; a member
 * name matches only a path name of exactly its length, at the 128-byte
 * bound of the compared names too. */
Test(json_pick, long_member_names_match_exactly)
{
	char n128[129], n200[201], text[800], why[200] = "";
	memset(n128, 'a', 128);
	n128[128] = 0;
	memset(n200, 'a', 200);
	n200[200] = 0;
	const char *const p128[] = { n128, NULL };
	const char *const p200[] = { n200, NULL };
	const char *const pshort[] = { "aaa", NULL };
	/* one member of 128 'a's: only the 128-byte path name is it */
	snprintf(text, sizeof(text), "{\"%s\":1,\"aa\":2}", n128);
	struct json_pick p[] = { { .path = p128 }, { .path = p200 }, { .path = pshort } };
	cr_assert_eq(pick(text, p, 3, why), 0, "%s", why);
	cr_expect_eq(p[0].type, JSON_PICK_NUMBER);
	cr_expect_eq(p[1].type, JSON_PICK_ABSENT, "a 200-byte name is not its 128-byte prefix");
	cr_expect_eq(p[2].type, JSON_PICK_ABSENT, "aaa is neither aa nor 128 a's");
	/* one member of 200 'a's: longer than the names compared, no pick */
	snprintf(text, sizeof(text), "{\"%s\":1}", n200);
	struct json_pick q[] = { { .path = p128 }, { .path = p200 } };
	cr_assert_eq(pick(text, q, 2, why), 0, "%s", why);
	cr_expect_eq(q[0].type, JSON_PICK_ABSENT);
	cr_expect_eq(q[1].type, JSON_PICK_ABSENT, "longer member names match no pick");
}
