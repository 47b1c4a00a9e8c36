/* test/unit/test_keyhash.c: MurmurHash3, Tyk's key hashes, key IDs and token parsing.
 *
 * Expected values come from outside this code: MurmurHash3 vectors published
 * with smhasher and spaolacci/murmur3, and tables made by a separate Python
 * implementation checked against those vectors; SHA-256 and base64 from
 * Python's hashlib and base64. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "tp_keyhash.h"
#include "tp_test.h"

#define ORG "5e9d9544a1dcd60001d0ed20"

static tp_str_t S(const char *s)
{
    return (tp_str_t){s, strlen(s)};
}

/* byte i = (i * 31 + 7) mod 256: covers every byte value, high bit included */
static const unsigned char *pattern(void)
{
    static unsigned char p[1000];
    for (size_t i = 0; i < sizeof(p); i++)
        p[i] = (unsigned char)(i * 31 + 7);
    return p;
}

static const char *hex32(uint32_t v)
{
    static char s[9];
    snprintf(s, sizeof(s), "%08x", v);
    return s;
}

static const char *hex128(const void *data, size_t len, uint32_t seed)
{
    static char s[33];
    uint64_t h[2];
    tp_murmur3_128(data, len, seed, h);
    snprintf(s, sizeof(s), "%016llx%016llx", (unsigned long long)h[0], (unsigned long long)h[1]);
    return s;
}

static const char *khex(const char *alg, const void *data, size_t len)
{
    static char s[TP_KEYHASH_HEX_MAX];
    size_t n = tp_keyhash_hex(alg, data, len, s);
    return n == strlen(s) ? s : "(bad length)";
}

/* tp_key_generate as a C string, or "(error)". */
static const char *gen(const char *org, const char *id, const char *alg)
{
    static char s[2048];
    tp_buf_t b = {0};
    int rc = tp_key_generate(&b, S(org), S(id), alg);
    snprintf(s, sizeof(s), "%s", rc == 0 ? tp_buf_cstr(&b) : "(error)");
    tp_buf_free(&b);
    return s;
}

static const char *org_of(const char *token)
{
    static char s[256];
    int n = tp_key_token_org(S(token), s, sizeof(s));
    return n >= 0 && (size_t)n == strlen(s) ? s : "(error)";
}

static const char *alg_of(const char *token)
{
    static char s[256];
    int n = tp_key_token_alg(S(token), s, sizeof(s));
    if (n == -ENOENT)
        return "(none)";
    return n >= 0 && (size_t)n == strlen(s) ? s : "(error)";
}

static const char *hash_key(const char *key, int hash_keys)
{
    static char s[512];
    char hex[TP_KEYHASH_HEX_MAX];
    tp_str_t h = tp_key_storage_hash(S(key), hash_keys, hex);
    snprintf(s, sizeof(s), "%.*s", (int)h.n, h.p);
    return s;
}

TP_TEST(murmur3_32_published_vectors)
{
    CHECK_INT(tp_murmur3_32("", 0, 0), 0);
    CHECK_INT(tp_murmur3_32("", 0, 1), 0x514e28b7);
    CHECK_INT(tp_murmur3_32("", 0, 0xffffffff), 0x81f16f39);
    CHECK_INT(tp_murmur3_32("\0", 1, 0), 0x514e28b7);
    CHECK_INT(tp_murmur3_32("\xff\xff\xff\xff", 4, 0), 0x76293b50);
    CHECK_INT(tp_murmur3_32("\x21\x43\x65\x87", 4, 0), 0xf55b516b);
    CHECK_INT(tp_murmur3_32("\x21\x43\x65\x87", 4, 0x5082edee), 0x2362f9de);
    CHECK_INT(tp_murmur3_32("\x21\x43\x65", 3, 0), 0x7e4a8634);
    CHECK_INT(tp_murmur3_32("\x21\x43", 2, 0), 0xa0f7b07a);
    CHECK_INT(tp_murmur3_32("\x21", 1, 0), 0x72661cf4);
    CHECK_INT(tp_murmur3_32("hello", 5, 0), 0x248bfa47);
    CHECK_INT(tp_murmur3_32("hello", 5, 1), 0xbb4abcad);
    CHECK_INT(tp_murmur3_32("hello", 5, 0x2a), 0xe2dbd2e1);
    CHECK_INT(tp_murmur3_32("hello, world", 12, 0), 0x149bbb7f);
    CHECK_INT(tp_murmur3_32("19 Jan 2038 at 3:14:07 AM", 25, 0), 0xe31e8a70);
    CHECK_INT(tp_murmur3_32("The quick brown fox jumps over the lazy dog.", 44, 0), 0xd5c48bfc);
}

TP_TEST(murmur3_128_published_vectors)
{
    CHECK_STR(hex128("", 0, 0), "00000000000000000000000000000000");
    CHECK_STR(hex128("", 0, 1), "4610abe56eff5cb551622daa78f83583");
    CHECK_STR(hex128("hello", 5, 0), "cbd8a7b341bd9b025b1e906a48ae1d19");
    CHECK_STR(hex128("hello", 5, 0x2a), "c4b8b3c960af6f082334b875b0efbc7a");
    CHECK_STR(hex128("hello, world", 12, 0), "342fac623a5ebc8e4cdcbc079642414d");
    CHECK_STR(hex128("19 Jan 2038 at 3:14:07 AM", 25, 0), "b89e5988b737affc664fc2950231b2cb");
    CHECK_STR(hex128("The quick brown fox jumps over the lazy dog", 43, 0),
              "e34bbc7bbc071b6c7a433ca9c49a9347");
    CHECK_STR(hex128("The quick brown fox jumps over the lazy dog.", 44, 0),
              "cd99481f9ee902c9695da1a38987b6e7");
}

/* Prefixes 0..40 of pattern(): every tail length of both block sizes. */
static const char *const mm32_std[41] = {
    "00000000", "6882f382", "10665d92", "5db0b144", "c09a300e", "268013ad", "73cc82d5",
    "5b1bc169", "ecad64a3", "c4d63cf9", "95f682e7", "c687d481", "cbcbb627", "4e009ad7",
    "ea9e83fe", "c30c03de", "2a3ac0f6", "3e8a519e", "588f114a", "130ac869", "6f37a13c",
    "959aeb3b", "a3e5b497", "94972312", "39c4c228", "0211112d", "2a03a423", "4e3f0f95",
    "cd346c17", "fc2a1e89", "2ae9c210", "46d9904d", "1e9978f3", "d7d09e89", "2c1ae136",
    "bd250509", "8e62474c", "11558837", "79eca6ce", "2799e146", "f83498d6",
};

static const char *const mm128[41] = {
    "00000000000000000000000000000000", "c427909d8972bd175c15702a45b199dd",
    "bcaa5d247b77f5902b9be8c87f32d7ee", "33ff6eda4da0a23b5f905e8bd93c3afb",
    "331195913937a3b4642e0845db611d66", "634332548738e00f05368e5c33ad8afc",
    "72b7246daad5c14012748cef0c248d36", "3f14fdfcc2d9b91c01ebfd1098f1204f",
    "d927130c3ea3af5deeab4cb4fb7e6832", "320f43f3fbfb3be4a373172dd046f7a2",
    "fa195b9d5e7e8097d3b043434ecd8e4a", "099a44202eece712434c1fcd3cbefd1d",
    "46f0c933f9efbf044d994cfc42e108f5", "e5b8c6c787b0b3c4b5ffd152fd12c0a7",
    "672ebb93fd9286d515a6d4cc5a590c06", "3775f4b56782ab176c299d80b12b415e",
    "466b79ebf689da148c548b02b805858a", "eb322f84309de524082aa01f2728481b",
    "44b290da482e5f9e84c50a3823cd1bf6", "4eadde95e66032d6f39817af8a82b80a",
    "14f2fdf5f4248c086a1dc9f71ab8d567", "180552a0fea4e4277ee14d9ee92d46bd",
    "8c047278feea0982c0ca9815fab21ec7", "9cc8da4d0d949e70adf3ab9be49144eb",
    "16ba56f81e8dad44f4ceab101463091e", "20427a374f44ea0cedb831149bd11151",
    "49d8d40490aba72984e96920706897a6", "0c6a47030f7f63802b0b7b23b88783dd",
    "f8cb919465aeaae237f6f5d678c2c7dd", "b37e63127cb74e8072d16eff424db5a0",
    "3ca569a04e7ba78ff6d2a574e97e7a54", "49db93da3296056990b21e6033dc6c1e",
    "428638cea8126132f0ca1d512a155d2e", "fa0bc7309230cdeb3721c70c96532164",
    "0a3df4b195876c7b0f1ad1566fcc8fa1", "5bc59bed961198d4fc8070e151d4bd33",
    "d11df7110396871333b7c577041115ea", "d45b6b10386bb458e6f1aab18afcff03",
    "54e9790216be5169c59eaea52f9bce1e", "547230a11195c5004a90e6ec5b826cf0",
    "1fce07843e356d7ac90e50dc54bd1be0",
};

/* Tyk's murmur32: the state after whole blocks, so it moves every 4 bytes. */
static const char *const tyk32[41] = {
    "00000000", "00000000", "00000000", "00000000", "7532701c", "7532701c", "7532701c",
    "7532701c", "c9f6158c", "c9f6158c", "c9f6158c", "c9f6158c", "16d6bc9d", "16d6bc9d",
    "16d6bc9d", "16d6bc9d", "af724b0f", "af724b0f", "af724b0f", "af724b0f", "89024c48",
    "89024c48", "89024c48", "89024c48", "324d9a70", "324d9a70", "324d9a70", "324d9a70",
    "3bd856cc", "3bd856cc", "3bd856cc", "3bd856cc", "40403de7", "40403de7", "40403de7",
    "40403de7", "989339e4", "989339e4", "989339e4", "989339e4", "47a06154",
};

TP_TEST(murmur3_every_length_and_alignment)
{
    const unsigned char *p = pattern();
    unsigned char shifted[48 + 3];
    for (size_t n = 0; n <= 40; n++) {
        for (size_t off = 0; off < 4; off++) {
            memcpy(shifted + off, p, n);
            if (strcmp(hex32(tp_murmur3_32(shifted + off, n, 0)), mm32_std[n]) != 0 ||
                strcmp(hex128(shifted + off, n, 0), mm128[n]) != 0) {
                tp_test_fail(__FILE__, __LINE__, "length %zu at offset %zu", n, off);
                return;
            }
        }
    }
    CHECK_STR(hex32(tp_murmur3_32(p, 1000, 0)), "1785b9d8");
    CHECK_STR(hex32(tp_murmur3_32(p, 33, 0x2a)), "89ec9e7d");
    CHECK_STR(hex128(p, 33, 0x2a), "d1df0f05ed5b2e333cb3e29b9f87a546");
}

TP_TEST(keyhash_hex_every_length)
{
    const unsigned char *p = pattern();
    for (size_t n = 0; n <= 40; n++) {
        char h64[17];
        snprintf(h64, sizeof(h64), "%.16s", mm128[n]);
        if (strcmp(khex("murmur32", p, n), tyk32[n]) != 0 ||
            strcmp(khex("murmur64", p, n), h64) != 0 ||
            strcmp(khex("murmur128", p, n), mm128[n]) != 0) {
            tp_test_fail(__FILE__, __LINE__, "length %zu", n);
            return;
        }
    }
    CHECK_STR(khex("murmur32", p, 1000), "af692ea7");
    CHECK_STR(khex("murmur64", p, 1000), "17fe9d6b899dc945");
    CHECK_STR(khex("murmur128", p, 1000), "17fe9d6b899dc945d3a7aaa6ce34ce29");
}

TP_TEST(keyhash_hex_sha256)
{
    const unsigned char *p = pattern();
    CHECK_STR(khex("sha256", p, 0),
              "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK_STR(khex("sha256", p, 1),
              "ca358758f6d27e6cf45272937977a748fd88391db679ceda7dc7bf1f005ee879");
    CHECK_STR(khex("sha256", p, 3),
              "647674a296197442f518bcca323ec605dd8d098b2d4f22ee1fdcdd2bb753a189");
    CHECK_STR(khex("sha256", p, 55),
              "8aa994584139d128848eeebc4e815639ba5ab6e6e39574195a63ac4f14f7c43b");
    CHECK_STR(khex("sha256", p, 56),
              "ad574708f75c044c9b85de64cb568ee7711ff4f36448c6242f053ba8f6cc2b63");
    CHECK_STR(khex("sha256", p, 64),
              "c6ab9724ade5b6a7a1edfffb12f3aa9181351355af8fd08c919952ad211339dd");
    CHECK_STR(khex("sha256", p, 1000),
              "5097e7d587352f5097062ae679f37bda5802d9f875aba14c8cb4d1a188ada179");
}

/* hashFunction: "" and unknown names (case-sensitive) are murmur32. */
TP_TEST(keyhash_hex_names)
{
    const unsigned char *p = pattern();
    char out[TP_KEYHASH_HEX_MAX];
    CHECK_INT(tp_keyhash_hex("murmur32", p, 9, out), 8);
    CHECK_INT(tp_keyhash_hex("murmur64", p, 9, out), 16);
    CHECK_INT(tp_keyhash_hex("murmur128", p, 9, out), 32);
    CHECK_INT(tp_keyhash_hex("sha256", p, 9, out), 64);
    CHECK_STR(khex(NULL, p, 9), "c9f6158c");
    CHECK_STR(khex("", p, 9), "c9f6158c");
    CHECK_STR(khex("md5", p, 9), "c9f6158c");
    CHECK_STR(khex("MURMUR64", p, 9), "c9f6158c");
    CHECK_STR(khex("murmur3", p, 9), "c9f6158c");
}

/* What users of Tyk saw (issues #2432, #3192): with murmur32 up to three
 * extra characters after a multiple of four still match, and every key
 * shorter than four characters shares one hash. */
TP_TEST(tyk_murmur32_ignores_the_tail)
{
    char abcd[TP_KEYHASH_HEX_MAX];
    snprintf(abcd, sizeof(abcd), "%s", khex("murmur32", "abcd", 4));
    CHECK_STR(khex("murmur32", "abcdX", 5), abcd);
    CHECK_STR(khex("murmur32", "abcdXYZ", 7), abcd);
    CHECK(strcmp(khex("murmur32", "abcdWXYZ", 8), abcd) != 0);
    CHECK_STR(khex("murmur32", "", 0), "00000000");
    CHECK_STR(khex("murmur32", "xyz", 3), "00000000");
    /* the real algorithm does see the tail */
    CHECK(tp_murmur3_32("abcd", 4, 0) != tp_murmur3_32("abcdX", 5, 0));
}

TP_TEST(generate_legacy_keys)
{
    CHECK_STR(gen(ORG, "abc", NULL), ORG "abc");
    CHECK_STR(gen(ORG, "abc", ""), ORG "abc");
    CHECK_STR(gen(ORG, ORG "abc", NULL), ORG "abc"); /* the org is not doubled */
    CHECK_STR(gen("", "abc", NULL), "abc");
    CHECK_STR(gen("default", "mykey", NULL), "defaultmykey");
}

TP_TEST(generate_json_keys)
{
    CHECK_STR(gen(ORG, "abc", "sha256"), "eyJvcmciOiI1ZTlkOTU0NGExZGNkNjAwMDFkMGVkMjAiLCJpZCI6Im"
                                         "FiYyIsImgiOiJzaGEyNTYifQ==");
    CHECK_STR(gen(ORG, ORG "abc", "murmur32"), "eyJvcmciOiI1ZTlkOTU0NGExZGNkNjAwMDFkMGVkMjAiLCJp"
                                               "ZCI6ImFiYyIsImgiOiJtdXJtdXIzMiJ9");
    CHECK_STR(gen(ORG, "abc", "murmur64"), "eyJvcmciOiI1ZTlkOTU0NGExZGNkNjAwMDFkMGVkMjAiLCJpZCI6"
                                           "ImFiYyIsImgiOiJtdXJtdXI2NCJ9");
    CHECK_STR(gen(ORG, "abc", "murmur128"), "eyJvcmciOiI1ZTlkOTU0NGExZGNkNjAwMDFkMGVkMjAiLCJpZCI"
                                            "6ImFiYyIsImgiOiJtdXJtdXIxMjgifQ==");
    CHECK_STR(gen("default", "mykey", "murmur64"),
              "eyJvcmciOiJkZWZhdWx0IiwiaWQiOiJteWtleSIsImgiOiJtdXJtdXI2NCJ9");
}

/* GenerateToken: an unknown algorithm is written as murmur64. */
TP_TEST(generate_unknown_alg_becomes_murmur64)
{
    const char *want = "eyJvcmciOiI1ZTlkOTU0NGExZGNkNjAwMDFkMGVkMjAiLCJpZCI6ImFiYyIsImgiOiJtdXJtdX"
                       "I2NCJ9";
    CHECK_STR(gen(ORG, "abc", "md5"), want);
    CHECK_STR(gen(ORG, "abc", "SHA256"), want);
    CHECK_STR(gen(ORG, "abc", "murmur"), want);
}

/* fmt.Sprintf, not json.Marshal: quotes, '<', '>' and '&' go in verbatim
 * (json.Marshal would write \" and \u003c). The base64 is what Tyk issued. */
TP_TEST(generate_copies_org_and_id_verbatim)
{
    /* {"org":"a"b","id":"<x>&"","h":"sha256"} */
    CHECK_STR(gen("a\"b", "<x>&\"", "sha256"),
              "eyJvcmciOiJhImIiLCJpZCI6Ijx4PiYiIiwiaCI6InNoYTI1NiJ9");
    /* {"org":"o","id":"x","h":"sha256","h":"murmur64"} */
    CHECK_STR(gen("o", "x\",\"h\":\"sha256", "murmur64"),
              "eyJvcmciOiJvIiwiaWQiOiJ4IiwiaCI6InNoYTI1NiIsImgiOiJtdXJtdXI2NCJ9");
}

static int is_uuid4_hex(const char *s)
{
    if (strlen(s) != 32 || s[12] != '4' || strchr("89ab", s[16]) == NULL)
        return 0;
    for (int i = 0; i < 32; i++)
        if (strchr("0123456789abcdef", s[i]) == NULL)
            return 0;
    return 1;
}

TP_TEST(generate_random_ids)
{
    char a[64], b[64];
    snprintf(a, sizeof(a), "%s", gen("", "", NULL));
    snprintf(b, sizeof(b), "%s", gen("", "", NULL));
    CHECK(is_uuid4_hex(a));
    CHECK(is_uuid4_hex(b));
    CHECK(strcmp(a, b) != 0);

    snprintf(a, sizeof(a), "%s", gen(ORG, "", NULL));
    CHECK(strncmp(a, ORG, 24) == 0);
    CHECK(is_uuid4_hex(a + 24));
    /* an id equal to the org is trimmed to nothing, so it is random too */
    snprintf(a, sizeof(a), "%s", gen(ORG, ORG, NULL));
    CHECK(strncmp(a, ORG, 24) == 0);
    CHECK(is_uuid4_hex(a + 24));
    CHECK_STR(org_of(a), ORG);

    char tok[256];
    snprintf(tok, sizeof(tok), "%s", gen("org1", "", "sha256"));
    CHECK_STR(org_of(tok), "org1");
    CHECK_STR(alg_of(tok), "sha256");
}

TP_TEST(token_org)
{
    CHECK_STR(org_of(gen(ORG, "abc", "murmur64")), ORG);
    CHECK_STR(org_of("eyJvcmciOiJvIn0="), "o");
    CHECK_STR(org_of("eyJvcmciIDogInNwYWNlZCIgfQ=="), "spaced"); /* {"org" : "spaced" } */
    /* legacy: 24 hex characters (either case) and more */
    CHECK_STR(org_of(ORG "abc"), ORG);
    CHECK_STR(org_of("5E9D9544A1DCD60001D0ED20abc"), "5E9D9544A1DCD60001D0ED20");
    CHECK_STR(org_of(ORG), "");
    CHECK_STR(org_of("5e9d9544a1dcd60001d0ed2zabc"), "");
    CHECK_STR(org_of("defaultmykey"), "");
    CHECK_STR(org_of(""), "");
    /* base64-JSON without a string "org" falls back to the hex rule */
    CHECK_STR(org_of("eyJpZCI6IngifQ=="), "");         /* {"id":"x"} */
    CHECK_STR(org_of("eyJoIjo1LCJvcmciOm51bGx9"), ""); /* {"h":5,"org":null} */
    CHECK_STR(org_of("eyJ4"), "");                     /* {"x */
}

/* StdEncoding only: padding required, no URL alphabet; CR and LF ignored. */
TP_TEST(token_base64_is_go_std_encoding)
{
    CHECK_STR(org_of("eyJvcmciOiJvIn0"), "");          /* unpadded */
    CHECK_STR(org_of("eyJvcmciOiJ+fn4ifQ=="), "~~~");  /* '+' */
    CHECK_STR(org_of("eyJvcmciOiJ-fn4ifQ=="), "");     /* URL-safe '-' */
    CHECK_STR(org_of("eyJvcmciOiI+Pj4/In0="), ">>>?"); /* '+' and '/' */
    CHECK_STR(org_of("eyJvcmciOiI-Pj4_In0="), "");     /* URL-safe */
    CHECK_STR(org_of("eyJvcmciOiJv\r\nIn0="), "o");    /* newlines skipped */
    CHECK_STR(org_of("eyJvcmciOiJvIn0=\n"), "o");      /* also after padding */
    CHECK_STR(org_of("eyJvcmciOiJvIn0=x"), "");        /* trailing garbage */
    CHECK_STR(org_of("eyJvcmciOiJvIn0=="), "");        /* too much padding */
    CHECK_STR(org_of("eyJvcmciOiJvIn1="), "o");        /* unused bits not checked */
    CHECK_STR(org_of("eyJvcmciOiJvMSJ9"), "o1");       /* no padding needed */
    CHECK_STR(org_of("eyJvcmciOiJvMSJ9 "), "");        /* space is not skipped */
}

/* jsonparser unescapes, including its lenient surrogate-pair rule. */
TP_TEST(token_string_escapes)
{
    /* {"org":"a\u0041\"b","h":"sha256"} */
    CHECK_STR(org_of("eyJvcmciOiJhXHUwMDQxXCJiIiwiaCI6InNoYTI1NiJ9"), "aA\"b");
    /* {"org":"\u00e9\/"} */
    CHECK_STR(org_of("eyJvcmciOiJcdTAwZTlcLyJ9"), "\xc3\xa9/");
    /* {"a":1,"org":"\ud83d\ude00"} */
    CHECK_STR(org_of("eyJhIjoxLCJvcmciOiJcdWQ4M2RcdWRlMDAifQ=="), "\xf0\x9f\x98\x80");
    /* {"org":"\ud83dXXde00"}: the partner's "\u" is not checked */
    CHECK_STR(org_of("eyJvcmciOiJcdWQ4M2RYWGRlMDAifQ=="), "\xf0\x9f\x98\x80");
    /* {"org":"\udc00"}: a lone surrogate fails, so the hex rule applies */
    CHECK_STR(org_of("eyJvcmciOiJcdWRjMDAifQ=="), "");
}

TP_TEST(token_alg)
{
    CHECK_STR(alg_of(gen(ORG, "abc", "sha256")), "sha256");
    CHECK_STR(alg_of(gen(ORG, "abc", "md5")), "murmur64");
    CHECK_STR(alg_of(ORG "abc"), "(none)");
    CHECK_STR(alg_of("eyJpZCI6IngifQ=="), "(none)");         /* {"id":"x"} */
    CHECK_STR(alg_of("eyJoIjoiIn0="), "");                   /* {"h":""} */
    CHECK_STR(alg_of("eyJoIjo1LCJvcmciOm51bGx9"), "(none)"); /* "h":5 */
    CHECK_STR(alg_of("eyJoIjoibWQ1In0="), "md5");
    /* {"x":{"h":"sha256"}}: only the top level counts */
    CHECK_STR(alg_of("eyJ4Ijp7ImgiOiJzaGEyNTYifX0="), "(none)");
    /* {"h":"sha256","h":"murmur64"}: the first wins (encoding/json takes the last) */
    CHECK_STR(alg_of("eyJoIjoic2hhMjU2IiwiaCI6Im11cm11cjY0In0="), "sha256");
    /* {"\u0068":"sha256"}: keys are unescaped */
    CHECK_STR(alg_of("eyJcdTAwNjgiOiJzaGEyNTYifQ=="), "sha256");
    /* {"a":["h",{"h":"x"}],"h":"murmur128"}: arrays are skipped */
    CHECK_STR(alg_of("eyJhIjpbImgiLHsiaCI6IngifV0sImgiOiJtdXJtdXIxMjgifQ=="), "murmur128");
}

/* Tokens made from ids with quotes read the way Tyk reads them. */
TP_TEST(token_from_unescaped_id)
{
    char tok[256];
    /* {"org":"a"b","id":"<x>&"","h":"sha256"}: the org ends at the second
     * quote; stray strings are skipped until "h": is found */
    snprintf(tok, sizeof(tok), "%s", gen("a\"b", "<x>&\"", "sha256"));
    CHECK_STR(org_of(tok), "a");
    CHECK_STR(alg_of(tok), "sha256");
    CHECK_STR(hash_key(tok, 1), "1743988936ef8f8c10f57af7444a8393386ed5aac12eb3b9fe52b2fd03a89ad0");
    /* {"org":"o","id":"a"b","h":"murmur64"}: the scan ends in an unterminated
     * string, so there is no "h" and the hash is murmur32 */
    snprintf(tok, sizeof(tok), "%s", gen("o", "a\"b", "murmur64"));
    CHECK_STR(tok, "eyJvcmciOiJvIiwiaWQiOiJhImIiLCJoIjoibXVybXVyNjQifQ==");
    CHECK_STR(org_of(tok), "o");
    CHECK_STR(alg_of(tok), "(none)");
    CHECK_STR(hash_key(tok, 1), "b4a3586e");
    /* {"org":"o","id":"x","h":"sha256","h":"murmur64"}: the id picks the hash */
    snprintf(tok, sizeof(tok), "%s", gen("o", "x\",\"h\":\"sha256", "murmur64"));
    CHECK_STR(alg_of(tok), "sha256");
    CHECK_STR(hash_key(tok, 1), "a400ecdf626319fc7bd0bfe1cb02d469f1806b04845670624c0b7dfbd75ed2c6");
}

TP_TEST(token_out_buffer_too_small)
{
    char out[4];
    const char *tok = "eyJvcmciOiJvMSJ9"; /* {"org":"o1"} */
    CHECK_INT(tp_key_token_org(S(tok), out, 3), 2);
    CHECK_STR(out, "o1");
    CHECK_INT(tp_key_token_org(S(tok), out, 2), -ENOSPC);
    CHECK_INT(tp_key_token_org(S(ORG "abc"), out, sizeof(out)), -ENOSPC);
    CHECK_INT(tp_key_token_alg(S("eyJoIjoibWQ1In0="), out, 3), -ENOSPC);
    CHECK_INT(tp_key_token_alg(S("eyJoIjoibWQ1In0="), out, 4), 3);
}

/* A token longer than the decoder's stack buffer takes the heap path. */
TP_TEST(token_long)
{
    char id[1200], tok[2000];
    memset(id, 'k', sizeof(id) - 1);
    id[sizeof(id) - 1] = '\0';
    snprintf(tok, sizeof(tok), "%s", gen("longorg", id, "murmur128"));
    /* {"org":"longorg","id":"kkk...","h":"murmur128"}: 1240 bytes */
    CHECK_INT(strlen(tok), (1240 + 2) / 3 * 4);
    CHECK_STR(org_of(tok), "longorg");
    CHECK_STR(alg_of(tok), "murmur128");
    CHECK_STR(hash_key(tok, 1), khex("murmur128", tok, strlen(tok)));
}

TP_TEST(storage_hash_off_returns_the_key)
{
    char hex[TP_KEYHASH_HEX_MAX];
    tp_str_t key = S(ORG "abc");
    tp_str_t h = tp_key_storage_hash(key, 0, hex);
    CHECK(h.p == key.p);
    CHECK_INT(h.n, key.n);
    CHECK_STR(hash_key("eyJoIjoibWQ1In0=", 0), "eyJoIjoibWQ1In0=");
}

TP_TEST(storage_hash_on)
{
    /* legacy keys and plain strings: murmur32 */
    CHECK_STR(hash_key(ORG "abc", 1), "d4d75e5b");
    /* base64-JSON keys: the algorithm their "h" names, over the whole token */
    CHECK_STR(hash_key(gen(ORG, "abc", "sha256"), 1),
              "4f3b0f5618676d773b7c2a012a520ecac113f0c869451f05359f2717722c6c8d");
    CHECK_STR(hash_key(gen(ORG, "abc", "murmur64"), 1), "e255f6484f242509");
    CHECK_STR(hash_key(gen(ORG, "abc", "murmur128"), 1), "3dc2223ad342c7f9197860efed894da4");
    CHECK_STR(hash_key(gen(ORG, "abc", "murmur32"), 1), "5471eb24");
    CHECK_STR(hash_key(gen("default", "mykey", "murmur64"), 1), "20996d934a45f3af");
    /* an "h" Tyk does not know hashes with murmur32 */
    CHECK_STR(hash_key("eyJoIjoibWQ1In0=", 1), khex("murmur32", "eyJoIjoibWQ1In0=", 16));
    /* {"h":""} */
    CHECK_STR(hash_key("eyJoIjoiIn0=", 1), khex("murmur32", "eyJoIjoiIn0=", 12));
}

/* Tyk's TestMurmur3CharBug: a murmur32 JSON key with "abc" appended is no
 * longer base64, so it is hashed with murmur32 too, and the tail is lost. */
TP_TEST(storage_hash_murmur32_json_key_plus_three_chars)
{
    char tok[256], longer[sizeof(tok) + 3];
    snprintf(tok, sizeof(tok), "%s", gen(ORG, "abc", "murmur32"));
    snprintf(longer, sizeof(longer), "%sabc", tok);
    CHECK_STR(alg_of(longer), "(none)");
    CHECK_STR(hash_key(longer, 1), "5471eb24");
    snprintf(tok, sizeof(tok), "%s", gen(ORG, "abc", "murmur64"));
    snprintf(longer, sizeof(longer), "%sabc", tok);
    CHECK(strcmp(hash_key(longer, 1), "e255f6484f242509") != 0);
}

void test_keyhash_suite(void)
{
    TP_RUN(murmur3_32_published_vectors);
    TP_RUN(murmur3_128_published_vectors);
    TP_RUN(murmur3_every_length_and_alignment);
    TP_RUN(keyhash_hex_every_length);
    TP_RUN(keyhash_hex_sha256);
    TP_RUN(keyhash_hex_names);
    TP_RUN(tyk_murmur32_ignores_the_tail);
    TP_RUN(generate_legacy_keys);
    TP_RUN(generate_json_keys);
    TP_RUN(generate_unknown_alg_becomes_murmur64);
    TP_RUN(generate_copies_org_and_id_verbatim);
    TP_RUN(generate_random_ids);
    TP_RUN(token_org);
    TP_RUN(token_base64_is_go_std_encoding);
    TP_RUN(token_string_escapes);
    TP_RUN(token_alg);
    TP_RUN(token_from_unescaped_id);
    TP_RUN(token_out_buffer_too_small);
    TP_RUN(token_long);
    TP_RUN(storage_hash_off_returns_the_key);
    TP_RUN(storage_hash_on);
    TP_RUN(storage_hash_murmur32_json_key_plus_three_chars);
}
