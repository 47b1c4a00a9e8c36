/* test/unit/test_conf.c */
#include "tp_test.h"

void test_conf_suite(void)
{
}
