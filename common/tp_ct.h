/*
 * common/tp_ct.h: comparing secrets without telling how much of them a
 * guess got right.
 *
 * Used by: the control API's secret check, JWT and HMAC signatures, basic
 * auth passwords. Pure functions, any thread.
 */
#ifndef TP_CT_H
#define TP_CT_H

#include <stddef.h>

/* Are <a> (<an> bytes) and <b> (<bn> bytes) equal? The time taken depends
 * on <bn> only (the expected value's length), never on where they differ. */
static inline int tp_ct_equal(const void *a, size_t an, const void *b, size_t bn)
{
    const unsigned char *x = a, *y = b;
    unsigned diff = an != bn;
    for (size_t i = 0; i < bn; i++)
        diff |= (unsigned)((i < an ? x[i] : 0) ^ y[i]);
    return diff == 0;
}

#endif
