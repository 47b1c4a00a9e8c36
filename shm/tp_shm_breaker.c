/*
 * shm/tp_shm_breaker.c: circuit breakers in shared memory (see
 * tp_shm_breaker.h).
 */
#include <stdio.h>
#include <string.h>

#include "tp_keyhash.h"
#include "tp_shm_breaker.h"
#include "tp_shm_map.h"

#define WINDOW 10          /* one-second buckets */
#define FIRST_BACKOFF 500  /* ms before the first half-open trial */
#define TRIAL_STALE 30000  /* ms after which a trial that never reported is given up */
#define COUNT_MAX 0xFFFFFu /* 20 bits per count */

struct tp_breaker_s {
    _Atomic uint64_t key; /* 0: free */
    _Atomic uint64_t bucket[WINDOW];
    _Atomic uint32_t open;
    _Atomic uint32_t backoff_ms;
    _Atomic int64_t opened_ms;
    _Atomic int64_t retry_ms; /* the next half-open trial, not before */
    _Atomic int64_t trial_ms; /* a trial went through then; 0: none */
    _Atomic uint64_t trips;
    char label[128];
} __attribute__((aligned(64)));

struct tp_breakers_s {
    uint32_t magic;
    uint32_t mask;
    size_t size;
    tp_breaker_t b[];
};

tp_breakers_t *tp_breakers_create(size_t entries, char *err, size_t errlen)
{
    size_t n = 16;
    while (n < entries && n < ((size_t)1 << 20))
        n <<= 1;
    size_t size = sizeof(tp_breakers_t) + n * sizeof(tp_breaker_t);
    void *p = tp_shm_map(size, "the circuit breakers", err, errlen);
    if (p == NULL)
        return NULL;
    tp_breakers_t *t = p;
    t->magic = 0x54504342; /* "TPCB" */
    t->mask = (uint32_t)(n - 1);
    t->size = size;
    return t;
}

tp_breaker_t *tp_breaker_get(tp_breakers_t *t, const char *key, size_t klen, const char *label)
{
    uint64_t h[2];
    tp_murmur3_128(key, klen, 0x74706362, h);
    uint64_t k = h[0] != 0 ? h[0] : 1;
    for (uint32_t i = 0; i <= t->mask; i++) {
        tp_breaker_t *b = &t->b[(k + i) & t->mask];
        uint64_t cur = atomic_load(&b->key);
        if (cur == k)
            return b;
        if (cur == 0 && atomic_compare_exchange_strong(&b->key, &cur, k)) {
            snprintf(b->label, sizeof(b->label), "%s", label);
            return b;
        }
        if (cur == k)
            return b;
    }
    return NULL;
}

static uint64_t pack(uint64_t sec, uint64_t ok, uint64_t fail)
{
    return (sec & 0xFFFFFF) << 40 | ok << 20 | fail;
}

static void add(tp_breaker_t *b, int64_t now_ms, int failed)
{
    uint64_t sec = (uint64_t)now_ms / 1000;
    _Atomic uint64_t *w = &b->bucket[sec % WINDOW];
    uint64_t cur = atomic_load(w), next;
    do {
        uint64_t ok = 0, fail = 0;
        if (cur >> 40 == (sec & 0xFFFFFF)) {
            ok = cur >> 20 & COUNT_MAX;
            fail = cur & COUNT_MAX;
        }
        if (failed && fail < COUNT_MAX)
            fail++;
        else if (!failed && ok < COUNT_MAX)
            ok++;
        next = pack(sec, ok, fail);
    } while (!atomic_compare_exchange_weak(w, &cur, next));
}

static void window(tp_breaker_t *b, int64_t now_ms, uint32_t *fails, uint32_t *total)
{
    uint64_t sec = (uint64_t)now_ms / 1000;
    uint32_t f = 0, n = 0;
    for (int i = 0; i < WINDOW; i++) {
        uint64_t v = atomic_load(&b->bucket[i]);
        if (v == 0 || (((sec & 0xFFFFFF) - (v >> 40)) & 0xFFFFFF) >= WINDOW)
            continue;
        f += (uint32_t)(v & COUNT_MAX);
        n += (uint32_t)(v & COUNT_MAX) + (uint32_t)(v >> 20 & COUNT_MAX);
    }
    *fails = f;
    *total = n;
}

/* Closes an open breaker; 1 for the caller that did it. */
static int reset(tp_breaker_t *b)
{
    uint32_t one = 1;
    if (!atomic_compare_exchange_strong(&b->open, &one, 0))
        return 0;
    for (int i = 0; i < WINDOW; i++)
        atomic_store(&b->bucket[i], 0);
    atomic_store(&b->trial_ms, 0);
    return 1;
}

int tp_breaker_allow(tp_breaker_t *b, const tp_breaker_conf_t *c, int64_t now_ms, int *event)
{
    *event = TP_BREAKER_SAME;
    if (atomic_load_explicit(&b->open, memory_order_acquire) == 0)
        return TP_BREAKER_PASS;
    if (now_ms >= atomic_load(&b->opened_ms) + c->return_ms) {
        if (reset(b))
            *event = TP_BREAKER_RESET;
        return TP_BREAKER_PASS;
    }
    if (!c->half_open || now_ms < atomic_load(&b->retry_ms))
        return TP_BREAKER_REFUSE;
    int64_t t = atomic_load(&b->trial_ms);
    if ((t == 0 || now_ms - t > TRIAL_STALE) &&
        atomic_compare_exchange_strong(&b->trial_ms, &t, now_ms))
        return TP_BREAKER_TRIAL;
    return TP_BREAKER_REFUSE;
}

int tp_breaker_record(tp_breaker_t *b, const tp_breaker_conf_t *c, int failed, int trial,
                      int64_t now_ms, uint32_t *fails, uint32_t *total)
{
    *fails = *total = 0;
    if (trial) {
        if (!failed)
            return reset(b) ? TP_BREAKER_RESET : TP_BREAKER_SAME;
        uint32_t backoff = atomic_load(&b->backoff_ms);
        backoff = backoff < 60000 ? backoff * 2 : backoff;
        atomic_store(&b->backoff_ms, backoff);
        atomic_store(&b->retry_ms, now_ms + backoff);
        atomic_store(&b->trial_ms, 0);
        return TP_BREAKER_SAME;
    }
    if (atomic_load(&b->open))
        return TP_BREAKER_SAME; /* went through before it tripped */
    add(b, now_ms, failed);
    if (!failed)
        return TP_BREAKER_SAME;
    window(b, now_ms, fails, total);
    if (*total < c->samples || (double)*fails < c->threshold * (double)*total)
        return TP_BREAKER_SAME;
    /* set the times before the state, so a worker that sees it open sees them */
    atomic_store(&b->opened_ms, now_ms);
    atomic_store(&b->backoff_ms, FIRST_BACKOFF);
    atomic_store(&b->retry_ms, now_ms + FIRST_BACKOFF);
    atomic_store(&b->trial_ms, 0);
    uint32_t zero = 0;
    if (!atomic_compare_exchange_strong(&b->open, &zero, 1))
        return TP_BREAKER_SAME;
    atomic_fetch_add(&b->trips, 1);
    return TP_BREAKER_TRIPPED;
}

void tp_breakers_show(tp_breakers_t *t, int64_t now_ms, tp_buf_t *out)
{
    size_t n = 0;
    for (uint32_t i = 0; i <= t->mask; i++) {
        tp_breaker_t *b = &t->b[i];
        if (atomic_load(&b->key) == 0)
            continue;
        uint32_t f, tot;
        window(b, now_ms, &f, &tot);
        int open = atomic_load(&b->open) != 0;
        tp_buf_printf(out, "%-48s %-6s %6u %6u %6llu", b->label, open ? "open" : "closed", tot, f,
                      (unsigned long long)atomic_load(&b->trips));
        if (open)
            tp_buf_printf(out, "  open %llds",
                          (long long)((now_ms - atomic_load(&b->opened_ms)) / 1000));
        tp_buf_puts(out, "\n");
        n++;
    }
    if (n == 0)
        tp_buf_puts(out, "no circuit breakers\n");
}
