/* test/unit/test_json.c */
#include "tp_test.h"

void test_json_suite(void)
{
}
