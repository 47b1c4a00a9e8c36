/* test/unit/test_analytics.c: the msgpack writer (the bytes Go's
 * vmihailenco/msgpack v2 writes) and Tyk's analytics path normalisation. */
#include <string.h>

#include "tp_msgpack.h"
#include "tp_test.h"
#include "tp_worker.h"

/* <b> as hex, for comparing encodings. */
static const char *hex(const tp_buf_t *b, char *out)
{
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < b->len; i++) {
        out[2 * i] = d[(unsigned char)b->data[i] >> 4];
        out[2 * i + 1] = d[(unsigned char)b->data[i] & 15];
    }
    out[2 * b->len] = '\0';
    return out;
}

TP_TEST(test_msgpack_smallest_encodings)
{
    char h[256];
    tp_buf_t b = {0};
    tp_mp_int(&b, 0);
    tp_mp_int(&b, 127);
    tp_mp_int(&b, 128);
    tp_mp_int(&b, 65536);
    tp_mp_int(&b, -1);
    tp_mp_int(&b, -33);
    tp_mp_int(&b, -200);
    CHECK_STR(hex(&b, h), "007fcc80ce00010000ffd0dfd1ff38");
    b.len = 0;
    tp_mp_cstr(&b, "GET");
    tp_mp_bool(&b, 1);
    tp_mp_bool(&b, 0);
    tp_mp_nil(&b);
    tp_mp_float(&b, 0);
    CHECK_STR(hex(&b, h), "a3474554c3c2c0cb0000000000000000");
    b.len = 0;
    tp_mp_time(&b, 1700000000, 5); /* Go's time.Time: fixarray [sec, nsec] */
    tp_mp_map(&b, 35);
    tp_mp_array(&b, 3);
    CHECK_STR(hex(&b, h), "92ce6553f10005de002393");
    b.len = 0;
    char s40[41];
    memset(s40, 'x', 40);
    s40[40] = '\0';
    tp_mp_cstr(&b, s40);
    CHECK_INT(b.len, 42);
    CHECK_INT((unsigned char)b.data[0], 0xd9);
    CHECK_INT((unsigned char)b.data[1], 40);
    tp_buf_free(&b);
}

/* Normalises <in> with the given switches and no custom patterns. */
static const char *norm(const char *in, int uuids, int ulids, int numbers, tp_buf_t *out)
{
    tp_conf_t conf;
    memset(&conf, 0, sizeof(conf));
    conf.analytics_config.normalise_urls.enabled = 1;
    conf.analytics_config.normalise_urls.normalise_uuids = uuids;
    conf.analytics_config.normalise_urls.normalise_ulids = ulids;
    conf.analytics_config.normalise_urls.normalise_numbers = numbers;
    tp_analytics_normalise(NULL, &conf, in, strlen(in), out);
    return out->data;
}

TP_TEST(test_analytics_normalise_as_tyk)
{
    tp_buf_t o = {0};
    CHECK_STR(norm("/users/123/orders/45", 1, 0, 1, &o), "/users/{id}/orders/{id}");
    /* a slash and the leading digit run (TYK-COMPAT 15.5) */
    CHECK_STR(norm("/v1/123abc/2024-01", 0, 0, 1, &o), "/v1/{id}abc/{id}-01");
    CHECK_STR(norm("/u/0f8fad5b-d9cb-469f-a165-70867728950e/x", 1, 0, 1, &o), "/u/{uuid}/x");
    CHECK_STR(norm("/u/0f8fad5bd9cb469fa16570867728950e", 1, 0, 0, &o), "/u/{uuid}");
    /* UUIDs go first: their digits are not numbers any more */
    CHECK_STR(norm("/1/0f8fad5b-d9cb-469f-a165-70867728950e", 1, 0, 1, &o), "/{id}/{uuid}");
    CHECK_STR(norm("/o/01ARZ3NDEKTSV4RRFFQ69G5FAV", 0, 1, 0, &o), "/o/{ulid}");
    CHECK_STR(norm("/o/01arz3ndektsv4rrffq69g5fav", 0, 1, 0, &o), "/o/{ulid}");
    CHECK_STR(norm("/o/81ARZ3NDEKTSV4RRFFQ69G5FAV", 0, 1, 0, &o), "/o/81ARZ3NDEKTSV4RRFFQ69G5FAV");
    /* each switch alone */
    CHECK_STR(norm("/users/123", 1, 1, 0, &o), "/users/123");
    tp_buf_free(&o);
}

void test_analytics_suite(void)
{
    TP_RUN(test_msgpack_smallest_encodings);
    TP_RUN(test_analytics_normalise_as_tyk);
}
