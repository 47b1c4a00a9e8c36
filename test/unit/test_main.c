/* test/unit/test_main.c: runs every unit-test suite. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "tp_log.h"
#include "tp_test.h"

int tp_test_failed;
const char *tp_test_current;
static int current_failed;
static int ran;

void tp_test_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "FAIL %s (%s:%d): ", tp_test_current, file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    current_failed = 1;
}

void tp_test_run(const char *name, void (*fn)(void))
{
    tp_test_current = name;
    current_failed = 0;
    fn();
    ran++;
    if (current_failed)
        tp_test_failed++;
}

void test_url_suite(void);
void test_json_suite(void);
void test_conf_suite(void);
void test_route_suite(void);
void test_http_suite(void);
void test_redis_suite(void);
void test_chain_suite(void);
void test_analytics_suite(void);
void test_metrics_suite(void);
void test_shm_suite(void);
void test_keyhash_suite(void);
void test_policy_apply_suite(void);
void test_jwt_suite(void);
void test_jsonschema_suite(void);
void test_tmpl_suite(void);
void test_zip_suite(void);

int main(void)
{
    /* the loader's warnings are expected here; keep the output readable */
    tp_log_g.level = TP_LOG_ERROR - 1;
    test_url_suite();
    test_json_suite();
    test_conf_suite();
    test_route_suite();
    test_http_suite();
    test_redis_suite();
    test_shm_suite();
    test_keyhash_suite();
    test_policy_apply_suite();
    test_jwt_suite();
    test_jsonschema_suite();
    test_tmpl_suite();
    test_zip_suite();
    test_chain_suite();
    test_analytics_suite();
    test_metrics_suite();
    printf("%d unit tests, %d failed\n", ran, tp_test_failed);
    return tp_test_failed ? 1 : 0;
}
