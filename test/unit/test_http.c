/* test/unit/test_http.c */
#include "tp_test.h"

void test_http_suite(void)
{
}
