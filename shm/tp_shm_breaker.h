/*
 * shm/tp_shm_breaker.h: the node's circuit breakers (extended_paths
 * circuit_breakers, TYK-COMPAT 21.5), shared by every worker, so a
 * breaker trips on the failures all workers see and opens for all of them.
 *
 * Used by: workers (tp_breaker.c) before and after each request on an
 * endpoint with a breaker; the master reads the table for `show breakers`.
 * The region is mapped by the master before it forks. A breaker is keyed
 * by its API, version, method and path, so it keeps its state across
 * reloads while its definition stays.
 *
 * Tyk's breaker is a rate breaker over a 10 s rolling window: it trips
 * when the window holds at least <samples> results and the share of
 * failures (5xx answers and transport errors) is at least <threshold>.
 * Open, it refuses requests (503) until <return_ms> have passed, then
 * closes again; unless half-open is disabled, one trial request at a time
 * goes through after a back-off (500 ms, doubled after each failed trial):
 * a success closes the breaker at once, a failure keeps it open.
 *
 * Locking: none. The window is ten one-second buckets, each one 64-bit
 * word (second, successes, failures) updated by compare-and-swap; state
 * changes are compare-and-swaps too, so exactly one worker trips or resets
 * a breaker (and logs it), and a worker that dies leaves no lock behind.
 */
#ifndef TP_SHM_BREAKER_H
#define TP_SHM_BREAKER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "tp_buf.h"

typedef struct tp_breakers_s tp_breakers_t;
typedef struct tp_breaker_s tp_breaker_t;

typedef struct tp_breaker_conf_s {
    double threshold;  /* threshold_percent, 0..1 */
    uint32_t samples;  /* results in the window before it may trip */
    int64_t return_ms; /* return_to_service_after */
    int half_open;     /* not disable_half_open_state */
} tp_breaker_conf_t;

/* What tp_breaker_allow decided. */
enum { TP_BREAKER_REFUSE, TP_BREAKER_PASS, TP_BREAKER_TRIAL };
/* What changed (for the event log). */
enum { TP_BREAKER_SAME, TP_BREAKER_TRIPPED, TP_BREAKER_RESET };

/* Maps a table of <entries> breakers. NULL with a reason. Master, before fork. */
tp_breakers_t *tp_breakers_create(size_t entries, char *err, size_t errlen);

/* The breaker named <key> (claimed on first use; <label> is what `show
 * breakers` prints for it), or NULL when the table is full. */
tp_breaker_t *tp_breaker_get(tp_breakers_t *t, const char *key, size_t klen, const char *label);

/* May a request go through now (<now_ms> monotonic)? <event> tells of a
 * reset after return_to_service_after. */
int tp_breaker_allow(tp_breaker_t *b, const tp_breaker_conf_t *c, int64_t now_ms, int *event);

/* The result of a request that went through (<trial>: as the half-open
 * trial). Returns a TP_BREAKER_* change; <fails>/<total> the window. */
int tp_breaker_record(tp_breaker_t *b, const tp_breaker_conf_t *c, int failed, int trial,
                      int64_t now_ms, uint32_t *fails, uint32_t *total);

/* `show breakers`: one line per breaker in use. */
void tp_breakers_show(tp_breakers_t *t, int64_t now_ms, tp_buf_t *out);

#endif
