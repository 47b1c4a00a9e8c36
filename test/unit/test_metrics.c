/* test/unit/test_metrics.c: the Prometheus counters in shared memory:
 * status codes and Pump's latency buckets per API, the capped series
 * families and their overflow, sums over worker rows. */
#include <string.h>

#include "tp_shm_metrics.h"
#include "tp_test.h"

typedef struct found_s {
    int n;
    uint64_t total, other, mine;
} found_t;

static void each(void *arg, int fam, int code, const char *const *v, int n, uint64_t count)
{
    found_t *f = arg;
    (void)code;
    if (fam != TP_MET_KEY || n != 1)
        return;
    f->n++;
    f->total += count;
    if (strcmp(v[0], "other") == 0)
        f->other += count;
    if (strcmp(v[0], "key-7") == 0)
        f->mine += count;
}

TP_TEST(test_metrics_codes_and_buckets)
{
    char err[256];
    tp_metrics_t *m = tp_metrics_create(4, 8, 10, err, sizeof(err));
    CHECK(m != NULL);
    tp_met_api_t *a0 = tp_metrics_api(m, 0, 3), *a1 = tp_metrics_api(m, 2, 3);
    CHECK(tp_metrics_api(m, 4, 3) == NULL && tp_metrics_api(m, 0, 8) == NULL);
    tp_metrics_count(a0, 200, 1, 0);      /* le="1" */
    tp_metrics_count(a0, 200, 2, 1);      /* le="2" */
    tp_metrics_count(a1, 404, 61000, -1); /* +Inf, no upstream */
    tp_metrics_count(a1, 200, 7, 5);
    uint64_t rows[4] = {0x5, 0, 0, 0}; /* rows 0 and 2 */
    tp_met_sum_t s;
    tp_metrics_api_sum(m, rows, 3, &s);
    CHECK_INT(s.ncodes, 2);
    CHECK_INT(s.code[0], 200);
    CHECK_INT(s.count[0], 3);
    CHECK_INT(s.code[1], 404);
    CHECK_INT(s.count[1], 1);
    CHECK_INT(s.lat[TP_MET_LAT_TOTAL][0], 1);
    CHECK_INT(s.lat[TP_MET_LAT_TOTAL][1], 1);
    CHECK_INT(s.lat[TP_MET_LAT_TOTAL][3], 1); /* 7 ms: le="7" */
    CHECK_INT(s.lat[TP_MET_LAT_TOTAL][TP_MET_BUCKETS], 1);
    CHECK_INT(s.lat_sum[TP_MET_LAT_TOTAL], 61010);
    CHECK_INT(s.lat_sum[TP_MET_LAT_UPSTREAM], 6);
    CHECK_INT(s.lat_sum[TP_MET_LAT_GATEWAY], 4);
    uint64_t only2[4] = {0x4, 0, 0, 0};
    tp_metrics_api_sum(m, only2, 3, &s);
    CHECK_INT(s.count[0] + s.count[1], 2);
    /* past TP_MET_CODES distinct codes, the rest are counted as other */
    for (int c = 0; c < TP_MET_CODES + 3; c++)
        tp_metrics_count(a0, 500 + c, 1, 1);
    tp_metrics_api_sum(m, rows, 3, &s);
    CHECK_INT(s.other, 4); /* row 0: 200 and 500..514 took the 16 places */
}

TP_TEST(test_metrics_series_cap_and_overflow)
{
    char err[256], key[32];
    tp_metrics_t *m = tp_metrics_create(2, 4, 10, err, sizeof(err));
    CHECK(m != NULL);
    for (int i = 0; i < 1000; i++) {
        int n = snprintf(key, sizeof(key), "key-%d", i % 100);
        const char *v = key;
        size_t len = (size_t)n;
        tp_metrics_count_series(m, i % 2, TP_MET_KEY, 200, &v, &len, 1);
    }
    uint64_t rows[4] = {0x3, 0, 0, 0};
    found_t f = {0};
    tp_metrics_each_series(m, rows, each, &f);
    CHECK_INT(f.n, 11); /* ten keys and the overflow */
    CHECK_INT(f.total, 1000);
    CHECK_INT(f.other, 900);
    CHECK_INT(f.mine, 10);
    CHECK_INT(tp_metrics_series_used(m, TP_MET_KEY), 10);
    CHECK_INT(tp_metrics_series_used(m, TP_MET_PATH), 0);
    CHECK_INT(tp_metrics_series_lost(m), 0);
    /* labels that only share a prefix are different series */
    const char *v2[3] = {"api", "/p", "GET"}, *v1[3] = {"api", "/p", "GE"};
    size_t l2[3] = {3, 2, 3}, l1[3] = {3, 2, 2};
    tp_metrics_count_series(m, 0, TP_MET_PATH, 200, v2, l2, 3);
    tp_metrics_count_series(m, 0, TP_MET_PATH, 200, v1, l1, 3);
    CHECK_INT(tp_metrics_series_used(m, TP_MET_PATH), 2);
}

void test_metrics_suite(void)
{
    TP_RUN(test_metrics_codes_and_buckets);
    TP_RUN(test_metrics_series_cap_and_overflow);
}
