/*
 * shm/tp_shm_metrics.h: the counters behind the Prometheus endpoint
 * (turnpike.metrics_port): per API the status codes and the latency
 * histograms of Tyk Pump's prometheus pump (TYK-COMPAT 16.4), and the
 * series of the families whose labels are open-ended (per path, per key),
 * capped.
 *
 * Used by: workers count on the request path (their log stage); the
 * master reads and sums for a scrape. Mapped by the master before it forks.
 *
 * Layout. Per API (its stat_idx, stable across generations) and worker
 * row, one tp_met_api_t: up to TP_MET_CODES status codes with their
 * counts, and the three latency histograms (total, upstream, gateway)
 * with Pump's millisecond buckets. The series of the open families live
 * in one directory shared by every worker: an entry is claimed by a
 * compare-and-swap of its label hash, its labels written, then marked
 * ready; its counts are per worker row, [row][entry], so no two processes
 * write one word. Each family takes at most max_series entries; past that,
 * a family's requests count in one overflow series per status code
 * (labels "other"), so a scrape stays bounded whatever clients send.
 *
 * Locking: none. Every counter has one writer (its worker); readers load
 * them relaxed, so a scrape sees each counter whole, and sums that are at
 * most one request apart between families.
 */
#ifndef TP_SHM_METRICS_H
#define TP_SHM_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define TP_MET_CODES 16    /* distinct status codes per API and worker */
#define TP_MET_BUCKETS 26  /* tyk_latency's buckets (ms), +Inf after them */
#define TP_MET_LAT_TYPES 3 /* total, upstream, gateway */
#define TP_MET_LABEL 232   /* an entry's labels, NUL-separated */

enum { TP_MET_LAT_TOTAL, TP_MET_LAT_UPSTREAM, TP_MET_LAT_GATEWAY };

/* The families with open-ended labels. */
enum {
    TP_MET_PATH, /* tyk_http_status_per_path: api, path, method */
    TP_MET_KEY,  /* tyk_http_status_per_key: key */
    TP_MET_FAMILIES
};

extern const uint32_t tp_met_buckets[TP_MET_BUCKETS];

typedef struct tp_met_api_s {
    _Atomic uint32_t code[TP_MET_CODES]; /* 0: unused; codes past the table fold into 0 ... */
    _Atomic uint64_t count[TP_MET_CODES];
    _Atomic uint64_t other;                                     /* ... counted here */
    _Atomic uint64_t lat[TP_MET_LAT_TYPES][TP_MET_BUCKETS + 1]; /* per bucket, not cumulative */
    _Atomic uint64_t lat_sum[TP_MET_LAT_TYPES];                 /* ms */
} tp_met_api_t;

typedef struct tp_metrics_s tp_metrics_t;

/* Maps counters for <nrows> worker rows and <max_apis> APIs, and a
 * directory for <max_series> series per family. NULL with a reason.
 * Master, before fork. */
tp_metrics_t *tp_metrics_create(uint32_t nrows, uint32_t max_apis, uint32_t max_series, char *err,
                                size_t errlen);
uint32_t tp_metrics_rows(const tp_metrics_t *m);

/* The counters of <row> for the API with <stat_idx>, or NULL. */
tp_met_api_t *tp_metrics_api(tp_metrics_t *m, int row, uint32_t stat_idx);

/* A request answered <code> in <ms> total, <up_ms> of them upstream
 * (-1: it never reached one). Worker (the row's only writer). */
void tp_metrics_count(tp_met_api_t *a, int code, int64_t ms, int64_t up_ms);

/* One request of family <fam> with <code> and labels <v>[<n>]. Worker. */
void tp_metrics_count_series(tp_metrics_t *m, int row, int fam, int code, const char *const *v,
                             const size_t *len, int n);

/* ---- reading (the master) ------------------------------------------------------ */

/* One API summed over the rows set in <rows> (bit k: row k). */
typedef struct tp_met_sum_s {
    uint32_t code[TP_MET_CODES * 2]; /* codes seen, 0-terminated when fewer */
    uint64_t count[TP_MET_CODES * 2];
    uint32_t ncodes;
    uint64_t other;
    uint64_t lat[TP_MET_LAT_TYPES][TP_MET_BUCKETS + 1];
    uint64_t lat_sum[TP_MET_LAT_TYPES];
} tp_met_sum_t;

void tp_metrics_api_sum(tp_metrics_t *m, const uint64_t *rows, uint32_t stat_idx,
                        tp_met_sum_t *out);

/* Calls <fn> for every ready series: its family, code, labels (<n> of
 * them, NUL-terminated each) and its count summed over <rows>. */
void tp_metrics_each_series(tp_metrics_t *m, const uint64_t *rows,
                            void (*fn)(void *arg, int fam, int code, const char *const *v, int n,
                                       uint64_t count),
                            void *arg);

/* Series taken per family, and requests that found no room at all. */
uint32_t tp_metrics_series_used(tp_metrics_t *m, int fam);
uint64_t tp_metrics_series_lost(tp_metrics_t *m);

#endif
