/* common/tp_keyhash.c: Tyk key IDs and storage hashes; see tp_keyhash.h. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <mbedtls/base64.h>
#include <mbedtls/sha256.h>

#include "tp_err.h"
#include "tp_keyhash.h"
#include "tp_url.h"

/* ---- MurmurHash3 (Austin Appleby's public algorithm) ---------------------- */

#define MM32_C1 0xcc9e2d51u
#define MM32_C2 0x1b873593u
#define MM128_C1 0x87c37b91114253d5ull
#define MM128_C2 0x4cf5ad432745937full

static inline uint32_t rotl32(uint32_t x, int r)
{
    return (x << r) | (x >> (32 - r));
}

static inline uint64_t rotl64(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}

/* Explicit little-endian loads: Go reads the blocks in host order, which is
 * little-endian on every platform Tyk ships for; this also needs no
 * alignment. */
static inline uint32_t load_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t load_le64(const unsigned char *p)
{
    return (uint64_t)load_le32(p) | (uint64_t)load_le32(p + 4) << 32;
}

static inline uint32_t mm32_scramble(uint32_t k)
{
    return rotl32(k * MM32_C1, 15) * MM32_C2;
}

/* The body loop alone: the state after every whole 4-byte block. */
static uint32_t mm32_blocks(const unsigned char *p, size_t len, uint32_t h)
{
    for (size_t i = 0; i + 4 <= len; i += 4) {
        h ^= mm32_scramble(load_le32(p + i));
        h = rotl32(h, 13) * 5 + 0xe6546b64u;
    }
    return h;
}

uint32_t tp_murmur3_32(const void *data, size_t len, uint32_t seed)
{
    const unsigned char *p = data;
    uint32_t h = mm32_blocks(p, len, seed);
    size_t body = len & ~(size_t)3;
    uint32_t k = 0;
    for (size_t i = len - body; i > 0; i--)
        k = k << 8 | p[body + i - 1];
    if (len != body)
        h ^= mm32_scramble(k);
    h ^= (uint32_t)len;
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

static inline uint64_t fmix64(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ull;
    k ^= k >> 33;
    return k;
}

void tp_murmur3_128(const void *data, size_t len, uint32_t seed, uint64_t out[2])
{
    const unsigned char *p = data;
    uint64_t h1 = seed, h2 = seed;
    size_t body = len & ~(size_t)15;
    for (size_t i = 0; i < body; i += 16) {
        h1 ^= rotl64(load_le64(p + i) * MM128_C1, 31) * MM128_C2;
        h1 = (rotl64(h1, 27) + h2) * 5 + 0x52dce729u;
        h2 ^= rotl64(load_le64(p + i + 8) * MM128_C2, 33) * MM128_C1;
        h2 = (rotl64(h2, 31) + h1) * 5 + 0x38495ab5u;
    }
    /* The 0-15 tail bytes fill k1 (bytes 0-7) and k2 (bytes 8-14) LSB first. */
    size_t tail = len - body;
    uint64_t k1 = 0, k2 = 0;
    for (size_t i = tail; i > 8; i--)
        k2 = k2 << 8 | p[body + i - 1];
    for (size_t i = tail < 8 ? tail : 8; i > 0; i--)
        k1 = k1 << 8 | p[body + i - 1];
    if (tail > 8)
        h2 ^= rotl64(k2 * MM128_C2, 33) * MM128_C1;
    if (tail > 0)
        h1 ^= rotl64(k1 * MM128_C1, 31) * MM128_C2;
    h1 ^= (uint64_t)len;
    h2 ^= (uint64_t)len;
    h1 += h2;
    h2 += h1;
    h1 = fmix64(h1);
    h2 = fmix64(h2);
    h1 += h2;
    h2 += h1;
    out[0] = h1;
    out[1] = h2;
}

/* ---- digests by name (hashFunction, HashStr) ------------------------------ */

enum { ALG_MURMUR32, ALG_MURMUR64, ALG_MURMUR128, ALG_SHA256, ALG_UNKNOWN };

static const char *const alg_names[] = {"murmur32", "murmur64", "murmur128", "sha256"};

/* Exact, case-sensitive names as Go's switch compares them; <n> bytes
 * because a name read from a token may hold a NUL. "" is ALG_UNKNOWN. */
static int alg_lookup(const char *name, size_t n)
{
    for (int a = 0; a < ALG_UNKNOWN; a++)
        if (strlen(alg_names[a]) == n && memcmp(alg_names[a], name, n) == 0)
            return a;
    return ALG_UNKNOWN;
}

static size_t put_hex(char *out, const unsigned char *b, size_t n)
{
    tp_hex(out, b, n);
    return 2 * n;
}

static void put_be64(unsigned char *b, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        b[i] = (unsigned char)v;
}

static size_t digest_hex(int alg, const void *data, size_t len, char *out)
{
    unsigned char d[32];
    uint64_t h[2];
    switch (alg) {
    case ALG_SHA256:
        TP_BUG_ON(mbedtls_sha256_ret(data, len, d, 0) != 0);
        return put_hex(out, d, 32);
    case ALG_MURMUR64:
    case ALG_MURMUR128:
        tp_murmur3_128(data, len, 0, h);
        put_be64(d, h[0]);
        put_be64(d + 8, h[1]);
        return put_hex(out, d, alg == ALG_MURMUR64 ? 8 : 16);
    default: {
        /* "", murmur32 and unknown names: Tyk's truncated murmur32. */
        uint32_t v = mm32_blocks(data, len, 0);
        d[0] = (unsigned char)(v >> 24);
        d[1] = (unsigned char)(v >> 16);
        d[2] = (unsigned char)(v >> 8);
        d[3] = (unsigned char)v;
        return put_hex(out, d, 4);
    }
    }
}

size_t tp_keyhash_hex(const char *alg, const void *data, size_t len, char out[TP_KEYHASH_HEX_MAX])
{
    return digest_hex(alg ? alg_lookup(alg, strlen(alg)) : ALG_UNKNOWN, data, len, out);
}

/* ---- base64.StdEncoding.DecodeString -------------------------------------- */

int tp_b64_symbol(unsigned char c, char s62, char s63)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == (unsigned char)s62)
        return 62;
    if (c == (unsigned char)s63)
        return 63;
    return -1;
}

static size_t skip_newlines(const char *s, size_t n, size_t i)
{
    while (i < n && (s[i] == '\r' || s[i] == '\n'))
        i++;
    return i;
}

/* Decodes <n> bytes of <s> into <dst> (room for n / 4 * 3 bytes) as Go's
 * StdEncoding does: groups of four symbols; '\r' and '\n' skipped anywhere;
 * a final group must be padded to four with "=" or "=="; nothing but
 * newlines after the padding; unused bits of the last symbol not checked.
 * Returns the decoded length, or -1 where Go returns an error. */
ptrdiff_t tp_b64_std_decode(const char *s, size_t n, unsigned char *dst)
{
    size_t i = 0, o = 0;
    for (;;) {
        uint32_t acc = 0;
        int j = 0;
        while (j < 4) {
            if (i == n)
                return j == 0 ? (ptrdiff_t)o : -1;
            unsigned char c = (unsigned char)s[i++];
            int v = tp_b64_symbol(c, '+', '/');
            if (v >= 0) {
                acc = acc << 6 | (uint32_t)v;
                j++;
                continue;
            }
            if (c == '\r' || c == '\n')
                continue;
            if (c != '=' || j < 2)
                return -1;
            if (j == 2) {
                i = skip_newlines(s, n, i);
                if (i == n || s[i] != '=')
                    return -1;
                i++;
            }
            if (skip_newlines(s, n, i) != n)
                return -1;
            acc <<= 6 * (4 - j);
            dst[o++] = (unsigned char)(acc >> 16);
            if (j == 3)
                dst[o++] = (unsigned char)(acc >> 8);
            return (ptrdiff_t)o;
        }
        dst[o++] = (unsigned char)(acc >> 16);
        dst[o++] = (unsigned char)(acc >> 8);
        dst[o++] = (unsigned char)acc;
    }
}

/* ---- jsonparser.GetString(data, key) for one top-level key ---------------- *
 * buger/jsonparser (v1.1.x, what Tyk pins) does not validate the document: it
 * scans for a string followed by ':' at object depth 1, skipping nested
 * objects after a non-matching key and all arrays, and gives up on a stray
 * ':' or an unterminated string. The pieces below follow that scan. */

/* <p> points just past an opening quote. Returns the offset just past the
 * closing quote (one not preceded by an odd run of backslashes), or -1. */
static ptrdiff_t jp_string_end(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '"')
            continue;
        size_t bs = 0;
        while (bs < i && p[i - 1 - bs] == '\\')
            bs++;
        if (bs % 2 == 0)
            return (ptrdiff_t)i + 1;
    }
    return -1;
}

/* <p> points at <open>. Returns the offset just past its matching <close>
 * (only this bracket kind is counted; strings are skipped), or -1. */
static ptrdiff_t jp_block_end(const unsigned char *p, size_t n, unsigned char open,
                              unsigned char close)
{
    int level = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '"') {
            ptrdiff_t e = jp_string_end(p + i + 1, n - i - 1);
            if (e < 0)
                return -1;
            i += (size_t)e;
        } else if (p[i] == open) {
            level++;
        } else if (p[i] == close && --level == 0) {
            return (ptrdiff_t)i + 1;
        }
    }
    return -1;
}

static size_t jp_skip_ws(const unsigned char *p, size_t n, size_t i)
{
    while (i < n && (p[i] == ' ' || p[i] == '\n' || p[i] == '\r' || p[i] == '\t'))
        i++;
    return i;
}

/* Four hex digits at p[0..3], or -1. */
static long hex4(const unsigned char *p)
{
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int d = tp_hex_digit((unsigned char)p[i]);
        if (d < 0)
            return -1;
        v = v << 4 | d;
    }
    return v;
}

/* UTF-8 of <r> as Go's utf8.EncodeRune writes it (U+FFFD when invalid). */
static size_t utf8_put(unsigned char *o, long r)
{
    if (r < 0x80) {
        o[0] = (unsigned char)r;
        return 1;
    }
    if (r < 0x800) {
        o[0] = (unsigned char)(0xc0 | r >> 6);
        o[1] = (unsigned char)(0x80 | (r & 0x3f));
        return 2;
    }
    if (r > 0x10ffff || (r >= 0xd800 && r <= 0xdfff))
        r = 0xfffd;
    if (r < 0x10000) {
        o[0] = (unsigned char)(0xe0 | r >> 12);
        o[1] = (unsigned char)(0x80 | (r >> 6 & 0x3f));
        o[2] = (unsigned char)(0x80 | (r & 0x3f));
        return 3;
    }
    o[0] = (unsigned char)(0xf0 | r >> 18);
    o[1] = (unsigned char)(0x80 | (r >> 12 & 0x3f));
    o[2] = (unsigned char)(0x80 | (r >> 6 & 0x3f));
    o[3] = (unsigned char)(0x80 | (r & 0x3f));
    return 4;
}

/* jsonparser's Unescape of a string body into <o> (never longer than the
 * input). Its quirks are kept: a \u escape in D800-DFFF (high or low) takes
 * the next six bytes as its partner without checking they start with "\u",
 * and accepts any partner >= DC00. Returns the output length, or -1. */
static ptrdiff_t jp_unescape(const unsigned char *s, size_t n, unsigned char *o)
{
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    size_t i = 0, w = 0;
    while (i < n) {
        if (s[i] != '\\') {
            o[w++] = s[i++];
            continue;
        }
        if (n - i < 2)
            return -1;
        const char *m = s[i + 1] ? strchr(from, s[i + 1]) : NULL;
        if (m != NULL) {
            o[w++] = (unsigned char)to[m - from];
            i += 2;
            continue;
        }
        if (s[i + 1] != 'u' || n - i < 6)
            return -1;
        long r = hex4(s + i + 2);
        if (r < 0)
            return -1;
        if (r < 0xd800 || r > 0xdfff) {
            w += utf8_put(o + w, r);
            i += 6;
            continue;
        }
        long r2 = n - i >= 12 ? hex4(s + i + 8) : -1;
        if (r2 < 0xdc00)
            return -1;
        w += utf8_put(o + w, 0x10000 + ((r - 0xd800) << 10) + (r2 - 0xdc00));
        i += 12;
    }
    return (ptrdiff_t)w;
}

/* The string value of top-level <key> in <d>, unescaped into <out> (room for
 * n bytes; also used as scratch). Returns its length, or -1 where jsonparser.GetString fails (key
 * not found, value not a string, malformed). */
static ptrdiff_t jp_get_string(const unsigned char *d, size_t n, const char *key,
                               unsigned char *out)
{
    size_t klen = strlen(key), i = 0;
    int level = 0, key_level = 0, last_matched = 1;
    ptrdiff_t e;
    for (;; i++) {
        if (i >= n)
            return -1;
        switch (d[i]) {
        case '"': {
            size_t kb = i + 1;
            if ((e = jp_string_end(d + kb, n - kb)) < 0)
                return -1;
            size_t ke = kb + (size_t)e - 1; /* the closing quote */
            i = jp_skip_ws(d, n, ke + 1);
            if (i == n)
                return -1;
            if (d[i] != ':') {
                i--; /* a value: look at what follows it */
                break;
            }
            if (level != 1) /* a key outside the object, or nested in it */
                return -1;
            const unsigned char *k = d + kb;
            ptrdiff_t kn = (ptrdiff_t)(ke - kb);
            if (memchr(k, '\\', ke - kb) != NULL) {
                /* <out> is free until the value is copied: scratch for the key */
                if ((kn = jp_unescape(k, ke - kb, out)) < 0)
                    return -1;
                k = out;
            }
            last_matched = (size_t)kn == klen && memcmp(k, key, klen) == 0;
            if (last_matched && key_level == 0) {
                i++;
                goto value;
            }
            break;
        }
        case '{':
            if (last_matched) {
                level++;
            } else {
                if ((e = jp_block_end(d + i, n - i, '{', '}')) < 0)
                    return -1;
                i += (size_t)e - 1;
            }
            break;
        case '}':
            if (--level == key_level)
                key_level--;
            break;
        case '[':
            if ((e = jp_block_end(d + i, n - i, '[', ']')) < 0)
                return -1;
            i += (size_t)e - 1;
            break;
        case ':':
            return -1;
        }
    }
value:
    i = jp_skip_ws(d, n, i);
    if (i == n || d[i] != '"')
        return -1;
    if ((e = jp_string_end(d + i + 1, n - i - 1)) < 0)
        return -1;
    const unsigned char *v = d + i + 1;
    size_t vn = (size_t)e - 1;
    if (memchr(v, '\\', vn) == NULL) {
        memcpy(out, v, vn);
        return (ptrdiff_t)vn;
    }
    return jp_unescape(v, vn, out);
}

/* ---- tokens (TokenOrg, TokenHashAlgo) ------------------------------------- */

/* For a token starting with "ey" that base64-decodes, the string at <key>
 * of the decoded JSON, unescaped into <out> (cap bytes incl. a NUL).
 * Returns its length, -ENOENT, or -ENOSPC. */
static int token_field(tp_str_t token, const char *key, char *out, size_t cap)
{
    if (token.n < 2 || token.p[0] != 'e' || token.p[1] != 'y' || token.n > (size_t)INT_MAX)
        return -ENOENT;
    unsigned char stack[768], *dec = stack, *val;
    size_t room = token.n / 4 * 3;
    /* decoded JSON, then the value (never longer than the JSON) */
    if (2 * room > sizeof(stack))
        dec = tp_malloc(2 * room);
    val = dec + room;
    int rc = -ENOENT;
    ptrdiff_t n = tp_b64_std_decode(token.p, token.n, dec);
    if (n >= 0 && (n = jp_get_string(dec, (size_t)n, key, val)) >= 0) {
        if ((size_t)n >= cap) {
            rc = -ENOSPC;
        } else {
            memcpy(out, val, (size_t)n);
            out[n] = '\0';
            rc = (int)n;
        }
    }
    if (dec != stack)
        free(dec);
    return rc;
}

int tp_key_token_org(tp_str_t token, char *out, size_t cap)
{
    int rc = token_field(token, "org", out, cap);
    if (rc != -ENOENT)
        return rc;
    /* A legacy key: org (a 24-hex Mongo ObjectId) + id. */
    enum { OBJECT_ID_LEN = 24 };
    size_t n = 0;
    if (token.n > OBJECT_ID_LEN) {
        n = OBJECT_ID_LEN;
        for (size_t i = 0; i < OBJECT_ID_LEN; i++)
            if (tp_hex_digit((unsigned char)token.p[i]) < 0)
                n = 0;
    }
    if (n >= cap)
        return -ENOSPC;
    memcpy(out, token.p, n);
    out[n] = '\0';
    return (int)n;
}

int tp_key_token_alg(tp_str_t token, char *out, size_t cap)
{
    return token_field(token, "h", out, cap);
}

/* ---- HashKey -------------------------------------------------------------- */

tp_str_t tp_key_storage_hash(tp_str_t key, int hash_keys, char out[TP_KEYHASH_HEX_MAX])
{
    if (!hash_keys)
        return key;
    /* A name too long for <name> is no known name: murmur32, like none. */
    char name[16];
    int n = tp_key_token_alg(key, name, sizeof(name));
    int alg = n >= 0 ? alg_lookup(name, (size_t)n) : ALG_UNKNOWN;
    size_t len = digest_hex(alg, key.p, key.n, out);
    return (tp_str_t){out, len};
}

/* ---- generateToken -------------------------------------------------------- */

/* 16 random bytes as a v4 UUID, 32 lowercase hex characters and a NUL. */
static int uuid4_hex(char out[33])
{
    unsigned char b[16];
    size_t got = 0;
    while (got < sizeof(b)) {
        ssize_t r = getrandom(b + got, sizeof(b) - got, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        got += (size_t)r;
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    put_hex(out, b, sizeof(b));
    return 0;
}

int tp_key_generate(tp_buf_t *out, tp_str_t org, tp_str_t id, const char *alg)
{
    char uuid[33];
    if (org.n > 0 && id.n >= org.n && memcmp(id.p, org.p, org.n) == 0) {
        id.p += org.n;
        id.n -= org.n;
    }
    if (id.n == 0) {
        int rc = uuid4_hex(uuid);
        if (rc < 0)
            return rc;
        id = (tp_str_t){uuid, 32};
    }
    if (alg == NULL || alg[0] == '\0') {
        tp_buf_put_str(out, org);
        tp_buf_put_str(out, id);
        return 0;
    }
    int a = alg_lookup(alg, strlen(alg));
    const char *name = a == ALG_UNKNOWN ? "murmur64" : alg_names[a];

    /* fmt.Sprintf(`{"org":"%s","id":"%s","h":"%s"}`): no escaping. */
    tp_buf_t json = {0};
    tp_buf_puts(&json, "{\"org\":\"");
    tp_buf_put_str(&json, org);
    tp_buf_puts(&json, "\",\"id\":\"");
    tp_buf_put_str(&json, id);
    tp_buf_puts(&json, "\",\"h\":\"");
    tp_buf_puts(&json, name);
    tp_buf_puts(&json, "\"}");

    size_t need = (json.len + 2) / 3 * 4 + 1, olen = 0;
    unsigned char *dst = (unsigned char *)tp_buf_reserve(out, need);
    int rc = mbedtls_base64_encode(dst, need, &olen, (const unsigned char *)json.data, json.len);
    TP_BUG_ON(rc != 0);
    out->len += olen;
    tp_buf_free(&json);
    return 0;
}
