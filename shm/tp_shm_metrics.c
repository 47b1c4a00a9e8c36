/*
 * shm/tp_shm_metrics.c: the Prometheus counters in shared memory (see
 * tp_shm_metrics.h for the layout and why it needs no locks).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "tp_counter.h"
#include "tp_keyhash.h"
#include "tp_shm_metrics.h"
#include "tp_shm_map.h"

#define PROBES 32 /* directory slots tried from a label's home slot */

const uint32_t tp_met_buckets[TP_MET_BUCKETS] = {
    1,  2,  5,   7,   10,  15,  20,  25,   30,   40,   50,    60,    70,
    80, 90, 100, 200, 300, 400, 500, 1000, 2000, 5000, 10000, 30000, 60000};

typedef struct series_s {
    _Atomic uint64_t hash;  /* 0: free */
    _Atomic uint32_t ready; /* the labels below are written */
    uint8_t fam;
    uint8_t nlabels;
    uint16_t code;
    char label[TP_MET_LABEL]; /* the labels, each NUL-terminated */
} series_t;

_Static_assert(sizeof(series_t) == 248, "an entry is 248 bytes");

struct tp_metrics_s {
    uint32_t magic;
    uint32_t nrows;
    uint32_t max_apis;
    uint32_t max_series;
    uint32_t mask; /* directory entries - 1 */
    size_t size;
    size_t apis_off;   /* tp_met_api_t [nrows][max_apis] */
    size_t series_off; /* series_t [mask + 1] */
    size_t counts_off; /* _Atomic uint64_t [nrows][mask + 1] */
    _Atomic uint32_t used[TP_MET_FAMILIES];
    _Atomic uint64_t lost;
};

static size_t align(size_t n)
{
    return (n + 63) & ~(size_t)63;
}

tp_metrics_t *tp_metrics_create(uint32_t nrows, uint32_t max_apis, uint32_t max_series, char *err,
                                size_t errlen)
{
    /* room for every family's series and their overflow, at most half full */
    size_t want = 2 * ((size_t)max_series * TP_MET_FAMILIES + 64 * TP_MET_FAMILIES), n = 64;
    while (n < want)
        n <<= 1;
    size_t off = align(sizeof(tp_metrics_t));
    size_t apis_off = off;
    off = align(off + (size_t)nrows * max_apis * sizeof(tp_met_api_t));
    size_t series_off = off;
    off = align(off + n * sizeof(series_t));
    size_t counts_off = off;
    off = align(off + (size_t)nrows * n * sizeof(uint64_t));
    void *p = tp_shm_map(off, "the metrics", err, errlen);
    if (p == NULL)
        return NULL;
    tp_metrics_t *m = p;
    m->magic = 0x54504d54; /* "TPMT" */
    m->nrows = nrows;
    m->max_apis = max_apis;
    m->max_series = max_series;
    m->mask = (uint32_t)(n - 1);
    m->size = off;
    m->apis_off = apis_off;
    m->series_off = series_off;
    m->counts_off = counts_off;
    return m;
}

uint32_t tp_metrics_rows(const tp_metrics_t *m)
{
    return m->nrows;
}

tp_met_api_t *tp_metrics_api(tp_metrics_t *m, int row, uint32_t stat_idx)
{
    if (row < 0 || (uint32_t)row >= m->nrows || stat_idx >= m->max_apis)
        return NULL;
    tp_met_api_t *a = (tp_met_api_t *)((char *)m + m->apis_off);
    return &a[(size_t)row * m->max_apis + stat_idx];
}

static void observe(tp_met_api_t *a, int type, int64_t ms)
{
    if (ms < 0)
        ms = 0;
    int b = 0;
    while (b < TP_MET_BUCKETS && (uint64_t)ms > tp_met_buckets[b])
        b++;
    tp_counter_add(&a->lat[type][b], 1);
    tp_counter_add(&a->lat_sum[type], (uint64_t)ms);
}

void tp_metrics_count(tp_met_api_t *a, int code, int64_t ms, int64_t up_ms)
{
    int i;
    for (i = 0; i < TP_MET_CODES; i++) {
        uint32_t c = atomic_load_explicit(&a->code[i], memory_order_relaxed);
        if (c == (uint32_t)code)
            break;
        if (c == 0) {
            /* the count is zero until the code is published */
            atomic_store_explicit(&a->code[i], (uint32_t)code, memory_order_release);
            break;
        }
    }
    if (i < TP_MET_CODES)
        tp_counter_add(&a->count[i], 1);
    else
        tp_counter_add(&a->other, 1);
    observe(a, TP_MET_LAT_TOTAL, ms);
    if (up_ms >= 0) {
        observe(a, TP_MET_LAT_UPSTREAM, up_ms);
        observe(a, TP_MET_LAT_GATEWAY, ms - up_ms);
    }
}

static series_t *dir(tp_metrics_t *m)
{
    return (series_t *)((char *)m + m->series_off);
}

static _Atomic uint64_t *counts(tp_metrics_t *m, int row)
{
    return (_Atomic uint64_t *)((char *)m + m->counts_off) + (size_t)row * (m->mask + 1);
}

/* The labels, NUL-separated and cut to fit, into <out>; their length. */
static size_t pack(char *out, const char *const *v, const size_t *len, int n)
{
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        size_t room = TP_MET_LABEL - at - (size_t)(n - i); /* a NUL for each left */
        size_t k = len[i] < room ? len[i] : room;
        memcpy(out + at, v[i], k);
        at += k;
        out[at++] = '\0';
    }
    return at;
}

static int same(const series_t *e, int fam, int code, int n, const char *lab, size_t llen)
{
    return e->fam == fam && e->code == code && e->nlabels == n && memcmp(e->label, lab, llen) == 0;
}

/* The entry of these labels: found, or claimed when the family has room
 * (<may_claim>). -1 when not found and not claimed. */
static int64_t find(tp_metrics_t *m, int fam, int code, const char *lab, size_t llen, int n,
                    int may_claim)
{
    uint64_t h2[2];
    tp_murmur3_128(lab, llen, (uint32_t)(fam * 1000 + code), h2);
    uint64_t h = h2[0] != 0 ? h2[0] : 1;
    series_t *d = dir(m);
    for (uint32_t p = 0; p < PROBES; p++) {
        uint32_t i = (uint32_t)(h + p) & m->mask;
        series_t *e = &d[i];
        uint64_t eh = atomic_load_explicit(&e->hash, memory_order_acquire);
        if (eh == h) {
            /* another worker may still be writing the labels: they are
             * short, so wait a little, then count this one as lost */
            int spins = 0;
            while (!atomic_load_explicit(&e->ready, memory_order_acquire) && spins < 1000)
                spins++;
            if (!atomic_load_explicit(&e->ready, memory_order_acquire))
                return -1;
            if (same(e, fam, code, n, lab, llen))
                return i;
            continue;
        }
        if (eh != 0)
            continue;
        if (!may_claim)
            return -1;
        uint64_t zero = 0;
        if (!atomic_compare_exchange_strong(&e->hash, &zero, h)) {
            if (zero == h) { /* claimed for the same hash meanwhile: look again */
                p--;
                continue;
            }
            continue;
        }
        e->fam = (uint8_t)fam;
        e->code = (uint16_t)code;
        e->nlabels = (uint8_t)n;
        memcpy(e->label, lab, llen);
        atomic_store_explicit(&e->ready, 1, memory_order_release);
        return i;
    }
    return -1;
}

void tp_metrics_count_series(tp_metrics_t *m, int row, int fam, int code, const char *const *v,
                             const size_t *len, int n)
{
    if (row < 0 || (uint32_t)row >= m->nrows || fam < 0 || fam >= TP_MET_FAMILIES)
        return;
    char lab[TP_MET_LABEL];
    size_t llen = pack(lab, v, len, n);
    int64_t i = find(m, fam, code, lab, llen, n, 0);
    if (i < 0 && atomic_load_explicit(&m->used[fam], memory_order_relaxed) < m->max_series) {
        if (atomic_fetch_add(&m->used[fam], 1) < m->max_series)
            i = find(m, fam, code, lab, llen, n, 1);
        else
            atomic_fetch_sub(&m->used[fam], 1);
    }
    if (i < 0) {
        /* the family is full: its overflow series for this code */
        static const char other[] = "other";
        const char *ov[4] = {other, other, other, other};
        size_t ol[4] = {5, 5, 5, 5};
        llen = pack(lab, ov, ol, n);
        i = find(m, fam, code, lab, llen, n, 1);
    }
    if (i < 0) {
        atomic_fetch_add_explicit(&m->lost, 1, memory_order_relaxed);
        return;
    }
    tp_counter_add(&counts(m, row)[i], 1);
}

/* ---- reading ---------------------------------------------------------------------- */

static int row_set(const uint64_t *rows, uint32_t k)
{
    return (rows[k / 64] >> (k % 64)) & 1;
}

void tp_metrics_api_sum(tp_metrics_t *m, const uint64_t *rows, uint32_t stat_idx, tp_met_sum_t *out)
{
    memset(out, 0, sizeof(*out));
    for (uint32_t k = 0; k < m->nrows; k++) {
        tp_met_api_t *a = row_set(rows, k) ? tp_metrics_api(m, (int)k, stat_idx) : NULL;
        if (a == NULL)
            continue;
        for (int i = 0; i < TP_MET_CODES; i++) {
            uint32_t c = atomic_load_explicit(&a->code[i], memory_order_acquire);
            if (c == 0)
                break;
            uint32_t j = 0;
            while (j < out->ncodes && out->code[j] != c)
                j++;
            if (j == out->ncodes) {
                if (j == TP_MET_CODES * 2) {
                    out->other += tp_counter_get(&a->count[i]);
                    continue;
                }
                out->code[out->ncodes++] = c;
            }
            out->count[j] += tp_counter_get(&a->count[i]);
        }
        out->other += tp_counter_get(&a->other);
        for (int t = 0; t < TP_MET_LAT_TYPES; t++) {
            for (int b = 0; b <= TP_MET_BUCKETS; b++)
                out->lat[t][b] += tp_counter_get(&a->lat[t][b]);
            out->lat_sum[t] += tp_counter_get(&a->lat_sum[t]);
        }
    }
}

void tp_metrics_each_series(tp_metrics_t *m, const uint64_t *rows,
                            void (*fn)(void *arg, int fam, int code, const char *const *v, int n,
                                       uint64_t count),
                            void *arg)
{
    series_t *d = dir(m);
    for (uint32_t i = 0; i <= m->mask; i++) {
        series_t *e = &d[i];
        if (atomic_load_explicit(&e->hash, memory_order_relaxed) == 0 ||
            !atomic_load_explicit(&e->ready, memory_order_acquire))
            continue;
        uint64_t sum = 0;
        for (uint32_t k = 0; k < m->nrows; k++)
            if (row_set(rows, k))
                sum += tp_counter_get(&counts(m, (int)k)[i]);
        if (sum == 0)
            continue;
        const char *v[4];
        const char *p = e->label;
        int n = e->nlabels < 4 ? e->nlabels : 4;
        for (int j = 0; j < n; j++) {
            v[j] = p;
            p += strlen(p) + 1;
        }
        fn(arg, e->fam, e->code, v, n, sum);
    }
}

uint32_t tp_metrics_series_used(tp_metrics_t *m, int fam)
{
    uint32_t u = atomic_load(&m->used[fam]);
    return u < m->max_series ? u : m->max_series;
}

uint64_t tp_metrics_series_lost(tp_metrics_t *m)
{
    return atomic_load(&m->lost);
}
