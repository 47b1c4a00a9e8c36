/*
 * common/tp_zip.c: ZIP archives and RFC 1951 inflate (see tp_zip.h).
 *
 * Inflate decodes canonical Huffman codes a bit at a time from the code
 * length counts (RFC 1951 3.2.2): slower than table lookups, but small,
 * and bundles are a few kilobytes read once per load.
 */
#include "tp_zip.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tp_err.h"

/* ---- inflate -------------------------------------------------------------------------- */

#define MAXBITS 15
#define NLIT 288
#define NDIST 30

typedef struct inf_s {
    const uint8_t *in;
    size_t n, pos;
    uint32_t bitbuf;
    int bitcnt;
    tp_buf_t *out;
    size_t start, max; /* where this stream's output began, and its cap */
    const char *why;
} inf_t;

typedef struct huff_s {
    uint16_t count[MAXBITS + 1]; /* codes of each length */
    uint16_t sym[NLIT];          /* symbols, by code */
} huff_t;

static int need(inf_t *s, int nbits, uint32_t *v)
{
    while (s->bitcnt < nbits) {
        if (s->pos >= s->n) {
            s->why = "the compressed data ends early";
            return -1;
        }
        s->bitbuf |= (uint32_t)s->in[s->pos++] << s->bitcnt;
        s->bitcnt += 8;
    }
    *v = s->bitbuf & ((1u << nbits) - 1);
    s->bitbuf >>= nbits;
    s->bitcnt -= nbits;
    return 0;
}

/* The canonical code of <n> lengths: 0, or -1 when they over-subscribe. */
static int huff_build(huff_t *h, const uint8_t *len, int n)
{
    memset(h->count, 0, sizeof(h->count));
    for (int i = 0; i < n; i++)
        h->count[len[i]]++;
    int left = 1;
    for (int b = 1; b <= MAXBITS; b++) {
        left = (left << 1) - h->count[b];
        if (left < 0)
            return -1;
    }
    uint16_t offs[MAXBITS + 2];
    offs[1] = 0;
    for (int b = 1; b < MAXBITS; b++)
        offs[b + 1] = (uint16_t)(offs[b] + h->count[b]);
    for (int i = 0; i < n; i++)
        if (len[i] != 0)
            h->sym[offs[len[i]]++] = (uint16_t)i;
    return 0;
}

/* The next symbol of code <h>, or -1. */
static int decode(inf_t *s, const huff_t *h)
{
    int code = 0, first = 0, index = 0;
    for (int b = 1; b <= MAXBITS; b++) {
        uint32_t bit;
        if (need(s, 1, &bit) < 0)
            return -1;
        code |= (int)bit;
        int count = h->count[b];
        if (code - first < count)
            return h->sym[index + (code - first)];
        index += count;
        first = (first + count) << 1;
        code <<= 1;
    }
    s->why = "a code that is not in the table";
    return -1;
}

static int put(inf_t *s, uint8_t c)
{
    if (s->out->len - s->start >= s->max) {
        s->why = "the data is larger than allowed";
        return -1;
    }
    tp_buf_putc(s->out, (char)c);
    return 0;
}

static const uint16_t len_base[29] = {3,  4,  5,  6,   7,   8,   9,   10,  11, 13,
                                      15, 17, 19, 23,  27,  31,  35,  43,  51, 59,
                                      67, 83, 99, 115, 131, 163, 195, 227, 258};
static const uint8_t len_extra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                      2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
static const uint16_t dist_base[30] = {
    1,   2,   3,   4,   5,   7,    9,    13,   17,   25,   33,   49,   65,    97,    129,
    193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
static const uint8_t dist_extra[30] = {0, 0, 0, 0, 1, 1, 2, 2,  3,  3,  4,  4,  5,  5,  6,
                                       6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};

/* Literals and matches until the end-of-block symbol. */
static int codes(inf_t *s, const huff_t *lit, const huff_t *dist)
{
    for (;;) {
        int sym = decode(s, lit);
        if (sym < 0)
            return -1;
        if (sym < 256) {
            if (put(s, (uint8_t)sym) < 0)
                return -1;
            continue;
        }
        if (sym == 256)
            return 0;
        sym -= 257;
        if (sym >= 29) {
            s->why = "a length code out of range";
            return -1;
        }
        uint32_t e;
        if (need(s, len_extra[sym], &e) < 0)
            return -1;
        size_t len = len_base[sym] + e;
        int ds = decode(s, dist);
        if (ds < 0)
            return -1;
        if (ds >= 30) {
            s->why = "a distance code out of range";
            return -1;
        }
        if (need(s, dist_extra[ds], &e) < 0)
            return -1;
        size_t d = dist_base[ds] + e;
        if (d > s->out->len - s->start) {
            s->why = "a distance back past the start";
            return -1;
        }
        for (size_t i = 0; i < len; i++)
            if (put(s, (uint8_t)s->out->data[s->out->len - d]) < 0)
                return -1;
    }
}

static int stored(inf_t *s)
{
    s->bitbuf = 0; /* to a byte boundary */
    s->bitcnt = 0;
    if (s->pos + 4 > s->n) {
        s->why = "the compressed data ends early";
        return -1;
    }
    unsigned len = s->in[s->pos] | (unsigned)s->in[s->pos + 1] << 8;
    unsigned nlen = s->in[s->pos + 2] | (unsigned)s->in[s->pos + 3] << 8;
    s->pos += 4;
    if (len != (~nlen & 0xffff)) {
        s->why = "a stored block's length does not check";
        return -1;
    }
    if (s->pos + len > s->n) {
        s->why = "the compressed data ends early";
        return -1;
    }
    if (s->out->len - s->start + len > s->max) {
        s->why = "the data is larger than allowed";
        return -1;
    }
    tp_buf_append(s->out, s->in + s->pos, len);
    s->pos += len;
    return 0;
}

static int fixed(inf_t *s)
{
    static huff_t lit, dist;
    static int built;
    if (!built) {
        uint8_t l[NLIT];
        int i = 0;
        for (; i < 144; i++)
            l[i] = 8;
        for (; i < 256; i++)
            l[i] = 9;
        for (; i < 280; i++)
            l[i] = 7;
        for (; i < NLIT; i++)
            l[i] = 8;
        huff_build(&lit, l, NLIT);
        for (i = 0; i < NDIST; i++)
            l[i] = 5;
        huff_build(&dist, l, NDIST);
        built = 1;
    }
    return codes(s, &lit, &dist);
}

static int dynamic(inf_t *s)
{
    static const uint8_t order[19] = {16, 17, 18, 0, 8,  7, 9,  6, 10, 5,
                                      11, 4,  12, 3, 13, 2, 14, 1, 15};
    uint32_t hlit, hdist, hclen;
    if (need(s, 5, &hlit) < 0 || need(s, 5, &hdist) < 0 || need(s, 4, &hclen) < 0)
        return -1;
    hlit += 257;
    hdist += 1;
    hclen += 4;
    if (hlit > 286 || hdist > NDIST) {
        s->why = "too many codes";
        return -1;
    }
    uint8_t len[NLIT + NDIST];
    memset(len, 0, sizeof(len));
    for (uint32_t i = 0; i < hclen; i++) {
        uint32_t v;
        if (need(s, 3, &v) < 0)
            return -1;
        len[order[i]] = (uint8_t)v;
    }
    huff_t lencode, lit, dist;
    if (huff_build(&lencode, len, 19) < 0) {
        s->why = "bad code lengths";
        return -1;
    }
    memset(len, 0, sizeof(len));
    uint32_t at = 0;
    while (at < hlit + hdist) {
        int sym = decode(s, &lencode);
        if (sym < 0)
            return -1;
        if (sym < 16) {
            len[at++] = (uint8_t)sym;
            continue;
        }
        uint32_t rep, v;
        uint8_t val = 0;
        if (sym == 16) {
            if (at == 0) {
                s->why = "a repeat with nothing before it";
                return -1;
            }
            val = len[at - 1];
            if (need(s, 2, &v) < 0)
                return -1;
            rep = 3 + v;
        } else if (sym == 17) {
            if (need(s, 3, &v) < 0)
                return -1;
            rep = 3 + v;
        } else {
            if (need(s, 7, &v) < 0)
                return -1;
            rep = 11 + v;
        }
        if (at + rep > hlit + hdist) {
            s->why = "too many code lengths";
            return -1;
        }
        while (rep-- > 0)
            len[at++] = val;
    }
    if (len[256] == 0) {
        s->why = "no end-of-block code";
        return -1;
    }
    if (huff_build(&lit, len, (int)hlit) < 0 || huff_build(&dist, len + hlit, (int)hdist) < 0) {
        s->why = "bad code lengths";
        return -1;
    }
    return codes(s, &lit, &dist);
}

int tp_inflate(const void *in, size_t n, tp_buf_t *out, size_t max, char *err, size_t errlen)
{
    inf_t s = {.in = in, .n = n, .out = out, .start = out->len, .max = max};
    uint32_t last = 0, type;
    int rc = 0;
    while (rc == 0 && !last) {
        if (need(&s, 1, &last) < 0 || need(&s, 2, &type) < 0) {
            rc = -1;
            break;
        }
        if (type == 0)
            rc = stored(&s);
        else if (type == 1)
            rc = fixed(&s);
        else if (type == 2)
            rc = dynamic(&s);
        else {
            s.why = "a block of an unknown type";
            rc = -1;
        }
    }
    if (rc < 0)
        snprintf(err, errlen, "inflate: %s", s.why != NULL ? s.why : "bad data");
    return rc;
}

uint32_t tp_crc32(const void *p, size_t n)
{
    static uint32_t table[256];
    if (table[1] == 0)
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++)
                c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
    uint32_t c = 0xffffffffu;
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        c = table[(c ^ b[i]) & 0xff] ^ (c >> 8);
    return c ^ 0xffffffffu;
}

/* ---- the archive ---------------------------------------------------------------------- */

static uint32_t le16(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}

static uint32_t le32(const uint8_t *p)
{
    return le16(p) | le16(p + 2) << 16;
}

static int name_ok(const char *s)
{
    if (s[0] == '\0' || s[0] == '/' || strchr(s, '\\') != NULL)
        return 0;
    for (const char *p = s; *p != '\0';) {
        const char *e = strchr(p, '/');
        size_t n = e != NULL ? (size_t)(e - p) : strlen(p);
        if (n == 2 && p[0] == '.' && p[1] == '.')
            return 0;
        p += n;
        if (*p == '/')
            p++;
    }
    return 1;
}

int tp_zip_read(const void *zip, size_t n, size_t max, tp_zip_entry_t **out, size_t *count,
                char *err, size_t errlen)
{
    const uint8_t *z = zip;
    *out = NULL;
    *count = 0;
    /* the end of central directory record, within the last 64 KiB + 22 */
    size_t eocd = SIZE_MAX;
    for (size_t i = n >= 22 ? n - 22 : SIZE_MAX; i != SIZE_MAX && n - i <= 65557; i--) {
        if (le32(z + i) == 0x06054b50u) {
            eocd = i;
            break;
        }
        if (i == 0)
            break;
    }
    if (eocd == SIZE_MAX) {
        snprintf(err, errlen, "not a zip archive (no end of central directory)");
        return -1;
    }
    size_t entries = le16(z + eocd + 10), cd = le32(z + eocd + 16);
    if (entries == 0xffff || cd == 0xffffffffu) {
        snprintf(err, errlen, "ZIP64 archives are not supported");
        return -1;
    }
    tp_zip_entry_t *v = tp_calloc(entries + 1, sizeof(*v));
    size_t total = 0, at = cd;
    for (size_t k = 0; k < entries; k++) {
        if (at + 46 > n || le32(z + at) != 0x02014b50u) {
            snprintf(err, errlen, "a broken central directory (entry %zu)", k);
            goto fail;
        }
        uint32_t flags = le16(z + at + 8), method = le16(z + at + 10), crc = le32(z + at + 16);
        size_t csize = le32(z + at + 20), usize = le32(z + at + 24);
        size_t nl = le16(z + at + 28), xl = le16(z + at + 30), cl = le16(z + at + 32);
        size_t loc = le32(z + at + 42);
        if (at + 46 + nl > n) {
            snprintf(err, errlen, "a broken central directory (entry %zu)", k);
            goto fail;
        }
        tp_zip_entry_t *e = &v[(*count)++];
        e->name = tp_malloc(nl + 1);
        memcpy(e->name, z + at + 46, nl);
        e->name[nl] = '\0';
        at += 46 + nl + xl + cl;
        if (memchr(e->name, '\0', nl) != NULL || !name_ok(e->name)) {
            snprintf(err, errlen, "entry \"%s\": a name outside the archive", e->name);
            goto fail;
        }
        if (flags & 1) {
            snprintf(err, errlen, "entry \"%s\": encrypted entries are not supported", e->name);
            goto fail;
        }
        e->dir = nl > 0 && e->name[nl - 1] == '/';
        if (loc + 30 > n || le32(z + loc) != 0x04034b50u) {
            snprintf(err, errlen, "entry \"%s\": a broken local header", e->name);
            goto fail;
        }
        size_t data = loc + 30 + le16(z + loc + 26) + le16(z + loc + 28);
        if (data > n || csize > n - data) {
            snprintf(err, errlen, "entry \"%s\": its data runs past the archive", e->name);
            goto fail;
        }
        if (usize > max - total) {
            snprintf(err, errlen, "entry \"%s\": the archive holds more than %zu bytes", e->name,
                     max);
            goto fail;
        }
        char why[200];
        if (method == 0) {
            tp_buf_append(&e->data, z + data, csize);
        } else if (method == 8) {
            if (tp_inflate(z + data, csize, &e->data, max - total, why, sizeof(why)) < 0) {
                snprintf(err, errlen, "entry \"%s\": %s", e->name, why);
                goto fail;
            }
        } else {
            snprintf(err, errlen, "entry \"%s\": compression method %u is not supported", e->name,
                     method);
            goto fail;
        }
        if (e->data.len != usize || tp_crc32(e->data.data, e->data.len) != crc) {
            snprintf(err, errlen, "entry \"%s\": its size or CRC-32 does not check", e->name);
            goto fail;
        }
        total += e->data.len;
    }
    *out = v;
    return 0;
fail:
    tp_zip_free(v, *count);
    *count = 0;
    return -1;
}

void tp_zip_free(tp_zip_entry_t *e, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        free(e[i].name);
        tp_buf_free(&e[i].data);
    }
    free(e);
}
