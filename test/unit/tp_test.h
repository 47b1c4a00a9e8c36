/*
 * test/unit/tp_test.h: a tiny unit-test harness.
 *
 * Each test_<module>.c defines tests with TP_TEST and lists them in a
 * suite function registered in test_main.c. A failed check reports the
 * file and line and ends that test; the runner exits non-zero if any
 * test failed. Tests must not depend on each other or on the order they
 * run in, and must free what they allocate (valgrind runs them).
 */
#ifndef TP_TEST_H
#define TP_TEST_H

#include <stdio.h>
#include <string.h>

extern int tp_test_failed;
extern const char *tp_test_current;

void tp_test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void tp_test_run(const char *name, void (*fn)(void));

#define TP_TEST(name) static void name(void)
#define TP_RUN(name) tp_test_run(#name, name)

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            tp_test_fail(__FILE__, __LINE__, "%s", #cond);                                         \
            return;                                                                                \
        }                                                                                          \
    } while (0)

#define CHECK_INT(a, b)                                                                            \
    do {                                                                                           \
        long long _a = (long long)(a), _b = (long long)(b);                                        \
        if (_a != _b) {                                                                            \
            tp_test_fail(__FILE__, __LINE__, "%s == %lld, expected %lld", #a, _a, _b);             \
            return;                                                                                \
        }                                                                                          \
    } while (0)

#define CHECK_STR(a, b)                                                                            \
    do {                                                                                           \
        const char *_a = (a), *_b = (b);                                                           \
        if (_a == NULL || _b == NULL || strcmp(_a, _b) != 0) {                                     \
            tp_test_fail(__FILE__, __LINE__, "%s == \"%s\", expected \"%s\"", #a,                  \
                         _a ? _a : "(null)", _b ? _b : "(null)");                                  \
            return;                                                                                \
        }                                                                                          \
    } while (0)

/* Does <hay> contain <needle>? */
#define CHECK_CONTAINS(hay, needle)                                                                \
    do {                                                                                           \
        const char *_h = (hay), *_n = (needle);                                                    \
        if (_h == NULL || strstr(_h, _n) == NULL) {                                                \
            tp_test_fail(__FILE__, __LINE__, "%s == \"%s\", expected it to contain \"%s\"", #hay,  \
                         _h ? _h : "(null)", _n);                                                  \
            return;                                                                                \
        }                                                                                          \
    } while (0)

#endif
