/*
 * common/tp_time.h: clocks and time formatting.
 *
 * Used by: master and workers. Stateless except for the per-process cache
 * of the HTTP Date header, which is only touched by one thread.
 */
#ifndef TP_TIME_H
#define TP_TIME_H

#include <stddef.h>
#include <stdint.h>

/* Monotonic milliseconds, for deadlines. */
uint64_t tp_time_mono_ms(void);

/* Monotonic nanoseconds (the same clock in every process of the host). */
int64_t tp_time_mono_ns(void);

/* Wall clock, microseconds since the epoch. */
int64_t tp_time_wall_us(void);

/* Writes an RFC 3339 UTC timestamp ("2026-11-26T12:00:00.123Z" with ms,
 * or without the fraction) for <wall_us> into <buf>. Returns its length. */
size_t tp_time_rfc3339(char *buf, size_t size, int64_t wall_us, int with_ms);

/* Returns the IMF-fixdate for now ("Thu, 26 Nov 2026 12:00:00 GMT"),
 * recomputed at most once a second. The pointer stays valid until the next
 * call. */
const char *tp_time_http_date(void);

#endif
