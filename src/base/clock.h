/* clock.h - monotonic microseconds, for what is timed finer than the
 * loop's millisecond clock (the access log's request and upstream times).
 * clock_gettime(CLOCK_MONOTONIC) is a vDSO call: no system call. */
#ifndef LURING_CLOCK_H
#define LURING_CLOCK_H

#include <stdint.h>
#include <time.h>

/** Monotonic time in µs (never 0 after boot's first microsecond). */
static inline int64_t clock_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

#endif
