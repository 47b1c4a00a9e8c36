/* test/unit/test_route.c */
#include "tp_test.h"

void test_route_suite(void)
{
}
